#!/usr/bin/env bash
# Browser benchmark: frames/s of every example composition at 1280x720 and 1920x1080 with
# helios-infra on 1 and 2 workers, beside the official Helios renderer
# (@helios-project/renderer, pinned in scripts/bench-helios/package-lock.json) rendering the
# same composition with the same encoder settings in the same run. Rewrites only the
# <!-- browser:start --> ... <!-- browser:end --> block of docs/BENCHMARKS.md.
#
#   bash scripts/bench-browser.sh
#
# Needs: cargo, node + npm (and the npm registry for `npm ci`), Debian's Chromium
# (/usr/lib/chromium/{chromium-headless-shell,chromium}), /usr/bin/ffmpeg + ffprobe, python3.
# Knobs (environment): REPS (3), FRAMES_720 (120), FRAMES_1080 (60), EXAMPLES
# ("canvas dom-css helios-core"), HELIOS_PEER_CHROMIUM (/usr/lib/chromium/chromium),
# PEER_TIMEOUT (seconds per Helios render, 300), PEER_DOM_TIMEOUT (seconds for the DOM-mode
# attempt, 60), CARGO_TARGET_DIR (where the release binary is built and found),
# HELIOS_INFRA_BIN (use this binary instead of building one).
# About 10-15 minutes on 2 cores. Wall times are whole processes (browser launch, page load,
# encode, and for helios-infra packing, planning and stitching too); frames/s = frames /
# median wall time. Repetitions are interleaved so background load hits every column alike.
# No figure is asserted anywhere; a failed Helios render is reported with its error.
set -euo pipefail
export npm_config_update_notifier=false
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

reps=${REPS:-3}
frames_720=${FRAMES_720:-120}
frames_1080=${FRAMES_1080:-60}
read -r -a examples <<<"${EXAMPLES:-canvas dom-css helios-core}"
peer_chromium=${HELIOS_PEER_CHROMIUM:-/usr/lib/chromium/chromium}
peer_timeout=${PEER_TIMEOUT:-300}
dom_timeout=${PEER_DOM_TIMEOUT:-60}
fps=30
sizes=(1280x720 1920x1080)

