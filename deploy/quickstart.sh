#!/usr/bin/env bash
# cgalpha quick start: the whole pipeline on the bundled synthetic market.
#
# Installs the Debian packages it needs (deploy/install-deps.sh), builds (build/, Release),
# starts a private redis-server (data and AOF in .run/quickstart/redis, unix socket only), then
# nexus, two labs and ops on the synthetic source; prints each regime change as nexus publishes
# it with a live progress line, and ends with a summary: tasks, reports, regime changes,
# detection accuracy against the generator's truth, throughput. Ctrl-C stops everything cleanly.
#
# Environment: SYMBOLS (8), BARS per symbol (3000), BAR_RATE bars/s per symbol (300; 0 = as fast
# as it goes), SEED (42), LABS (2), HTTP_PORT of the dashboard while ops runs (8080; 0: none),
# QUICKSTART_DIR (.run/quickstart; wiped at start).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SYMBOLS=${SYMBOLS:-8}
BARS=${BARS:-3000}
BAR_RATE=${BAR_RATE:-300}
SEED=${SEED:-42}
LABS=${LABS:-2}
HTTP_PORT=${HTTP_PORT:-8080}
RUN=${QUICKSTART_DIR:-$ROOT/.run/quickstart}
WINDOW=32 STEP=16 PLUGINS=3

say() { printf '%s\n' "$*"; }
die() { printf 'quickstart: %s\n' "$*" >&2; exit 1; }

say "==> dependencies"
deploy/install-deps.sh
say "==> build (build/, Release)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCGA_TESTS=OFF >/dev/null
cmake --build build -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
BIN=$ROOT/build/bin

rm -rf "$RUN"
mkdir -p "$RUN/redis" "$RUN/logs"
SOCK=$RUN/redis/redis.sock
export REDIS_URL="unix://$SOCK"
PIDS=()
REDIS_PID=""
STOPPING=0

stop_all() {
    [ "$STOPPING" = 1 ] && return
    STOPPING=1
    printf '\n==> stopping\n'
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ -n "$REDIS_PID" ]; then
        kill -TERM "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
    fi
    say "    everything stopped; logs in ${RUN#$ROOT/}/logs, Redis data (AOF) in ${RUN#$ROOT/}/redis"
}
interrupted() { stop_all; exit 130; }
trap interrupted INT TERM
trap stop_all EXIT

say "==> redis-server (private: unix socket ${SOCK#$ROOT/}, appendonly yes)"
redis-server --port 0 --unixsocket "$SOCK" --unixsocketperm 700 --dir "$RUN/redis" \
    --appendonly yes --appendfsync everysec --save '' --daemonize no \
    >"$RUN/logs/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 1 100); do
    redis-cli -s "$SOCK" PING >/dev/null 2>&1 && break
    sleep 0.05
done
redis-cli -s "$SOCK" PING >/dev/null 2>&1 || die "redis-server did not start (see $RUN/logs/redis.log)"

start() { # name, command...
    local name=$1; shift
    "$@" >"$RUN/logs/$name.log" 2>&1 &
    PIDS+=($!)
}
# An audit consumer group on the reports stream that never reads: the coordinator trims each
# stream only up to what every group still needs, so every report stays for the summary.
redis-cli -s "$SOCK" XGROUP CREATE cgalpha:queue:reports audit 0 MKSTREAM >/dev/null

say "==> nexus, $LABS labs (trend, volatility, momentum), a regime watcher"
start nexus "$BIN/cgalpha-nexus"
for i in $(seq 1 "$LABS"); do
    start "lab$i" "$BIN/cgalpha-lab" --plugin trend --plugin volatility --plugin momentum
done
"$BIN/cgalpha-ops" watch >"$RUN/changes.txt" 2>"$RUN/logs/watch.log" &
PIDS+=($!)
sleep 0.5

WINDOWS=$(( BARS >= WINDOW ? (BARS - WINDOW) / STEP + 1 : 0 ))
N=$(( SYMBOLS * WINDOWS * PLUGINS ))
say "==> ops: $SYMBOLS symbols x $BARS bars (seed $SEED) -> $N tasks"
say ""
# The dashboard, while ops runs, on HTTP_PORT (8080; 0: none) when nothing listens there yet.
HTTP_ARGS=()
if [ "$HTTP_PORT" != 0 ]; then
    if (exec 3<>"/dev/tcp/127.0.0.1/$HTTP_PORT") 2>/dev/null; then
        say "    (port $HTTP_PORT is taken: no dashboard; HTTP_PORT=N picks another)"
    else
        HTTP_ARGS=(--http-port "$HTTP_PORT")
        say "    dashboard: http://127.0.0.1:$HTTP_PORT/ (while ops runs)"
    fi
