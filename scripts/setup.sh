#!/usr/bin/env bash
# Installs what helios-infra needs on a Debian/Ubuntu machine: SQLite's and zstd's development
# files (the build links them), FFmpeg (ffmpeg, ffprobe),
# Chromium's headless shell and the workers' font set (for HTML compositions): DejaVu,
# Liberation (metric-compatible with Arial, Times New Roman, Courier New) and Noto (Latin,
# Greek, Cyrillic and most other scripts; CJK; colour emoji) — the same as the Dockerfile's. With --test, also what the
# test suite needs: Python's venv module and the loopback protocol peers from PyPI
# (scripts/test-peers.sh), and Node.js to build the @helios-project/core example.
# Rust (cargo) must already be installed.
# Safe to run again: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

missing=()
command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
[ -x /usr/lib/chromium/chromium-headless-shell ] || [ -n "${HELIOS_CHROMIUM:-}" ] || missing+=(chromium-headless-shell)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
[ -d /usr/share/fonts/truetype/liberation ] || missing+=(fonts-liberation)
[ -d /usr/share/fonts/truetype/noto ] || missing+=(fonts-noto-core)
[ -d /usr/share/fonts/opentype/noto ] || missing+=(fonts-noto-cjk)
[ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || missing+=(fonts-noto-color-emoji)
# Building links the system's SQLite (the job store) and zstd (archives) instead of
# compiling their C sources: a shorter first build.
[ -e /usr/include/sqlite3.h ] || missing+=(libsqlite3-dev)
[ -e /usr/include/zstd.h ] || missing+=(libzstd-dev)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
if [ $want_test = 1 ]; then
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
  command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
fi

if ((${#missing[@]})); then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "setup: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust (https://rustup.rs) and run this again" >&2
  exit 1
fi
if [ $want_test = 1 ]; then
  echo "setup: test peers in $(bash scripts/test-peers.sh)" >&2
  bash scripts/build-examples.sh >&2
fi
echo "setup: ready ($(ffmpeg -version | head -1 | cut -d' ' -f1-3), $(cargo --version))" >&2
