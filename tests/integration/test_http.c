/* The HTTP endpoints against a real redis-server: /metrics in the Prometheus text format with
 * the real counts, /health following Redis (SIGKILL: 503, restart: 200), a large body that
 * arrives whole, 404/405/HEAD, a port in use, a non-loopback address, port 0 (no server).
 * Requests come from a plain blocking socket client on a second thread while the loop runs on
 * this one (it is a test, not a server). */
#include <arpa/inet.h>
#include <errno.h>
#include <hiredis.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include "cgalpha/app.h"
#include "cgalpha/clock.h"
#include "cgalpha/err.h"
#include "cgalpha/http.h"
#include "cgalpha/metrics.h"
#include "cgalpha/redis.h"
#include "cgalpha/state.h"
#include "prom_check.h"
#include "redis_server.h"
#include "test.h"

static pid_t main_pid;
static cga_test_redis_t srv;

static void stop_server(void) {
    if (getpid() == main_pid) cga_test_redis_stop(&srv);
}

static const cga_app_info_t info = {
    .name = "cgalpha-httptest",
    .summary = "Exercises the HTTP endpoints.",
    .serve_http = 1,
};

/* ---- a blocking HTTP/1.1 client ---------------------------------------------------------- */

typedef struct resp_s {
    int status;
    char *head; /* status line and headers */
    char *body;
    size_t len;
    long content_length; /* -1 when absent */
} resp_t;

static void resp_free(resp_t *r) {
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* The value of header name (case-insensitive), copied into out; "" when absent. */
static const char *header(const resp_t *r, const char *name, char *out, size_t n) {
    out[0] = '\0';
    size_t nl = strlen(name);
    for (const char *p = strstr(r->head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
        const char *h = p + 2;
        if (strncasecmp(h, name, nl) == 0 && h[nl] == ':') {
            h += nl + 1;
            while (*h == ' ') h++;
            const char *e = strstr(h, "\r\n");
            size_t len = e ? (size_t)(e - h) : strlen(h);
            if (len >= n) len = n - 1;
            memcpy(out, h, len);
            out[len] = '\0';
            break;
        }
    }
    return out;
}

/* Sends "METHOD path HTTP/1.1" with Connection: close, reads to EOF. status -1 when the
 * connection failed or the answer was not HTTP. */
static void http_request_ex(int port, const char *method, const char *path, int slow,
                            resp_t *r) {
    memset(r, 0, sizeof *r);
    r->status = -1;
    r->content_length = -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CGA_ASSERT(fd >= 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (slow) { /* a small window, read late: the server's writes must wait for room */
        int small = 4096;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return;
    }
    char req[512];
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s\r\n", method,
                     path, strcmp(method, "POST") == 0 ? "Content-Length: 0\r\n" : "");
    CGA_ASSERT(write(fd, req, (size_t)n) == n);
    if (slow) usleep(300 * 1000);
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 65536 > cap) buf = realloc(buf, cap *= 2);
        ssize_t k = read(fd, buf + len, cap - len - 1);
        if (k <= 0) break;
        len += (size_t)k;
    }
    close(fd);
    buf[len] = '\0';
    char *sep = strstr(buf, "\r\n\r\n");
    if (!sep || sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1) {
        r->status = -1;
        free(buf);
        return;
    }
    r->head = strndup(buf, (size_t)(sep - buf) + 2);
    r->len = len - (size_t)(sep + 4 - buf);
    r->body = malloc(r->len + 1);
    memcpy(r->body, sep + 4, r->len);
    r->body[r->len] = '\0';
    free(buf);
    char cl[32];
    if (header(r, "Content-Length", cl, sizeof cl)[0]) r->content_length = atol(cl);
}

static void http_request(int port, const char *method, const char *path, resp_t *r) {
    http_request_ex(port, method, path, 0, r);
}

/* The request runs on a thread; this thread runs the loop until it is answered. */
typedef struct fetch_s {
    int port;
    const char *method, *path;
    int slow;
    int keepalive; /* two GETs on one connection: status1 and resp */
    int status1;
    resp_t resp;
    uv_async_t async;
    atomic_int done;
} fetch_t;

/* Two GETs of f->path on one kept-alive connection, 200 ms apart (as Prometheus scrapes): the
 * first answer is read by its Content-Length, the second (Connection: close) to EOF. */
