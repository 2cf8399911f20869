#!/usr/bin/env bash
# What vendoring saves: a composition loading ten 1 MB images from a loopback origin that
# adds 100 ms to every answer, rendered in 20 chunks (two at a time, one browser each) —
# vendored at plan time (the default) against --no-vendor (every chunk's page fetches the
# images from the origin) in the same run, with this revision's release binary. Reports
# wall time, requests and bytes the origin served; every output is counted frame by frame.
# Rewrites the <!-- assets:start --> … <!-- assets:end --> block of docs/BENCHMARKS.md.
#
#   bash scripts/bench-assets.sh
#
# Knobs: REPS (2), CARGO_TARGET_DIR. Needs FFmpeg, Chromium's headless shell, python3.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
reps=${REPS:-2}

# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh

bench_context
work=$(mktemp -d)
origin_pid=
trap '[[ -n $origin_pid ]] && kill "$origin_pid" 2>/dev/null; rm -rf "$work"' EXIT

log "building this revision ($rev)"
cargo build --release --locked -q
bin=$work/helios-infra
cp "$target/release/helios-infra" "$bin"

# Ten 1 MB PNGs of noise (noise does not compress), and an origin that adds 100 ms to
# every answer and counts what it serves.
mkdir -p "$work/origin"
python3 - "$work/origin" <<'EOF'
import os, random, struct, sys, zlib
random.seed(7)
def png(path, w, h):
    raw = b"".join(b"\0" + bytes(random.getrandbits(8) for _ in range(w * 3)) for _ in range(h))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b""))
for i in range(10):
    png(os.path.join(sys.argv[1], f"img{i}.png"), 577, 577)
EOF
cat >"$work/origin.py" <<'EOF'
import http.server, os, sys, threading, time
root, counts = sys.argv[1], sys.argv[2]
lock = threading.Lock()
class H(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **k):
        super().__init__(*a, directory=root, **k)
    def log_message(self, *a):
        pass
    def do_GET(self):
        time.sleep(0.1)
        size = os.path.getsize(os.path.join(root, self.path.lstrip("/"))) if os.path.exists(os.path.join(root, self.path.lstrip("/"))) else 0
        with lock:
            with open(counts, "a") as f:
                f.write(f"{size}\n")
        super().do_GET()
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
EOF
python3 "$work/origin.py" "$work/origin" "$work/counts" >"$work/port" &
origin_pid=$!
for _ in $(seq 50); do [[ -s $work/port ]] && break; sleep 0.1; done
origin="http://127.0.0.1:$(cat "$work/port")"

mkdir -p "$work/comp"
{
  echo '<!doctype html><html><body style="margin:0;background:#fff">'
  for i in $(seq 0 9); do
    echo "<img src=\"$origin/img$i.png\" style=\"position:absolute;left:$((i * 60))px;top:0;width:56px;height:56px\">"
  done
  echo '<div id="t" style="position:absolute;top:80px;width:40px;height:40px;background:#000;animation:m 2s linear infinite"></div>'
  echo '<style>@keyframes m { to { transform: translateX(500px) } }</style></body></html>'
} >"$work/comp/index.html"

declare -A secs requests bytes
for ((r = 1; r <= reps; r++)); do
  for mode in vendored no-vendor; do
    flags=()
    [[ $mode == no-vendor ]] && flags=(--no-vendor)
    : >"$work/counts"
    t0=$(now)
    "$bin" --home "$work/home-$mode-$r" render "$work/comp" -o "$work/$mode.mp4" --frames 0..60 \
      --size 640x360 --chunks 20 --concurrency 2 --browsers 1 "${flags[@]}" >/dev/null 2>"$work/log" \
      || { cat "$work/log" >&2; exit 1; }
    t1=$(now)
    n=$(ffprobe -v error -count_packets -show_entries stream=nb_read_packets -of csv=p=0 "$work/$mode.mp4")
    [[ $n == 60 ]] || { log "$mode wrote $n frames"; exit 1; }
    secs[$mode]+="$(calc "$t1 - $t0") "
    requests[$mode]=$(wc -l <"$work/counts")
    bytes[$mode]=$(awk '{s += $1} END {print s + 0}' "$work/counts")
    log "rep $r $mode: $(calc "$t1 - $t0") s, ${requests[$mode]} requests, ${bytes[$mode]} bytes from the origin"
  done
done

table=$(
  echo "| mode | wall time (s) | requests to the origin | MB from the origin |"
  echo "|---|---:|---:|---:|"
  for mode in vendored no-vendor; do
    # shellcheck disable=SC2086
    printf '| %s | %.1f | %s | %.1f |\n' "$mode" "$(median ${secs[$mode]})" "${requests[$mode]}" "$(calc "${bytes[$mode]} / 1000000")"
  done
)
block=$(
  echo "<!-- assets:start -->"
  echo "Run $started on $(nproc) cores, revision $rev: \`bash scripts/bench-assets.sh\` (REPS=$reps,"
  echo "medians): a page with ten 1 MB images from a loopback origin adding 100 ms to every answer,"
  echo "60 frames at 640×360 in 20 chunks, two at a time, one browser each. Requests and bytes"
  echo "include the planner's own page load (a browser opens the page once at plan time in both modes)."
  echo
  echo "$table"
  echo "<!-- assets:end -->"
)
printf '%s\n' "$block" >"$work/block.md"
python3 scripts/replace-block.py assets "$work/block.md"
echo "$table"
