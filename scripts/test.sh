#!/usr/bin/env bash
# Runs every test of batchput, installing what they need first (idempotent:
# what is already there is not installed again). Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }

# moto (an S3 server with authentication) for the integration tests.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import moto.server' 2>/dev/null; then
  log "installing moto into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
fi

log "cargo test (unit and integration tests against s3s-fs and moto)"
cargo test --locked
