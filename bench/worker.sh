#!/usr/bin/env bash
# The worker mode's scaling figures in the README ("Many hosts"): a fixed
# set of tasks (BENCH_TASKS, default 24, of 4 files / 9 MiB each) uploaded
# by 1, 2 and 3 `batchput worker` processes through one redis-server to one
# s3s-fs server, all on this machine. Prints one line per worker count.
# Usage: bench/worker.sh [--release]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
}
cargo test "$@" --locked -p batchput-cli --test worker -- \
  --ignored --nocapture --exact throughput_with_one_two_and_three_workers 2>&1 \
  | grep -E '^[0-9] worker'
