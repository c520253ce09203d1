#include "cgalpha/config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cgalpha/alloc.h"
#include "cgalpha/err.h"
#include "cgalpha/keys.h"
#include "cgalpha/log.h"
#include "cgalpha/redis.h"

extern char **environ;

#define ENV_FILE_VAR "CGALPHA_ENV_FILE"
#define DEFAULT_ENV_FILE ".env"
#define MSG_MAX 512
#define SHOWN_MAX 60 /* characters of a bad value quoted in a message */
/* Messages say "see --help" for the full forms: "user:password@" in a message would be masked by
 * the log redactor. */
#define NOT_A_URL "not a URL (expected redis://host[:port][/db] or unix:///path/to/redis.sock)"
#define URL_FORMS \
    "redis://[[user]:password@]host[:port][/db] or unix://[[user]:password@]/path.sock[?db=N]"

/* ---- common settings ------------------------------------------------------------------- */

static const char *check_nonempty(const char *v) {
    return *v ? NULL : "is empty";
}

static const char *check_namespace(const char *v) {
    return cga_namespace_validate(v) == CGA_OK
               ? NULL
               : "is not a valid namespace (1 to 64 characters of A-Z a-z 0-9 _ . -)";
}

static const char *check_log_level(const char *v) {
    int level;
    return cga_log_level_parse(v, &level) == CGA_OK
               ? NULL
               : "is not a log level (debug, info, warn, error or off)";
}

#define MS_MAX 3600000 /* one hour */

static const cga_setting_t common_settings[] = {
    {"REDIS_URL", "redis-url", CGA_SET_STR, NULL,
     "Redis URL, " URL_FORMS "; wins over REDIS_HOST, REDIS_PORT and REDIS_DB", 0, 0, 1, NULL},
    {"REDIS_HOST", "redis-host", CGA_SET_STR, "127.0.0.1",
     "Redis host name or address (a path starting with / is a unix socket)", 0, 0, 0,
     check_nonempty},
    {"REDIS_PORT", "redis-port", CGA_SET_INT, "6379", "Redis TCP port", 1, 65535, 0, NULL},
    {"REDIS_DB", "redis-db", CGA_SET_INT, "0", "Redis database index (SELECT)", 0, INT32_MAX, 0,
     NULL},
    {"REDIS_USERNAME", "redis-username", CGA_SET_STR, NULL,
     "Redis ACL user name (unset: the default user)", 0, 0, 0, NULL},
    {"REDIS_PASSWORD", "redis-password", CGA_SET_STR, NULL,
     "Redis password (prefer REDIS_PASSWORD_FILE: flags show in ps)", 0, 0, 1, NULL},
    {"REDIS_PASSWORD_FILE", "redis-password-file", CGA_SET_STR, NULL,
     "file whose first line is the Redis password", 0, 0, 0, NULL},
    {"REDIS_CONNECT_TIMEOUT_MS", "redis-connect-timeout-ms", CGA_SET_INT, "2000",
     "Redis connect timeout in ms", 1, MS_MAX, 0, NULL},
    {"REDIS_COMMAND_TIMEOUT_MS", "redis-command-timeout-ms", CGA_SET_INT, "5000",
     "Redis command timeout in ms", 1, MS_MAX, 0, NULL},
    {"REDIS_BACKOFF_BASE_MS", "redis-backoff-base-ms", CGA_SET_INT, "100",
     "first reconnect delay in ms (doubles, with jitter)", 1, MS_MAX, 0, NULL},
    {"REDIS_BACKOFF_CAP_MS", "redis-backoff-cap-ms", CGA_SET_INT, "5000",
     "longest reconnect delay in ms", 1, MS_MAX, 0, NULL},
    {"BREAKER_FAILURES", "breaker-failures", CGA_SET_INT, "5",
     "consecutive Redis failures that open the circuit breaker", 1, 1000000, 0, NULL},
    {"BREAKER_OPEN_MS", "breaker-open-ms", CGA_SET_INT, "30000",
     "ms the breaker stays open before a trial call", 1, 86400000, 0, NULL},
    {"CGALPHA_NAMESPACE", "namespace", CGA_SET_STR, CGA_NAMESPACE_DEFAULT,
     "prefix of every Redis key", 0, 0, 0, check_namespace},
    {"CGALPHA_LOG_LEVEL", "log-level", CGA_SET_STR, "info", "debug, info, warn, error or off", 0,
     0, 0, check_log_level},
    {"CGALPHA_SINGLE_INSTANCE", "single-instance", CGA_SET_BOOL, "false",
     "a single process plays its role: when Redis is unreachable, locks count as held (no "
     "standby can exist); default false: locks need Redis", 0, 0, 0, NULL},
};

const cga_setting_t *cga_config_common_settings(size_t *n) {
    *n = sizeof common_settings / sizeof common_settings[0];
    return common_settings;
}

/* ---- the configuration ----------------------------------------------------------------- */

enum src { SRC_UNSET = 0, SRC_DEFAULT, SRC_DOTENV, SRC_ENV, SRC_FLAG };
static const char *const src_names[] = {"unset", "default", ".env", "environment", "flag"};

