#!/usr/bin/env bash
# Estimate against actual: the bundled examples rendered on local workers with the default
# plan and --worker-hour-usd, this revision's release binary. For each, the estimate printed
# before the job (its probe of the composition on this machine, the scale model) against
# what the job took (first attempt's start to last attempt's end, from the job store) and
# what its spend ledger says it cost; every output is counted frame by frame. Target: both
# ratios within 0.8-1.25.
# Rewrites the <!-- estimate:start --> … <!-- estimate:end --> block of docs/BENCHMARKS.md.
#
#   bash scripts/bench-estimate.sh
#
# Knobs: REPS (2), SECONDS_OF_VIDEO (10), CARGO_TARGET_DIR. Needs FFmpeg, Chromium's
# headless shell, python3, and the built examples (bash scripts/build-examples.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
reps=${REPS:-2}
secs_of_video=${SECONDS_OF_VIDEO:-10}
price=3.6 # USD a worker-hour: a tenth of a cent a second

# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh

bench_context
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log "building this revision ($rev)"
cargo build --release --locked -q
bin=$work/helios-infra
cp "$target/release/helios-infra" "$bin"

# The default plan of each example, and one plan of several chunks on both cores (the
# model's waves and the workers' sharing of the cores).
examples=(dom-css canvas helios-core dom-css:6)
rows=()
for case in "${examples[@]}"; do
  ex=${case%%:*}
  plan=()
  [[ $case == *:* ]] && plan=(--chunks "${case#*:}" --concurrency 2)
  comp=examples/compositions/$ex
  [[ $ex == helios-core && ! -f $comp/dist/main.js ]] && { log "build the examples first"; exit 1; }
  for ((r = 1; r <= reps; r++)); do
    home=$work/home-$ex-$r
    "$bin" --home "$home" --json render "$comp" -o "$work/$ex.mp4" --duration "$secs_of_video" \
      --worker-hour-usd "$price" "${plan[@]}" >"$work/events" 2>"$work/log" || { cat "$work/log" >&2; exit 1; }
    id=$(python3 -c 'import json,sys; print([json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")][0]["job"])' "$work/events")
    "$bin" --home "$home" --json status "$id" >"$work/status"
    frames=$(ffprobe -v error -count_packets -show_entries stream=nb_read_packets -of csv=p=0 "$work/$ex.mp4")
    row=$(python3 - "$work/status" "$frames" <<'EOF'
import json, sys
st = json.load(open(sys.argv[1]))
frames = int(sys.argv[2])
assert frames == st["frames"], f"{frames} frames written, {st['frames']} planned"
attempts = [a for c in st["chunks"] for a in c["attempt_list"]]
wall = (max(a["ended_ms"] for a in attempts) - min(a["started_ms"] for a in attempts)) / 1000
e = st["spend"]["estimate"]
spent = st["spend"]["spent_usd"]
print(f'{st["frames"]} {len(st["chunks"])} {e["wall_s"]:.2f} {wall:.2f} {e["usd"]:.6f} {spent:.6f} {e["pace"]["frame_ms"]:.1f} {e["pace"]["startup_ms"]:.0f} {e["pace"]["cores"]:.2f}')
EOF
    )
    log "$case rep $r: frames chunks est_wall wall est_usd usd frame_ms startup_ms cores = $row"
    rows+=("$case $row")
  done
done

table=$(
  echo "| example | frames | chunks | estimated wall (s) | actual (s) | estimate ÷ actual | estimated cost (USD) | spent (USD) | estimate ÷ spent | probe: ms a frame, start-up ms, cores |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  for row in "${rows[@]}"; do
    read -r ex frames chunks ew w eu u fm su co <<<"$row"
    printf '| %s | %s | %s | %.1f | %.1f | %.2f | %.5f | %.5f | %.2f | %s, %s, %s |\n' \
      "$ex" "$frames" "$chunks" "$ew" "$w" "$(calc "$ew / $w")" "$eu" "$u" "$(calc "$eu / $u")" "$fm" "$su" "$co"
  done
)
# How many of the ratios are on target.
inside=0 all=0
for row in "${rows[@]}"; do
  read -r _ _ _ ew w eu u _ <<<"$row"
  for ratio in "$(calc "$ew / $w")" "$(calc "$eu / $u")"; do
    all=$((all + 1))
    awk "BEGIN { exit !($ratio >= 0.8 && $ratio <= 1.25) }" && inside=$((inside + 1))
  done
done
block=$(
  echo "<!-- estimate:start -->"
  echo "Run $started on $(nproc) cores, revision $rev: \`bash scripts/bench-estimate.sh\` (REPS=$reps,"
  echo "every run shown). Each example rendered for ${secs_of_video} s of video with the default plan on local"
  echo "workers (\`dom-css:6\`: 6 chunks, 2 at a time, sharing the 2 cores),"
  echo "at $price USD a worker-hour. *Estimated* is what \`render\` printed before the job"
  echo "started (a 30-frame probe on this machine and the scale model); *actual* is the first"
  echo "attempt's start to the last attempt's end in the job store (stitching excluded, as in the"
  echo "estimate); *spent* is the job's spend ledger (every attempt's time at the price). Target:"
  echo "both ratios within 0.8–1.25."
  echo
  echo "$table"
  echo
  echo "$inside of $all ratios within 0.8–1.25."
  echo "<!-- estimate:end -->"
)
printf '%s\n' "$block" >"$work/block.md"
python3 scripts/replace-block.py estimate "$work/block.md"
log "wrote docs/BENCHMARKS.md"
