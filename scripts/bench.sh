#!/usr/bin/env bash
# Reproduces docs/BENCHMARKS.md: builds release, runs every benchmark on this machine and
# rewrites the file. Takes a few minutes on 2 cores. Usage: bash scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/helios-infra
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
reps=${REPS:-3}

now() { date +%s.%N; }
calc() { awk "BEGIN { print $* }"; }
# median of the arguments
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
# time_cmd VAR cmd… : run reps times in fresh state dirs, median wall seconds into VAR
time_cmd() {
  local var=$1; shift; local ts=()
  for i in $(seq "$reps"); do
    rm -rf "$work/run"; mkdir -p "$work/run"
    local t0; t0=$(now)
    (cd "$work/run" && "$@" >/dev/null 2>&1)
    ts+=("$(calc "$(now) - $t0")")
  done
  printf -v "$var" '%.2f' "$(median "${ts[@]}")"
}

testcard=(ffmpeg -v error -nostdin -f lavfi -i 'testsrc2=size={width}x{height}:rate={fps}'
  -vf 'trim=start_frame={start}:end_frame={end},hue=H=2*PI*t/5:s=1.5,gblur=sigma=2' -c:v ffv1 '{output}')

echo "bench: bundled example, 1 and 2 workers" >&2
time_cmd one "$bin" render -o out.mp4 --frames 0..300 --size 1280x720 --chunks 4 --concurrency 1 -- "${testcard[@]}"
time_cmd two "$bin" render -o out.mp4 --frames 0..300 --size 1280x720 --chunks 4 --concurrency 2 -- "${testcard[@]}"
# Peer: the same frames and encoder settings in one FFmpeg process, no chunking at all.
time_cmd single ffmpeg -v error -nostdin -y -f lavfi -i 'testsrc2=size=1280x720:rate=30' \
  -vf 'trim=start_frame=0:end_frame=300,hue=H=2*PI*t/5:s=1.5,gblur=sigma=2' \
  -c:v libx264 -preset medium -crf 20 -pix_fmt yuv420p out.mp4
speedup=$(calc "$one / $two")

echo "bench: stitching 100 segments" >&2
mkdir -p "$work/seg" && pushd "$work/seg" >/dev/null
"$bin" render -o src.mp4 --frames 0..3000 --size 1280x720 --chunks 100 --concurrency 2 --preset ultrafast --crf 16 -- \
  ffmpeg -v error -nostdin -f lavfi -i 'testsrc2=size={width}x{height}:rate={fps}' \
  -vf 'trim=start_frame={start}:end_frame={end}' -c:v ffv1 '{output}' >/dev/null 2>&1
