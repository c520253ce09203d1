#ifndef CGA_OPS_OPS_H
#define CGA_OPS_OPS_H

/* cgalpha-ops: the commands (each runs on a created app and returns the exit code). */

#include <stdint.h>
#include <stdio.h>
#include "cgalpha/app.h"

#define OPS_PROG "cgalpha-ops"

int ops_cmd_run(cga_app_t *a);
int ops_cmd_enqueue(cga_app_t *a);
int ops_cmd_status(cga_app_t *a);
int ops_cmd_dead(cga_app_t *a);
int ops_cmd_accuracy(cga_app_t *a);
int ops_cmd_watch(cga_app_t *a);
int ops_cmd_purge(cga_app_t *a);
int ops_cmd_recover(cga_app_t *a);
int ops_cmd_monitor(cga_app_t *a);
int ops_cmd_export(cga_app_t *a);
int ops_cmd_import(cga_app_t *a);

/* Waits for Redis (up to REDIS_CONNECT_TIMEOUT_MS). Returns -1 when connected, else the exit
 * code (3 unreachable, 4 rejected), after printing one line to stderr. */
int ops_connect(cga_app_t *a, const char *command);

struct cga_buffer_s;
/* Opens the task buffer at OPS_BUFFER_PATH read-write (max_bytes: its size limit, 0 none),
 * creating it and its folders. Returns -1 with owned *out, or the exit code (1) after printing
 * one line. */
int ops_open_buffer(const cga_config_t *cfg, const char *command, uint64_t max_bytes,
                    struct cga_buffer_s **out);

/* Prints "cgalpha-ops <command>: <message>" to stderr. */
void ops_error(const char *command, const char *fmt, ...) CGA_PRINTF(2, 3);

/* "12.3 MiB" (KiB, MiB or GiB, one decimal). */
void ops_fmt_bytes(char *out, size_t n, uint64_t b);
/* ms since the epoch as UTC ISO 8601, to the minute or (seconds) to the second. */
void ops_fmt_utc(char *out, size_t n, int64_t ms, int seconds);

/* JSON output helpers: a string with its quotes and escapes. */
void ops_json_str(FILE *f, const char *s, size_t n);

#endif
