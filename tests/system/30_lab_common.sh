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

# fails MESSAGE: fail, with the summary's counts appended
fails() { fail "$*: $(summary | tr '\n' ' ')"; }

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

# ---- msgpack, by hand, without forks: helpers append printf escapes to $MP ----------------------
MP=
mp_byte() { local b; printf -v b '\\x%02x' "$1"; MP+=$b; }
mp_str() { # strings shorter than 32 bytes
    mp_byte $((0xa0 + ${#1}))
    MP+=$1
}
mp_u64() {
    local i
    MP+='\xcf'
    for ((i = 56; i >= 0; i -= 8)); do mp_byte $((($1 >> i) & 255)); done
}
mp_array_hdr() { # n < 65536
    if [ "$1" -lt 16 ]; then
        mp_byte $((0x90 + $1))
    else
        MP+='\xdc'; mp_byte $(($1 >> 8)); mp_byte $(($1 & 255))
    fi
}
# mp_task ID LAB SYMBOL T0_MS NBARS: one task map, bars one minute apart, prices all 100
mp_task() {
    local id=$1 lab=$2 sym=$3 t0=$4 n=$5 i
    MP+='\x86'
    mp_str v; MP+='\x01'
    mp_str id; mp_str "$id"
    mp_str lab; mp_str "$lab"
    mp_str sym; mp_str "$sym"
    mp_str ts; mp_u64 "${EPOCHREALTIME/./}"
    mp_str bars; mp_array_hdr "$n"
    for ((i = 0; i < n; i++)); do
        MP+='\x96'; mp_u64 $((t0 + i * 60000)); MP+='\x64\x64\x64\x64\x01'
    done
}

# xadd_mp: XADD the bytes of $MP as field m of a new analysis entry
xadd_mp() {
    printf "$MP" >"$T_DIR/entry.bin"
    rcli -x XADD "$QKEY" '*' m <"$T_DIR/entry.bin" >/dev/null
}

# enqueue_tasks LAB SYMBOL COUNT PER_ENTRY [ID_PREFIX]: COUNT tasks in entries of PER_ENTRY
# (PER_ENTRY 1: each entry is a lone map, as simple producers write it); ids PREFIX/i/LAB
enqueue_tasks() {
    local lab=$1 sym=$2 count=$3 per=$4 prefix=${5:-$2} i=0 k n
    while [ "$i" -lt "$count" ]; do
        n=$((count - i < per ? count - i : per))
        MP=
        [ "$per" -gt 1 ] && mp_array_hdr "$n"
        for ((k = 0; k < n; k++)); do
            mp_task "$prefix/$((i + k))/$lab" "$lab" "$sym" $((1700000000000 + (i + k) * 60000)) 4
        done
        xadd_mp
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

summary() { CGALPHA_LOG_LEVEL=warn "$LAB" --summary 2>>"$T_DIR/summary.log"; }
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
    wait_for 20 reports_at_least 12 || fails "expected 12 reports"
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
