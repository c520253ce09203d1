# Helpers for the lab's system tests (30_lab_*.sh), which source this file. Run directly (ctest
# runs every tests/system/NN_*.sh) it is the smallest end-to-end check: a few tasks, one lab,
# one report per task, nothing pending, the heartbeat gone after SIGTERM.
# shellcheck shell=bash
set -euo pipefail

: "${CGA_BIN_DIR:?CGA_BIN_DIR must point at the built binaries}"
: "${CGA_PLUGIN_DIR:?}"
: "${CGA_FIXTURE_PLUGIN_DIR:?}"
LAB=$CGA_BIN_DIR/cgalpha-lab
OPS=$CGA_BIN_DIR/cgalpha-ops
NS=cgalpha
QKEY=$NS:queue:analysis
RKEY=$NS:queue:reports
DKEY=$NS:queue:analysis:dead

T_DIR=$(mktemp -d /tmp/cga-lab-XXXXXX)
REDIS_PID=
PIDS=()

cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ -n "$REDIS_PID" ]; then
        kill "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
    fi
    rm -rf "$T_DIR"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    local f
    for f in "$T_DIR"/*.log; do
        [ -f "$f" ] || continue
        echo "---- $f (last 40 lines)" >&2
        tail -n 40 "$f" >&2
    done
    exit 1
}

start_redis() {
    redis-server --port 0 --unixsocket "$T_DIR/redis.sock" --save '' --appendonly no \
        --daemonize no --dir "$T_DIR" >"$T_DIR/redis-server.out" 2>&1 &
    REDIS_PID=$!
    export REDIS_URL=unix://$T_DIR/redis.sock
    local i
    for i in $(seq 1 100); do
        [ "$(rcli PING 2>/dev/null)" = PONG ] && return 0
        sleep 0.05
    done
    fail "redis-server did not start"
}

rcli() { redis-cli -s "$T_DIR/redis.sock" "$@"; }

# ---- msgpack, by hand (printf escapes); enough for tasks ------------------------------------
mp_hex() { printf '%b' "$(printf '%s' "$1" | sed 's/../\\x&/g')"; }
mp_str() { # short strings only (< 32 bytes)
    local s=$1
    mp_hex "$(printf '%02x' $((0xa0 + ${#s})))"
    printf '%s' "$s"
}
mp_u64() { mp_hex "cf$(printf '%016x' "$1")"; }
mp_array_hdr() { # n < 65536
    if [ "$1" -lt 16 ]; then mp_hex "$(printf '%02x' $((0x90 + $1)))"; else mp_hex "dc$(printf '%04x' "$1")"; fi
}
# mp_task ID LAB SYMBOL T0_MS NBARS: one task map, bars one minute apart, prices all 100
mp_task() {
    local id=$1 lab=$2 sym=$3 t0=$4 n=$5 i
    mp_hex 86
    mp_str v; mp_hex 01
    mp_str id; mp_str "$id"
    mp_str lab; mp_str "$lab"
    mp_str sym; mp_str "$sym"
    mp_str ts; mp_u64 "$(date +%s%6N)"
    mp_str bars; mp_array_hdr "$n"
    for ((i = 0; i < n; i++)); do
        mp_hex 96; mp_u64 $((t0 + i * 60000)); mp_hex 6464646401
    done
}

# xadd_file FILE: XADD the file's bytes as field m of a new analysis entry
xadd_file() { rcli -x XADD "$QKEY" '*' m <"$1" >/dev/null; }

# enqueue_tasks LAB SYMBOL COUNT PER_ENTRY [ID_PREFIX]: COUNT tasks in entries of PER_ENTRY
enqueue_tasks() {
    local lab=$1 sym=$2 count=$3 per=$4 prefix=${5:-$2} i=0 k n f=$T_DIR/entry.bin
    while [ "$i" -lt "$count" ]; do
        n=$((count - i < per ? count - i : per))
        {
            [ "$per" -gt 1 ] && mp_array_hdr "$n"
            for ((k = 0; k < n; k++)); do
                mp_task "$prefix/$((i + k))/$lab" "$lab" "$sym" $((1700000000000 + (i + k) * 60000)) 4
            done
        } >"$f"
        xadd_file "$f"
        i=$((i + n))
    done
}

# start_lab NAME ARGS...: runs a lab in the background, log in $T_DIR/NAME.log; sets LAB_PID
start_lab() {
    local name=$1; shift
    "$LAB" --id "$name" "$@" >"$T_DIR/$name.log" 2>&1 &
    LAB_PID=$!
    PIDS+=("$LAB_PID")
}

summary() { "$LAB" --summary 2>>"$T_DIR/summary.log"; }
summary_get() { summary | awk -v k="$1" '$1 == k { print $2 }'; }

# wait_for SECONDS CMD...: polls CMD every 0.1 s until it succeeds
wait_for() {
    local t=$1 end; shift
    end=$(($(date +%s%N) / 1000000 + t * 1000))
    while [ $(($(date +%s%N) / 1000000)) -lt "$end" ]; do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}

reports_at_least() { [ "$(summary_get report_tasks)" -ge "$1" ]; }
pending_is() { [ "$(summary_get analysis_pending)" = "$1" ]; }

# ---- run directly: smoke test ---------------------------------------------------------------
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    start_redis
    enqueue_tasks faulty OK 10 4
    enqueue_tasks faulty ERR 2 1
    start_lab smoke --plugin "$CGA_FIXTURE_PLUGIN_DIR/faulty.so"
    wait_for 20 reports_at_least 12 || fail "expected 12 reports: $(summary | tr '\n' ' ')"
    wait_for 10 pending_is 0 || fail "entries still pending"
    [ "$(summary_get workers)" = 1 ] || fail "no heartbeat"
    [ "$(summary_get report_error)" = 2 ] || fail "expected 2 error reports"
    summary | grep -q '^error ERR/0/faulty faulty: asked to fail' || fail "error text missing"
    kill -TERM "$LAB_PID"
    rc=0; wait "$LAB_PID" || rc=$?
    [ "$rc" = 0 ] || fail "lab exited $rc after SIGTERM"
    [ "$(summary_get workers)" = 0 ] || fail "heartbeat key left after shutdown"
    echo "30_lab_common: ok"
fi
