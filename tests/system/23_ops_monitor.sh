#!/usr/bin/env bash
# cgalpha-ops monitor on a real pipeline (ops run -> a lab -> nexus):
#  - Redis unreachable at start: one line on stderr, nothing on stdout, exit 3;
#  - while tasks flow (stdout not a terminal: plain frames): exactly --count frames, exit 0, the
#    first frame without rates, later ones with the queues' entries/s and a lab's tasks/s;
#  - once the pipeline is idle the last frame's figures equal Redis read directly (XLEN,
#    XPENDING, the lag, dead letters, the worker heartbeats, the semaphore) and the regimes
#    equal those of `status --json`;
#  - Redis killed mid-run: frames say DISCONNECTED and keep coming, then connected again once
#    Redis is back, and it still exits 0 at --count;
#  - on a terminal (a pty from util-linux `script`): the alternate screen is entered and left,
#    and the terminal's modes are restored after --count, q and SIGTERM.
source "$(dirname "$0")/lib.sh"

NS=cgalpha
QKEY=$NS:queue:analysis
RKEY=$NS:queue:reports

frames() { grep -c '^--- cgalpha monitor ' "$1" || true; }
# frame FILE N: the Nth frame (1-based; 0 for the last one), without its "---" line
frame() {
    awk -v want="$2" '/^--- cgalpha monitor /{n++; if (want == 0) buf = ""; next}
        want == 0 {buf = buf $0 "\n"} n == want {print}
        END {if (want == 0) printf "%s", buf}' "$1"
}
qrow() { awk -v q="$2" '$1 == q' "$1"; }                # qrow FRAMEFILE QUEUE
labrows() { awk '/^labs alive:/{f=1; getline; next} f && NF == 0 {f=0} f' "$1"; }
regrows() { awk '/^regimes:/{f=1; getline; next} f && NF == 0 {f=0} f' "$1"; }
hb_field() { # hb_field KEY FIELD: a field of the worker heartbeat (msgpack) in Redis
    rcli EVAL "return tostring(cmsgpack.unpack(redis.call('GET', KEYS[1]))[ARGV[1]])" 1 "$1" "$2"
}
is_pos() { awk -v v="$1" 'BEGIN {exit !(v ~ /^[0-9.]+$/ && v + 0 > 0)}'; } # a rate > 0
drained() {
    local q g
    for q in "analysis labs" "reports nexus"; do
        set -- $q
        [ "$(group_lag "$1" "$2")" = 0 ] && [ "$(group_pending "$1" "$2")" = 0 ] || return 1
    done
}

log "Redis unreachable at start: exit 3"
set +e
REDIS_CONNECT_TIMEOUT_MS=300 REDIS_URL=unix://$T/none.sock "$OPS" monitor --count 1 \
    >"$T/unreach.out" 2>"$T/unreach.err"
rc=$?
set -e
[ "$rc" = 3 ] || fail "unreachable: exit $rc"
[ ! -s "$T/unreach.out" ] || fail "unreachable: stdout not empty: $(cat "$T/unreach.out")"
[ "$(wc -l <"$T/unreach.err")" = 1 ] || fail "unreachable: not one line: $(cat "$T/unreach.err")"

start_redis
spawn lab "$LAB" --plugin trend --plugin volatility --plugin momentum
spawn nexus "$NEXUS"
wait_for 20 "nexus active" grep -q "active:" "$T/nexus.log"
# 4 symbols x 1000 bars at 100 bars/s: tasks flow for about 10 s (732 tasks); the queues are
# never trimmed during the test (their lengths are compared with XLEN)
spawn run "$OPS" run --symbols 4 --bars 1000 --bar-rate 100 --state-interval-ms 500 \
    --trim-interval-ms 3600000
LABKEY=""
lab_started() {
    LABKEY=$(rcli --scan --pattern "$NS:state:worker:*" | sed -n 1p)
    [ -n "$LABKEY" ] && [ "$(hb_field "$LABKEY" done)" -gt 0 ]
}
wait_for 30 "the lab's heartbeat counts processed tasks" lab_started

log "while tasks flow: 8 frames, every 500 ms"
"$OPS" monitor --count 8 --interval-ms 500 >"$T/flow.txt" 2>"$T/flow.err" ||
    fail "monitor exited $? while tasks flow"
