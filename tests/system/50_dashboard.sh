#!/usr/bin/env bash
# The dashboard of `cgalpha-ops run --http-port P`: a lab, nexus and a finite synthetic source;
# once the queues are drained (and two dead letters added), /api/snapshot, /metrics and the page
# itself, rendered by headless Chromium (Debian's chromium package), show exactly what Redis and
# `cgalpha-ops status --json` say: queue lengths, lag, pending, dead letters, consumers, the labs,
# the regime of every symbol, the semaphore level. A screenshot is kept as a test artifact
# (tests/artifacts/dashboard.png in the build directory). The page's assets refer to no host; with
# Redis killed the snapshot is served stale (200, "connected":false), and the page says so.
source "$(dirname "$0")/lib.sh"

CHROMIUM=${CHROMIUM:-chromium}
command -v "$CHROMIUM" >/dev/null 2>&1 ||
    fail "chromium not installed: deploy/install-deps.sh --test installs it"
ART_DIR=${CGA_BUILD_DIR:-$T}/tests/artifacts
mkdir -p "$ART_DIR"

http_body() { http_get "$1" "$2" | tr -d '\r' | sed '1,/^$/d'; }
fetch() { # fetch PORT PATH -> $T/resp (status line, headers, body; CRs dropped)
    http_get "$1" "$2" | tr -d '\r' >"$T/resp"
}
# (answers are read into files first: `grep -q` on a pipe fails the pipeline under pipefail)
metric() { # metric PORT 'NAME{labels}' -> value
    http_get "$1" /metrics | tr -d '\r' | awk -v n="$2" '$1 == n {print $2}'
}
jq_queue() { # jq_queue FILE QUEUE FIELD -> a queue's figure in a snapshot or status JSON
    grep -o "\"$2\":{[^}]*}" "$1" | head -n1 | grep -o "\"$3\":[0-9]*" | cut -d: -f2
}
dom_val() { # dom_val FILE ID [ATTR] -> ATTR (default data-value) of the element with id ID
    grep -o "<[^>]* id=\"$2\"[^>]*>" "$1" | head -n1 | grep -o " ${3:-data-value}=\"[^\"]*\"" |
        head -n1 | cut -d'"' -f2
}
regimes_of() { # regimes_of FILE -> "SYMBOL REGIME" lines of the current regimes, sorted
    sed 's/.*"regimes":\[\([^]]*\)\].*/\1/' "$1" |
        grep -o '"symbol":"[^"]*","regime":"[^"]*"' | sed 's/"symbol":"\([^"]*\)","regime":"\([^"]*\)"/\1 \2/' |
        sort
}
# Each run its own profile under $T; generous timeouts: the machine may be busy (ASan, -j2).
chrome() { # chrome ARGS... URL
    timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run \
        --disable-extensions --disable-background-networking --disable-dev-shm-usage \
        --user-data-dir="$T/chromium" --virtual-time-budget=8000 "$@" 2>>"$T/chromium.err" || {
        local rc=$?
        grep -v dbus "$T/chromium.err" | tail -n 20 >&2
        return $rc
    }
}

start_redis
P=$(free_port)
spawn nexus "$NEXUS"
wait_for 10 "nexus active" grep -q "active:" "$T/nexus.log"
# 3 symbols x 36 windows x 3 labs = 324 tasks, produced over about 10 s; the lab starts once a
# backlog is there (the charts get a history worth a look); no trimming during the test, so that
# the queue lengths are not trivially 0.
N=$((3 * ((600 - 32) / 16 + 1) * 3))
spawn ops "$OPS" run --http-port "$P" --source synthetic --symbols 3 --bars 600 --bar-rate 60 \
    --state-interval-ms 500 --trim-interval-ms 3600000 --grace-ms 2000
OPS_PID=$LAST_PID
wait_for 10 "the dashboard served" grep -q "dashboard: serving the operator's page at / .* port $P" \
    "$T/ops.log"
