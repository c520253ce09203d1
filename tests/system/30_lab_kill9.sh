#!/usr/bin/env bash
# A lab killed with -9 mid-run loses nothing: a second lab reclaims its entries after the lease,
# splits the redelivered multi-task entry so that the poison task (a plugin that hangs) cannot
# hold its neighbours back, reports every other task, and sends the hanging task to the dead
# letters once it passed the delivery limit. SIGTERM with a task still hanging: the grace
# period expires, the lab says what it leaves pending and exits 0.
source "$(dirname "$0")/30_lab_common.sh"

start_redis
enqueue_tasks faulty OK 4 4 A                  # one entry of 4 tasks: done by lab1
MP=; mp_array_hdr 4                            # one entry: OK OK HANG OK
mp_task B/0/faulty faulty OK 1700000000000 4
mp_task B/1/faulty faulty OK 1700000060000 4
mp_task B/2/faulty faulty HANG 1700000120000 4
mp_task B/3/faulty faulty OK 1700000180000 4
xadd_mp
enqueue_tasks faulty OK 5 1 C                  # five single-task entries, stuck behind it

# lab1 has one thread: it finishes A, then hangs in B; C waits in its queue.
start_lab lab1 --plugin "$CGA_FIXTURE_PLUGIN_DIR/faulty.so" --concurrency 1 --lease-ms 1000
LAB1=$LAB_PID
wait_for 20 reports_at_least 4 || fail "lab1 did not report A"
wait_for 10 pending_is 6 || fails "expected 6 entries pending on lab1"
sleep 0.3
[ "$(summary_get report_tasks)" = 4 ] || fail "lab1 reported more than A"
kill -9 "$LAB1"
wait "$LAB1" 2>/dev/null || true

# lab2 reclaims after the lease: everything but the hanging task gets its report.
start_lab lab2 --plugin "$CGA_FIXTURE_PLUGIN_DIR/faulty.so" --concurrency 2 --lease-ms 1000 \
    --max-deliveries 3 --grace-ms 500
LAB2=$LAB_PID
wait_for 30 reports_at_least 12 || fails "expected 12 reports after reclaim"
grep -q "split into 4 single-task entries" "$T_DIR/lab2.log" || fail "B was not split"
# The hanging task: reclaimed by lab2 from itself until past the limit, then dead-lettered.
wait_for 30 pending_is 0 || fails "entries still pending"
[ "$(summary_get analysis_dead)" = 1 ] || fail "expected the HANG task in the dead letters"
rcli XRANGE "$DKEY" - + | grep -aq "delivered 4 times (limit 3)" || fail "dead letter reason"
rcli XRANGE "$DKEY" - + | grep -aq "B/2/faulty" || fail "the dead letter is not the HANG task"
[ "$(summary_get report_tasks)" = 12 ] || fail "expected exactly 12 distinct reports"
[ "$(summary_get report_error)" = 0 ] || fail "unexpected error reports"

# One thread is stuck in the hanging plugin: the other still runs new tasks, one at a time.
for i in 0 1 2; do
    enqueue_tasks faulty OK 1 1 "D$i"
    wait_for 5 reports_at_least $((13 + i)) || fails "a task waited behind the hung thread"
done

# SIGTERM while the HANG task still holds a thread: exit 0 after the grace period.
start=$(date +%s%N)
kill -TERM "$LAB2"
rc=0; wait "$LAB2" || rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
[ "$rc" = 0 ] || fail "lab2 exited $rc"
grep -q "grace period of 500 ms expired" "$T_DIR/lab2.log" || fail "no grace-period log line"
[ "$ms" -lt 5000 ] || fail "lab2 took $ms ms to exit"
[ "$(rcli EXISTS "$NS:state:worker:lab2")" = 0 ] || fail "lab2's heartbeat key left behind"
ttl=$(rcli PTTL "$NS:state:worker:lab1")   # lab1 died: its heartbeat just expires
[ "$ttl" -le 10000 ] || fail "lab1's heartbeat has no TTL ($ttl)"
echo "30_lab_kill9: ok (lab2 exited in $ms ms)"
