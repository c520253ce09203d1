#!/usr/bin/env bash
# cgalpha-ops status on a populated namespace: queues, dead letters, the semaphore published by a
# real `run`, lab heartbeats and regimes (written as their msgpack messages), as tables and as
# one JSON object; exit 3 when Redis is unreachable.
source "$(dirname "$0")/20_ops_lib.sh"
start_redis

step "populate: a coordinator, heartbeats, regimes, a dead letter"
"$OPS" run --symbols 2 --bars 100 --labs trend --state-interval-ms 200 >"$T_DIR/run.log" 2>&1 &
PIDS+=($!)
wait_until 10 '[ "$(rcli EXISTS $NS:state:global_resources)" = 1 ]' || fail "no semaphore"
# 2 symbols x 5 windows x 1 lab = 10 tasks, none consumed.
wait_until 10 '[ "$(stream_tasks $QKEY)" = 10 ]' || fail "tasks: $(stream_tasks $QKEY)"
now=$(($(date +%s) * 1000000))
for i in 1 2; do
    mp_set $NS:state:worker:lab-$i "{v=1, id='lab-$i', host='h$i', pid=100$i,
        plugins='trend,volatility', start=$((now - 60000000)), done=4$i, fail=$i, busy=$i,
        ts=$now}"
done
mp_set $NS:state:regime:SYN0 "{v=1, sym='SYN0', seq=3, from='bear', to='bull',
    ws=1704067200000, conf=0.75, ts=$now}"
mp_set $NS:state:regime:SYN1 "{v=1, sym='SYN1', seq=1, from='unknown', to='turbulent',
    ws=1704068160000, conf=0.5, ts=$now}"
rcli XADD $QKEY:dead '*' m garbage reason 'does not decode' src 1-1 deliveries 1 ts 1 >/dev/null
# Wait for a semaphore round that sees the two labs.
wait_until 10 '[ "$(mp_field $NS:state:global_resources labs)" = 2 ]' ||
    fail "semaphore labs: $(mp_field $NS:state:global_resources labs)"

step "status --json"
"$OPS" status --json >"$T_DIR/status.json" 2>"$T_DIR/status.err" || fail "exit $?"
json_ok "$T_DIR/status.json" || fail "not JSON: $(cat "$T_DIR/status.json")"
[ "$(wc -l <"$T_DIR/status.json")" = 1 ] || fail "not one line"
if has_python; then
    check() { # EXPR WANT
        local got
        got=$(json_get "$T_DIR/status.json" "$1")
        [ "$got" = "$2" ] || fail "$1: got '$got', want '$2'"
    }
    check "d['namespace']" cgalpha
    check "d['queues']['analysis']['length'] >= 1" True
    check "d['queues']['analysis']['lag']" "$(rcli XLEN $QKEY)"
    check "d['queues']['analysis']['dead']" 1
    check "d['queues']['analysis']['groups']" 1
    check "d['queues']['reports']['length']" 0
    check "d['semaphore']['level']" green
    check "d['semaphore']['backlog']" 10
    check "d['semaphore']['labs']" 2
    check "d['semaphore']['age_s'] < 5" True
    check "[l['id'] for l in d['labs']]" "['lab-1', 'lab-2']"
    check "d['labs'][1]['processed'], d['labs'][1]['failed'], d['labs'][1]['inflight']" \
        "(42, 2, 2)"
    check "d['labs'][0]['plugins']" "trend,volatility"
    check "[(r['symbol'], r['regime'], r['from'], r['seq']) for r in d['regimes']]" \
        "[('SYN0', 'bull', 'bear', 3), ('SYN1', 'turbulent', 'unknown', 1)]"
    check "d['regimes'][0]['confidence']" 0.75
else
    grep -q '"level":"green"' "$T_DIR/status.json" || fail "level"
    grep -q '"id":"lab-2"' "$T_DIR/status.json" || fail "labs"
    grep -q '"symbol":"SYN1","regime":"turbulent"' "$T_DIR/status.json" || fail "regimes"
fi

step "status (tables)"
"$OPS" status >"$T_DIR/status.txt" || fail "exit $?"
grep -Eq '^analysis +[0-9]+ +[0-9]+ +0 +1 +0 +1$' "$T_DIR/status.txt" || fail "analysis row"
grep -q '^semaphore  green  backlog 10 tasks  labs 2' "$T_DIR/status.txt" || fail "semaphore"
grep -q '^labs alive: 2' "$T_DIR/status.txt" || fail "labs"
grep -Eq '^lab-2 .* trend,volatility +42 +2 +2 ' "$T_DIR/status.txt" || fail "lab row"
grep -Eq '^SYN1 +turbulent +unknown +1 +2024-01-01T00:16Z +0.50 ' "$T_DIR/status.txt" ||
    fail "regime row"

step "an empty namespace, and an unreachable Redis"
"$OPS" status --json --namespace empty >"$T_DIR/empty.json" || fail "empty: exit $?"
json_ok "$T_DIR/empty.json" || fail "empty: not JSON"
grep -q '"semaphore":null,"labs":\[\],"regimes":\[\]' "$T_DIR/empty.json" || fail "empty content"
set +e
REDIS_CONNECT_TIMEOUT_MS=300 REDIS_URL=unix://$T_DIR/none.sock "$OPS" status \
    2>"$T_DIR/unreach.err"
rc=$?
set -e
[ "$rc" = 3 ] || fail "unreachable: exit $rc"
echo ok
