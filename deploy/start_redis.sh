#!/usr/bin/env bash
# Makes sure a local Redis for cgalpha is up and answers PING; starts redis-server with
# deploy/redis.conf and a data dir if nothing answers. Idempotent: a Redis that already answers
# with the configured credentials is left alone (exit 0).
#
# Usage: start_redis.sh [OPTIONS]
#   --dir DIR          data dir (AOF, RDB, log, pid file, generated config); default
#                      $CGA_REDIS_DIR or ./.run/redis
#   --conf FILE        policy config to include (default: redis.conf beside this script)
#   --acl FILE         ACL template (default: users.acl beside this script); used when a user
#                      name is configured (REDIS_USERNAME, or the user of REDIS_URL)
#   --bind "ADDRS"     listen on these addresses instead of redis.conf's loopback ones
#   --foreground       run redis-server in the foreground (exec; for containers and systemd)
#   --timeout SECS     how long to wait for PING after starting (default 60: loading a big AOF
#                      takes time)
#   --env-file FILE    settings file (default: $CGALPHA_ENV_FILE, else ./.env if present)
#   -h, --help
#
# Where and how: the same settings as the cgalpha executables: REDIS_URL (redis://[user:pass@]
# host:port/db or unix:///path.sock), else REDIS_HOST / REDIS_PORT; REDIS_USERNAME;
# REDIS_PASSWORD_FILE (or REDIS_PASSWORD, or the URL's password). Only a Redis on this machine
# (loopback address or unix socket) is started.
#
# Credentials given to the Redis it starts:
#   - a user name other than "default": the ACL of users.acl (the default user disabled, that user
#     allowed only what cgalpha runs, on keys and channels <namespace>:*), its password stored
#     as a SHA-256 hash in <dir>/users.acl;
#   - a password without a user name: the default user's password (as a hash);
#   - no password: none; Redis then answers loopback only (protected mode). A non-loopback
#     --bind without a password is refused.
#   REDIS_ADMIN_PASSWORD_FILE, if set, adds a user "admin" with every permission (for
#   redis-cli --user admin ...).
#
# Exit codes: 0 up, 1 could not start (the log's tail is shown), 2 bad usage or configuration,
# 4 a Redis answers there but rejects the credentials.
set -euo pipefail

CGA_PROG=start_redis.sh
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=cgalpha-env.sh
. "$HERE/cgalpha-env.sh"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

DIR=${CGA_REDIS_DIR:-./.run/redis}
CONF=$HERE/redis.conf
ACL=$HERE/users.acl
BIND=""
FOREGROUND=0
TIMEOUT=60
ENV_FILE=""
while [ $# -gt 0 ]; do
    case $1 in
    --dir) DIR=${2:?--dir needs a value}; shift ;;
    --dir=*) DIR=${1#*=} ;;
    --conf) CONF=${2:?--conf needs a value}; shift ;;
    --conf=*) CONF=${1#*=} ;;
    --acl) ACL=${2:?--acl needs a value}; shift ;;
    --acl=*) ACL=${1#*=} ;;
    --bind) BIND=${2:?--bind needs a value}; shift ;;
    --bind=*) BIND=${1#*=} ;;
    --foreground) FOREGROUND=1 ;;
    --timeout) TIMEOUT=${2:?--timeout needs a value}; shift ;;
    --timeout=*) TIMEOUT=${1#*=} ;;
    --env-file) ENV_FILE=${2:?--env-file needs a value}; shift ;;
    --env-file=*) ENV_FILE=${1#*=} ;;
    -h | --help) usage; exit 0 ;;
    *) cga_die 2 "unknown option '$1' (see --help)" ;;
    esac
    shift
done
[[ $TIMEOUT =~ ^[0-9]+$ ]] || cga_die 2 "--timeout: not a number of seconds: '$TIMEOUT'"

cga_load_env "$ENV_FILE"
cga_redis_target
WHERE=$(cga_redis_where)
NS=${CGALPHA_NAMESPACE:-cgalpha}
[[ $NS =~ ^[A-Za-z0-9_.:-]+$ ]] || cga_die 2 "CGALPHA_NAMESPACE '$NS': use letters, digits, _ . : -"

