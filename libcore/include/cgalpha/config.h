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
 * The .env file is $CGALPHA_ENV_FILE or --env-file PATH, else ./.env when it exists; a named
 * file that does not exist is an error. Validation names the setting and the reason in one
 * line ("REDIS_PORT: 'abc' is not a number (from --redis-port)"). */

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
} cga_setting_t;

typedef struct cga_config_s cga_config_t;

/* The settings every process has: REDIS_URL, REDIS_HOST, REDIS_PORT, REDIS_DB, REDIS_USERNAME,
 * REDIS_PASSWORD, REDIS_PASSWORD_FILE, REDIS_CONNECT_TIMEOUT_MS, REDIS_COMMAND_TIMEOUT_MS,
 * REDIS_BACKOFF_BASE_MS, REDIS_BACKOFF_CAP_MS, BREAKER_FAILURES, BREAKER_OPEN_MS,
 * CGALPHA_NAMESPACE, CGALPHA_LOG_LEVEL. *n gets their count. Static storage. */
CGA_EXTERN const cga_setting_t *cga_config_common_settings(size_t *n);

/* Creates a configuration for the union of the tables (each borrowed: keep them alive). */
CGA_EXTERN int cga_config_create(cga_config_t **out, const cga_setting_t *const *tables,
                                 const size_t *counts, size_t ntables);
CGA_EXTERN void cga_config_free(cga_config_t *c);

/* Loads the layers: defaults, the .env file, the environment (envp, NULL for environ), then the
 * flags in argv[0..argc) (argv[0] is an argument, not the program name). Arguments that are not
 * flags are kept as positionals; "--" ends flags. --help and --version are not handled here.
 * Returns CGA_OK, or CGA_ECONFIG with one line in err[errlen]. */
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

/* Positional arguments (in order). */
CGA_EXTERN char *const *cga_config_positionals(const cga_config_t *c, size_t *n);

/* Prints the settings as "  --flag VALUE   ENV (default: x)  help" lines. */
CGA_EXTERN void cga_config_print_help(const cga_config_t *c, FILE *out);

/* Builds Redis connection options from the loaded settings: REDIS_URL wins over the separate
 * settings; the password comes from the URL, REDIS_PASSWORD or REDIS_PASSWORD_FILE (in that
 * order). Strings in *o point into c. The password is registered with the log redactor.
 * Returns CGA_OK, CGA_ETLS for rediss://, or CGA_ECONFIG, with one line in err. */
CGA_EXTERN int cga_config_redis_opts(const cga_config_t *c, struct cga_redis_opts_s *o, char *err,
                                     size_t errlen);

/* Parsed REDIS_URL: redis://[[user]:password@]host[:port][/db]  or
 * unix://[[user]:password@]/path/to/redis.sock[?db=N] (also redis+unix://). Strings owned by
 * the struct (free with cga_redis_url_clear). Pure; used by cga_config_redis_opts. */
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
