#!/usr/bin/env bash
# nexus knows when it is stalled: reports wait but its commits keep failing (Redis at maxmemory
# with noeviction answers OOM to the SET/XADD of its transaction). It says so once, keeps the
# folded changes and retries them, and when Redis has room again commits them and says it is no
# longer stalled; nothing is lost: every report is folded and acknowledged.
source "$(dirname "$0")/lib.sh"

start_redis
spawn nexus "$NEXUS" --stall-ms 1000
NX=$LAST_PID
wait_for 10 "nexus active" grep -q "active:" "$T/nexus.log"
kill -STOP "$NX"    # reports pile up meanwhile (well within the 10 s lock TTL)
spawn lab "$LAB" --plugin trend --plugin volatility --plugin momentum
"$OPS" enqueue --symbols 2 --bars 400 >"$T/enqueue.log" 2>&1 || fail "enqueue"
N=$(( 2 * ((400 - 32) / 16 + 1) * 3 ))
reported() { [ "$("$LAB" --summary 2>/dev/null | awk '$1 == "report_tasks" {print $2}')" = "$N" ]; }
wait_for 20 "every task reported" reported

# Redis full: nexus can still claim the reports, but every commit is refused (OOM)
rcli CONFIG SET maxmemory-policy noeviction >/dev/null
rcli CONFIG SET maxmemory 1 >/dev/null
kill -CONT "$NX"
wait_for 15 "nexus says it is stalled" grep -q "stalled:" "$T/nexus.log"
[ "$(group_pending reports nexus)" != 0 ] || fail "reports acknowledged without their effects"
[ "$(rcli XLEN cgalpha:state:regime_log)" = 0 ] || fail "regime log written under OOM"

rcli CONFIG SET maxmemory 0 >/dev/null
wait_for 15 "nexus recovers" grep -q "no longer stalled" "$T/nexus.log"
wait_for 15 "every report folded" \
    test "$(group_pending reports nexus)" = 0 -a "$(group_lag reports nexus)" = 0
[ "$(rcli XLEN cgalpha:state:regime_log)" -ge 2 ] || fail "no regime change committed"
[ "$(grep -c "stalled:" "$T/nexus.log")" = 1 ] || fail "the stall was logged more than once"
log "PASS: stalled under OOM, said once, recovered, nothing lost"
