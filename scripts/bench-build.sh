#!/usr/bin/env bash
# What a new user's first video costs: README's first command (setup, `cargo build
# --release`, the bundled render) run as README writes it, for the previous release
# (PREV_REV, from a git worktree) and for this revision, one after the other in the same
# run, each with an empty target directory. Crates are fetched first, so the build is
# compiling only; setup finds its packages installed (what apt would download on a fresh
# machine is not timed). Each part is timed on its own; this revision's build also writes
# cargo's --timings report, whose longest units are listed. Every render's output is
# checked (frame count). Rewrites the <!-- build:start --> ... <!-- build:end --> block of
# docs/BENCHMARKS.md.
#
#   bash scripts/bench-build.sh
#
# Knobs: PREV_REV (e2f59e4, the release before the first-build work), JOBS (cargo -j,
# default: all cores). About 20 minutes on 2 cores; run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

prev_rev=${PREV_REV:-e2f59e4}
jobs=${JOBS:-$(nproc)}
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh

started=$(date -u '+%Y-%m-%d %H:%M UTC')
rev=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- src Cargo.toml Cargo.lock scripts/setup.sh README.md ||
  log "uncommitted changes are not measured: this revision is HEAD ($rev)"
work=$(mktemp -d)
# Each release in its own worktree, whose target/ is an empty directory: README's render
# part runs target/release/helios-infra, the binary just built.
trap 'for w in prev new; do git worktree remove --force "$work/$w" >/dev/null 2>&1 || true; done; rm -rf "$work"' EXIT
git worktree add --detach "$work/prev" "$prev_rev" >/dev/null 2>&1
git worktree add --detach "$work/new" HEAD >/dev/null 2>&1

# README's first command: the first ```sh block after "Render the bundled example".
readme_command() {
  awk '/Render the bundled example/ { f = 1 } f && /^```sh/ { getline; print; exit }' "$1/README.md"
}

# first_video DIR NAME: times each `&&` part of DIR's README command 1 with an empty target
# directory; prints "setup build render total" in seconds. The output stays in DIR.
first_video() {
  local dir=$1 name=$2
  (cd "$dir" && cargo fetch --locked -q)
  local cmd; cmd=$(readme_command "$dir")
  [[ -n $cmd ]] || { log "no README command in $dir"; exit 1; }
  log "$name: $cmd"
  local parts=() part times=() t0 t1
  # Split on "&&": the README command is a chain of simple commands.
  while IFS= read -r part; do parts+=("$part"); done < <(sed 's/ && /\n/g' <<<"$cmd")
  for part in "${parts[@]}"; do
    read -r -a argv <<<"$part"
    # The build: this revision's also writes cargo's timing report.
    if [[ ${argv[0]} == cargo && ${argv[1]} == build && $name == new ]]; then argv+=(--timings); fi
    [[ ${argv[0]} == cargo ]] && argv+=(-j "$jobs")
    t0=$(now)
    (cd "$dir" && CARGO_TARGET_DIR="$dir/target" "${argv[@]}" >"$work/$name.log" 2>&1) ||
      { log "$name: '$part' failed:"; tail -n 20 "$work/$name.log" >&2; exit 1; }
    t1=$(now)
    times+=("$(awk "BEGIN { printf \"%.0f\", $t1 - $t0 }")")
  done
  local total=0 t
  for t in "${times[@]}"; do total=$((total + t)); done
  echo "${times[*]} $total"
}

read -r p_setup p_build p_render p_total < <(first_video "$work/prev" prev)
read -r n_setup n_build n_render n_total < <(first_video "$work/new" new)
log "previous: build $p_build s, command $p_total s; this: build $n_build s, command $n_total s"

count() { ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames -of csv=p=0 "$1" 2>/dev/null || echo 0; }
p_frames=$(count "$work/prev/dom-css.mp4") n_frames=$(count "$work/new/dom-css.mp4")

# The longest compile units of this revision's build, from cargo's timing report.
timings=$(ls -t "$work"/new/target/cargo-timings/cargo-timing-*.html | head -1)
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
ratio() { awk "BEGIN { printf \"%.3f\", $1 / $2 }"; }

block=$(mktemp)
cat > "$block" <<EOF
<!-- build:start -->
### A new user's first video: README's first command

\`bash scripts/bench-build.sh\` — $started, revision $rev against $prev_rev, $(nproc) cores,
\`-j $jobs\`, one run each, one after the other. Each release runs its own README's first command
(\`$(readme_command "$root")\`), part by part, with an empty target directory; crates were
fetched beforehand (compiling only), and setup found its packages installed.

| release | setup | \`cargo build --release\` | render (10 s example) | command 1 in all | build ÷ previous | output frames |
|---|---:|---:|---:|---:|---:|---:|
| previous ($prev_rev) | ${p_setup} s | $(fmt "$p_build") | ${p_render} s | $(fmt "$p_total") | 1.000× | $p_frames |
| this ($rev) | ${n_setup} s | $(fmt "$n_build") | ${n_render} s | $(fmt "$n_total") | $(ratio "$n_build" "$p_build")× | $n_frames |

The longest compile units of this revision's build (cargo \`--timings\`; they overlap on
$(nproc) cores, so they do not add up to the wall time):

| unit | time |
|---|---:|
$top
<!-- build:end -->
EOF
python3 scripts/replace-block.py build "$block"
log "wrote the build block of docs/BENCHMARKS.md"
