/* `monitor`: a live view of the namespace, redrawn every --interval-ms (like top): both queues
 * with their depth and throughput, the semaphore, the labs with their heartbeats and rates, the
 * current regime of every symbol and the latest regime changes.
 *
 * Each tick takes one snapshot (snapshot.h) plus XINFO GROUPS of both queues (for the
 * entries-read counter of their group, from which the entries per second in and out come), and
 * draws a frame when every answer came; a tick that finds the previous reading still in flight
 * is skipped. While Redis is down a tick draws a frame that says so, with the last figures read.
 *
 * On a terminal: alternate screen, cursor hidden, the frame redrawn in place and fitted to the
 * window, stdin in raw mode (q or Ctrl-C quits); the terminal is restored on every way out
 * (q, --count, SIGINT/SIGTERM). Otherwise plain frames one after the other, each starting with
 * "--- cgalpha monitor <ISO time>", no escape codes. */
#define CGA_LOG_COMPONENT "monitor"
#include <hiredis/hiredis.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "cgalpha/alloc.h"
#include "cgalpha/app.h"
#include "cgalpha/clock.h"
#include "cgalpha/config.h"
#include "cgalpha/err.h"
#include "cgalpha/keys.h"
#include "cgalpha/log.h"
#include "cgalpha/redis.h"
#include "ops.h"
#include "snapshot.h"

#define CMD "monitor"
#define RECENT 10        /* regime changes read with each snapshot, shown newest first */
#define LINE_CAP 2048    /* one line of a frame at most (longer ones are cut) */

#define ESC_SCREEN_ON "\033[?1049h\033[?25l\033[H\033[2J"
#define ESC_SCREEN_OFF "\033[?25h\033[?1049l"

static const char *const group_names[OPS_NQUEUES] = {CGA_GROUP_ANALYSIS, CGA_GROUP_REPORTS};

/* A reading: a copy of the snapshot (arrays owned) and the groups' entries-read counters. */
typedef struct reading_s {
    int valid;
    ops_snapshot_t s;
    uint64_t mono_us, wall_us;
    int read_known[OPS_NQUEUES]; /* XINFO GROUPS gave the group's entries-read */
    uint64_t read[OPS_NQUEUES];
} reading_t;

/* Per lab, the last two distinct heartbeats make its rate (heartbeats come every 2 s whatever
 * the interval, so a rate between two frames would mostly read 0 then a burst). */
typedef struct lab_rate_s {
    char id[OPS_SNAP_TXT];
    uint64_t ts_us, processed, failed; /* the latest heartbeat seen */
    double rate, fail_rate;            /* between the latest two; < 0 unknown yet */
} lab_rate_t;

typedef struct xinfo_req_s {
    struct monitor_s *m;
    int i;
} xinfo_req_t;

typedef enum frame_kind { FRAME_LIVE, FRAME_DOWN, FRAME_FAILED } frame_kind_t;

typedef struct monitor_s {
    cga_app_t *app;
    uv_loop_t *loop;
    cga_redis_t *redis;
    const char *ns;
    ops_snapper_t *sn;
    uint64_t interval_ms, count, frames;
    int code;
    int tty;             /* stdout is a terminal: redraw in place */
    int screen_on;       /* alternate screen entered and not left */
    int raw;             /* stdin put in raw mode */
    int log_level;       /* to restore (logging is off while the screen is on) */
    int quitting;
    uv_timer_t timer;
    uv_tty_t in;
    uv_signal_t winch;
    int timer_open, in_open, winch_open;
    unsigned open_handles;
    int snapper_closed;
    char qkeys[OPS_NQUEUES][CGA_KEY_MAX];
    xinfo_req_t xreq[OPS_NQUEUES];
    /* the reading in flight */
    int reading;
    unsigned waiting;    /* answers awaited */
    int snap_waiting;    /* the snapper's answer is one of them */
    int fail;            /* why the reading failed (0: it did not) */
    reading_t fresh, last, prev;
    /* rates, from prev to last (queues) and from the labs' heartbeats */
    int rates_valid;
    double in_rate[OPS_NQUEUES], out_rate[OPS_NQUEUES]; /* entries/s; < 0 unknown */
    lab_rate_t *labs;    /* sorted by id, one per lab of `last` */
    size_t nlabs;
    /* the frame drawn last (lines separated by '\n'), redrawn on SIGWINCH */
    char *text;
    size_t len, cap;
} monitor_t;

