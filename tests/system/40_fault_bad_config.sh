#!/usr/bin/env bash
# Wrong Redis settings against a real password-protected redis-server on TCP: wrong password,
# wrong database index, unknown host, refused port. For each, `cgalpha-ops status`, `cgalpha-ops
# enqueue`, `cgalpha-lab` and `cgalpha-nexus` behave as documented:
#   - a rejected password or database: exit 4 for all four, with one clear line on stderr;
#   - unreachable (unknown host, refused port): the ops tools exit 3 with one clear line; lab and
#     nexus are services (docs/LAB.md): they stay up, retrying, logging the outage, and start
#     working once a Redis appears on the refused port (nexus takes <ns>:lock:nexus, the lab
#     writes its heartbeat);
#   - no output of any of them contains the password (right or wrong).
# The ops tools print exactly one line on stderr; lab and nexus (which log) exactly one ERROR line.
source "$(dirname "$0")/40_fault_lib.sh"
PW=s3cret-Pw-4711
BAD=wr0ng-Pw-0815
export REDIS_CONNECT_TIMEOUT_MS=1000

REDIS_TCP_PORT=$(free_port)
export REDIS_TCP_PORT
start_redis --requirepass "$PW"
PORT=$REDIS_TCP_PORT
REFUSED=$(free_port)
unset REDIS_URL

ALL_OUT=$T/all-output.txt
: >"$ALL_OUT"

# one NAME WANT_CODE PATTERN cmd...: runs cmd (10 s at most), checks the exit code and that
# stderr holds a line matching PATTERN; for the ops tools, that it is the only line.
one() {
    local name=$1 want=$2 pat=$3 rc=0
    shift 3
    timeout 10 "$@" >"$T/$name.out" 2>"$T/$name.err" </dev/null || rc=$?
    cat "$T/$name.out" "$T/$name.err" >>"$ALL_OUT"
    [ "$rc" = "$want" ] || fail "$name: exit $rc, want $want: $(cat "$T/$name.err")"
    grep -Eq "$pat" "$T/$name.err" || fail "$name: no line matching '$pat': $(cat "$T/$name.err")"
    case $1 in
    "$OPS")
        [ "$(wc -l <"$T/$name.err")" = 1 ] || fail "$name: not one line: $(cat "$T/$name.err")"
        ;;
    *)
        local n
        n=$(grep -c " ERROR " "$T/$name.err" || true)
        [ "$n" -le 1 ] || fail "$name printed $n ERROR lines (one expected):" \
            "$(grep " ERROR " "$T/$name.err" | sed 's/.* redis: //' | tr '\n' '|')"
        ;;
    esac
    log "$name: exit $rc: $(grep -E "$pat" "$T/$name.err" | tail -n1 | sed 's/^.*\] //')"
}

# each_binary TAG URL CODE PATTERN: the four programs against REDIS_URL=URL
each_binary() {
    local tag=$1 url=$2 code=$3 pat=$4
    REDIS_URL=$url one "$tag-status" "$code" "$pat" "$OPS" status
    REDIS_URL=$url one "$tag-enqueue" "$code" "$pat" "$OPS" enqueue --symbols 1 --bars 100
    REDIS_URL=$url one "$tag-lab" "$code" "$pat" "$LAB" --plugin trend
    REDIS_URL=$url one "$tag-nexus" "$code" "$pat" "$NEXUS"
}

log "wrong password"
each_binary auth "redis://:$BAD@127.0.0.1:$PORT" 4 "authentication failed"
log "wrong database index"
each_binary db "redis://:$PW@127.0.0.1:$PORT/99" 4 "database.*rejected"

# A service started against an unreachable Redis: stays up; returns its pid in SVC_PID.
service_stays_up() { # NAME URL cmd...
    local name=$1 url=$2
    shift 2
    REDIS_URL=$url spawn "$name" "$@"
    SVC_PID=$LAST_PID
    sleep 2.5 # past REDIS_CONNECT_TIMEOUT_MS
    kill -0 "$SVC_PID" 2>/dev/null || fail "$name exited: $(cat "$T/$name.log")"
    grep -q "Redis connection failed" "$T/$name.log" || fail "$name: the outage is not logged"
}

for tag in host port; do
    if [ $tag = host ]; then
        log "unknown host"
        url="redis://:$PW@no-such-host.invalid:$PORT"
        pat="unknown node or service|not known|resolve"
    else
        log "refused port"
        url="redis://:$PW@127.0.0.1:$REFUSED"
        pat="connection refused"
    fi
    REDIS_URL=$url one "$tag-status" 3 "$pat" "$OPS" status
    REDIS_URL=$url one "$tag-enqueue" 3 "$pat" "$OPS" enqueue --symbols 1 --bars 100
    service_stays_up "$tag-lab" "$url" "$LAB" --plugin trend
    LAB_SVC=$SVC_PID
    service_stays_up "$tag-nexus" "$url" "$NEXUS"
    NEXUS_SVC=$SVC_PID
    log "$tag: lab and nexus stay up and retry"
    if [ $tag = host ]; then
        stop_proc "$NEXUS_SVC" || fail "nexus exited $? after SIGTERM"
        stop_proc "$LAB_SVC" || fail "lab exited $? after SIGTERM"
        cat "$T/$tag"-*.log >>"$ALL_OUT"
    fi
done

log "a Redis appears on the refused port: lab and nexus start working"
R2=$T/r2
mkdir -p "$R2"
"$REDIS_SERVER" --port "$REFUSED" --bind 127.0.0.1 --requirepass "$PW" --save '' \
    --appendonly no --dir "$R2" --daemonize no >"$R2/redis.log" 2>&1 &
PIDS+=($!)
r2() { REDISCLI_AUTH=$PW redis-cli -p "$REFUSED" "$@"; }
nexus_active() { [ "$(r2 EXISTS "$NS:lock:nexus")" = 1 ]; }
lab_alive() { [ "$(r2 --scan --pattern "$NS:state:worker:*" | wc -l)" -ge 1 ]; }
wait_for 20 "nexus holds its lock in the new Redis" nexus_active
wait_for 20 "the lab's heartbeat in the new Redis" lab_alive
stop_proc "$LAB_SVC" || fail "lab exited $? after SIGTERM"
stop_proc "$NEXUS_SVC" || fail "nexus exited $? after SIGTERM"
cat "$T"/port-*.log >>"$ALL_OUT"

grep -qF -- "$PW" "$ALL_OUT" && fail "the password appears in the output"
grep -qF -- "$BAD" "$ALL_OUT" && fail "the wrong password appears in the output"
log "no password in $(wc -l <"$ALL_OUT") lines of output"
log "PASS ($(elapsed) ms)"