[ "$(frames "$T/flow.txt")" = 8 ] || fail "flow: $(frames "$T/flow.txt") frames, want 8"
if grep -q $'\033' "$T/flow.txt"; then fail "escape codes in plain frames"; fi
frame "$T/flow.txt" 1 >"$T/f1.txt"
# the first frame has no rates
set -- $(qrow "$T/f1.txt" analysis)
[ "$6 $7" = "- -" ] || fail "first frame has queue rates: $*"
grep -q '^throughput - tasks/s' "$T/f1.txt" || fail "first frame has a throughput"
set -- $(labrows "$T/f1.txt")
[ "$3" = - ] || fail "first frame has a lab rate: $*"
# later frames: entries/s in the analysis queue, and the lab's tasks/s (from its heartbeats,
# every 2 s: seen within the 3.5 s of the run)
in_rate=0 lab_rate=0 through=0
for k in 2 3 4 5 6 7 8; do
    frame "$T/flow.txt" $k >"$T/fk.txt"
    set -- $(qrow "$T/fk.txt" analysis)
    is_pos "$6" && in_rate=1
    set -- $(labrows "$T/fk.txt")
    is_pos "$3" && lab_rate=1
    set -- $(grep '^throughput ' "$T/fk.txt")
    is_pos "$2" && through=1
done
[ $in_rate = 1 ] || fail "no IN/s > 0 for analysis while tasks flow: $(cat "$T/flow.txt")"
[ $lab_rate = 1 ] || fail "no lab RATE/s > 0 while tasks flow: $(cat "$T/flow.txt")"
[ $through = 1 ] || fail "no throughput > 0 while tasks flow"

log "idle pipeline: the figures equal Redis"
# a dead letter: an entry that does not decode goes to the dead letters at once
rcli XADD "$QKEY" '*' m garbage >/dev/null
one_dead() { [ "$(rcli XLEN "$QKEY:dead")" = 1 ]; }
wait_for 60 "one dead letter" one_dead
# every task of the run processed (732: 4 symbols x 61 windows x 3 labs; a duplicate after a
# reclaim counts again), then nothing left in either queue
all_done() { [ "$(hb_field "$LABKEY" done)" -ge 732 ]; }
wait_for 90 "the lab processed every task" all_done
wait_for 90 "both queues drained" drained
# the lab's heartbeat is steady (a heartbeat after the last task, every 2 s)
hb_steady() {
    local d1 t1
    d1=$(hb_field "$LABKEY" done); t1=$(hb_field "$LABKEY" ts)
    sleep 2.2
    [ "$(hb_field "$LABKEY" ts)" != "$t1" ] && [ "$(hb_field "$LABKEY" done)" = "$d1" ]
}
wait_for 30 "steady heartbeat" hb_steady
wait_for 30 "both queues drained" drained
"$OPS" monitor --count 3 --interval-ms 500 >"$T/idle.txt" 2>"$T/idle.err" ||
    fail "monitor exited $? on the idle pipeline"
[ "$(frames "$T/idle.txt")" = 3 ] || fail "idle: $(frames "$T/idle.txt") frames, want 3"
frame "$T/idle.txt" 0 >"$T/last.txt"
grep -q "^namespace $NS   Redis: connected" "$T/last.txt" || fail "header: $(head -n1 "$T/last.txt")"
for q in analysis reports; do
    key=$NS:queue:$q
    group=labs; [ $q = reports ] && group=nexus
    want="$(rcli XLEN "$key") $(group_lag $q $group) $(group_pending $q $group)"
    want="$want $(rcli XLEN "$key:dead")"
    set -- $(qrow "$T/last.txt" $q)
    got="$2 $3 $4 $8"
    [ "$got" = "$want" ] || fail "$q: length lag pending dead: monitor '$got', Redis '$want'"
    [ "$5" = $(( $3 + $4 )) ] || fail "$q: depth $5 is not lag + pending"
    [ "$9" = 1 ] || fail "$q: consumers $9"
done
workers=$(rcli --scan --pattern "$NS:state:worker:*" | wc -l)
grep -q "^labs alive: $workers\$" "$T/last.txt" ||
    fail "labs: $(grep '^labs alive' "$T/last.txt"), heartbeat keys: $workers"
set -- $(labrows "$T/last.txt")
[ "$1" = "${LABKEY#$NS:state:worker:}" ] || fail "lab id $1, key $LABKEY"
[ "$2" = "$(hb_field "$LABKEY" done)" ] ||
    fail "lab processed $2, heartbeat $(hb_field "$LABKEY" done)"
[ "$4" = "$(hb_field "$LABKEY" fail)" ] || fail "lab failed $4, heartbeat $(hb_field "$LABKEY" fail)"
[ "$8" = ok ] || fail "lab state $8"
[ "$9" = trend,volatility,momentum ] || fail "lab plugins $9"
grep -Eq '^semaphore  green  backlog 0 tasks  labs 1 ' "$T/last.txt" ||
    fail "semaphore: $(grep '^semaphore' "$T/last.txt")"
"$OPS" status --json >"$T/status.json" || fail "status --json exited $?"
want=$(grep -o '"symbol":"[^"]*","regime":"[^"]*"' "$T/status.json" |
    sed 's/"symbol":"\([^"]*\)","regime":"\([^"]*\)"/\1 \2/')