backlog() { local l; l=$(group_lag analysis labs); [ -n "$l" ] && [ "$l" -ge 20 ]; }
wait_for 20 "a backlog in the analysis queue" backlog
sleep 2
spawn lab "$LAB" --plugin trend --plugin volatility --plugin momentum
log "waiting for the $N tasks to be produced, processed and folded"
drained() {
    grep -q "source exhausted" "$T/ops.log" || return 1
    [ "$(group_lag analysis labs)" = 0 ] && [ "$(group_pending analysis labs)" = 0 ] &&
        [ "$(group_lag reports nexus)" = 0 ] && [ "$(group_pending reports nexus)" = 0 ] || return 1
    "$OPS" status --json >"$T/st.json" 2>/dev/null || return 1
    local done
    done=$(grep -o '"processed":[0-9]*' "$T/st.json" | cut -d: -f2 | head -n1)
    [ -n "$done" ] && [ "$done" -ge "$N" ]
}
wait_for 90 "queues drained" drained
# Dead letters, as a lab or nexus writes them (the page shows them per queue and in total).
for i in 1 2; do
    rcli XADD cgalpha:queue:analysis:dead '*' m garbage reason "test $i" src "1-$i" deliveries 5 \
        ts 1 >/dev/null
done
rcli XADD cgalpha:queue:reports:dead '*' m garbage reason test src 1-9 deliveries 5 ts 1 >/dev/null
snap_has_dead() {
    http_body "$P" /api/snapshot >"$T/snap.json"
    [ "$(jq_queue "$T/snap.json" analysis dead)" = 2 ] && [ "$(jq_queue "$T/snap.json" reports dead)" = 1 ]
}
wait_for 10 "the snapshot sees the dead letters" snap_has_dead
sleep 1.5 # one more reading: the lab's last heartbeat is in it
http_body "$P" /api/snapshot >"$T/snap.json"
"$OPS" status --json >"$T/status.json" || fail "status --json: exit $?"