typedef struct value_s {
    const cga_setting_t *s;
    enum src src;
    char *where;     /* "default", "<path>:<line>", "environment", "--flag"; NULL when unset */
    char *raw;       /* text of the value (not for lists); NULL when unset */
    char **items;    /* lists */
    size_t nitems, capitems;
    int flag_list;   /* lists: a flag has replaced the lower layers */
    int64_t i;
    int b;
} value_t;

struct cga_config_s {
    value_t *v;
    size_t n;
    char **pos;
    size_t npos;
    cga_redis_url_t url; /* REDIS_URL parsed at load */
    int has_url;
    char *password_file; /* first line of REDIS_PASSWORD_FILE */
};

int cga_config_create(cga_config_t **out, const cga_setting_t *const *tables,
                      const size_t *counts, size_t ntables) {
    *out = NULL;
    cga_config_t *c = cga_calloc(1, sizeof *c);
    size_t total = 0;
    for (size_t t = 0; t < ntables; t++) total += counts[t];
    c->v = cga_calloc(total, sizeof *c->v);
    for (size_t t = 0; t < ntables; t++) {
        for (size_t k = 0; k < counts[t]; k++) {
            const cga_setting_t *s = &tables[t][k];
            if (!s->env || !*s->env || s->type < CGA_SET_STR || s->type > CGA_SET_LIST) goto fail;
            if (s->flag && (!*s->flag || strcmp(s->flag, "help") == 0 ||
                            strcmp(s->flag, "version") == 0 || strcmp(s->flag, "env-file") == 0))
                goto fail;
            size_t j = 0;
            while (j < c->n && strcmp(c->v[j].s->env, s->env) != 0) j++;
            c->v[j].s = s; /* a redefinition replaces the earlier one, in place */
            if (j == c->n) c->n++;
        }
    }
    for (size_t a = 0; a < c->n; a++)
        for (size_t b = a + 1; b < c->n; b++)
            if (c->v[a].s->flag && c->v[b].s->flag && strcmp(c->v[a].s->flag, c->v[b].s->flag) == 0)
                goto fail;
    *out = c;
    return CGA_OK;
fail:
    free(c->v);
    free(c);
    return CGA_EINVAL;
}

static void clear_items(value_t *v) {
    for (size_t i = 0; i < v->nitems; i++) free(v->items[i]);
    v->nitems = 0;
}

static void reset(cga_config_t *c) {
    for (size_t k = 0; k < c->n; k++) {
        value_t *v = &c->v[k];
        free(v->where);
        free(v->raw);
        clear_items(v);
        free(v->items);
        const cga_setting_t *s = v->s;
        memset(v, 0, sizeof *v);
        v->s = s;
    }
    for (size_t i = 0; i < c->npos; i++) free(c->pos[i]);
    free(c->pos);
    c->pos = NULL;
    c->npos = 0;
    cga_redis_url_clear(&c->url);
    c->has_url = 0;
    free(c->password_file);
    c->password_file = NULL;
}

void cga_config_free(cga_config_t *c) {
    if (!c) return;
    reset(c);
    free(c->v);
    free(c);
}

static value_t *find(const cga_config_t *c, const char *env) {
    for (size_t k = 0; k < c->n; k++)
        if (strcmp(c->v[k].s->env, env) == 0) return &c->v[k];
    return NULL;
}

static const value_t *must_find(const cga_config_t *c, const char *env, int type) {
    const value_t *v = find(c, env);
    if (!v) {
        fprintf(stderr, "cgalpha: BUG: no setting named %s\n", env);
        abort();
    }
    if (type >= 0 && (int)v->s->type != type) {
        fprintf(stderr, "cgalpha: BUG: setting %s read with the wrong type\n", env);
        abort();
    }
    return v;
}

static value_t *find_flag(const cga_config_t *c, const char *name, size_t len) {
    for (size_t k = 0; k < c->n; k++) {
        const char *f = c->v[k].s->flag;
        if (f && strlen(f) == len && strncmp(f, name, len) == 0) return &c->v[k];
    }
    return NULL;
}

/* ---- messages -------------------------------------------------------------------------- */

