#!/usr/bin/env bash
# The orchestrator's stitch at scale: 100 and 1,000 segments of a 1280x720 H.264 job (the
# same 3,000 frames either way), for
#   - the previous release (PREV_REV, built from a git worktree into the same target dir),
#   - this revision's byte join (fragmented segments, the default for .mp4),
#   - this revision's concat path (--stitch concat),
# and `cat` of this revision's segment bytes into one file, all in the same run.
# Each job is rendered once, killed at its stitch (HELIOS_FAILPOINTS=before-stitch), and its
# --home is copied aside; every repetition restores that copy and times `resume`, which is
# the orchestrator's whole stitch: verification, join, audio (none here), the copy into
# storage. Every output is checked: frame count, and decoded frames equal across the three.
# Rewrites the <!-- stitch:start --> ... <!-- stitch:end --> block of docs/BENCHMARKS.md.
#
#   bash scripts/bench-stitch.sh
#
# Knobs: PREV_REV (24910ef, the commit before the byte join), REPS (3), CARGO_TARGET_DIR,
# PREV_BIN / NEW_BIN (use these binaries instead of building PREV_REV / this revision).
# About 15 minutes on 2 cores, most of it rendering the jobs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

prev_rev=${PREV_REV:-24910ef}
reps=${REPS:-3}
frames=3000

