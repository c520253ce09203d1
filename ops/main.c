/* cgalpha-ops: producer, coordinator and operator tools. See docs/OPS.md. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cgalpha/app.h"
#include "cgalpha/buffer.h"
#include "cgalpha/config.h"
#include "cgalpha/err.h"
#include "bench.h"
#include "ops.h"

#ifndef CGA_VERSION_STRING
#define CGA_VERSION_STRING "unknown"
#endif

static const char *check_source(const char *v) {
    if (strcmp(v, "synthetic") == 0) return NULL;
    if ((strncmp(v, "csv:", 4) == 0 && v[4]) || (strncmp(v, "jsonl:", 6) == 0 && v[6]))
        return NULL;
    return "is not synthetic, csv:PATH or jsonl:PATH (PATH - reads stdin)";
}

static const char *check_labs(const char *v) {
    /* A list item may itself hold commas (split later): check each part. */
    size_t n = 0;
    for (const char *p = v;; p++) {
        if (*p == ',' || *p == '\0') {
            if (n == 0) return "has an empty lab name";
            if (n > 64) return "has a lab name longer than 64 characters";
            n = 0;
            if (!*p) break;
            continue;
        }
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return "has a character outside [A-Za-z0-9._-] in a lab name";
        n++;
    }
    return NULL;
}

static const char *check_queue(const char *v) {
    if (strcmp(v, "analysis") == 0 || strcmp(v, "reports") == 0) return NULL;
    return "is not analysis or reports";
}

#define BUFFER_PATH_SETTING(what)                                                               \
    {.env = "OPS_BUFFER_PATH", .flag = "buffer-path", .type = CGA_SET_STR,                     \
     .def = CGA_BUFFER_DEFAULT_PATH, .help = what}

/* Settings of the producing commands (run and enqueue). */
#define PRODUCE_SETTINGS                                                                        \
    {.env = "OPS_SOURCE", .flag = "source", .type = CGA_SET_STR, .def = "synthetic",           \
     .help = "input: synthetic, csv:PATH or jsonl:PATH (PATH - for stdin)",                    \
     .check = check_source},                                                                   \
    {.env = "OPS_SEED", .flag = "seed", .type = CGA_SET_INT, .def = "1",                       \
     .help = "synthetic: random seed (the same seed gives the same bars and task ids)",        \
     .min = 0, .max = INT64_MAX},                                                              \
    {.env = "OPS_SYMBOLS", .flag = "symbols", .type = CGA_SET_INT, .def = "4",                 \
     .help = "synthetic: number of symbols, named SYN0..SYN<n-1>", .min = 1, .max = 100000},   \
    {.env = "OPS_BARS", .flag = "bars", .type = CGA_SET_INT, .def = "2000",                    \
     .help = "synthetic: bars per symbol", .min = 1, .max = INT64_C(1000000000000)},           \
    {.env = "OPS_BAR_RATE", .flag = "bar-rate", .type = CGA_SET_INT, .def = "0",               \
     .help = "synthetic: bars per second per symbol (0: as fast as Redis takes them)",         \
     .min = 0, .max = 10000000},                                                               \
    {.env = "OPS_START_MS", .flag = "start-ms", .type = CGA_SET_INT, .def = "1704067200000",   \
     .help = "synthetic: time of the first bar, ms since the epoch (1-minute bars)",           \
     .min = 1, .max = INT64_C(4000000000000)},                                                 \
    {.env = "OPS_TRUTH_OUT", .flag = "truth-out", .type = CGA_SET_STR, .def = NULL,            \
     .help = "synthetic: write the true regime of every bar here (CSV symbol,t,regime)"},      \
    {.env = "OPS_WINDOW", .flag = "window", .type = CGA_SET_INT, .def = "32",                  \
     .help = "bars per task", .min = 2, .max = 10000},                                         \
    {.env = "OPS_STEP", .flag = "step", .type = CGA_SET_INT, .def = "16",                      \
     .help = "bars between the starts of two windows of a symbol", .min = 1, .max = 10000},    \
    {.env = "OPS_LABS", .flag = "labs", .type = CGA_SET_LIST,                                  \
     .def = "trend,volatility,momentum",                                                       \
     .help = "labs (plugins) to run on every window: one task per window and lab",             \
     .check = check_labs},                                                                     \
    {.env = "OPS_BATCH", .flag = "batch", .type = CGA_SET_INT, .def = "32",                    \
     .help = "tasks per stream entry", .min = 1, .max = 4096},                                 \
    {.env = "OPS_LINGER_US", .flag = "linger-us", .type = CGA_SET_INT, .def = "1000",          \
     .help = "send a partial entry this long after its first task", .min = 0, .max = 1000000}, \
    {.env = "OPS_MAX_INFLIGHT", .flag = "max-inflight", .type = CGA_SET_INT, .def = "64",      \
     .help = "entries sent and not yet answered, at most", .min = 1, .max = 100000},           \
    {.env = "OPS_MAX_INFLIGHT_BYTES", .flag = "max-inflight-bytes", .type = CGA_SET_INT,       \
     .def = "524288", .help = "and their bytes at most (one entry always goes)", .min = 1024,  \
     .max = INT64_C(1073741824)},                                                              \
    {.env = "OPS_GRACE_MS", .flag = "grace-ms", .type = CGA_SET_INT, .def = "10000",           \
     .help = "on SIGINT/SIGTERM: how long to wait for Redis to accept what was produced",      \
     .min = 0, .max = 3600000},                                                                \
    {.env = "OPS_MAX_TASK_BYTES", .flag = "max-task-bytes", .type = CGA_SET_INT,               \
     .def = "1048576", .help = "a task larger than this once encoded is refused (a bad row)",  \
     .min = 256, .max = 1048576},                                                              \
    BUFFER_PATH_SETTING("task buffer (SQLite, created with its folders): tasks wait there "    \
                        "while Redis does not take them; relative to the working directory"), \
    {.env = "OPS_BUFFER_MAX_BYTES", .flag = "buffer-max-bytes", .type = CGA_SET_INT,           \
     .def = "0", .help = "size limit of the task buffer file, 0 for none (past it: like a "    \
     "full disk)", .min = 0, .max = INT64_MAX}

