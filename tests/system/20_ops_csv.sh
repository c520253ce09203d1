#!/usr/bin/env bash
# cgalpha-ops reading CSV and JSON lines: good files are enqueued whole; bad rows are reported on
# stderr with their line number and reason, the good rows are still enqueued, and the exit code
# is 5. Also: JSON lines from stdin, and `run --exit-when-done` on a file.
source "$(dirname "$0")/20_ops_lib.sh"
FIX=${CGA_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/fixtures
start_redis

# 48 bars of AAA and 48 of BBB; window 8, step 4: (48 - 8) / 4 + 1 = 11 windows each.
ARGS=(--window 8 --step 4 --labs trend)

step "good CSV: every window enqueued, exit 0"
out=$("$OPS" enqueue --source "csv:$FIX/bars_good.csv" "${ARGS[@]}" --namespace good \
      2>"$T_DIR/good.err") || fail "exit $? on the good file"
echo "$out" | grep -q '^enqueued 22 tasks' || fail "summary: $out"
[ "$(stream_tasks good:queue:analysis)" = 22 ] || fail "tasks: $(stream_tasks good:queue:analysis)"
stream_tasks good:queue:analysis ids | grep -qx 'AAA/1704067200000/trend' || fail "AAA's first id"
stream_tasks good:queue:analysis ids | grep -qx 'BBB/1704069600000/trend' || fail "BBB's last id"
[ ! -s "$T_DIR/good.err" ] || fail "stderr not empty: $(cat "$T_DIR/good.err")"

step "bad CSV: bad rows reported with line numbers, good rows enqueued, exit 5"
set +e
out=$("$OPS" enqueue --source "csv:$FIX/bars_bad.csv" "${ARGS[@]}" --namespace bad \
      2>"$T_DIR/bad.err")
rc=$?
set -e
[ "$rc" = 5 ] || fail "exit $rc, want 5"
echo "$out" | grep -q '^enqueued 22 tasks.*, 7 bad rows' || fail "summary: $out"
[ "$(stream_tasks bad:queue:analysis)" = 22 ] || fail "tasks: $(stream_tasks bad:queue:analysis)"
err=$(cat "$T_DIR/bad.err")
for want in "line 5: close: 'abc' is not a number" \
            "line 9: expected 7 fields, got 5" \
            "line 14: high 99 is below max(open, close) 100.5" \
            "line 20: timestamp: 'notatime' is not a number" \
            "line 30: timestamp 1704067200000 is not after the previous bar of AAA" \
            "line 40: symbol: 'BAD SYMBOL' has a character outside" \
            "line 50: field 1: unterminated quote" \
            "7 bad rows were refused (see above); the 96 good rows were used"; do
    grep -qF "$want" <<<"$err" || fail "stderr lacks '$want'"
done
[ "$(grep -c 'bad row, line' <<<"$err")" = 7 ] || fail "want 7 bad-row lines"

step "JSON lines on stdin (a pipe), with one bad line"
jsonl() {
    local sym t o h l c v n=0
    while IFS=, read -r sym t o h l c v; do
        n=$((n + 1))
        [ "$n" = 1 ] && continue
        sym=${sym//\"/}
        printf '{"symbol":"%s","timestamp":%s,"open":%s,' "$sym" "$t" "$o"
        printf '"high":%s,"low":%s,' "$h" "$l"
        printf '"close":%s,"volume":%s}\n' "$c" "$v"
        [ "$n" = 11 ] && printf '{"symbol":"AAA","timestamp":1,"nested":{"x":1}}\n'
    done <"$FIX/bars_good.csv"
}
set +e
out=$(jsonl | "$OPS" enqueue --source jsonl:- "${ARGS[@]}" --namespace js 2>"$T_DIR/js.err")
rc=$?
set -e
[ "$rc" = 5 ] || fail "jsonl: exit $rc, want 5"
echo "$out" | grep -q '^enqueued 22 tasks.*, 1 bad rows' || fail "jsonl summary: $out"
grep -qF "line 11: nested object at column" "$T_DIR/js.err" || fail "jsonl: line 11 not reported"
[ "$(stream_tasks js:queue:analysis)" = 22 ] || fail "jsonl tasks"

step "run --exit-when-done on a file: produces everything, exits 5 for the bad rows"
set +e
"$OPS" run --source "csv:$FIX/bars_bad.csv" "${ARGS[@]}" --namespace runbad --exit-when-done \
    >"$T_DIR/run.log" 2>&1
rc=$?
set -e
[ "$rc" = 5 ] || fail "run: exit $rc, want 5"
[ "$(stream_tasks runbad:queue:analysis)" = 22 ] || fail "run tasks"
[ "$(rcli EXISTS runbad:lock:ops)" = 0 ] || fail "run left its lock behind"

step "a missing file is a usage error (2), before connecting"
set +e
"$OPS" enqueue --source "csv:$T_DIR/nope.csv" 2>"$T_DIR/nope.err"
rc=$?
set -e
[ "$rc" = 2 ] || fail "missing file: exit $rc"
grep -q "cannot open $T_DIR/nope.csv" "$T_DIR/nope.err" || fail "missing file message"
echo ok
