#!/usr/bin/env bash
# Bytes through the orchestrator for a 1,000-chunk job on S3, and the time of its stitch:
# the previous release (PREV_REV: download every segment, concat, upload the output) against
# this revision (in-bucket assembly), in the same run, on moto's S3 server on loopback.
# The orchestrator reaches the bucket through a byte-counting proxy; the workers (two
# `worker serve` processes of the same binary) reach it directly. Each job is rendered up
# to its stitch (HELIOS_FAILPOINTS=before-stitch), then `resume` is timed and its bytes
# counted. Both outputs must hold every frame and decode to the same frames.
# Rewrites the <!-- stitch-s3:start --> ... <!-- stitch-s3:end --> block of
# docs/BENCHMARKS.md.
#
#   bash scripts/setup.sh --test && bash scripts/bench-stitch-s3.sh
#
# Knobs: PREV_REV (24910ef), CHUNKS (1000), FRAMES (3000), SIZE (640x360), CARGO_TARGET_DIR,
# PREV_BIN (use this binary as the previous release instead of building PREV_REV).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

prev_rev=${PREV_REV:-24910ef}
chunks=${CHUNKS:-1000}
frames=${FRAMES:-3000}
size=${SIZE:-640x360}
peers=$root/target/peers/bin
[[ -x $peers/moto_server ]] || { echo "bench-stitch-s3: run scripts/setup.sh --test first (moto)" >&2; exit 1; }

