#!/usr/bin/env bash
# Runs every test of batchput, installing what they need first (idempotent:
# what is already there is not installed again). Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }

# moto (an S3 server with authentication) for the integration tests, and
# boto3 with the CRT's checksums (another client's full-object CRC32C).
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import moto.server, awscrt' 2>/dev/null; then
  log "installing moto and boto3[crt] into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
fi

# The README's first command, in the test build (debug: it reuses what
# cargo test compiles); it exits non-zero unless every object reads back
# byte for byte.
log "quickstart example (embedded S3 server, upload, verification by GET)"
cargo run --locked --example quickstart

# The C ABI's callers (tests/ffi.rs): C and C++ compilers, make, pkg-config and
# valgrind for the C examples, Go (Debian's golang-go) for the cgo package.
missing=()
command -v cc >/dev/null || missing+=(gcc)
command -v c++ >/dev/null || missing+=(g++)
command -v make >/dev/null || missing+=(make)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v valgrind >/dev/null || missing+=(valgrind)
command -v go >/dev/null || missing+=(golang-go)
# redis-server for the worker mode's tests (cli/tests/worker.rs); curl
# fetches presigned URLs as any HTTP client would (tests/objects.rs).
command -v redis-server >/dev/null || missing+=(redis-server)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "installing ${missing[*]} (Debian packages) for the C, Python and Go callers and the worker tests"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Garage, a real distributed S3 store, for tests/garage.rs and the suites
# that also run on it. Building it takes about 10 minutes, once: cargo
# install keeps it in ~/.cargo/bin.
if ! command -v garage >/dev/null && [ ! -x "$HOME/.cargo/bin/garage" ]; then
  log "installing garage 2.5.0 (cargo install: about 10 minutes, once)"
  cargo install garage --locked --version 2.5.0
fi

# Both crates of the workspace (default members): the library and cli/.
# Four tests at a time on two cores (the harness's default is one per
# core): most of them wait on servers, proxies and timeouts, not the CPU.
# The integration suite takes ~110 s so, ~180 s one per core.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"
log "cargo test (unit and integration tests against s3s-fs, moto and Garage)"
cargo test --locked
