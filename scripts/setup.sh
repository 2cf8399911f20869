#!/usr/bin/env bash
# Installs what helios-infra and its tests need on a Debian/Ubuntu machine: FFmpeg (ffmpeg,
# ffprobe). Rust (cargo) must already be installed. Safe to run again: installs only what
# is missing.
set -euo pipefail

missing=()
command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)

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
echo "setup: ready ($(ffmpeg -version | head -1 | cut -d' ' -f1-3), $(cargo --version))" >&2
