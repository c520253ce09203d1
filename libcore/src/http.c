#define CGA_LOG_COMPONENT "http"
#include "cgalpha/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "cgalpha/alloc.h"
#include "cgalpha/err.h"
#include "cgalpha/log.h"

/* libmicrohttpd in its external epoll mode: MHD keeps its own epoll set (the listening socket
 * and every connection, edge-triggered) and hands us that set's descriptor. The descriptor is
 * readable while any socket in the set has an event, so one uv_poll_t on it wakes us; MHD_run()
 * then does epoll_wait(0) and serves what is ready. MHD_get_timeout() says when MHD must run
 * again without an event (connection timeouts, or 0 when a connection still has work it could
 * not finish in one turn, e.g. a body larger than the socket buffer, resumed once the socket
 * drains: that case comes back as an event on the epoll descriptor). */

#define MAX_CONNECTIONS 64u
#define IDLE_TIMEOUT_S 10u
#define BACKLOG 64
#define TEXT_PLAIN "text/plain; charset=utf-8"

typedef struct route_s {
    char *path;
    cga_http_handler_cb cb;
    void *arg;
} route_t;

struct cga_http_s {
    uv_loop_t *loop;
    struct MHD_Daemon *d;
    uv_poll_t poll;     /* MHD's epoll descriptor */
    uv_timer_t timer;   /* MHD_get_timeout() */
    int port;
    route_t *routes;
    size_t nroutes, caproutes;
    int in_run;         /* inside MHD_run(): a close from a handler stops MHD after it */
    int closing;
    int pending_closes;
    void (*done)(void *arg);
    void *done_arg;
};

/* ---- addresses ------------------------------------------------------------------------- */

typedef union addr_u {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
} addr_t;

static int parse_addr(const char *addr, int port, addr_t *out, socklen_t *len, int *loopback) {
    memset(out, 0, sizeof *out);
    if (!addr) return CGA_EINVAL;
    if (strcmp(addr, "localhost") == 0) addr = "127.0.0.1";
    if (inet_pton(AF_INET, addr, &out->in4.sin_addr) == 1) {
        out->in4.sin_family = AF_INET;
        out->in4.sin_port = htons((uint16_t)port);
        *len = sizeof out->in4;
        *loopback = (ntohl(out->in4.sin_addr.s_addr) >> 24) == 127;
        return CGA_OK;
    }
    if (inet_pton(AF_INET6, addr, &out->in6.sin6_addr) == 1) {
        out->in6.sin6_family = AF_INET6;
        out->in6.sin6_port = htons((uint16_t)port);
        *len = sizeof out->in6;
        const struct in6_addr *a = &out->in6.sin6_addr;
        *loopback = IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
        return CGA_OK;
    }
    return CGA_EINVAL;
}

int cga_http_addr_parse(const char *addr, int *is_loopback) {
    addr_t a;
    socklen_t len;
    int lo = 0;
    int rc = parse_addr(addr, 0, &a, &len, &lo);
    if (rc == CGA_OK && is_loopback) *is_loopback = lo;
    return rc;
}

/* A listening socket of our own, so that bind errors come back as errno values (MHD would only
 * log them). Returns the descriptor or a negative errno. */
static int open_listener(const addr_t *a, socklen_t len, int *port) {
    int fd = socket(a->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one); /* restarts: TIME_WAIT */
    if (a->sa.sa_family == AF_INET6) (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    addr_t bound;
    socklen_t blen = sizeof bound;
    if (bind(fd, &a->sa, len) != 0 || listen(fd, BACKLOG) != 0 ||
        getsockname(fd, &bound.sa, &blen) != 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    *port = ntohs(bound.sa.sa_family == AF_INET6 ? bound.in6.sin6_port : bound.in4.sin_port);
    return fd;
}

/* ---- responses ------------------------------------------------------------------------- */

void cga_http_respond(cga_http_response_t *res, int status, const char *content_type,
                      const char *fmt, ...) {
    res->status = status;
    if (content_type) res->content_type = content_type;
    free(res->body);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    res->body = cga_malloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(res->body, (size_t)n + 1, fmt, ap);
    va_end(ap);
    res->len = (size_t)n;
}

static const route_t *find_route(const cga_http_t *h, const char *path) {
    for (size_t i = 0; i < h->nroutes; i++)
        if (strcmp(h->routes[i].path, path) == 0) return &h->routes[i];
    return NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    static int headers_seen; /* a marker for *con_cls */
    cga_http_t *h = cls;
    (void)version;
    (void)upload_data;
    cga_http_response_t res = {.status = 200, .content_type = TEXT_PLAIN};
    int get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    /* MHD calls once when the headers are in, again for each piece of a body, and once more at
     * the end. A GET is answered at the end: a response queued earlier makes MHD close the
     * connection after it (no keep-alive, which scrapers use). Any other method is refused at
     * once, its body unread (MHD then closes the connection). */
    if (get && !*con_cls) {
        *con_cls = &headers_seen;
        return MHD_YES;
    }
    if (get && *upload_data_size > 0) { /* a GET with a body: ignored */
        *upload_data_size = 0;
        return MHD_YES;
    }
    const route_t *r = get ? find_route(h, url) : NULL;
    if (!get)
        cga_http_respond(&res, MHD_HTTP_METHOD_NOT_ALLOWED, TEXT_PLAIN,
                         "method not allowed (GET or HEAD)\n");
    else if (!r)
        cga_http_respond(&res, MHD_HTTP_NOT_FOUND, TEXT_PLAIN, "not found\n");
    else
        r->cb(url, &res, r->arg);

    struct MHD_Response *resp;
    if (res.body && res.len > 0) {
        resp = MHD_create_response_from_buffer(res.len, res.body, MHD_RESPMEM_MUST_FREE);
        if (!resp) free(res.body);
    } else {
        free(res.body);
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    }
    if (!resp) return MHD_NO; /* drops the connection */
    enum MHD_Result ok = MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                                 res.content_type ? res.content_type
                                                                  : TEXT_PLAIN);
    if (ok == MHD_YES && res.cache_control)
        ok = MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, res.cache_control);
    if (ok == MHD_YES && !get)
        ok = MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    if (ok == MHD_YES)
        ok = MHD_queue_response(conn, res.status > 0 ? (unsigned)res.status : 500u, resp);
    MHD_destroy_response(resp);
    return ok;
}

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
#endif
static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    if (CGA_LOG_DEBUG < cga_log_level_current) return;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) buf[--n] = '\0';
    CGA_LOG(CGA_LOG_DEBUG, 0, "libmicrohttpd: %s", buf);
}
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

