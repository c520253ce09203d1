#!/usr/bin/env bash
# A plugin that crashes takes its lab down; the task comes back after the lease, its entry is
# split so that the neighbours get their reports, and the crashing task ends in the dead
# letters after the delivery limit. Labs are restarted in a loop, as a supervisor would.
source "$(dirname "$0")/30_lab_common.sh"

start_redis
MP=; mp_array_hdr 3                            # one entry: OK CRASH OK
mp_task X/0/faulty faulty OK 1700000000000 4
mp_task X/1/faulty faulty CRASH 1700000060000 4
mp_task X/2/faulty faulty OK 1700000120000 4
xadd_mp
enqueue_tasks faulty OK 3 1 S                  # three single-task entries

done_yet() {
    [ "$(summary_get analysis_dead)" = 1 ] && [ "$(summary_get analysis_pending)" = 0 ] &&
        [ "$(summary_get report_tasks)" = 5 ]
}

crashes=0 runs=0
deadline=$(($(date +%s) + 60))
while ! done_yet; do
    [ "$(date +%s)" -lt "$deadline" ] ||
        fails "not settled after 60 s ($runs labs, $crashes crashes)"
    runs=$((runs + 1))
    start_lab "lab$runs" --plugin "$CGA_FIXTURE_PLUGIN_DIR/faulty.so" --lease-ms 500 \
        --max-deliveries 3 --concurrency 1
    # Until it crashes or everything settled.
    while kill -0 "$LAB_PID" 2>/dev/null && ! done_yet; do
        [ "$(date +%s)" -lt "$deadline" ] || break
        sleep 0.1
    done
    if kill -0 "$LAB_PID" 2>/dev/null; then
        kill -TERM "$LAB_PID"
        rc=0; wait "$LAB_PID" || rc=$?
        [ "$rc" = 0 ] || fail "lab$runs exited $rc after SIGTERM"
    else
        rc=0; wait "$LAB_PID" || rc=$?
        [ "$rc" = 134 ] || fail "lab$runs died with $rc, expected SIGABRT (134)"
        crashes=$((crashes + 1))
    fi
done

# lab1: the entry (delivery 1) crashes. lab2: reclaimed (delivery 2), split into three fresh
# entries, claimed together: crash. Then the three come back one at a time (the lane): X/0 is
# reported, X/1 crashes at deliveries 2 and 3, goes to the dead letters at 4; X/2 is reported.
[ "$crashes" -ge 4 ] || fail "expected at least 4 crashes, got $crashes"
rcli XRANGE "$DKEY" - + >"$T_DIR/dead.txt"
grep -aq "delivered 4 times (limit 3)" "$T_DIR/dead.txt" || fail "dead letter reason"
grep -aq "X/1/faulty" "$T_DIR/dead.txt" || fail "the dead letter is not the CRASH task"
[ "$(summary_get report_error)" = 0 ] || fail "unexpected error reports"
grep -q "split into 3 single-task entries" "$T_DIR"/lab*.log || fail "the entry was not split"
echo "30_lab_crash: ok ($runs labs, $crashes crashes)"