log() { echo "bench-stitch-s3: $*" >&2; }
now() { date +%s.%N; }
calc() { awk "BEGIN { print $* }"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

started=$(date -u '+%Y-%m-%d %H:%M UTC')
rev=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- src Cargo.toml Cargo.lock || rev+=" + uncommitted changes"
target=${CARGO_TARGET_DIR:-target}
[[ $target == /* ]] || target=$root/$target
export CARGO_TARGET_DIR=$target
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  git worktree remove --force "$work/prev-src" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=scripts/lib/releases.sh
source scripts/lib/releases.sh
if [[ -n ${PREV_BIN:-} ]]; then
  cp "$PREV_BIN" "$work/helios-infra-prev"
else
  log "building the previous release ($prev_rev)"
  build_prev_release "$prev_rev" "$work/helios-infra-prev"
fi
log "building this revision"
build_this_release "$work/helios-infra-new"

moto_port=$(free_port)
"$peers/moto_server" -H 127.0.0.1 -p "$moto_port" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$moto_port") 2>/dev/null && break; sleep 0.1; done
direct=http://127.0.0.1:$moto_port
"$peers/python" -c "import boto3; boto3.client('s3', endpoint_url='$direct', region_name='us-east-1', aws_access_key_id='t', aws_secret_access_key='t').create_bucket(Bucket='bench')"

# A forwarding proxy that counts request and response body bytes, one request per
# connection; counts are read from its control file.
cat > "$work/proxy.py" <<'EOF'
import socket, sys, threading
listen, upstream, counts = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
sent = received = 0
lock = threading.Lock()
def read_request(c):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = c.recv(65536)
        if not d: return None, None
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    n = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"): n = int(line.split(b":")[1])
    while len(rest) < n:
        d = c.recv(65536)
        if not d: break
        rest += d
    return head, rest
def serve(c):
    global sent, received
    head, body = read_request(c)
    if head is None: c.close(); return
    lines = [l for l in head.split(b"\r\n") if not l.lower().startswith(b"connection:")]
    u = socket.create_connection(("127.0.0.1", upstream))
    u.sendall(b"\r\n".join(lines) + b"\r\nConnection: close\r\n\r\n" + body)
    answer = b""
    while True:
        d = u.recv(1 << 20)
        if not d: break
        answer += d
    u.close()
    i = answer.find(b"\r\n\r\n")
    with lock:
        sent += len(body)
        received += len(answer) - i - 4 if i >= 0 else 0
        open(counts, "w").write(f"{sent} {received}\n")
    c.sendall(answer)
    c.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", listen)); s.listen(256)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
EOF

renderer=(ffmpeg -v error -nostdin -f lavfi -i 'testsrc2=size={width}x{height}:rate={fps}'
  -vf 'trim=start_frame={start}:end_frame={end}' -c:v ffv1 '{output}')

declare -A secs sent received out_bytes md5s
for kind in prev new; do
  bin=$work/helios-infra-$kind
  dir=$work/$kind
  mkdir -p "$dir"
  for w in 1 2; do
    AWS_ACCESS_KEY_ID=t AWS_SECRET_ACCESS_KEY=t AWS_REGION=us-east-1 AWS_ENDPOINT_URL=$direct \
      "$bin" worker serve --listen 127.0.0.1:0 --no-auth > "$dir/worker.$w" 2>/dev/null &
    pids+=($!)
  done
  for _ in $(seq 100); do
    [[ $(cat "$dir"/worker.* 2>/dev/null | grep -c 'listening on') == 2 ]] && break
    sleep 0.1
  done
  urls=$(sed -n 's/^listening on //p' "$dir"/worker.* | paste -sd,)
  port=$(free_port)
  python3 "$work/proxy.py" "$port" "$moto_port" "$dir/counts" &
  pids+=($!)
  sleep 0.5
  export AWS_ACCESS_KEY_ID=t AWS_SECRET_ACCESS_KEY=t AWS_REGION=us-east-1 AWS_ENDPOINT_URL=http://127.0.0.1:$port
  log "rendering $kind ($chunks chunks on S3)"
  (cd "$dir" && HELIOS_FAILPOINTS=before-stitch "$bin" --home home render -o out.mp4 \
    --frames "0..$frames" --size "$size" --chunks "$chunks" --concurrency 2 --preset ultrafast \
    --storage "s3://bench/$kind" --adapter http --workers "$urls" -- "${renderer[@]}" \
    >/dev/null 2>&1) || true
  id=$("$bin" --home "$dir/home" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
  read -r s0 r0 < "$dir/counts"
  t0=$(now)
  (cd "$dir" && "$bin" --home home resume "$id" >/dev/null 2>"$dir/resume.log") || { cat "$dir/resume.log" >&2; exit 1; }
  t1=$(now)
  read -r s1 r1 < "$dir/counts"
  unset AWS_ENDPOINT_URL
  secs[$kind]=$(calc "$t1 - $t0")
  sent[$kind]=$((s1 - s0))
  received[$kind]=$((r1 - r0))
  out_bytes[$kind]=$(stat -c %s "$dir/out.mp4")
  n=$(ffprobe -v error -select_streams v:0 -count_packets -show_entries stream=nb_read_packets -of csv=p=0 "$dir/out.mp4")
  [[ $n == "$frames" ]] || { log "$kind: $n frames, expected $frames"; exit 1; }
  md5s[$kind]=$(ffmpeg -v error -nostdin -i "$dir/out.mp4" -map 0:v -f framemd5 - | grep -v '^#' | awk -F, '{print $NF}' | md5sum | cut -d' ' -f1)
  log "$kind: ${secs[$kind]} s, sent ${sent[$kind]}, received ${received[$kind]}, output ${out_bytes[$kind]}"
done
[[ ${md5s[prev]} == "${md5s[new]}" ]] || { log "decoded frames differ"; exit 1; }

row() {
  local kind=$1 label=$2
  local o=${out_bytes[$kind]}
  printf '| %s | %.2f s | %.2f ms | %s (%.1f%%) | %s (%.1f%%) |\n' "$label" "${secs[$kind]}" \
    "$(calc "${secs[$kind]} * 1000 / $chunks")" "${sent[$kind]}" "$(calc "${sent[$kind]} * 100 / $o")" \
    "${received[$kind]}" "$(calc "${received[$kind]} * 100 / $o")"
}
block=$work/block.md
{
  echo "<!-- stitch-s3:start -->"
  echo "### Stitching a $chunks-chunk job on S3: bytes through the orchestrator"
  echo
  echo "\`bash scripts/bench-stitch-s3.sh\` — $started, revision $rev against $prev_rev, $(nproc) cores."
  echo "$frames frames at $size (H.264 ultrafast) in $chunks chunks on two \`worker serve\`"
  echo "workers, storage on moto's S3 server on loopback. The orchestrator reaches the bucket"
  echo "through a byte-counting proxy, the workers directly; \`resume\` after the render is"
  echo "the stitch. Output: ${out_bytes[new]} bytes (this revision), ${out_bytes[prev]} (previous);"
  echo "both hold all $frames frames and decode to the same frames."
  echo
  echo "| stitch | time | per segment | orchestrator sent (of output) | orchestrator received (of output) |"
  echo "|---|---:|---:|---:|---:|"
  row prev "previous release: download, concat, upload"
  row new "this revision: in-bucket assembly, then one download to -o"
  echo
  echo "moto is a Python server on the same two cores, so times here are moto's more than S3's;"
  echo "the byte counts are what matters."
  echo "<!-- stitch-s3:end -->"
} > "$block"
python3 scripts/replace-block.py stitch-s3 "$block"
cat "$block"
