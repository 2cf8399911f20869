#!/usr/bin/env bash
# Build the example compositions that need a build step: examples/compositions/helios-core
# and title-card (bundled with esbuild), examples/compositions/gsap (GSAP copied into
# vendor/) and the framework clocks in examples/compositions/clocks (React, React with
# Framer Motion, Vue, Svelte, Preact with signals, GSAP, Lottie and Three.js, each bundled
# from npm packages into clocks/<name>/dist/main.js).
#
#   bash scripts/build-examples.sh
#
# Needs node and npm, and the npm registry (for `npm ci`). Idempotent: `npm ci` reinstalls
# node_modules exactly from package-lock.json and esbuild rewrites dist/main.js.
# Install scripts are skipped (--ignore-scripts): esbuild's postinstall only swaps its JS
# launcher for the native binary, and the JS launcher (bin/esbuild) finds the platform
# package (@esbuild/linux-x64 etc., an optional dependency in the lock file) by itself, so
# the build behaves the same whether or not npm's allowScripts policy would have run it.
set -euo pipefail
export npm_config_update_notifier=false

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "build-examples: '$tool' not found; install Node.js (>= 18) and npm first" >&2
    exit 1
  fi
done

# The compositions built on @helios-project/core, each bundled with esbuild.
for name in helios-core title-card; do
  cd "$root/examples/compositions/$name"
  echo "build-examples: npm ci in $(pwd)"
  npm ci --no-audit --no-fund --ignore-scripts
  echo "build-examples: npm run build"
  npm run build
  if [[ ! -s dist/main.js ]]; then
    echo "build-examples: $name/dist/main.js was not produced" >&2
    exit 1
  fi
  echo "build-examples: built $root/examples/compositions/$name/dist/main.js"
done

cd "$root/examples/compositions/gsap"
echo "build-examples: npm ci in $(pwd)"
npm ci --no-audit --no-fund --ignore-scripts
mkdir -p vendor
cp node_modules/gsap/dist/gsap.min.js vendor/gsap.min.js
echo "build-examples: copied GSAP to $root/examples/compositions/gsap/vendor/gsap.min.js"

cd "$root/examples/compositions/clocks"
echo "build-examples: npm ci in $(pwd)"
npm ci --no-audit --no-fund --ignore-scripts
node build.mjs
