#!/usr/bin/env bash
# deploy/users.acl is enough for the whole pipeline, and no more than that.
#  - redis-server runs deploy/redis.conf with deploy/users.acl as its aclfile (the placeholder
#    replaced by a test password's hash), on a free loopback TCP port;
#  - ops run (coordinator: lock, semaphore, trimming) and ops enqueue produce tasks, one lab with
#    trend/volatility/momentum consumes them (including a reclaimed, split entry and a
#    dead-lettered one), nexus folds the reports; ops status/dead/accuracy and a subscriber run
#    too; everything as the ACL user over TCP (REDIS_URL=redis://cgalpha:PASS@127.0.0.1:PORT);
#  - every task gets a report, nexus folds them all (reports group: no lag, nothing pending),
#    regime changes exist;
#  - ACL LOG is empty: no command was denied; then the user is refused FLUSHALL, CONFIG, KEYS,
#    keys outside cgalpha:* (and ACL LOG shows those denials, so the first check could fail);
#  - the default user cannot connect without a password, nor with a wrong one;
#  - no process log contains the password.
source "$(dirname "$0")/lib.sh"
SRC=${CGA_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}


PASS="acl-test-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
ADMIN_PASS="admin-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
HASH=$(printf '%s' "$PASS" | sha256sum | cut -d' ' -f1)
grep -q '#@CGALPHA_PASSWORD_SHA256@' "$SRC/deploy/users.acl" || fail "users.acl: no password placeholder"
sed "s/@CGALPHA_PASSWORD_SHA256@/$HASH/" "$SRC/deploy/users.acl" >"$T/users.acl"
# test-only: an admin user for the checks below (the deployed file has none)
echo "user admin on >$ADMIN_PASS ~* &* +@all" >>"$T/users.acl"
PORT=$(free_port)
cat >"$T/redis.conf" <<EOF
include $SRC/deploy/redis.conf
port $PORT
unixsocket $T/redis.sock
unixsocketperm 700
dir $T
save ""
daemonize no
aclfile $T/users.acl
EOF
"$REDIS_SERVER" "$T/redis.conf" >"$T/redis.log" 2>&1 &
REDIS_PID=$!
rcli() { REDISCLI_AUTH=$ADMIN_PASS redis-cli -s "$T/redis.sock" --user admin "$@"; }
wait_for 10 "redis-server with users.acl" sh -c "[ \"\$(REDISCLI_AUTH=$ADMIN_PASS redis-cli -s $T/redis.sock --user admin PING)\" = PONG ]"
[ "$(rcli CONFIG GET aclfile | tail -n1)" = "$T/users.acl" ] || fail "aclfile not in use"
export REDIS_URL="redis://cgalpha:$PASS@127.0.0.1:$PORT"
unset REDIS_PASSWORD REDIS_PASSWORD_FILE REDIS_USERNAME

log "pipeline as ACL user cgalpha on 127.0.0.1:$PORT"
spawn nexus "$NEXUS" --lease-ms 300
NEXUS_PID=$LAST_PID
spawn lab "$LAB" --plugin trend --plugin volatility --plugin momentum --concurrency 2 \
    --lease-ms 300 --block-ms 200
LAB_PID=$LAST_PID
if "$OPS" watch --help >/dev/null 2>&1; then
    spawn watch "$OPS" watch --json
else # an older ops: a plain subscriber as the same user
    spawn watch env REDISCLI_AUTH="$PASS" redis-cli -p "$PORT" --user cgalpha \
        SUBSCRIBE cgalpha:channel:market_regime
fi
WATCH_PID=$LAST_PID
wait_for 10 "nexus active" grep -q "active" "$T/nexus.log"
# an audit group that never reads keeps every report in the stream (ops run trims every 200 ms,
# up to what every group has read), so that `cgalpha-lab --summary` below can count them
rcli XGROUP CREATE cgalpha:queue:reports audit 0 MKSTREAM >/dev/null

# A stream entry claimed by a consumer that never acknowledges (a dead lab): the lab reclaims it
# after its lease (XPENDING + XCLAIM in Lua) and splits it into single tasks. And an entry that
# does not decode: the lab dead-letters it.
"$OPS" enqueue --source synthetic --symbols 1 --bars 64 --seed 3 --start-ms 1600000000000 \
    >"$T/enqueue0.log" 2>&1 || fail "enqueue (ghost) exit $?"
rcli XREADGROUP GROUP labs ghost COUNT 100 STREAMS cgalpha:queue:analysis '>' >/dev/null
rcli XADD cgalpha:queue:analysis '*' m not-msgpack >/dev/null
N0=$(( (64 - 32) / 16 + 1 ))
N0=$(( N0 * 3 ))

SYMBOLS=2 BARS=400
PER_RUN=$(( SYMBOLS * ((BARS - 32) / 16 + 1) * 3 ))
spawn ops "$OPS" run --source synthetic --symbols $SYMBOLS --bars $BARS --seed 5 \
    --state-interval-ms 200 --trim-interval-ms 200 --truth-out "$T/truth.csv"
OPS_PID=$LAST_PID
"$OPS" enqueue --source synthetic --symbols $SYMBOLS --bars $BARS --seed 6 \
    --start-ms 1710000000000 >"$T/enqueue.log" 2>&1 || fail "enqueue exit $?"
N=$(( N0 + 2 * PER_RUN ))