static void keepalive_twice(fetch_t *f) {
    f->status1 = f->resp.status = -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CGA_ASSERT(connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
    char req[256], buf[8192];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", f->path);
    CGA_ASSERT(write(fd, req, (size_t)n) == n);
    size_t len = 0;
    long want = -1;
    for (;;) {
        ssize_t k = read(fd, buf + len, sizeof buf - len - 1);
        if (k <= 0) break;
        len += (size_t)k;
        buf[len] = '\0';
        char *sep = strstr(buf, "\r\n\r\n");
        char *cl = strstr(buf, "\r\nContent-Length:") /* as MHD spells it */;
        if (sep && cl) want = (long)(sep + 4 - buf) + atol(cl + 17);
        if (want >= 0 && (long)len >= want) break;
    }
    CGA_ASSERT(want >= 0 && (long)len == want);
    CGA_ASSERT(sscanf(buf, "HTTP/1.1 %d", &f->status1) == 1);
    usleep(200 * 1000);
    n = snprintf(req, sizeof req,
                 "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", f->path);
    CGA_ASSERT(write(fd, req, (size_t)n) == n);
    len = 0;
    ssize_t k;
    while ((k = read(fd, buf + len, sizeof buf - len - 1)) > 0) len += (size_t)k;
    buf[len] = '\0';
    close(fd);
    CGA_ASSERT(sscanf(buf, "HTTP/1.1 %d", &f->resp.status) == 1);
}

static void *fetch_thread(void *arg) {
    fetch_t *f = arg;
    if (f->keepalive)
        keepalive_twice(f);
    else
        http_request_ex(f->port, f->method, f->path, f->slow, &f->resp);
    atomic_store(&f->done, 1);
    uv_async_send(&f->async);
    return NULL;
}

static void on_async(uv_async_t *h) {
    (void)h;
}

static void fetch(uv_loop_t *loop, int port, const char *method, const char *path, resp_t *out) {
    fetch_t f = {.port = port, .method = method, .path = path};
    uv_async_init(loop, &f.async, on_async);
    pthread_t t;
    CGA_ASSERT_EQ(pthread_create(&t, NULL, fetch_thread, &f), 0);
    while (!atomic_load(&f.done)) uv_run(loop, UV_RUN_ONCE);
    pthread_join(t, NULL);
    uv_close((uv_handle_t *)&f.async, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    *out = f.resp;
}

static void get(uv_loop_t *loop, int port, const char *path, resp_t *out) {
    fetch(loop, port, "GET", path, out);
}

/* Runs the loop for ms. */
static void on_sleep_timer(uv_timer_t *t) {
    *(int *)t->data = 1;
}

static void run_for(uv_loop_t *loop, unsigned ms) {
    int fired = 0;
    uv_timer_t t;
    uv_timer_init(loop, &t);
    t.data = &fired;
    uv_timer_start(&t, on_sleep_timer, ms, 0);
    while (!fired) uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

static double metric(const char *text, const char *series) {
    double v = -1;
    if (!cga_prom_value(text, series, &v)) CGA_FAIL_("no sample %s in /metrics", series);
    return v;
}

/* ---- capturing stderr -------------------------------------------------------------------- */

typedef struct capture_s {
    int saved;
    char path[64];
} capture_t;

static void cap_begin(capture_t *c) {
    fflush(stderr);
    snprintf(c->path, sizeof c->path, "/tmp/cga-http-cap-XXXXXX");
    int tmp = mkstemp(c->path);
    CGA_ASSERT(tmp >= 0);
    c->saved = dup(2);
    CGA_ASSERT(dup2(tmp, 2) == 2);
    close(tmp);
}

static char *cap_end(capture_t *c) {
    fflush(stderr);
    CGA_ASSERT(dup2(c->saved, 2) == 2);
    close(c->saved);
    FILE *f = fopen(c->path, "r");
    CGA_ASSERT(f != NULL);
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    unlink(c->path);
    fprintf(stderr, "%s", buf);
    return buf;
}

/* ---- apps -------------------------------------------------------------------------------- */

static cga_app_t *create_app(const cga_app_info_t *inf, char **extra, int *code) {
    char *argv[32];
    int argc = 0;
    argv[argc++] = "--redis-host";
    argv[argc++] = srv.sock;
    argv[argc++] = "--redis-backoff-cap-ms";
    argv[argc++] = "200";
    for (int i = 0; extra && extra[i]; i++) argv[argc++] = extra[i];
    argv[argc] = NULL;
    cga_app_t *a = NULL;
    cga_app_create(&a, code, inf, argc, argv);
    return a;
}

/* An app serving on a free port, connected to Redis. */
static cga_app_t *start_app(int *port) {
    *port = cga_test_free_port();
    char p[16];
    snprintf(p, sizeof p, "%d", *port);
    int code = 99;
    cga_app_t *a = create_app(&info, (char *[]){"--http-port", p, NULL}, &code);
    CGA_ASSERT(a != NULL);
    CGA_ASSERT_EQ(code, -1);
    CGA_ASSERT(cga_app_http(a) != NULL);
    CGA_ASSERT_EQ(cga_http_port(cga_app_http(a)), *port);
    CGA_ASSERT_OK(cga_app_wait_connected(a, 5000));
    return a;
}

static void free_app(cga_app_t *a) {
    capture_t cap;
    cap_begin(&cap);
    cga_app_free(a);
    char *log = cap_end(&cap);
    CGA_ASSERT(strstr(log, "BUG:") == NULL); /* uv_loop_close() failed */
    free(log);
}

/* ---- the module on its own --------------------------------------------------------------- */

static char *big_text;
static size_t big_len;

static void on_big(const char *path, cga_http_response_t *res, void *arg) {
    (void)arg;
    CGA_ASSERT_STREQ(path, "/big");
    res->content_type = "text/plain; version=0.0.4; charset=utf-8";
    res->body = malloc(big_len);
    memcpy(res->body, big_text, big_len);
    res->len = big_len;
}

/* 16 MB: more than the kernel buffers of both ends (tcp_wmem max 4 MB) */
#define HUGE_LEN (16u << 20)

static char huge_byte(size_t i) {
    return i % 61 == 60 ? '\n' : (char)('a' + (i * 7 + i / 61) % 26);
}

static void on_huge(const char *path, cga_http_response_t *res, void *arg) {
    (void)path;
    (void)arg;
    res->body = malloc(HUGE_LEN);
    for (size_t i = 0; i < HUGE_LEN; i++) res->body[i] = huge_byte(i);
    res->len = HUGE_LEN;
}

static void on_hello(const char *path, cga_http_response_t *res, void *arg) {
    (*(int *)arg)++;
    cga_http_respond(res, 202, "application/json", "{\"path\":\"%s\"}", path);
}

static int closed_done;

static void on_closed(void *arg) {
    (void)arg;
    closed_done++;
}

static void on_close_me(const char *path, cga_http_response_t *res, void *arg) {
    (void)path;
    cga_http_close(arg, on_closed, NULL); /* from inside a handler */
    cga_http_respond(res, 200, NULL, "bye\n");
}

static void test_module(void) {
    uv_loop_t loop;
    CGA_ASSERT_OK(uv_loop_init(&loop));

    /* 5,000 series: a body far larger than a socket buffer */
    cga_metrics_t *m = NULL;
    CGA_ASSERT_OK(cga_metrics_create(&m));
    for (int i = 0; i < 5000; i++) {
        char l[64] = "", v[16];
        snprintf(v, sizeof v, "s%04d", i);
        CGA_ASSERT_OK(cga_metrics_label_append(l, sizeof l, "series", v));
        cga_counter_add(cga_metrics_counter(m, "cgalpha_test_big_total", "many series", l),
                        (uint64_t)i);
    }
    CGA_ASSERT_OK(cga_metrics_render(m, &big_text, &big_len));
    cga_metrics_free(m);
    CGA_ASSERT_OP(big_len, >, 200000);

    cga_http_t *h = NULL;
    CGA_ASSERT_EQ(cga_http_create(&h, &loop, "nonsense", 0), CGA_EINVAL);
    CGA_ASSERT(h == NULL);
    CGA_ASSERT_EQ(cga_http_create(&h, &loop, "127.0.0.1", 70000), CGA_EINVAL);
    CGA_ASSERT_OK(cga_http_create(&h, &loop, "127.0.0.1", 0)); /* the kernel picks */
    int port = cga_http_port(h);
    CGA_ASSERT_OP(port, >, 0);
    int hellos = 0;
    CGA_ASSERT_OK(cga_http_route(h, "/big", on_big, NULL));
    CGA_ASSERT_OK(cga_http_route(h, "/huge", on_huge, NULL));
    CGA_ASSERT_OK(cga_http_route(h, "/hello", on_hello, &hellos));
    CGA_ASSERT_EQ(cga_http_route(h, "/hello", on_hello, &hellos), CGA_EEXIST);
    CGA_ASSERT_EQ(cga_http_route(h, "hello", on_hello, &hellos), CGA_EINVAL);

    /* the same port again: a clear error, nothing left open */
    cga_http_t *h2 = NULL;
    CGA_ASSERT_EQ(cga_http_create(&h2, &loop, "127.0.0.1", port), -EADDRINUSE);
    CGA_ASSERT(h2 == NULL);

    resp_t r;
    for (int round = 0; round < 3; round++) {
        get(&loop, port, "/big", &r);
        CGA_ASSERT_EQ(r.status, 200);
        CGA_ASSERT_EQ(r.content_length, big_len);
        CGA_ASSERT_EQ(r.len, big_len);
        CGA_ASSERT(memcmp(r.body, big_text, big_len) == 0);
        char ct[128];
        CGA_ASSERT_STREQ(header(&r, "Content-Type", ct, sizeof ct),
                         "text/plain; version=0.0.4; charset=utf-8");
        CGA_ASSERT_OP(cga_prom_validate(r.body), ==, 5000);
        resp_free(&r);
    }

    get(&loop, port, "/hello?x=1", &r); /* the query is not part of the path */
    CGA_ASSERT_EQ(r.status, 202);
    CGA_ASSERT_STREQ(r.body, "{\"path\":\"/hello\"}");
    resp_free(&r);

    fetch(&loop, port, "HEAD", "/hello", &r);
    CGA_ASSERT_EQ(r.status, 202);
    CGA_ASSERT_EQ(r.len, 0);
    resp_free(&r);
    CGA_ASSERT_EQ(hellos, 2);

    get(&loop, port, "/nothing", &r);
    CGA_ASSERT_EQ(r.status, 404);
    resp_free(&r);
    get(&loop, port, "/hello/", &r);
    CGA_ASSERT_EQ(r.status, 404);
    resp_free(&r);

    static const char *const methods[] = {"POST", "PUT", "DELETE", "OPTIONS"};
    for (size_t i = 0; i < 4; i++) {
        fetch(&loop, port, methods[i], "/hello", &r);
        CGA_ASSERT_EQ(r.status, 405);
        char allow[64];
        CGA_ASSERT_STREQ(header(&r, "Allow", allow, sizeof allow), "GET, HEAD");
        resp_free(&r);
    }
    CGA_ASSERT_EQ(hellos, 2); /* handlers run for GET and HEAD only */

    /* a slow reader with a small window: the writes wait for room (EAGAIN) and resume when the
     * socket drains (MHD's epoll descriptor wakes the loop) */
    fetch_t slow = {.port = port, .method = "GET", .path = "/huge", .slow = 1};
    uv_async_init(&loop, &slow.async, on_async);
    pthread_t st;
    CGA_ASSERT_EQ(pthread_create(&st, NULL, fetch_thread, &slow), 0);
    while (!atomic_load(&slow.done)) uv_run(&loop, UV_RUN_ONCE);
    pthread_join(st, NULL);
    CGA_ASSERT_EQ(slow.resp.status, 200);
    CGA_ASSERT_EQ(slow.resp.content_length, HUGE_LEN);
    CGA_ASSERT_EQ(slow.resp.len, HUGE_LEN);
    for (size_t i = 0; i < HUGE_LEN; i++)
        if (slow.resp.body[i] != huge_byte(i)) CGA_FAIL_("/huge: byte %zu differs", i);
    resp_free(&slow.resp);
    uv_close((uv_handle_t *)&slow.async, NULL);

    /* two requests on one kept-alive connection, as a scraper does */
    fetch_t ka = {.port = port, .path = "/hello", .keepalive = 1};
    uv_async_init(&loop, &ka.async, on_async);
    CGA_ASSERT_EQ(pthread_create(&st, NULL, fetch_thread, &ka), 0);
    while (!atomic_load(&ka.done)) uv_run(&loop, UV_RUN_ONCE);
    pthread_join(st, NULL);
    CGA_ASSERT_EQ(ka.status1, 202);
    CGA_ASSERT_EQ(ka.resp.status, 202);
    uv_close((uv_handle_t *)&ka.async, NULL);
    CGA_ASSERT_EQ(hellos, 4);

    /* several clients at once, each served whole */
    enum { NCLIENTS = 4 };
    fetch_t f[NCLIENTS];
    pthread_t t[NCLIENTS];
    for (int i = 0; i < NCLIENTS; i++) {
        memset(&f[i], 0, sizeof f[i]);
        f[i].port = port;
        f[i].method = "GET";
        f[i].path = "/big";
        uv_async_init(&loop, &f[i].async, on_async);
        CGA_ASSERT_EQ(pthread_create(&t[i], NULL, fetch_thread, &f[i]), 0);
    }
    for (int i = 0; i < NCLIENTS; i++) {
        while (!atomic_load(&f[i].done)) uv_run(&loop, UV_RUN_ONCE);
        pthread_join(t[i], NULL);
        CGA_ASSERT_EQ(f[i].resp.status, 200);
        CGA_ASSERT_EQ(f[i].resp.len, big_len);
        CGA_ASSERT(memcmp(f[i].resp.body, big_text, big_len) == 0);
        resp_free(&f[i].resp);
        uv_close((uv_handle_t *)&f[i].async, NULL);
    }

    /* closed from inside a handler: the server goes, the loop closes */
    CGA_ASSERT_OK(cga_http_route(h, "/close", on_close_me, h));
    get(&loop, port, "/close", &r);
    resp_free(&r);
    run_for(&loop, 10);
    CGA_ASSERT_EQ(closed_done, 1);
    http_request(port, "GET", "/hello", &r);
    CGA_ASSERT_EQ(r.status, -1); /* nothing listens any more */
    resp_free(&r);

    /* IPv6 loopback, and the address checks */
    int lo = -1;
    CGA_ASSERT_OK(cga_http_addr_parse("::1", &lo));
    CGA_ASSERT_EQ(lo, 1);
    CGA_ASSERT_OK(cga_http_addr_parse("127.1.2.3", &lo));
    CGA_ASSERT_EQ(lo, 1);
    CGA_ASSERT_OK(cga_http_addr_parse("localhost", &lo));
    CGA_ASSERT_EQ(lo, 1);
    CGA_ASSERT_OK(cga_http_addr_parse("0.0.0.0", &lo));
    CGA_ASSERT_EQ(lo, 0);
    CGA_ASSERT_OK(cga_http_addr_parse("::", &lo));
    CGA_ASSERT_EQ(lo, 0);
    CGA_ASSERT_OK(cga_http_addr_parse("10.1.2.3", &lo));
    CGA_ASSERT_EQ(lo, 0);
    CGA_ASSERT_EQ(cga_http_addr_parse("example.com", &lo), CGA_EINVAL);
    CGA_ASSERT_EQ(cga_http_addr_parse("", &lo), CGA_EINVAL);
    CGA_ASSERT_EQ(cga_http_addr_parse("127.0.0.1:80", &lo), CGA_EINVAL);
    if (cga_http_create(&h, &loop, "::1", 0) == CGA_OK) { /* where the host has IPv6 */
        cga_http_close(h, on_closed, NULL);
        run_for(&loop, 1);
        CGA_ASSERT_EQ(closed_done, 2);
    }

    free(big_text);
    big_text = NULL;
    uv_run(&loop, UV_RUN_NOWAIT);
    CGA_ASSERT_EQ(uv_loop_close(&loop), 0);
}

/* ---- /metrics ---------------------------------------------------------------------------- */

typedef struct pings_s {
    int ok;
    int left;
} pings_t;

static void on_ping(int status, struct redisReply *reply, void *arg) {
    (void)reply;
    pings_t *p = arg;
    p->left--;
    if (status == CGA_OK) p->ok++;
}

static void on_state_get(int status, const char *data, size_t len, void *arg) {
    (void)data;
    (void)len;
    int *left = arg;
    CGA_ASSERT(status == CGA_OK || status == CGA_ENOTFOUND);
    (*left)--;
}

static void on_state_set(int status, void *arg) {
    CGA_ASSERT_OK(status);
    (*(int *)arg)--;
}

/* hits GETs of a key that exists and misses of one that does not */
static void state_gets(uv_loop_t *loop, cga_state_t *st, int hits, int misses) {
    int left = 1 + hits + misses;
    CGA_ASSERT_OK(cga_state_set(st, "present", "x", 1, 0, on_state_set, &left));
    for (int i = 0; i < hits; i++)
        CGA_ASSERT_OK(cga_state_get(st, "present", on_state_get, &left));
    for (int i = 0; i < misses; i++)
        CGA_ASSERT_OK(cga_state_get(st, "absent", on_state_get, &left));
    while (left > 0) uv_run(loop, UV_RUN_ONCE);
}

static int collector_runs;

static void collect(cga_metrics_t *m, void *arg) {
    collector_runs++;
    cga_gauge_set(cga_metrics_gauge(m, "cgalpha_test_collected", "set by a collector", NULL),
                  *(double *)arg);
}

static void test_metrics(void) {
    int port;
    cga_app_t *a = start_app(&port);
    uv_loop_t *loop = cga_app_loop(a);
    cga_metrics_t *m = cga_app_metrics(a);
    CGA_ASSERT(m != NULL);
    CGA_ASSERT(cga_app_metrics(a) == m);
    cga_counter_t *c = cga_metrics_counter(m, "cgalpha_test_things_total", "things", NULL);
    cga_histogram_t *hist =
        cga_metrics_histogram(m, "cgalpha_test_latency_seconds", "latency", NULL, NULL, 0);
    cga_counter_add(c, 3);
    cga_histogram_observe(hist, 0.002);
    cga_histogram_observe(hist, 0.3);
    double collected = 42.5;
    CGA_ASSERT_OK(cga_app_on_metrics(a, collect, &collected));

    resp_t r;
    get(loop, port, "/metrics", &r);
    CGA_ASSERT_EQ(r.status, 200);
    char ct[128];
    CGA_ASSERT_STREQ(header(&r, "Content-Type", ct, sizeof ct),
                     "text/plain; version=0.0.4; charset=utf-8");
    CGA_ASSERT_EQ(r.content_length, r.len);
    CGA_ASSERT_OP(cga_prom_validate(r.body), >, 20);
    CGA_ASSERT_EQ(metric(r.body, "cgalpha_test_things_total"), 3);
    CGA_ASSERT_EQ(metric(r.body, "cgalpha_test_latency_seconds_count"), 2);
    CGA_ASSERT_EQ(metric(r.body, "cgalpha_test_latency_seconds_bucket{le=\"0.0025\"}"), 1);
    CGA_ASSERT_EQ(metric(r.body, "cgalpha_test_collected"), 42.5);
    CGA_ASSERT_EQ(collector_runs, 1);
    CGA_ASSERT_EQ(metric(r.body, "cgalpha_build_info{process=\"cgalpha-httptest\",version=\""
                                 CGA_VERSION_STRING "\"}"),
                  1);
    CGA_ASSERT_EQ(metric(r.body, "cgalpha_redis_connected{conn=\"cmd\"}"), 1);
    CGA_ASSERT_EQ(metric(r.body, "cgalpha_redis_breaker_state{conn=\"cmd\",state=\"closed\"}"), 1);
    CGA_ASSERT_EQ(metric(r.body, "cgalpha_redis_breaker_state{conn=\"cmd\",state=\"open\"}"), 0);
    CGA_ASSERT_EQ(metric(r.body, "cgalpha_redis_connects_total{conn=\"cmd\"}"), 1);
    CGA_ASSERT_OP(metric(r.body, "cgalpha_uptime_seconds"), >, 0);
    double sent0 = metric(r.body, "cgalpha_redis_commands_sent_total{conn=\"cmd\"}");
    double replies0 = metric(r.body, "cgalpha_redis_replies_total{conn=\"cmd\"}");
    CGA_ASSERT(strstr(r.body, "cgalpha_redis_used_memory_bytes") == NULL); /* not enabled */
    resp_free(&r);

    /* N commands: the counters move by N exactly (nothing else runs on this connection) */
    enum { N = 57 };
    pings_t p = {.left = N};
    for (int i = 0; i < N; i++)
        CGA_ASSERT_OK(cga_redis_command(cga_app_redis(a), 0, on_ping, &p, "PING"));
    while (p.left > 0) uv_run(loop, UV_RUN_ONCE);
    CGA_ASSERT_EQ(p.ok, N);
    cga_counter_add(c, 4);
    collected = -1.25;
    get(loop, port, "/metrics", &r);
    CGA_ASSERT_EQ(r.status, 200);
    cga_prom_validate(r.body);
    CGA_ASSERT_EQ(metric(r.body, "cgalpha_test_things_total"), 7);
    CGA_ASSERT_EQ(metric(r.body, "cgalpha_test_collected"), -1.25);
    CGA_ASSERT_EQ(metric(r.body, "cgalpha_redis_commands_sent_total{conn=\"cmd\"}"), sent0 + N);
    CGA_ASSERT_EQ(metric(r.body, "cgalpha_redis_replies_total{conn=\"cmd\"}"), replies0 + N);
    CGA_ASSERT_EQ(metric(r.body, "cgalpha_redis_commands_in_flight{conn=\"cmd\"}"), 0);
    resp_free(&r);
    cga_app_off_metrics(a, collect, &collected);

    /* the state cache's hits and misses */
    cga_state_t *st = NULL;
    CGA_ASSERT_OK(cga_state_create(&st, cga_app_redis(a), "httptest"));
    state_gets(loop, st, 2, 1); /* before tracking: counted too */
    cga_app_track_state(a, st);
    state_gets(loop, st, 3, 4);
    get(loop, port, "/metrics", &r);
    cga_prom_validate(r.body);
    CGA_ASSERT_EQ(metric(r.body, "cgalpha_state_cache_hits_total"), 5);
    CGA_ASSERT_EQ(metric(r.body, "cgalpha_state_cache_misses_total"), 5);
    resp_free(&r);
    state_gets(loop, st, 1, 0);
    cga_app_track_state(a, NULL); /* before the state goes: its last counts are kept */
    cga_state_free(st);
    CGA_ASSERT_OK(cga_state_create(&st, cga_app_redis(a), "httptest"));
    cga_app_track_state(a, st); /* another one adds to the totals */
    state_gets(loop, st, 0, 2);
    get(loop, port, "/metrics", &r);
    cga_prom_validate(r.body);
    CGA_ASSERT_EQ(metric(r.body, "cgalpha_state_cache_hits_total"), 6);
    CGA_ASSERT_EQ(metric(r.body, "cgalpha_state_cache_misses_total"), 7);
    resp_free(&r);
    cga_app_track_state(a, NULL);
    cga_state_free(st);

    /* the subscription connection gets its own series once it exists */
    cga_redis_t *sub = cga_app_redis_sub(a);
    while (!cga_redis_is_connected(sub)) uv_run(loop, UV_RUN_ONCE);
    /* Redis INFO gauges, as ops enables them */
    redisContext *rc = cga_test_redis_connect(&srv, NULL);
    redisReply *rr = redisCommand(rc, "CONFIG SET maxmemory 123456789");
    CGA_ASSERT(rr && rr->type == REDIS_REPLY_STATUS);
    freeReplyObject(rr);
    cga_app_enable_redis_info(a, 50);
    run_for(loop, 200);
    get(loop, port, "/metrics", &r);
    cga_prom_validate(r.body);
    CGA_ASSERT_EQ(collector_runs, 2); /* removed: not run again */
    CGA_ASSERT_EQ(metric(r.body, "cgalpha_redis_connected{conn=\"sub\"}"), 1);
    CGA_ASSERT_EQ(metric(r.body, "cgalpha_redis_maxmemory_bytes"), 123456789);
    CGA_ASSERT_OP(metric(r.body, "cgalpha_redis_used_memory_bytes"), >, 100000);
    CGA_ASSERT_OP(metric(r.body, "cgalpha_redis_mem_fragmentation_ratio"), >, 0);
    CGA_ASSERT_OP(metric(r.body, "cgalpha_redis_connected_clients"), >=, 3); /* cmd, sub, rc */
    CGA_ASSERT_EQ(metric(r.body, "cgalpha_redis_evicted_keys_total"), 0);
    resp_free(&r);
    rr = redisCommand(rc, "CONFIG SET maxmemory 0");
    freeReplyObject(rr);
    redisFree(rc);

    /* a large registry through the app: 5,000 series arrive whole and valid */
    for (int i = 0; i < 5000; i++) {
        char l[64] = "", v[16];
        snprintf(v, sizeof v, "w%04d", i);
        cga_metrics_label_append(l, sizeof l, "worker", v);
        cga_gauge_set(cga_metrics_gauge(m, "cgalpha_test_wide", "wide", l), i);
    }
    get(loop, port, "/metrics", &r);
    CGA_ASSERT_EQ(r.status, 200);
    CGA_ASSERT_OP(r.len, >, 150000);
    CGA_ASSERT_EQ(r.content_length, r.len);
    CGA_ASSERT_OP(cga_prom_validate(r.body), >, 5000);
    CGA_ASSERT_EQ(metric(r.body, "cgalpha_test_wide{worker=\"w4999\"}"), 4999);
    resp_free(&r);

    /* 404, 405 through the app */
    get(loop, port, "/", &r);
    CGA_ASSERT_EQ(r.status, 404);
    resp_free(&r);
    fetch(loop, port, "POST", "/metrics", &r);
    CGA_ASSERT_EQ(r.status, 405);
    resp_free(&r);
    free_app(a);
}

/* ---- /health ----------------------------------------------------------------------------- */

typedef struct proc_state_s {
    int stalled;
    int degraded;
    int depth;
} proc_state_t;

static void health(cga_health_t *h, void *arg) {
    proc_state_t *s = arg;
    cga_health_int(h, "buffer_depth", s->depth);
    cga_health_bool(h, "stalled", s->stalled);
    cga_health_str(h, "role", "active \"primary\"");
    cga_health_num(h, "ratio", 0.25);
    if (s->degraded) cga_health_status(h, CGA_HEALTH_DEGRADED, "buffering to disk");
    if (s->stalled) cga_health_status(h, CGA_HEALTH_DOWN, "stalled: no progress for 60 s");
}

/* Polls /health until its status is want or ms pass; leaves the last answer in r. */
static void health_until(uv_loop_t *loop, int port, int want, unsigned ms, resp_t *r) {
    uint64_t t0 = cga_clock_mono_ms();
    for (;;) {
        get(loop, port, "/health", r);
        if (r->status == want || cga_clock_mono_ms() - t0 > ms) break;
        resp_free(r);
        run_for(loop, 50);
    }
    if (r->status != want) fprintf(stderr, "/health: %d %s\n", r->status, r->body);
    CGA_ASSERT_EQ(r->status, want);
}

static void test_health(void) {
    int port;
    cga_app_t *a = start_app(&port);
    uv_loop_t *loop = cga_app_loop(a);
    resp_t r;
    get(loop, port, "/health", &r);
    CGA_ASSERT_EQ(r.status, 200);
    char ct[64];
    CGA_ASSERT_STREQ(header(&r, "Content-Type", ct, sizeof ct), "application/json");
    char want[512];
    snprintf(want, sizeof want,
             "{\"status\":\"ok\",\"version\":\"%s\",\"process\":\"cgalpha-httptest\","
             "\"instance\":\"%s\",\"redis\":{\"connected\":true,\"breaker\":\"closed\","
             "\"last_error\":null},\"uptime_s\":",
             CGA_VERSION_STRING, cga_app_instance_id(a));
    CGA_ASSERT(strncmp(r.body, want, strlen(want)) == 0);
    CGA_ASSERT(r.body[r.len - 2] == '}' && r.body[r.len - 1] == '\n');
    resp_free(&r);

    /* the process's own fields and statuses */
    proc_state_t st = {.depth = 12};
    cga_app_set_health(a, health, &st);
    get(loop, port, "/health", &r);
    CGA_ASSERT_EQ(r.status, 200);
    CGA_ASSERT(strstr(r.body, "\"status\":\"ok\",\"version\"") != NULL);
    CGA_ASSERT(strstr(r.body, ",\"buffer_depth\":12,\"stalled\":false,"
                              "\"role\":\"active \\\"primary\\\"\",\"ratio\":0.25}\n") != NULL);
    resp_free(&r);
    st.degraded = 1;
    get(loop, port, "/health", &r);
    CGA_ASSERT_EQ(r.status, 200);
    CGA_ASSERT(strstr(r.body, "{\"status\":\"degraded\",\"reason\":\"buffering to disk\",") ==
               r.body);
    resp_free(&r);
    st.stalled = 1;
    get(loop, port, "/health", &r);
    CGA_ASSERT_EQ(r.status, 503);
    CGA_ASSERT(strstr(r.body, "{\"status\":\"down\",\"reason\":\"stalled: no progress for 60 s\"")
               == r.body);
    CGA_ASSERT(strstr(r.body, "\"stalled\":true") != NULL);
    resp_free(&r);
    st.stalled = st.degraded = 0;

    /* Redis killed: down within a second or two, with the reason */
    uint64_t t0 = cga_clock_mono_ms();
    cga_test_redis_signal(&srv, SIGKILL);
    health_until(loop, port, 503, 2000, &r);
    CGA_ASSERT_OP(cga_clock_mono_ms() - t0, <, 2000);
    CGA_ASSERT(strstr(r.body, "{\"status\":\"down\",\"reason\":\"Redis not connected") == r.body);
    CGA_ASSERT(strstr(r.body, "\"redis\":{\"connected\":false,") != NULL);
    CGA_ASSERT(strstr(r.body, "\"last_error\":null") == NULL);
    CGA_ASSERT(strstr(r.body, "\"buffer_depth\":12") != NULL);
    resp_free(&r);
    get(loop, port, "/metrics", &r);
    cga_prom_validate(r.body);
    CGA_ASSERT_EQ(metric(r.body, "cgalpha_redis_connected{conn=\"cmd\"}"), 0);
    CGA_ASSERT_OP(metric(r.body, "cgalpha_redis_disconnects_total{conn=\"cmd\"}"), >=, 1);
    resp_free(&r);

    /* restarted: ok again */
    t0 = cga_clock_mono_ms();
    cga_test_redis_restart(&srv);
    health_until(loop, port, 200, 3000, &r);
    CGA_ASSERT(strstr(r.body, "\"connected\":true,\"breaker\":\"closed\",\"last_error\":null") !=
               NULL);
    resp_free(&r);
    fprintf(stderr, "health back to 200 %llu ms after the restart\n",
            (unsigned long long)(cga_clock_mono_ms() - t0));
    free_app(a);
}

/* ---- configuration ----------------------------------------------------------------------- */

static void test_config(void) {
    /* port 0 (the default): no server */
    int code = 99;
    cga_app_t *a = create_app(&info, NULL, &code);
    CGA_ASSERT(a != NULL);
    CGA_ASSERT(cga_app_http(a) == NULL);
    CGA_ASSERT(cga_app_metrics(a) != NULL); /* metrics without a server too */
    free_app(a);

    /* a port in use: one clear line, exit 2 */
    int busy_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CGA_ASSERT(bind(busy_fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    CGA_ASSERT(listen(busy_fd, 1) == 0);
    socklen_t sl = sizeof sa;
    getsockname(busy_fd, (struct sockaddr *)&sa, &sl);
    char p[16], want[256];
    snprintf(p, sizeof p, "%d", ntohs(sa.sin_port));
    capture_t cap;
    cap_begin(&cap);
    a = create_app(&info, (char *[]){"--http-port", p, NULL}, &code);
    char *text = cap_end(&cap);
    CGA_ASSERT(a == NULL);
    CGA_ASSERT_EQ(code, CGA_EXIT_USAGE);
    snprintf(want, sizeof want,
             "cgalpha-httptest: CGALPHA_HTTP_PORT: cannot listen on 127.0.0.1:%s: %s (from "
             "--http-port)\n",
             p, cga_strerror(-EADDRINUSE));
    CGA_ASSERT_STREQ(text, want);
    free(text);
    /* the same from the environment */
    setenv("CGALPHA_HTTP_PORT", p, 1);
    cap_begin(&cap);
    a = create_app(&info, NULL, &code);
    text = cap_end(&cap);
    unsetenv("CGALPHA_HTTP_PORT");
    CGA_ASSERT(a == NULL);
    CGA_ASSERT_EQ(code, CGA_EXIT_USAGE);
    CGA_ASSERT(strstr(text, "(from environment)\n") != NULL);
    free(text);
    close(busy_fd);

    /* a non-loopback address only when allowed */
    int port = cga_test_free_port();
    snprintf(p, sizeof p, "%d", port);
    cap_begin(&cap);
    a = create_app(&info, (char *[]){"--http-port", p, "--http-addr", "0.0.0.0", NULL}, &code);
    text = cap_end(&cap);
    CGA_ASSERT(a == NULL);
    CGA_ASSERT_EQ(code, CGA_EXIT_USAGE);
    CGA_ASSERT_STREQ(text, "cgalpha-httptest: CGALPHA_HTTP_ADDR: '0.0.0.0' is not a loopback "
                           "address (from --http-addr): /health and /metrics have no "
                           "authentication; set CGALPHA_HTTP_ALLOW_REMOTE=true "
                           "(--http-allow-remote) to serve them on the network\n");
    free(text);
    a = create_app(&info,
                   (char *[]){"--http-port", p, "--http-addr", "0.0.0.0", "--http-allow-remote",
                              NULL},
                   &code);
    CGA_ASSERT(a != NULL);
    resp_t r;
    get(cga_app_loop(a), port, "/metrics", &r); /* reached through 127.0.0.1 */
    CGA_ASSERT_EQ(r.status, 200);
    resp_free(&r);
    free_app(a);
    /* an address that is not one */
    cap_begin(&cap);
    a = create_app(&info, (char *[]){"--http-port", p, "--http-addr", "metrics.example", NULL},
                   &code);
    text = cap_end(&cap);
    CGA_ASSERT(a == NULL);
    CGA_ASSERT_EQ(code, CGA_EXIT_USAGE);
    CGA_ASSERT(strstr(text, "CGALPHA_HTTP_ADDR: 'metrics.example' is not an IP address") != NULL);
    free(text);
    /* an address this host does not have */
    cap_begin(&cap);
    a = create_app(&info,
                   (char *[]){"--http-port", p, "--http-addr", "192.0.2.1", "--http-allow-remote",
                              NULL},
                   &code);
    text = cap_end(&cap);
    CGA_ASSERT(a == NULL);
    CGA_ASSERT_EQ(code, CGA_EXIT_USAGE);
    snprintf(want, sizeof want, "cgalpha-httptest: CGALPHA_HTTP_ADDR: cannot listen on "
             "192.0.2.1:%s: %s (from --http-addr)\n", p, cga_strerror(-EADDRNOTAVAIL));
    CGA_ASSERT_STREQ(text, want);
    free(text);

    /* a tool (serve_http 0) has no HTTP settings at all */
    cga_app_info_t tool = info;
    tool.serve_http = 0;
    cap_begin(&cap);
    a = create_app(&tool, (char *[]){"--http-port", p, NULL}, &code);
    text = cap_end(&cap);
    CGA_ASSERT(a == NULL);
    CGA_ASSERT_EQ(code, CGA_EXIT_USAGE);
    CGA_ASSERT_STREQ(text, "cgalpha-httptest: unknown option --http-port (see --help)\n");
    free(text);
    setenv("CGALPHA_HTTP_PORT", p, 1); /* a service's environment: ignored by a tool */
    a = create_app(&tool, NULL, &code);
    unsetenv("CGALPHA_HTTP_PORT");
    CGA_ASSERT(a != NULL);
    CGA_ASSERT(cga_app_http(a) == NULL);
    free_app(a);
}

static void test_help(void) {
    fflush(stdout);
    char path[] = "/tmp/cga-http-help-XXXXXX";
    int tmp = mkstemp(path);
    int saved = dup(1);
    dup2(tmp, 1);
    close(tmp);
    int code = 99;
    cga_app_t *a = create_app(&info, (char *[]){"--help", NULL}, &code);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    FILE *f = fopen(path, "r");
    char *out = calloc(1, 65536);
    size_t n = fread(out, 1, 65535, f);
    out[n] = '\0';
    fclose(f);
    unlink(path);
    CGA_ASSERT(a == NULL);
    CGA_ASSERT_EQ(code, CGA_EXIT_OK);
    static const char *const wants[] = {
        "--http-addr VALUE", "CGALPHA_HTTP_ADDR (default: 127.0.0.1)",
        "refused unless CGALPHA_HTTP_ALLOW_REMOTE", "--http-port N",
        "CGALPHA_HTTP_PORT (default: 0; 0..65535)", "0: no HTTP server",
        "--[no-]http-allow-remote", "CGALPHA_HTTP_ALLOW_REMOTE (default: false)",
    };
    for (size_t i = 0; i < sizeof wants / sizeof wants[0]; i++) {
        if (!strstr(out, wants[i])) fprintf(stderr, "--help lacks \"%s\":\n%s", wants[i], out);
        CGA_ASSERT(strstr(out, wants[i]) != NULL);
    }
    free(out);
}

int main(void) {
    main_pid = getpid();
    signal(SIGPIPE, SIG_IGN);
    cga_test_redis_start(&srv, NULL);
    atexit(stop_server);
    CGA_RUN(test_module);
    CGA_RUN(test_help);
    CGA_RUN(test_config);
    CGA_RUN(test_metrics);
    CGA_RUN(test_health);
    return 0;
}
