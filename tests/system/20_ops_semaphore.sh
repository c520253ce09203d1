#!/usr/bin/env bash
# The coordinator's semaphore: yellow from the backlog (published, logged once), red from Redis
# memory (maxmemory), red from the backlog pausing production, and green again when the backlog
# is gone (production resumes).
source "$(dirname "$0")/20_ops_lib.sh"
start_redis
SKEY=$NS:state:global_resources

level() { mp_field $SKEY level; }

step "paced production, yellow from 30 tasks"
"$OPS" run --bar-rate 100 --bars 1000000 --yellow-backlog 30 --state-interval-ms 200 \
    >"$T_DIR/y.log" 2>&1 &
Y=$!
PIDS+=($Y)
wait_until 10 '[ "$(level)" = yellow ]' || fail "never yellow: $(level)"
grep -q "semaphore yellow (backlog [0-9]* tasks >= 30): production throttled" "$T_DIR/y.log" ||
    fail "yellow not logged"
[ "$(grep -c 'semaphore yellow' "$T_DIR/y.log")" = 1 ] || fail "yellow logged twice"
ttl=$(rcli PTTL $SKEY)
[ "$ttl" -gt 0 ] && [ "$ttl" -le 600 ] || fail "semaphore TTL $ttl, want 3 x 200 ms"

step "memory >= 90% of maxmemory: red"
used=$(rcli INFO memory | tr -d '\r' | sed -n 's/^used_memory://p')
rcli CONFIG SET maxmemory $((used * 100 / 93 + 1)) >/dev/null
wait_until 10 '[ "$(level)" = red ]' || fail "never red: $(level)"
mp_field $SKEY why | grep -q "of maxmemory >= 90%" || fail "reason: $(mp_field $SKEY why)"
rcli CONFIG SET maxmemory 0 >/dev/null
wait_until 10 '[ "$(level)" = yellow ]' || fail "not back to yellow: $(level)"
kill -TERM $Y
wait $Y || fail "run exited $?"
PIDS=()
rcli DEL $QKEY >/dev/null

step "unpaced production, red from 300 tasks: production pauses"
"$OPS" run --bars 1000000 --yellow-backlog 100 --red-backlog 300 --state-interval-ms 200 \
    >"$T_DIR/r.log" 2>&1 &
R=$!
PIDS+=($R)
wait_until 10 'grep -q "semaphore red (backlog [0-9]* tasks >= 300): production paused" "$T_DIR/r.log"' ||
    fail "never red"
sleep 0.5
n1=$(rcli XLEN $QKEY)
sleep 1
n2=$(rcli XLEN $QKEY)
[ "$n1" = "$n2" ] || fail "production goes on at red: $n1 -> $n2 entries"

step "the backlog drains (the group reads everything): green, production resumes"
rcli XGROUP SETID $QKEY labs '$' >/dev/null
wait_until 10 'grep -q "semaphore green" "$T_DIR/r.log"' || fail "never green again"
wait_until 10 '[ "$(rcli XLEN $QKEY)" -gt "$n2" ]' || fail "production did not resume"
kill -TERM $R
wait $R || fail "run exited $?"
PIDS=()
echo ok
