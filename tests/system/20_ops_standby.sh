#!/usr/bin/env bash
# Two `cgalpha-ops run`: one active, one standby (logged once). kill -9 of the active one: the
# standby takes over within the lock TTL (plus the campaign's retry and a margin) and tasks keep
# flowing. A stolen lock: the holder stops producing, stands by, and takes the lock back when it
# frees. SIGTERM: exit 0 and the lock released.
source "$(dirname "$0")/20_ops_lib.sh"
start_redis
TTL=2000
LKEY=$NS:lock:ops
RUN=("$OPS" run --bar-rate 40 --bars 1000000 --lock-ttl-ms $TTL --state-interval-ms 500
     --log-level info)

now_ms() { echo $(($(date +%s%N) / 1000000)); }
tasks() { rcli XLEN $QKEY; }

step "A active, B standby"
"${RUN[@]}" >"$T_DIR/a.log" 2>&1 &
A=$!
PIDS+=($A)
wait_until 10 'grep -q "holding $LKEY: active" "$T_DIR/a.log"' || fail "A not active"
"${RUN[@]}" >"$T_DIR/b.log" 2>&1 &
B=$!
PIDS+=($B)
wait_until 10 'grep -q "standing by" "$T_DIR/b.log"' || fail "B not standing by"
n0=$(tasks)
wait_until 10 '[ "$(tasks)" -gt "$n0" ]' || fail "A produces nothing"
sleep 1
[ "$(grep -c "standing by" "$T_DIR/b.log")" = 1 ] || fail "standby logged more than once"
grep -q "took over" "$T_DIR/b.log" && fail "B took over while A lives"
tok_a=$(rcli GET $LKEY)

step "kill -9 A: B takes over within the TTL"
t0=$(now_ms)
kill -9 $A
wait $A 2>/dev/null || true
wait_until 10 'grep -q "took over $LKEY: active" "$T_DIR/b.log"' || fail "B did not take over"
dt=$(($(now_ms) - t0))
echo "   took over after $dt ms (lock TTL $TTL ms)"
# The key expires at most TTL after A's last renewal; B retries every TTL/10; margin for a
# loaded machine.
[ "$dt" -le $((TTL + TTL / 10 + 1500)) ] || fail "takeover took $dt ms"
tok_b=$(rcli GET $LKEY)
[ -n "$tok_b" ] && [ "$tok_b" != "$tok_a" ] || fail "lock token did not change"
n1=$(tasks)
wait_until 10 '[ "$(tasks)" -gt "$n1" ]' || fail "no tasks after the takeover"
wait_until 5 '[ "$(rcli PTTL $NS:state:global_resources)" -gt 1000 ]' ||
    fail "B does not publish the semaphore"

step "a stolen lock: B stops, stands by, then takes it back"
rcli SET $LKEY intruder PX 3000 >/dev/null
wait_until 10 'grep -q "lost $LKEY: production stopped, standing by" "$T_DIR/b.log"' ||
    fail "B did not notice the lost lock"
sleep 0.5
n2=$(tasks)
sleep 1
[ "$(tasks)" -le $((n2 + 1)) ] || fail "B still produces without the lock: $n2 -> $(tasks)"
wait_until 10 '[ "$(grep -c "took over $LKEY" "$T_DIR/b.log")" = 2 ]' ||
    fail "B did not take the lock back"
n3=$(tasks)
wait_until 10 '[ "$(tasks)" -gt "$n3" ]' || fail "no tasks after taking the lock back"

step "SIGTERM: graceful exit 0, lock released"
kill -TERM $B
set +e
wait $B
rc=$?
set -e
PIDS=()
[ "$rc" = 0 ] || fail "B exited $rc"
[ "$(rcli EXISTS $LKEY)" = 0 ] || fail "lock not released"
grep -q "SIGTERM: stopping" "$T_DIR/b.log" || fail "no stop line"
echo ok