/* Formats one line into err (redacted: no registered secret, no URL password). */
static int failf(char *err, size_t errlen, int rc, const char *fmt, ...) CGA_PRINTF(4, 5);
static int failf(char *err, size_t errlen, int rc, const char *fmt, ...) {
    if (!err || errlen == 0) return rc;
    char msg[MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    cga_log_redact(msg, err, errlen);
    return rc;
}

/* "'value'" for messages, shortened and with control characters replaced; "value" for
 * secrets. */
static void show_value(const cga_setting_t *s, const char *text, char *out, size_t n) {
    if (s->secret) {
        snprintf(out, n, "the value");
        return;
    }
    char buf[SHOWN_MAX + 4];
    size_t i = 0;
    for (; text[i] && i < SHOWN_MAX; i++)
        buf[i] = isprint((unsigned char)text[i]) ? text[i] : '?';
    buf[i] = '\0';
    snprintf(out, n, "'%s%s'", buf, text[i] ? "..." : "");
}

/* ---- setting values -------------------------------------------------------------------- */

static void append_item(value_t *v, const char *p, size_t len) {
    while (len && isspace((unsigned char)*p)) p++, len--;
    while (len && isspace((unsigned char)p[len - 1])) len--;
    if (!len) return;
    cga_grow((void **)&v->items, &v->capitems, v->nitems + 1, sizeof *v->items);
    v->items[v->nitems++] = cga_strndup(p, len);
}

static void set_value(value_t *v, const char *text, enum src src, const char *where) {
    if (v->s->type == CGA_SET_LIST) {
        if (src != SRC_FLAG || !v->flag_list) clear_items(v);
        if (src == SRC_FLAG) v->flag_list = 1;
        for (const char *p = text;;) {
            size_t len = strcspn(p, ",");
            append_item(v, p, len);
            if (!p[len]) break;
            p += len + 1;
        }
    } else {
        free(v->raw);
        v->raw = cga_strdup(text);
    }
    v->src = src;
    free(v->where);
    v->where = cga_strdup(where);
}

static int parse_int(const char *s, int64_t *out, int *overflow) {
    *overflow = 0;
    if (!*s || isspace((unsigned char)*s)) return -1;
    errno = 0;
    char *end;
    long long x = strtoll(s, &end, 10);
    if (*end) return -1;
    if (errno == ERANGE) {
        *overflow = 1;
        return -1;
    }
    *out = x;
    return 0;
}

static int parse_bool(const char *s, int *out) {
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) return *out = 1, 0;
        if (strcasecmp(s, no[i]) == 0) return *out = 0, 0;
    }
    return -1;
}

static int validate(value_t *v, char *err, size_t errlen) {
    const cga_setting_t *s = v->s;
    char shown[SHOWN_MAX + 16];
    if (v->src == SRC_UNSET) return CGA_OK;
    if (s->type == CGA_SET_LIST) {
        for (size_t i = 0; s->check && i < v->nitems; i++) {
            const char *why = s->check(v->items[i]);
            if (why) {
                show_value(s, v->items[i], shown, sizeof shown);
                return failf(err, errlen, CGA_ECONFIG, "%s: %s %s (from %s)", s->env, shown, why,
                             v->where);
            }
        }
        return CGA_OK;
    }
    show_value(s, v->raw, shown, sizeof shown);
    if (s->type == CGA_SET_INT) {
        int overflow;
        if (parse_int(v->raw, &v->i, &overflow) != 0)
            return failf(err, errlen, CGA_ECONFIG, "%s: %s %s (from %s)", s->env, shown,
                         overflow ? "is out of range" : "is not a number", v->where);
        if ((s->min || s->max) && (v->i < s->min || v->i > s->max))
            return failf(err, errlen, CGA_ECONFIG,
                         "%s: %s is out of range (%" PRId64 "..%" PRId64 ") (from %s)", s->env,
                         shown, s->min, s->max, v->where);
    } else if (s->type == CGA_SET_BOOL) {
        if (parse_bool(v->raw, &v->b) != 0)
            return failf(err, errlen, CGA_ECONFIG,
                         "%s: %s is not a boolean (true/false, yes/no, on/off, 1/0) (from %s)",
                         s->env, shown, v->where);
    }
    if (s->check) {
        const char *why = s->check(v->raw);
        if (why) return failf(err, errlen, CGA_ECONFIG, "%s: %s %s (from %s)", s->env, shown, why,
                              v->where);
    }
    return CGA_OK;
}

/* ---- .env ------------------------------------------------------------------------------ */

/* Parses one line in place. Returns 1 with *key, *val set; 0 for a blank or comment line;
 * -1 when malformed (*why set). */
static int parse_dotenv_line(char *line, char **key, char **val, const char **why) {
    size_t len = strlen(line);
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
    char *p = line;
    while (*p == ' ' || *p == '\t') p++;
    if (!*p || *p == '#') return 0;
    if (strncmp(p, "export", 6) == 0 && (p[6] == ' ' || p[6] == '\t')) {
        p += 6;
        while (*p == ' ' || *p == '\t') p++;
    }
    char *k = p;
    if (!(isalpha((unsigned char)*p) || *p == '_')) goto malformed;
    while (isalnum((unsigned char)*p) || *p == '_' || *p == '.') p++;
    char *kend = p;
    while (*p == ' ' || *p == '\t') p++;
    if (*p != '=') goto malformed;
    p++;
    while (*p == ' ' || *p == '\t') p++;
    char *v = p, *after;
    if (*p == '"') {
        char *o = p;
        v = o;
        for (p++; *p && *p != '"'; p++) {
            if (*p == '\\' && p[1]) {
                p++;
                switch (*p) {
                case 'n': *o++ = '\n'; break;
                case 'r': *o++ = '\r'; break;
                case 't': *o++ = '\t'; break;
                case '"': *o++ = '"'; break;
                case '\\': *o++ = '\\'; break;
                default: *o++ = '\\'; *o++ = *p; break; /* unknown escape: kept as written */
                }
            } else {
                *o++ = *p;
            }
        }
        if (*p != '"') {
            *why = "unterminated double quote";
            return -1;
        }
        after = p + 1;
        *o = '\0';
    } else if (*p == '\'') {
        v = p + 1;
        char *q = strchr(v, '\'');
        if (!q) {
            *why = "unterminated single quote";
            return -1;
        }
        *q = '\0';
        after = q + 1;
    } else {
        char *e = p;
        for (; *e; e++)
            if (*e == '#' && e > v && (e[-1] == ' ' || e[-1] == '\t')) break;
        while (e > v && (e[-1] == ' ' || e[-1] == '\t')) e--;
        *e = '\0';
        after = NULL;
    }
    if (after) {
        while (*after == ' ' || *after == '\t') after++;
        if (*after && *after != '#') {
            *why = "unexpected text after the closing quote";
            return -1;
        }
    }
    *kend = '\0';
    *key = k;
    *val = v;
    return 1;
malformed:
    *why = "expected KEY=VALUE";
    return -1;
}

