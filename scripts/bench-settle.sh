#!/usr/bin/env bash
# What frame exactness costs: frames/s of the pixel clocks on one worker (one chunk, its
# default browsers, lossless, 1280x720, 300 frames at 30 fps) for the previous release and
# this revision in the same run, repetitions interleaved, and from this revision's chunk
# reports the settle step's real time a frame (`settle_ms` ÷ frames).
#
#   - clock: examples/compositions/clock, a plain page drawing in requestAnimationFrame
#     (synchronous: nothing to settle);
#   - vue, svelte: framework clocks that re-render in a microtask;
#   - react: the React clock (state set from helios.subscribe, React renders in a task its
#     scheduler posts): the case the settle step exists for;
#   - react-framer-motion: React, then Framer Motion's own frame loop.
#
# Every output is read back: how many frames do not show their own index (the previous
# release shows the frame before on many React frames). Rewrites the
# <!-- settle:start --> ... <!-- settle:end --> block of docs/BENCHMARKS.md.
#
#   bash scripts/bench-settle.sh
#
# Knobs: PREV_REV (6434fdc, the release before the settle step), REPS (3), FRAMES (300),
# CLOCKS ("clock vue svelte react react-framer-motion"), CARGO_TARGET_DIR.
# Needs FFmpeg, Chromium's headless shell and the built examples (scripts/setup.sh --test).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

prev_rev=${PREV_REV:-6434fdc}
reps=${REPS:-3}
frames=${FRAMES:-300}
read -r -a clocks <<<"${CLOCKS:-clock vue svelte react react-framer-motion}"

# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh
comp_of() { if [[ $1 == clock ]]; then echo "$root/examples/compositions/clock"; else echo "$root/examples/compositions/clocks/$1"; fi; }

bench_context
work=$(mktemp -d)
trap 'git worktree remove --force "$work/prev-src" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

for c in "${clocks[@]}"; do
  [[ $c == clock || -s $(comp_of "$c")/dist/main.js ]] || { log "build the examples first: bash scripts/build-examples.sh"; exit 1; }
done

# shellcheck source=scripts/lib/releases.sh
source scripts/lib/releases.sh
log "building the previous release ($prev_rev) in a worktree"
build_prev_release "$prev_rev" "$work/helios-infra-prev"
log "building this revision ($rev)"
build_this_release "$work/helios-infra-this" "$work/helios-infra-prev"

# How many frames of a 1280x720 video do not show their own index in the strip at y = 16.
wrong_frames() {
  ffmpeg -v error -i "$1" -f rawvideo -pix_fmt gray - | python3 -c '
import sys
w, h = 1280, 720
raw = sys.stdin.buffer.read()
bad = 0
for k in range(len(raw) // (w * h)):
    f = raw[k * w * h:(k + 1) * w * h]
    n = sum(1 << b for b in range(24) if f[40 * w + 40 + 52 * b] >= 128)
    bad += n != k
print(bad)'
}

declare -A fps wrong settle
for ((r = 1; r <= reps; r++)); do
  for c in "${clocks[@]}"; do
    for who in prev this; do
      home=$work/home-$who-$c-$r
      out=$work/$who-$c-$r.mp4
      t0=$(now)
      "$work/helios-infra-$who" --home "$home" render "$(comp_of "$c")" -o "$out" --frames "0..$frames" \
        --fps 30 --size 1280x720 --chunks 1 --lossless >/dev/null 2>&1 || { log "$who $c failed"; exit 1; }
      t1=$(now)
      fps[$who,$c]+="$(calc "$frames / ($t1 - $t0)") "
      wrong[$who,$c]=$(wrong_frames "$out")
      if [[ $who == this ]]; then
        id=$("$work/helios-infra-this" --home "$home" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
        ms=$("$work/helios-infra-this" --home "$home" status "$id" --json |
          python3 -c 'import json,sys; c=(lambda d: d["chunks"] if isinstance(d.get("chunks"), list) else d["chunk_list"])(json.load(sys.stdin)); print(sum(x["stages"]["settle_ms"] for x in c))')
        settle[$c]+="$(calc "$ms / $frames") "
      fi
      rm -f "$out"
      log "rep $r $c $who: $(calc "$frames / ($t1 - $t0)") frames/s, ${wrong[$who,$c]} frames not showing their index"
    done
  done
done

table=$(
  echo "| clock | previous: frames/s | previous: frames not exact | this: frames/s | this: frames not exact | this ÷ previous | settle a frame (ms) |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  for c in "${clocks[@]}"; do
    # shellcheck disable=SC2086
    p=$(median ${fps[prev,$c]}); t=$(median ${fps[this,$c]}); s=$(median ${settle[$c]})
    printf '| %s | %.1f | %s of %s | %.1f | %s of %s | %.2f× | %.2f |\n' "$c" "$p" "${wrong[prev,$c]}" "$frames" \
      "$t" "${wrong[this,$c]}" "$frames" "$(calc "$t / $p")" "$s"
  done
)
block=$(
  echo "<!-- settle:start -->"
  echo "Run $started on $(nproc) cores: this revision $rev against the previous release $prev_rev, built"
  echo "in the same run; \`bash scripts/bench-settle.sh\` (REPS=$reps, medians; $frames frames, 1280×720,"
  echo "30 fps, lossless, one chunk, default browsers). \"Frames not exact\": frames whose strip does"
  echo "not read their own index. \"Settle a frame\": the settle step's real time summed over the"
  echo "chunk's browsers (\`settle_ms\` in the chunk report) ÷ frames."
  echo
  echo "$table"
  echo "<!-- settle:end -->"
)
printf '%s\n' "$block" >"$work/block.md"
python3 scripts/replace-block.py settle "$work/block.md"
echo "$table"