/* ---- small helpers ------------------------------------------------------------------------ */

static void fmt_rate(char *out, size_t n, double r) {
    if (r < 0)
        snprintf(out, n, "-");
    else
        snprintf(out, n, "%.1f", r);
}

/* What Redis wrote is shown on a terminal: no control characters in it. */
static void sanitize(char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) *s = '?';
}

static int width_of(const char *s, int min, int max) {
    size_t n = strlen(s);
    int w = n > (size_t)max ? max : (int)n;
    return w < min ? min : w;
}

/* ---- readings ----------------------------------------------------------------------------- */

static void reading_copy(reading_t *dst, const ops_snapshot_t *s) {
    ops_lab_row_t *labs = dst->s.labs;
    ops_regime_row_t *regimes = dst->s.regimes, *changes = dst->s.changes;
    dst->s = *s;
    dst->s.sem.reason = cga_str(dst->s.sem_reason); /* not used: the text is sem_reason */
    dst->s.labs = cga_realloc(labs, (s->nlabs ? s->nlabs : 1) * sizeof *labs);
    dst->s.regimes = cga_realloc(regimes, (s->nregimes ? s->nregimes : 1) * sizeof *regimes);
    dst->s.changes = cga_realloc(changes, (s->nchanges ? s->nchanges : 1) * sizeof *changes);
    if (s->nlabs) memcpy(dst->s.labs, s->labs, s->nlabs * sizeof *labs);
    if (s->nregimes) memcpy(dst->s.regimes, s->regimes, s->nregimes * sizeof *regimes);
    if (s->nchanges) memcpy(dst->s.changes, s->changes, s->nchanges * sizeof *changes);
    sanitize(dst->s.sem_reason);
    for (size_t i = 0; i < s->nlabs; i++) {
        sanitize(dst->s.labs[i].id);
        sanitize(dst->s.labs[i].plugins);
        sanitize(dst->s.labs[i].host);
    }
    for (size_t i = 0; i < s->nregimes; i++) sanitize(dst->s.regimes[i].symbol);
    for (size_t i = 0; i < s->nchanges; i++) sanitize(dst->s.changes[i].symbol);
}

static void reading_free(reading_t *r) {
    free(r->s.labs);
    free(r->s.regimes);
    free(r->s.changes);
    memset(r, 0, sizeof *r);
}

static int cmp_lab_rate(const void *key, const void *elem) {
    return strcmp(key, ((const lab_rate_t *)elem)->id);
}

/* Queue rates from prev to last; lab rates from each lab's heartbeats. */
static void compute_rates(monitor_t *m) {
    const reading_t *a = &m->prev, *b = &m->last;
    m->rates_valid = a->valid;
    double dt = a->valid && b->mono_us > a->mono_us ? (double)(b->mono_us - a->mono_us) / 1e6 : 0;
    for (int i = 0; i < OPS_NQUEUES; i++) {
        m->in_rate[i] = m->out_rate[i] = -1;
        if (dt <= 0 || !a->read_known[i] || !b->read_known[i]) continue;
        const cga_queue_info_t *qa = &a->s.queues[i], *qb = &b->s.queues[i];
        /* added = entries-read + lag; acknowledged = entries-read - pending. A counter that went
         * back (Redis restarted without its data, a group recreated) gives no rate. */
        int64_t in = (int64_t)(b->read[i] + qb->lag) - (int64_t)(a->read[i] + qa->lag);
        int64_t out = ((int64_t)b->read[i] - (int64_t)qb->pending) -
                      ((int64_t)a->read[i] - (int64_t)qa->pending);
        if (in >= 0) m->in_rate[i] = (double)in / dt;
        if (out >= 0) m->out_rate[i] = (double)out / dt;
    }
    lab_rate_t *labs = cga_calloc(b->s.nlabs ? b->s.nlabs : 1, sizeof *labs);
    for (size_t i = 0; i < b->s.nlabs; i++) {
        const ops_lab_row_t *r = &b->s.labs[i];
        lab_rate_t *n = &labs[i];
        const lab_rate_t *o = m->nlabs ? bsearch(r->id, m->labs, m->nlabs, sizeof *m->labs,
                                                 cmp_lab_rate)
                                       : NULL;
        snprintf(n->id, sizeof n->id, "%s", r->id);
        n->ts_us = r->ts_us;
        n->processed = r->processed;
        n->failed = r->failed;
        n->rate = n->fail_rate = -1;
        if (!o) continue;
        if (r->ts_us == o->ts_us) { /* the same heartbeat: the same rate */
            *n = *o;
        } else if (r->ts_us > o->ts_us && r->processed >= o->processed &&
                   r->failed >= o->failed) {
            double s = (double)(r->ts_us - o->ts_us) / 1e6;
            n->rate = (double)(r->processed - o->processed) / s;
            n->fail_rate = (double)(r->failed - o->failed) / s;
        } /* else: a restarted lab under the same id: from scratch */
    }
    free(m->labs);
    m->labs = labs; /* in the order of b->s.labs: sorted by id */
    m->nlabs = b->s.nlabs;
}

