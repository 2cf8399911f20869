#!/usr/bin/env bash
# Per-worker throughput of the browser renderer: frames/s of one chunk on one worker for the
# canvas, dom-css and helios-core examples at 1280x720 and 1920x1080, for
#   - the previous release (PREV_REV, built from a git worktree into the same target dir),
#   - this revision with one chunk and one worker (its default browsers per worker),
#   - this revision with no plan flags at all (the default plan: chunks x workers x browsers),
#   - the official Helios renderer in its dom and canvas modes (scripts/bench-helios),
#   - the capture ceiling: seek + capture only, no decoding or encoding, with the same number
#     of browsers as this revision's default (examples/capture_ceiling.rs),
#   - the encoder alone on the same picture, and from it and the ceiling the bound these cores
#     put on any pipeline that captures and encodes that way,
# all in the same run, repetitions interleaved so background load hits every column alike.
# Beside each figure: cores busy (machine-wide CPU time ÷ wall time, from /proc/stat).
# Every helios-infra output is checked: frame count, and its decoded frames compared with
# the previous release's (same encoder settings, one chunk: identical input frames give
# identical frames out). Rewrites the <!-- throughput:start --> ... <!-- throughput:end -->
# block of docs/BENCHMARKS.md.
#
#   bash scripts/bench-throughput.sh
#
# `canvas@readback` is the canvas example captured by canvas read-back (--capture-canvas
# '#stage', both releases; the ceiling with CAPTURE_CANVAS): its Helios columns are the
# canvas example's.
#
# Knobs: PREV_REV (6ca873d, the commit before the throughput work), REPS (3), FRAMES_720
# (300), FRAMES_1080 (150), EXAMPLES ("canvas dom-css helios-core"), SIZES
# ("1280x720 1920x1080"), HELIOS (1: run the Helios renderer), CARGO_TARGET_DIR.
# Needs what scripts/bench-browser.sh needs. About 60-70 minutes on 2 cores (two release builds included).
set -euo pipefail
export npm_config_update_notifier=false
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

prev_rev=${PREV_REV:-6ca873d}
reps=${REPS:-3}
frames_720=${FRAMES_720:-300}
frames_1080=${FRAMES_1080:-150}
read -r -a examples <<<"${EXAMPLES:-canvas canvas@readback dom-css dom-canvas@readback helios-core}"
read -r -a sizes <<<"${SIZES:-1280x720 1920x1080}"
run_helios=${HELIOS:-1}
fps=30

# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh
ex_ceiling_env() { [[ $1 == *@readback ]] && echo "CAPTURE_CANVAS=#stage" || echo "CAPTURE_CANVAS_UNSET=1"; }
# What the previous release renders for an example: the same. Except dom-canvas@readback (the
# dom-css scene drawn into a <canvas layoutsubtree>), which needs HTML-in-Canvas, which the
# previous release does not switch on: it renders the dom-css page, the same picture, by
# screenshots (and so do the Helios columns).
prev_ex() { [[ $1 == dom-canvas@readback ]] && echo dom-css || echo "$1"; }
frames_for() { if [[ $1 == 1280x720 ]]; then echo "$frames_720"; else echo "$frames_1080"; fi; }
# Busy jiffies (user+nice+system+irq+softirq+steal) of the whole machine.
busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
hz=$(getconf CLK_TCK)

