# Shared helpers for tests/system/*.sh (source it). Every scenario starts its own redis-server
# in a temp dir (unix socket, no TCP unless asked), runs the real binaries from $CGA_BIN_DIR, and
# cleans up in an EXIT trap, whatever happens.
set -euo pipefail

: "${CGA_BIN_DIR:?run through ctest (CGA_BIN_DIR unset)}"
OPS=$CGA_BIN_DIR/cgalpha-ops
LAB=$CGA_BIN_DIR/cgalpha-lab
NEXUS=$CGA_BIN_DIR/cgalpha-nexus
REDIS_SERVER=${REDIS_SERVER:-redis-server}

T=$(mktemp -d /tmp/cga-sys-XXXXXX)
export OPS_BUFFER_PATH=$T/task_buffer.db # each scenario its own task buffer
PIDS=()
REDIS_PID=""

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }

cleanup() {
    local rc=$?
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
    [ -n "$REDIS_PID" ] && kill -9 "$REDIS_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    if [ $rc -ne 0 ]; then
        log "logs in $T (kept):"
        for f in "$T"/*.log; do [ -f "$f" ] && { echo "--- $f (last 30 lines)"; tail -n 30 "$f"; }; done
    else
        rm -rf "$T"
    fi
}
trap cleanup EXIT

# start_redis [extra redis-server args...]: private server on $T/redis.sock.
start_redis() {
    "$REDIS_SERVER" --port "${REDIS_TCP_PORT:-0}" --bind 127.0.0.1 --unixsocket "$T/redis.sock" \
        --unixsocketperm 700 --save '' --appendonly "${REDIS_AOF:-no}" --dir "$T" \
        --daemonize no "$@" >"$T/redis.log" 2>&1 &
    REDIS_PID=$!
    export REDIS_URL="unix://$T/redis.sock"
    for _ in $(seq 1 250); do
        rcli PING >/dev/null 2>&1 && return 0
        sleep 0.02
    done
    fail "redis-server did not start"
}

stop_redis() { # stop_redis [signal]
    [ -n "$REDIS_PID" ] || return 0
    kill "-${1:-TERM}" "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=""
}

rcli() { redis-cli -s "$T/redis.sock" "$@"; }

# free_port: a loopback TCP port nothing listens on, below the kernel's ephemeral range (so no
# outgoing connection of another test takes it meanwhile; two tests picking the same one of
# 12,000 at the same moment stays possible, but rare).
free_port() {
    local p lo
    lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    for p in $(shuf -i 20000-$((lo - 1)) -n 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
    done
    return 1
}

# http_get PORT PATH: the status line, headers and body of GET PATH (bash's /dev/tcp, no curl).
http_get() {
    exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
    cat <&3
    exec 3<&-
}

# spawn NAME cmd...: runs in the background with its log in $T/NAME.log; sets LAST_PID.
spawn() {
    local name=$1; shift
    "$@" >"$T/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# wait_for SECONDS DESCRIPTION cmd...: polls cmd every 0.1 s until it succeeds.
wait_for() {
    local secs=$1 what=$2; shift 2
    local end=$(( $(date +%s%N) + secs * 1000000000 ))
    while [ "$(date +%s%N)" -lt $end ]; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    fail "timed out after ${secs}s waiting for: $what"
}

# stop_proc PID [SECONDS]: SIGTERM, wait for exit, return its exit code.
stop_proc() {
    local pid=$1 secs=${2:-20}
    kill -TERM "$pid" 2>/dev/null || true
    local end=$(( $(date +%s) + secs ))
    while kill -0 "$pid" 2>/dev/null; do
        [ "$(date +%s)" -lt $end ] || fail "process $pid did not exit within ${secs}s of SIGTERM"
        sleep 0.1
    done
    local rc=0
    wait "$pid" || rc=$?
    return $rc
}

group_pending() { # group_pending QUEUE GROUP -> pending count
    rcli XPENDING "cgalpha:queue:$1" "$2" | sed -n 1p
}

group_lag() { # group_lag QUEUE GROUP -> entries not yet delivered to the group
    rcli XINFO GROUPS "cgalpha:queue:$1" | awk -v g="$2" '
        /^name$/ { getline; name = $0 }
        /^lag$/ { getline; if (name == g) { print; exit } }'
}