/* Reads path; origin says who named it (for messages), NULL for the implicit ./.env which may
 * be absent. */
static int read_dotenv(cga_config_t *c, const char *path, const char *origin, char *err,
                       size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) {
        if (!origin && errno == ENOENT) return CGA_OK;
        return failf(err, errlen, CGA_ECONFIG, "cannot read env file %s: %s (from %s)", path,
                     strerror(errno), origin ? origin : "default ./.env");
    }
    char *line = NULL;
    size_t cap = 0;
    size_t lineno = 0;
    int rc = CGA_OK;
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        char *key, *val;
        const char *why = NULL;
        int r = parse_dotenv_line(line, &key, &val, &why);
        if (r < 0) {
            rc = failf(err, errlen, CGA_ECONFIG, "%s:%zu: %s", path, lineno, why);
            break;
        }
        if (r == 0) continue;
        value_t *v = find(c, key);
        if (!v) continue; /* another process's setting */
        char where[MSG_MAX / 2];
        snprintf(where, sizeof where, "%s:%zu", path, lineno);
        set_value(v, val, SRC_DOTENV, where);
    }
    if (rc == CGA_OK && ferror(f))
        rc = failf(err, errlen, CGA_ECONFIG, "cannot read env file %s: %s", path, strerror(errno));
    free(line);
    fclose(f);
    return rc;
}

static const char *env_lookup(char **envp, const char *name) {
    size_t n = strlen(name);
    for (char **e = envp; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') return *e + n + 1;
    return NULL;
}

/* ---- flags ----------------------------------------------------------------------------- */

typedef struct flagval_s {
    value_t *v;
    const char *value; /* borrowed from argv, or "true"/"false" */
    int negated;       /* --no-flag */
} flagval_t;

/* Parses argv into flags (in order) and positionals; *env_file gets the last --env-file. */
static int parse_argv(cga_config_t *c, int argc, char **argv, flagval_t *flags, size_t *nflags,
                      const char **env_file, char *err, size_t errlen) {
    int ended = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!ended && strcmp(a, "--") == 0) {
            ended = 1;
            continue;
        }
        if (ended || a[0] != '-' || a[1] == '\0') {
            c->pos = cga_realloc(c->pos, (c->npos + 1) * sizeof *c->pos);
            c->pos[c->npos++] = cga_strdup(a);
            continue;
        }
        if (a[1] != '-') {
            if (isalpha((unsigned char)a[1]))
                return failf(err, errlen, CGA_ECONFIG, "unknown option -%c (see --help)", a[1]);
            c->pos = cga_realloc(c->pos, (c->npos + 1) * sizeof *c->pos);
            c->pos[c->npos++] = cga_strdup(a); /* "-5" and the like */
            continue;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        if (nlen == 8 && strncmp(name, "env-file", 8) == 0) {
            if (eq) {
                *env_file = eq + 1;
            } else {
                if (i + 1 >= argc)
                    return failf(err, errlen, CGA_ECONFIG, "option --env-file needs a value");
                *env_file = argv[++i];
            }
            continue;
        }
        value_t *v = find_flag(c, name, nlen);
        int negated = 0;
        if (!v && nlen > 3 && strncmp(name, "no-", 3) == 0) {
            v = find_flag(c, name + 3, nlen - 3);
            if (v && v->s->type != CGA_SET_BOOL) v = NULL;
            negated = v != NULL;
        }
        if (!v)
            return failf(err, errlen, CGA_ECONFIG, "unknown option --%.*s (see --help)",
                         (int)(nlen > 64 ? 64 : nlen), name);
        const char *value;
        if (negated) {
            if (eq)
                return failf(err, errlen, CGA_ECONFIG, "option --%.*s takes no value", (int)nlen,
                             name);
            value = "false";
        } else if (eq) {
            value = eq + 1;
        } else if (v->s->type == CGA_SET_BOOL) {
            value = "true";
        } else {
            if (i + 1 >= argc)
                return failf(err, errlen, CGA_ECONFIG, "option --%s needs a value", v->s->flag);
            value = argv[++i];
        }
        flags[*nflags].v = v;
        flags[*nflags].value = value;
        flags[*nflags].negated = negated;
        (*nflags)++;
    }
    return CGA_OK;
}

/* ---- load ------------------------------------------------------------------------------ */

