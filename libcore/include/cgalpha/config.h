#ifndef CGALPHA_CONFIG_H
#define CGALPHA_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "cgalpha/export.h"

/* Configuration: defaults < .env file < environment < command-line flags.
 *
 * A process describes its settings in a table of cga_setting_t (the common Redis / log /
 * namespace ones come from cga_config_common_settings()). Every setting has an environment
 * name (REDIS_HOST) that is also its key in the .env file, and a long flag (--redis-host).
 * The .env file is --env-file PATH, else $CGALPHA_ENV_FILE, else ./.env when it exists; a named
 * file that does not exist is an error. Validation names the setting and the reason in one
 * line ("REDIS_PORT: 'abc' is not a number (from --redis-port)"); secret values are never
 * shown.
 *
 * .env syntax: KEY=VALUE lines, '#' comments, blank lines, an optional "export " prefix;
 * VALUE is raw (trailing blanks and a " #comment" dropped), 'single-quoted' (literal) or
 * "double-quoted" (\n \r \t \" \\ escapes); no variable expansion, no multi-line values.
 * Keys that name no setting are ignored (one .env may serve several processes); a malformed
 * line is an error naming file:line.
 *
 * Flags: --flag VALUE or --flag=VALUE; a bool flag is a bare --flag (true) or --no-flag
 * (false), or --flag=VALUE (it never takes the next argument); a list flag repeats (and may
 * hold a comma-separated list), and replaces the lower layers' list. "--" ends the flags; an
 * unknown flag is an error ("unknown option --foo (see --help)").
 * An empty value is a value: REDIS_PORT= is "not a number"; REDIS_URL= means no URL. */

struct cga_redis_opts_s;

typedef enum cga_setting_type {
    CGA_SET_STR = 0,
    CGA_SET_INT = 1,  /* decimal, within [min, max] */
    CGA_SET_BOOL = 2, /* 1/0, true/false, yes/no, on/off; a bare --flag means true */
    CGA_SET_LIST = 3, /* a repeatable flag; in env / .env a comma-separated list */
} cga_setting_type_t;

typedef struct cga_setting_s {
    const char *env;     /* "REDIS_HOST": environment and .env name, and the lookup key */
    const char *flag;    /* "redis-host" for --redis-host (NULL: no flag) */
    cga_setting_type_t type;
    const char *def;     /* default as text (NULL: unset) */
    const char *help;    /* one line for --help */
    int64_t min, max;    /* for CGA_SET_INT (both 0: no bounds) */
    int secret;          /* never printed; registered with the log redactor when set */
    /* Optional extra check of a set value (each item of a list): NULL when valid, else the
     * reason, completing "<NAME>: '<value>' <reason>", e.g. "is not a log level (debug, ...)".
     * Static storage. */
    const char *(*check)(const char *value);
} cga_setting_t;

typedef struct cga_config_s cga_config_t;

/* The settings every process has: REDIS_URL, REDIS_HOST, REDIS_PORT, REDIS_DB, REDIS_USERNAME,
 * REDIS_PASSWORD, REDIS_PASSWORD_FILE, REDIS_CONNECT_TIMEOUT_MS, REDIS_COMMAND_TIMEOUT_MS,
 * REDIS_BACKOFF_BASE_MS, REDIS_BACKOFF_CAP_MS, BREAKER_FAILURES, BREAKER_OPEN_MS,
 * CGALPHA_NAMESPACE, CGALPHA_LOG_LEVEL, CGALPHA_SINGLE_INSTANCE (bool). *n gets their count.
 * Static storage. REDIS_HOST starting with '/' is a unix socket path. */
CGA_EXTERN const cga_setting_t *cga_config_common_settings(size_t *n);

/* Creates a configuration for the union of the tables (each borrowed: keep them alive). A later
 * table may redefine a setting of an earlier one (same env name) to change its default or help;
 * the last definition wins. Returns CGA_EINVAL for a bad table (no env name, a flag used by two
 * settings, or a reserved flag: help, version, env-file). */
CGA_EXTERN int cga_config_create(cga_config_t **out, const cga_setting_t *const *tables,
                                 const size_t *counts, size_t ntables);
