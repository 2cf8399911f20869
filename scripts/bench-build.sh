#!/usr/bin/env bash
# What a new user's first build costs: a cold `cargo build --release --locked` of the
# previous release (PREV_REV, from a git worktree) and of this revision, one after the
# other in the same run, each into an empty target directory. Crates are fetched first, so
# only compiling is timed. The second build runs with --timings; the crates that take
# longest are listed. Rewrites the <!-- build:start --> ... <!-- build:end --> block of
# docs/BENCHMARKS.md.
#
#   bash scripts/bench-build.sh
#
# Knobs: PREV_REV (4eef91b, the last revision without the Kubernetes adapter), JOBS (cargo
# -j, default: all cores). About 35 minutes on 2 cores; run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

prev_rev=${PREV_REV:-4eef91b}
jobs=${JOBS:-$(nproc)}
log() { echo "bench-build: $*" >&2; }

started=$(date -u '+%Y-%m-%d %H:%M UTC')
rev=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- src Cargo.toml Cargo.lock || rev+=" + uncommitted changes"
work=$(mktemp -d)
trap 'git worktree remove --force "$work/prev" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git worktree add --detach "$work/prev" "$prev_rev" >/dev/null 2>&1

# cold DIR NAME [cargo args]: seconds of a cold release build of DIR.
cold() {
  local dir=$1 name=$2
  shift 2
  (cd "$dir" && cargo fetch --locked -q)
  log "cold build of $name ($dir)"
  local t0 t1
  t0=$(date +%s.%N)
  (cd "$dir" && CARGO_TARGET_DIR="$work/target-$name" cargo build --release --locked -q -j "$jobs" "$@")
  t1=$(date +%s.%N)
  awk "BEGIN { printf \"%.0f\", $t1 - $t0 }"
}

prev_s=$(cold "$work/prev" prev)
new_s=$(cold "$root" new --timings)
log "previous release $prev_s s, this revision $new_s s"

# The longest compile units of this revision's build, from cargo's timing report.
timings=$(ls -t "$work"/target-new/cargo-timings/cargo-timing-*.html | head -1)
top=$(python3 - "$timings" <<'EOF'
import json, re, sys
html = open(sys.argv[1]).read()
m = re.search(r"const UNIT_DATA = (\[.*?\]);", html, re.S)
units = json.loads(m.group(1)) if m else []
units.sort(key=lambda u: -u["duration"])
for u in units[:12]:
    print(f"| {u['name']} {u['version']}{' (build script)' if u.get('mode') == 'run-custom-build' else ''} | {u['duration']:.1f} s |")
EOF
)
fmt() { printf '%d m %02d s' $(($1 / 60)) $(($1 % 60)); }
ratio=$(awk "BEGIN { printf \"%.3f\", $new_s / $prev_s }")

block=$(mktemp)
cat > "$block" <<EOF
<!-- build:start -->
### A new user's first build: cold \`cargo build --release\`

\`bash scripts/bench-build.sh\` — $started, revision $rev against $prev_rev, $(nproc) cores,
\`-j $jobs\`, one run each, one after the other, each into an empty target directory
(crates fetched beforehand: compiling only).

| build | wall time | ÷ previous |
|---|---:|---:|
| previous release ($prev_rev: no Kubernetes adapter) | $(fmt "$prev_s") | 1.000× |
| this revision ($rev) | $(fmt "$new_s") | ${ratio}× |

The longest compile units of this revision's build (cargo \`--timings\`; they overlap on
$(nproc) cores, so they do not add up to the wall time):

| unit | time |
|---|---:|
$top
<!-- build:end -->
EOF
python3 scripts/replace-block.py build "$block"
log "wrote the build block of docs/BENCHMARKS.md (ratio $ratio)"
