#!/usr/bin/env bash
# cgalpha-ops dead list|requeue|purge on dead letters written by hand in the documented shape
# (XADD <ns>:queue:<name>:dead * m <entry> reason <text> src <id> deliveries <n> ts <ms>).
source "$(dirname "$0")/20_ops_lib.sh"
start_redis
DKEY=$QKEY:dead

# dead_task ID REASON: a dead letter holding a one-task batch; prints its dead-letter id.
dead_task() {
    rcli EVAL "return redis.call('XADD', KEYS[1], '*',
        'm', cmsgpack.pack({{v=1, id=ARGV[1], lab='trend', sym='SYN0', ts=1,
                             bars={{1704067200000, 1, 1, 1, 1, 1},
                                   {1704067260000, 1, 1, 1, 1, 1}}}}),
        'reason', ARGV[2], 'src', '1700000000000-7', 'deliveries', '5', 'ts', '1700000000000')" \
        1 "$DKEY" "$1" "$2"
}

step "three dead letters: a task, garbage, one without m"
id1=$(dead_task SYN0/1704067200000/trend "plugin crashed (signal 11)")
id2=$(rcli XADD $DKEY '*' m 'not msgpack' reason 'does not decode' src 1700000000001-0 \
      deliveries 1 ts 1700000000001)
id3=$(rcli XADD $DKEY '*' reason 'entry without field m' src 1700000000002-0 deliveries 1 \
      ts 1700000000002)

step "list"
"$OPS" dead list >"$T_DIR/list.txt" 2>"$T_DIR/list.err" || fail "list: exit $?"
grep -q '^ID .*SRC .*DELIVERIES .*FIRST TASK .*REASON' "$T_DIR/list.txt" || fail "header"
grep -Eq "^$id1 +1700000000000-7 +5 +1  SYN0/1704067200000/trend +plugin crashed \(signal 11\)$" \
    "$T_DIR/list.txt" || fail "task row: $(cat "$T_DIR/list.txt")"
grep -Eq "^$id2 +1700000000001-0 +1 +0  \(undecodable\) +does not decode$" "$T_DIR/list.txt" ||
    fail "garbage row"
grep -Eq "^$id3 .*\(no data\) +entry without field m$" "$T_DIR/list.txt" || fail "no-m row"
grep -q "^3 dead letters shown ($DKEY)" "$T_DIR/list.txt" || fail "count line"

"$OPS" dead list --limit 1 >"$T_DIR/l1.txt" || fail "limit: exit $?"
grep -q "^1 dead letters shown" "$T_DIR/l1.txt" || fail "--limit 1"
"$OPS" dead list --id "$id2" >"$T_DIR/l2.txt" || fail "--id: exit $?"
grep -q "^$id2 " "$T_DIR/l2.txt" && ! grep -q "^$id1 " "$T_DIR/l2.txt" || fail "--id filter"
"$OPS" dead list --json >"$T_DIR/l.json" || fail "json: exit $?"
[ "$(wc -l <"$T_DIR/l.json")" = 3 ] || fail "json lines"
if has_python; then
    python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert rows[0]["first_task"] == "SYN0/1704067200000/trend", rows[0]
assert rows[0]["deliveries"] == 5 and rows[0]["messages"] == 1, rows[0]
assert rows[1]["first_task"] is None and rows[1]["reason"] == "does not decode", rows[1]
' "$T_DIR/l.json" || fail "json content"
fi

step "requeue one by id, then all (the one without m cannot go back)"
out=$("$OPS" dead requeue --id "$id1") || fail "requeue --id: exit $?"
[ "$out" = "requeued 1 dead letters to $QKEY" ] || fail "requeue output: $out"
[ "$(rcli XLEN $DKEY)" = 2 ] || fail "dead after requeue --id"
[ "$(stream_tasks $QKEY ids)" = SYN0/1704067200000/trend ] || fail "task not back in the queue"
out=$("$OPS" dead requeue) || fail "requeue: exit $?"
[ "$out" = "requeued 1 dead letters to $QKEY" ] || fail "requeue all: $out"
[ "$(rcli XLEN $DKEY)" = 1 ] || fail "dead after requeue all"
[ "$(rcli XLEN $QKEY)" = 2 ] || fail "queue after requeue all"

step "purge needs --yes"
set +e
"$OPS" dead purge 2>"$T_DIR/purge.err"
rc=$?
set -e
[ "$rc" = 2 ] || fail "purge without --yes: exit $rc"
grep -q -- "--yes" "$T_DIR/purge.err" || fail "purge message"
[ "$(rcli XLEN $DKEY)" = 1 ] || fail "purge without --yes deleted something"
out=$("$OPS" dead purge --yes) || fail "purge: exit $?"
[ "$out" = "purged 1 dead letters from $DKEY" ] || fail "purge output: $out"
[ "$(rcli EXISTS $DKEY)" = 0 ] || fail "dead stream still there"

step "reports queue; purge by id"
LUA_REPORT="return redis.call('XADD', KEYS[1], '*', 'm', cmsgpack.pack({v=1,
    task='SYN1/1704067200000/momentum', lab='momentum', sym='SYN1', wrk='lab-1',
    ws=1704067200000, we=1704069060000, ets=1, ts=2, dur=3, st=0, reg='bull', conf=0.5}),
    'reason', 'nexus could not fold it', 'src', '1-1', 'deliveries', '5', 'ts', '1')"
r1=$(rcli EVAL "$LUA_REPORT" 1 $RKEY:dead)
r2=$(rcli EVAL "$LUA_REPORT" 1 $RKEY:dead)
"$OPS" dead list --queue reports >"$T_DIR/r.txt" || fail "reports list: exit $?"
grep -Eq "^$r1 .* SYN1/1704067200000/momentum +nexus could not fold it$" "$T_DIR/r.txt" ||
    fail "report row: $(cat "$T_DIR/r.txt")"
out=$("$OPS" dead purge --queue reports --id "$r2" --yes) || fail "purge --id: exit $?"
[ "$out" = "purged 1 dead letters from $RKEY:dead" ] || fail "purge --id output: $out"
[ "$(rcli XLEN $RKEY:dead)" = 1 ] || fail "purge --id removed the wrong number"

step "bad usage"
for args in "" "frob" "list requeue" "list --queue nope"; do
    set +e
    # shellcheck disable=SC2086
    "$OPS" dead $args 2>/dev/null
    rc=$?
    set -e
    [ "$rc" = 2 ] || fail "dead $args: exit $rc, want 2"
done
echo ok
