#!/usr/bin/env bash
# What `Expect: 100-continue` (bodies over 1 MiB wait for the server's word
# before the body) costs: the same upload, the same server, with the
# expectation on (the default) and off, alternating, medians of REPS runs.
#
# Usage: bench/expect_continue.sh            # 4 x 256 MiB, 5 runs each, dev profile
#        PROFILE=release REPS=7 SIZE_MIB=256 FILES=4 bench/expect_continue.sh
#
# The "off" binary is built from a temporary worktree of HEAD with
# EXPECT_CONTINUE_MIN set to u64::MAX (no request asks). The server is the
# quickstart's s3s-fs (`--serve`); the data is on /dev/shm; uploads use
# `--integrity none` so that the client's CPU is the transport's alone.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PROFILE=${PROFILE:-dev}
REPS=${REPS:-5}
SIZE_MIB=${SIZE_MIB:-256}
FILES=${FILES:-4}
dir=$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")

log() { printf '==> %s\n' "$*" >&2; }

log "building the command and the quickstart server ($PROFILE)"
cargo build --profile "$PROFILE" -p batchput-cli --bin batchput --example quickstart
ON=$ROOT/target/$dir/batchput

OFF_TREE=$(mktemp -d)
trap 'git -C "$ROOT" worktree remove --force "$OFF_TREE" >/dev/null 2>&1 || true' EXIT
git worktree add --detach "$OFF_TREE" HEAD >/dev/null
sed -i 's/pub(crate) const EXPECT_CONTINUE_MIN: u64 = 1024 \* 1024;/pub(crate) const EXPECT_CONTINUE_MIN: u64 = u64::MAX;/' \
  "$OFF_TREE/src/store/http.rs"
grep -q 'EXPECT_CONTINUE_MIN: u64 = u64::MAX' "$OFF_TREE/src/store/http.rs"
log "building the command with the expectation off"
(cd "$OFF_TREE" && CARGO_TARGET_DIR=$ROOT/target/expect-off cargo build --profile "$PROFILE" -p batchput-cli --bin batchput)
OFF=$ROOT/target/expect-off/$dir/batchput

DATA=/dev/shm/bp-expect-data
mkdir -p "$DATA"
for i in $(seq 1 "$FILES"); do
  [ -f "$DATA/f$i.bin" ] || head -c $((SIZE_MIB << 20)) /dev/urandom >"$DATA/f$i.bin"
done

SERVE_LOG=$(mktemp)
"$ROOT/target/$dir/examples/quickstart" --serve >"$SERVE_LOG" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; git -C "$ROOT" worktree remove --force "$OFF_TREE" >/dev/null 2>&1 || true' EXIT
for _ in $(seq 1 100); do grep -q '^export AWS_SECRET_ACCESS_KEY' "$SERVE_LOG" && break; sleep 0.2; done
eval "$(grep '^export ' "$SERVE_LOG")"

run() { # binary, prefix -> wall seconds
  local start end
  start=$(date +%s.%N)
  "$1" upload "$DATA" --prefix "$2/" --integrity none --no-progress >/dev/null
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f\n", b - a }'
}

on=() off=()
for r in $(seq 1 "$REPS"); do
  on+=("$(run "$ON" "on-$r")")
  off+=("$(run "$OFF" "off-$r")")
  log "run $r: on ${on[-1]} s, off ${off[-1]} s"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
m_on=$(median "${on[@]}")
m_off=$(median "${off[@]}")
echo "expect on:  median ${m_on} s  (${on[*]})"
echo "expect off: median ${m_off} s  (${off[*]})"
awk -v a="$m_on" -v b="$m_off" 'BEGIN { printf "ratio on/off: %.4f\n", a / b }'