static int read_password_file(cga_config_t *c, value_t *v, char *err, size_t errlen) {
    FILE *f = fopen(v->raw, "r");
    if (!f)
        return failf(err, errlen, CGA_ECONFIG, "%s: cannot read %s: %s (from %s)", v->s->env,
                     v->raw, strerror(errno), v->where);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f);
    int rd_errno = errno;
    int bad = ferror(f);
    fclose(f);
    if (n < 0 || bad) {
        free(line);
        if (bad)
            return failf(err, errlen, CGA_ECONFIG, "%s: cannot read %s: %s (from %s)", v->s->env,
                         v->raw, strerror(rd_errno), v->where);
        return failf(err, errlen, CGA_ECONFIG, "%s: %s is empty (from %s)", v->s->env, v->raw,
                     v->where);
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
    if (n == 0 || strlen(line) != (size_t)n) {
        free(line);
        return failf(err, errlen, CGA_ECONFIG,
                     "%s: the first line of %s is empty or not text (it must hold the password) "
                     "(from %s)",
                     v->s->env, v->raw, v->where);
    }
    c->password_file = line;
    return CGA_OK;
}

static int load_layers(cga_config_t *c, int argc, char **argv, char **envp, flagval_t *flags,
                       char *err, size_t errlen) {
    size_t nflags = 0;
    const char *env_file = NULL;
    int rc = parse_argv(c, argc, argv, flags, &nflags, &env_file, err, errlen);
    if (rc) return rc;

    for (size_t k = 0; k < c->n; k++)
        if (c->v[k].s->def) set_value(&c->v[k], c->v[k].s->def, SRC_DEFAULT, "default");

    const char *env_named = env_lookup(envp, ENV_FILE_VAR);
    if (env_file)
        rc = read_dotenv(c, env_file, "--env-file", err, errlen);
    else if (env_named && *env_named)
        rc = read_dotenv(c, env_named, ENV_FILE_VAR, err, errlen);
    else
        rc = read_dotenv(c, DEFAULT_ENV_FILE, NULL, err, errlen);
    if (rc) return rc;

    for (size_t k = 0; k < c->n; k++) {
        const char *val = env_lookup(envp, c->v[k].s->env);
        if (val) set_value(&c->v[k], val, SRC_ENV, "environment");
    }

    for (size_t i = 0; i < nflags; i++) {
        char where[128];
        snprintf(where, sizeof where, "--%s%s", flags[i].negated ? "no-" : "", flags[i].v->s->flag);
        set_value(flags[i].v, flags[i].value, SRC_FLAG, where);
    }

    for (size_t k = 0; k < c->n; k++)
        if ((rc = validate(&c->v[k], err, errlen)) != CGA_OK) return rc;

    value_t *base = find(c, "REDIS_BACKOFF_BASE_MS"), *cap = find(c, "REDIS_BACKOFF_CAP_MS");
    if (base && cap && base->src && cap->src && cap->i < base->i)
        return failf(err, errlen, CGA_ECONFIG,
                     "REDIS_BACKOFF_CAP_MS: %" PRId64 " is below REDIS_BACKOFF_BASE_MS (%" PRId64
                     ") (from %s)",
                     cap->i, base->i, cap->where);

    value_t *pwf = find(c, "REDIS_PASSWORD_FILE");
    if (pwf && pwf->raw && *pwf->raw && (rc = read_password_file(c, pwf, err, errlen)) != CGA_OK)
        return rc;

    value_t *url = find(c, "REDIS_URL");
    if (url && url->raw && *url->raw) {
        char uerr[MSG_MAX];
        rc = cga_redis_url_parse(url->raw, &c->url, uerr, sizeof uerr);
        if (rc) return failf(err, errlen, CGA_ECONFIG, "%s (from %s)", uerr, url->where);
        c->has_url = 1;
    }

    for (size_t k = 0; k < c->n; k++) {
        value_t *v = &c->v[k];
        if (!v->s->secret || v->src == SRC_UNSET) continue;
        if (v == url) continue; /* its password is registered below, not the whole URL */
        if (v->s->type == CGA_SET_LIST) {
            for (size_t i = 0; i < v->nitems; i++) cga_log_add_secret(v->items[i]);
        } else {
            cga_log_add_secret(v->raw);
        }
    }
    if (c->has_url) cga_log_add_secret(c->url.password);
    cga_log_add_secret(c->password_file);
    return CGA_OK;
}

int cga_config_load(cga_config_t *c, int argc, char **argv, char **envp, char *err,
                    size_t errlen) {
    if (err && errlen) err[0] = '\0';
    reset(c);
    flagval_t *flags = cga_calloc((size_t)(argc > 0 ? argc : 1), sizeof *flags);
    int rc = load_layers(c, argc, argv, envp ? envp : environ, flags, err, errlen);
    free(flags);
    return rc;
}

/* ---- values ---------------------------------------------------------------------------- */

const char *cga_config_str(const cga_config_t *c, const char *env) {
    const value_t *v = must_find(c, env, -1);
    if (v->s->type == CGA_SET_LIST) {
        fprintf(stderr, "cgalpha: BUG: list setting %s read as a string\n", env);
        abort();
    }
    return v->raw;
}

