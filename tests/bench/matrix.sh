#!/usr/bin/env bash
# The measurements of docs/PERFORMANCE.md, one after the other (about 35-45 minutes on 2 cores):
# each case runs tests/bench/bench.sh (a private redis-server, `cgalpha-ops bench`) and appends
# "<case>\t<JSON line>" to OUT (default /tmp/cga-bench-matrix.tsv); the full output of each case
# goes to OUT.d/<case>.out. At the end, with python3, prints a Markdown table of the medians.
#
#   tests/bench/matrix.sh [--bin-dir DIR] [--out FILE] [--quick] [--only CASE]
#
# --quick: N and runs divided (a rehearsal, not figures to publish). --only: one case by name.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN_ARGS=()
OUT=/tmp/cga-bench-matrix.tsv
QUICK=0
ONLY=""
while [ $# -gt 0 ]; do
    case $1 in
    --bin-dir) BIN_ARGS=(--bin-dir "$2"); shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --only) ONLY=$2; shift 2 ;;
    *) echo "matrix.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
mkdir -p "$OUT.d"

# name | bench options (N = 1,000,000 and 3 runs unless stated)
CASES=(
    "batched-noop-1lab|--tasks 1000000 --runs 3"
    "batched-noop-1lab-noobs|--tasks 1000000 --runs 3 --no-observe"
    "batched-noop-1lab-1bar|--tasks 1000000 --runs 3 --bars 1"
    "batched-noop-2labs|--tasks 1000000 --runs 3 --labs 2"
    "batched-noop-4labs|--tasks 1000000 --runs 3 --labs 4"
    "batched-noop-1lab-batch8|--tasks 1000000 --runs 3 --batch 8"
    "batched-noop-1lab-batch128|--tasks 1000000 --runs 3 --batch 128"
    "batched-noop-1lab-8bars|--tasks 1000000 --runs 3 --bars 8"
    "batched-noop-1lab-128bars|--tasks 1000000 --runs 3 --bars 128"
    "batched-trend-1lab|--tasks 1000000 --runs 3 --plugin trend"
    "batched-trend-2labs|--tasks 1000000 --runs 3 --plugin trend --labs 2"
    "single-noop-1lab|--tasks 1000000 --runs 3 --batch 1"
    "single-noop-1lab-1bar|--tasks 1000000 --runs 1 --batch 1 --bars 1"
    "single-noop-2labs|--tasks 1000000 --runs 1 --batch 1 --labs 2"
    "single-trend-1lab|--tasks 1000000 --runs 1 --batch 1 --plugin trend"
    "steady-1k|--rate 1000 --tasks 20000 --runs 3"
    "steady-1k-linger0|--rate 1000 --tasks 20000 --runs 3 --linger-us 0"
    "steady-10k|--rate 10000 --tasks 200000 --runs 3"
    "steady-10k-linger0|--rate 10000 --tasks 200000 --runs 3 --linger-us 0"
    "long-10M-trimmed|--tasks 10000000 --runs 1 --no-observe --no-bare --trim-ms 2000 --timeout-s 1800"
)

for c in "${CASES[@]}"; do
    name=${c%%|*}
    args=${c#*|}
    [ -n "$ONLY" ] && [ "$name" != "$ONLY" ] && continue
    if [ $QUICK = 1 ]; then
        n=$(grep -oE -- '--tasks [0-9]+' <<<"$args" | awk '{print $2}')
        args=$(sed -E "s/--tasks [0-9]+/--tasks $((n / 10))/; s/--runs [0-9]+/--runs 1/" <<<"$args")
    fi
    echo "== $name: $args" >&2
    # shellcheck disable=SC2086
    if "$ROOT/tests/bench/bench.sh" "${BIN_ARGS[@]}" -- $args >"$OUT.d/$name.out" 2>&1 &&
        [ "$(tail -c 2 "$OUT.d/$name.out" | head -c 1)" = "}" ]; then
        printf '%s\t%s\n' "$name" "$(tail -n 1 "$OUT.d/$name.out")" >>"$OUT"
        grep -E '^(bare transport|pipeline)' "$OUT.d/$name.out" | tail -n 3 >&2
    else
        echo "   FAILED (see $OUT.d/$name.out)" >&2
    fi
    sleep 5 # let the machine settle between cases
done

command -v python3 >/dev/null || exit 0
python3 - "$OUT" <<'EOF'
import json, sys
rows = [l.rstrip("\n").split("\t", 1) for l in open(sys.argv[1]) if "\t" in l]
def f(v, d=1):
    return "-" if v is None else f"{v:,.{d}f}"
print("| case | runs | e2e tasks/s | bare tasks/s | full/bare | enqueue tasks/s | p50 ms | p99 ms "
      "| p99.9 ms | max ms | Redis cmds/task | Redis CPU us/task | lab RSS idle/peak KiB "
      "| lab RSS at 10% / 50% / end KiB |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for name, js in rows:
    d = json.loads(js)
    print(f"| {name} | {d['runs_ok']} | {f(d['e2e_tasks_per_s'],0)} | {f(d['bare_e2e_tasks_per_s'],0)} "
          f"| {f(d['ratio_e2e'],2)} | {f(d['enqueue_tasks_per_s'],0)} | {f(d['lat_p50_ms'],3)} "
          f"| {f(d['lat_p99_ms'],3)} | {f(d['lat_p999_ms'],3)} | {f(d['lat_max_ms'],3)} "
          f"| {f(d['redis_cmds_per_task'],3)} | {f(d['redis_cpu_us_per_task_pipeline'],2)} "
          f"| {f(d['rss_lab_idle_kib'],0)} / {f(d['rss_lab_peak_kib'],0)} "
          f"| {f(d.get('rss_lab_10pct_kib'),0)} / {f(d.get('rss_lab_50pct_kib'),0)} / "
          f"{f(d.get('rss_lab_end_kib'),0)} |")
EOF
