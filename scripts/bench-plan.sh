#!/usr/bin/env bash
# Is the default plan the fastest? `render` with no plan flags against a grid of hand-picked
# plans (chunks × workers × browsers) for every example and size of the throughput bench, and
# `batch` with no plan flags against a grid of worker slots × browsers, on the local adapter,
# same binary, same run, repetitions interleaved. Every output's frames are counted and its
# decoded frames compared with the default plan's (PSNR; different chunkings cut GOPs at
# different frames, so the encoded bits may differ while the pictures are the same frames).
# Rewrites the <!-- plan:start --> ... <!-- plan:end --> block of docs/BENCHMARKS.md.
#
#   bash scripts/bench-plan.sh
#
# Knobs: REPS (2), FRAMES_720 (150), FRAMES_1080 (90), EXAMPLES (as bench-throughput.sh),
# SIZES ("1280x720 1920x1080"), GRID (render plans "chunks:workers:browsers"), BATCH_ROWS
# (40), BATCH_GRID ("slots:browsers"), CARGO_TARGET_DIR. About 25 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

reps=${REPS:-2}
frames_720=${FRAMES_720:-150}
frames_1080=${FRAMES_1080:-90}
read -r -a examples <<<"${EXAMPLES:-canvas canvas@readback dom-css dom-canvas@readback helios-core}"
read -r -a sizes <<<"${SIZES:-1280x720 1920x1080}"
read -r -a grid <<<"${GRID:-1:1:2 1:1:3 1:1:4 2:2:1 2:2:2}"
batch_rows=${BATCH_ROWS:-40}
read -r -a batch_grid <<<"${BATCH_GRID:-1:3 2:1 2:2 3:1 4:1}"
fps=30

# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh
frames_for() { if [[ $1 == 1280x720 ]]; then echo "$frames_720"; else echo "$frames_1080"; fi; }

bench_context
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log "building this revision ($rev)"
cargo build --release --locked -q
cp "$target/release/helios-infra" "$work/helios-infra"
bin=$work/helios-infra
bash scripts/build-examples.sh >&2

declare -A times failed plan_of
# timed KEY CMD...: appends the wall seconds of CMD to times[KEY]; a failure is recorded.
timed() {
  local key=$1; shift
  local t0 t1 rc=0
  t0=$(now)
  "$@" >"$work/run.log" 2>&1 || rc=$?
  t1=$(now)
  if ((rc != 0)); then
    failed[$key]="exit $rc: $(grep -m1 -i 'error' "$work/run.log" || tail -n1 "$work/run.log")"
    log "$key failed: ${failed[$key]}"
    return 0
  fi
  times[$key]+=" $(calc "$t1 - $t0")"
}
render() { # OUT DIR SIZE N [FLAGS...]
  local out=$1 dir=$2 size=$3 n=$4; shift 4
  local home; home=$(mktemp -d "$work/home.XXXXXX")
  local rc=0
  "$bin" --home "$home" render "$dir" -o "$out" --frames "0..$n" --size "$size" --fps "$fps" "$@" || rc=$?
  # What the default plan chose, from the job's spec.
  if [[ $out == *-default.mp4 ]]; then
    "$bin" --home "$home" status --json | python3 -c '
import json, sys
j = json.load(sys.stdin)[-1]
print(j["chunk_count"], j["concurrency"], j["browsers"])' >"$out.plan" 2>/dev/null || true
  fi
  rm -rf "$home"
  return $rc
}
plan_flags() { # c:w:b -> flags
  local c w b
  IFS=: read -r c w b <<<"$1"
  echo "--chunks $c --concurrency $w --browsers $b"
}

# The batch: title-card variants, one row of props each.
rows_file=$work/rows.jsonl
for ((r = 1; r <= batch_rows; r++)); do
  printf '{"title":"Variant %d","score":%d}\n' "$r" "$((r * 97 % 65536))"
done >"$rows_file"
batch() { # OUTDIR [FLAGS...]
  local out=$1; shift
  local home; home=$(mktemp -d "$work/home.XXXXXX")
  mkdir -p "$out"
  local rc=0
  "$bin" --home "$home" batch examples/compositions/title-card --props-file "$rows_file" \
    -o "$out/{row}.mp4" --duration 1 "$@" || rc=$?
  rm -rf "$home"
  return $rc
}

for rep in $(seq "$reps"); do
  for ex in "${examples[@]}"; do
    for size in "${sizes[@]}"; do
      n=$(frames_for "$size") k=$ex/$size
      log "rep $rep/$reps: $k, $n frames (load $(cut -d' ' -f1-3 /proc/loadavg))"
      # shellcheck disable=SC2046
      timed "$k/default" render "$work/$ex-$size-default.mp4" "$(ex_dir "$ex")" "$size" "$n" $(ex_flags "$ex")
      for g in "${grid[@]}"; do
        # shellcheck disable=SC2046
        timed "$k/$g" render "$work/$ex-$size-$g.mp4" "$(ex_dir "$ex")" "$size" "$n" $(plan_flags "$g") $(ex_flags "$ex")
      done
    done
  done
  log "rep $rep/$reps: batch of $batch_rows rows"
  rm -rf "$work/batch-default"
  timed "batch/default" batch "$work/batch-default"
  for g in "${batch_grid[@]}"; do
    IFS=: read -r s b <<<"$g"
    rm -rf "$work/batch-$g"
    timed "batch/$g" batch "$work/batch-$g" --concurrency "$s" --browsers "$b"
  done
done

count() { ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames -of csv=p=0 "$1" 2>/dev/null || echo 0; }
psnr() {
  ffmpeg -hide_banner -nostdin -i "$1" -i "$2" -lavfi '[0][1]psnr' -f null - 2>&1 |
    sed -n 's/.*average:\([^ ]*\).*/\1/p' | tail -n1 | awk '{ if ($1 == "inf") print "inf"; else printf "%.1f", $1 }'
}
fps_of() { local key=$1 n=$2; read -r -a t <<<"${times[$key]:-}"; ((${#t[@]})) && calc "$n / $(median "${t[@]}")" || echo 0; }
spread() { # KEY: (max - min) / median of the wall times, in percent
  read -r -a t <<<"${times[$1]:-}"
  ((${#t[@]} > 1)) || { echo "—"; return; }
  printf '%s\n' "${t[@]}" | sort -g | awk -v m="$(median "${t[@]}")" '{a[NR]=$1} END {printf "%.0f%%", (a[NR]-a[1])/m*100}'
}

header="| example | size | frames | default plan (chunks:workers:browsers) | default |"
sep="|---|---|---:|---|---:|"
for g in "${grid[@]}"; do header+=" $g |"; sep+="---:|"; done
header+=" best of grid | default ÷ best | spread of default | frames checked |"
sep+="---|---:|---:|---|"
rows=
worst=
for ex in "${examples[@]}"; do
  for size in "${sizes[@]}"; do
    n=$(frames_for "$size") k=$ex/$size
    fd=$(fps_of "$k/default" "$n")
    plan=$(tr ' ' ':' <"$work/$ex-$size-default.mp4.plan" 2>/dev/null || echo "?")
    row="| $ex | ${size/x/×} | $n | $plan | $(printf '%.1f' "$fd") |"
    best=0 bestg=
    for g in "${grid[@]}"; do
      f=$(fps_of "$k/$g" "$n")
      if [[ -n ${failed[$k/$g]:-} ]]; then row+=" failed |"; continue; fi
      row+=" $(printf '%.1f' "$f") |"
      if awk -v a="$f" -v b="$best" 'BEGIN { exit !(a > b) }'; then best=$f bestg=$g; fi
    done
    ratio=$(awk -v a="$fd" -v b="$best" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "—" }')
    worst+="$ratio "
    # Frames: every output has n frames; the grid's pictures against the default's.
    ok=0 total=0 minpsnr=inf
    for g in default "${grid[@]}"; do
      f=$work/$ex-$size-$g.mp4
      [[ -f $f ]] || continue
      total=$((total + 1))
      [[ $(count "$f") == "$n" ]] && ok=$((ok + 1))
      if [[ $g != default ]]; then
        p=$(psnr "$f" "$work/$ex-$size-default.mp4")
        minpsnr=$(awk -v a="$p" -v b="$minpsnr" 'BEGIN { if (a == "inf") print b; else if (b == "inf" || a + 0 < b + 0) print a; else print b }')
      fi
    done
    row+=" $bestg ($(printf '%.1f' "$best")) | ${ratio}× | $(spread "$k/default") | $ok of $total outputs have $n frames; lowest PSNR to the default's $minpsnr dB |"
    rows+="$row"$'\n'
  done
done

bheader="| plan | wall time | per variant | ÷ default |"
brows=
bd=$(median ${times[batch/default]:-0})
brows+="| default (no plan flags) | $(printf '%.1f s' "$bd") | $(printf '%.2f s' "$(calc "$bd / $batch_rows")") | 1.00× | $(spread batch/default) |"$'\n'
bbest=
for g in "${batch_grid[@]}"; do
  IFS=: read -r s b <<<"$g"
  if [[ -n ${failed[batch/$g]:-} ]]; then brows+="| --concurrency $s --browsers $b | failed | | | |"$'\n'; continue; fi
  # shellcheck disable=SC2086
  t=$(median ${times[batch/$g]})
  brows+="| \`--concurrency $s --browsers $b\` | $(printf '%.1f s' "$t") | $(printf '%.2f s' "$(calc "$t / $batch_rows")") | $(awk -v a="$bd" -v b="$t" 'BEGIN { printf "%.2f×", b / a }') | $(spread "batch/$g") |"$'\n'
  if [[ -z $bbest ]] || awk -v a="$t" -v b="$bbest" 'BEGIN { exit !(a < b) }'; then bbest=$t; fi
done
bframes=0
for f in "$work"/batch-default/*.mp4; do [[ $(count "$f") == 24 ]] && bframes=$((bframes + 1)); done

notes=
for key in "${!failed[@]}"; do notes+="- $key: \`${failed[$key]}\`"$'\n'; done

block=$(mktemp)
cat >"$block" <<MD
<!-- plan:start -->
### Is the default plan the fastest?

\`bash scripts/bench-plan.sh\` — $started, revision $rev, $(nproc) cores, local adapter, one binary,
$reps repetitions interleaved, frames/s = frames ÷ median wall time of the whole \`render\`
(start-up, planning, stitch included). Each grid column is \`--chunks C --concurrency W --browsers B\`
written \`C:W:B\`; **default** passes no plan flags (what it chose is in the fourth column);
spread is (slowest − fastest) ÷ median of the default's runs: differences smaller than that
are noise.

$header
$sep
$rows
Batches: \`helios-infra batch examples/compositions/title-card --props-file rows.jsonl -o '{row}.mp4' --duration 1\`
over $batch_rows rows (24 frames each), against the same with \`--concurrency S --browsers B\`;
$bframes of $batch_rows default outputs have 24 frames.

$bheader spread |
|---|---:|---:|---:|---:|
$brows
$(if [[ -n $notes ]]; then printf 'Failed runs:\n\n%s' "$notes"; fi)
<!-- plan:end -->
MD
python3 scripts/replace-block.py plan "$block"
log "default ÷ best per row: $worst; batch default $bd s, best of grid $bbest s"
log "wrote the plan block of docs/BENCHMARKS.md"
