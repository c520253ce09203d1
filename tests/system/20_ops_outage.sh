#!/usr/bin/env bash
# Redis going away under a producing `run`: entries that fail go to the task buffer (logged once
# per outage), and the buffer is drained when Redis answers again, so that every task arrives (at
# least once) and the buffer ends empty.
# Outage 1: Redis frozen (SIGSTOP: commands time out). Outage 2: Redis killed and restarted
# (with its append-only file, so what it had accepted survives).
source "$(dirname "$0")/20_ops_lib.sh"
start_redis --appendonly yes --appendfsync always

# 2 symbols x 600 bars at 150 bars/s: 4 s; (600 - 32) / 16 + 1 = 36 windows each, 1 lab.
# The breaker keeps its default (30 s open): it must not delay the reconnect.
WANT=72
REDIS_COMMAND_TIMEOUT_MS=300 \
    "$OPS" run --symbols 2 --bars 600 --bar-rate 150 --labs trend \
    --exit-when-done --lock-ttl-ms 30000 >"$T_DIR/run.log" 2>&1 &
P=$!
PIDS+=($P)
wait_until 10 '[ "$(rcli XLEN $QKEY)" -gt 0 ]' || fail "nothing produced"

step "outage 1: Redis frozen for 1.5 s"
kill -STOP "$REDIS_PID"
sleep 1.5
kill -CONT "$REDIS_PID"
wait_until 10 'grep -q "Redis accepts entries again" "$T_DIR/run.log"' ||
    fail "no recovery after the freeze"
grep -q "new tasks go to the task buffer" "$T_DIR/run.log" || fail "outage not logged"
grep -q "task buffer drained" "$T_DIR/run.log" || fail "buffer not drained"

step "outage 2: Redis killed, restarted 1 s later"
sleep 0.3
stop_redis
sleep 1
start_redis --appendonly yes --appendfsync always

step "every task arrives; run exits 0"
set +e
wait $P
rc=$?
set -e
PIDS=()
[ "$rc" = 0 ] || fail "run exited $rc"
got=$(stream_tasks $QKEY ids | sort -u | wc -l)
[ "$got" = $WANT ] || fail "$got distinct tasks, want $WANT"
echo "   $(stream_tasks $QKEY) tasks written for $WANT distinct ones"
[ "$(grep -c "new tasks go to the task buffer" "$T_DIR/run.log")" -le 2 ] ||
    fail "the outage is logged more than once per outage"
[ "$(sqlite3 "$OPS_BUFFER_PATH" 'SELECT count(*) FROM entries')" = 0 ] ||
    fail "rows left in the task buffer"
echo ok