/* ---- frames ------------------------------------------------------------------------------- */

static void line(monitor_t *m, const char *fmt, ...) CGA_PRINTF(2, 3);
static void line(monitor_t *m, const char *fmt, ...) {
    char buf[LINE_CAP];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
    while (n > 0 && buf[n - 1] == ' ') n--; /* no trailing blanks */
    if (m->len + (size_t)n + 2 > m->cap) {
        m->cap = (m->len + (size_t)n + 2) * 2;
        m->text = cga_realloc(m->text, m->cap);
    }
    memcpy(m->text + m->len, buf, (size_t)n);
    m->len += (size_t)n;
    m->text[m->len++] = '\n';
    m->text[m->len] = '\0';
}

static void build_queues(monitor_t *m, const reading_t *r, int live) {
    line(m, "%-8s %9s %9s %9s %9s %8s %8s %7s %5s", "QUEUE", "LENGTH", "LAG", "PENDING", "DEPTH",
         "IN/s", "OUT/s", "DEAD", "CONS");
    for (int i = 0; i < OPS_NQUEUES; i++) {
        const cga_queue_info_t *q = &r->s.queues[i];
        char in[32], out[32];
        fmt_rate(in, sizeof in, live && m->rates_valid ? m->in_rate[i] : -1);
        fmt_rate(out, sizeof out, live && m->rates_valid ? m->out_rate[i] : -1);
        line(m, "%-8s %9" PRIu64 " %9" PRIu64 " %9" PRIu64 " %9" PRIu64 " %8s %8s %7" PRIu64
             " %5" PRIu64, ops_queue_names[i], q->length, q->lag, q->pending, q->lag + q->pending,
             in, out, q->dead, q->consumers);
    }
    double tasks = -1, failed = -1;
    for (size_t i = 0; live && i < m->nlabs; i++) {
        if (m->labs[i].rate < 0) continue;
        tasks = (tasks < 0 ? 0 : tasks) + m->labs[i].rate;
        failed = (failed < 0 ? 0 : failed) + m->labs[i].fail_rate;
    }
    char t[32], f[32];
    fmt_rate(t, sizeof t, tasks);
    fmt_rate(f, sizeof f, failed);
    line(m, "throughput %s tasks/s by the labs (%s failed/s); IN/s, OUT/s: entries/s", t, f);
}

static void build_semaphore(monitor_t *m, const reading_t *r, uint64_t now) {
    const ops_snapshot_t *s = &r->s;
    char sem[256];
    ops_semaphore_line(sem, sizeof sem, s, now);
    line(m, "%s", sem);
    if (s->sem_found) line(m, "           %s", s->sem_reason);
}

static void build_labs(monitor_t *m, const reading_t *r, int live, uint64_t now) {
    const ops_snapshot_t *s = &r->s;
    line(m, "labs alive: %zu", s->nlabs);
    if (!s->nlabs) return;
    int wi = 2;
    for (size_t i = 0; i < s->nlabs; i++) {
        int a = width_of(s->labs[i].id, 2, 48);
        if (a > wi) wi = a;
    }
    line(m, "%-*s %10s %8s %7s %8s %9s  %-7s  %s", wi, "ID", "PROCESSED", "RATE/s", "FAILED",
         "INFLIGHT", "HEARTBEAT", "STATE", "PLUGINS");
    for (size_t i = 0; i < s->nlabs; i++) {
        const ops_lab_row_t *l = &s->labs[i];
        char rate[32];
        fmt_rate(rate, sizeof rate, live && i < m->nlabs ? m->labs[i].rate : -1);
        line(m, "%-*.*s %10" PRIu64 " %8s %7" PRIu64 " %8" PRIu32 " %7.1f s  %-7s  %s", wi, wi,
             l->id, l->processed, rate, l->failed, l->inflight, ops_age_s(l->ts_us, now),
             l->stalled ? "STALLED" : "ok", l->plugins);
    }
}

