#!/usr/bin/env bash
# Malformed entries XADDed by hand go to the dead letters at once, with the decoder's reason,
# and the lab goes on: random bytes in m, valid msgpack of the wrong shape, a task missing a
# field, an entry without m. Good tasks around them are all reported.
source "$(dirname "$0")/30_lab_common.sh"

start_redis
enqueue_tasks faulty OK 5 1 A
head -c 300 /dev/urandom >"$T_DIR/random.bin"
printf '\xff\xfe\x00garbage' >>"$T_DIR/random.bin"     # never valid msgpack at the start
rcli -x XADD "$QKEY" '*' m <"$T_DIR/random.bin" >/dev/null
printf '\x93\x01\x02\x03' | rcli -x XADD "$QKEY" '*' m >/dev/null      # [1,2,3]
printf '\x81\xa1v\x01' | rcli -x XADD "$QKEY" '*' m >/dev/null         # {"v":1}: no id
rcli XADD "$QKEY" '*' other field >/dev/null                             # no m at all
enqueue_tasks faulty OK 5 5 B

start_lab garbage --plugin "$CGA_FIXTURE_PLUGIN_DIR/faulty.so"
wait_for 20 reports_at_least 10 || fails "expected 10 reports"
wait_for 10 pending_is 0 || fail "entries still pending"
[ "$(summary_get analysis_dead)" = 4 ] || fails "expected 4 dead letters"
[ "$(summary_get report_error)" = 0 ] || fail "unexpected error reports"

# Each dead letter names its reason; the one without m says so.
rcli XRANGE "$DKEY" - + >"$T_DIR/dead.txt"
grep -q "entry has no field 'm'" "$T_DIR/dead.txt" || fail "no reason for the entry without m"
n=$(grep -c '^reason$' "$T_DIR/dead.txt")
[ "$n" = 4 ] || fail "expected 4 reasons, got $n"
# The reasons are the decoder's one-liners, not empty.
awk 'prev == "reason" { if (length($0) < 5) bad = 1 } { prev = $0 } END { exit bad }' \
    "$T_DIR/dead.txt" || fail "an empty reason"
grep -c "goes to the dead letters" "$T_DIR/garbage.log" | grep -qx 4 || fail "expected 4 log lines"

# Still running, still consuming.
kill -0 "$LAB_PID" || fail "the lab died"
enqueue_tasks faulty OK 3 3 C
wait_for 20 reports_at_least 13 || fail "the lab stopped consuming after garbage"
kill -TERM "$LAB_PID"
rc=0; wait "$LAB_PID" || rc=$?
[ "$rc" = 0 ] || fail "lab exited $rc"
grep -a -A1 "^reason$" "$T_DIR/dead.txt" | grep -av "^reason$\|^--$" | sed "s/^/  reason: /"
echo "30_lab_garbage: ok"