command -v redis-server >/dev/null || cga_die 1 "redis-server not found (deploy/install-deps.sh)"
command -v redis-cli >/dev/null || cga_die 1 "redis-cli not found (deploy/install-deps.sh)"
[ -r "$CONF" ] || cga_die 2 "config $CONF: missing or not readable"

if [ -z "$CGA_R_SOCK" ] && ! cga_is_loopback "$CGA_R_HOST" && [ $FOREGROUND -eq 0 ]; then
    cga_die 2 "Redis is configured at $WHERE, not on this machine: start it there" \
        "(start_redis.sh starts a Redis on a loopback address or a unix socket only)"
fi

# Already up?
if [ $FOREGROUND -eq 0 ]; then
    case $(cga_redis_probe) in
    up) cga_say "Redis at $WHERE is up"; exit 0 ;;
    rejected) cga_die 4 "a Redis answers at $WHERE but rejects the configured credentials" \
        "(REDIS_USERNAME / REDIS_PASSWORD_FILE); not starting another" ;;
    loading) cga_say "Redis at $WHERE is loading its data; waiting" ;;
    other) cga_die 1 "something answers at $WHERE but not as Redis (PING failed); not starting" ;;
    down) ;;
    esac
fi

ADMIN_PASS=""
if [ -n "${REDIS_ADMIN_PASSWORD_FILE:-}" ]; then
    [ -r "$REDIS_ADMIN_PASSWORD_FILE" ] ||
        cga_die 2 "REDIS_ADMIN_PASSWORD_FILE $REDIS_ADMIN_PASSWORD_FILE: missing or not readable"
    IFS= read -r ADMIN_PASS <"$REDIS_ADMIN_PASSWORD_FILE" || true
    ADMIN_PASS=${ADMIN_PASS%$'\r'}
    [ -n "$ADMIN_PASS" ] || cga_die 2 "REDIS_ADMIN_PASSWORD_FILE $REDIS_ADMIN_PASSWORD_FILE: empty"
fi

if [ -n "$BIND" ] && [ -z "$CGA_R_PASS" ]; then
    for a in $BIND; do
        cga_is_loopback "${a#-}" ||
            cga_die 2 "--bind '$BIND' opens Redis beyond loopback: set a password first" \
                "(REDIS_PASSWORD_FILE)"
    done
fi

umask 077
mkdir -p "$DIR" || cga_die 1 "cannot create the data dir $DIR"
DIR=$(cd "$DIR" && pwd)
CONF=$(cd "$(dirname "$CONF")" && pwd)/$(basename "$CONF")
RUNCONF=$DIR/redis.run.conf
PIDFILE=$DIR/redis.pid
LOGFILE=$DIR/redis.log

# A redis-server of ours still starting up (or stuck) would collide with a second one.
if [ $FOREGROUND -eq 0 ] && [ -s "$PIDFILE" ]; then
    oldpid=$(cat "$PIDFILE")
    if [[ $oldpid =~ ^[0-9]+$ ]] && kill -0 "$oldpid" 2>/dev/null &&
        grep -q redis-server "/proc/$oldpid/cmdline" 2>/dev/null; then
        STARTED_BY_US=0
        cga_say "redis-server $oldpid from $DIR is running but not answering yet; waiting"
    fi
fi

