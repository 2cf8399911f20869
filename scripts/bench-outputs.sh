#!/usr/bin/env bash
# What the output kinds cost, on the bundled 10 s 1280x720 example (examples/compositions/
# dom-css, 300 frames at 30 fps), with this revision's release binary:
#
#   - GIF and AV1 (.mp4): one chunk (the default plan's browsers) against three chunks two at
#     a time with one browser each — wall time and output size. Every GIF frame of the
#     chunked output is checked against the one-chunk GIF (decoded, byte for byte); AV1
#     outputs are counted frame by frame.
#   - A PNG sequence (and a JPEG one) against the same job as H.264 (one chunk, default
#     browsers): frames/s, and what they weigh.
#
# Repetitions are interleaved; medians. Rewrites the <!-- outputs:start --> … <!-- outputs:end -->
# block of docs/BENCHMARKS.md.
#
#   bash scripts/bench-outputs.sh
#
# Knobs: REPS (2), FRAMES (300), COMP (examples/compositions/dom-css), CARGO_TARGET_DIR.
# Needs FFmpeg and Chromium's headless shell (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

reps=${REPS:-2}
frames=${FRAMES:-300}
comp=${COMP:-$root/examples/compositions/dom-css}

# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh

bench_context
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log "building this revision ($rev)"
cargo build --release --locked -q
bin=$work/helios-infra
cp "$target/release/helios-infra" "$bin"

# name → output and extra flags.
declare -A out flags
out[gif-1]=out.gif;      flags[gif-1]="--chunks 1"
out[gif-3]=out.gif;      flags[gif-3]="--chunks 3 --concurrency 2 --browsers 1"
out[av1-1]=out.mp4;      flags[av1-1]="--chunks 1 --codec av1"
out[av1-3]=out.mp4;      flags[av1-3]="--chunks 3 --concurrency 2 --browsers 1 --codec av1"
out[h264-1]=out.mp4;     flags[h264-1]="--chunks 1"
out[png-1]=f/%05d.png;   flags[png-1]="--chunks 1"
out[jpg-1]=f/%05d.jpg;   flags[jpg-1]="--chunks 1"
runs=(gif-1 gif-3 av1-1 av1-3 h264-1 png-1 jpg-1)

declare -A secs bytes
for ((r = 1; r <= reps; r++)); do
  for name in "${runs[@]}"; do
    dir=$work/$name-$r
    mkdir -p "$dir"
    t0=$(now)
    # shellcheck disable=SC2086
    (cd "$dir" && "$bin" --home "$dir/.helios" render "$comp" -o "${out[$name]}" \
      --frames "0..$frames" --size 1280x720 --fps 30 ${flags[$name]} >/dev/null 2>"$dir/log") \
      || { cat "$dir/log" >&2; log "$name failed"; exit 1; }
    t1=$(now)
    secs[$name]+="$(calc "$t1 - $t0") "
    case $name in
      png-*|jpg-*) n=$(find "$dir/f" -type f | wc -l); b=$(du -sb "$dir/f" | cut -f1) ;;
      gif-*) n=$(ffprobe -v error -count_frames -show_entries stream=nb_read_frames -of csv=p=0 "$dir/out.gif"); b=$(stat -c %s "$dir/out.gif") ;;
      *) n=$(ffprobe -v error -count_packets -show_entries stream=nb_read_packets -of csv=p=0 "$dir/out.mp4"); b=$(stat -c %s "$dir/out.mp4") ;;
    esac
    [[ $n == "$frames" ]] || { log "$name wrote $n frames, not $frames"; exit 1; }
    bytes[$name]=$b
    log "rep $r $name: $(calc "$t1 - $t0") s, $b bytes"
  done
  # The chunked GIF decodes to the one-chunk GIF's frames.
  decode() { ffmpeg -v error -i "$1" -vsync passthrough -f rawvideo -pix_fmt rgb24 - | md5sum | cut -d' ' -f1; }
  [[ $(decode "$work/gif-3-$r/out.gif") == $(decode "$work/gif-1-$r/out.gif") ]] \
    || { log "the chunked GIF differs from the one-chunk GIF"; exit 1; }
  for name in "${runs[@]}"; do [[ $r == "$reps" ]] || rm -rf "$work/$name-$r"; done
done

med() { # shellcheck disable=SC2086
  median ${secs[$1]}; }
mb() { calc "${bytes[$1]} / 1048576"; }
table=$(
  echo "| output | plan | wall time (s) | frames/s | size (MiB) |"
  echo "|---|---|---:|---:|---:|"
  for name in "${runs[@]}"; do
    s=$(med "$name")
    printf '| %s | %s | %.1f | %.1f | %.2f |\n' "${out[$name]}" "${flags[$name]}" "$s" "$(calc "$frames / $s")" "$(mb "$name")"
  done
)
ratios=$(
  printf -- '- GIF: 3 chunks take %.2f× the one-chunk time, output %.2f× the size (each part starts with a whole frame, not a difference); decoded frames identical to the one-chunk GIF, checked every repetition.\n' \
    "$(calc "$(med gif-3) / $(med gif-1)")" "$(calc "${bytes[gif-3]} / ${bytes[gif-1]}")"
  printf -- '- AV1: 3 chunks take %.2f× the one-chunk time, output %.2f× the size (each chunk starts on a keyframe).\n' \
    "$(calc "$(med av1-3) / $(med av1-1)")" "$(calc "${bytes[av1-3]} / ${bytes[av1-1]}")"
  printf -- '- PNG sequence: %.2f× the frames/s of the same job as H.264; JPEG: %.2f×.\n' \
    "$(calc "$(med h264-1) / $(med png-1)")" "$(calc "$(med h264-1) / $(med jpg-1)")"
)
block=$(
  echo "<!-- outputs:start -->"
  echo "Run $started on $(nproc) cores, revision $rev: \`bash scripts/bench-outputs.sh\` (REPS=$reps,"
  echo "medians), $(basename "$comp") at 1280×720, $frames frames at 30 fps. Wall time from the command to"
  echo "its output (palette task, chunks, join); frames/s = frames ÷ wall time."
  echo
  echo "$table"
  echo
  echo "$ratios"
  echo "<!-- outputs:end -->"
)
printf '%s\n' "$block" >"$work/block.md"
python3 scripts/replace-block.py outputs "$work/block.md"
echo "$table"
echo "$ratios"