log() { echo "bench-browser: $*" >&2; }
now() { date +%s.%N; }
calc() { awk "BEGIN { print $* }"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
frames_for() { if [[ $1 == 1280x720 ]]; then echo "$frames_720"; else echo "$frames_1080"; fi; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

load_start=$(loadavg)
started=$(date -u '+%Y-%m-%d %H:%M UTC')
# The revision measured is the one built now, at the start, whatever lands during the run.
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || rev+=" + uncommitted changes in src/Cargo"

# --- build and install everything (idempotent) ------------------------------------------
if [[ -n ${HELIOS_INFRA_BIN:-} ]]; then
  bin=$HELIOS_INFRA_BIN
  log "using HELIOS_INFRA_BIN=$bin (no build)"
else
  log "cargo build --release --locked"
  cargo build --release --locked -q
  target=${CARGO_TARGET_DIR:-target}
  [[ $target == /* ]] || target=$root/$target
  bin=$target/release/helios-infra
fi
[[ -x $bin ]] || { log "no binary at $bin"; exit 1; }

log "building the examples (scripts/build-examples.sh)"
bash scripts/build-examples.sh >&2

log "npm ci in scripts/bench-helios (the Helios renderer, no browser download)"
(cd scripts/bench-helios && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --ignore-scripts >&2)
peer=$root/scripts/bench-helios/render.mjs

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- probes: can the Helios renderer capture at all on this Chromium? ---------------------
log "probing Page.captureScreenshot under CDP virtual time"
probe=$(cd scripts/bench-helios && node probe-cdp.mjs /usr/lib/chromium/chromium-headless-shell "$peer_chromium" 2>/dev/null)

# run_peer OUT DIR W H N MODE TIMEOUT [CHROMIUM]: 0 and the wall seconds in $peer_secs, or
# non-zero and the renderer's error in $peer_err.
run_peer() {
  local out=$1 dir=$2 w=$3 h=$4 n=$5 mode=$6 limit=$7 exe=${8:-$peer_chromium} t0 rc=0
  t0=$(now)
  HELIOS_PEER_CHROMIUM=$exe HELIOS_PEER_TIMEOUT=$limit \
    node "$peer" "$dir" "$out" "$w" "$h" "$fps" "$n" "$mode" >"$work/peer.log" 2>&1 || rc=$?
  peer_secs=$(calc "$(now) - $t0")
  peer_err=
  if ((rc != 0)); then
    peer_err=$(grep -m1 '^render.mjs:' "$work/peer.log" || tail -n1 "$work/peer.log")
    peer_err="exit $rc: ${peer_err#render.mjs: }"
  fi
  return $rc
}

# The like-for-like mode is 'dom' (a screenshot of the whole viewport, as helios-infra takes).
log "Helios renderer, dom mode, 10 frames of dom-css (limit ${dom_timeout} s)"
if run_peer "$work/dom-probe.mp4" examples/compositions/dom-css 1280 720 10 dom "$dom_timeout"; then
  peer_mode=dom dom_result="rendered 10 frames in $(printf '%.1f' "$peer_secs") s"
else
  peer_mode=canvas dom_result=$peer_err
fi
log "Helios renderer mode for the benchmark: $peer_mode ($dom_result)"

# --- the runs ---------------------------------------------------------------------------
declare -A times peer_error
# ours OUT DIR SIZE N WORKERS: one helios-infra render in a fresh --home; wall seconds.
ours() {
  local out=$1 dir=$2 size=$3 n=$4 k=$5 home t0
  home=$(mktemp -d "$work/home.XXXXXX")
  t0=$(now)
  if ! "$bin" --home "$home" render "$dir" -o "$out" --frames "0..$n" --size "$size" --fps "$fps" \
      --chunks "$k" --concurrency "$k" >"$work/ours.log" 2>&1; then
    log "helios-infra failed on $dir $size, $k worker(s):"; cat "$work/ours.log" >&2; exit 1
  fi
  calc "$(now) - $t0"
  rm -rf "$home"
}

for rep in $(seq "$reps"); do
  for ex in "${examples[@]}"; do
    dir=examples/compositions/$ex
    for size in "${sizes[@]}"; do
      n=$(frames_for "$size") w=${size%x*} h=${size#*x} key=$ex/$size
      log "rep $rep/$reps: $key, $n frames (load $(loadavg))"
      times[$key/1]+=" $(ours "$work/$ex-$size-1.mp4" "$dir" "$size" "$n" 1)"
      times[$key/2]+=" $(ours "$work/$ex-$size-2.mp4" "$dir" "$size" "$n" 2)"
      if [[ -z ${peer_error[$key]:-} ]]; then
        if run_peer "$work/$ex-$size-helios.mp4" "$dir" "$w" "$h" "$n" "$peer_mode" "$peer_timeout"; then
          times[$key/helios]+=" $peer_secs"
        else
          peer_error[$key]=$peer_err
          log "Helios renderer failed on $key: $peer_err"
        fi
      fi
    done
  done
done

# The Helios renderer on the very binary helios-infra uses, once, for the record.
shell_note=
if [[ $peer_mode == canvas && " ${examples[*]} " == *" canvas "* ]]; then
  log "Helios renderer on chromium-headless-shell, canvas example, 720p, once"
  if run_peer "$work/shell.mp4" examples/compositions/canvas 1280 720 "$frames_720" canvas "$peer_timeout" \
      /usr/lib/chromium/chromium-headless-shell; then
    shell_note=ok
  else
    shell_note=$peer_err
  fi
fi
load_end=$(loadavg)

# --- output checks ----------------------------------------------------------------------
count() { ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames -of csv=p=0 "$1"; }
dims() { ffprobe -v error -select_streams v:0 -show_entries stream=width,height -of csv=s=x:p=0 "$1"; }
psnr() { # "average / min" dB of $1 against the reference $2, cropped to $1's size at 0,0
  local wh; wh=$(dims "$1")
  ffmpeg -v error -i "$1" -i "$2" -lavfi "[1:v]crop=${wh%x*}:${wh#*x}:0:0[r];[0:v][r]psnr=stats_file=-" -f null - 2>/dev/null |
    awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^psnr_avg:/) { v = substr($i, 10); x = (v == "inf" ? 100 : v + 0); s += x; if (c == 0 || x < min) min = x; c++ } }
         END { if (c) printf "%.1f / %.1f", s / c, min; else print "n/a" }'
}
luma() { # mean luma (0-255) over all frames
  ffmpeg -v error -i "$1" -vf 'signalstats,metadata=print:key=lavfi.signalstats.YAVG:file=-' -f null - 2>/dev/null |
    awk -F= '/YAVG/ { s += $2; c++ } END { if (c) printf "%.1f", s / c; else print "n/a" }'
}
fmt_fps() { printf '%.2f' "$(calc "$1 / $2")"; }

rows= checks= errors=
for ex in "${examples[@]}"; do
  for size in "${sizes[@]}"; do
    n=$(frames_for "$size") key=$ex/$size
    read -r -a t1 <<<"${times[$key/1]}"; read -r -a t2 <<<"${times[$key/2]}"
    m1=$(median "${t1[@]}") m2=$(median "${t2[@]}")
    f1=$(fmt_fps "$n" "$m1") f2=$(fmt_fps "$n" "$m2")
    o1=$work/$ex-$size-1.mp4 o2=$work/$ex-$size-2.mp4 oh=$work/$ex-$size-helios.mp4
    if [[ -n ${times[$key/helios]:-} && -z ${peer_error[$key]:-} ]]; then
      read -r -a th <<<"${times[$key/helios]}"
      mh=$(median "${th[@]}") fh=$(fmt_fps "$n" "$mh")
      helios_cell="$fh" ratio="$(printf '%.2f' "$(calc "$f1 / $fh")")×"
      hd=$(dims "$oh") hp=$(psnr "$oh" "$o1")
      [[ $hd == "$(dims "$o1")" ]] || hp+=" (vs the top-left ${hd/x/×})"
      hcheck="$(count "$oh") | ${hd/x/×} | $(luma "$oh") | $hp"
    else
      helios_cell="failed¹" ratio="—"
      hcheck="— | — | — | —"
      errors+="- ${ex} ${size}: \`${peer_error[$key]:-no run}\`"$'\n'
    fi
    rows+="| $ex | ${size/x/×} | $n | $f1 | $f2 | $helios_cell | $ratio | $(printf '%.2f' "$(calc "$f2 / $f1")")× |"$'\n'
    checks+="| $ex | ${size/x/×} | $(count "$o1") / $(count "$o2") | $(psnr "$o2" "$o1") | $(luma "$o1") | $hcheck |"$'\n'
  done
done

shell_line=
if [[ $shell_note == ok ]]; then
  shell_line="On Debian's \`chromium-headless-shell\` (the binary helios-infra drives) the Helios renderer
runs the canvas example at 1280×720 in canvas mode ($frames_720 frames, $(printf '%.1f' "$peer_secs") s, one run) and
writes $(count "$work/shell.mp4") frames of mean luma $(luma "$work/shell.mp4") (helios-infra's: $(luma "$work/canvas-1280x720-1.mp4")), PSNR
$(psnr "$work/shell.mp4" "$work/canvas-1280x720-1.mp4") dB against helios-infra's output."
elif [[ -n $shell_note ]]; then
  shell_line="On Debian's \`chromium-headless-shell\` (the binary helios-infra drives) the Helios renderer
fails on the canvas example: \`$shell_note\`."
fi

chromium_ver() { "$1" --version 2>/dev/null | head -n1; }
pkgver() { node -p "require('./scripts/bench-helios/node_modules/$1/package.json').version"; }
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
mem=$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
if [[ -n ${HELIOS_INFRA_BIN:-} ]]; then rev="binary $bin (HELIOS_INFRA_BIN, not built by this run; tree $rev)"; else rev+=", release build"; fi

mode_note= dom_why=
if [[ $peer_mode == canvas ]]; then
  mode_note=' So the
  table uses `canvas` mode, which encodes the first `<canvas>` element only (PNG via
  `toDataURL`), not the page: less work per frame than helios-infra does, and not the same
  picture (no DOM text in helios-core; no canvas at all in dom-css).'
  dom_why="Why the \`dom\` mode cannot run here (\`node scripts/bench-helios/probe-cdp.mjs\`): the renderer
pauses CDP virtual time (\`Emulation.setVirtualTimePolicy\` \`pause\`) before capturing and
always launches Chromium with \`--enable-begin-frame-control\`; its \`dom\` capture is
\`Page.captureScreenshot\`:

\`\`\`
$probe
\`\`\`"
fi

block=$work/block.md
cat >"$block" <<MD
<!-- browser:start -->

## Browser: example compositions vs the Helios renderer

Measured by \`bash scripts/bench-browser.sh\` (which rewrites this block only), $started.
Machine: $(nproc) cores ($cpu), $mem; load average $load_start at the start and $load_end
at the end (the benchmark's own browsers and encoders load both cores; all columns share
it because repetitions are interleaved). helios-infra $rev; $(chromium_ver /usr/lib/chromium/chromium-headless-shell) (Debian);
$(ffmpeg -version | head -n1 | cut -d' ' -f1-3); Node $(node --version);
\`@helios-project/renderer\` $(pkgver @helios-project/renderer) with Playwright $(pkgver playwright).

Frames/s = frames ÷ median wall time of $reps runs of the whole process. Every run renders
frames 0..N at 30 fps to H.264 (libx264, crf 20, preset medium, yuv420p, MP4).

- **helios-infra**: \`helios-infra --home FRESH render examples/compositions/EX -o out.mp4
  --frames 0..N --size WxH --fps 30 --chunks K --concurrency K\`, K = 1 or 2 workers (one
  chunk per worker, local adapter): packs the folder, renders each chunk in its own
  \`chromium-headless-shell\` (virtual time, PNG screenshots of the viewport piped into
  FFmpeg), verifies and stitches the segments.
- **Helios renderer**: \`node scripts/bench-helios/render.mjs DIR out.mp4 W H 30 N MODE\`:
  \`new Renderer({ width, height, fps: 30, durationInSeconds: N/30, frameCount: N, mode,
  intermediateImageFormat: 'png', webCodecsPreference: 'disabled', videoCodec: 'libx264',
  crf: 20, preset: 'medium', pixelFormat: 'yuv420p', ffmpegPath: '/usr/bin/ffmpeg',
  browserConfig: { executablePath: '$peer_chromium', headless: true, gpu: false } })
  .render(url, out)\` with the folder served from a loopback HTTP server (one browser, one
  page: it has no multi-worker mode in one \`render\` call). Mode used: **$peer_mode**.
  The like-for-like mode is \`dom\` (a screenshot of the viewport per frame); on this
  machine it gave: \`$dom_result\`.$mode_note

| example | size | frames | helios-infra, 1 worker (frames/s) | helios-infra, 2 workers (frames/s) | Helios renderer (frames/s) | 1 worker ÷ Helios | 2 workers ÷ 1 worker |
|---|---|---:|---:|---:|---:|---:|---:|
${rows}
Output check (last repetition): frames counted by \`ffprobe -count_frames\`; PSNR in dB
(average / worst frame, identical frames counted as 100) against helios-infra's 1-worker
output of the same frames. The 2-worker output is not bit-identical to the 1-worker one
(each chunk is its own lossy encode, starting on a keyframe) but should score well above
40 dB; the same pictures encoded twice score about that, a different picture far less.
Mean luma (0-255) flags black or blank frames.

| example | size | helios-infra frames (1 / 2 workers) | 2 workers vs 1: PSNR | helios-infra mean luma | Helios frames | Helios size | Helios mean luma | Helios vs helios-infra: PSNR |
|---|---|---:|---:|---:|---:|---:|---:|---:|
${checks}
$(if [[ -n $errors ]]; then printf '¹ The Helios renderer failed:\n\n%s' "$errors"; fi)

$shell_line

$dom_why
<!-- browser:end -->
MD

python3 scripts/replace-block.py browser "$block"
log "wrote the browser block of docs/BENCHMARKS.md"