/* ---- the loop -------------------------------------------------------------------------- */

static void on_timer(uv_timer_t *t);

static void arm_timer(cga_http_t *h) {
    MHD_UNSIGNED_LONG_LONG ms = 0;
    if (MHD_get_timeout(h->d, &ms) == MHD_YES)
        uv_timer_start(&h->timer, on_timer, (uint64_t)ms, 0);
    else
        uv_timer_stop(&h->timer);
}

static void run_mhd(cga_http_t *h) {
    if (h->closing) return;
    h->in_run = 1;
    MHD_run(h->d);
    h->in_run = 0;
    if (h->closing) { /* closed from a handler: MHD could not be stopped from inside */
        MHD_stop_daemon(h->d);
        h->d = NULL;
        return;
    }
    arm_timer(h);
}

static void on_poll(uv_poll_t *p, int status, int events) {
    (void)events;
    if (status < 0) CGA_LOG(CGA_LOG_DEBUG, status, "poll on the epoll descriptor");
    run_mhd(p->data);
}

static void on_timer(uv_timer_t *t) {
    run_mhd(t->data);
}

/* ---- create / close -------------------------------------------------------------------- */

int cga_http_create(cga_http_t **out, struct uv_loop_s *loop, const char *addr, int port) {
    *out = NULL;
    if (port < 0 || port > 65535) return CGA_EINVAL;
    addr_t a;
    socklen_t alen;
    int lo;
    int rc = parse_addr(addr, port, &a, &alen, &lo);
    if (rc != CGA_OK) return rc;
    if (MHD_is_feature_supported(MHD_FEATURE_EPOLL) != MHD_YES) return CGA_EUNSUPPORTED;

    int bound_port = 0;
    int fd = open_listener(&a, alen, &bound_port);
    if (fd < 0) return fd;
    /* MHD gets a duplicate: whether or not a failed start closed it, ours is closed once. */
    int mfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (mfd < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    cga_http_t *h = cga_calloc(1, sizeof *h);
    h->loop = loop;
    h->port = bound_port;
    h->d = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, h,
                            MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, (void *)NULL,
                            MHD_OPTION_LISTEN_SOCKET, (MHD_socket)mfd,
                            MHD_OPTION_CONNECTION_LIMIT, MAX_CONNECTIONS,
                            MHD_OPTION_CONNECTION_TIMEOUT, IDLE_TIMEOUT_S, MHD_OPTION_END);
    close(fd);
    if (!h->d) {
        free(h);
        return CGA_EUNSUPPORTED;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
    int efd = info ? info->epoll_fd : -1;
    if (efd < 0 || (rc = uv_poll_init(loop, &h->poll, efd)) != 0) {
        MHD_stop_daemon(h->d);
        free(h);
        return efd < 0 ? CGA_EUNSUPPORTED : rc;
    }
    uv_timer_init(loop, &h->timer);
    h->poll.data = h->timer.data = h;
    uv_unref((uv_handle_t *)&h->poll);
    uv_unref((uv_handle_t *)&h->timer);
    uv_poll_start(&h->poll, UV_READABLE, on_poll);
    arm_timer(h);
    *out = h;
    return CGA_OK;
}

int cga_http_port(const cga_http_t *h) {
    return h->port;
}

int cga_http_route(cga_http_t *h, const char *path, cga_http_handler_cb cb, void *arg) {
    if (!path || path[0] != '/' || !cb) return CGA_EINVAL;
    if (find_route(h, path)) return CGA_EEXIST;
    cga_grow((void **)&h->routes, &h->caproutes, h->nroutes + 1, sizeof h->routes[0]);
    h->routes[h->nroutes++] = (route_t){.path = cga_strdup(path), .cb = cb, .arg = arg};
    return CGA_OK;
}

static void on_closed(uv_handle_t *handle) {
    cga_http_t *h = handle->data;
    if (--h->pending_closes > 0) return;
    void (*done)(void *) = h->done;
    void *arg = h->done_arg;
    for (size_t i = 0; i < h->nroutes; i++) free(h->routes[i].path);
    free(h->routes);
    free(h);
    if (done) done(arg);
}

void cga_http_close(cga_http_t *h, void (*done)(void *arg), void *arg) {
    if (!h || h->closing) return;
    h->closing = 1;
    h->done = done;
    h->done_arg = arg;
    /* uv_close takes the descriptor out of the loop's epoll at once, so MHD may close it. */
    h->pending_closes = 2;
    uv_close((uv_handle_t *)&h->poll, on_closed);
    uv_close((uv_handle_t *)&h->timer, on_closed);
    if (!h->in_run) {
        MHD_stop_daemon(h->d);
        h->d = NULL;
    }
}
