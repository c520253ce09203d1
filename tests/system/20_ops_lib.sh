# Helpers for the system tests of cgalpha-ops (20_ops_*.sh source this file). Run directly (ctest
# runs every tests/system/NN_*.sh) it is the smallest check: `enqueue` of a small synthetic
# market puts exactly the expected tasks, with the expected ids, into the analysis stream.
# shellcheck shell=bash
set -euo pipefail

: "${CGA_BIN_DIR:?CGA_BIN_DIR must point at the built binaries}"
OPS=$CGA_BIN_DIR/cgalpha-ops
NS=cgalpha
QKEY=$NS:queue:analysis
RKEY=$NS:queue:reports

T_DIR=$(mktemp -d /tmp/cga-ops-XXXXXX)
# Each scenario has its own task buffer (the default is under the working directory, which
# scenarios running in parallel share).
export OPS_BUFFER_PATH=$T_DIR/task_buffer.db
REDIS_PID=
PIDS=()

ops_cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ -n "$REDIS_PID" ]; then
        kill -9 "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
    fi
    [ -n "${KEEP_LOGS:-}" ] && { echo "logs kept in $T_DIR"; return; }
    rm -rf "$T_DIR"
}
trap ops_cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    local f
    for f in "$T_DIR"/*.log "$T_DIR"/*.err; do
        [ -f "$f" ] || continue
        echo "---- $f (last 30 lines)" >&2
        tail -n 30 "$f" >&2
    done
    exit 1
}

step() { echo "-- $*"; }

# start_redis [extra redis-server args...]: a fresh server on a unix socket in $T_DIR.
start_redis() {
    redis-server --port 0 --unixsocket "$T_DIR/redis.sock" --save '' --appendonly no \
        --daemonize no --dir "$T_DIR" "$@" >"$T_DIR/redis-server.out" 2>&1 &
    REDIS_PID=$!
    export REDIS_URL=unix://$T_DIR/redis.sock
    local i
    for i in $(seq 1 100); do
        [ "$(rcli PING 2>/dev/null)" = PONG ] && return 0
        sleep 0.05
    done
    fail "redis-server did not start"
}

stop_redis() {
    kill -9 "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=
}

rcli() { redis-cli -s "$T_DIR/redis.sock" "$@"; }

# wait_until SECONDS 'SHELL CONDITION': evaluates the condition (a string, so that command
# substitutions run each time) every 0.1 s; returns 1 after SECONDS.
wait_until() {
    local secs=$1 i
    shift
    for i in $(seq 1 $((secs * 10))); do
        if eval "$*"; then return 0; fi
        sleep 0.1
    done
    return 1
}

# Tasks in a stream, counted by Redis itself (Lua cmsgpack): entries hold one task map or an
# array of them. stream_tasks KEY [count|ids|bars|bad]
#   count: number of tasks; ids: every task id (one per line); bars: distinct bar counts;
#   bad: entries whose "m" does not decode.
LUA_TASKS='
local mode = ARGV[1]
local n, bad, ids, bars = 0, 0, {}, {}
for _, e in ipairs(redis.call("XRANGE", KEYS[1], "-", "+")) do
  local f, m = e[2], nil
  for i = 1, #f, 2 do if f[i] == "m" then m = f[i + 1] end end
  local ok, v = pcall(cmsgpack.unpack, m or "")
  if not ok or type(v) ~= "table" then
    bad = bad + 1
  else
    local list = v
    if v[1] == nil then list = {v} end
    for _, t in ipairs(list) do
      n = n + 1
      ids[#ids + 1] = t.id
      bars[tostring(#t.bars)] = true
    end
  end
end
if mode == "ids" then return ids end
if mode == "bad" then return bad end
if mode == "bars" then local r = {} for k in pairs(bars) do r[#r + 1] = k end return r end
return n'
stream_tasks() { rcli EVAL "$LUA_TASKS" 1 "$1" "${2:-count}"; }

# A msgpack value built by Redis' cmsgpack from a Lua table expression, stored in KEY (string):
# mp_set KEY LUA_TABLE [PX ms]
mp_set() {
    local key=$1 tbl=$2
    shift 2
    rcli EVAL "redis.call('SET', KEYS[1], cmsgpack.pack($tbl)) return 1" 1 "$key" >/dev/null
}

# The value of field FIELD of the msgpack map in string KEY.
mp_field() {
    rcli EVAL "local v = cmsgpack.unpack(redis.call('GET', KEYS[1])) return tostring(v[ARGV[1]])" \
        1 "$1" "$2"
}

has_python() { command -v python3 >/dev/null 2>&1; }

# json_ok FILE: the file is one valid JSON document (python3) or at least looks like one.
json_ok() {
    if has_python; then
        python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$1"
    else
        grep -q '^{.*}$' "$1"
    fi
}

# json_get FILE PYTHON_EXPR: prints the expression evaluated on the document d (needs python3).
json_get() {
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    start_redis
    step "enqueue: 2 symbols x 100 bars, window 32 step 16, 2 labs"
    out=$("$OPS" enqueue --source synthetic --symbols 2 --bars 100 --labs trend,volatility) ||
        fail "enqueue exited $?"
    # (100 - 32) / 16 + 1 = 5 windows per symbol, 2 symbols, 2 labs
    echo "$out" | grep -q '^enqueued 20 tasks in [0-9]* entries' || fail "summary: $out"
    [ "$(stream_tasks $QKEY count)" = 20 ] || fail "tasks in the stream: $(stream_tasks $QKEY)"
    [ "$(stream_tasks $QKEY bad)" = 0 ] || fail "undecodable entries"
    [ "$(stream_tasks $QKEY bars)" = 32 ] || fail "bars per task: $(stream_tasks $QKEY bars)"
    ids=$(stream_tasks $QKEY ids | sort)
    [ "$(echo "$ids" | sort -u | wc -l)" = 20 ] || fail "ids are not unique"
    # Windows start at bars 0, 16, 32, 48, 64: t0 + k * 16 minutes.
    for t in 1704067200000 1704068160000 1704071040000; do
        for lab in trend volatility; do
            echo "$ids" | grep -qx "SYN1/$t/$lab" || fail "missing task SYN1/$t/$lab"
        done
    done
    # Both consumer groups exist from the start.
    rcli XINFO GROUPS $QKEY | grep -qx labs || fail "group labs missing"
    rcli XINFO GROUPS $RKEY | grep -qx nexus || fail "group nexus missing"
    echo "ok"
fi