int64_t cga_config_int(const cga_config_t *c, const char *env) {
    const value_t *v = must_find(c, env, CGA_SET_INT);
    return v->src ? v->i : 0;
}

int cga_config_bool(const cga_config_t *c, const char *env) {
    const value_t *v = must_find(c, env, CGA_SET_BOOL);
    return v->src ? v->b : 0;
}

const char *const *cga_config_list(const cga_config_t *c, const char *env, size_t *n) {
    const value_t *v = must_find(c, env, CGA_SET_LIST);
    *n = v->nitems;
    return (const char *const *)v->items;
}

const char *cga_config_source(const cga_config_t *c, const char *env) {
    return src_names[must_find(c, env, -1)->src];
}

const char *cga_config_origin(const cga_config_t *c, const char *env) {
    const value_t *v = must_find(c, env, -1);
    return v->where ? v->where : "unset";
}

char *const *cga_config_positionals(const cga_config_t *c, size_t *n) {
    *n = c->npos;
    return c->pos;
}

/* ---- help ------------------------------------------------------------------------------ */

#define HELP_COL 34
#define HELP_WIDTH 94 /* 100 columns minus the indent */

static void print_row(FILE *out, const char *left, const char *right, const char *help) {
    int w = fprintf(out, "  %s", left);
    if (w >= HELP_COL) {
        fputc('\n', out);
        w = 0;
    }
    fprintf(out, "%*s%s\n", HELP_COL - w, "", right);
    /* the help, indented and wrapped at 100 columns */
    for (const char *p = help; p && *p;) {
        while (*p == ' ') p++;
        size_t len = strlen(p);
        if (len > HELP_WIDTH) {
            len = HELP_WIDTH;
            while (len > 0 && p[len] != ' ') len--;
            if (len == 0) len = strcspn(p, " ");
        }
        fprintf(out, "      %.*s\n", (int)len, p);
        p += len;
    }
}

void cga_config_print_help(const cga_config_t *c, FILE *out) {
    char left[128], right[256];
    for (size_t k = 0; k < c->n; k++) {
        const cga_setting_t *s = c->v[k].s;
        const char *meta = s->type == CGA_SET_INT ? " N" : s->type == CGA_SET_BOOL ? "" : " VALUE";
        if (!s->flag)
            snprintf(left, sizeof left, "(environment only)");
        else if (s->type == CGA_SET_BOOL)
            snprintf(left, sizeof left, "--[no-]%s", s->flag);
        else
            snprintf(left, sizeof left, "--%s%s%s", s->flag, meta,
                     s->type == CGA_SET_LIST ? " ..." : "");
        size_t r = (size_t)snprintf(right, sizeof right, "%s", s->env);
        if (s->secret)
            snprintf(right + r, sizeof right - r, " (secret)");
        else if (s->def && s->type == CGA_SET_INT && (s->min || s->max))
            snprintf(right + r, sizeof right - r, " (default: %s; %" PRId64 "..%" PRId64 ")",
                     s->def, s->min, s->max);
        else if (s->def && s->type == CGA_SET_BOOL) {
            int b = 0; /* the defaults are checked at start-up: "0", "false", "1", ... */
            parse_bool(s->def, &b);
            snprintf(right + r, sizeof right - r, " (default: %s)", b ? "true" : "false");
        } else if (s->def)
            snprintf(right + r, sizeof right - r, " (default: %s)", *s->def ? s->def : "\"\"");
        print_row(out, left, right, s->help);
    }
    print_row(out, "--env-file PATH", ENV_FILE_VAR " (default: ./.env if it exists)",
              "read settings from this file (KEY=VALUE lines; the environment and flags win)");
}

/* ---- Redis options --------------------------------------------------------------------- */

static const char *str_or_null(const cga_config_t *c, const char *env) {
    const value_t *v = find(c, env);
    return v && v->raw && *v->raw ? v->raw : NULL;
}

static int int_or(const cga_config_t *c, const char *env, int64_t def) {
    const value_t *v = find(c, env);
    return (int)(v && v->src && v->s->type == CGA_SET_INT ? v->i : def);
}