{
    echo "# Generated by deploy/start_redis.sh at each start: edits are lost. Policy: the include."
    echo "include $CONF"
    echo "dir $DIR"
    if [ -n "$CGA_R_SOCK" ]; then
        echo "port 0"
        echo "unixsocket $CGA_R_SOCK"
        echo "unixsocketperm 700"
    else
        echo "port $CGA_R_PORT"
    fi
    [ -n "$BIND" ] && echo "bind $BIND"
    if [ $FOREGROUND -eq 1 ]; then
        echo "daemonize no"
        echo 'logfile ""'
    else
        echo "daemonize yes"
        echo "pidfile $PIDFILE"
        echo "logfile $LOGFILE"
    fi
    if [ -n "$CGA_R_USER" ] && [ "$CGA_R_USER" != default ]; then
        [ -n "$CGA_R_PASS" ] || cga_die 2 "user '$CGA_R_USER' configured without a password" \
            "(REDIS_PASSWORD_FILE)"
        [ -r "$ACL" ] || cga_die 2 "ACL template $ACL: missing or not readable"
        [[ $CGA_R_USER =~ ^[A-Za-z0-9_.-]+$ ]] || cga_die 2 "REDIS_USERNAME: use letters, digits, _ . -"
        echo "aclfile $DIR/users.acl"
    elif [ -n "$CGA_R_PASS" ]; then
        echo "user default on #$(cga_sha256 "$CGA_R_PASS") ~* &* +@all"
        [ -n "$ADMIN_PASS" ] && echo "user admin on #$(cga_sha256 "$ADMIN_PASS") ~* &* +@all"
    fi
} >"$RUNCONF.tmp"
mv -f "$RUNCONF.tmp" "$RUNCONF"

if grep -q '^aclfile ' "$RUNCONF"; then
    # users.acl with the hash, the user name and the namespace filled in (no plain text).
    sed -e "s/@CGALPHA_PASSWORD_SHA256@/$(cga_sha256 "$CGA_R_PASS")/" \
        -e "s/^user cgalpha /user $CGA_R_USER /" \
        -e "s/ ~cgalpha:\* / ~$NS:* /" -e "s/ &cgalpha:\* / \&$NS:* /" "$ACL" >"$DIR/users.acl.tmp"
    [ -n "$ADMIN_PASS" ] && echo "user admin on #$(cga_sha256 "$ADMIN_PASS") ~* &* +@all" \
        >>"$DIR/users.acl.tmp"
    grep -q '@[A-Z_0-9]*@' "$DIR/users.acl.tmp" &&
        cga_die 2 "ACL template $ACL has placeholders start_redis.sh does not know"
    mv -f "$DIR/users.acl.tmp" "$DIR/users.acl"
fi

if [ $FOREGROUND -eq 1 ]; then
    cga_say "starting redis-server (foreground) with $RUNCONF"
    exec redis-server "$RUNCONF"
fi

if [ "${STARTED_BY_US:-1}" -eq 1 ]; then
    cga_say "starting redis-server at $WHERE, data in $DIR"
    rm -f "$PIDFILE"
    [ -f "$LOGFILE" ] && mv -f "$LOGFILE" "$LOGFILE.1" # this start's errors only
    if ! out=$(redis-server "$RUNCONF" 2>&1); then
        printf '%s\n' "$out" >&2
        [ -f "$LOGFILE" ] && tail -n 20 "$LOGFILE" >&2
        cga_die 1 "redis-server refused to start (config $RUNCONF, log $LOGFILE)"
    fi
fi

end=$(( $(date +%s) + TIMEOUT ))
while :; do
    state=$(cga_redis_probe)
    case $state in
    up) cga_say "Redis at $WHERE is up (pid $(cat "$PIDFILE" 2>/dev/null || echo '?'))"; exit 0 ;;
    rejected) cga_die 4 "Redis at $WHERE started but rejects the configured credentials" ;;
    esac
    if grep -q -e 'Aborting' -e 'Fatal' -e 'FATAL' "$LOGFILE" 2>/dev/null; then
        tail -n 20 "$LOGFILE" >&2 || true
        cga_die 1 "redis-server failed to start (log $LOGFILE)"
    fi
    if [ -s "$PIDFILE" ]; then
        kill -0 "$(cat "$PIDFILE")" 2>/dev/null || {
            tail -n 20 "$LOGFILE" >&2 || true
            cga_die 1 "redis-server exited during start-up (log $LOGFILE)"
        }
    fi
    if [ "$(date +%s)" -ge $end ]; then
        tail -n 20 "$LOGFILE" >&2 || true
        cga_die 1 "Redis at $WHERE did not answer PING within ${TIMEOUT}s (last: $state; log $LOGFILE)"
    fi
    sleep 0.1
done
