# Sourced by the bench scripts: small helpers they all use.
# log MSG…: to stderr, prefixed with the script's name.
log() { echo "$(basename "$0" .sh): $*" >&2; }
# now: seconds since the epoch, with nanoseconds.
now() { date +%s.%N; }
# calc EXPR: awk arithmetic.
calc() { awk "BEGIN { print $* }"; }
# median N…: the median of numbers.
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
# bench_context: sets `started` (UTC), `rev` (this revision, marked when src/ or the
# manifests have uncommitted changes) and `target` (absolute $CARGO_TARGET_DIR, default
# $root/target, exported). Needs $root.
bench_context() {
  started=$(date -u '+%Y-%m-%d %H:%M UTC')
  rev=$(git rev-parse --short HEAD)
  git diff --quiet HEAD -- src Cargo.toml Cargo.lock || rev+=" + uncommitted changes"
  target=${CARGO_TARGET_DIR:-target}
  [[ $target == /* ]] || target=$root/$target
  export CARGO_TARGET_DIR=$target
}
# ex_dir EX: the folder of an example variant (`canvas@readback` is the canvas example).
ex_dir() { echo "examples/compositions/${1%@*}"; }
# ex_flags EX: extra render flags of an example variant (word-split on purpose: no spaces
# inside).
ex_flags() { [[ $1 == *@readback ]] && echo "--capture-canvas #stage" || true; }
