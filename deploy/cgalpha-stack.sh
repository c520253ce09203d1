#!/usr/bin/env bash
# The process layout of deploy/docker-compose.yml on one machine, without Docker: a local Redis
# (deploy/start_redis.sh), "cgalpha-ops run", N labs and nexus, each in the background with a pid
# file and a log under the run dir.
#
# Usage: cgalpha-stack.sh start|stop|status|restart [OPTIONS]
#   --labs N           labs to run (start; default $CGA_STACK_LABS or 2)
#   --run-dir DIR      pid files, logs, generated secrets and Redis data (default
#                      $CGA_STACK_RUN_DIR or ./.run/stack)
#   --no-redis         do not start or stop a Redis: use the one REDIS_URL names
#                      (also CGA_STACK_REDIS=external)
#   --keep-redis       stop: leave Redis running
#   --timeout SECS     stop: how long each process may take after SIGTERM before it is killed
#                      (default 30: above the executables' 10 s grace periods)
#   --brief            status: processes only, not "cgalpha-ops status"
#   --env-file FILE    settings (default: $CGALPHA_ENV_FILE, else ./.env if present)
#   -h, --help
#
# Settings come from the environment and the .env file, as the executables read them
# (REDIS_URL, REDIS_USERNAME, REDIS_PASSWORD_FILE, CGALPHA_NAMESPACE, LAB_PLUGINS, OPS_*,
# LAB_*, NEXUS_*, ...; see each --help). Besides:
#   CGA_BIN_DIR        where cgalpha-ops, cgalpha-lab and cgalpha-nexus are (default: build/bin
#                      of this checkout if built, else $PATH)
#   CGA_STACK_OPS_ARGS, CGA_STACK_LAB_ARGS, CGA_STACK_NEXUS_ARGS: extra flags (word-split)
#   LAB_PLUGINS        default here: trend,volatility,momentum
# When the stack starts its own Redis and no password is configured, it creates one in
# <run dir>/redis.password (mode 0600) and runs everything as the least-privilege ACL user
# "cgalpha" (deploy/users.acl); <run dir>/redis.admin.password is the password of the ACL user
# "admin" (every command: redis-cli --user admin). <run dir>/stack.env holds the effective
# connection settings: "cgalpha-ops --env-file <run dir>/stack.env status" works from anywhere.
# The processes run in the current directory (relative paths in settings keep their meaning).
#
# start starts what is not running yet (idempotent) in the order Redis, nexus, labs, ops, and
# checks that each is still alive a moment later. stop sends SIGTERM in the order ops, labs,
# nexus, Redis (producer first, consumers drain), waits for each, and kills what outlives
# --timeout. Exit codes: 0 ok; 1 something failed or had to be killed; 2 bad usage or
# configuration; status: 0 all running, 1 some running, 3 none running.
set -euo pipefail

CGA_PROG=cgalpha-stack.sh
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=cgalpha-env.sh
. "$HERE/cgalpha-env.sh"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

[ $# -ge 1 ] || { usage >&2; exit 2; }
CMD=$1; shift
case $CMD in
start | stop | status | restart) ;;
-h | --help) usage; exit 0 ;;
*) cga_die 2 "unknown command '$CMD' (start, stop, status, restart)" ;;
esac

LABS=${CGA_STACK_LABS:-2}
RUN=${CGA_STACK_RUN_DIR:-./.run/stack}
OWN_REDIS=1
[ "${CGA_STACK_REDIS:-}" = external ] && OWN_REDIS=0
KEEP_REDIS=0
TIMEOUT=30
BRIEF=0
ENV_FILE=""
while [ $# -gt 0 ]; do
    case $1 in
    --labs) LABS=${2:?--labs needs a value}; shift ;;
    --labs=*) LABS=${1#*=} ;;
    --run-dir) RUN=${2:?--run-dir needs a value}; shift ;;
    --run-dir=*) RUN=${1#*=} ;;
    --no-redis) OWN_REDIS=0 ;;
    --keep-redis) KEEP_REDIS=1 ;;
    --timeout) TIMEOUT=${2:?--timeout needs a value}; shift ;;
    --timeout=*) TIMEOUT=${1#*=} ;;
    --brief) BRIEF=1 ;;
    --env-file) ENV_FILE=${2:?--env-file needs a value}; shift ;;
    --env-file=*) ENV_FILE=${1#*=} ;;
    -h | --help) usage; exit 0 ;;
    *) cga_die 2 "unknown option '$1' (see --help)" ;;
    esac
    shift
