#!/usr/bin/env bash
# Time to first playable frame: how soon a render can be watched, against how long the
# job takes (which is when anything could be seen before live playback). For each case a
# `ui` and a render start together; a client polls the live playlist
# (/jobs/ID/live.m3u8) every 50 ms and, as soon as it lists a segment, has FFmpeg's HLS
# demuxer decode the first frame from it — that moment is "first playable". The first
# chunk's commit time comes from the job store (its committed attempt's end). At the end
# every frame of the live playlist is checked against the output (framemd5).
# Target: first playable within the first chunk's time plus under 1 s.
# Rewrites the <!-- live:start --> … <!-- live:end --> block of docs/BENCHMARKS.md.
#
#   bash scripts/bench-live.sh
#
# Knobs: REPS (2), CARGO_TARGET_DIR. Needs FFmpeg, Chromium's headless shell and python3.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
reps=${REPS:-2}

# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh

bench_context
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log "building this revision ($rev)"
cargo build --release --locked -q
bin=$work/helios-infra
cp "$target/release/helios-infra" "$bin"

# name:seconds of video:extra render flags
cases=("dom-css 10 s, default plan:10:" "dom-css 2 min, 24 chunks:120:--chunks 24")
rows=()
for case in "${cases[@]}"; do
  IFS=: read -r name secs flags <<<"$case"
  for ((r = 1; r <= reps; r++)); do
    home=$work/home-$r-$secs
    row=$(python3 - "$bin" "$home" "$root/examples/compositions/dom-css" "$work/out-$secs.mp4" "$secs" "$flags" <<'EOF'
import json, subprocess, sys, time, urllib.request

binary, home, comp, out, secs, flags = sys.argv[1:7]
ui = subprocess.Popen([binary, "--home", home, "--json", "ui", "--listen", "127.0.0.1:0"],
                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
base = json.loads(ui.stdout.readline())["url"].rstrip("/")
t0 = time.time()
render = subprocess.Popen([binary, "--home", home, "--json", "render", comp, "-o", out,
                           "--duration", secs] + flags.split(),
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

def get(path):
    with urllib.request.urlopen(base + path, timeout=10) as r:
        return r.read().decode()

job = None
while job is None:
    jobs = json.loads(get("/api/jobs"))
    job = jobs[0]["id"] if jobs else None
    time.sleep(0.02)
playable = None
# Until it plays: a job of one chunk may finish between two polls (its playlist then plays
# whole, and that moment is when it was first seen playable).
deadline = time.time() + 3600
while playable is None and time.time() < deadline:
    text = get(f"/jobs/{job}/live.m3u8")
    if any(l.startswith("live/") for l in text.splitlines()):
        # The first frame decoded is the first frame a player can show. (Asking for all of
        # the first segment's frames would wait for the next segment: the decoder holds its
        # last frames until more data, or the end of the stream, arrives.)
        n = 1
        p = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-live_start_index", "0", "-i",
                            base + f"/jobs/{job}/live.m3u8", "-frames:v", str(n), "-f", "framemd5", "-"],
                           capture_output=True, text=True)
        frames = [l for l in p.stdout.splitlines() if not l.startswith("#")]
        assert p.returncode == 0 and len(frames) == n, p.stderr
        playable = time.time() - t0
    else:
        time.sleep(0.05)
render.wait()
total = time.time() - t0
assert render.returncode == 0, "render failed"
assert playable is not None, "nothing played within an hour"
st = json.loads(subprocess.run([binary, "--home", home, "--json", "status", job],
                               capture_output=True, text=True, check=True).stdout)
c0 = min(st["chunks"], key=lambda c: c["index"])
won = [a for a in c0["attempt_list"] if a["attempt"] == c0["committed_attempt"]][0]
started = min(a["started_ms"] for c in st["chunks"] for a in c["attempt_list"]) / 1000
chunk0 = won["ended_ms"] / 1000 - t0
# Every frame: the finished live playlist against the output.
def md5s(src, pre=()):
    p = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", *pre, "-i", src, "-map", "0:v:0",
                        "-f", "framemd5", "-"], capture_output=True, text=True, check=True)
    return [l.rsplit(",", 1)[1].strip() for l in p.stdout.splitlines() if not l.startswith("#")]
live = md5s(base + f"/jobs/{job}/live.m3u8", ("-live_start_index", "0"))
assert live == md5s(out) and len(live) == st["frames"], "live frames differ from the output"
ui.kill()
print(f'{st["frames"]} {len(st["chunks"])} {chunk0:.2f} {playable:.2f} {total:.2f} {started - t0:.2f}')
EOF
    )
    log "$name rep $r: frames chunks chunk0_s playable_s total_s first_attempt_s = $row"
    rows+=("$name:$row")
  done
done

table=$(
  echo "| case | frames | chunks | first chunk committed (s) | first playable (s) | playable − committed (s) | job total (s) | playable ÷ total |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  for row in "${rows[@]}"; do
    name=${row%%:*}
    read -r frames chunks c0 play total _ <<<"${row#*:}"
    printf '| %s | %s | %s | %.2f | %.2f | %.2f | %.1f | %.2f |\n' \
      "$name" "$frames" "$chunks" "$c0" "$play" "$(calc "$play - $c0")" "$total" "$(calc "$play / $total")"
  done
)
within=0
for row in "${rows[@]}"; do
  read -r _ _ c0 play _ <<<"${row#*:}"
  awk "BEGIN { exit !($play - $c0 < 1) }" && within=$((within + 1))
done
block=$(
  echo "<!-- live:start -->"
  echo "Run $started on $(nproc) cores, revision $rev: \`bash scripts/bench-live.sh\` (REPS=$reps, every"
  echo "run shown). The bundled dom-css example on local workers, a \`ui\` beside the render; times"
  echo "from the moment \`render\` was started. *First playable*: a client polling"
  echo "\`/jobs/ID/live.m3u8\` every 50 ms saw a segment and FFmpeg's HLS demuxer decoded the first frame from it."
  echo "*First chunk committed*: the end of chunk 0's committed attempt in the job store. *Job"
  echo "total*: until \`render\` exited, output written — when the previous release first let"
  echo "anything be seen. Every frame of the finished live playlist was checked against the"
  echo "output (framemd5). Target: first playable within the first chunk's time plus under 1 s."
  echo
  echo "$table"
  echo
  echo "$within of ${#rows[@]} runs within the first chunk plus 1 s. A plan of one chunk (the 10 s"
  echo "example's default on 2 cores) has nothing to show before its only chunk, so it plays when"
  echo "the whole video does; with chunks to wait for, the video plays after the first one."
  echo "<!-- live:end -->"
)
printf '%s\n' "$block" >"$work/block.md"
python3 scripts/replace-block.py live "$work/block.md"
log "wrote docs/BENCHMARKS.md"
