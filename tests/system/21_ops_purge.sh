#!/usr/bin/env bash
# `cgalpha-ops purge`: without --yes it counts and refuses (exit 2, nothing deleted); with --yes
# it deletes every key of the namespace (queues with pending entries, dead letters, state, the
# regime log) and says how many, and leaves every other key alone (another namespace, a
# stranger's key).
source "$(dirname "$0")/lib.sh"

start_redis
spawn nexus "$NEXUS"
NX=$LAST_PID
spawn lab "$LAB" --plugin trend --plugin volatility --plugin momentum
LB=$LAST_PID
"$OPS" enqueue --symbols 2 --bars 300 >"$T/enqueue.log" 2>&1 || fail "enqueue"
"$OPS" enqueue --symbols 1 --bars 100 --namespace other >"$T/enqueue2.log" 2>&1 || fail "enqueue 2"
rcli SET unrelated:key keep >/dev/null
for _ in $(seq 1 300); do
    [ "$(rcli XLEN cgalpha:state:regime_log)" -gt 0 ] && break
    sleep 0.1
done
stop_proc "$LB" || fail "lab exit $?"
stop_proc "$NX" || fail "nexus exit $?"
rcli SCAN 0 MATCH 'cgalpha:*' COUNT 100000 | tail -n +2 | sort >"$T/before.txt"
N=$(wc -l <"$T/before.txt")
[ "$N" -ge 4 ] || fail "only $N keys in the namespace before the purge"

rc=0; "$OPS" purge >"$T/dry.out" 2>"$T/dry.err" || rc=$?
[ $rc = 2 ] || fail "purge without --yes exited $rc"
grep -q "$N keys match cgalpha:\*; nothing deleted without --yes" "$T/dry.err" ||
    fail "purge without --yes: $(cat "$T/dry.err")"
[ "$(rcli SCAN 0 MATCH 'cgalpha:*' COUNT 100000 | tail -n +2 | grep -c . || true)" = "$N" ] ||
    fail "purge without --yes deleted something"

"$OPS" purge --yes >"$T/purge.out" 2>"$T/purge.err" || fail "purge --yes exited $?"
grep -qx "purged $N keys of namespace cgalpha" "$T/purge.out" || fail "purge said: $(cat "$T/purge.out")"
[ "$(rcli SCAN 0 MATCH 'cgalpha:*' COUNT 100000 | tail -n +2 | grep -c . || true)" = 0 ] || fail "keys left"
[ "$(rcli GET unrelated:key)" = keep ] || fail "a key outside the namespace was deleted"
[ "$(rcli XLEN other:queue:analysis)" -gt 0 ] || fail "the other namespace was touched"
log "PASS: purge counted $N keys, refused without --yes, deleted exactly the namespace with it"
