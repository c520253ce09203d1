#!/usr/bin/env bash
# Helpers for the fault scenarios (40_fault_*.sh source this file, on top of lib.sh). Run directly
# (ctest runs every tests/system/NN_*.sh) it checks the task buffer's own failures:
#   - a buffer path that cannot be used: run and enqueue exit 1 with one line, before any task;
#   - a buffer that is full (--buffer-max-bytes) while Redis is down: enqueue stops, says how many
#     tasks could not be stored and exits 1; what the buffer holds is intact and `recover` sends
#     it; `run` keeps the tasks in memory, retries Redis and the buffer, and loses nothing;
#   - recover refuses while another process holds the drain lease; --dry-run shows the rows.
# shellcheck shell=bash
source "$(dirname "$0")/lib.sh"

NS=cgalpha
QKEY=$NS:queue:analysis
RKEY=$NS:queue:reports
export OPS_BUFFER_PATH=$T/task_buffer.db
export REDIS_BACKOFF_CAP_MS=${REDIS_BACKOFF_CAP_MS:-500} # reconnect within half a second
T_START=$(date +%s%N)

elapsed() { echo $((($(date +%s%N) - T_START) / 1000000)); } # ms since the start

# An "audit" group on both streams that never reads keeps every task and every report there: the
# coordinator trims only what every group consumed.
audit_group() {
    rcli XGROUP CREATE "$QKEY" audit 0 MKSTREAM >/dev/null
    rcli XGROUP CREATE "$RKEY" audit 0 MKSTREAM >/dev/null
}