got=$(regrows "$T/last.txt" | awk '{print $1, $2}')
[ -n "$want" ] || fail "status shows no regimes"
[ "$got" = "$want" ] || fail "regimes: monitor '$got', status '$want'"
grep -q "^regimes: 4 symbols\$" "$T/last.txt" || fail "$(grep '^regimes' "$T/last.txt")"
nlog=$(rcli XLEN "$NS:state:regime_log")
[ "$nlog" -gt 10 ] && nlog=10
grep -q "^recent regime changes: $nlog\$" "$T/last.txt" ||
    fail "changes: $(grep '^recent regime' "$T/last.txt"), want $nlog"

log "Redis killed mid-run: the frames say so and go on"
REDIS_BACKOFF_CAP_MS=300 "$OPS" monitor --count 50 --interval-ms 200 >"$T/outage.txt" \
    2>"$T/outage.err" &
MON=$!
PIDS+=("$MON")
two_frames() { [ "$(frames "$T/outage.txt")" -ge 2 ]; }
wait_for 30 "two frames" two_frames
stop_redis KILL
wait_for 20 "a frame saying disconnected" \
    grep -q '^namespace cgalpha   Redis: DISCONNECTED (reconnecting): ' "$T/outage.txt"
start_redis
back() { # a connected frame after the first disconnected one
    awk '/Redis: DISCONNECTED/{d=1} d && /^namespace cgalpha   Redis: connected/{ok=1}
        END {exit !ok}' "$T/outage.txt"
}
wait_for 30 "a connected frame after Redis is back" back
rc=0
wait "$MON" || rc=$?
[ "$rc" = 0 ] || fail "monitor exited $rc after the outage"
[ "$(frames "$T/outage.txt")" = 50 ] || fail "outage: $(frames "$T/outage.txt") frames, want 50"
grep -q '^figures as of ' "$T/outage.txt" || fail "disconnected frames do not date their figures"

log "on a terminal (pty): alternate screen, terminal restored"
command -v script >/dev/null || fail "util-linux script is not installed (tests/run.sh installs it)"
modes="stty -a | grep -o -- '-\\?icanon\\|-\\?echo \\|-\\?isig' | tr '\\n' ' '"
timeout 60 script -qefc "$OPS monitor --count 2 --interval-ms 200; echo rc=\$?; $modes" \
    /dev/null </dev/null >"$T/tty.out" 2>&1 || fail "script exited $?"
grep -q $'\033\\[?1049h' "$T/tty.out" || fail "no alternate screen: $(cat -v "$T/tty.out" | head)"
grep -q $'\033\\[?1049l' "$T/tty.out" || fail "alternate screen not left"
grep -q 'cgalpha monitor' "$T/tty.out" || fail "no title"
grep -q '^analysis ' <(tr -d '\r' <"$T/tty.out" | sed 's/\x1b\[2K//g') || fail "no queue row"
grep -q 'rc=0' "$T/tty.out" || fail "tty: $(tr -d '\r' <"$T/tty.out" | grep rc=)"
grep -q 'isig icanon echo' "$T/tty.out" || fail "modes not restored: $(tail -n2 "$T/tty.out")"

# q quits (no --count): the key goes to the pty once the first frame is drawn
mkfifo "$T/keys"
timeout 60 script -qefc "$OPS monitor --interval-ms 200; echo rc=\$?; $modes" /dev/null \
    <"$T/keys" >"$T/q.out" 2>&1 &
SCRIPT=$!
exec 4>"$T/keys"
wait_for 30 "a frame on the pty" grep -q 'q: quit' "$T/q.out"
printf q >&4
exec 4>&-
rc=0
wait "$SCRIPT" || rc=$?
[ "$rc" = 0 ] || fail "q: script exited $rc"
grep -q 'rc=0' "$T/q.out" || fail "q: monitor did not exit 0"
grep -q $'\033\\[?1049l' "$T/q.out" || fail "q: alternate screen not left"
grep -q 'isig icanon echo' "$T/q.out" || fail "q: modes not restored: $(tail -n2 "$T/q.out")"

# SIGTERM (to the monitor's own pid) restores the terminal too
timeout 60 script -qefc "exec 3<&0; $OPS monitor --interval-ms 200 <&3 3<&- &
    echo \$! >$T/mon.pid; wait \$!; echo rc=\$?; $modes" /dev/null </dev/null >"$T/term.out" 2>&1 &
SCRIPT=$!
wait_for 30 "a frame on the pty" grep -q 'q: quit' "$T/term.out"
kill -TERM "$(cat "$T/mon.pid")"
rc=0
wait "$SCRIPT" || rc=$?
[ "$rc" = 0 ] || fail "SIGTERM: script exited $rc"
grep -q 'rc=0' "$T/term.out" || fail "SIGTERM: monitor did not exit 0"
grep -q $'\033\\[?1049l' "$T/term.out" || fail "SIGTERM: alternate screen not left"
grep -q 'isig icanon echo' "$T/term.out" || fail "SIGTERM: modes not restored"

log "PASS: monitor frames match Redis, survive an outage, and restore the terminal"
