#!/usr/bin/env bash
# Profiles a benchmark run with perf: starts a private redis-server, runs `cgalpha-ops bench
# --no-bare` with the given options, and records (perf record -g, user and kernel) the lab(s),
# nexus, the producer (cgalpha-ops) and redis-server while the pipeline runs. Writes
# OUT/perf.data and OUT/report.txt (top symbols per process, self time).
#
#   tests/bench/profile.sh [--bin-dir DIR] [--out DIR] [--seconds S] [--call-graph fp|dwarf]
#                          [--] [bench options]
#   tests/bench/profile.sh --bin-dir build-prof/bin -- --tasks 300000 --batch 1 --bars 1
#
# Build DIR with -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS=-fno-omit-frame-pointer for
# readable call graphs (--call-graph dwarf also unwinds through libc, at a higher cost). Needs `perf` (linux-perf) and permission to use it
# (kernel.perf_event_paranoid <= 1, or root).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${CGA_BIN_DIR:-$ROOT/build/bin}
OUT=/tmp/cga-profile
SECONDS_REC=5
CALLGRAPH=fp
while [ $# -gt 0 ]; do
    case $1 in
    --bin-dir) BIN=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --seconds) SECONDS_REC=$2; shift 2 ;;
    --call-graph) CALLGRAPH=$2; shift 2 ;;
    --) shift; break ;;
    *) break ;;
    esac
done
command -v perf >/dev/null || { echo "profile.sh: perf not found" >&2; exit 2; }
mkdir -p "$OUT"
T=$(mktemp -d /tmp/cga-prof-XXXXXX)
REDIS_PID="" BENCH_PID=""
cleanup() {
    [ -n "$BENCH_PID" ] && kill "$BENCH_PID" 2>/dev/null || true
    [ -n "$BENCH_PID" ] && wait "$BENCH_PID" 2>/dev/null || true
    [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null || true
    [ -n "$REDIS_PID" ] && wait "$REDIS_PID" 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT

redis-server --port 0 --unixsocket "$T/redis.sock" --save '' --appendonly no --dir "$T" \
    --daemonize no >"$T/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 1 250); do
    [ "$(redis-cli -s "$T/redis.sock" PING 2>/dev/null)" = PONG ] && break
    sleep 0.02
done

REDIS_URL="unix://$T/redis.sock" "$BIN/cgalpha-ops" bench --no-bare --work-dir "$T/work" \
    "$@" >"$OUT/bench.out" 2>&1 &
BENCH_PID=$!

# The children of this bench: the nexus and labs it spawned.
children() { { ps -o pid= --ppid "$BENCH_PID" 2>/dev/null || true; } | tr -d ' ' | paste -sd, -; }
waiting() { redis-cli -s "$T/redis.sock" CLIENT LIST | grep -c 'cmd=xreadgroup' || true; }
for _ in $(seq 1 500); do
    c=$(children)
    [ -n "$c" ] && [ "$(waiting)" -ge 2 ] && break
    sleep 0.02
done
PIDS="$(children),$BENCH_PID,$REDIS_PID"
echo "profile.sh: recording $PIDS for ${SECONDS_REC}s" >&2
perf record -F 999 --call-graph "$CALLGRAPH" -o "$OUT/perf.data" -p "$PIDS" -- sleep "$SECONDS_REC" 2>"$OUT/perf.log" ||
    { cat "$OUT/perf.log" >&2; exit 1; }
wait "$BENCH_PID" || true
BENCH_PID=""
perf report -i "$OUT/perf.data" --stdio --no-children --sort comm,symbol --percent-limit 0.7 \
    -g none 2>/dev/null | grep -v '^$' >"$OUT/report.txt" || true
cat "$OUT/bench.out"
echo "profile.sh: $OUT/report.txt, $OUT/perf.data" >&2
