#!/usr/bin/env bash
# A lab knows when it is stalled: its only thread hangs in a plugin while tasks wait, nothing is
# acknowledged for --stall-ms, so it says so (one ERROR line, "stall" in its heartbeat) and says
# when it is no longer stalled. An idle lab with nothing to do is never stalled.
source "$(dirname "$0")/30_lab_common.sh"

start_redis
start_lab idle --plugin "$CGA_FIXTURE_PLUGIN_DIR/faulty.so" --stall-ms 1000
IDLE=$LAB_PID
sleep 3
grep -q "stalled" "$T_DIR/idle.log" && fail "an idle lab said it was stalled"
kill -TERM "$IDLE"; wait "$IDLE" || fail "idle lab exit $?"

MP=; mp_task S/0/faulty faulty HANG 1700000000000 4; xadd_mp   # holds the only thread
enqueue_tasks faulty OK 3 1 W                                  # and these wait behind it
start_lab stuck --plugin "$CGA_FIXTURE_PLUGIN_DIR/faulty.so" --concurrency 1 --stall-ms 1500 \
    --grace-ms 500
STUCK=$LAB_PID
wait_for 10 grep -q "stalled:" "$T_DIR/stuck.log" || fail "the stuck lab never said it stalled"
[ "$(grep -c "stalled:" "$T_DIR/stuck.log")" = 1 ] || fail "the stall was logged more than once"
# the heartbeat (WorkerState) carries "stall": true (msgpack: a5 "stall" c3)
hb_stalled() { rcli GET "$NS:state:worker:stuck" | od -An -tx1 | tr -d ' \n' |
    grep -q "a57374616c6cc3"; }
wait_for 6 hb_stalled || fail "the heartbeat does not say stalled"
CGALPHA_LOG_LEVEL=warn "$OPS" status --json >"$T_DIR/status.json" 2>&1
grep -q '"id":"stuck"[^}]*"stalled":true' "$T_DIR/status.json" ||
    fail "cgalpha-ops status --json does not show the lab stalled: $(cat "$T_DIR/status.json")"
CGALPHA_LOG_LEVEL=warn "$OPS" status | grep -q "STALLED" || fail "cgalpha-ops status: no STALLED"
sleep 2
[ "$(grep -c "stalled:" "$T_DIR/stuck.log")" = 1 ] || fail "the stall was logged more than once"
kill -TERM "$STUCK"; wait "$STUCK" || true
echo "PASS: stall detected, logged once and in the heartbeat; an idle lab is never stalled"