static void build_regimes(monitor_t *m, const reading_t *r, uint64_t now) {
    const ops_snapshot_t *s = &r->s;
    line(m, "regimes: %zu symbols", s->nregimes);
    int ws = 6;
    for (size_t i = 0; i < s->nregimes; i++) {
        int a = width_of(s->regimes[i].symbol, 6, 32);
        if (a > ws) ws = a;
    }
    for (size_t i = 0; i < s->nchanges; i++) {
        int a = width_of(s->changes[i].symbol, 6, 32);
        if (a > ws) ws = a;
    }
    if (s->nregimes) {
        line(m, "%-*s %-10s %-18s %5s %6s  %s", ws, "SYMBOL", "REGIME", "SINCE (DATA TIME)",
             "CONF", "SEQ", "CHANGED");
        for (size_t i = 0; i < s->nregimes; i++) {
            const ops_regime_row_t *g = &s->regimes[i];
            char since[32];
            ops_fmt_utc(since, sizeof since, g->ws, 0);
            line(m, "%-*.*s %-10s %-18s %5.2f %6" PRIu64 "  %.1f s ago", ws, ws, g->symbol,
                 cga_regime_name(g->regime), since, g->conf, g->seq, ops_age_s(g->ts_us, now));
        }
    }
    line(m, "%s", "");
    line(m, "recent regime changes: %zu", s->nchanges);
    if (!s->nchanges) return;
    line(m, "%-12s %-*s %-10s    %-10s %-18s %5s", "CHANGED", ws, "SYMBOL", "FROM", "TO",
         "WINDOW (DATA TIME)", "CONF");
    for (size_t i = s->nchanges; i-- > 0;) { /* newest first */
        const ops_regime_row_t *g = &s->changes[i];
        char when[32], ago[32];
        ops_fmt_utc(when, sizeof when, g->ws, 0);
        snprintf(ago, sizeof ago, "%.1f s ago", ops_age_s(g->ts_us, now));
        line(m, "%-12s %-*.*s %-10s -> %-10s %-18s %5.2f", ago, ws, ws, g->symbol,
             cga_regime_name(g->from), cga_regime_name(g->regime), when, g->conf);
    }
}

/* The frame's lines (without the title) into m->text. */
static void build(monitor_t *m, frame_kind_t kind, uint64_t now) {
    m->len = 0;
    const reading_t *r = &m->last;
    int live = kind == FRAME_LIVE;
    char every[32];
    snprintf(every, sizeof every, "every %.1f s", (double)m->interval_ms / 1000.0);
    if (kind == FRAME_LIVE) {
        line(m, "namespace %s   Redis: connected   %s", m->ns, every);
    } else if (kind == FRAME_DOWN) {
        int rc = cga_redis_last_error(m->redis);
        line(m, "namespace %s   Redis: DISCONNECTED (reconnecting): %s   %s", m->ns,
             cga_strerror(rc ? rc : CGA_ECONNLOST), every);
    } else {
        line(m, "namespace %s   Redis: connected, reading FAILED: %s   %s", m->ns,
             cga_strerror(m->fail), every);
    }
    if (!r->valid) {
        line(m, "%s", "");
        line(m, "no reading yet");
        return;
    }
    if (!live) {
        char at[32];
        ops_fmt_utc(at, sizeof at, (int64_t)(r->wall_us / 1000), 1);
        line(m, "figures as of %s (%.1f s ago)", at, ops_age_s(r->wall_us, now));
    }
    line(m, "%s", "");
    build_queues(m, r, live);
    line(m, "%s", "");
    build_semaphore(m, r, now);
    line(m, "%s", "");
    build_labs(m, r, live, now);
    line(m, "%s", "");
    build_regimes(m, r, now);
    if (r->s.undecodable)
        line(m, "%zu state values could not be decoded (see the log)", r->s.undecodable);
}

/* Columns of the first bytes of s that fit in cols columns (UTF-8 continuation bytes take
 * none): returns the byte count. */
static size_t fit(const char *s, size_t n, size_t cols) {
    size_t c = 0, i = 0;
    for (; i < n; i++) {
        if (((unsigned char)s[i] & 0xc0) == 0x80) continue;
        if (c == cols) break;
        c++;
    }
    return i;
}