started=$(date -u '+%Y-%m-%d %H:%M UTC')
rev=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- src Cargo.toml Cargo.lock examples/capture_ceiling.rs || rev+=" + uncommitted changes"
target=${CARGO_TARGET_DIR:-target}
[[ $target == /* ]] || target=$root/$target
export CARGO_TARGET_DIR=$target
work=$(mktemp -d)
trap 'git worktree remove --force "$work/prev-src" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
raw_log=${RAW_LOG:-target/bench-throughput-raw.txt}

# --- builds -----------------------------------------------------------------------------
# shellcheck source=scripts/lib/releases.sh
source scripts/lib/releases.sh
log "building the previous release ($prev_rev) in a worktree"
build_prev_release "$prev_rev" "$work/helios-infra-prev"
log "building this revision ($rev) and the capture-ceiling example"
build_this_release "$work/helios-infra-this" "$work/helios-infra-prev"
cargo build --release --locked -q --example capture_ceiling
bin=$work/helios-infra-this
prev=$work/helios-infra-prev
ceiling=$target/release/examples/capture_ceiling
prev_rev_full=$(git rev-parse --short "$prev_rev")

log "building the examples"
bash scripts/build-examples.sh >&2
if [[ $run_helios == 1 ]]; then
  (cd scripts/bench-helios && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --ignore-scripts >&2)
fi

# chunk_stages BIN HOME: the `stages` of the first chunk of the newest job in HOME, as JSON
# (`{}` when it has none).
chunk_stages() {
  local id
  id=$("$1" --home "$2" status --json | python3 -c 'import json, sys; print(json.load(sys.stdin)[-1]["id"])')
  "$1" --home "$2" status "$id" --json | python3 -c 'import json, sys; print(json.dumps((lambda d: d["chunks"] if isinstance(d.get("chunks"), list) else d["chunk_list"])(json.load(sys.stdin))[0].get("stages", {})))'
}
# worker_fps OUT: after a timed one-chunk run of this revision (with KEEP_HOME, so render left
# its home in OUT.home), appends that chunk's frames/s as its worker reports it (browser launch
# to verified segment: no planning, probe, stitching or download) to OUT.worker. Read here,
# outside the timing, so the lookup does not count against the run.
keep_homes=${KEEP_HOME:-}
worker_fps() {
  local out=$1 home
  [[ -f $out.home ]] || return 0
  home=$(<"$out.home")
  chunk_stages "$bin" "$home" | python3 -c 'import json, sys; f = json.load(sys.stdin).get("frames_per_s"); f and print(f)' >>"$out.worker" || true
  [[ -n $keep_homes ]] || rm -rf "$home" "$out.home"
}

# timed LABEL KEY CMD...: runs CMD, appends wall seconds and cores busy to times[KEY] and
# cpu[KEY]; on failure logs its output and records the error in failed[KEY].
declare -A times cpu failed
timed() {
  local key=$1; shift
  local t0 b0 t1 b1 rc=0
  b0=$(busy); t0=$(now)
  "$@" >"$work/run.log" 2>&1 || rc=$?
  t1=$(now); b1=$(busy)
  if ((rc != 0)); then
    failed[$key]="exit $rc: $(grep -m1 -i 'error' "$work/run.log" || tail -n1 "$work/run.log")"
    log "$key failed: ${failed[$key]}"
    return 0
  fi
  times[$key]+=" $(calc "$t1 - $t0")"
  cpu[$key]+=" $(calc "($b1 - $b0) / $hz / ($t1 - $t0)")"
  echo "$key wall $(calc "$t1 - $t0") cores $(calc "($b1 - $b0) / $hz / ($t1 - $t0)")" >>"$raw_log"
}
render() { # BIN OUT DIR SIZE N [FLAGS...]
  local b=$1 out=$2 dir=$3 size=$4 n=$5; shift 5
  local home; home=$(mktemp -d "$work/home.XXXXXX")
  "$b" --home "$home" render "$dir" -o "$out" --frames "0..$n" --size "$size" --fps "$fps" "$@"
  local rc=$?
  if [[ -z ${KEEP_HOME:-} ]]; then rm -rf "$home"; else echo "$home" >"$out.home"; fi
  return $rc
}
peer() { # OUT DIR W H N MODE [TIMEOUT]
  HELIOS_PEER_CHROMIUM=/usr/lib/chromium/chromium HELIOS_PEER_TIMEOUT=${7:-600} \
    node scripts/bench-helios/render.mjs "$2" "$1" "$3" "$4" "$fps" "$5" "$6"
}
# The Helios renderer's dom mode pauses CDP virtual time and then asks for screenshots,
# which Debian's Chromium never answers (scripts/bench-helios/probe-cdp.mjs shows why):
# try it once on 10 frames and skip it everywhere if it cannot render those.
helios_modes=(canvas)
dom_note=
if [[ $run_helios == 1 ]]; then
  if peer "$work/dom-probe.mp4" examples/compositions/dom-css 1280 720 10 dom 60 >"$work/dom-probe.log" 2>&1; then
    helios_modes=(dom canvas)
  else
    dom_note=$(grep -m1 '^render.mjs:' "$work/dom-probe.log" || tail -n1 "$work/dom-probe.log")
    log "Helios dom mode cannot render here, skipped: $dom_note"
  fi
fi
default_browsers=$(nproc | awk '{ n = $1; if (n < 2) n = 2; if (n > 4) n = 4; print n }')

for rep in $(seq "$reps"); do
  for ex in "${examples[@]}"; do
    dir=$(ex_dir "$ex")
    # shellcheck disable=SC2046
    for size in "${sizes[@]}"; do
      n=$(frames_for "$size") w=${size%x*} h=${size#*x} k=$ex/$size
      log "rep $rep/$reps: $k, $n frames (load $(cut -d' ' -f1-3 /proc/loadavg))"
      pex=$(prev_ex "$ex")
      timed "$k/prev" render "$prev" "$work/$ex-$size-prev.mp4" "$(ex_dir "$pex")" "$size" "$n" --chunks 1 --concurrency 1 $(ex_flags "$pex")
      KEEP_HOME=1 timed "$k/new" render "$bin" "$work/$ex-$size-new.mp4" "$dir" "$size" "$n" --chunks 1 --concurrency 1 $(ex_flags "$ex")
      worker_fps "$work/$ex-$size-new.mp4"
      timed "$k/new-np" render "$bin" "$work/$ex-$size-new-np.mp4" "$dir" "$size" "$n" --chunks 1 --concurrency 1 --no-probe $(ex_flags "$ex")
      timed "$k/default" render "$bin" "$work/$ex-$size-default.mp4" "$dir" "$size" "$n" $(ex_flags "$ex")
      # What a render costs whatever its length: the same render of 2 frames, no probe.
      timed "$k/fixed" render "$bin" "$work/$ex-$size-fixed.mp4" "$dir" "$size" 2 --chunks 1 --concurrency 1 --no-probe $(ex_flags "$ex")
      timed "$k/ceiling" env "$(ex_ceiling_env "$ex")" "$ceiling" "$dir" "$size" "$n" "$default_browsers"
      # The encoder alone, at the worker's settings, on the same picture as raw RGBA frames
      # (the previous release's output decoded; its frames are what the worker feeds FFmpeg,
      # up to the encoder's own loss).
      ffmpeg -v error -nostdin -y -i "$work/$ex-$size-prev.mp4" -f rawvideo -pix_fmt rgba "$work/raw.rgba" || true
      timed "$k/encoder" ffmpeg -v error -nostdin -f rawvideo -pix_fmt rgba -s "$size" -framerate "$fps" \
        -i "$work/raw.rgba" -c:v libx264 -preset medium -crf 20 -pix_fmt yuv420p -f null -
      rm -f "$work/raw.rgba"
      if [[ $run_helios == 1 && $ex != *@* ]]; then
        for mode in "${helios_modes[@]}"; do
          [[ -n ${failed[$k/helios-$mode]:-} ]] || timed "$k/helios-$mode" peer "$work/$ex-$size-$mode.mp4" "$dir" "$w" "$h" "$n" "$mode"
        done
      fi
    done
  done
done
# The ceiling's own figure excludes browser start-up; its wall time above does not. Re-read
# it from its output for the table: frames/s from the first frame.
declare -A ceiling_fps
for ex in "${examples[@]}"; do
  for size in "${sizes[@]}"; do
    n=$(frames_for "$size")
    ceiling_fps[$ex/$size]=$(env "$(ex_ceiling_env "$ex")" "$ceiling" "$(ex_dir "$ex")" "$size" "$n" "$default_browsers" 2>/dev/null || echo 0)
  done
done

# --- where a frame's CPU goes: every process's CPU time, previous vs this, 720p, 1 chunk ---
declare -A breakdown stages
for ex in "${examples[@]}"; do
  n=$(frames_for 1280x720)
  for v in prev new; do
    b=$bin e=$ex; [[ $v == prev ]] && b=$prev e=$(prev_ex "$ex")
    home=$(mktemp -d "$work/home.XXXXXX")
    log "CPU by process: $ex, $v"
    # shellcheck disable=SC2046
    breakdown[$ex/$v]=$(python3 scripts/cpu-by-process.py -- "$b" --home "$home" render "$(ex_dir "$e")" \
      -o "$work/cpu.mp4" --frames "0..$n" --size 1280x720 --fps "$fps" --chunks 1 --concurrency 1 $(ex_flags "$e"))
    if [[ $v == new ]]; then
      stages[$ex]=$(chunk_stages "$bin" "$home")
    fi
    rm -rf "$home"
  done
done

# --- checks and table -------------------------------------------------------------------
count() { ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames -of csv=p=0 "$1" 2>/dev/null || echo 0; }
psnr() { # average PSNR (dB) of $1's decoded frames against $2's
  ffmpeg -hide_banner -nostdin -i "$1" -i "$2" -lavfi '[0][1]psnr' -f null - 2>&1 |
    sed -n 's/.*average:\([^ ]*\).*/\1/p' | tail -n1 | awk '{ if ($1 == "inf") print "inf"; else printf "%.1f", $1 }'
}
same_frames() { # how many decoded frames of $1 equal $2's
  paste <(ffmpeg -v error -i "$1" -f framemd5 - | grep -v '^#' | awk -F', *' '{print $6}') \
        <(ffmpeg -v error -i "$2" -f framemd5 - | grep -v '^#' | awk -F', *' '{print $6}') |
    awk '$1 == $2 { s++ } END { print s + 0 }'
}
cell() { # KEY N: "fps (cores)" or "failed"
  local key=$1 n=$2
  [[ -z ${failed[$key]:-} && -n ${times[$key]:-} ]] || { echo "failed²"; return; }
  read -r -a t <<<"${times[$key]}"; read -r -a c <<<"${cpu[$key]}"
  printf '%.1f (%.2f)' "$(calc "$n / $(median "${t[@]}")")" "$(median "${c[@]}")"
}
fps_of() { local key=$1 n=$2; read -r -a t <<<"${times[$key]:-}"; ((${#t[@]})) && calc "$n / $(median "${t[@]}")" || echo 0; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2f×", a / b; else print "—" }'; }

# The fastest any pipeline can be that captures this way and encodes at these settings on
# these cores: the cores ÷ (Chromium's CPU a frame in the ceiling run + the encoder's CPU a
# frame alone). Decoding, transport and the orchestrator are left out, so it is generous.
cpu_per_frame() { # KEY N: median cores busy × median wall ÷ N
  read -r -a t <<<"${times[$1]:-}"; read -r -a c <<<"${cpu[$1]:-}"
  ((${#t[@]})) && calc "$(median "${c[@]}") * $(median "${t[@]}") / $2" || echo 0
}
rows= checks= notes= bound_rows=
for ex in "${examples[@]}"; do
  for size in "${sizes[@]}"; do
    n=$(frames_for "$size") k=$ex/$size hk=$(prev_ex "$ex") hk=${hk%@*}/$size
    fp=$(fps_of "$k/prev" "$n") fnw=$(fps_of "$k/new" "$n") fd=$(fps_of "$k/default" "$n") fnp=$(fps_of "$k/new-np" "$n")
    fhd=$(fps_of "$hk/helios-dom" "$n") fhc=$(fps_of "$hk/helios-canvas" "$n") fc=${ceiling_fps[$k]}
    hd="—" hc="—"
    if [[ $run_helios == 1 ]]; then
      hc=$(cell "$hk/helios-canvas" "$n")
      if [[ -n $dom_note ]]; then hd="failed³"; else hd=$(cell "$hk/helios-dom" "$n"); fi
    fi
    rows+="| $ex | ${size/x/×} | $n | $(cell "$k/prev" "$n") | $(cell "$k/new" "$n") | $(cell "$k/default" "$n") | $hd | $hc | $(printf '%.1f' "$fc") | $(ratio "$fnw" "$fp") | $(ratio "$fnw" "$fhd") | $(ratio "$fnw" "$fhc") | $(ratio "$fnw" "$fc") |"$'\n'
    read -r -a ct <<<"${cpu[$k/ceiling]:-0}"
    cap=$(awk -v c="$(median "${ct[@]}")" -v f="$fc" 'BEGIN { print (f > 0 ? c / f : 0) }')
    enc=$(cpu_per_frame "$k/encoder" "$n")
    bound=$(awk -v n="$(nproc)" -v a="$cap" -v b="$enc" 'BEGIN { print (a + b > 0 ? n / (a + b) : 0) }')
    # shellcheck disable=SC2046
    fw=$(median $(cat "$work/$ex-$size-new.mp4.worker" 2>/dev/null || echo 0))
    outside=$(awk -v n="$n" -v a="$fnw" -v w="$fw" 'BEGIN { if (a > 0 && w > 0) printf "%.1f s", n / a - n / w; else print "—" }')
    read -r -a ft <<<"${times[$k/fixed]:-0}"
    fixed=$(median "${ft[@]}")
    reach=$(awk -v n="$n" -v b="$bound" -v f="$fixed" 'BEGIN { if (b > 0) printf "%.2f×", (n / b) / (n / b + f); else print "—" }')
    bound_rows+="| $ex | ${size/x/×} | $(printf '%.1f' "$(calc "$cap * 1000")") | $(printf '%.1f' "$(calc "$enc * 1000")") | $(printf '%.1f' "$bound") | $(printf '%.1f' "$(calc "2 * $fp")") | $(ratio "$bound" "$fp") | $(ratio "$fnw" "$fp") | $(ratio "$bound" "$fc") | $(ratio "$fnw" "$bound") | $(ratio "$fnp" "$bound") | $(ratio "$fd" "$bound") | $(printf '%.1f' "$fw") | $(ratio "$fw" "$bound") | $outside | $(printf '%.2f s' "$fixed") | $reach |"$'\n'
    p=$work/$ex-$size-prev.mp4
    checks+="| $ex | ${size/x/×} | $(count "$p") | $(count "$work/$ex-$size-new.mp4") | $(same_frames "$work/$ex-$size-new.mp4" "$p") of $n | $(psnr "$work/$ex-$size-new.mp4" "$p") | $(count "$work/$ex-$size-default.mp4") |"$'\n'
  done
done
cpu_rows= stage_rows=
for ex in "${examples[@]}"; do
  n=$(frames_for 1280x720)
  for v in prev new; do
    label=previous; [[ $v == new ]] && label=this
    cpu_rows+=$(python3 - "$ex" "$label" "$n" "${breakdown[$ex/$v]}" <<'PY'
import json, sys
ex, label, n, raw = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
d = json.loads(raw); c = d["cpu_s"]; wall = d["wall_s"]
ms = lambda k: c.get(k, 0.0) * 1000 / n
total = sum(c.values()) * 1000 / n
print(f"| {ex} | {label} | {n / wall:.1f} | {ms('chromium browser'):.1f} | {ms('chromium gpu-process'):.1f} | "
      f"{ms('chromium renderer'):.1f} | {ms('ffmpeg'):.1f} | {ms('helios-infra'):.1f} | {total:.1f} | {sum(c.values()) / wall:.2f} |")
PY
)$'\n'
  done
  stage_rows+=$(python3 - "$ex" "$n" "${stages[$ex]}" <<'PY'
import json, sys
ex, n, st = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3] or "{}")
f = lambda k: st.get(k, 0) / n
print(f"| {ex} | {st.get('browsers', '?')} | {st.get('launch_ms', 0)} | {f('seek_ms'):.1f} | {f('settle_ms'):.1f} | {f('capture_ms'):.1f} | "
      f"{f('decode_ms'):.1f} | {f('frame_wait_ms'):.1f} | {f('encode_wait_ms'):.1f} | {st.get('encode_finish_ms', 0)} | {st.get('frames_per_s', 0):.1f} |")
PY
)$'\n'
done
for key in "${!failed[@]}"; do notes+="- $key: \`${failed[$key]}\`"$'\n'; done

footnotes=
if [[ -n $dom_note && $dom_note == *"executable doesn't exist"* ]]; then
  footnotes+="³ The Helios renderer could not start here: it runs Debian's full Chromium
(\`/usr/lib/chromium/chromium\`, package \`chromium\`), which this machine does not have
(\`$dom_note\`); its columns are empty. \`apt-get install chromium\` and run again to fill them."$'\n\n'
elif [[ -n $dom_note ]]; then
  footnotes+="³ The Helios renderer's dom mode did not render 10 frames of dom-css within 60 s here
(\`$dom_note\`): it pauses CDP virtual time and then takes screenshots, which this Chromium
never answers (see the browser block below); it was skipped."$'\n\n'
fi
if [[ -n $notes ]]; then
  footnotes+="² Failed runs:"$'\n\n'"$notes"
fi
cores=$(nproc)
cpu_model=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
block=$(cat <<MD
<!-- throughput:start -->

## Browser throughput per worker: this release against the previous one

Measured by \`bash scripts/bench-throughput.sh\` (which rewrites this block only), $started, on
$cores cores ($cpu_model). This revision: $rev; previous release: $prev_rev_full (the commit before
the throughput work), both release builds, in the same run, repetitions interleaved.
$(/usr/lib/chromium/chromium-headless-shell --version 2>/dev/null | head -n1); $(ffmpeg -version | head -n1 | cut -d' ' -f1-3).

Frames/s = frames ÷ median wall time of $reps runs of the whole process (start-up, packing,
planning, stitch included), H.264 (libx264, preset medium, crf 20, yuv420p). In brackets:
cores busy during the run (machine-wide CPU time ÷ wall time; $cores = all of them).

- **previous** / **this, 1 chunk**: \`helios-infra render EX -o out.mp4 --frames 0..N --size WxH --chunks 1 --concurrency 1\`
  (this revision then runs its default browsers per worker: $default_browsers here).
- **this, defaults**: the same with no plan flags at all (the default chunks × workers × browsers).
- **Helios dom / canvas**: \`@helios-project/renderer\` (scripts/bench-helios/render.mjs, Debian's
  Chromium), same size, frame count and encoder settings, in its \`dom\` and \`canvas\` modes.
- **ceiling**: \`cargo run --release --example capture_ceiling -- DIR WxH N $default_browsers\`:
  $default_browsers browsers seeking and capturing (PNG screenshots; for canvas@readback, the
  canvas's raw pixels sent to the worker) with nothing decoded or encoded, frames/s from the
  first frame (browser start-up excluded).
- **canvas@readback**: the canvas example with \`--capture-canvas '#stage'\` in both releases (the
  previous one reads the canvas back as a PNG data URL, this one as raw pixels over a
  WebSocket); its Helios columns repeat the canvas example's.
- **dom-canvas@readback**: the dom-css scene drawn into a \`<canvas layoutsubtree>\` by its
  \`paint\` event (HTML-in-Canvas, \`drawElementImage\`), this release with \`--capture-canvas
  '#stage'\`. The previous release cannot draw it (it does not switch HTML-in-Canvas on), so its
  column, like the Helios columns, is the dom-css page: the same picture, by screenshots.

| example | size | frames | previous, 1 worker | this, 1 chunk | this, defaults | Helios dom | Helios canvas | ceiling | this ÷ previous | this ÷ Helios dom | this ÷ Helios canvas | this ÷ ceiling |
|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
$rows
Checks (last repetition): frames counted by \`ffprobe -count_frames\`; "same frames" counts
decoded frames of this revision's 1-chunk output equal (framemd5) to the previous release's,
and PSNR is FFmpeg's average over all frames against them (inf: identical).

| example | size | previous: frames | this: frames | same frames as previous | PSNR to previous (dB) | defaults: frames |
|---|---|---:|---:|---:|---:|---:|
$checks
### What these cores allow: capture plus encode

The ceiling above leaves the encoder out; the worker cannot. **Capture CPU** is the
machine's CPU time a frame during the ceiling run (cores busy ÷ its frames/s); **encoder CPU**
is FFmpeg alone encoding the same picture (the previous release's output decoded to raw
RGBA) at the worker's settings (libx264, preset medium, crf 20, yuv420p from RGBA), CPU time ÷
frames. **Bound** = $cores cores ÷ (capture CPU + encoder CPU): the frames/s of a pipeline
with perfect overlap and free decoding, transport and orchestration — no real one beats it.
Where bound ÷ previous is under 2×, twice the previous release is out of reach on these
cores for that capture path with the encoder unchanged; bound ÷ ceiling is the most any
pipeline can reach of the ceiling.

**Worker** is this revision's one chunk as its worker reports it (\`status ID --json\`,
\`stages.frames_per_s\`: browser launch to verified segment, median of the repetitions);
**outside the worker** is the rest of the render's wall time: planning (the page loaded once
to read its metadata), the estimate's 30-frame probe (thrown away: the one-chunk plan was
asked for), starting the worker process, stitching and download. **No probe ÷ bound** is
the same one-chunk render with \`--no-probe\`. **Defaults ÷ bound** is the
render with no plan flags, whose probe renders its first 30 frames as its chunk 0, kept.
**A 2-frame render** is the same one-chunk render of 2 frames with \`--no-probe\` (median wall
time): what a render costs whatever its length (planning, the worker's start, Chromium's
launch and page load, the encoder's start and end, stitching). **Reachable ÷ bound** is the
most a render of this length can reach of the bound if every frame cost only its capture and
encoding and the render had no probe: (frames ÷ bound) ÷ (frames ÷ bound + a 2-frame render).

| example | size | capture CPU (ms/frame) | encoder CPU (ms/frame) | bound (frames/s) | 2 × previous | bound ÷ previous | this ÷ previous | bound ÷ ceiling | this ÷ bound | no probe ÷ bound | defaults ÷ bound | worker (frames/s) | worker ÷ bound | outside the worker | a 2-frame render | reachable ÷ bound |
|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
$bound_rows
### Where a frame's time goes (1280×720, one chunk, one worker)

CPU time of every process while the render ran (\`scripts/cpu-by-process.py\`, sampling
/proc: a parent's rusage misses Chromium's helper processes), in milliseconds per frame, and
cores busy (all CPU ÷ wall time). FFmpeg includes the x264 encode (preset medium) and, for
the previous release, decoding every PNG; helios-infra is the orchestrator and the worker
(for this release, base64 and PNG decoding).

| example | release | frames/s | Chromium browser | Chromium GPU | Chromium renderer | FFmpeg | helios-infra | total | cores busy |
|---|---|---:|---:|---:|---:|---:|---:|---:|---:|
$cpu_rows
This release's chunk report for the same runs (\`status ID --json\`): stage times in
milliseconds per frame, summed over the browsers (so they add up to more than wall time
when browsers overlap); \`frame wait\` is the encoder waiting for the next frame in order,
\`encoder wait\` is capture waiting for the encoder.

| example | browsers | launch (ms) | seek | settle | capture | decode | frame wait | encoder wait | encoder finish (ms) | chunk frames/s |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
$stage_rows
$footnotes
<!-- throughput:end -->
MD
)
printf '%s\n' "$block" >"$work/block.md"
python3 scripts/replace-block.py throughput "$work/block.md"
log "wrote the throughput block of docs/BENCHMARKS.md"