# poll SECONDS cmd...: like wait_for, but returns 1 on timeout instead of failing.
poll() {
    local end=$(($(date +%s%N) + $1 * 1000000000))
    shift
    while [ "$(date +%s%N)" -lt $end ]; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

start_services() { # nexus + one lab with the three built-in plugins; short lease
    spawn nexus "$NEXUS"
    spawn lab "$LAB" --plugin trend --plugin volatility --plugin momentum --lease-ms 3000 "$@"
    LAB_PID=$LAST_PID
}

summary_get() { # KEY: a line of `cgalpha-lab --summary` (report_tasks = distinct task ids)
    CGALPHA_LOG_LEVEL=off "$LAB" --summary 2>/dev/null | awk -v k="$1" '$1 == k { print $2 }'
}

# Task ids in the analysis stream, by Redis' own Lua (entries are one map or an array of them):
# stream_tasks total|distinct
LUA_IDS='
local seen, total, distinct = {}, 0, 0
for _, e in ipairs(redis.call("XRANGE", KEYS[1], "-", "+")) do
  local f, m = e[2], nil
  for i = 1, #f, 2 do if f[i] == "m" then m = f[i + 1] end end
  local ok, v = pcall(cmsgpack.unpack, m or "")
  if ok and type(v) == "table" then
    local list = v
    if v[1] == nil then list = {v} end
    for _, t in ipairs(list) do
      total = total + 1
      if not seen[t.id] then seen[t.id] = true distinct = distinct + 1 end
    end
  end
end
if ARGV[1] == "total" then return total end
return distinct'
stream_tasks() { rcli EVAL "$LUA_IDS" 1 "$QKEY" "${1:-distinct}"; }

# The buffer as `recover --dry-run --json` sees it (read-only; works while Redis is down):
# buffer_count entries|tasks
buffer_count() {
    local j
    j=$("$OPS" recover --dry-run --json 2>/dev/null) || { echo 0; return; }
    if [ "$1" = tasks ]; then
        sed -n 's/.*"would_send":{"entries":[0-9]*,"tasks":\([0-9]*\)}.*/\1/p' <<<"$j"
    else
        sed -n 's/.*"would_send":{"entries":\([0-9]*\),.*/\1/p' <<<"$j"
    fi
}
# The same rows counted by sqlite3 itself, when installed (else by recover --dry-run).
buffer_rows() {
    if command -v sqlite3 >/dev/null 2>&1; then
        sqlite3 "$OPS_BUFFER_PATH" 'SELECT count(*) FROM entries' 2>/dev/null || echo 0
    else
        buffer_count entries
    fi
}

buffer_rows_at_least() { [ "$(buffer_rows)" -ge "$1" ]; }

synthetic_tasks() { # SYMBOLS BARS [LABS]: tasks a synthetic source gives (window 32, step 16)
    echo $(($1 * (($2 - 32) / 16 + 1) * ${3:-3}))
}

tasks_in_redis() { [ "$(stream_tasks)" -gt "${1:-0}" ]; }

reports_complete() { [ "$(summary_get report_tasks)" = "$1" ]; }

# check_reports N [SECONDS]: waits until N distinct task ids have a report, then prints the
# duplicates and asserts that none is lost (the ids can only come from the producer's set of N).
# LOSS_OK=1: returns 1 instead of failing.
check_reports() {
    local n=$1 secs=${2:-30} got reports dups
    poll "$secs" reports_complete "$n" || true
    got=$(summary_get report_tasks)
    reports=$(summary_get reports)
    dups=$((reports - got))
    log "reports: $reports for $got distinct tasks of $n produced: $dups duplicates," \
        "$((n - got)) lost"
    [ "$got" = "$n" ] && return 0
    [ -n "${LOSS_OK:-}" ] && return 1
    fail "$((n - got)) tasks lost (no report)"
}

# check_stream N: the analysis stream holds every one of the N task ids; prints duplicates.
check_stream() {
    local n=$1 d t
    d=$(stream_tasks distinct)
    t=$(stream_tasks total)
    log "analysis stream: $t tasks for $d distinct of $n produced: $((t - d)) duplicates," \
        "$((n - d)) lost"
    [ "$d" = "$n" ] || fail "$((n - d)) tasks lost (not in the analysis stream)"
}

# ---- run directly: the buffer's own failures ------------------------------------------------
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    start_redis

    log "a buffer path that cannot be used: exit 1, one line, nothing produced"
    touch "$T/file"
    for cmd in enqueue run; do
        rc=0
        "$OPS" $cmd --buffer-path "$T/file/buffer.db" --log-level warn >/dev/null \
            2>"$T/badpath.err" || rc=$?
        [ "$rc" = 1 ] || fail "$cmd: exit $rc with an unusable buffer path"
        [ "$(wc -l <"$T/badpath.err")" = 1 ] || fail "$cmd: not one line: $(cat "$T/badpath.err")"
        grep -q "task buffer $T/file/buffer.db: cannot create folder" "$T/badpath.err" ||
            fail "$cmd: unclear: $(cat "$T/badpath.err")"
    done
    echo "not a database" >"$T/garbage.db"
    rc=0
    "$OPS" enqueue --buffer-path "$T/garbage.db" 2>"$T/badpath.err" >/dev/null || rc=$?
    [ "$rc" = 1 ] && grep -q "not a SQLite database" "$T/badpath.err" ||
        fail "a foreign file: exit $rc: $(cat "$T/badpath.err")"
    [ "$(rcli EXISTS "$QKEY")" = 0 ] || fail "tasks produced despite an unusable buffer"

    log "enqueue, Redis down, the buffer full: exit 1 with the count of tasks not stored"
    spawn enq_full "$OPS" enqueue --symbols 2 --bars 5000 --bar-rate 400 --labs trend \
        --buffer-max-bytes 100000 --grace-ms 1000
    ENQ=$LAST_PID
    wait_for 10 "tasks in Redis" tasks_in_redis
    stop_redis KILL
    rc=0
    wait "$ENQ" || rc=$?
    [ "$rc" = 1 ] || fail "enqueue with a full buffer exited $rc, want 1"
    grep -q "could be stored neither in Redis nor in the task buffer .*disk full" \
        "$T/enq_full.log" || fail "no ERROR naming what could not be stored"
    lost=$(sed -n 's/.*, \([0-9]*\) tasks could not be stored.*/\1/p' "$T/enq_full.log")
    [ -n "$lost" ] && [ "$lost" -gt 0 ] || fail "the summary does not count the lost tasks"
    accepted=$(sed -n 's/^enqueued \([0-9]*\) tasks.*/\1/p' "$T/enq_full.log")
    kept=$(buffer_count tasks)
    [ "$kept" -gt 0 ] || fail "nothing in the buffer"
    log "enqueue: $accepted tasks in Redis, $kept in the buffer, $lost not stored (reported)"

    log "recover: refused while another process holds the drain lease; then sends everything"
    start_redis
    if command -v sqlite3 >/dev/null 2>&1; then
        sqlite3 "$OPS_BUFFER_PATH" "INSERT OR REPLACE INTO drain_lease VALUES(1, 'x',
            'pid 1 on host elsewhere', $(($(date +%s%N) / 1000000 + 60000)))"
        rc=0
        "$OPS" recover >/dev/null 2>"$T/recover.err" || rc=$?
        [ "$rc" = 1 ] || fail "recover under another's lease exited $rc"
        grep -q "being drained by pid 1 on host elsewhere" "$T/recover.err" ||
            fail "recover: $(cat "$T/recover.err")"
        [ "$(buffer_count tasks)" = "$kept" ] || fail "recover sent rows without the lease"
        sqlite3 "$OPS_BUFFER_PATH" "DELETE FROM drain_lease"
    fi
    "$OPS" recover >"$T/recover.out" || fail "recover exited $?"
    grep -q "^recovered [0-9]* entries ($kept tasks)" "$T/recover.out" ||
        fail "recover: $(cat "$T/recover.out")"
    [ "$(buffer_rows)" = 0 ] || fail "rows left after recover"
    # Redis was killed without persistence: what it had is gone; the buffer's tasks arrived.
    [ "$(stream_tasks)" = "$kept" ] || fail "recovered $(stream_tasks) distinct tasks, want $kept"
    "$OPS" recover >"$T/recover2.out" || fail "second recover exited $?"
    grep -q "^nothing to recover" "$T/recover2.out" || fail "$(cat "$T/recover2.out")"

    log "run, Redis down, the buffer full: entries kept in memory, nothing lost"
    stop_redis
    export REDIS_AOF=yes # what Redis accepted survives its restarts
    start_redis
    N=$(synthetic_tasks 2 600 1)
    spawn run_full "$OPS" run --symbols 2 --bars 600 --bar-rate 100 --labs trend \
        --buffer-max-bytes 100000 --exit-when-done
    RUN=$LAST_PID
    wait_for 10 "tasks in Redis" tasks_in_redis
    stop_redis TERM
    wait_for 20 "the full buffer logged" grep -q "cannot store .* task buffer" "$T/run_full.log"
    sleep 1
    kill -0 "$RUN" || fail "run exited while the buffer is full"
    start_redis
    rc=0
    wait "$RUN" || rc=$?
    [ "$rc" = 0 ] || fail "run exited $rc"
    grep -q "the task buffer accepts entries again\|Redis accepts entries again" \
        "$T/run_full.log" || fail "no recovery logged"
    [ "$(buffer_rows)" = 0 ] || fail "rows left in the buffer"
    check_stream "$N"
    log "PASS ($(elapsed) ms)"
fi
