#!/usr/bin/env bash
# deploy/redis.conf and deploy/start_redis.sh.
#  - redis-server accepts deploy/redis.conf as is (with a temp dir, port 0 and a unix socket
#    appended, and a test password where the commented placeholder is) and CONFIG GET shows the
#    task-queue policy: appendonly yes, appendfsync everysec, maxmemory-policy noeviction, ...;
#  - the policy does what it is for: a full Redis answers OOM and keeps the queue whole, and a
#    Redis killed -9 comes back with the stream (AOF);
#  - no secret is committed: redis.conf sets no password, users.acl has only placeholders;
#  - start_redis.sh starts a Redis that answers PING with the configured credentials, a second
#    call finds it up and starts nothing, wrong credentials exit 4; with a user name it applies
#    users.acl (default user off, keys of CGALPHA_NAMESPACE only), no plain-text password in the
#    files it writes.
source "$(dirname "$0")/lib.sh"
SRC=${CGA_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
CONF=$SRC/deploy/redis.conf
START=$SRC/deploy/start_redis.sh


# ---- no secret committed ---------------------------------------------------------------------
grep -Eq '^[[:space:]]*(requirepass|masterauth|user)[[:space:]]' "$CONF" &&
    fail "redis.conf sets a password or user: no secret belongs in the committed file"
grep -Eq '^# requirepass CHANGE-ME$' "$CONF" || fail "redis.conf: the commented placeholder is gone"
grep -q '^aclfile' "$CONF" && fail "redis.conf: aclfile must stay a commented hook"
grep -q '^# aclfile ' "$CONF" || fail "redis.conf: no aclfile hook"
ACL=$SRC/deploy/users.acl
grep -Eq '(^| )(nopass|>)' "$ACL" && fail "users.acl: a plain-text password or nopass"
bad=$(grep -o ' #[^ ]*' "$ACL" | grep -v '^ #@[A-Z0-9_]*@$' || true)
[ -z "$bad" ] || fail "users.acl: a password hash that is not a placeholder: $bad"
grep -qx 'user default off' "$ACL" || fail "users.acl: the default user is not disabled"
log "no secret in redis.conf or users.acl"

# ---- redis-server accepts redis.conf ---------------------------------------------------------
PW=conf-test-pw
{
    cat "$CONF"
    echo "port 0"
    echo "unixsocket $T/redis.sock"
    echo "unixsocketperm 700"
    echo "dir $T"
    echo "daemonize no"
    sed -n 's/^# requirepass CHANGE-ME$/requirepass '"$PW"'/p' "$CONF"
} >"$T/redis.conf"
grep -q "^requirepass $PW" "$T/redis.conf" || fail "could not replace the placeholder"
"$REDIS_SERVER" "$T/redis.conf" >"$T/redis.log" 2>&1 &
REDIS_PID=$!
rcli() { REDISCLI_AUTH=$PW redis-cli -s "$T/redis.sock" "$@"; }
wait_for 10 "redis-server with deploy/redis.conf" sh -c "[ \"\$(REDISCLI_AUTH=$PW redis-cli -s $T/redis.sock PING)\" = PONG ]"
cfg() { rcli CONFIG GET "$1" | sed -n 2p; }
check() { # check NAME EXPECTED
    local got; got=$(cfg "$1")
    [ "$got" = "$2" ] || fail "CONFIG GET $1: '$got', expected '$2'"
}
check appendonly yes
check appendfsync everysec
check maxmemory-policy noeviction
check maxmemory 1073741824
check protected-mode yes
check bind "127.0.0.1 -::1"
check tcp-keepalive 60
check save "3600 1 300 100 60 10000"
check stop-writes-on-bgsave-error yes
out=$(redis-cli -s "$T/redis.sock" PING 2>&1 || true)
case $out in *NOAUTH*) ;; *) fail "no password asked: $out" ;; esac
log "redis.conf accepted: appendonly yes, everysec, noeviction, 1gb, loopback, protected mode"

# noeviction: a full Redis refuses writes and keeps every queue whole.
PAD=$(printf '%0200d' 0)
for i in $(seq 1 200); do echo "XADD cgalpha:queue:analysis * m task-$i-$PAD"; done | rcli >/dev/null
rcli CONFIG SET maxmemory 1 >/dev/null
out=$(rcli XADD cgalpha:queue:analysis '*' m one-more 2>&1 || true)
case $out in *OOM*) ;; *) fail "XADD past maxmemory: '$out', expected OOM" ;; esac
[ "$(rcli XLEN cgalpha:queue:analysis)" = 200 ] || fail "the queue lost entries when full"
rcli CONFIG SET maxmemory 1gb >/dev/null
log "full Redis: OOM to the writer, the queue kept whole"

