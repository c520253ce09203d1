#ifndef CGALPHA_HTTP_H
#define CGALPHA_HTTP_H

/* A small HTTP server on a libuv loop, for /health, /metrics and the operator's pages.
 *
 * libmicrohttpd (Debian's libmicrohttpd) parses HTTP; http.c is the only file that includes
 * microhttpd.h. It runs in MHD's external epoll mode inside the loop: a uv_poll_t watches MHD's
 * epoll descriptor and a uv_timer_t follows MHD_get_timeout(), so there is no thread of its own
 * and handlers run on the loop thread (they may read the process's state without locks).
 *
 * Requests: GET and HEAD (the same handler; the body is left out for HEAD). Any other method is
 * 405 with "Allow: GET, HEAD"; a path with no route is 404. Routes match the path exactly (the
 * query string is not part of it). Idle connections are closed after 10 s; at most 64 at once.
 * The handles do not keep the loop alive (like the app's signal handles). Not thread-safe: use
 * from the loop thread only. Nothing here logs except MHD's own diagnostics (DEBUG). */

#include <stddef.h>
#include "cgalpha/export.h"

struct uv_loop_s;

typedef struct cga_http_s cga_http_t;

/* What a handler fills in. Before the call: status 200, content_type
 * "text/plain; charset=utf-8", body NULL, len 0, cache_control NULL. */
typedef struct cga_http_response_s {
    int status;               /* HTTP status code */
    const char *content_type; /* static storage (or alive until the server is closed) */
    char *body;               /* malloc'd, taken by the server (free()); NULL for an empty body */
    size_t len;               /* bytes of body */
    const char *cache_control;/* a Cache-Control header (static storage), or NULL for none */
} cga_http_response_t;

/* path: the request's path (valid during the call). Runs on the loop thread. */
typedef void (*cga_http_handler_cb)(const char *path, cga_http_response_t *res, void *arg);

/* Parses addr: an IPv4 or IPv6 literal ("127.0.0.1", "::1", "0.0.0.0") or "localhost" (which
 * is 127.0.0.1). Returns CGA_OK and, when is_loopback is not NULL, whether it is a loopback
 * address (127.0.0.0/8, ::1, ::ffff:127.x.y.z); CGA_EINVAL for anything else (host names are
 * not resolved). */
CGA_EXTERN int cga_http_addr_parse(const char *addr, int *is_loopback);

/* Listens on addr:port (port 0: a port chosen by the kernel, see cga_http_port) and serves on
 * loop. Copies addr. Returns CGA_OK and *out (owned, released with cga_http_close()),
 * CGA_EINVAL (bad address or port), a negative errno from socket/bind/listen (-EADDRINUSE
 * "Address already in use", -EACCES, -EADDRNOTAVAIL for an address this host does not have),
 * or CGA_EUNSUPPORTED when libmicrohttpd lacks epoll. On error nothing is left open. */
CGA_EXTERN int cga_http_create(cga_http_t **out, struct uv_loop_s *loop, const char *addr,
                               int port);

/* The port listened on (the kernel's choice when created with port 0). */
CGA_EXTERN int cga_http_port(const cga_http_t *h);

/* Routes GET/HEAD path (exact, starting with '/') to cb. Borrows arg; copies path. Returns
 * CGA_OK, CGA_EINVAL (path not starting with '/'), or CGA_EEXIST (path already routed). */
CGA_EXTERN int cga_http_route(cga_http_t *h, const char *path, cga_http_handler_cb cb,
                              void *arg);

/* Fills res: status, content type (static storage; NULL keeps the current one) and a body
 * formatted printf-like (replacing any body res holds). */
CGA_EXTERN void cga_http_respond(cga_http_response_t *res, int status, const char *content_type,
                                 const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* Stops listening, drops the open connections, closes the uv handles and frees h; done(arg)
 * (may be NULL) runs after the last close callback, so uv_loop_close() succeeds once the loop
 * has run. Safe from inside a handler (h goes after the handler returns). NULL is a no-op. */
CGA_EXTERN void cga_http_close(cga_http_t *h, void (*done)(void *arg), void *arg);

#endif
