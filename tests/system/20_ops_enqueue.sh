#!/usr/bin/env bash
# cgalpha-ops enqueue with the synthetic market: the documented counts, deterministic ids and
# bars, the truth file, entries of --batch tasks, and the exit codes of usage and connection
# errors.
source "$(dirname "$0")/20_ops_lib.sh"
start_redis

LUA_SUM='local s = 0
for _, e in ipairs(redis.call("XRANGE", KEYS[1], "-", "+")) do
  for _, t in ipairs(cmsgpack.unpack(e[2][2])) do
    for _, b in ipairs(t.bars) do s = s + b[5] end
  end
end
return tostring(s)'

step "defaults: 4 symbols x 2000 bars -> 124 windows each x 3 labs = 1488 tasks"
out=$("$OPS" enqueue --source synthetic --truth-out "$T_DIR/truth.csv" 2>"$T_DIR/a.err") ||
    fail "exit $?"
echo "$out" | grep -Eq '^enqueued 1488 tasks in [0-9]+ entries in [0-9.]+ s \([0-9]+ tasks/s\)$' ||
    fail "summary: $out"
[ "$(stream_tasks $QKEY)" = 1488 ] || fail "tasks: $(stream_tasks $QKEY)"
[ "$(stream_tasks $QKEY ids | sort -u | wc -l)" = 1488 ] || fail "ids not unique"
for lab in trend volatility momentum; do
    [ "$(stream_tasks $QKEY ids | grep -c "/$lab\$")" = 496 ] || fail "tasks of $lab"
done
# Entries hold up to 32 tasks: at least ceil(1488 / 32) = 47 of them.
n=$(rcli XLEN $QKEY)
[ "$n" -ge 47 ] && [ "$n" -le 1488 ] || fail "entries: $n"
# Not a terminal: no progress line, and the tool logs nothing at its default level.
[ ! -s "$T_DIR/a.err" ] || fail "stderr not empty: $(head -c 300 "$T_DIR/a.err")"
[ "$(head -1 "$T_DIR/truth.csv")" = "symbol,t,regime" ] || fail "truth header"
[ "$(wc -l <"$T_DIR/truth.csv")" = 8001 ] || fail "truth lines: $(wc -l <"$T_DIR/truth.csv")"
grep -Eq '^SYN3,1704067200000,(bull|bear|sideways|turbulent)$' "$T_DIR/truth.csv" ||
    fail "truth rows"

step "the same seed gives the same bars; another seed other bars but the same ids"
"$OPS" enqueue --namespace again >/dev/null || fail "again: exit $?"
"$OPS" enqueue --namespace other --seed 7 >/dev/null || fail "other: exit $?"
s1=$(rcli EVAL "$LUA_SUM" 1 $QKEY)
s2=$(rcli EVAL "$LUA_SUM" 1 again:queue:analysis)
s3=$(rcli EVAL "$LUA_SUM" 1 other:queue:analysis)
[ "$s1" = "$s2" ] || fail "same seed, different closes: $s1 vs $s2"
[ "$s1" != "$s3" ] || fail "another seed gave the same closes"
diff <(stream_tasks $QKEY ids | sort) <(stream_tasks other:queue:analysis ids | sort) >/dev/null ||
    fail "ids depend on the seed"

step "--batch 1: one entry per task; custom window/step/labs/symbols"
out=$("$OPS" enqueue --namespace b1 --batch 1 --symbols 3 --bars 50 --window 10 --step 20 \
      --labs noop) || fail "exit $?"
# (50 - 10) / 20 + 1 = 3 windows x 3 symbols x 1 lab
echo "$out" | grep -q '^enqueued 9 tasks in 9 entries' || fail "summary: $out"
[ "$(rcli XLEN b1:queue:analysis)" = 9 ] || fail "entries with --batch 1"
[ "$(stream_tasks b1:queue:analysis bars)" = 10 ] || fail "bars per task"

step "environment settings work like flags"
OPS_SYMBOLS=1 OPS_BARS=32 OPS_LABS=a,b "$OPS" enqueue --namespace env >/dev/null ||
    fail "env: exit $?"
[ "$(stream_tasks env:queue:analysis ids | sort | tr '\n' ' ')" = \
  "SYN0/1704067200000/a SYN0/1704067200000/b " ] || fail "env ids"

step "usage errors exit 2 with one line"
expect_exit() { # CODE CMD...
    local want=$1 rc
    shift
    set +e
    "$@" >"$T_DIR/x.out" 2>"$T_DIR/x.err"
    rc=$?
    set -e
    [ "$rc" = "$want" ] || fail "'$*' exited $rc, want $want: $(cat "$T_DIR/x.err")"
}
expect_exit 2 "$OPS" frobnicate
grep -q "unknown command 'frobnicate'" "$T_DIR/x.err" || fail "unknown command message"
[ "$(wc -l <"$T_DIR/x.err")" = 1 ] || fail "more than one line"
expect_exit 2 "$OPS"
expect_exit 2 "$OPS" enqueue --no-such-flag
expect_exit 2 "$OPS" enqueue --source ftp://x
grep -q "OPS_SOURCE" "$T_DIR/x.err" || fail "bad source message"
expect_exit 2 "$OPS" enqueue --symbols 0
expect_exit 2 "$OPS" enqueue --labs 'a b'
expect_exit 2 "$OPS" enqueue --source "csv:/dev/null" --bar-rate 5
expect_exit 2 "$OPS" enqueue --source "csv:/dev/null" --truth-out "$T_DIR/t.csv"
expect_exit 0 "$OPS" --help
grep -q "enqueue" "$T_DIR/x.out" || fail "--help lists no commands"
for c in run enqueue status dead accuracy; do
    expect_exit 0 "$OPS" $c --help
    grep -q "Usage: cgalpha-ops $c" "$T_DIR/x.out" || fail "$c --help"
done

step "Redis unreachable: exit 3; rejected password: exit 4"
REDIS_CONNECT_TIMEOUT_MS=300 expect_exit 3 env REDIS_URL="unix://$T_DIR/none.sock" \
    "$OPS" enqueue
grep -q "none.sock" "$T_DIR/x.err" || fail "unreachable: no clear line"
expect_exit 4 env REDIS_URL="unix://:wrong@$T_DIR/redis.sock" "$OPS" enqueue
grep -qi "auth" "$T_DIR/x.err" || fail "auth: no clear line"
echo ok
