#!/usr/bin/env bash
# cgalpha-ops accuracy: the regime log (RegimeChange messages, as nexus writes them) against the
# truth file of --truth-out. Changes placed exactly at the true switches score 100%; a single
# change scores the share of bars that agree with it; bars before the first change are skipped.
source "$(dirname "$0")/20_ops_lib.sh"
start_redis
LOG=$NS:state:regime_log

"$OPS" enqueue --symbols 2 --bars 300 --truth-out "$T_DIR/truth.csv" >/dev/null || fail "enqueue"

xadd_change() { # SYMBOL SEQ FROM TO WS
    rcli EVAL "return redis.call('XADD', KEYS[1], 'MAXLEN', '~', '100000', '*', 'm',
        cmsgpack.pack({v=1, sym=ARGV[1], seq=tonumber(ARGV[2]), from=ARGV[3], to=ARGV[4],
                       ws=tonumber(ARGV[5]), conf=0.9, ts=1700000000000000}))" \
        1 $LOG "$@" >/dev/null
}

step "no regime log yet: nothing to compare, exit 0"
"$OPS" accuracy --truth "$T_DIR/truth.csv" >"$T_DIR/a0.txt" || fail "exit $?"
grep -q "^no regime detected yet" "$T_DIR/a0.txt" || fail "empty log: $(cat "$T_DIR/a0.txt")"

step "SYN0: a change at every true switch (100%); SYN1: one 'bull' change at bar 10"
seq=0
prev=unknown
while IFS=, read -r sym t reg; do
    [ "$sym" = SYN0 ] || continue
    if [ "$reg" != "$prev" ]; then
        seq=$((seq + 1))
        xadd_change SYN0 $seq "$prev" "$reg" "$t"
        prev=$reg
    fi
done < <(tail -n +2 "$T_DIR/truth.csv")
t10=$(grep '^SYN1,' "$T_DIR/truth.csv" | sed -n 11p | cut -d, -f2)
xadd_change SYN1 1 unknown bull "$t10"
# 300 bars; the 290 from bar 10 on count; correct = bull among them.
bull=$(grep '^SYN1,' "$T_DIR/truth.csv" | tail -n +11 | grep -c ',bull$' || true)
rcli XADD $LOG '*' m garbage >/dev/null   # an undecodable entry is skipped

"$OPS" accuracy --truth "$T_DIR/truth.csv" >"$T_DIR/a.txt" 2>"$T_DIR/a.err" || fail "exit $?"
grep -Eq "^SYN0 +300 +300 +0 +$seq +100.0%$" "$T_DIR/a.txt" || fail "SYN0: $(cat "$T_DIR/a.txt")"
grep -Eq "^SYN1 +290 +$bull +10 +1 " "$T_DIR/a.txt" || fail "SYN1: $(cat "$T_DIR/a.txt")"
grep -Eq "^overall +590 +$((300 + bull)) +10 +$((seq + 1)) " "$T_DIR/a.txt" || fail "overall"
grep -q "does not decode" "$T_DIR/a.err" || fail "the garbage entry is not reported"

"$OPS" accuracy --truth "$T_DIR/truth.csv" --json >"$T_DIR/a.json" 2>/dev/null ||
    fail "json: exit $?"
json_ok "$T_DIR/a.json" || fail "not JSON"
if has_python; then
    [ "$(json_get "$T_DIR/a.json" "d['symbols'][0]['accuracy']")" = 1.0 ] || fail "json SYN0"
    [ "$(json_get "$T_DIR/a.json" "(d['overall']['bars'], d['overall']['correct'])")" = \
      "(590, $((300 + bull)))" ] || fail "json overall"
    [ "$(json_get "$T_DIR/a.json" "d['undecodable']")" = 1 ] || fail "json undecodable"
fi

step "bad truth rows: exit 5; a missing truth file: exit 2"
{ cat "$T_DIR/truth.csv"; echo "SYN0,12,joyful"; } >"$T_DIR/bad.csv"
set +e
"$OPS" accuracy --truth "$T_DIR/bad.csv" >/dev/null 2>"$T_DIR/bad.err"
rc=$?
set -e
[ "$rc" = 5 ] || fail "bad truth: exit $rc"
grep -q "line 602: 'joyful' is not a regime" "$T_DIR/bad.err" || fail "bad truth message"
set +e
"$OPS" accuracy --truth "$T_DIR/nope.csv" 2>/dev/null
rc=$?
"$OPS" accuracy 2>/dev/null
rc2=$?
set -e
[ "$rc" = 2 ] && [ "$rc2" = 2 ] || fail "missing truth: exit $rc / $rc2"
echo ok