static const cga_setting_t run_settings[] = {
    PRODUCE_SETTINGS,
    {.env = "OPS_EXIT_WHEN_DONE", .flag = "exit-when-done", .type = CGA_SET_BOOL, .def = "0",
     .help = "exit 0 once the source is exhausted and every task was accepted"},
    {.env = "OPS_LOCK_TTL_MS", .flag = "lock-ttl-ms", .type = CGA_SET_INT, .def = "10000",
     .help = "TTL of <ns>:lock:ops: a standby takes over at most this long after the active "
             "one dies", .min = 300, .max = 600000},
    {.env = "OPS_YELLOW_BACKLOG", .flag = "yellow-backlog", .type = CGA_SET_INT,
     .def = "50000", .help = "backlog (tasks) from which production is throttled", .min = 1,
     .max = INT64_MAX},
    {.env = "OPS_RED_BACKLOG", .flag = "red-backlog", .type = CGA_SET_INT, .def = "200000",
     .help = "backlog (tasks) from which production pauses", .min = 1, .max = INT64_MAX},
    {.env = "OPS_YELLOW_MEMORY_PCT", .flag = "yellow-memory-pct", .type = CGA_SET_INT,
     .def = "75", .help = "Redis memory (% of maxmemory) from which production is throttled",
     .min = 1, .max = 1000},
    {.env = "OPS_RED_MEMORY_PCT", .flag = "red-memory-pct", .type = CGA_SET_INT, .def = "90",
     .help = "Redis memory (% of maxmemory) from which production pauses", .min = 1,
     .max = 1000},
    {.env = "OPS_STATE_INTERVAL_MS", .flag = "state-interval-ms", .type = CGA_SET_INT,
     .def = "5000", .help = "how often the semaphore is computed and published (its TTL is 3x)",
     .min = 100, .max = 3600000},
    {.env = "OPS_TRIM_INTERVAL_MS", .flag = "trim-interval-ms", .type = CGA_SET_INT,
     .def = "10000", .help = "how often both queues are trimmed", .min = 100, .max = 3600000},
};

static const cga_setting_t enqueue_settings[] = {
    PRODUCE_SETTINGS,
    {.env = "OPS_PROGRESS", .flag = "progress", .type = CGA_SET_BOOL, .def = "1",
     .help = "show a progress line on stderr when it is a terminal"},
    {.env = "OPS_STATE_INTERVAL_MS", .flag = "state-interval-ms", .type = CGA_SET_INT,
     .def = "5000", .help = "how often the published semaphore is read", .min = 100,
     .max = 3600000},
};