fi
T0=$(date +%s.%N)
"$BIN/cgalpha-ops" run --source synthetic --symbols "$SYMBOLS" --bars "$BARS" --seed "$SEED" \
    --bar-rate "$BAR_RATE" --truth-out "$RUN/truth.csv" --exit-when-done "${HTTP_ARGS[@]}" \
    >"$RUN/logs/ops.log" 2>&1 &
OPS_PID=$!
PIDS+=($OPS_PID)

TTY=0
[ -t 1 ] && TTY=1
shown=0
field() { # field NAME from `cgalpha-lab --summary`
    awk -v k="$1" '$1 == k {print $2}' <<<"$SUMMARY"
}
progress() {
    local elapsed
    elapsed=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
    local changes
    changes=$(redis-cli -s "$SOCK" XLEN cgalpha:state:regime_log 2>/dev/null || echo "?")
    printf '[%6ss] tasks reported %s/%s  backlog %s  regime changes %s' "$elapsed" \
        "${DONE:-0}" "$N" "${BACKLOG:-?}" "$changes"
}
ops_done=0
while :; do
    # regime changes printed since last time, above the progress line
    total=$(wc -l <"$RUN/changes.txt")
    if [ "$total" -gt "$shown" ]; then
        [ $TTY = 1 ] && printf '\r\033[K'
        tail -n +"$((shown + 1))" "$RUN/changes.txt" | head -n "$((total - shown))" | \
            sed 's/^/  regime  /'
        shown=$total
    fi
    SUMMARY=$("$BIN/cgalpha-lab" --summary 2>/dev/null || true)
    DONE=$(field report_tasks)
    BACKLOG=$(( $(field analysis_lag || echo 0) + $(field analysis_pending || echo 0) ))
    if [ $TTY = 1 ]; then printf '\r\033[K%s' "$(progress)"; fi
    if [ $ops_done = 0 ] && ! kill -0 "$OPS_PID" 2>/dev/null; then
        wait "$OPS_PID" || die "ops exited with an error (see $RUN/logs/ops.log)"
        ops_done=1
    fi
    if [ $ops_done = 1 ] && [ "${DONE:-0}" -ge "$N" ] && [ "$BACKLOG" = 0 ]; then
        nexus_pending=$(redis-cli -s "$SOCK" XPENDING cgalpha:queue:reports nexus | head -n1)
        nexus_lag=$(redis-cli -s "$SOCK" XINFO GROUPS cgalpha:queue:reports | awk '
            /^name$/ { getline; name = $0 }
            /^lag$/ { getline; if (name == "nexus") { print; exit } }')
        [ "$nexus_pending" = 0 ] && [ "$nexus_lag" = 0 ] && break
    fi
    sleep 0.5
done
T1=$(date +%s.%N)
sleep 0.5 # the watcher prints the last changes
total=$(wc -l <"$RUN/changes.txt")
[ $TTY = 1 ] && printf '\r\033[K'
[ "$total" -gt "$shown" ] && tail -n +"$((shown + 1))" "$RUN/changes.txt" | sed 's/^/  regime  /'
[ $TTY = 1 ] || progress && echo

say ""
say "==> summary"
SUMMARY=$("$BIN/cgalpha-lab" --summary 2>/dev/null)
secs=$(awk -v a="$T0" -v b="$T1" 'BEGIN {printf "%.2f", b - a}')
say "    tasks produced      $N"
say "    reports             $(field reports) ($(field report_tasks) distinct tasks, $(field report_error) errors)"
say "    dead letters        $(field analysis_dead)"
say "    regime changes      $(redis-cli -s "$SOCK" XLEN cgalpha:state:regime_log)"
say "    throughput          $(awk -v n="$N" -v s="$secs" 'BEGIN {printf "%.0f", n / s}') tasks/s end to end over $secs s (paced: --bar-rate $BAR_RATE bars/s per symbol)"
say "    detection accuracy against the generator's truth:"
"$BIN/cgalpha-ops" accuracy --truth "$RUN/truth.csv" | sed 's/^/      /'