# What Redis says, per queue: "name:group".
declare -A WANT
for qg in analysis:labs reports:nexus; do
    q=${qg%%:*}; g=${qg#*:}
    WANT[$q-length]=$(rcli XLEN "cgalpha:queue:$q")
    WANT[$q-lag]=$(group_lag "$q" "$g")
    WANT[$q-pending]=$(group_pending "$q" "$g")
    WANT[$q-dead]=$(rcli XLEN "cgalpha:queue:$q:dead")
    WANT[$q-consumers]=$(rcli XINFO GROUPS "cgalpha:queue:$q" | awk '/^consumers$/ {getline; print; exit}')
done
[ "${WANT[analysis-length]}" -gt 0 ] || fail "the analysis stream is empty (trimmed?)"
LABS=$(rcli --scan --pattern 'cgalpha:state:worker:*' | wc -l)
[ "$LABS" = 1 ] || fail "worker heartbeats in Redis: $LABS"
LEVEL=$(grep -o '"semaphore":{"level":"[a-z]*"' "$T/status.json" | cut -d'"' -f6)
[ -n "$LEVEL" ] || fail "status --json shows no semaphore"
regimes_of "$T/status.json" >"$T/regimes.want"
[ "$(wc -l <"$T/regimes.want")" = 3 ] || fail "status --json regimes: $(cat "$T/regimes.want")"

log "/api/snapshot and /metrics against Redis"
fetch "$P" /api/snapshot
head -n1 "$T/resp" | grep -q " 200 " || fail "/api/snapshot not 200"
grep -qi '^content-type: application/json' "$T/resp" || fail "/api/snapshot content type"
grep -qi '^cache-control: no-store' "$T/resp" || fail "/api/snapshot is not marked no-store"
grep -q '"namespace":"cgalpha"' "$T/snap.json" || fail "snapshot namespace"
grep -q '"redis":{"connected":true},"stale":false,"error":null' "$T/snap.json" ||
    fail "snapshot not live: $(head -c 300 "$T/snap.json")"
grep -q '"changes":\[{' "$T/snap.json" || fail "snapshot without regime changes"
for q in analysis reports; do
    for f in length lag pending dead consumers; do
        got=$(jq_queue "$T/snap.json" "$q" "$f")
        [ "$got" = "${WANT[$q-$f]}" ] || fail "snapshot $q $f: got '$got', Redis says '${WANT[$q-$f]}'"
    done
    m=$(metric "$P" "cgalpha_queue_length{queue=\"$q\"}")
    [ "$m" = "${WANT[$q-length]}" ] || fail "metric length $q: '$m' != '${WANT[$q-length]}'"
    m=$(metric "$P" "cgalpha_queue_lag{queue=\"$q\"}")
    [ "$m" = "${WANT[$q-lag]}" ] || fail "metric lag $q: '$m' != '${WANT[$q-lag]}'"
    m=$(metric "$P" "cgalpha_queue_pending{queue=\"$q\"}")
    [ "$m" = "${WANT[$q-pending]}" ] || fail "metric pending $q: '$m' != '${WANT[$q-pending]}'"
    m=$(metric "$P" "cgalpha_queue_dead_letters{queue=\"$q\"}")
    [ "$m" = "${WANT[$q-dead]}" ] || fail "metric dead $q: '$m' != '${WANT[$q-dead]}'"
    m=$(metric "$P" "cgalpha_queue_consumers{queue=\"$q\"}")
    [ "$m" = "${WANT[$q-consumers]}" ] || fail "metric consumers $q: '$m' != '${WANT[$q-consumers]}'"
done
[ "$(metric "$P" cgalpha_labs_alive)" = "$LABS" ] || fail "metric labs_alive"
[ "$(regimes_of "$T/snap.json")" = "$(cat "$T/regimes.want")" ] || fail "snapshot regimes"
http_body "$P" /api/history >"$T/history.json"
grep -q '"points":\[\[' "$T/history.json" || fail "/api/history has no points"

log "the page in headless Chromium"
chrome --dump-dom "http://127.0.0.1:$P/" >"$T/dom.html" || fail "chromium --dump-dom: exit $?"
D=$T/dom.html
[ "$(grep -o '<body[^>]*data-ready="1"' "$D" | wc -l)" = 1 ] ||
    fail "the page did not render a snapshot: $(head -c 400 "$D")"
[ "$(dom_val "$D" conn data-state)" = live ] || fail "page connection: $(dom_val "$D" conn data-state)"
for q in analysis reports; do
    for f in length lag pending dead consumers; do
        got=$(dom_val "$D" "q-$q-$f")
        [ "$got" = "${WANT[$q-$f]}" ] || fail "page $q $f: got '$got', Redis says '${WANT[$q-$f]}'"
    done
    got=$(dom_val "$D" "kpi-$q-depth")
    [ "$got" = $(( WANT[$q-lag] + WANT[$q-pending] )) ] || fail "page $q depth: '$got'"
done
[ "$(dom_val "$D" dead-total)" = 3 ] || fail "page dead letters: '$(dom_val "$D" dead-total)'"
[ "$(dom_val "$D" labs-alive)" = "$LABS" ] || fail "page labs alive: '$(dom_val "$D" labs-alive)'"
[ "$(grep -o '<tr data-lab-id="[^"]*"' "$D" | wc -l)" = "$LABS" ] || fail "page lab rows"
lab_id=$(grep -o '"labs":\[{"id":"[^"]*"' "$T/status.json" | cut -d'"' -f6)
grep -q "<tr data-lab-id=\"$lab_id\"" "$D" || fail "page does not list lab $lab_id"
processed=$(grep -o '"processed":[0-9]*' "$T/status.json" | head -n1 | cut -d: -f2)
[ "$(dom_val "$D" processed-total)" = "$processed" ] ||
    fail "page processed: '$(dom_val "$D" processed-total)', status says '$processed'"
[ "$(dom_val "$D" sem-level data-level)" = "$LEVEL" ] ||
    fail "page semaphore: '$(dom_val "$D" sem-level data-level)', status says '$LEVEL'"
grep -o '<g class="lane" data-symbol="[^"]*" data-regime="[^"]*"' "$D" |
    sed 's/.*data-symbol="\([^"]*\)" data-regime="\([^"]*\)"/\1 \2/' | sort >"$T/regimes.page"
diff "$T/regimes.want" "$T/regimes.page" >&2 || fail "page regimes differ from status --json"
[ "$(grep -o '<rect[^>]*data-regime=' "$D" | wc -l)" -ge 3 ] || fail "no timeline segments"
log "page figures: analysis length ${WANT[analysis-length]}, dead 2+1, labs $LABS," \
    "processed $processed, semaphore $LEVEL, regimes $(tr '\n' ' ' <"$T/regimes.want")"

log "assets: served with their types, no other host"
for a in /:text/html /index.html:text/html /app.js:text/javascript /style.css:text/css; do
    fetch "$P" "${a%%:*}"
    head -n1 "$T/resp" | grep -q " 200 " || fail "${a%%:*} not 200"
    grep -qi "^content-type: ${a#*:}; charset=utf-8" "$T/resp" || fail "${a%%:*} content type"
    grep -qi "^cache-control: no-cache" "$T/resp" || fail "${a%%:*} is not marked no-cache"
done
# The only URL allowed is the SVG namespace name (an identifier, never fetched).
for a in / /app.js /style.css; do http_body "$P" "$a"; done >"$T/assets.txt"
cat "$D" >>"$T/assets.txt"
urls=$(grep -oiE '(https?:)?//[a-z0-9.-]+[a-z0-9]' "$T/assets.txt" | grep -v '^http://www.w3.org$' |
    grep -viE "^(https?:)?//(127\.0\.0\.1|localhost)(:$P)?$" | sort -u || true)
[ -z "$urls" ] || fail "the page refers to other hosts: $urls"
grep -oiE '(src|href|action)="[^"]*"' "$T/assets.txt" | grep -iE '="([a-z]+:|//)' &&
    fail "a src or href that leaves this server"
grep -qiE '@import|url\(' "$T/assets.txt" && fail "the stylesheet loads something"

log "screenshot"
rm -f "$T/dashboard.png"
chrome --screenshot="$T/dashboard.png" --window-size=1280,1000 --hide-scrollbars \
    "http://127.0.0.1:$P/" >/dev/null || fail "chromium --screenshot: exit $?"
[ -f "$T/dashboard.png" ] || fail "no screenshot"
[ "$(head -c 8 "$T/dashboard.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] ||
    fail "the screenshot is not a PNG"
size=$(stat -c %s "$T/dashboard.png")
[ "$size" -gt 30000 ] || fail "the screenshot is nearly empty ($size bytes)"
cp "$T/dashboard.png" "$ART_DIR/dashboard.png"
log "screenshot: $ART_DIR/dashboard.png ($size bytes)"

log "Redis killed: the snapshot is served stale, the page says so"
stop_redis KILL
stale() {
    http_body "$P" /api/snapshot >"$T/stale.json"
    grep -q '"redis":{"connected":false},"stale":true,"error":"Redis not connected (' "$T/stale.json"
}
wait_for 10 "a stale snapshot" stale
fetch "$P" /api/snapshot
head -n1 "$T/resp" | grep -q " 200 " || fail "stale snapshot not 200"
[ "$(jq_queue "$T/stale.json" analysis length)" = "${WANT[analysis-length]}" ] ||
    fail "the stale snapshot lost the last reading"
chrome --dump-dom "http://127.0.0.1:$P/" >"$T/dom-stale.html" || fail "chromium: exit $?"
[ "$(dom_val "$T/dom-stale.html" conn data-state)" = stale ] || fail "page does not say stale"
grep -q '<body[^>]*data-stale="1"' "$T/dom-stale.html" || fail "page not greyed out when stale"
[ "$(dom_val "$T/dom-stale.html" q-analysis-length)" = "${WANT[analysis-length]}" ] ||
    fail "the stale page lost the last reading"
start_redis

rc=0
stop_proc "$OPS_PID" 30 || rc=$?
[ "$rc" = 0 ] || fail "ops exit code $rc after SIGTERM"
log "PASS: the dashboard shows what Redis holds; screenshot in $ART_DIR/dashboard.png"