static const cga_setting_t status_settings[] = {
    {.env = "OPS_JSON", .flag = "json", .type = CGA_SET_BOOL, .def = "0",
     .help = "print one JSON object instead of tables"},
    BUFFER_PATH_SETTING("task buffer whose depth is shown (read-only; nothing when the file "
                        "does not exist)"),
};

static const cga_setting_t recover_settings[] = {
    {.env = "OPS_DRY_RUN", .flag = "dry-run", .type = CGA_SET_BOOL, .def = "0",
     .help = "print what would be sent (per queue: entries, tasks, first and last task ids) "
             "and send nothing; needs no Redis"},
    {.env = "OPS_JSON", .flag = "json", .type = CGA_SET_BOOL, .def = "0",
     .help = "--dry-run: print one JSON object"},
    {.env = "OPS_PROGRESS", .flag = "progress", .type = CGA_SET_BOOL, .def = "1",
     .help = "show a progress bar on stderr when it is a terminal"},
    BUFFER_PATH_SETTING("task buffer to drain"),
    {.env = "OPS_MAX_INFLIGHT", .flag = "max-inflight", .type = CGA_SET_INT, .def = "64",
     .help = "entries sent and not yet answered, at most", .min = 1, .max = 100000},
};

static const cga_setting_t watch_settings[] = {
    {.env = "OPS_JSON", .flag = "json", .type = CGA_SET_BOOL, .def = "0",
     .help = "print one JSON object per change instead of a line"},
    {.env = "OPS_HISTORY", .flag = "history", .type = CGA_SET_BOOL, .def = "0",
     .help = "print the regime log (every change kept) before following the channel"},
    {.env = "OPS_COUNT", .flag = "count", .type = CGA_SET_INT, .def = "0", .min = 0,
     .max = INT64_MAX, .help = "exit 0 after printing this many changes (0: never)"},
    {.env = "OPS_FOR_MS", .flag = "for-ms", .type = CGA_SET_INT, .def = "0", .min = 0,
     .max = INT64_MAX, .help = "exit 0 after this many ms (0: never; SIGINT/SIGTERM always)"},
};

static const cga_setting_t dead_settings[] = {
    {.env = "OPS_DEAD_QUEUE", .flag = "queue", .type = CGA_SET_STR, .def = "analysis",
     .help = "queue whose dead letters to handle: analysis or reports", .check = check_queue},
    {.env = "OPS_DEAD_ID", .flag = "id", .type = CGA_SET_LIST, .def = NULL,
     .help = "dead-letter id (repeatable, or comma-separated); default: all"},
    {.env = "OPS_DEAD_LIMIT", .flag = "limit", .type = CGA_SET_INT, .def = "100",
     .help = "list: dead letters shown at most", .min = 1, .max = 1000000},
    {.env = "OPS_DEAD_PURGE_YES", .flag = "yes", .type = CGA_SET_BOOL, .def = "0",
     .help = "purge: confirm the deletion"},
    {.env = "OPS_JSON", .flag = "json", .type = CGA_SET_BOOL, .def = "0",
     .help = "list: one JSON object per line"},
};

static const cga_setting_t purge_settings[] = {
    {.env = "OPS_YES", .flag = "yes", .type = CGA_SET_BOOL, .def = "0",
     .help = "really delete (without it: count the keys, delete nothing, exit 2)"},
};

static const cga_setting_t accuracy_settings[] = {
    {.env = "OPS_TRUTH", .flag = "truth", .type = CGA_SET_STR, .def = NULL,
     .help = "truth file written by --truth-out (CSV symbol,t,regime); required"},
    {.env = "OPS_JSON", .flag = "json", .type = CGA_SET_BOOL, .def = "0",
     .help = "print one JSON object"},
};

static const cga_setting_t monitor_settings[] = {
    {.env = "OPS_INTERVAL_MS", .flag = "interval-ms", .type = CGA_SET_INT, .def = "1000",
     .help = "time between two refreshes (rates are over this interval)", .min = 100,
     .max = 3600000},
    {.env = "OPS_COUNT", .flag = "count", .type = CGA_SET_INT, .def = "0",
     .help = "print this many frames, then exit (0: until q, SIGINT or SIGTERM)", .min = 0,
     .max = INT64_MAX},
};

static const cga_setting_t export_settings[] = {
    {.env = "OPS_FORCE", .flag = "force", .type = CGA_SET_BOOL, .def = "0",
     .help = "overwrite FILE when it exists"},
};