typedef struct out_s {
    char *p;
    size_t len, cap;
} out_t;

static void put(out_t *o, const char *s, size_t n) {
    if (o->len + n > o->cap) {
        o->cap = (o->len + n) * 2 + 256;
        o->p = cga_realloc(o->p, o->cap);
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void puts_(out_t *o, const char *s) {
    put(o, s, strlen(s));
}

/* The terminal gets each frame in one write (no flicker); stdio is not used there. */
static int write_all(const char *p, size_t n) {
    while (n > 0) {
        ssize_t k = write(STDOUT_FILENO, p, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) { /* shares a non-blocking tty */
                struct pollfd pfd = {.fd = STDOUT_FILENO, .events = POLLOUT};
                poll(&pfd, 1, 1000);
                continue;
            }
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static void quit(monitor_t *m);

/* Writes the frame in m->text: in place on a terminal, else after a "---" line. */
static void output(monitor_t *m, uint64_t wall_us) {
    char when[32];
    ops_fmt_utc(when, sizeof when, (int64_t)(wall_us / 1000), 1);
    int ok, err = 0;
    if (!m->tty) {
        ok = printf("--- cgalpha monitor %s\n%s", when, m->text) >= 0;
        ok = fflush(stdout) == 0 && ok;
        if (!ok) err = errno;
    } else {
        size_t rows = 24, cols = 80;
        struct winsize ws;
        if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0) {
            rows = ws.ws_row;
            cols = ws.ws_col;
        }
        char title[256];
        snprintf(title, sizeof title, "cgalpha monitor   %s%s", when,
                 m->in_open ? "   q: quit" : "");
        size_t nlines = 1;
        for (size_t i = 0; i < m->len; i++) nlines += m->text[i] == '\n';
        out_t o = {0};
        puts_(&o, "\033[H");
        size_t shown = 0;
        const char *p = m->text, *end = m->text + m->len;
        for (size_t row = 0; row < rows; row++) {
            puts_(&o, "\033[2K");
            if (row == 0) { /* the title, in reverse video across the width */
                size_t n = fit(title, strlen(title), cols);
                puts_(&o, "\033[7m");
                put(&o, title, n);
                for (size_t k = n; k < cols; k++) put(&o, " ", 1);
                puts_(&o, "\033[0m");
            } else if (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                size_t n = (size_t)(nl - p);
                if (row == rows - 1 && shown + 1 < nlines - 1) { /* more than the screen holds */
                    char more[96];
                    int k = snprintf(more, sizeof more, "... %zu more lines (enlarge the window)",
                                     nlines - 1 - shown);
                    put(&o, more, fit(more, (size_t)k, cols));
                } else {
                    put(&o, p, fit(p, n, cols));
                }
                p = nl + 1;
                shown++;
            } else {
                puts_(&o, "\033[J");
                break;
            }
            if (row + 1 < rows) put(&o, "\n", 1);
        }
        ok = write_all(o.p, o.len) == 0;
        if (!ok) err = errno;
        free(o.p);
    }
    if (!ok && !m->quitting) {
        m->code = CGA_EXIT_FAILURE;
        quit(m);
        ops_error(CMD, "writing to stdout failed: %s", strerror(err));
    }
}

static void draw(monitor_t *m, frame_kind_t kind) {
    if (m->quitting) return;
    uint64_t wall = cga_clock_wall_us();
    build(m, kind, wall);
    output(m, wall);
    m->frames++;
    if (m->count && m->frames >= m->count) quit(m);
}

/* ---- terminal ----------------------------------------------------------------------------- */

static void restore_terminal(monitor_t *m) {
    if (m->screen_on) {
        m->screen_on = 0;
        write_all(ESC_SCREEN_OFF, sizeof ESC_SCREEN_OFF - 1);
        cga_log_set_level(m->log_level);
    }
    if (m->raw) {
        m->raw = 0;
        uv_tty_set_mode(&m->in, UV_TTY_MODE_NORMAL);
        uv_tty_reset_mode();
    }
}

static void quit(monitor_t *m) {
    if (m->quitting) return;
    m->quitting = 1;
    restore_terminal(m);
    cga_app_stop(m->app);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    static char mem[64];
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(mem, sizeof mem);
}

static void on_key(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
    monitor_t *m = s->data;
    if (n < 0) { /* EOF or an error: no more keys (the view goes on) */
        uv_read_stop(s);
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        char c = buf->base[i];
        if (c == 'q' || c == 'Q' || c == 0x03) { /* Ctrl-C: raw mode sends it as a key */
            quit(m);
            return;
        }
    }
}

static void on_winch(uv_signal_t *h, int signum) {
    monitor_t *m = h->data;
    (void)signum;
    if (!m->quitting && m->len) output(m, cga_clock_wall_us());
}

static void on_signal(int signum, void *arg) {
    (void)signum;
    quit(arg);
}

static void start_terminal(monitor_t *m) {
    m->log_level = cga_log_level_current;
    /* Log lines would scribble over the view: off while it shows (unless asked for). */
    if (isatty(STDERR_FILENO) && m->log_level >= CGA_LOG_WARN) cga_log_set_level(CGA_LOG_OFF);
    fflush(stdout);
    write_all(ESC_SCREEN_ON, sizeof ESC_SCREEN_ON - 1);
    m->screen_on = 1;
    if (isatty(STDIN_FILENO) && uv_tty_init(m->loop, &m->in, STDIN_FILENO, 1) == 0) {
        m->in_open = 1;
        m->in.data = m;
        if (uv_tty_set_mode(&m->in, UV_TTY_MODE_RAW) == 0) m->raw = 1;
        uv_read_start((uv_stream_t *)&m->in, on_alloc, on_key);
    }
    if (uv_signal_init(m->loop, &m->winch) == 0) {
        m->winch_open = 1;
        m->winch.data = m;
        uv_signal_start(&m->winch, on_winch, SIGWINCH);
    }
}

/* ---- the reading -------------------------------------------------------------------------- */

static void finish_reading(monitor_t *m) {
    m->reading = 0;
    if (m->quitting) return;
    if (!m->fail) {
        m->fresh.valid = 1;
        m->fresh.mono_us = cga_clock_mono_us();
        m->fresh.wall_us = cga_clock_wall_us();
        reading_t t = m->prev; /* prev <- last <- fresh; the oldest is reused for the next */
        m->prev = m->last;
        m->last = m->fresh;
        m->fresh = t;
        compute_rates(m);
        draw(m, FRAME_LIVE);
    } else {
        draw(m, cga_redis_is_connected(m->redis) ? FRAME_FAILED : FRAME_DOWN);
    }
}

static void answered(monitor_t *m) {
    if (--m->waiting == 0) finish_reading(m);
}

static void on_snapshot(const ops_snapshot_t *s, void *arg) {
    monitor_t *m = arg;
    m->snap_waiting = 0;
    if (s->err)
        m->fail = s->err;
    else
        reading_copy(&m->fresh, s);
    answered(m);
}

static int reply_is(const redisReply *r, const char *s) {
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) &&
           r->len == strlen(s) && memcmp(r->str, s, r->len) == 0;
}

/* XINFO GROUPS: an array of groups, each a flat array of field, value. The group's
 * "entries-read" (Redis 7) counts the entries ever delivered; it is nil before the first
 * delivery (last-delivered-id 0-0: 0) and when Redis cannot tell (then: no rate). */
static void on_xinfo(int status, redisReply *reply, void *arg) {
    xinfo_req_t *req = arg;
    monitor_t *m = req->m;
    if (status == CGA_OK && reply->type == REDIS_REPLY_ARRAY) {
        for (size_t g = 0; g < reply->elements; g++) {
            const redisReply *e = reply->element[g];
            if (e->type != REDIS_REPLY_ARRAY) continue;
            int mine = 0, known = 0;
            long long read = 0;
            for (size_t k = 0; k + 1 < e->elements; k += 2) {
                const redisReply *v = e->element[k + 1];
                if (reply_is(e->element[k], "name")) {
                    mine = reply_is(v, group_names[req->i]);
                } else if (reply_is(e->element[k], "entries-read") &&
                           v->type == REDIS_REPLY_INTEGER && v->integer >= 0) {
                    known = 1;
                    read = v->integer;
                } else if (reply_is(e->element[k], "last-delivered-id") && reply_is(v, "0-0")) {
                    known = 1; /* nothing delivered yet (entries-read is nil then) */
                }
            }
            if (mine) {
                m->fresh.read_known[req->i] = known;
                m->fresh.read[req->i] = (uint64_t)read;
            }
        }
    } /* else (no stream yet, an old Redis, an error): no rate for this queue */
    answered(m);
}

static void start_reading(monitor_t *m) {
    m->reading = 1;
    m->fail = 0;
    m->waiting = 1; /* held while issuing */
    for (int i = 0; i < OPS_NQUEUES; i++) m->fresh.read_known[i] = 0;
    int rc = ops_snapper_take(m->sn, on_snapshot, m);
    if (rc == CGA_OK) {
        m->waiting++;
        m->snap_waiting = 1;
    } else {
        m->fail = rc;
    }
    for (int i = 0; i < OPS_NQUEUES && rc == CGA_OK; i++) {
        if (cga_redis_command(m->redis, CGA_REDIS_FAILFAST, on_xinfo, &m->xreq[i],
                              "XINFO GROUPS %s", m->qkeys[i]) == CGA_OK)
            m->waiting++;
    }
    answered(m);
}

static void on_tick(uv_timer_t *t) {
    monitor_t *m = t->data;
    if (m->quitting) return;
    if (!cga_redis_is_connected(m->redis)) {
        draw(m, FRAME_DOWN); /* the outage, and the last figures (a reading may be queued) */
        return;
    }
    if (m->reading) return; /* the previous one is still in flight: skip this tick */
    start_reading(m);
}

/* ---- the command -------------------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h) {
    monitor_t *m = h->data;
    m->open_handles--;
}

static void on_snapper_closed(void *arg) {
    ((monitor_t *)arg)->snapper_closed = 1;
}

static void close_handle(monitor_t *m, uv_handle_t *h, int *open) {
    if (!*open) return;
    *open = 0;
    m->open_handles++;
    uv_close(h, on_handle_closed);
}

int ops_cmd_monitor(cga_app_t *a) {
    const cga_config_t *cfg = cga_app_config(a);
    monitor_t m = {
        .app = a,
        .loop = cga_app_loop(a),
        .redis = cga_app_redis(a),
        .ns = cga_app_ns(a),
        .interval_ms = (uint64_t)cga_config_int(cfg, "OPS_INTERVAL_MS"),
        .count = (uint64_t)cga_config_int(cfg, "OPS_COUNT"),
        .code = CGA_EXIT_OK,
        .tty = isatty(STDOUT_FILENO),
    };
    int code = ops_connect(a, CMD);
    if (code >= 0) return code;
    for (int i = 0; i < OPS_NQUEUES; i++) {
        cga_key(m.qkeys[i], sizeof m.qkeys[i], m.ns, CGA_KIND_QUEUE, ops_queue_names[i], NULL);
        m.xreq[i] = (xinfo_req_t){&m, i};
    }
    int rc = ops_snapper_create(&m.sn, m.loop, m.redis, m.ns, RECENT);
    if (rc != CGA_OK) {
        ops_error(CMD, "cannot read the namespace: %s", cga_strerror(rc));
        return CGA_EXIT_FAILURE;
    }
    cga_app_on_signal(a, on_signal, &m);
    if (m.tty) start_terminal(&m);
    uv_timer_init(m.loop, &m.timer);
    m.timer.data = &m;
    m.timer_open = 1;
    uv_timer_start(&m.timer, on_tick, 0, m.interval_ms);
    cga_app_run(a);

    quit(&m); /* restores the terminal first: what follows may wait for Redis a little */
    cga_app_on_signal(a, NULL, NULL);
    close_handle(&m, (uv_handle_t *)&m.timer, &m.timer_open);
    if (m.in_open) uv_read_stop((uv_stream_t *)&m.in);
    close_handle(&m, (uv_handle_t *)&m.in, &m.in_open);
    close_handle(&m, (uv_handle_t *)&m.winch, &m.winch_open);
    /* A reading in flight completes without calling back once the snapper closes; the XINFO
     * answers still come (the connection answers or fails every command it accepted). */
    if (m.snap_waiting) {
        m.snap_waiting = 0;
        m.waiting--;
    }
    ops_snapper_close(m.sn, on_snapper_closed, &m);
    while (m.open_handles || !m.snapper_closed || (m.reading && m.waiting))
        uv_run(m.loop, UV_RUN_ONCE);
    reading_free(&m.fresh);
    reading_free(&m.last);
    reading_free(&m.prev);
    free(m.labs);
    free(m.text);
    return m.code;
}
