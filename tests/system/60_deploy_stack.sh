#!/usr/bin/env bash
# deploy/cgalpha-stack.sh: the compose layout on one machine without Docker.
#  - start --labs 2 on a temp run dir brings up its own Redis (free port, generated password,
#    ACL user cgalpha), nexus, 2 labs and ops run; a second start starts nothing;
#  - status lists 2 running labs (and "cgalpha-ops status" sees 2 labs alive);
#  - work enqueued with cgalpha-ops (settings from the stack's stack.env) is all reported and
#    folded by nexus;
#  - a lab killed -9 shows as dead in status (exit 1), and start brings it back;
#  - stop ends everything with SIGTERM (ops, labs, nexus, then Redis), exit 0, no pid left, every
#    process logged a clean stop; status then exits 3; no log holds the password.
source "$(dirname "$0")/lib.sh"
SRC=${CGA_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
STACK=$SRC/deploy/cgalpha-stack.sh
RUN=$T/stack

stack_cleanup() {
    local rc=$?
    if [ $rc -ne 0 ] && [ -d "$RUN/logs" ]; then
        for f in "$RUN"/logs/*.log "$RUN"/redis/redis.log; do
            [ -f "$f" ] && { echo "--- $f (last 20 lines)"; tail -n 20 "$f"; }
        done
    fi
    "$STACK" stop --run-dir "$RUN" --timeout 5 >/dev/null 2>&1 || true
    (exit $rc)
    cleanup
}
trap stack_cleanup EXIT


# exited PID: gone, or a zombie waiting for init to reap it
exited() {
    kill -0 "$1" 2>/dev/null || return 0
    [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" = Z ]
}

cd "$T" # no ./.env from elsewhere
PORT=$(free_port)
export REDIS_URL="redis://127.0.0.1:$PORT"
unset REDIS_USERNAME REDIS_PASSWORD REDIS_PASSWORD_FILE REDIS_HOST REDIS_PORT CGALPHA_ENV_FILE \
    CGALPHA_NAMESPACE
export CGA_BIN_DIR LAB_PLUGINS=trend,volatility,momentum
export CGA_STACK_OPS_ARGS="--symbols 2 --bars 400 --seed 4 --state-interval-ms 300"
export CGA_STACK_LAB_ARGS="--concurrency 1"

# ---- start -----------------------------------------------------------------------------------
"$STACK" start --labs 2 --run-dir "$RUN" >"$T/start.log" 2>&1 || fail "start exit $?: $(cat "$T/start.log")"
for n in nexus lab-1 lab-2 ops; do
    [ -s "$RUN/pids/$n.pid" ] || fail "no pid file for $n"
done
[ -s "$RUN/redis/redis.pid" ] || fail "no Redis pid file"
PIDS_BEFORE="$(cat "$RUN"/pids/*.pid | sort | tr '\n' ' ')"
REDIS_PID_STACK=$(cat "$RUN/redis/redis.pid")
grep -qx "REDIS_USERNAME=cgalpha" "$RUN/stack.env" || fail "the stack does not use the ACL user"
[ "$(stat -c %a "$RUN/redis.password")" = 600 ] || fail "redis.password is not mode 600"
PW=$(head -n1 "$RUN/redis.password")
ADMIN() { REDISCLI_AUTH=$(head -n1 "$RUN/redis.admin.password") redis-cli -p "$PORT" --user admin "$@"; }
out=$(redis-cli -p "$PORT" PING 2>&1 || true)
case $out in *NOAUTH*) ;; *) fail "the stack's Redis answers without a password: $out" ;; esac
log "stack started: $(tr '\n' ' ' <"$T/start.log" | grep -o 'ops: started[^)]*)')"

"$STACK" start --labs 2 --run-dir "$RUN" >"$T/start2.log" 2>&1 || fail "second start exit $?"
grep -q "already running" "$T/start2.log" || fail "second start: $(cat "$T/start2.log")"
[ "$(cat "$RUN"/pids/*.pid | sort | tr '\n' ' ')" = "$PIDS_BEFORE" ] || fail "second start changed pids"

# ---- status ----------------------------------------------------------------------------------
rc=0
"$STACK" status --run-dir "$RUN" --brief >"$T/status.log" 2>&1 || rc=$?
[ $rc -eq 0 ] || fail "status exit $rc: $(cat "$T/status.log")"
[ "$(grep -Ec '^lab-[12] +running' "$T/status.log")" = 2 ] || fail "status: $(cat "$T/status.log")"
grep -Eq '^ops +running' "$T/status.log" || fail "status: ops not running"
grep -Eq '^nexus +running' "$T/status.log" || fail "status: nexus not running"
grep -Eq '^redis +running' "$T/status.log" || fail "status: redis not running"
labs_alive() {
    "$STACK" status --run-dir "$RUN" >"$T/status-full.log" 2>&1 &&
        grep -q "labs alive: 2" "$T/status-full.log"
}
wait_for 15 "status shows 2 labs alive" labs_alive
log "status: redis, nexus, lab-1, lab-2, ops running; 2 labs alive"

# ---- work ------------------------------------------------------------------------------------
# an audit group that never reads keeps every report in the stream (the coordinator trims up to
# what every group has read), so that `cgalpha-lab --summary` below can count them
ADMIN XGROUP CREATE cgalpha:queue:reports audit 0 MKSTREAM >/dev/null
"$OPS" enqueue --env-file "$RUN/stack.env" --source synthetic --symbols 2 --bars 400 --seed 9 \
    --start-ms 1710000000000 >"$T/enqueue.log" 2>&1 || fail "enqueue exit $?"
N=$(( 2 * 2 * ((400 - 32) / 16 + 1) * 3 ))
drained() {
    local s
    s=$("$LAB" --summary --env-file "$RUN/stack.env" 2>/dev/null) || return 1
    [ "$(awk '/^report_tasks /{print $2}' <<<"$s")" = "$N" ] || return 1
    [ "$(awk '/^analysis_pending /{print $2}' <<<"$s")" = 0 ] || return 1
    [ "$(awk '/^analysis_lag /{print $2}' <<<"$s")" = 0 ] || return 1
    [ "$(ADMIN XPENDING cgalpha:queue:reports nexus | sed -n 1p)" = 0 ] || return 1
    [ "$(ADMIN XINFO GROUPS cgalpha:queue:reports | awk '/^name$/ { getline; g = $0 }
        /^lag$/ { getline; if (g == "nexus") { print; exit } }')" = 0 ]
}
wait_for 60 "$N tasks reported and folded" drained
[ "$(ADMIN XLEN cgalpha:state:regime_log)" -ge 1 ] || fail "no regime change"
log "$N tasks reported and folded by the stack"

# ---- a dead lab ------------------------------------------------------------------------------
LAB2=$(cat "$RUN/pids/lab-2.pid")
kill -9 "$LAB2"
wait_for 10 "lab-2 gone" exited "$LAB2"
rc=0
"$STACK" status --run-dir "$RUN" --brief >"$T/status2.log" 2>&1 || rc=$?
[ $rc -eq 1 ] || fail "status with a dead lab: exit $rc, expected 1"
grep -Eq '^lab-2 +dead' "$T/status2.log" || fail "status: $(cat "$T/status2.log")"
"$STACK" start --labs 2 --run-dir "$RUN" >"$T/start3.log" 2>&1 || fail "restart of lab-2 exit $?"
grep -q "lab-2: started" "$T/start3.log" || fail "start did not bring lab-2 back: $(cat "$T/start3.log")"
grep -q "lab-1: started\|ops: started\|nexus: started" "$T/start3.log" &&
    fail "start restarted a running process: $(cat "$T/start3.log")"
log "a killed lab shows dead; start brings it back alone"

# ---- stop ------------------------------------------------------------------------------------
ALL="$(cat "$RUN"/pids/*.pid | tr '\n' ' ') $REDIS_PID_STACK"
rc=0
"$STACK" stop --run-dir "$RUN" >"$T/stop.log" 2>&1 || rc=$?
[ $rc -eq 0 ] || fail "stop exit $rc: $(cat "$T/stop.log")"
grep -q "killing" "$T/stop.log" && fail "stop had to kill: $(cat "$T/stop.log")"
for p in $ALL; do exited "$p" || fail "pid $p still running after stop"; done
ls "$RUN"/pids/*.pid >/dev/null 2>&1 && fail "pid files left: $(ls "$RUN/pids")"
for n in lab-1 lab-2; do
    tail -n 3 "$RUN/logs/$n.log" | grep -q "lab: stopped" || fail "$n did not log a clean stop"
done
tail -n 3 "$RUN/logs/nexus.log" | grep -q "stopped" || fail "nexus did not log a clean stop"
grep -q "SIGTERM" "$RUN/logs/ops.log" || fail "ops did not get SIGTERM"
rc=0
"$STACK" status --run-dir "$RUN" --brief >"$T/status3.log" 2>&1 || rc=$?
[ $rc -eq 3 ] || fail "status after stop: exit $rc, expected 3"
out=$(redis-cli -p "$PORT" PING 2>&1 || true)
case $out in *"Connection refused"*) ;; *) fail "Redis still answers after stop: $out" ;; esac
if grep -l -E 'AddressSanitizer|LeakSanitizer|runtime error:' "$RUN"/logs/*.log; then
    fail "sanitizer reports in the logs above"
fi
for f in "$RUN"/logs/*.log "$RUN"/redis/redis.log "$T"/*.log "$RUN/stack.env"; do
    grep -qF "$PW" "$f" && fail "$f holds the password"
done
log "PASS: start --labs 2, status, $N tasks, dead lab restarted, stop: everything ended cleanly"
