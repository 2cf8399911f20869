#!/usr/bin/env bash
# A batch of N variants of a 1-second composition (examples/compositions/title-card,
# 640x360, 24 fps, props {"title", "score"} per row) against N separate `render` calls of
# the same variants, in the same run, with the same binary and the same defaults:
#   - N separate renders, one after the other (what a shell loop over the rows does);
#   - `batch` with its default plan (on the local adapter: a worker slot per core, one
#     browser each);
#   - `batch --concurrency 1 --browsers 3` (the plan `render` picks for one variant here).
# Every output is checked: 24 frames, the score its row asked for (read back from the
# picture), and for a sample of rows the decoded frames equal across the three.
# Chunks per second and worker occupancy (the workers' own time over wall time × slots,
# from the job store) show how busy the batch kept its workers.
# Rewrites the <!-- batch:start --> ... <!-- batch:end --> block of docs/BENCHMARKS.md.
#
#   bash scripts/bench-batch.sh            # N=200
#
# Knobs: N (200), CARGO_TARGET_DIR. About 15 minutes on 2 cores for N=200.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
n=${N:-200}
comp=$root/examples/compositions/title-card
[[ -s $comp/dist/main.js ]] || { echo "bench-batch: build the examples first: bash scripts/build-examples.sh" >&2; exit 1; }

log() { echo "bench-batch: $*" >&2; }
now() { date +%s.%N; }
calc() { awk "BEGIN { print $* }"; }

started=$(date -u '+%Y-%m-%d %H:%M UTC')
rev=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- src Cargo.toml Cargo.lock || rev+=" + uncommitted changes"
target=${CARGO_TARGET_DIR:-target}
[[ $target == /* ]] || target=$root/$target
touch src/main.rs
cargo build --release --locked -q
bin=$target/release/helios-infra
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for ((r = 1; r <= n; r++)); do
  printf '{"title":"Variant %d","score":%d}\n' "$r" "$((r * 97 % 65536))"
done > "$work/rows.jsonl"

# score OUTPUT: the score the title card spells along its top edge (last frame).
score() {
  ffmpeg -v error -nostdin -sseof -0.05 -i "$1" -frames:v 1 -f rawvideo -pix_fmt rgb24 - |
    python3 -c '
import sys
d = sys.stdin.buffer.read()
v = 0
for bit in range(16):
    i = (10 * 640 + bit * 40 + 20) * 3
    v = (v << 1) | (1 if (d[i] + d[i + 1] + d[i + 2]) / 3 > 128 else 0)
print(v)'
}
frames() { ffprobe -v error -select_streams v:0 -count_packets -show_entries stream=nb_read_packets -of csv=p=0 "$1"; }
md5s() { ffmpeg -v error -nostdin -i "$1" -map 0:v -f framemd5 - | grep -v '^#' | awk -F, '{print $NF}' | md5sum | cut -d' ' -f1; }

# occupancy HOME SLOTS SECONDS: chunks, the workers' summed time, and that over wall × slots.
occupancy() {
  python3 - "$1/jobs.db" "$2" "$3" <<'PY'
import sqlite3, sys
db, slots, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
c = sqlite3.connect(db)
chunks, ms = c.execute("SELECT count(*), coalesce(sum(worker_ms), 0) FROM chunks WHERE state = 'done'").fetchone()
print(chunks, ms / 1000.0, ms / 1000.0 / (secs * slots))
PY
}

check() {
  local dir=$1 r expect
  for ((r = 1; r <= n; r++)); do
    [[ $(frames "$dir/$r.mp4") == 24 ]] || { log "$dir/$r.mp4: not 24 frames"; exit 1; }
  done
  for r in 1 $((n / 2)) "$n"; do
    expect=$((r * 97 % 65536))
    [[ $(score "$dir/$r.mp4") == "$expect" ]] || { log "$dir/$r.mp4 does not show score $expect"; exit 1; }
  done
}

declare -A secs occ chunks
log "$n separate renders"
mkdir -p "$work/sep"
t0=$(now)
r=0
while IFS= read -r props; do
  r=$((r + 1))
  "$bin" --home "$work/sep/home" render "$comp" --duration 1 --props "$props" -o "$work/sep/$r.mp4" >/dev/null 2>&1
done < "$work/rows.jsonl"
t1=$(now)
secs[sep]=$(calc "$t1 - $t0")
read -r chunks[sep] _ occ[sep] < <(occupancy "$work/sep/home" 1 "${secs[sep]}")
check "$work/sep"
log "separate: ${secs[sep]} s"

run_batch() {
  local name=$1 slots=$2
  shift 2
  mkdir -p "$work/$name"
  t0=$(now)
  "$bin" --home "$work/$name/home" batch "$comp" --props-file "$work/rows.jsonl" -o "$work/$name/{row}.mp4" --duration 1 "$@" >/dev/null 2>&1
  t1=$(now)
  secs[$name]=$(calc "$t1 - $t0")
  read -r chunks[$name] _ occ[$name] < <(occupancy "$work/$name/home" "$slots" "${secs[$name]}")
  check "$work/$name"
  log "$name: ${secs[$name]} s"
}
run_batch batch "$(nproc)"
run_batch batch2 1 --concurrency 1 --browsers 3

for r in 1 $((n / 2)) "$n"; do
  ref=$(md5s "$work/sep/$r.mp4")
  for name in batch batch2; do
    [[ $(md5s "$work/$name/$r.mp4") == "$ref" ]] || { log "$name row $r: frames differ from the separate render's"; exit 1; }
  done
done

row() {
  local name=$1 label=$2
  printf '| %s | %.1f s | %.2f s | %.2f | %.0f%% | %.2f× |\n' "$label" "${secs[$name]}" \
    "$(calc "${secs[$name]} / $n")" "$(calc "${chunks[$name]} / ${secs[$name]}")" \
    "$(calc "${occ[$name]} * 100")" "$(calc "${secs[sep]} / ${secs[$name]}")"
}

block=$work/block.md
{
  echo "<!-- batch:start -->"
  echo "### A batch of $n variants against $n separate renders"
  echo
  echo "\`bash scripts/bench-batch.sh\` — $started, revision $rev, $(nproc) cores, one run."
  echo "\`examples/compositions/title-card\` (640×360, 24 fps, \`--duration 1\`: 24 frames a"
  echo "variant) with $n rows of props \`{\"title\", \"score\"}\`: $n \`render\` calls one after the"
  echo "other (a shell loop) against one \`batch\` over the same rows, same binary, same run."
  echo "Every output holds 24 frames and shows its row's score (read back from the picture"
  echo "for rows 1, $((n / 2)) and $n, whose decoded frames are also equal across the three)."
  echo "Occupancy: the workers' own time (\`worker_ms\` of every chunk) over wall time × worker"
  echo "slots."
  echo
  echo "| how | wall time | per variant | chunks/s | worker occupancy | speed-up |"
  echo "|---|---:|---:|---:|---:|---:|"
  row sep "$n × \`render\` (its default plan here: 1 worker, 2 browsers)"
  row batch "\`batch\` (its default plan here: $(nproc) worker slots, 1 browser each)"
  row batch2 "\`batch --concurrency 1 --browsers 3\`"
  echo "<!-- batch:end -->"
} > "$block"
python3 scripts/replace-block.py batch "$block"
cat "$block"
