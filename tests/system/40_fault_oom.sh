#!/usr/bin/env bash
# Redis out of memory (maxmemory set just above used_memory mid-run, noeviction) while ops
# produces: entries answered OOM go to the task buffer, none is lost; the semaphore goes red with
# a reason saying OOM (read back through `cgalpha-ops status --json`); once maxmemory is raised the
# buffer drains by itself, the semaphore turns green, and every task id is in the queue and gets a
# report (losses 0; duplicates printed).
# Two producers, as in real life: `run` (coordinator, publishes the semaphore and pauses at red)
# and an `enqueue` that reads the semaphore only at start (--state-interval-ms 1 h), so that it
# goes on writing into the OOM Redis whoever notices it first. The memory part of the semaphore is
# switched off (--*-memory-pct 1000): red comes from OOM alone. No lab runs during the OOM (its
# consumption would free memory); one starts at the end to check the reports.
source "$(dirname "$0")/40_fault_lib.sh"
start_redis
audit_group
SKEY=$NS:state:global_resources

sem() { # level|reason of the semaphore, as status --json decodes it
    "$OPS" status --json 2>/dev/null |
        sed -n "s/.*\"semaphore\":{[^}]*\"$1\":\"\\([^\"]*\\)\".*/\\1/p"
}
sem_is() { [ "$(sem level)" = "$1" ]; }

N1=$(synthetic_tasks 2 1200) N2=$(synthetic_tasks 2 600)
spawn ops "$OPS" run --symbols 2 --bars 1200 --bar-rate 100 --state-interval-ms 300 \
    --yellow-memory-pct 1000 --red-memory-pct 1000 --exit-when-done
RUN=$LAST_PID
spawn enq "$OPS" enqueue --symbols 2 --bars 600 --bar-rate 50 --start-ms 1800000000000 \
    --state-interval-ms 3600000 --log-level info
ENQ=$LAST_PID
wait_for 10 "tasks produced" tasks_in_redis 30
wait_for 10 "the semaphore published" sem_is green

used=$(rcli INFO memory | tr -d '\r' | sed -n 's/^used_memory://p')
log "maxmemory $((used + 32768)) (used_memory $used)"
rcli CONFIG SET maxmemory $((used + 32768)) >/dev/null
wait_for 10 "the semaphore red" sem_is red
reason=$(sem reason)
log "semaphore red: $reason"
[[ "$reason" == OOM* ]] || fail "the reason does not say OOM: $reason"
[ "$(rcli GET "$SKEY" | wc -c)" -gt 1 ] || fail "no semaphore key"
wait_for 10 "entries answered OOM" grep -q "Redis is out of memory (OOM)" "$T/enq.log"
wait_for 10 "tasks in the buffer" buffer_rows_at_least 3
sleep 2
rows=$(buffer_rows)
log "task buffer during the OOM: $rows rows ($(buffer_count tasks) tasks)"
sem_is red || fail "the semaphore left red during the OOM: $(sem level) ($(sem reason))"
kill -0 "$RUN" && kill -0 "$ENQ" || fail "a producer exited during the OOM"

log "maxmemory 0: the buffer drains by itself, production resumes"
rcli CONFIG SET maxmemory 0 >/dev/null
wait_for 10 "the semaphore green again" sem_is green
wait_for 30 "both producers done" sh -c "! kill -0 $RUN 2>/dev/null && ! kill -0 $ENQ 2>/dev/null"
wait "$RUN" || fail "run exited $?"
wait "$ENQ" || fail "enqueue exited $?"
grep -q "task buffer drained" "$T/ops.log" "$T/enq.log" || fail "no drain logged"
[ "$(buffer_rows)" = 0 ] || fail "rows left in the task buffer"
check_stream $((N1 + N2))
start_services
check_reports $((N1 + N2)) 40
log "PASS ($(elapsed) ms)"