drained() {
    local s
    s=$("$LAB" --summary 2>>"$T/summary.err") || return 1
    [ "$(awk '/^report_tasks /{print $2}' <<<"$s")" = "$N" ] || return 1
    [ "$(awk '/^analysis_lag /{print $2}' <<<"$s")" = 0 ] || return 1
    [ "$(awk '/^analysis_pending /{print $2}' <<<"$s")" = 0 ] || return 1
    [ "$(group_pending reports nexus)" = 0 ] || return 1
    [ "$(group_lag reports nexus)" = 0 ]
}
wait_for 60 "$N tasks reported and folded" drained
"$LAB" --summary >"$T/summary.txt" 2>>"$T/summary.err" || fail "lab --summary exit $?"
grep -qx "report_error 0" "$T/summary.txt" || fail "error reports: $(cat "$T/summary.txt")"
grep -qx "analysis_dead 1" "$T/summary.txt" || fail "expected the undecodable entry dead-lettered"
CHANGES=$(rcli XLEN cgalpha:state:regime_log)
[ "$CHANGES" -ge 1 ] || fail "no regime change"
log "$N tasks reported and folded, $CHANGES regime changes"

# The operator's tools as the same user.
"$OPS" status >"$T/status.out" 2>"$T/status.err" || fail "ops status exit $?"
"$OPS" status --json >"$T/status.json" 2>>"$T/status.err" || fail "ops status --json exit $?"
"$OPS" dead list >"$T/dead.out" 2>"$T/dead.err" || fail "ops dead list exit $?"
"$OPS" dead requeue >>"$T/dead.out" 2>>"$T/dead.err" || fail "ops dead requeue exit $?"
wait_for 10 "the re-queued garbage dead again" sh -c \
    "[ \"\$(REDISCLI_AUTH=$ADMIN_PASS redis-cli -s $T/redis.sock --user admin XLEN cgalpha:queue:analysis:dead)\" = 1 ]"
"$OPS" dead purge --yes >>"$T/dead.out" 2>>"$T/dead.err" || fail "ops dead purge exit $?"
[ "$(rcli XLEN cgalpha:queue:analysis:dead)" = 0 ] || fail "purge left dead letters"
sleep 0.5 # a trim round and a semaphore round of ops run after all that

stop_proc "$OPS_PID" || fail "ops run exit $?"
# (after ops run: its truth file is complete once it exits)
"$OPS" accuracy --truth "$T/truth.csv" >"$T/accuracy.out" 2>"$T/accuracy.err" ||
    fail "ops accuracy exit $?"
stop_proc "$LAB_PID" || fail "lab exit $?"
stop_proc "$NEXUS_PID" || fail "nexus exit $?"
stop_proc "$WATCH_PID" || true

# No command was denied.
DENIED=$(rcli ACL LOG)
[ -z "$DENIED" ] || fail "ACL LOG is not empty (a command the ACL does not allow):
$DENIED"
log "ACL LOG empty after the whole pipeline"

# The ACL denies what cgalpha does not need.
app() { REDISCLI_AUTH=$PASS redis-cli -p "$PORT" --user cgalpha "$@" 2>&1; }
[ "$(app PING)" = PONG ] || fail "app user cannot PING"
for cmd in "FLUSHALL" "CONFIG GET maxmemory" "KEYS *" "SHUTDOWN NOSAVE" \
    "SET other:key 1" "GET other:key" "ACL LIST" "EVAL return 1 0" "SCRIPT FLUSH" "MONITOR"; do
    set -f # "KEYS *" is not a glob here
    # shellcheck disable=SC2086
    out=$(timeout 5 redis-cli -p "$PORT" --user cgalpha --pass "$PASS" --no-auth-warning $cmd 2>&1 || true)
    set +f
    case $out in *NOPERM*) ;; *) fail "app user ran '$cmd': $out" ;; esac
done
# (DEBUG is also off in the server's config; ask the ACL itself)
case $(rcli ACL DRYRUN cgalpha DEBUG SLEEP 0) in *"no permissions"*) ;; *) fail "ACL allows DEBUG" ;; esac
out=$(app PUBLISH other:channel x)
case $out in *NOPERM*) ;; *) fail "app user published outside cgalpha:*: $out" ;; esac
[ -n "$(rcli ACL LOG)" ] || fail "ACL LOG stays empty after denied commands: the check above proves nothing"
log "FLUSHALL, CONFIG, KEYS, DEBUG, SHUTDOWN, foreign keys and channels: denied"

# The default user is off: no access without the password, nor with a wrong one.
out=$(redis-cli -p "$PORT" PING 2>&1 || true)
case $out in *NOAUTH*) ;; *) fail "default user without password: $out" ;; esac
out=$(REDISCLI_AUTH=wrong redis-cli -p "$PORT" PING 2>&1 || true)
case $out in *PONG*) fail "default user with a wrong password got in" ;; esac
out=$(REDISCLI_AUTH=$PASS redis-cli -p "$PORT" PING 2>&1 || true)
case $out in *PONG*) fail "default user with the app password got in" ;; esac
log "default user refused"

# No log line carries the password (nor the URL with it).
for f in "$T"/*.log "$T"/*.err "$T"/*.out "$T"/*.txt "$T"/*.json; do
    [ -f "$f" ] || continue
    [ "$f" = "$T/redis.log" ] && continue
    grep -qF "$PASS" "$f" && fail "$(basename "$f") contains the password"
done
log "PASS: $N tasks under ACL user cgalpha, $CHANGES regime changes, no denied command, no password in logs"
