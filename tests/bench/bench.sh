#!/usr/bin/env bash
# The end-to-end benchmark against a private redis-server: starts redis-server (unix socket,
# no persistence) in a temp dir, runs `cgalpha-ops bench` with the given options (it starts the
# labs and nexus itself, in namespace cgalpha-bench), stops redis-server. See docs/PERFORMANCE.md.
#
#   tests/bench/bench.sh [--bin-dir DIR] [--redis-arg ARG]... [--] [cgalpha-ops bench options]
#
#   tests/bench/bench.sh -- --tasks 1000000 --runs 3               batched (32 tasks per entry)
#   tests/bench/bench.sh -- --tasks 1000000 --batch 1 --runs 3     one task per entry
#   tests/bench/bench.sh -- --rate 10000 --tasks 100000            steady rate, for latency
#
# --bin-dir: where cgalpha-ops, cgalpha-lab and cgalpha-nexus are (default: $CGA_BIN_DIR, else
# build-release/bin, built here with -DCMAKE_BUILD_TYPE=Release if it is missing).
# The last line of the output is the JSON line of `cgalpha-ops bench`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${CGA_BIN_DIR:-}
REDIS_ARGS=()
while [ $# -gt 0 ]; do
    case $1 in
    --bin-dir) BIN=$2; shift 2 ;;
    --redis-arg) REDIS_ARGS+=("$2"); shift 2 ;;
    --) shift; break ;;
    *) break ;;
    esac
done
if [ -z "$BIN" ]; then
    BIN=$ROOT/build-release/bin
    if [ ! -x "$BIN/cgalpha-ops" ]; then
        echo "bench.sh: building $ROOT/build-release (Release)" >&2
        # A measurement build: a warning of a newer compiler must not stop it.
        cmake -S "$ROOT" -B "$ROOT/build-release" -DCMAKE_BUILD_TYPE=Release -DCGA_TESTS=OFF \
            -DCGA_WERROR=OFF >/dev/null
        cmake --build "$ROOT/build-release" -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
    fi
fi
for b in cgalpha-ops cgalpha-lab cgalpha-nexus; do
    [ -x "$BIN/$b" ] || { echo "bench.sh: $BIN/$b not found (see --bin-dir)" >&2; exit 2; }
done

T=$(mktemp -d /tmp/cga-benchsh-XXXXXX)
REDIS_PID=""
cleanup() {
    if [ -n "$REDIS_PID" ]; then
        kill "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
    fi
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"${REDIS_SERVER:-redis-server}" --port 0 --unixsocket "$T/redis.sock" --unixsocketperm 700 \
    --save '' --appendonly no --dir "$T" --daemonize no "${REDIS_ARGS[@]}" \
    >"$T/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 1 250); do
    [ "$(redis-cli -s "$T/redis.sock" PING 2>/dev/null)" = PONG ] && break
    sleep 0.02
done
[ "$(redis-cli -s "$T/redis.sock" PING 2>/dev/null)" = PONG ] || {
    echo "bench.sh: redis-server did not start:" >&2
    cat "$T/redis.log" >&2
    exit 1
}

rc=0
REDIS_URL="unix://$T/redis.sock" "$BIN/cgalpha-ops" bench "$@" || rc=$?
exit $rc