static const cga_setting_t import_settings[] = {
    {.env = "OPS_REPLACE", .flag = "replace", .type = CGA_SET_BOOL, .def = "0",
     .help = "replace keys that already exist (without it: refuse, change nothing, exit 1)"},
};

#define EXIT_CODES                                                                              \
    "Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration, 3 Redis unreachable,\n" \
    "4 Redis rejected the credentials or the database, 5 bad input data (some rows refused).\n"

typedef struct command_s {
    const char *name;
    const char *summary;
    const char *usage;
    const char *details;
    const cga_setting_t *settings;
    size_t nsettings;
    int takes_positionals;
    const char *log_level; /* default CGALPHA_LOG_LEVEL of the command (tools are quieter) */
    int (*fn)(cga_app_t *a);
} command_t;

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const command_t commands[] = {
    {"run", "producer and coordinator (one active, others stand by)",
     OPS_PROG " run [OPTIONS] [--source synthetic|csv:PATH|jsonl:PATH]",
     "Holds <ns>:lock:ops (a second run waits as standby and takes over within the lock TTL),\n"
     "produces one task per window and lab from the source, publishes the resource semaphore\n"
     "every --state-interval-ms, throttles at yellow and pauses at red, trims both queues.\n"
     "While Redis does not take entries (down, OOM, ...) they go to the task buffer\n"
     "(--buffer-path, SQLite, opened at start: exit 1 if unusable), in order; it is drained by\n"
     "itself when Redis answers (leftovers of an earlier run first). Keeps running as\n"
     "coordinator after the source is exhausted, until SIGINT/SIGTERM (graceful: flush, wait up\n"
     "to --grace-ms for Redis, put what is left in the buffer, release the lock, exit 0; exit 1\n"
     "if tasks could be stored neither in Redis nor in the buffer), unless --exit-when-done.\n"
     "Exit 5 if rows were bad or tasks larger than --max-task-bytes.\n",
     run_settings, COUNT(run_settings), 0, "info", ops_cmd_run},
    {"enqueue", "produce everything from a source once, then exit",
     OPS_PROG " enqueue [OPTIONS] --source synthetic|csv:PATH|jsonl:PATH",
     "Produces every task of the source, waits until Redis accepted every entry and prints\n"
     "one summary line: enqueued <tasks> tasks in <entries> entries in <s> s (<rate> tasks/s).\n"
     "Entries Redis does not take wait in the task buffer (--buffer-path) until it does; if the\n"
     "buffer refuses them too (disk full), it stops, retries both for --grace-ms and exits 1\n"
     "with the count of tasks that could not be stored. Follows the published semaphore\n"
     "(throttles at yellow, pauses at red). Shows progress on stderr when it is a terminal.\n"
     "Exit 5 when some rows were bad or tasks too big (the others are enqueued).\n",
     enqueue_settings, COUNT(enqueue_settings), 0, "warn", ops_cmd_enqueue},
    {"status", "queues, labs, semaphore and regimes",
     OPS_PROG " status [--json] [--buffer-path PATH]",
     "For each queue: length, lag, pending, dead letters, consumers; the labs alive (worker\n"
     "heartbeats), the semaphore and the current regime of every symbol; and the depth of the\n"
     "local task buffer (entries, tasks, oldest age per queue), read-only from --buffer-path\n"
     "(default " CGA_BUFFER_DEFAULT_PATH " under the working directory;\n"
     "nothing when the file does not exist). When Redis is unreachable it prints the outage and\n"
     "the buffer, and exits 3 (4 when Redis rejects the credentials).\n",
     status_settings, COUNT(status_settings), 0, "warn", ops_cmd_status},
    {"dead", "list, re-queue or purge dead letters",
     OPS_PROG " dead list|requeue|purge [--queue analysis|reports] [--id ID ...] [--limit N] "
     "[--yes] [--json]",
     "list     prints id, source id, deliveries, reason and the first task id (or report's\n"
     "         task id) of up to --limit dead letters (--id: only those; --json: one object\n"
     "         per line)\n"
     "requeue  moves the dead letters (all, or --id ones) back to the queue; prints the count\n"
     "purge    deletes the dead letters (all, or --id ones); needs --yes; prints the count\n",
     dead_settings, COUNT(dead_settings), 1, "warn", ops_cmd_dead},
    {"accuracy", "compare the detected regimes with the synthetic truth",
     OPS_PROG " accuracy --truth FILE [--json]",
     "Reads the regime log (<ns>:state:regime_log) and the truth written by --truth-out, and\n"
     "prints per symbol and overall the fraction of bars whose detected regime (that of the\n"
     "last change with ws <= t) equals the truth, from each symbol's first detection on.\n",
     accuracy_settings, COUNT(accuracy_settings), 0, "warn", ops_cmd_accuracy},
    {"purge", "delete every key of the namespace (SCAN, never KEYS)",
     OPS_PROG " purge --yes",
     "Deletes every <ns>:* key (queues with their pending entries, dead letters, state, locks,\n"
     "the regime log) page by page with SCAN, and prints how many. Nothing outside the\n"
     "namespace is touched. Without --yes it counts them, deletes nothing and exits 2.\n"
     "Stop the namespace's processes first: a running ops or lab recreates its keys.\n",
     purge_settings, COUNT(purge_settings), 0, "warn", ops_cmd_purge},
    {"monitor", "live terminal view of queues, labs, semaphore and regimes (like top)",
     OPS_PROG " monitor [--interval-ms MS] [--count N]",
     "Redraws every --interval-ms: each queue's length, lag, pending, dead letters and\n"
     "entries/s in and out, the labs with their heartbeats and tasks/s, the semaphore, the\n"
     "current regime of every symbol and the latest regime changes. q or Ctrl-C quits. When\n"
     "stdout is not a terminal it prints plain frames one after the other (with --count, a\n"
     "fixed number of them). Exit 3 when Redis is unreachable at start, 4 when it rejects the\n"
     "credentials; later outages are shown in the view and it goes on.\n",
     monitor_settings, COUNT(monitor_settings), 0, "warn", ops_cmd_monitor},
    {"export", "back up the namespace to FILE (queues with pending entries, dead letters, state)",
     OPS_PROG " export FILE [--force]",
     "Writes every key of the namespace except its locks (found with SCAN) to FILE with Redis'\n"
     "DUMP, so a queue keeps its consumer groups, pending entries and delivery counts, and a key\n"
     "its TTL. Key names are stored without the namespace: import may restore into another.\n"
     "The file is written beside FILE and renamed when complete (FILE - writes to stdout).\n"
     "Refuses an existing FILE unless --force (exit 2). Prints the keys and bytes written.\n"
     "For a consistent copy stop the processes of the namespace first (docs/OPS.md).\n",
     export_settings, COUNT(export_settings), 1, "warn", ops_cmd_export},
    {"import", "restore a namespace from a FILE written by export",
     OPS_PROG " import FILE [--replace]",
     "Checks the whole FILE (- reads stdin) first, then restores every key into the configured\n"
     "namespace with RESTORE (TTLs as they were at export). Refuses, changing nothing, when a\n"
     "key to restore exists already, unless --replace (exit 1); when Redis refuses a key the\n"
     "keys restored so far are deleted again (without --replace) and it exits 1. Needs a Redis\n"
     "at least as new as the exporting one. Prints the keys restored. Exit 2 when FILE cannot\n"
     "be read, 5 when it is not a valid export.\n",
     import_settings, COUNT(import_settings), 1, "warn", ops_cmd_import},
    {"watch", "print regime changes as nexus publishes them",
     OPS_PROG " watch [--history] [--count N] [--for-ms MS] [--json]",
     "Subscribes to <ns>:channel:market_regime and prints each RegimeChange. Pub/sub forgets\n"
     "what nobody heard: when a change arrives with a gap in its symbol's sequence numbers, the\n"
     "missing ones are read from <ns>:state:regime_log and printed first, marked recovered.\n",
     watch_settings, COUNT(watch_settings), 0, "warn", ops_cmd_watch},
    {"recover", "send the task buffer to Redis by hand (or --dry-run: show it)",
     OPS_PROG " recover [--dry-run [--json]] [--buffer-path PATH]",
     "Sends the entries waiting in the task buffer (those of this namespace) to their queues,\n"
     "oldest first, deleting each row once Redis accepted it, and prints what it sent. Takes the\n"
     "buffer's drain lease: while a running ops (or another recover) drains the same file it\n"
     "refuses with one line and exit 1. --dry-run opens the file read-only, prints per queue the\n"
     "entries, tasks, first and last task ids and age, and sends nothing (no Redis needed).\n"
     "Exit 0 when the buffer is empty afterwards (or nothing to do), 1 when Redis refused an\n"
     "entry (the rest stays), 3/4 when Redis is unreachable or rejects the credentials.\n",
     recover_settings, COUNT(recover_settings), 0, "warn", ops_cmd_recover},
    {"bench", "end-to-end benchmark: starts labs and nexus, measures (docs/PERFORMANCE.md)",
     OPS_PROG " bench [--tasks N] [--batch B] [--labs K] [--plugin noop] [--rate R] [--runs 3]",
     "In an empty namespace (default cgalpha-bench) of the configured Redis: runs the bare\n"
     "transport (the same Redis commands, opaque payloads, no codec, no plugin), then starts\n"
     "--labs cgalpha-lab and one cgalpha-nexus, enqueues --tasks tasks and waits until nexus\n"
     "consumed every report. Prints throughput, latency percentiles, Redis commands and CPU\n"
     "per task, CPU and peak RSS of each process, then one JSON line (medians over --runs).\n"
     "Deletes every key of the namespace after each run. tests/bench/bench.sh runs it against\n"
     "a private redis-server.\n",
     ops_bench_settings, OPS_BENCH_NSETTINGS, 0, "warn", ops_cmd_bench},
};

