#!/usr/bin/env bash
# Redis outages: the lab keeps running and logs the outage once; after Redis comes back
# (restarted without its data: the group is created again) it consumes again within 5 s.
# Out of memory: reports cannot be written, so nothing is acknowledged; the lab keeps them and
# retries, and once Redis has room again every task is reported and nothing stays pending.
# SIGTERM while reports cannot be written: exit 0 after the grace period, the tasks stay
# pending and another lab reports them after the lease.
source "$(dirname "$0")/30_lab_common.sh"

start_redis
start_lab lab1 --plugin "$CGA_FIXTURE_PLUGIN_DIR/faulty.so" --block-ms 200 --grace-ms 1500
enqueue_tasks faulty OK 10 5 A
wait_for 20 reports_at_least 10 || fail "no reports before the outage"

# ---- Redis lost and restarted without its data
kill -9 "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null || true
sleep 6                          # long enough for the reconnect backoff to reach its cap
kill -0 "$LAB_PID" || fail "the lab died with Redis"
start_redis
t0=$(date +%s%N)
enqueue_tasks faulty OK 6 3 B
wait_for 10 reports_at_least 6 || fails "not consuming after Redis came back"
ms=$((($(date +%s%N) - t0) / 1000000))
[ "$ms" -lt 5000 ] || fail "took $ms ms to consume again"
wait_for 5 pending_is 0 || fail "entries pending after the restart"
n=$(grep -c "claiming from .* failed" "$T_DIR/lab1.log" || true)
[ "$n" = 1 ] || fail "expected one log line for the outage, got $n"
grep -q "claiming again" "$T_DIR/lab1.log" || fail "no recovery log line"
echo "consuming again $ms ms after Redis returned"

# ---- Redis out of memory: nothing acknowledged, reports kept and retried
kill -STOP "$LAB_PID"            # hold the lab while the tasks go in and Redis fills up
enqueue_tasks faulty OK 8 4 C
rcli CONFIG SET maxmemory-policy noeviction >/dev/null
rcli CONFIG SET maxmemory 1 >/dev/null
kill -CONT "$LAB_PID"
sleep 2
grep -q "writing reports failed" "$T_DIR/lab1.log" || fail "no OOM failure logged"
[ "$(rcli XPENDING "$QKEY" labs | sed -n 1p)" = 2 ] || fails "expected 2 entries pending (OOM)"
[ "$(summary_get report_tasks)" = 6 ] || fail "reports written during OOM"
rcli CONFIG SET maxmemory 0 >/dev/null
wait_for 10 reports_at_least 14 || fails "reports not written after OOM"
wait_for 5 pending_is 0 || fail "entries pending after OOM"
grep -q "writing reports again" "$T_DIR/lab1.log" || fail "no recovery log line after OOM"

# ---- SIGTERM while Redis refuses the reports
kill -STOP "$LAB_PID"
enqueue_tasks faulty OK 4 4 D
rcli CONFIG SET maxmemory 1 >/dev/null
kill -CONT "$LAB_PID"
sleep 1
start=$(date +%s%N)
kill -TERM "$LAB_PID"
rc=0; wait "$LAB_PID" || rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
[ "$rc" = 0 ] || fail "lab exited $rc"
[ "$ms" -lt 4000 ] || fail "lab took $ms ms to exit (grace 1500 ms)"
grep -q "grace period of 1500 ms expired: 4 tasks in 1 entries left pending" "$T_DIR/lab1.log" ||
    fail "no log line about what is left pending"
rcli CONFIG SET maxmemory 0 >/dev/null
[ "$(rcli XPENDING "$QKEY" labs | sed -n 1p)" = 1 ] || fails "expected the entry left pending"
start_lab lab2 --plugin "$CGA_FIXTURE_PLUGIN_DIR/faulty.so" --lease-ms 1000
wait_for 15 reports_at_least 18 || fails "the entry left pending was not reported"
wait_for 5 pending_is 0 || fails "entries pending"
kill -TERM "$LAB_PID"
rc=0; wait "$LAB_PID" || rc=$?
[ "$rc" = 0 ] || fail "lab2 exited $rc"
echo "30_lab_outage: ok"
