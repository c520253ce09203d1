#!/usr/bin/env bash
# Redis stopped for 30 s while ops produces (paced), one lab and nexus running. ops does not wait
# for Redis: it goes on producing into the task buffer on disk (rows counted by sqlite3 and shown
# by `recover --dry-run` and `status` during the outage, growing), and drains it by itself once
# Redis is back; every task id produced gets a report (losses 0; duplicates printed).
# CGALPHA_SINGLE_INSTANCE=1: the only ops of the namespace keeps its lock through the outage (with
# a standby possible, the lock would lapse after its TTL and production would stop until Redis
# returns: nothing lost either, but nothing produced meanwhile; docs/OPS.md).
source "$(dirname "$0")/40_fault_lib.sh"
export REDIS_AOF=yes
start_redis
audit_group
start_services

SYMBOLS=2 BARS=700 RATE=20 # 35 s of production: 3 s, then 30 s without Redis, then the rest
N=$(synthetic_tasks $SYMBOLS $BARS)
log "producing $N tasks at $RATE bars/s per symbol"
CGALPHA_SINGLE_INSTANCE=1 spawn ops "$OPS" run --symbols $SYMBOLS --bars $BARS \
    --bar-rate $RATE --exit-when-done
OPS_PID=$LAST_PID
wait_for 10 "tasks produced" tasks_in_redis 20

log "Redis stopped for 30 s"
stop_redis TERM
DOWN_AT=$(elapsed)
wait_for 10 "the outage logged" grep -q "new tasks go to the task buffer" "$T/ops.log"
sleep 5
rows1=$(buffer_rows)
tasks1=$(buffer_count tasks)
sleep 20
rows2=$(buffer_rows)
tasks2=$(buffer_count tasks)
log "buffer during the outage: $rows1 rows ($tasks1 tasks), 20 s later $rows2 rows ($tasks2 tasks)"
[ "$rows1" -gt 0 ] || fail "nothing in the task buffer during the outage"
[ "$rows2" -gt "$rows1" ] || fail "production did not go on into the buffer"
[ "$tasks2" -gt "$tasks1" ] || fail "recover --dry-run does not show the buffered tasks"
rc=0
"$OPS" status --json >"$T/status.json" 2>"$T/status.err" || rc=$?
[ "$rc" = 3 ] || fail "status during the outage exited $rc, want 3"
grep -q '"redis":{"reachable":false' "$T/status.json" || fail "status: $(cat "$T/status.json")"
grep -q "\"buffer\":{\"path\":\"$OPS_BUFFER_PATH\",\"exists\":true,\"entries\":[1-9]" \
    "$T/status.json" || fail "status shows no buffer depth: $(cat "$T/status.json")"
kill -0 "$OPS_PID" || fail "ops exited during the outage"
while [ $(($(elapsed) - DOWN_AT)) -lt 30000 ]; do sleep 0.2; done

log "Redis back after $((($(elapsed) - DOWN_AT) / 1000)) s"
start_redis
wait_for 20 "the buffer drained" grep -q "task buffer drained" "$T/ops.log"
wait_for 20 "ops done" sh -c "! kill -0 $OPS_PID 2>/dev/null"
rc=0
wait "$OPS_PID" || rc=$?
[ "$rc" = 0 ] || fail "ops run exited $rc"
[ "$(buffer_rows)" = 0 ] || fail "rows left in the task buffer"
check_reports "$N" 20
check_stream "$N"
log "PASS ($(elapsed) ms)"