# AOF: written entries survive kill -9 (everysec: wait for the fsync first).
sleep 1.5
kill -9 "$REDIS_PID"
wait "$REDIS_PID" 2>/dev/null || true
"$REDIS_SERVER" "$T/redis.conf" >>"$T/redis.log" 2>&1 &
REDIS_PID=$!
wait_for 10 "redis-server restarted" sh -c "[ \"\$(REDISCLI_AUTH=$PW redis-cli -s $T/redis.sock PING)\" = PONG ]"
[ "$(rcli XLEN cgalpha:queue:analysis)" = 200 ] || fail "the queue did not survive kill -9 (AOF)"
ls "$T"/appendonlydir/*.aof >/dev/null 2>&1 || fail "no AOF files in the data dir"
stop_redis
log "kill -9: the queue is back from the AOF"

# ---- start_redis.sh --------------------------------------------------------------------------
PORT=$(free_port)
printf 'start-redis-pw\n' >"$T/pw"
D=$T/sr
export REDIS_URL="redis://127.0.0.1:$PORT" REDIS_PASSWORD_FILE=$T/pw
unset REDIS_USERNAME REDIS_PASSWORD CGALPHA_NAMESPACE CGALPHA_ENV_FILE
cd "$T"
"$START" --dir "$D" >"$T/start1.log" 2>&1 || fail "start_redis.sh exit $?: $(cat "$T/start1.log")"
REDIS_PID=$(cat "$D/redis.pid")
grep -q "starting redis-server" "$T/start1.log" || fail "first call did not start a Redis"
[ "$(REDISCLI_AUTH=start-redis-pw redis-cli -p "$PORT" PING)" = PONG ] || fail "no PONG"
out=$(redis-cli -p "$PORT" PING 2>&1 || true)
case $out in *NOAUTH*) ;; *) fail "started without a password: $out" ;; esac
REDISCLI_AUTH=start-redis-pw redis-cli -p "$PORT" CONFIG GET appendonly | grep -qx yes ||
    fail "the started Redis does not run deploy/redis.conf"
grep -rqF start-redis-pw "$D" && fail "a file in the data dir holds the plain-text password"
[ "$(stat -c %a "$D/redis.run.conf")" = 600 ] || fail "redis.run.conf is not mode 600"

"$START" --dir "$D" >"$T/start2.log" 2>&1 || fail "second call exit $?: $(cat "$T/start2.log")"
grep -q "is up" "$T/start2.log" || fail "second call: $(cat "$T/start2.log")"
grep -q "starting" "$T/start2.log" && fail "second call started another Redis"
[ "$(cat "$D/redis.pid")" = "$REDIS_PID" ] || fail "the pid changed"
[ "$(pgrep -f -c "^redis-server .*:$PORT")" = 1 ] || fail "not exactly one redis-server on $PORT"
rc=0
printf 'wrong\n' >"$T/pw.wrong"
REDIS_PASSWORD_FILE=$T/pw.wrong "$START" --dir "$D" >"$T/start3.log" 2>&1 || rc=$?
[ $rc -eq 4 ] || fail "wrong password: exit $rc, expected 4: $(cat "$T/start3.log")"
kill -TERM "$REDIS_PID"
wait_for 10 "start_redis.sh's Redis stopped" sh -c "! kill -0 $REDIS_PID 2>/dev/null"
REDIS_PID=""
log "start_redis.sh: starts, second call sees it up, wrong password exits 4"

# With a user name: users.acl, the namespace's keys only, the default user off.
export REDIS_USERNAME=app CGALPHA_NAMESPACE=custom
"$START" --dir "$T/sr-acl" >"$T/start4.log" 2>&1 || fail "ACL start exit $?: $(cat "$T/start4.log")"
REDIS_PID=$(cat "$T/sr-acl/redis.pid")
app() { REDISCLI_AUTH=start-redis-pw redis-cli -p "$PORT" --user app "$@" 2>&1; }
[ "$(app PING)" = PONG ] || fail "ACL user cannot PING"
[ "$(app SET custom:x 1)" = OK ] || fail "ACL user cannot write its namespace"
case $(app SET cgalpha:x 1) in *NOPERM*) ;; *) fail "ACL user writes outside its namespace" ;; esac
case $(app FLUSHALL) in *NOPERM*) ;; *) fail "ACL user may FLUSHALL" ;; esac
out=$(REDISCLI_AUTH=start-redis-pw redis-cli -p "$PORT" PING 2>&1 || true)
case $out in *PONG*) fail "the default user is not off" ;; esac
grep -rqF start-redis-pw "$T/sr-acl" && fail "a file in the ACL data dir holds the plain-text password"
"$START" --dir "$T/sr-acl" >"$T/start5.log" 2>&1 || fail "second ACL call exit $?"
grep -q "is up" "$T/start5.log" || fail "second ACL call: $(cat "$T/start5.log")"
kill -TERM "$REDIS_PID"
wait_for 10 "the ACL Redis stopped" sh -c "! kill -0 $REDIS_PID 2>/dev/null"
REDIS_PID=""
log "PASS: redis.conf policy, start_redis.sh idempotent, ACL applied"