id=$("$bin" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
mapfile -t segs < <("$bin" status "$id" --json | python3 -c '
import json,sys
for c in (lambda d: d["chunks"] if isinstance(d.get("chunks"), list) else d["chunk_list"])(json.load(sys.stdin)): print(".helios/storage/" + c["segment"])')
popd >/dev/null
segs=("${segs[@]/#/$work/seg/}")
bytes=$(cat "${segs[@]}" | wc -c)
time_cmd stitch "$bin" stitch -o stitched.mp4 "${segs[@]}"
time_cmd catt bash -c 'cat "$@" > cat.bin' _ "${segs[@]}"
printf "ffconcat version 1.0\n" > "$work/list.txt"
for s in "${segs[@]}"; do printf "file '%s'\n" "$s" >> "$work/list.txt"; done
time_cmd concat ffmpeg -v error -nostdin -y -f concat -safe 0 -i "$work/list.txt" -c copy out.mp4
mb=$(calc "$bytes / 1000000")

echo "bench: 1,000 chunks of a no-op renderer" >&2
reps=1 time_cmd e2e "$bin" render -o out.mp4 --frames 0..1000 --size 64x64 --chunks 1000 --concurrency 2 --preset ultrafast -- \
  ffmpeg -v error -nostdin -f lavfi -i 'color=c=black:size={width}x{height}:rate={fps}' \
  -vf 'trim=start_frame={start}:end_frame={end}' -c:v rawvideo '{output}'
inproc=$(cargo bench --locked -q --bench orchestrator_overhead 2>/dev/null | sed -n '/^|/,$p')

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
block=$(mktemp)
cat > "$block" <<MD
<!-- pipeline:start -->

## Pipeline

Measured by \`bash scripts/bench.sh\` (which rewrites this block) on $(nproc) cores ($cpu),
$(ffmpeg -version | head -1 | cut -d' ' -f1-3), release build. Wall times are the median of
$reps runs unless noted. Figures are for this machine only; compare the ratios.

### Bundled example: 1 vs 2 workers

\`examples/testcard.sh\`: 300 frames, 1280×720, h264 (crf 20, preset medium), 4 chunks.

| run | wall time | vs 1 worker |
|---|---:|---:|
| helios-infra, 1 worker | ${one} s | 1.00× |
| helios-infra, 2 workers | ${two} s | $(printf '%.2f' "$speedup")× (ideal 2.00×) |
| one FFmpeg process, no chunking (peer) | ${single} s | $(printf '%.2f' "$(calc "$one / $single")")× |

### Stitching 100 segments

100 h264 segments of 30 frames at 1280×720 ($(printf '%.1f' "$mb") MB in all).

| run | wall time | throughput | vs cat |
|---|---:|---:|---:|
| \`helios-infra stitch\` (probe + verify + concat -c copy + output check) | ${stitch} s | $(printf '%.0f' "$(calc "$mb / $stitch")") MB/s | $(printf '%.1f' "$(calc "$stitch / $catt")")× slower |
| \`ffmpeg -f concat -c copy\` alone | ${concat} s | $(printf '%.0f' "$(calc "$mb / $concat")") MB/s | $(printf '%.1f' "$(calc "$concat / $catt")")× slower |
| \`cat\` of the same files | ${catt} s | $(printf '%.0f' "$(calc "$mb / $catt")") MB/s | 1.0× |

### Orchestrator overhead per chunk

End to end, local adapter: 1,000 one-frame chunks at 64×64 with a renderer that does next to
nothing (one run): ${e2e} s, i.e. $(printf '%.1f' "$(calc "$e2e * 1000 / 1000")") ms per chunk
at concurrency 2 — a worker process, the renderer process, an FFmpeg encode and two ffprobe
calls per chunk, plus verification and the stitch of 1,000 segments.

In process (\`cargo bench --bench orchestrator_overhead\`): the scheduler and the job store
alone, with the sim adapter (no rendering; it still writes a placeholder segment and a report)
and in-memory object storage. Each row is the median of 5 runs, each a fresh process running
one job (peak RSS: the largest of the 5). Transactions are the job store's commits (one fsync
each for the file); after each durable run the database is reopened and every chunk must be
done with exactly one attempt ("lost updates" counts those that are not).

$inproc

The durable store group-commits: one writer thread applies every change queued while the
previous fsync ran and answers the callers after the commit, so a change is on disk before
the orchestrator acts on it, yet 20,000 changes take a few dozen fsyncs at concurrency 1,000.
At concurrency 1 there is nothing to group: two fsyncs per chunk.
<!-- pipeline:end -->
MD
# Replace this script's block in docs/BENCHMARKS.md, keeping the rest (other scripts' blocks).
python3 scripts/replace-block.py pipeline "$block"
echo "bench: wrote the pipeline block of docs/BENCHMARKS.md" >&2

# The scale model vs sim runs of the orchestrator: rewrites its own block (scale) of
# docs/BENCHMARKS.md and docs/scale-model.svg.
echo "bench: scale model vs sim runs" >&2
cargo bench --locked -q --bench scale_model >/dev/null
echo "bench: wrote the scale block of docs/BENCHMARKS.md and docs/scale-model.svg" >&2
