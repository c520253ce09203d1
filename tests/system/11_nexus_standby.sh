#!/usr/bin/env bash
# Two nexus processes: one active, one standby. The active one is killed with -9 mid-run; the
# standby takes over within the lock TTL, reclaims what the dead one left pending, and the
# regime log stays one gap-free, repeat-free sequence per symbol. SIGTERM then releases the
# lock at once (no TTL wait for the next standby).
source "$(dirname "$0")/lib.sh"

TTL=2000
start_redis
rcli XGROUP CREATE cgalpha:queue:reports audit 0 MKSTREAM >/dev/null
spawn nexusA "$NEXUS" --lock-ttl-ms $TTL --lease-ms 1500 --claim-count 4
A=$LAST_PID
wait_for 10 "nexus A active" grep -q "active:" "$T/nexusA.log"
spawn nexusB "$NEXUS" --lock-ttl-ms $TTL --lease-ms 1500 --claim-count 4
B=$LAST_PID
wait_for 10 "nexus B standby" grep -q "standby" "$T/nexusB.log"
grep -q "active:" "$T/nexusB.log" && fail "B active while A holds the lock"

spawn lab "$LAB" --plugin trend --plugin volatility --plugin momentum
SYMBOLS=4 BARS=2000
N=$(( SYMBOLS * ((BARS - 32) / 16 + 1) * 3 ))
spawn ops "$OPS" run --symbols $SYMBOLS --bars $BARS --bar-rate 500 --exit-when-done
OPSP=$LAST_PID
wait_for 20 "A folds reports" grep -q "regime SYN" "$T/nexusA.log"
kill -9 "$A"
KILLED=$(date +%s%N)
log "nexus A killed"
wait_for 10 "B takes over" grep -q "active:" "$T/nexusB.log"
TAKEOVER_MS=$(( ($(date +%s%N) - KILLED) / 1000000 ))
log "B active ${TAKEOVER_MS} ms after the kill (lock TTL $TTL ms)"
[ $TAKEOVER_MS -le $(( TTL + 1500 )) ] || fail "takeover took ${TAKEOVER_MS} ms"

wait "$OPSP" || fail "ops exited $?"
folded() {
    [ "$(group_pending reports nexus)" = 0 ] && [ "$(group_lag reports nexus)" = 0 ] &&
        [ "$("$LAB" --summary 2>/dev/null | awk '$1 == "report_tasks" {print $2}')" = "$N" ]
}
wait_for 30 "every report folded by B" folded

# the regime log: per symbol, seq 1..k exactly once each (B continued A's numbering)
"$OPS" watch --history --for-ms 300 --json >"$T/history.json"
for s in $(seq 0 $((SYMBOLS - 1))); do
    seqs=$(grep "\"SYN$s\"" "$T/history.json" | sed 's/.*"seq":\([0-9]*\).*/\1/' | tr '\n' ' ')
    k=$(grep -c "\"SYN$s\"" "$T/history.json") || fail "no regime for SYN$s"
    [ "$seqs" = "$(seq -s ' ' 1 "$k") " ] || fail "SYN$s sequence after takeover: $seqs"
done
[ "$(rcli XLEN cgalpha:state:regime_log)" = "$(grep -c '"seq"' "$T/history.json")" ] ||
    fail "history and log differ"
log "regime log continuous across the takeover: $(grep -c '"seq"' "$T/history.json") changes"

# graceful stop releases the lock at once
stop_proc "$B" || fail "nexus B exit $?"
[ "$(rcli EXISTS cgalpha:lock:nexus)" = 0 ] || fail "lock not released on SIGTERM"
log "PASS"