log() { echo "bench-stitch: $*" >&2; }
now() { date +%s.%N; }
calc() { awk "BEGIN { print $* }"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

started=$(date -u '+%Y-%m-%d %H:%M UTC')
rev=$(git rev-parse --short HEAD)
if [[ -n ${NEW_BIN:-} ]]; then
  rev=${NEW_REV:-$rev}
else
  git diff --quiet HEAD -- src Cargo.toml Cargo.lock || rev+=" + uncommitted changes"
fi
target=${CARGO_TARGET_DIR:-target}
[[ $target == /* ]] || target=$root/$target
export CARGO_TARGET_DIR=$target
work=$(mktemp -d)
trap 'git worktree remove --force "$work/prev-src" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

# shellcheck source=scripts/lib/releases.sh
source scripts/lib/releases.sh
if [[ -n ${PREV_BIN:-} ]]; then
  cp "$PREV_BIN" "$work/helios-infra-prev"
else
  log "building the previous release ($prev_rev) in a worktree"
  build_prev_release "$prev_rev" "$work/helios-infra-prev"
fi
if [[ -n ${NEW_BIN:-} ]]; then
  cp "$NEW_BIN" "$work/helios-infra-new"
else
  log "building this revision"
  build_this_release "$work/helios-infra-new"
fi
"$work/helios-infra-new" render --help | grep -q -- '--stitch' || { log "the new binary is not this revision"; exit 1; }

renderer=(ffmpeg -v error -nostdin -f lavfi -i 'testsrc2=size={width}x{height}:rate={fps}'
  -vf 'trim=start_frame={start}:end_frame={end}' -c:v ffv1 '{output}')

# prepare NAME BINARY CHUNKS [render flags]: renders a job up to its stitch, keeps its home.
prepare() {
  local name=$1 bin=$2 chunks=$3
  shift 3
  local dir=$work/$name
  mkdir -p "$dir" && pushd "$dir" >/dev/null
  log "rendering $name ($chunks chunks)"
  HELIOS_FAILPOINTS=before-stitch "$bin" --home home render -o out.mp4 --frames "0..$frames" \
    --size 1280x720 --chunks "$chunks" --concurrency 2 --preset ultrafast --crf 16 "$@" \
    -- "${renderer[@]}" >/dev/null 2>&1 || true
  "$bin" --home home status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])' > id
  cp -a home home.stitch
  popd >/dev/null
}

# stitch NAME BINARY: restores the home and times `resume` (seconds on stdout). The previous
# repetition's output is removed first, untimed, as `cat`'s is: freeing a file's blocks is
# the file system's work, not the stitch's (replacing an existing output adds it: ~40 ms for
# 134 MB on ext4 here).
stitch() {
  local dir=$work/$1 bin=$2
  rm -rf "$dir/home" "$dir/out.mp4" && cp -a "$dir/home.stitch" "$dir/home"
  sync
  local t0 t1
  t0=$(now)
  (cd "$dir" && "$bin" --home home resume "$(cat id)" >/dev/null 2>&1)
  t1=$(now)
  calc "$t1 - $t0"
}

check() {
  local out=$work/$1/out.mp4
  local n
  n=$(ffprobe -v error -select_streams v:0 -count_packets -show_entries stream=nb_read_packets -of csv=p=0 "$out")
  [[ $n == "$frames" ]] || { log "$1: $n frames, expected $frames"; exit 1; }
  ffmpeg -v error -nostdin -i "$out" -map 0:v -f framemd5 - | grep -v '^#' | awk -F, '{print $NF}' | md5sum | cut -d' ' -f1
}

declare -A secs bytes_of
for n in 100 1000; do
  prepare "prev-$n" "$work/helios-infra-prev" "$n"
  prepare "bytes-$n" "$work/helios-infra-new" "$n"
  prepare "concat-$n" "$work/helios-infra-new" "$n" --stitch concat
  mapfile -t segs < <("$work/helios-infra-new" --home "$work/bytes-$n/home" status "$(cat "$work/bytes-$n/id")" --json |
    python3 -c 'import json,sys
for c in (lambda d: d["chunks"] if isinstance(d.get("chunks"), list) else d["chunk_list"])(json.load(sys.stdin)): print(c["segment"])')
  segs=("${segs[@]/#/$work/bytes-$n/home.stitch/storage/}")
  bytes_of[$n]=$(cat "${segs[@]}" | wc -c)
  for kind in prev bytes concat cat; do secs[$kind-$n]=""; done
  for ((r = 0; r < reps; r++)); do
    for kind in prev bytes concat; do
      bin=$work/helios-infra-new
      [[ $kind == prev ]] && bin=$work/helios-infra-prev
      secs[$kind-$n]+=" $(stitch "$kind-$n" "$bin")"
    done
    sync
    t0=$(now)
    cat "${segs[@]}" > "$work/cat.bin"
    t1=$(now)
    secs[cat-$n]+=" $(calc "$t1 - $t0")"
    rm -f "$work/cat.bin"
  done
  ref=$(check "prev-$n")
  for kind in bytes concat; do
    [[ $(check "$kind-$n") == "$ref" ]] || { log "$kind-$n: decoded frames differ from the previous release's"; exit 1; }
  done
  for kind in prev bytes concat cat; do
    # shellcheck disable=SC2086
    secs[$kind-$n]=$(median ${secs[$kind-$n]})
  done
  log "$n segments: prev ${secs[prev-$n]} s, bytes ${secs[bytes-$n]} s, concat ${secs[concat-$n]} s, cat ${secs[cat-$n]} s"
done

row() {
  local n=$1 kind=$2 label=$3
  local s=${secs[$kind-$n]}
  local mb
  mb=$(calc "${bytes_of[$n]} / 1000000")
  printf '| %s | %s | %.3f s | %.2f ms | %.0f MB/s | %.2f× |\n' "$n" "$label" "$s" \
    "$(calc "$s * 1000 / $n")" "$(calc "$mb / $s")" "$(calc "${secs[cat-$n]} / $s")"
}

block=$work/block.md
{
  echo "<!-- stitch:start -->"
  echo "### Stitching 100 and 1,000 segments (orchestrator time)"
  echo
  echo "\`bash scripts/bench-stitch.sh\` — $started, revision $rev against $prev_rev, $(nproc) cores,"
  echo "median of $reps. A job of $frames frames at 1280×720 (H.264 ultrafast, crf 16) is rendered"
  echo "in 100 or 1,000 chunks and killed at its stitch; each repetition restores it and times"
  echo "\`resume\`, i.e. everything the orchestrator does from there: verifying the segments,"
  echo "joining them, writing the output and keeping it in storage (a local folder here)."
  echo "\`cat\` copies the same segment bytes into one file. Every output holds all $frames frames"
  echo "and decodes to the same frames as the previous release's."
  echo
  echo "| segments | stitch | time | per segment | throughput | ÷ cat's time |"
  echo "|---:|---|---:|---:|---:|---:|"
  for n in 100 1000; do
    row "$n" prev "previous release (fetch, hash, ffprobe each, concat demuxer, probe output)"
    row "$n" concat "this revision, \`--stitch concat\` (hash each, concat demuxer, probe output)"
    row "$n" bytes "this revision, byte join (each segment read once, hashed, parsed and written at its offset)"
    row "$n" cat "\`cat\` of the same segment bytes"
  done
  echo
  echo "Segment bytes: ${bytes_of[100]} (100 segments), ${bytes_of[1000]} (1,000 segments)."
  echo "<!-- stitch:end -->"
} > "$block"
python3 scripts/replace-block.py stitch "$block"
cat "$block"