CGA_EXTERN void cga_config_free(cga_config_t *c);

/* Loads the layers: defaults, the .env file, the environment (envp, NULL for environ), then the
 * flags in argv[0..argc) (argv[0] is an argument, not the program name). Arguments that are not
 * flags are kept as positionals; "--" ends flags. --help and --version are not handled here.
 * Also checks REDIS_URL and reads REDIS_PASSWORD_FILE (when those settings are in the tables),
 * so that their errors surface here, and registers secret values with the log redactor.
 * May be called again (it starts over). Returns CGA_OK, or CGA_ECONFIG with one line in
 * err[errlen] (never a secret). */
CGA_EXTERN int cga_config_load(cga_config_t *c, int argc, char **argv, char **envp, char *err,
                               size_t errlen);

/* Values (after load). Unknown names abort: they are programming errors. Strings are owned by c. */
CGA_EXTERN const char *cga_config_str(const cga_config_t *c, const char *env); /* NULL if unset */
CGA_EXTERN int64_t cga_config_int(const cga_config_t *c, const char *env);
CGA_EXTERN int cga_config_bool(const cga_config_t *c, const char *env);
/* List values: *n items, owned by c. */
CGA_EXTERN const char *const *cga_config_list(const cga_config_t *c, const char *env, size_t *n);
/* Where the value came from: "default", ".env", "environment", "flag" or "unset". */
CGA_EXTERN const char *cga_config_source(const cga_config_t *c, const char *env);
/* The same in detail, as used in messages: "default", "/path/.env:12", "environment",
 * "--redis-port" (the flag as given), or "unset". Owned by c. */
CGA_EXTERN const char *cga_config_origin(const cga_config_t *c, const char *env);

/* Positional arguments (in order). */
CGA_EXTERN char *const *cga_config_positionals(const cga_config_t *c, size_t *n);

/* Prints the settings as "  --flag VALUE   ENV (default: x)" lines, each followed by its help
 * line (secrets show no value), and the --env-file line. */
CGA_EXTERN void cga_config_print_help(const cga_config_t *c, FILE *out);

/* Builds Redis connection options from the loaded settings: REDIS_URL wins over the separate
 * settings; the password comes from the URL, REDIS_PASSWORD or REDIS_PASSWORD_FILE (in that
 * order, the first non-empty one), the user name from the URL or REDIS_USERNAME. Calls
 * cga_redis_opts_init(o) first; client_name, max_queued and queue_timeout_ms keep their
 * defaults. Strings in *o point into c. The password is registered with the log redactor.
 * Returns CGA_OK, CGA_ETLS for rediss://, or CGA_ECONFIG, with one line in err. */
CGA_EXTERN int cga_config_redis_opts(const cga_config_t *c, struct cga_redis_opts_s *o, char *err,
                                     size_t errlen);

/* Parsed REDIS_URL: redis://[[user]:password@]host[:port][/db]  or
 * unix://[[user]:password@]/path/to/redis.sock[?db=N] (also redis+unix://). Strings owned by
 * the struct (free with cga_redis_url_clear). Pure; used by cga_config_redis_opts.
 * User and password are percent-decoded; a lone userinfo ("redis://secret@host") is the
 * password, as in redis-cli. IPv6 hosts in brackets ([::1]:6379; host is then "::1"). ?db=N is
 * accepted for redis:// too. Returns CGA_OK; CGA_ETLS for rediss://; CGA_ECONFIG for anything
 * else, with one line "REDIS_URL: ..." in err that never contains the password. On error *out
 * holds nothing to free. */
typedef struct cga_redis_url_s {
    char *host;      /* NULL for unix */
    int port;
    char *unix_path; /* NULL for TCP */
    char *username;  /* NULL when none */
    char *password;  /* NULL when none */
    int db;
} cga_redis_url_t;
CGA_EXTERN int cga_redis_url_parse(const char *url, cga_redis_url_t *out, char *err,
                                   size_t errlen);
CGA_EXTERN void cga_redis_url_clear(cga_redis_url_t *u);

#endif
