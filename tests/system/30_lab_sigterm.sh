#!/usr/bin/env bash
# SIGTERM under load: the lab stops claiming, finishes and acknowledges what it holds, deletes
# its heartbeat and exits 0, leaving nothing pending; a second lab finishes the rest. Every
# task ends with exactly one distinct report.
source "$(dirname "$0")/30_lab_common.sh"

start_redis
out=$("$OPS" enqueue --source synthetic --symbols 4 --bars 20000 --labs trend,volatility,momentum \
    --no-progress 2>&1) || fail "ops enqueue: $out"
N=$(echo "$out" | awk '/^enqueued/ { print $2 }')
[ -n "$N" ] && [ "$N" -gt 10000 ] || fail "unexpected ops output: $out"

start_lab lab1 --plugin trend --plugin volatility --plugin momentum --concurrency 1 \
    --claim-count 4 --plugin-dir "$CGA_PLUGIN_DIR"
LAB1=$LAB_PID
first_reports() { [ "$(rcli XLEN "$RKEY")" -gt 0 ]; }
wait_for 20 first_reports || fail "no report"
kill -TERM "$LAB1"
rc=0; wait "$LAB1" || rc=$?
[ "$rc" = 0 ] || fail "lab1 exited $rc after SIGTERM"
grep -q "stopped:" "$T_DIR/lab1.log" || fail "lab1 did not stop cleanly"
# Nothing it claimed is left pending: every claimed entry was reported and acknowledged.
[ "$(summary_get analysis_pending)" = 0 ] || fails "lab1 left entries pending"
[ "$(rcli EXISTS "$NS:state:worker:lab1")" = 0 ] || fail "heartbeat key left behind"
done1=$(summary_get report_tasks)
echo "lab1 reported $done1 of $N tasks before SIGTERM"

start_lab lab2 --plugin trend,volatility,momentum --plugin-dir "$CGA_PLUGIN_DIR"
wait_for 60 reports_at_least "$N" || fails "expected $N reports"
wait_for 10 pending_is 0 || fail "entries pending"
[ "$(summary_get report_tasks)" = "$N" ] || fail "expected exactly $N distinct task ids"
[ "$(summary_get analysis_lag)" = 0 ] || fail "entries never delivered"
[ "$(summary_get analysis_dead)" = 0 ] || fail "dead letters"
kill -INT "$LAB_PID"      # SIGINT behaves the same
rc=0; wait "$LAB_PID" || rc=$?
[ "$rc" = 0 ] || fail "lab2 exited $rc after SIGINT"
echo "30_lab_sigterm: ok ($N tasks)"
