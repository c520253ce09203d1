#!/usr/bin/env bash
# End to end: ops (synthetic market) -> 2 labs -> nexus, with a subscriber watching.
#  - every task produced has exactly one distinct task id among the reports (N in, N out);
#  - nothing is left pending or dead in either queue;
#  - the subscriber received every regime change nexus logged, in sequence, and one whose
#    connection was cut by Redis (pub/sub output buffer limit) recovers what it missed from the
#    regime log;
#  - the detected regimes agree with the generator's truth on at least 80% of the bars.
#    Why 80%: windows of 32 bars stepping 16 and a hysteresis of 2 windows put each detection
#    16..48 bars behind a switch, regimes last 150..400 bars (about 10% lost to lag), and the
#    plugins misvote some windows; on 4 x 3000 bars the measured agreement is about 90%, so 80%
#    fails only when detection is really broken (a wrong fold, lost reports, a bad plugin).
source "$(dirname "$0")/lib.sh"

SYMBOLS=4 BARS=3000 LABS_PER_TASK=3
WINDOWS=$(( (BARS - 32) / 16 + 1 ))
N=$(( SYMBOLS * WINDOWS * LABS_PER_TASK ))

start_redis
# an audit group that never reads keeps every report in the stream (the coordinator trims only
# what every group has consumed), so the test can count them at the end
rcli XGROUP CREATE cgalpha:queue:reports audit 0 MKSTREAM >/dev/null
spawn nexus "$NEXUS"
spawn lab1 "$LAB" --plugin trend --plugin volatility --plugin momentum --concurrency 2
spawn lab2 "$LAB" --plugin trend --plugin volatility --plugin momentum --concurrency 2
spawn watch "$OPS" watch --json
WATCH=$LAST_PID
wait_for 10 "nexus active" grep -q "active:" "$T/nexus.log"
# a second subscriber whose connection Redis drops mid-run while it is frozen
spawn watch_cut "$OPS" watch --json
CUT=$LAST_PID
sleep 0.5

log "producing $N tasks"
"$OPS" run --source synthetic --symbols $SYMBOLS --bars $BARS --seed 7 \
    --truth-out "$T/truth.csv" --bar-rate 2000 --exit-when-done >"$T/ops.log" 2>&1 &
OPS_PID=$!
sleep 1
kill -STOP "$CUT"
CUT_CLIENT=$(rcli CLIENT LIST | grep -- "name=cgalpha-ops:[^ ]*-$CUT-[0-9a-f]*:sub " | \
    sed 's/^id=\([0-9]*\) .*/\1/')
[ -n "$CUT_CLIENT" ] || fail "subscriber connection of watch $CUT not found"
rcli CLIENT KILL ID "$CUT_CLIENT" >/dev/null
wait "$OPS_PID" || fail "ops run exited $?"

drained() {
    local s; s=$("$LAB" --summary 2>/dev/null) || return 1
    [ "$(awk '/^report_tasks /{print $2}' <<<"$s")" = "$N" ] || return 1
    [ "$(awk '/^analysis_lag /{print $2}' <<<"$s")" = 0 ] || return 1
    [ "$(awk '/^analysis_pending /{print $2}' <<<"$s")" = 0 ] || return 1
    [ "$(group_pending reports nexus)" = 0 ] || return 1
    [ "$(group_lag reports nexus)" = 0 ]
}
wait_for 60 "every task reported and folded" drained
"$LAB" --summary >"$T/summary.txt"
cat "$T/summary.txt" >&2
grep -qx "report_tasks $N" "$T/summary.txt" || fail "expected $N distinct task ids in reports"
grep -qx "report_error 0" "$T/summary.txt" || fail "error reports"
grep -qx "analysis_dead 0" "$T/summary.txt" || fail "dead letters"
[ "$(rcli XLEN cgalpha:queue:reports:dead)" = 0 ] || fail "dead reports"

"$OPS" accuracy --truth "$T/truth.csv" --json >"$T/accuracy.json"
"$OPS" accuracy --truth "$T/truth.csv" >&2
ACC=$(sed 's/.*"overall":{[^}]*"accuracy":\([0-9.]*\)}.*/\1/' "$T/accuracy.json")
awk -v a="$ACC" 'BEGIN { exit !(a >= 0.80) }' || fail "accuracy $ACC < 0.80"
log "accuracy $ACC"

# The frozen subscriber lost its connection and every change published meanwhile. Thaw it and
# produce more (later bars, another seed: more regime changes): it reconnects, sees gaps in the
# sequence numbers and reads what it missed from the regime log.
kill -CONT "$CUT"
N1=$N
START2=$(( 1704067200000 + BARS * 60000 ))
"$OPS" run --source synthetic --symbols $SYMBOLS --bars 600 --seed 8 --start-ms $START2 \
    --exit-when-done >"$T/ops2.log" 2>&1 || fail "second ops run exited $?"
N=$(( N1 + SYMBOLS * ((600 - 32) / 16 + 1) * LABS_PER_TASK ))
wait_for 60 "the second batch reported and folded" drained

CHANGES=$(rcli XLEN cgalpha:state:regime_log)
[ "$CHANGES" -ge $SYMBOLS ] || fail "only $CHANGES regime changes"
check_watch() { # log file: every change once, each symbol's sequence 1..k without gaps
    local f=$1
    [ "$(grep -c '"seq"' "$f")" -eq "$CHANGES" ] || return 1
    for s in $(seq 0 $((SYMBOLS - 1))); do
        local k seqs
        k=$(grep -c "\"SYN$s\"" "$f") || return 1
        seqs=$(grep "\"SYN$s\"" "$f" | sed 's/.*"seq":\([0-9]*\).*/\1/' | tr '\n' ' ')
        [ "$seqs" = "$(seq -s ' ' 1 "$k") " ] || return 1
    done
}
wait_for 20 "the live subscriber printed every change in sequence" check_watch "$T/watch.log"
wait_for 20 "the cut subscriber caught up from the regime log" check_watch "$T/watch_cut.log"
grep -q "connection to .* lost" "$T/watch_cut.log" || fail "the cut subscriber was never cut"
grep -q '"recovered":true' "$T/watch_cut.log" || fail "the cut subscriber recovered nothing"
log "subscribers: $CHANGES changes each, every sequence complete (one cut and recovered)"

stop_proc "$WATCH" || fail "watch exit $?"
stop_proc "$CUT" || fail "cut watch exit $?"
log "PASS: $N tasks, $N distinct reports, $CHANGES regime changes, accuracy $ACC"