int cga_config_redis_opts(const cga_config_t *c, struct cga_redis_opts_s *o, char *err,
                          size_t errlen) {
    if (err && errlen) err[0] = '\0';
    cga_redis_opts_init(o);
    const char *url = str_or_null(c, "REDIS_URL");
    if (url && !c->has_url) {
        /* load failed or was not run: report the URL's own error */
        cga_redis_url_t u;
        int rc = cga_redis_url_parse(url, &u, err, errlen);
        cga_redis_url_clear(&u);
        if (rc) return rc;
        return failf(err, errlen, CGA_ECONFIG, "configuration not loaded");
    }
    if (c->has_url) {
        o->host = c->url.host;
        o->port = c->url.port;
        o->unix_path = c->url.unix_path;
        o->db = c->url.db;
    } else {
        const char *host = str_or_null(c, "REDIS_HOST");
        if (host && host[0] == '/') {
            o->unix_path = host;
        } else if (host) {
            o->host = host;
        }
        o->port = int_or(c, "REDIS_PORT", o->port);
        o->db = int_or(c, "REDIS_DB", o->db);
    }
    o->username = c->has_url && c->url.username ? c->url.username
                                                : str_or_null(c, "REDIS_USERNAME");
    o->password = c->has_url && c->url.password ? c->url.password : NULL;
    if (!o->password) o->password = str_or_null(c, "REDIS_PASSWORD");
    if (!o->password) o->password = c->password_file;
    o->connect_timeout_ms = (unsigned)int_or(c, "REDIS_CONNECT_TIMEOUT_MS", o->connect_timeout_ms);
    o->command_timeout_ms = (unsigned)int_or(c, "REDIS_COMMAND_TIMEOUT_MS", o->command_timeout_ms);
    o->backoff_base_ms = (unsigned)int_or(c, "REDIS_BACKOFF_BASE_MS", o->backoff_base_ms);
    o->backoff_cap_ms = (unsigned)int_or(c, "REDIS_BACKOFF_CAP_MS", o->backoff_cap_ms);
    o->breaker_failures = (unsigned)int_or(c, "BREAKER_FAILURES", o->breaker_failures);
    o->breaker_open_ms = (unsigned)int_or(c, "BREAKER_OPEN_MS", o->breaker_open_ms);
    if (o->password) cga_log_add_secret(o->password);
    return CGA_OK;
}

/* ---- REDIS_URL ------------------------------------------------------------------------- */

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes p[0..n) into a new string; NULL (nothing allocated) on a bad escape or %00. */
static char *pct_decode(const char *p, size_t n) {
    char *o = cga_malloc(n + 1);
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '%') {
            o[j++] = p[i];
            continue;
        }
        if (n - i < 3) goto bad;
        int h = hexval(p[i + 1]), l = hexval(p[i + 2]);
        if (h < 0 || l < 0 || (h == 0 && l == 0)) goto bad;
        o[j++] = (char)(h * 16 + l);
        i += 2;
    }
    o[j] = '\0';
    return o;
bad:
    free(o);
    return NULL;
}

/* Parses a decimal in p[0..n) within [lo, hi]. */
static int parse_num(const char *p, size_t n, long lo, long hi, int *out) {
    if (n == 0 || n > 10) return -1;
    long x = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        x = x * 10 + (p[i] - '0');
    }
    if (x < lo || x > hi) return -1;
    *out = (int)x;
    return 0;
}

/* Applies a query string "db=N[&...]". */
static int parse_query(const char *q, cga_redis_url_t *u, char *err, size_t errlen) {
    while (*q) {
        size_t len = strcspn(q, "&");
        const char *eq = memchr(q, '=', len);
        size_t klen = eq ? (size_t)(eq - q) : len;
        if (klen == 2 && strncmp(q, "db", 2) == 0 && eq) {
            size_t vlen = len - klen - 1;
            if (parse_num(eq + 1, vlen, 0, INT32_MAX, &u->db) != 0)
                return failf(err, errlen, CGA_ECONFIG,
                             "REDIS_URL: bad database '%.*s' (a number, 0 or more)",
                             (int)(vlen > SHOWN_MAX ? SHOWN_MAX : vlen), eq + 1);
        } else if (len) {
            return failf(err, errlen, CGA_ECONFIG, "REDIS_URL: unsupported parameter '%.*s'",
                         (int)(klen > 32 ? 32 : klen), q);
        }
        q += len;
        if (*q == '&') q++;
    }
    return CGA_OK;
}

/* userinfo p[0..n): "user:password", ":password" or "password". */
static int parse_userinfo(const char *p, size_t n, cga_redis_url_t *u, char *err, size_t errlen) {
    const char *colon = memchr(p, ':', n);
    const char *pw = colon ? colon + 1 : p;
    size_t pwlen = colon ? n - (size_t)(colon - p) - 1 : n;
    if (colon && colon > p) {
        u->username = pct_decode(p, (size_t)(colon - p));
        if (!u->username)
            return failf(err, errlen, CGA_ECONFIG, "REDIS_URL: bad percent-encoding in the user name");
    }
    if (pwlen) {
        u->password = pct_decode(pw, pwlen);
        if (!u->password)
            return failf(err, errlen, CGA_ECONFIG, "REDIS_URL: bad percent-encoding in the password");
    }
    return CGA_OK;
}

