#!/usr/bin/env bash
# Start-up errors and exit codes: a plugin that cannot be loaded -> one line, exit 2 (before
# Redis is even needed); bad usage -> 2; Redis unreachable -> 3 after the connect wait; Redis
# rejecting the password -> 4. --help documents every option with its environment name, and
# settings come from the environment too (LAB_PLUGINS comma-separated).
source "$(dirname "$0")/30_lab_common.sh"

expect_exit() { # CODE LOGNAME CMD...: runs CMD, which must exit CODE
    local want=$1 name=$2 rc=0; shift 2
    "$@" >"$T_DIR/$name.log" 2>&1 || rc=$?
    [ "$rc" = "$want" ] || fail "$name: exit $rc, expected $want"
}

# --help: every option of docs/LAB.md, with its environment name
"$LAB" --help >"$T_DIR/help.txt" || fail "--help failed"
while read -r flag env; do
    grep -qE -- "^  $flag .* $env( |\$)" "$T_DIR/help.txt" || fail "--help lacks $flag ($env)"
done <<'LIST'
--plugin LAB_PLUGINS
--plugin-dir CGALPHA_PLUGIN_DIRS
--concurrency LAB_CONCURRENCY
--claim-count LAB_CLAIM_COUNT
--block-ms LAB_BLOCK_MS
--lease-ms LAB_LEASE_MS
--max-deliveries LAB_MAX_DELIVERIES
--grace-ms LAB_GRACE_MS
--id LAB_ID
--max-inflight LAB_MAX_INFLIGHT
--metrics-file LAB_METRICS_FILE
--\[no-\]summary LAB_SUMMARY
LIST

# Plugins: checked before Redis is needed (no Redis running yet).
export REDIS_URL=unix://$T_DIR/none.sock
expect_exit 2 noplugin "$LAB"
grep -q "no plugin to run" "$T_DIR/noplugin.log" || fail "no reason given without --plugin"
expect_exit 2 missing "$LAB" --plugin nosuchplugin --plugin-dir "$CGA_PLUGIN_DIR"
[ "$(grep -c ERROR "$T_DIR/missing.log")" = 1 ] || fail "a missing plugin: one error line"
grep -q "nosuchplugin" "$T_DIR/missing.log" || fail "the line does not name the plugin"
expect_exit 2 badabi "$LAB" --plugin "$CGA_FIXTURE_PLUGIN_DIR/bad_abi.so"
grep -q "ABI" "$T_DIR/badabi.log" || fail "the ABI mismatch is not explained"
expect_exit 2 twice "$LAB" --plugin trend --plugin trend --plugin-dir "$CGA_PLUGIN_DIR"
expect_exit 2 badflag "$LAB" --plugin trend --no-such-flag
expect_exit 2 badnum "$LAB" --plugin trend --concurrency abc
expect_exit 2 badid "$LAB" --plugin trend --plugin-dir "$CGA_PLUGIN_DIR" --id 'a b'
expect_exit 2 positional "$LAB" --plugin trend --plugin-dir "$CGA_PLUGIN_DIR" extra

# Redis not there yet: the lab is a service, it waits (one error line, no exit) and starts
# consuming when Redis appears.
"$LAB" --plugin trend --plugin-dir "$CGA_PLUGIN_DIR" --id early \
    --redis-url "unix://$T_DIR/redis.sock" >"$T_DIR/early.log" 2>&1 &
EARLY=$!; PIDS+=("$EARLY")
sleep 1.5
kill -0 "$EARLY" 2>/dev/null || fail "the lab exited while Redis was not there yet"
[ "$(grep -c "Redis connection failed" "$T_DIR/early.log")" = 1 ] ||
    fail "expected one 'Redis connection failed' line while waiting"
start_redis
for _ in $(seq 1 100); do
    [ "$(rcli EXISTS "$NS:state:worker:early")" = 1 ] && break
    sleep 0.1
done
[ "$(rcli EXISTS "$NS:state:worker:early")" = 1 ] ||
    fail "the lab did not start working within 10 s of Redis coming up"
kill -TERM "$EARLY"; wait "$EARLY" || fail "early lab exit $?"
kill "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null || true; REDIS_PID=

# Wrong password: 4.
start_redis
rcli CONFIG SET requirepass s3cret >/dev/null
expect_exit 4 auth "$LAB" --plugin trend --plugin-dir "$CGA_PLUGIN_DIR" \
    --redis-url "unix://:wrong@$T_DIR/redis.sock"
if grep -q "wrong" "$T_DIR/auth.log"; then fail "the password shows in the log"; fi

# Settings from the environment: LAB_PLUGINS comma-separated, plugins found by the default
# folder next to the executable (no --plugin-dir).
export REDIS_URL="unix://:s3cret@$T_DIR/redis.sock"
LAB_PLUGINS=trend,volatility LAB_ID=envlab LAB_METRICS_FILE=$T_DIR/metrics.prom \
    "$LAB" >"$T_DIR/envlab.log" 2>&1 &
LAB_PID=$!; PIDS+=("$LAB_PID")
hb() {
    [ "$(rcli -a s3cret --no-auth-warning EXISTS "$NS:state:worker:envlab")" = 1 ]
}
wait_for 10 hb || fail "no heartbeat from a lab configured by the environment"
grep -q "with plugins trend,volatility" "$T_DIR/envlab.log" || fail "LAB_PLUGINS not used"
wait_for 5 test -s "$T_DIR/metrics.prom" || fail "no metrics file"
grep -q '^cgalpha_lab_tasks_succeeded_total 0' "$T_DIR/metrics.prom" || fail "metrics file content"
grep -q 'cgalpha_lab_plugin_run_seconds_count{plugin="trend"}' "$T_DIR/metrics.prom" ||
    fail "no run-time histogram per plugin"
kill -TERM "$LAB_PID"
rc=0; wait "$LAB_PID" || rc=$?
[ "$rc" = 0 ] || fail "exit $rc after SIGTERM"
echo "30_lab_startup: ok"
