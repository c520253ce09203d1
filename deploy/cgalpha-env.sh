# shellcheck shell=bash
# Shared by start_redis.sh and cgalpha-stack.sh (source it; bash). Reads the settings the way the
# cgalpha executables do (defaults < .env file < environment) and works out where Redis is and
# which credentials to use. Never prints a password.

# cga_die CODE MESSAGE: one line on stderr, exit CODE (the executables' codes: 1 runtime failure,
# 2 usage or configuration, 3 Redis unreachable, 4 credentials rejected).
cga_die() {
    local code=$1; shift
    printf '%s: %s\n' "${CGA_PROG:-cgalpha}" "$*" >&2
    exit "$code"
}

cga_say() { printf '%s: %s\n' "${CGA_PROG:-cgalpha}" "$*" >&2; }

# cga_load_dotenv FILE [explicit]: exports KEY=VALUE lines of FILE for keys that are not already
# set in the environment (the environment wins, as in the executables). Same syntax as
# libcore's config: blank lines and # comments, optional "export ", '...' and "..." (with \n \t
# \" \\ escapes), unquoted values end at " #". A missing implicit ./.env is not an error.
cga_load_dotenv() {
    local file=$1 explicit=${2:-}
    if [ ! -e "$file" ]; then
        [ -z "$explicit" ] && return 0
        cga_die 2 "env file $file: No such file or directory"
    fi
    [ -r "$file" ] || cga_die 2 "env file $file: not readable"
    local line n=0 key val rest
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        line=${line%$'\r'}
        line=${line#"${line%%[![:space:]]*}"}
        [ -z "$line" ] && continue
        [ "${line:0:1}" = "#" ] && continue
        if [[ $line =~ ^export[[:space:]]+(.*)$ ]]; then line=${BASH_REMATCH[1]}; fi
        if [[ ! $line =~ ^([A-Za-z_][A-Za-z0-9_.]*)[[:space:]]*=[[:space:]]*(.*)$ ]]; then
            cga_die 2 "env file $file, line $n: expected KEY=VALUE"
        fi
        key=${BASH_REMATCH[1]}
        rest=${BASH_REMATCH[2]}
        if [ "${rest:0:1}" = '"' ]; then
            if [[ ! $rest =~ ^\"((\\.|[^\"\\])*)\"[[:space:]]*(#.*)?$ ]]; then
                cga_die 2 "env file $file, line $n: bad double-quoted value"
            fi
            val=${BASH_REMATCH[1]}
            val=${val//\\\"/\"}
            val=${val//\\n/$'\n'}
            val=${val//\\t/$'\t'}
            val=${val//\\r/$'\r'}
            val=${val//\\\\/\\}
        elif [ "${rest:0:1}" = "'" ]; then
            if [[ ! $rest =~ ^\'([^\']*)\'[[:space:]]*(#.*)?$ ]]; then
                cga_die 2 "env file $file, line $n: bad single-quoted value"
            fi
            val=${BASH_REMATCH[1]}
        else
            val=$rest
            if [[ $val =~ ^(.*[^[:space:]])?[[:space:]]+#.*$ ]]; then val=${BASH_REMATCH[1]}; fi
            val=${val%"${val##*[![:space:]]}"}
        fi
        [[ $key == *.* ]] && continue # not a shell name: the executables may read it, we cannot
        if [ -z "${!key+x}" ]; then export "$key=$val"; fi
    done <"$file"
}

# cga_load_env [ENV_FILE]: the .env the executables would read: ENV_FILE (from --env-file), else
# $CGALPHA_ENV_FILE, else ./.env if it exists.
cga_load_env() {
    if [ -n "${1:-}" ]; then
        cga_load_dotenv "$1" explicit
    elif [ -n "${CGALPHA_ENV_FILE:-}" ]; then
        cga_load_dotenv "$CGALPHA_ENV_FILE" explicit
    else
        cga_load_dotenv ./.env
    fi
}

cga_urldecode() { # percent-decoding of a URL's user or password
    local s=${1//+/%2B}
    printf '%b' "${s//%/\\x}"
}

# cga_redis_target: sets CGA_R_HOST, CGA_R_PORT, CGA_R_SOCK (unix socket path or empty),
# CGA_R_DB, CGA_R_USER, CGA_R_PASS (empty when none) from REDIS_URL, else REDIS_HOST,
# REDIS_PORT, REDIS_DB, REDIS_USERNAME, REDIS_PASSWORD, REDIS_PASSWORD_FILE (as the executables).
cga_redis_target() {
    CGA_R_HOST=127.0.0.1 CGA_R_PORT=6379 CGA_R_SOCK="" CGA_R_DB=0 CGA_R_USER="" CGA_R_PASS=""
    local url=${REDIS_URL:-} userinfo="" rest hostport
    if [ -n "$url" ]; then
        case $url in
        redis://*) rest=${url#redis://} ;;
        unix://*) rest=${url#unix://} ;;
        rediss://*) cga_die 2 "REDIS_URL: rediss:// (TLS) is not supported by this build" ;;
        *) cga_die 2 "REDIS_URL: not a URL (expected redis://host[:port][/db] or unix:///path)" ;;
        esac
        if [[ $rest == *@* ]]; then
            userinfo=${rest%@*}
            rest=${rest##*@}
        fi
        if [ -n "$userinfo" ]; then
            if [[ $userinfo == *:* ]]; then
                CGA_R_USER=$(cga_urldecode "${userinfo%%:*}")
                CGA_R_PASS=$(cga_urldecode "${userinfo#*:}")
            else
                CGA_R_USER=$(cga_urldecode "$userinfo")
            fi
        fi
        if [[ $url == unix://* ]]; then
            CGA_R_SOCK=${rest%%\?*}
            CGA_R_PORT=0
            [[ $rest =~ [?\&]db=([0-9]+) ]] && CGA_R_DB=${BASH_REMATCH[1]}
        else
            hostport=${rest%%/*}
            [[ $rest == */* ]] && { CGA_R_DB=${rest#*/}; CGA_R_DB=${CGA_R_DB%%\?*}; }
            [ -n "$CGA_R_DB" ] || CGA_R_DB=0
            if [[ $hostport =~ ^\[([^]]+)\](:([0-9]+))?$ ]]; then
                CGA_R_HOST=${BASH_REMATCH[1]}
                CGA_R_PORT=${BASH_REMATCH[3]:-6379}
            elif [[ $hostport =~ ^([^:]*)(:([0-9]+))?$ ]]; then
                CGA_R_HOST=${BASH_REMATCH[1]:-127.0.0.1}
                CGA_R_PORT=${BASH_REMATCH[3]:-6379}
            else
                cga_die 2 "REDIS_URL: bad host or port"
            fi
        fi
    else
        local h=${REDIS_HOST:-127.0.0.1}
        if [ "${h:0:1}" = / ]; then CGA_R_SOCK=$h; CGA_R_PORT=0; else CGA_R_HOST=$h; fi
        [ -n "$CGA_R_SOCK" ] || CGA_R_PORT=${REDIS_PORT:-6379}
        CGA_R_DB=${REDIS_DB:-0}
    fi
    [ -n "$CGA_R_USER" ] || CGA_R_USER=${REDIS_USERNAME:-}
    if [ -z "$CGA_R_PASS" ]; then
        if [ -n "${REDIS_PASSWORD:-}" ]; then
            CGA_R_PASS=$REDIS_PASSWORD
        elif [ -n "${REDIS_PASSWORD_FILE:-}" ]; then
            [ -r "$REDIS_PASSWORD_FILE" ] ||
                cga_die 2 "REDIS_PASSWORD_FILE $REDIS_PASSWORD_FILE: missing or not readable"
            IFS= read -r CGA_R_PASS <"$REDIS_PASSWORD_FILE" || true
            CGA_R_PASS=${CGA_R_PASS%$'\r'}
            [ -n "$CGA_R_PASS" ] || cga_die 2 "REDIS_PASSWORD_FILE $REDIS_PASSWORD_FILE: empty"
        fi
    fi
    [[ $CGA_R_PORT =~ ^[0-9]+$ ]] || cga_die 2 "bad Redis port '$CGA_R_PORT'"
}

cga_redis_where() { # for messages
    if [ -n "$CGA_R_SOCK" ]; then printf 'unix:%s' "$CGA_R_SOCK"
    elif [[ $CGA_R_HOST == *:* ]]; then printf '[%s]:%s' "$CGA_R_HOST" "$CGA_R_PORT"
    else printf '%s:%s' "$CGA_R_HOST" "$CGA_R_PORT"; fi
}

# cga_rcli ARGS...: redis-cli on the target with its credentials; the password goes through
# REDISCLI_AUTH (not argv, which ps shows).
cga_rcli() {
    local -a a=()
    if [ -n "$CGA_R_SOCK" ]; then a+=(-s "$CGA_R_SOCK"); else a+=(-h "$CGA_R_HOST" -p "$CGA_R_PORT"); fi
    [ -n "$CGA_R_PASS" ] && [ -n "$CGA_R_USER" ] && a+=(--user "$CGA_R_USER")
    if [ -n "$CGA_R_PASS" ]; then
        REDISCLI_AUTH=$CGA_R_PASS redis-cli "${a[@]}" "$@"
    else
        env -u REDISCLI_AUTH redis-cli "${a[@]}" "$@"
    fi
}

# cga_redis_probe: prints one word: up, loading, rejected, down, other.
cga_redis_probe() {
    local out rc=0
    out=$(cga_rcli PING 2>&1) || rc=$?
    case $out in
    *PONG*) echo up ;;
    *LOADING*) echo loading ;;
    *NOAUTH* | *WRONGPASS* | *NOPERM* | *"AUTH failed"* | *"invalid password"*) echo rejected ;;
    *) if [ $rc -ne 0 ]; then echo down; else echo other; fi ;;
    esac
}

cga_is_loopback() {
    case $1 in
    127.* | localhost | ::1 | 0:0:0:0:0:0:0:1) return 0 ;;
    *) return 1 ;;
    esac
}

cga_sha256() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
