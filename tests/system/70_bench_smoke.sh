#!/usr/bin/env bash
# The benchmark works (it asserts nothing about speed): tests/bench/bench.sh at a small N, batched
# with two runs (medians), then one task per entry with two labs, the trend plugin and a steady
# rate. Each must exit 0 and end with one line of valid JSON holding every figure, with every
# report consumed and no dead letters.
set -euo pipefail
: "${CGA_BIN_DIR:?run through ctest (CGA_BIN_DIR unset)}"
: "${CGA_SOURCE_DIR:?run through ctest (CGA_SOURCE_DIR unset)}"
T=$(mktemp -d /tmp/cga-sys-bench-XXXXXX)
trap 'rm -rf "$T"' EXIT

FIELDS=(bench version runs runs_ok tasks batch labs concurrency lab_claim nexus_claim plugin bars
    symbols task_bytes report_bytes rate linger_us max_inflight observe bare pipeline nproc cpu
    redis_version e2e_tasks_per_s enqueue_tasks_per_s duration_s lat_p50_ms lat_p99_ms
    lat_p999_ms lat_max_ms lab_lat_p50_ms lab_lat_p99_ms lab_lat_p999_ms nexus_lat_p50_ms nexus_lat_p99_ms nexus_lat_p999_ms
    redis_cmds_per_task redis_cpu_us_per_task redis_cpu_us_per_task_pipeline
    producer_cpu_us_per_task lab_cpu_us_per_task nexus_cpu_us_per_task observer_cpu_us_per_task
    cores_busy rss_bench_peak_kib rss_lab_idle_kib rss_lab_peak_kib rss_nexus_idle_kib
    rss_nexus_peak_kib rss_redis_peak_kib reports_seen report_errors dead_letters nexus_reports
    bare_e2e_tasks_per_s bare_enqueue_tasks_per_s bare_lat_p50_ms bare_lat_p99_ms
    bare_lat_p999_ms bare_lat_max_ms bare_redis_cmds_per_task bare_redis_cpu_us_per_task
    ratio_e2e ratio_redis_cpu rss_lab_10pct_kib rss_lab_50pct_kib rss_lab_end_kib trimmed_entries)
# Figures that must be measured (not null) in every case.
MEASURED=(e2e_tasks_per_s enqueue_tasks_per_s lat_p50_ms lat_p99_ms lat_p999_ms lat_max_ms lab_lat_p99_ms
    redis_cmds_per_task redis_cpu_us_per_task rss_lab_idle_kib rss_lab_peak_kib
    rss_nexus_peak_kib bare_e2e_tasks_per_s bare_lat_p99_ms ratio_e2e rss_lab_10pct_kib
    rss_lab_50pct_kib rss_lab_end_kib)

fail() { echo "FAIL: $*" >&2; exit 1; }

check() { # check NAME TASKS OUTFILE
    local name=$1 tasks=$2 out=$3 json
    json=$(tail -n 1 "$out")
    [ "${json:0:1}" = "{" ] || fail "$name: the last line is not JSON: $json"
    if command -v python3 >/dev/null 2>&1; then
        python3 - "$json" "$tasks" "${FIELDS[*]}" "${MEASURED[*]}" <<'EOF' || fail "$name: bad JSON"
import json, sys
d = json.loads(sys.argv[1])
tasks = int(sys.argv[2])
missing = [f for f in sys.argv[3].split() if f not in d]
assert not missing, "missing fields: %s" % missing
nulls = [f for f in sys.argv[4].split() if d[f] is None]
assert not nulls, "not measured: %s" % nulls
assert d["tasks"] == tasks, d["tasks"]
assert d["runs_ok"] == d["runs"], (d["runs_ok"], d["runs"])
assert d["reports_seen"] == tasks, ("reports seen", d["reports_seen"])
assert d["nexus_reports"] in (None, tasks), ("nexus folded", d["nexus_reports"])
assert d["dead_letters"] == 0 and d["report_errors"] == 0, (d["dead_letters"], d["report_errors"])
assert d["e2e_tasks_per_s"] > 0 and d["lat_p50_ms"] <= d["lat_max_ms"]
EOF
    else # no python: every field name must be there
        local f
        for f in "${FIELDS[@]}"; do
            grep -q "\"$f\":" <<<"$json" || fail "$name: field $f missing"
        done
        grep -q "\"dead_letters\":0[,}]" <<<"$json" || fail "$name: dead letters"
    fi
    echo "ok: $name"
}

BENCH=$CGA_SOURCE_DIR/tests/bench/bench.sh

"$BENCH" --bin-dir "$CGA_BIN_DIR" -- --tasks 3000 --runs 2 --timeout-s 120 >"$T/batched.out" 2>&1 ||
    { cat "$T/batched.out" >&2; fail "batched run exited $?"; }
grep -q "^-- median of 2 runs" "$T/batched.out" || { cat "$T/batched.out" >&2; fail "no median"; }
check batched 3000 "$T/batched.out"

"$BENCH" --bin-dir "$CGA_BIN_DIR" -- --tasks 600 --batch 1 --labs 2 --plugin trend --rate 1500 \
    --timeout-s 120 >"$T/steady.out" 2>&1 || { cat "$T/steady.out" >&2; fail "steady run exited"; }
check "one per entry, 2 labs, trend, 1500 tasks/s" 600 "$T/steady.out"

# Trimming as the coordinator does (no observer: it is no consumer group), the lab's RSS sampled
# over the run: every report still reaches nexus, and entries were trimmed.
"$BENCH" --bin-dir "$CGA_BIN_DIR" -- --tasks 20000 --batch 8 --no-observe --no-bare --trim-ms 100 \
    --timeout-s 120 >"$T/trim.out" 2>&1 || { cat "$T/trim.out" >&2; fail "trim run exited"; }
# once drained, the last trim leaves nothing of either queue: at least the 2500 task entries
trimmed=$(sed -n 's/^  trimmed \([0-9]*\) entries (XTRIM MINID every 100 ms.*/\1/p' "$T/trim.out")
[ -n "$trimmed" ] && [ "$trimmed" -ge 2500 ] ||
    { cat "$T/trim.out" >&2; fail "trim run: trimmed '${trimmed}' entries, want >= 2500"; }
json=$(tail -n 1 "$T/trim.out")
grep -q '"nexus_reports":20000[,}]' <<<"$json" || fail "trim run: nexus did not fold every report: $json"
grep -q '"dead_letters":0[,}]' <<<"$json" || fail "trim run: dead letters"
grep -Eq '"rss_lab_end_kib":[1-9]' <<<"$json" || fail "trim run: lab RSS not sampled"
echo "ok: trimmed run"
