#!/usr/bin/env bash
# The bundled example: a 10 s 1280x720 test card rendered in chunks by FFmpeg alone.
#
#   HELIOS=target/release/helios-infra OUT=testcard.mp4 bash examples/testcard.sh [more render flags]
#
# The renderer is FFmpeg's testsrc2 pattern with a hue rotation and a blur driven by the
# frame's own timestamp, so every frame is distinct and each chunk renders exactly its
# frames: {start}..{end} are trimmed from the timeline, never re-timed.
set -euo pipefail
helios=${HELIOS:-helios-infra}
exec "$helios" render -o "${OUT:-testcard.mp4}" --frames 0..300 --size 1280x720 --fps 30 "$@" -- \
  ffmpeg -v error -nostdin -f lavfi -i 'testsrc2=size={width}x{height}:rate={fps}' \
  -vf 'trim=start_frame={start}:end_frame={end},hue=H=2*PI*t/5:s=1.5,gblur=sigma=2' \
  -c:v ffv1 '{output}'