static void print_commands(FILE *f) {
    fprintf(f, "%s %s - cgalpha producer, coordinator and operator tools\n\n", OPS_PROG,
            CGA_VERSION_STRING);
    fprintf(f, "Usage: %s <command> [OPTIONS]   (%s <command> --help for its options)\n\n",
            OPS_PROG, OPS_PROG);
    fprintf(f, "Commands:\n");
    for (size_t i = 0; i < COUNT(commands); i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nConfiguration: defaults < .env file < environment < flags (see docs/OPS.md).\n");
    fputs(EXIT_CODES, f);
}

void ops_error(const char *command, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s %s: ", OPS_PROG, command);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "%s: missing command (see %s --help)\n", OPS_PROG, OPS_PROG);
        return CGA_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        print_commands(stdout);
        return CGA_EXIT_OK;
    }
    if (strcmp(name, "--version") == 0) {
        printf("%s %s\n", OPS_PROG, CGA_VERSION_STRING);
        return CGA_EXIT_OK;
    }
    const command_t *cmd = NULL;
    for (size_t i = 0; i < COUNT(commands); i++)
        if (strcmp(commands[i].name, name) == 0) cmd = &commands[i];
    if (!cmd) {
        fprintf(stderr, "%s: unknown command '%s' (commands:", OPS_PROG, name);
        for (size_t i = 0; i < COUNT(commands); i++)
            fprintf(stderr, "%s %s", i ? "," : "", commands[i].name);
        fprintf(stderr, "; see %s --help)\n", OPS_PROG);
        return CGA_EXIT_USAGE;
    }
    /* The command's settings, then CGALPHA_LOG_LEVEL again with the command's default (a later
     * definition of a setting wins). */
    cga_setting_t table[64];
    size_t nset = 0;
    for (size_t i = 0; i < cmd->nsettings && nset < COUNT(table) - 1; i++)
        table[nset++] = cmd->settings[i];
    size_t ncommon = 0;
    const cga_setting_t *common = cga_config_common_settings(&ncommon);
    for (size_t i = 0; i < ncommon; i++) {
        if (strcmp(common[i].env, "CGALPHA_LOG_LEVEL") == 0) {
            table[nset] = common[i];
            table[nset++].def = cmd->log_level;
        }
    }
    cga_app_info_t info = {
        .name = OPS_PROG,
        .command = cmd->name,
        .summary = cmd->summary,
        .usage = cmd->usage,
        .details = cmd->details,
        .settings = table,
        .nsettings = nset,
        .serve_http = strcmp(cmd->name, "run") == 0, /* the service; the tools serve nothing */
    };
    cga_app_t *a = NULL;
    int code = CGA_EXIT_FAILURE;
    cga_app_create(&a, &code, &info, argc - 2, argv + 2);
    if (!a) return code;
    size_t npos = 0;
    char *const *pos = cga_config_positionals(cga_app_config(a), &npos);
    if (!cmd->takes_positionals && npos > 0) {
        ops_error(cmd->name, "unexpected argument '%s' (see %s %s --help)", pos[0], OPS_PROG,
                  cmd->name);
        cga_app_free(a);
        return CGA_EXIT_USAGE;
    }
    code = cmd->fn(a);
    cga_app_free(a);
    return code;
}
