#!/usr/bin/env bash
# deploy/docker-compose.yml, deploy/Dockerfile and deploy/systemd/*, checked without Docker or a
# running systemd:
#  - compose structure (PyYAML when python3 has it, else a line-based check of the same points):
#    services redis/ops/lab/nexus; redis has a health check that authenticates; lab has no
#    container_name and no host port (so --scale works) and no service publishes a port; the
#    app services depend on redis being healthy; named volumes for Redis data and the ops buffer
#    dir (aipha_memory); the password is a secret file, never an environment value; every
#    setting given to a service is one its executable knows (from --help);
#  - the redis service's command and health check really work: start_redis.sh --foreground with
#    the compose environment (secret file, ACL user) and the health check's shell line answer;
#  - the Dockerfile has the build targets the compose file names, on debian:12;
#  - systemd units: `systemd-analyze verify` (skipped with a message when not available) and the
#    required keys (restart, SIGTERM, stop timeout above the grace periods, env file, hardening,
#    ordering after redis-server.service, a writable state dir for the ops buffer).
source "$(dirname "$0")/lib.sh"
SRC=${CGA_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
D=$SRC/deploy
COMPOSE=$D/docker-compose.yml
[ -f "$COMPOSE" ] || fail "no $COMPOSE"

# ---- compose structure -----------------------------------------------------------------------
known_settings() { # every VAR the three executables document
    { "$OPS" run --help; "$OPS" status --help; "$LAB" --help; "$NEXUS" --help; } 2>/dev/null |
        grep -o '\b[A-Z][A-Z0-9_]*\b' | sort -u
}
known_settings >"$T/settings.txt"
grep -qx LAB_PLUGINS "$T/settings.txt" || fail "could not read the settings from --help"

if command -v python3 >/dev/null && python3 -c 'import yaml' 2>/dev/null; then
    log "compose: checking with PyYAML"
    python3 - "$COMPOSE" "$T/settings.txt" <<'EOF' || fail "docker-compose.yml structure (above)"
import re, sys, yaml
path, settings_file = sys.argv[1], sys.argv[2]
doc = yaml.safe_load(open(path))
known = set(open(settings_file).read().split())
errors = []
def err(msg): errors.append(msg)
svcs = doc.get("services") or {}
for s in ("redis", "ops", "lab", "nexus"):
    if s not in svcs: err("service %s missing" % s)
if errors: print("\n".join(errors)); sys.exit(1)

r = svcs["redis"]
hc = r.get("healthcheck") or {}
test = hc.get("test")
text = " ".join(test) if isinstance(test, list) else str(test or "")
if "ping" not in text.lower(): err("redis healthcheck does not PING")
if "redis_password" not in text: err("redis healthcheck does not use the password secret")
for k in ("interval", "retries"):
    if k not in hc: err("redis healthcheck without %s" % k)

for name, s in svcs.items():
    if "ports" in s: err("%s publishes host ports (Redis and the processes stay private)" % name)
    if "container_name" in s and name in ("lab", "ops", "nexus"):
        err("%s has a container_name" % name)
lab = svcs["lab"]
if "container_name" in lab: err("lab has container_name: --scale lab=N would fail")

for name in ("ops", "lab", "nexus"):
    s = svcs[name]
    dep = s.get("depends_on")
    if not isinstance(dep, dict) or (dep.get("redis") or {}).get("condition") != "service_healthy":
        err("%s: depends_on redis with condition service_healthy missing" % name)
    if "redis_password" not in (s.get("secrets") or []): err("%s: no redis_password secret" % name)
    env = s.get("environment") or {}
    if isinstance(env, list): env = dict(e.split("=", 1) for e in env)
    if env.get("REDIS_PASSWORD_FILE") != "/run/secrets/redis_password":
        err("%s: REDIS_PASSWORD_FILE is not the secret" % name)
    for k in env:
        if k not in known: err("%s: %s is not a setting of the executables" % (name, k))
    g = str(s.get("stop_grace_period", "10s"))
    m = re.fullmatch(r"(\d+)s", g)
    if not m or int(m.group(1)) <= 10: err("%s: stop_grace_period %s not above the 10 s grace" % (name, g))
    if s.get("stop_signal", "SIGTERM") != "SIGTERM": err("%s: stop_signal is not SIGTERM" % name)
cmd = lambda n: " ".join(svcs[n].get("command") or [])
if not cmd("ops").startswith("cgalpha-ops run"): err("ops does not run 'cgalpha-ops run'")
if not cmd("lab").startswith("cgalpha-lab"): err("lab does not run cgalpha-lab")
if not cmd("nexus").startswith("cgalpha-nexus"): err("nexus does not run cgalpha-nexus")

for name, s in svcs.items():
    env = s.get("environment") or {}
    for k, v in (env.items() if isinstance(env, dict) else []):
        if k in ("REDIS_PASSWORD", "REDIS_URL") and v: err("%s: secret-bearing %s in the environment" % (name, k))

vols = doc.get("volumes") or {}
def named_mounts(s):
    out = {}
    for v in s.get("volumes") or []:
        if isinstance(v, str):
            src, dst = v.split(":")[0], v.split(":")[1]
        else:
            src, dst = v.get("source"), v.get("target")
        out[dst] = src
    return out
rm = named_mounts(r)
if rm.get("/data") not in vols: err("redis: /data is not a named volume")
om = named_mounts(svcs["ops"])
buf = [src for dst, src in om.items() if dst.rstrip("/").endswith("aipha_memory")]
if not buf or buf[0] not in vols: err("ops: no named volume for the aipha_memory buffer dir")
sec = (doc.get("secrets") or {}).get("redis_password") or {}
if "file" not in sec: err("secret redis_password is not a file")
for name in ("ops", "lab", "nexus"):
    b = svcs[name].get("build") or {}
    if b and b.get("target") != "app": err("%s: build target is not 'app'" % name)
if (r.get("build") or {}).get("target") != "redis": err("redis: build target is not 'redis'")
if errors: print("\n".join(errors)); sys.exit(1)
print("compose structure OK: services", ", ".join(svcs))
EOF
else
    log "compose: python3 with PyYAML not available: line-based check"
    # the block of a service: from "  NAME:" to the next line indented 2 (or less)
    block() { awk -v s="  $1:" '$0 == s {f=1; next} f && /^  ?[^ #]/ {exit} f' "$COMPOSE"; }
    for s in redis ops lab nexus; do
        grep -qx "  $s:" "$COMPOSE" || fail "service $s missing"
    done
    block redis | grep -q 'healthcheck:' || fail "redis has no healthcheck"
    block redis | grep -A2 'test:' | grep -qi ping || fail "redis healthcheck does not PING"
    block redis | grep -A2 'test:' | grep -q redis_password || fail "healthcheck without the password"
    block lab | grep -Eq '^ +container_name:' && fail "lab has container_name"
    grep -Eq '^ +ports:' "$COMPOSE" && fail "a service publishes host ports"
    grep -q 'condition: service_healthy' "$COMPOSE" || fail "no depends_on condition service_healthy"
    grep -Eq '^ +- +redis-data:/data' "$COMPOSE" || fail "redis: /data is not a named volume"
    grep -Eq '^ +- +[a-z-]+:/var/lib/cgalpha/aipha_memory' "$COMPOSE" || fail "no ops buffer volume"
    grep -Eq '^  redis-data:' "$COMPOSE" || fail "volume redis-data not declared"
    grep -Eq 'REDIS_PASSWORD_FILE: /run/secrets/redis_password' "$COMPOSE" || fail "no secret file"
    grep -Eq 'REDIS_PASSWORD:' "$COMPOSE" && fail "a password in the environment"
    for k in $(grep -Eo '^ +[A-Z][A-Z0-9_]+:' "$COMPOSE" | tr -d ' :' | sort -u); do
        grep -qx "$k" "$T/settings.txt" || fail "$k is not a setting of the executables"
    done
fi
log "compose structure checked"

# ---- Dockerfile ------------------------------------------------------------------------------
DF=$D/Dockerfile
grep -Eq '^FROM debian:12 AS build' "$DF" || fail "Dockerfile: no debian:12 build stage"
grep -Eq '^FROM debian:12(-slim)? AS app' "$DF" || fail "Dockerfile: no app target"
grep -Eq '^FROM debian:12(-slim)? AS redis' "$DF" || fail "Dockerfile: no redis target"
grep -q 'CGA_TESTS=OFF' "$DF" || fail "Dockerfile builds the tests (needs cmocka in the image)"
# every file the Dockerfile copies from the context exists and its .dockerignore lets it through
grep -E '^COPY ' "$DF" | grep -v -- '--from=' | while read -r _ words; do
    read -r -a w <<<"$words"
    for f in "${w[@]:0:${#w[@]}-1}"; do # the last word is the destination
        [ -e "$SRC/$f" ] || fail "Dockerfile copies $f, which does not exist"
        grep -qxF -e "!$f" -e "!$f/**" "$D/Dockerfile.dockerignore" || fail ".dockerignore drops $f"
    done
done
log "Dockerfile: debian:12 stages build, app, redis; copied files exist"

# ---- the redis service's command and health check, run here ----------------------------------
# (bound to loopback instead of "* -::*", on a free port, the secret in a temp file)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo $(( 20000 + RANDOM % 40000 )))
mkdir -p "$T/secrets" "$T/data"
od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$T/secrets/redis_password"
(
    cd "$T/data" || exit 1
    export REDIS_USERNAME=cgalpha REDIS_PASSWORD_FILE=$T/secrets/redis_password REDIS_PORT=$PORT
    unset REDIS_URL REDIS_HOST CGALPHA_ENV_FILE
    exec bash "$D/start_redis.sh" --foreground --dir "$T/data" --bind "127.0.0.1"
) >"$T/redis.log" 2>&1 &
REDIS_PID=$!
HC=$(python3 -c 'import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))["services"]["redis"]["healthcheck"]["test"][1])' "$COMPOSE" 2>/dev/null ||
    sed -n 's/.*"CMD-SHELL", "\(.*\)"\].*/\1/p' "$COMPOSE" | sed 's/\\"/"/g')
[ -n "$HC" ] || fail "could not read the health check command"
HC=${HC//\$\$/\$}                                  # compose's $$ is a literal $
HC=${HC//\/run\/secrets\/redis_password/$T/secrets/redis_password}
HC=${HC//redis-cli /redis-cli -p $PORT }
healthy() { sh -c "$HC"; }
wait_for 15 "the compose health check passes" healthy
kill -0 "$REDIS_PID" || fail "start_redis.sh --foreground exited"
[ "$(cat /proc/$REDIS_PID/comm)" = redis-server ] || fail "start_redis.sh did not exec redis-server"
grep -q '^aclfile ' "$T/data/redis.run.conf" || fail "the redis service does not use the ACL"
out=$(redis-cli -p "$PORT" PING 2>&1 || true)
case $out in *NOAUTH*) ;; *) fail "the compose Redis answers without a password: $out" ;; esac
stop_proc "$REDIS_PID" || fail "redis-server (foreground) exit $?"
REDIS_PID=""
log "the redis service's command starts Redis with the ACL, its health check passes"

# ---- systemd ---------------------------------------------------------------------------------
U=$D/systemd
for f in cgalpha-ops.service cgalpha-lab@.service cgalpha-nexus.service; do
    [ -f "$U/$f" ] || fail "missing $U/$f"
    has() { grep -Eq "^$1" "$U/$f" || fail "$f: no '$1'"; }
    has 'Restart=on-failure$'
    has 'KillSignal=SIGTERM$'
    has 'EnvironmentFile=-?/etc/cgalpha/cgalpha.env$'
    has 'NoNewPrivileges=yes$'
    has 'ProtectSystem=strict$'
    has 'PrivateTmp=yes$'
    has 'After=.*redis-server\.service'
    grep -Eq '^(DynamicUser=yes|User=cgalpha)$' "$U/$f" || fail "$f: neither DynamicUser nor User=cgalpha"
    t=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s\{0,1\}$/\1/p' "$U/$f")
    [ -n "$t" ] && [ "$t" -gt 10 ] || fail "$f: TimeoutStopSec '$t' not above the 10 s grace periods"
    grep -Eq '^Environment=.*REDIS_PASSWORD=|^Environment=.*REDIS_URL=.*@' "$U/$f" &&
        fail "$f: a password in the unit"
    # ExecStart runs an existing command with valid arguments
    exe=$(sed -n 's/^ExecStart=//p' "$U/$f")
    bin=$(basename "${exe%% *}")
    args=${exe#"${exe%% *}"}
    # shellcheck disable=SC2086
    "$CGA_BIN_DIR/$bin" $args --help >/dev/null 2>&1 || fail "$f: '$bin$args --help' fails"
done
grep -q '^StateDirectory=cgalpha-ops' "$U/cgalpha-ops.service" || fail "ops: no state dir for the buffer"
grep -q '^WorkingDirectory=/var/lib/cgalpha-ops' "$U/cgalpha-ops.service" ||
    fail "ops: the buffer (aipha_memory/ in the working dir) is not in the state dir"
grep -q '%i' "$U/cgalpha-lab@.service" || fail "lab template does not use its instance name"
log "systemd units have the required keys"

if command -v systemd-analyze >/dev/null; then
    mkdir -p "$T/units"
    for f in "$U"/*.service; do
        sed "s#^ExecStart=/usr/local/bin/#ExecStart=$CGA_BIN_DIR/#" "$f" >"$T/units/$(basename "$f")"
    done
    cp "$T/units/cgalpha-lab@.service" "$T/units/cgalpha-lab@1.service"
    rc=0
    (cd "$T/units" && systemd-analyze verify --man=no ./cgalpha-ops.service \
        ./cgalpha-nexus.service ./cgalpha-lab@1.service) >"$T/verify.log" 2>&1 || rc=$?
    if grep -q 'cgalpha' "$T/verify.log" || [ $rc -ne 0 ]; then
        cat "$T/verify.log" >&2
        fail "systemd-analyze verify: exit $rc"
    fi
    log "systemd-analyze verify: clean"
else
    log "SKIP: systemd-analyze not available (units checked for their keys only)"
fi
log "PASS: compose, Dockerfile, systemd"