done
{ [[ $LABS =~ ^[0-9]+$ ]] && [ "$LABS" -le 256 ]; } || cga_die 2 "--labs: a number 0..256, not '$LABS'"
[[ $TIMEOUT =~ ^[0-9]+$ ]] || cga_die 2 "--timeout: not a number of seconds: '$TIMEOUT'"

mkdir -p "$RUN/pids" "$RUN/logs" || cga_die 1 "cannot create the run dir $RUN"
chmod 700 "$RUN"
RUN=$(cd "$RUN" && pwd)
PIDS=$RUN/pids
LOGS=$RUN/logs
REDIS_DIR=$RUN/redis

# ---- settings --------------------------------------------------------------------------------
if [ -n "$ENV_FILE" ]; then
    ENV_FILE=$(cd "$(dirname "$ENV_FILE")" && pwd)/$(basename "$ENV_FILE")
fi
cga_load_env "$ENV_FILE"
# The stack's own settings (written at start) fill what the environment and .env leave unset,
# so that stop and status find the same Redis as start.
[ -f "$RUN/stack.env" ] && cga_load_dotenv "$RUN/stack.env"

find_bin() {
    if [ -n "${CGA_BIN_DIR:-}" ]; then
        [ -x "$CGA_BIN_DIR/$1" ] || cga_die 2 "CGA_BIN_DIR=$CGA_BIN_DIR has no $1"
        echo "$CGA_BIN_DIR/$1"
    elif [ -x "$HERE/../build/bin/$1" ]; then
        echo "$(cd "$HERE/../build/bin" && pwd)/$1"
    elif command -v "$1" >/dev/null; then
        command -v "$1"
    else
        cga_die 2 "$1 not found (build it: cmake --build build; or set CGA_BIN_DIR)"
    fi
}

new_secret() { # new_secret FILE: 32 random bytes in hex, mode 0600, unless FILE exists
    [ -s "$1" ] && return 0
    (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$1.tmp" && echo >>"$1.tmp" &&
        mv -f "$1.tmp" "$1")
}

# ---- process bookkeeping ---------------------------------------------------------------------
# alive PID: the process exists and has not exited (a zombie waiting for its parent, here init,
# to reap it has exited).
alive() {
    local st
    kill -0 "$1" 2>/dev/null || return 1
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 0
    [ "$st" != Z ] && [ "$st" != X ]
}

# pid_of NAME: the pid in NAME's pid file if that process is alive and is ours, else nothing.
pid_of() {
    local f=$PIDS/$1.pid pid
    [ -s "$f" ] || return 0
    pid=$(cat "$f")
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    alive "$pid" || return 0
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "cgalpha-\|redis-server" || return 0
    echo "$pid"
}

