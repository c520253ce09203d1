#!/usr/bin/env bash
# The coordinator's duties: the semaphore (yellow from the backlog, published and logged once; red
# from Redis memory; red from the backlog pausing production; green again when the backlog is
# gone, production resuming) and the trimming of the queues.
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
# (if production filled Redis before the round saw 93 %, the red is Redis refusing writes: OOM)
mp_field $SKEY why | grep -Eq "of maxmemory >= 90%|^OOM: " || fail "reason: $(mp_field $SKEY why)"
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
RED='semaphore red (backlog [0-9]* tasks >= 300): production paused'
wait_until 10 'grep -q "$RED" "$T_DIR/r.log"' ||
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

step "trimming: entries every group has consumed go, the others stay"
rcli DEL $QKEY >/dev/null
"$OPS" run --symbols 1 --bars 100 --labs trend --batch 1 --trim-interval-ms 200 \
    >"$T_DIR/t.log" 2>&1 &
T=$!
PIDS+=($T)
wait_until 10 '[ "$(rcli XLEN $QKEY)" = 5 ]' || fail "want 5 entries, got $(rcli XLEN $QKEY)"
sleep 0.5
[ "$(rcli XLEN $QKEY)" = 5 ] || fail "trimmed entries the group still needs"
third=$(rcli EVAL "return redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 3)[3][1]" 1 $QKEY)
rcli XGROUP SETID $QKEY labs "$third" >/dev/null   # the first three are consumed
# The first two go (the trim may keep the last delivered entry itself); the two not yet
# delivered stay.
wait_until 10 '[ "$(rcli XLEN $QKEY)" -le 3 ]' || fail "not trimmed: $(rcli XLEN $QKEY) entries"
after=$(rcli EVAL "return #redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+')" 1 $QKEY "$third")
[ "$after" = 2 ] || fail "trimmed entries not yet delivered: $after left after the third"
kill -TERM $T
wait $T || fail "run exited $?"
PIDS=()
echo ok
