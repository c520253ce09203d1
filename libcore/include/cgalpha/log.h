#ifndef CGALPHA_LOG_H
#define CGALPHA_LOG_H

#include <stddef.h>
#include "cgalpha/export.h"

/* One line per event on stderr:
 *   2026-11-22T10:00:00.123Z WARN  lab[4242] queue: claim failed: timed out
 * Registered secrets and the password part of any redis:// URL are replaced by "***" in
 * every line, whatever the caller formatted. Safe to call from any thread (one write(2)). */
enum cga_log_level {
    CGA_LOG_DEBUG = 0,
    CGA_LOG_INFO = 1,
    CGA_LOG_WARN = 2,
    CGA_LOG_ERROR = 3,
    CGA_LOG_OFF = 4,
};

CGA_EXTERN extern int cga_log_level_current;

/* A .c file may #define CGA_LOG_COMPONENT "name" before including this header. */
#ifndef CGA_LOG_COMPONENT
#define CGA_LOG_COMPONENT NULL
#endif

/* Logs when level is enabled; formats nothing otherwise. rc != 0 appends cga_strerror(rc). */
#define CGA_LOG(level, rc, ...)                                                 \
    do {                                                                        \
        if ((level) >= cga_log_level_current)                                   \
            cga_log_write((level), CGA_LOG_COMPONENT, (rc), __VA_ARGS__);       \
    } while (0)

CGA_EXTERN void cga_log_write(int level, const char *component, int rc, const char *fmt, ...)
    CGA_PRINTF(4, 5);

/* Sets the minimum level. */
CGA_EXTERN void cga_log_set_level(int level);

/* Parses "debug", "info", "warn"/"warning", "error", "off" (any case) into *out.
 * Returns CGA_OK or CGA_EINVAL. */
CGA_EXTERN int cga_log_level_parse(const char *s, int *out);

/* Name shown before [pid] (default "cgalpha"). Copies name. */
CGA_EXTERN void cga_log_set_process(const char *name);

/* Adds a secret to mask in every later line (copied; empty strings ignored; up to 8). */
CGA_EXTERN void cga_log_add_secret(const char *secret);

/* Forgets all secrets (tests). */
CGA_EXTERN void cga_log_clear_secrets(void);

/* Writes into out (size n, always NUL-terminated) a copy of in with registered secrets and
 * URL passwords ("scheme://user:PASS@") replaced by "***". Returns the length written. */
CGA_EXTERN size_t cga_log_redact(const char *in, char *out, size_t n);

#endif