static int parse_tcp(const char *rest, cga_redis_url_t *u, char *err, size_t errlen) {
    const char *at = strrchr(rest, '@'); /* the last one: an unencoded '@' in a password */
    const char *hp = rest;
    int rc;
    if (at) {
        if ((rc = parse_userinfo(rest, (size_t)(at - rest), u, err, errlen)) != CGA_OK) return rc;
        hp = at + 1;
    }
    size_t hplen = strcspn(hp, "/?#");
    const char *host = hp, *port = NULL;
    size_t hostlen, portlen = 0;
    if (*hp == '[') {
        const char *close = memchr(hp, ']', hplen);
        if (!close) return failf(err, errlen, CGA_ECONFIG, "REDIS_URL: missing ']' after an IPv6 "
                                                           "address");
        host = hp + 1;
        hostlen = (size_t)(close - host);
        const char *after = close + 1;
        if (after < hp + hplen) {
            if (*after != ':')
                return failf(err, errlen, CGA_ECONFIG, "REDIS_URL: unexpected text after ']'");
            port = after + 1;
            portlen = (size_t)(hp + hplen - port);
        }
    } else {
        const char *colon = memchr(hp, ':', hplen);
        hostlen = colon ? (size_t)(colon - hp) : hplen;
        if (colon) {
            port = colon + 1;
            portlen = (size_t)(hp + hplen - port);
            if (memchr(port, ':', portlen))
                return failf(err, errlen, CGA_ECONFIG,
                             "REDIS_URL: an IPv6 address needs brackets: redis://[::1]:6379");
        }
    }
    if (hostlen == 0)
        return failf(err, errlen, CGA_ECONFIG,
                     "REDIS_URL: no host (expected redis://host[:port][/db])");
    if (port && parse_num(port, portlen, 1, 65535, &u->port) != 0)
        return failf(err, errlen, CGA_ECONFIG, "REDIS_URL: bad port '%.*s' (1..65535)",
                     (int)(portlen > SHOWN_MAX ? SHOWN_MAX : portlen), port);
    u->host = cga_strndup(host, hostlen);
    const char *p = hp + hplen;
    if (*p == '/') {
        p++;
        size_t dblen = strcspn(p, "?#");
        if (dblen && parse_num(p, dblen, 0, INT32_MAX, &u->db) != 0)
            return failf(err, errlen, CGA_ECONFIG,
                         "REDIS_URL: bad database '%.*s' (a number, 0 or more)",
                         (int)(dblen > SHOWN_MAX ? SHOWN_MAX : dblen), p);
        p += dblen;
    }
    if (*p == '?') {
        size_t qlen = strcspn(p + 1, "#");
        char *q = cga_strndup(p + 1, qlen);
        rc = parse_query(q, u, err, errlen);
        free(q);
        if (rc) return rc;
    }
    return CGA_OK;
}

static int parse_unix(const char *rest, cga_redis_url_t *u, char *err, size_t errlen) {
    const char *path = rest;
    int rc;
    if (*rest != '/') {
        const char *at = strstr(rest, "@/");
        if (!at)
            return failf(err, errlen, CGA_ECONFIG,
                         "REDIS_URL: unix:// needs an absolute socket path "
                         "(unix:///path/to/redis.sock)");
        if ((rc = parse_userinfo(rest, (size_t)(at - rest), u, err, errlen)) != CGA_OK) return rc;
        path = at + 1;
    }
    size_t plen = strcspn(path, "?#");
    if (plen < 2)
        return failf(err, errlen, CGA_ECONFIG, "REDIS_URL: unix:// needs a socket path");
    u->unix_path = pct_decode(path, plen);
    if (!u->unix_path)
        return failf(err, errlen, CGA_ECONFIG, "REDIS_URL: bad percent-encoding in the path");
    if (path[plen] == '?') {
        size_t qlen = strcspn(path + plen + 1, "#");
        char *q = cga_strndup(path + plen + 1, qlen);
        rc = parse_query(q, u, err, errlen);
        free(q);
        if (rc) return rc;
    }
    return CGA_OK;
}

int cga_redis_url_parse(const char *url, cga_redis_url_t *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    out->port = 6379;
    if (err && errlen) err[0] = '\0';
    const char *sep = url ? strstr(url, "://") : NULL;
    if (!sep) return failf(err, errlen, CGA_ECONFIG, "REDIS_URL: " NOT_A_URL);
    size_t slen = (size_t)(sep - url);
    const char *rest = sep + 3;
    int rc;
    if (slen == 5 && strncasecmp(url, "redis", 5) == 0) {
        rc = parse_tcp(rest, out, err, errlen);
    } else if ((slen == 4 && strncasecmp(url, "unix", 4) == 0) ||
               (slen == 10 && strncasecmp(url, "redis+unix", 10) == 0)) {
        rc = parse_unix(rest, out, err, errlen);
    } else if (slen == 6 && strncasecmp(url, "rediss", 6) == 0) {
        rc = failf(err, errlen, CGA_ETLS,
                   "REDIS_URL: rediss:// (TLS) is not supported by this build");
    } else {
        int plain = slen > 0 && slen <= 16;
        for (size_t i = 0; plain && i < slen; i++)
            plain = isalnum((unsigned char)url[i]) || url[i] == '+' || url[i] == '-' ||
                    url[i] == '.';
        if (plain)
            rc = failf(err, errlen, CGA_ECONFIG,
                       "REDIS_URL: unsupported scheme '%.*s://' (use redis:// or unix://)",
                       (int)slen, url);
        else
            rc = failf(err, errlen, CGA_ECONFIG, "REDIS_URL: " NOT_A_URL);
    }
    if (rc) cga_redis_url_clear(out);
    return rc;
}

void cga_redis_url_clear(cga_redis_url_t *u) {
    if (!u) return;
    free(u->host);
    free(u->unix_path);
    free(u->username);
    free(u->password);
    memset(u, 0, sizeof *u);
    u->port = 6379;
}
