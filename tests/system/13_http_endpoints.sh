#!/usr/bin/env bash
# /health and /metrics of the running services, scraped over HTTP: the counters equal the real
# counts (tasks enqueued = tasks the lab reports succeeded = reports nexus folded), /health is
# 200 while Redis answers and 503 with "connected":false when Redis is killed, 200 again after
# it is back. (The exposition format itself is checked line by line in test_http.)
source "$(dirname "$0")/lib.sh"

metric() { # metric PORT NAME -> value of the unlabelled sample NAME
    http_get "$1" /metrics | awk -v n="$2" '$1 == n {print $2}' | tr -d '\r'
}
health_is() { http_get "$1" /health | sed -n 1p | grep -q " $2 "; }

start_redis --appendonly yes
LP=$(free_port); NP=$(free_port)
spawn lab "$LAB" --plugin trend --plugin volatility --plugin momentum --http-port "$LP" \
    --lease-ms 5000
spawn nexus "$NEXUS" --http-port "$NP"
wait_for 10 "lab /health" health_is "$LP" 200
wait_for 10 "nexus active" grep -q "active:" "$T/nexus.log"

"$OPS" enqueue --symbols 3 --bars 500 >"$T/enqueue.log" 2>&1 || fail "enqueue"
N=$(( 3 * ((500 - 32) / 16 + 1) * 3 ))
# at least N: a lab that is slow to finish an entry gets it back by reclaim after the lease
# (at least once), and its duplicate reports count too
count_at_least() { local v; v=$(metric "$1" "$2"); [ -n "$v" ] && [ "${v%.*}" -ge "$3" ]; }
wait_for 60 "lab metrics count $N tasks" count_at_least "$LP" cgalpha_lab_tasks_succeeded_total "$N"
wait_for 60 "nexus metrics count $N reports" count_at_least "$NP" cgalpha_nexus_reports_total "$N"
[ "$(metric "$LP" cgalpha_lab_tasks_failed_total)" = 0 ] || fail "failed tasks"
[ "$(metric "$NP" cgalpha_nexus_regime_changes_total)" = "$(rcli XLEN cgalpha:state:regime_log)" ] ||
    fail "regime changes metric differs from the regime log"
[ "$(metric "$NP" cgalpha_task_latency_seconds_count)" = "$(metric "$NP" cgalpha_nexus_reports_total)" ] ||
    fail "latency histogram count differs from the reports folded"
log "metrics: lab $N succeeded, nexus $N reports folded"

http_get "$LP" /health | sed -n 1p | grep -q " 200 " || fail "lab /health not 200"
http_get "$NP" /health | grep -q '"role":"active"' || fail "nexus /health role"
stop_redis KILL
wait_for 5 "lab /health 503" health_is "$LP" 503
http_get "$LP" /health | grep -q '"connected":false' || fail "lab /health does not say disconnected"
start_redis --appendonly yes
wait_for 10 "lab /health 200 again" health_is "$LP" 200
log "PASS: /metrics counts match, /health follows Redis"
