#!/usr/bin/env bash
# A task over --max-task-bytes is refused at enqueue with one clear error naming the task id and
# its size, counted like a bad row (exit 5), never dropped silently; every other task is
# enqueued. CSV and JSON lines: two symbols with the same bars, one with a 32-character name, so
# that only its tasks (whose id and symbol carry the long name) pass the limit.
source "$(dirname "$0")/40_fault_lib.sh"
start_redis

LONG=ABCDEFGHIJKLMNOPQRSTUVWXYZ012345 # 32 characters
BARS=80                               # (80 - 32) / 16 + 1 = 4 windows per symbol
{
    echo "symbol,timestamp,open,high,low,close,volume"
    for ((i = 0; i < BARS; i++)); do
        t=$((1704067200000 + i * 60000))
        echo "A,$t,100,101,99,100.5,10"
        echo "$LONG,$t,100,101,99,100.5,10"
    done
} >"$T/bars.csv"
{
    for ((i = 0; i < BARS; i++)); do
        t=$((1704067200000 + i * 60000))
        for s in A "$LONG"; do
            printf '{"symbol":"%s","timestamp":%d,"open":100,"high":101,"low":99,"close":100.5,' \
                "$s" "$t"
            printf '"volume":10}\n'
        done
    done
} >"$T/bars.jsonl"

# The sizes of the two kinds of task, from a run without a tight limit: the limit goes between.
"$OPS" enqueue --source "csv:$T/bars.csv" --labs trend --max-task-bytes 256 \
    >/dev/null 2>"$T/sizes.err" || true
small=$(sed -n 's|.*task A/[0-9]*/trend refused: \([0-9]*\) bytes.*|\1|p' "$T/sizes.err" | head -n1)
big=$(sed -n "s|.*task $LONG/[0-9]*/trend refused: \\([0-9]*\\) bytes.*|\\1|p" "$T/sizes.err" |
    head -n1)
[ -n "$small" ] && [ -n "$big" ] && [ "$big" -gt "$small" ] ||
    fail "task sizes not reported: $(cat "$T/sizes.err")"
LIMIT=$(((small + big) / 2))
log "tasks of A: $small bytes, of $LONG: $big bytes; limit $LIMIT"
rcli DEL "$QKEY" >/dev/null

for src in csv jsonl; do
    rcli DEL "$QKEY" >/dev/null
    rc=0
    "$OPS" enqueue --source "$src:$T/bars.$src" --labs trend,volatility \
        --max-task-bytes $LIMIT >"$T/$src.out" 2>"$T/$src.err" || rc=$?
    [ "$rc" = 5 ] || fail "$src: exit $rc, want 5"
    # 4 windows x 2 labs of the long symbol refused, each named with its size (over the limit)
    pat=".*ERROR .*task $LONG/[0-9]*/[a-z]* refused: \([0-9]*\) bytes encoded, over the limit of"
    sizes=$(sed -n "s|$pat $LIMIT bytes.*|\1|p" "$T/$src.err")
    [ "$(wc -w <<<"$sizes")" = 8 ] || fail "$src: refusals: $(cat "$T/$src.err")"
    for z in $sizes; do [ "$z" -gt $LIMIT ] || fail "$src: a refused task of $z bytes"; done
    grep -q "task A/" "$T/$src.err" && fail "$src: a task of A was refused"
    grep -q "8 tasks were refused as too big" "$T/$src.err" || fail "$src: no summary warning"
    grep -q "^enqueued 8 tasks in [0-9]* entries .*, 8 tasks too big$" "$T/$src.out" ||
        fail "$src: summary: $(cat "$T/$src.out")"
    [ "$(stream_tasks distinct)" = 8 ] || fail "$src: $(stream_tasks distinct) tasks in Redis, want 8"
    [ "$(buffer_rows)" = 0 ] || fail "$src: something went to the buffer"
    log "$src: 8 tasks enqueued, 8 refused as too big, exit 5"
done
log "PASS ($(elapsed) ms)"
