#!/usr/bin/env bash
# ops killed with -9 while its task buffer is not empty (Redis down), then started again: the rows
# it left are drained first (the first entry Redis gets after the restart is the oldest row), then
# the new tasks; every task id gets a report (losses 0; duplicates printed), the buffer ends
# empty.
#   1. The whole source went into the buffer (Redis down), nothing left in memory: kill -9, then
#      a new run on a LATER segment of the market, so that nothing is produced twice and each
#      task of the first run can only arrive through the buffer.
#   2. kill -9 in the middle of the source (entries in memory are lost with the process), then
#      the same command again: it replays the source (same ids) behind the leftovers.
source "$(dirname "$0")/40_fault_lib.sh"
export REDIS_AOF=yes
start_redis
audit_group
start_services
export CGALPHA_SINGLE_INSTANCE=1 # the lock never stops production during the outages
RUN=(run --symbols 2 --bars 400 --bar-rate 100 --lock-ttl-ms 2000 --exit-when-done)
N=$(synthetic_tasks 2 400)

oldest_row() { # first task id of the oldest row of the analysis queue in the buffer
    "$OPS" recover --dry-run --json |
        sed -n 's/.*"queue":"cgalpha:queue:analysis"[^}]*"first_id":"\([^"]*\)".*/\1/p'
}
# (sed reads all of it: `head -n1` would close the pipe under a 58 KB entry still being written,
# and SIGPIPE with pipefail ends the script without a word)
last_entry_id() { rcli XREVRANGE "$QKEY" + - COUNT 1 | sed -n 1p; }
first_task_after() { # first task id of the first entry after stream id $1
    rcli EVAL "local e = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', 1)[1]
        if not e then return '' end
        local v = cmsgpack.unpack(e[2][2]) if v[1] then v = v[1] end return v.id" 1 "$QKEY" "$1"
}

log "1. the whole source into the buffer while Redis is down, then kill -9"
spawn ops1 "$OPS" "${RUN[@]}"
P=$LAST_PID
wait_for 10 "tasks produced" tasks_in_redis 10
stop_redis TERM
wait_for 20 "the source exhausted" grep -q "source exhausted" "$T/ops1.log"
sleep 1 # the last entries reach the buffer within a loop turn
kill -9 "$P"
wait "$P" 2>/dev/null || true
rows=$(buffer_rows)
[ "$rows" -gt 0 ] || fail "the buffer is empty"
first=$(oldest_row)
log "ops killed with $rows rows ($(buffer_count tasks) tasks) in the buffer, oldest $first"
start_redis
mark=$(last_entry_id)
START2=$((1704067200000 + 400 * 60000))
spawn ops2 "$OPS" "${RUN[@]}" --start-ms $START2
P=$LAST_PID
wait_for 20 "ops2 done" sh -c "! kill -0 $P 2>/dev/null"
wait "$P" || fail "ops2 exited $?"
grep -q "holds $rows entries .* from an earlier run" "$T/ops2.log" ||
    fail "the leftovers were not noticed at start"
got=$(first_task_after "$mark")
[ "$got" = "$first" ] || fail "the first entry after the restart starts with $got, want $first"
[ "$(buffer_rows)" = 0 ] || fail "rows left in the buffer"
check_reports $((2 * N))

log "2. kill -9 in the middle of the source (Redis down), then the same command again"
START3=$((START2 + 400 * 60000))
spawn ops3 "$OPS" "${RUN[@]}" --start-ms $START3
P=$LAST_PID
wait_for 10 "tasks produced" tasks_in_redis $((2 * N + 10))
stop_redis TERM
wait_for 10 "rows in the buffer" buffer_rows_at_least 5
kill -9 "$P"
wait "$P" 2>/dev/null || true
grep -q "source exhausted" "$T/ops3.log" && fail "the source ended before the kill"
rows=$(buffer_rows)
[ "$rows" -gt 0 ] || fail "the buffer is empty"
first=$(oldest_row)
log "ops killed mid-source with $rows rows in the buffer, oldest $first"
start_redis
mark=$(last_entry_id)
spawn ops4 "$OPS" "${RUN[@]}" --start-ms $START3
P=$LAST_PID
wait_for 20 "ops4 done" sh -c "! kill -0 $P 2>/dev/null"
wait "$P" || fail "ops4 exited $?"
got=$(first_task_after "$mark")
[ "$got" = "$first" ] || fail "the first entry after the restart starts with $got, want $first"
[ "$(buffer_rows)" = 0 ] || fail "rows left in the buffer"
check_reports $((3 * N))
check_stream $((3 * N))
log "PASS ($(elapsed) ms)"
