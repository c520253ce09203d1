#include "cgalpha/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "cgalpha/err.h"

#define MAX_SECRETS 8
#define SECRET_MAX 256
#define LINE_MAX_BYTES 4096

int cga_log_level_current = CGA_LOG_INFO;

static pthread_mutex_t secrets_mu = PTHREAD_MUTEX_INITIALIZER;
static char secrets[MAX_SECRETS][SECRET_MAX];
static int nsecrets;
static char process_name[32] = "cgalpha";

static const char *level_names[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};

void cga_log_set_level(int level) {
    if (level < CGA_LOG_DEBUG) level = CGA_LOG_DEBUG;
    if (level > CGA_LOG_OFF) level = CGA_LOG_OFF;
    cga_log_level_current = level;
}

int cga_log_level_parse(const char *s, int *out) {
    static const struct { const char *name; int level; } names[] = {
        {"debug", CGA_LOG_DEBUG}, {"info", CGA_LOG_INFO},   {"warn", CGA_LOG_WARN},
        {"warning", CGA_LOG_WARN}, {"error", CGA_LOG_ERROR}, {"off", CGA_LOG_OFF},
    };
    if (!s) return CGA_EINVAL;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcasecmp(s, names[i].name) == 0) {
            *out = names[i].level;
            return CGA_OK;
        }
    }
    return CGA_EINVAL;
}

void cga_log_set_process(const char *name) {
    if (!name) return;
    snprintf(process_name, sizeof process_name, "%s", name);
}

void cga_log_add_secret(const char *secret) {
    if (!secret || !*secret || strlen(secret) >= SECRET_MAX) return;
    pthread_mutex_lock(&secrets_mu);
    int known = 0;
    for (int i = 0; i < nsecrets; i++) known |= strcmp(secrets[i], secret) == 0;
    if (!known && nsecrets < MAX_SECRETS) snprintf(secrets[nsecrets++], SECRET_MAX, "%s", secret);
    pthread_mutex_unlock(&secrets_mu);
}

void cga_log_clear_secrets(void) {
    pthread_mutex_lock(&secrets_mu);
    nsecrets = 0;
    pthread_mutex_unlock(&secrets_mu);
}

/* Length of the registered secret starting at p, or 0. Caller holds secrets_mu. */
static size_t secret_at(const char *p) {
    for (int i = 0; i < nsecrets; i++) {
        size_t n = strlen(secrets[i]);
        if (strncmp(p, secrets[i], n) == 0) return n;
    }
    return 0;
}

/* At "://" + userinfo containing ':' before '@': length of the password, else 0. */
static size_t url_password_at(const char *p, const char **pw) {
    if (strncmp(p, "://", 3) != 0) return 0;
    const char *s = p + 3;
    const char *end = s + strcspn(s, "/ \t\r\n\"'");
    const char *at = NULL;
    for (const char *q = s; q < end; q++)
        if (*q == '@') at = q;
    if (!at) return 0;
    const char *colon = memchr(s, ':', (size_t)(at - s));
    if (!colon) {
        /* redis://PASSWORD@host: a lone userinfo is the password in Redis URLs */
        *pw = s;
        return (size_t)(at - s);
    }
    *pw = colon + 1;
    return (size_t)(at - colon - 1);
}

size_t cga_log_redact(const char *in, char *out, size_t n) {
    size_t o = 0;
    if (n == 0) return 0;
    pthread_mutex_lock(&secrets_mu);
    for (const char *p = in; *p && o + 1 < n;) {
        const char *pw = NULL;
        size_t plen = url_password_at(p, &pw);
        if (plen) {
            size_t keep = (size_t)(pw - p); /* "://user:" */
            for (size_t i = 0; i < keep && o + 1 < n; i++) out[o++] = p[i];
            for (const char *m = "***"; *m && o + 1 < n; m++) out[o++] = *m;
            p = pw + plen;
            continue;
        }
        size_t slen = secret_at(p);
        if (slen) {
            for (const char *m = "***"; *m && o + 1 < n; m++) out[o++] = *m;
            p += slen;
            continue;
        }
        out[o++] = *p++;
    }
    pthread_mutex_unlock(&secrets_mu);
    out[o] = '\0';
    return o;
}

void cga_log_write(int level, const char *component, int rc, const char *fmt, ...) {
    if (level < cga_log_level_current || level >= CGA_LOG_OFF) return;
    if (level < 0) level = 0;
    char msg[LINE_MAX_BYTES];
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (m < 0) return;
    size_t mlen = strlen(msg);
    if (rc != 0 && mlen + 3 < sizeof msg)
        snprintf(msg + mlen, sizeof msg - mlen, ": %s", cga_strerror(rc));
    for (char *c = msg; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' '; /* one line per event */

    char clean[LINE_MAX_BYTES];
    cga_log_redact(msg, clean, sizeof clean);

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char line[LINE_MAX_BYTES + 128];
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s[%ld] %s%s%s\n",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (long)(tv.tv_usec / 1000), level_names[level], process_name,
                     (long)getpid(), component ? component : "", component ? ": " : "", clean);
    if (n < 0) return;
    if ((size_t)n >= sizeof line) {
        n = (int)sizeof line - 1;
        line[n - 1] = '\n';
    }
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