redis_pid() {
    local pid
    [ -s "$REDIS_DIR/redis.pid" ] || return 0
    pid=$(cat "$REDIS_DIR/redis.pid")
    [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" &&
        grep -q redis-server "/proc/$pid/cmdline" 2>/dev/null && echo "$pid"
    return 0
}

# names: nexus, lab-1..lab-N (those with a pid file too), ops
lab_names() {
    local n=$1 i names=()
    for ((i = 1; i <= n; i++)); do names+=("lab-$i"); done
    for f in "$PIDS"/lab-*.pid; do
        [ -e "$f" ] || continue
        f=$(basename "$f" .pid)
        [[ " ${names[*]} " == *" $f "* ]] || names+=("$f")
    done
    printf '%s\n' "${names[@]}" | sort -t- -k2 -n
}

spawn() { # spawn NAME CMD...
    local name=$1; shift
    local log=$LOGS/$name.log
    printf '==== %s starting: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$log"
    setsid "$@" </dev/null >>"$log" 2>&1 &
    echo $! >"$PIDS/$name.pid"
    STARTED+=("$name")
}

# stop_pid NAME PID: SIGTERM, wait up to TIMEOUT, SIGKILL after that. Returns 1 if killed.
stop_pids() { # stop_pids NAME:PID ...
    local np name pid left end rc=0
    for np in "$@"; do kill -TERM "${np#*:}" 2>/dev/null || true; done
    end=$(( $(date +%s) + TIMEOUT ))
    while :; do
        left=()
        for np in "$@"; do alive "${np#*:}" && left+=("$np"); done
        [ ${#left[@]} -eq 0 ] && break
        if [ "$(date +%s)" -ge $end ]; then
            for np in "${left[@]}"; do
                name=${np%%:*} pid=${np#*:}
                cga_say "$name (pid $pid) still running ${TIMEOUT}s after SIGTERM: killing it"
                kill -KILL "$pid" 2>/dev/null || true
                rc=1
            done
            break
        fi
        sleep 0.1
    done
    for np in "$@"; do
        name=${np%%:*}
        [ "$name" = redis ] || rm -f "$PIDS/$name.pid"
        alive "${np#*:}" || echo "$name: stopped"
    done
    return $rc
}

# ---- commands --------------------------------------------------------------------------------
do_start() {
    local OPS LAB NEXUS
    OPS=$(find_bin cgalpha-ops)
    LAB=$(find_bin cgalpha-lab)
    NEXUS=$(find_bin cgalpha-nexus)
    export LAB_PLUGINS=${LAB_PLUGINS:-trend,volatility,momentum}

    cga_redis_target
    if [ $OWN_REDIS -eq 1 ] && [ -z "$CGA_R_SOCK" ] && ! cga_is_loopback "$CGA_R_HOST"; then
        cga_die 2 "Redis is configured at $(cga_redis_where), not on this machine:" \
            "use --no-redis to run the processes against it"
    fi
    if [ $OWN_REDIS -eq 1 ]; then
        if [ -z "$CGA_R_PASS" ]; then
            new_secret "$RUN/redis.password"
            export REDIS_PASSWORD_FILE=$RUN/redis.password
            [ -n "$CGA_R_USER" ] || export REDIS_USERNAME=cgalpha
        fi
        if [ -z "${REDIS_ADMIN_PASSWORD_FILE:-}" ]; then
            new_secret "$RUN/redis.admin.password"
            export REDIS_ADMIN_PASSWORD_FILE=$RUN/redis.admin.password
        fi
        [ -n "${REDIS_PASSWORD_FILE:-}" ] && REDIS_PASSWORD_FILE=$(cd "$(dirname \
            "$REDIS_PASSWORD_FILE")" && pwd)/$(basename "$REDIS_PASSWORD_FILE")
        cga_redis_target
        # What stop, status and the operator need to reach this Redis again (no password).
        {
            echo "# Written by cgalpha-stack.sh start. Connection settings of this stack."
            [ -n "${REDIS_URL:-}" ] && printf 'REDIS_URL=%s\n' "${REDIS_URL}"
            [ -n "${REDIS_HOST:-}" ] && printf 'REDIS_HOST=%s\n' "$REDIS_HOST"
            [ -n "${REDIS_PORT:-}" ] && printf 'REDIS_PORT=%s\n' "$REDIS_PORT"
            [ -n "${REDIS_USERNAME:-}" ] && printf 'REDIS_USERNAME=%s\n' "$REDIS_USERNAME"
            [ -n "${REDIS_PASSWORD_FILE:-}" ] && printf 'REDIS_PASSWORD_FILE=%s\n' "$REDIS_PASSWORD_FILE"
            [ -n "${CGALPHA_NAMESPACE:-}" ] && printf 'CGALPHA_NAMESPACE=%s\n' "$CGALPHA_NAMESPACE"
            true
        } >"$RUN/stack.env.tmp"
        if grep -q '^REDIS_URL=.*:[^/]*@' "$RUN/stack.env.tmp"; then
            # the URL carries a password: keep the file private like the password files
            chmod 600 "$RUN/stack.env.tmp"
        fi
        mv -f "$RUN/stack.env.tmp" "$RUN/stack.env"
        "$HERE/start_redis.sh" --dir "$REDIS_DIR" --env-file /dev/null || exit $?
    else
        case $(cga_redis_probe) in
        up) ;;
        rejected) cga_die 4 "Redis at $(cga_redis_where) rejects the configured credentials" ;;
        *) cga_say "Redis at $(cga_redis_where) does not answer yet; the processes will wait for it" ;;
        esac
    fi

    STARTED=()
    local pid name i
    # shellcheck disable=SC2086
    [ -n "$(pid_of nexus)" ] || spawn nexus "$NEXUS" ${CGA_STACK_NEXUS_ARGS:-}
    for ((i = 1; i <= LABS; i++)); do
        # shellcheck disable=SC2086
        [ -n "$(pid_of "lab-$i")" ] || spawn "lab-$i" "$LAB" ${CGA_STACK_LAB_ARGS:-}
    done
    # shellcheck disable=SC2086
    [ -n "$(pid_of ops)" ] || spawn ops "$OPS" run ${CGA_STACK_OPS_ARGS:-}

    [ ${#STARTED[@]} -eq 0 ] && { echo "already running (run dir $RUN)"; return 0; }
    sleep 1
    local bad=0
    for name in "${STARTED[@]}"; do
        pid=$(pid_of "$name")
        if [ -z "$pid" ]; then
            cga_say "$name exited at start (log $LOGS/$name.log):"
            tail -n 10 "$LOGS/$name.log" >&2 || true
            rm -f "$PIDS/$name.pid"
            bad=1
        else
            echo "$name: started (pid $pid, log $LOGS/$name.log)"
        fi
    done
    [ $bad -eq 0 ] || cga_die 1 "some processes did not start; '$0 stop --run-dir $RUN' stops the others"
    echo "stack running (run dir $RUN); settings for the tools: --env-file $RUN/stack.env"
}

do_stop() {
    local rc=0 pid name labs=()
    pid=$(pid_of ops)
    [ -n "$pid" ] && { stop_pids "ops:$pid" || rc=1; }
    for name in $(lab_names 0); do
        pid=$(pid_of "$name")
        if [ -n "$pid" ]; then labs+=("$name:$pid"); else rm -f "$PIDS/$name.pid"; fi
    done
    [ ${#labs[@]} -gt 0 ] && { stop_pids "${labs[@]}" || rc=1; }
    pid=$(pid_of nexus)
    [ -n "$pid" ] && { stop_pids "nexus:$pid" || rc=1; }
    rm -f "$PIDS/ops.pid" "$PIDS/nexus.pid"
    if [ $OWN_REDIS -eq 1 ] && [ $KEEP_REDIS -eq 0 ]; then
        pid=$(redis_pid)
        # SIGTERM: Redis fsyncs the AOF (and saves the RDB if save points are set), then exits.
        [ -n "$pid" ] && { stop_pids "redis:$pid" || rc=1; }
    fi
    [ $rc -eq 0 ] && echo "stack stopped (run dir $RUN)"
    return $rc
}

uptime_of() { # seconds since PID started
    local pid=$1 start ticks boot
    ticks=$(getconf CLK_TCK)
    start=$(awk '{print $22}' "/proc/$pid/stat" 2>/dev/null) || return 0
    boot=$(awk '{print int($1)}' /proc/uptime)
    echo $(( boot - start / ticks ))
}

do_status() {
    local name pid running=0 total=0 rpid names
    # shellcheck disable=SC2207
    names=(nexus $(lab_names 0) ops)
    printf '%-10s %-9s %8s %9s  %s\n' PROCESS STATE PID UPTIME LOG
    if [ $OWN_REDIS -eq 1 ]; then
        rpid=$(redis_pid)
        total=$((total + 1))
        if [ -n "$rpid" ]; then
            running=$((running + 1))
            printf '%-10s %-9s %8s %8ss  %s\n' redis running "$rpid" "$(uptime_of "$rpid")" \
                "$REDIS_DIR/redis.log"
        else
            printf '%-10s %-9s %8s %9s  %s\n' redis stopped - - "$REDIS_DIR/redis.log"
        fi
    fi
    for name in "${names[@]}"; do
        [ "$name" = nexus ] || [ "$name" = ops ] || [ -e "$PIDS/$name.pid" ] || continue
        total=$((total + 1))
        pid=$(pid_of "$name")
        if [ -n "$pid" ]; then
            running=$((running + 1))
            printf '%-10s %-9s %8s %8ss  %s\n' "$name" running "$pid" "$(uptime_of "$pid")" \
                "$LOGS/$name.log"
        elif [ -e "$PIDS/$name.pid" ]; then
            printf '%-10s %-9s %8s %9s  %s\n' "$name" dead - - "$LOGS/$name.log"
        else
            printf '%-10s %-9s %8s %9s  %s\n' "$name" stopped - - "$LOGS/$name.log"
        fi
    done
    echo "$running of $total running (run dir $RUN)"
    if [ $BRIEF -eq 0 ] && [ $running -gt 0 ]; then
        cga_redis_target
        if [ "$(cga_redis_probe)" = up ]; then
            echo
            "$(find_bin cgalpha-ops)" status --env-file /dev/null || true
        else
            echo "Redis at $(cga_redis_where) does not answer"
        fi
    fi
    [ $running -eq "$total" ] && return 0
    [ $running -eq 0 ] && return 3
    return 1
}

case $CMD in
start) do_start ;;
stop) do_stop ;;
status) do_status ;;
restart) do_stop || true; do_start ;;
esac
