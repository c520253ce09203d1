#ifndef CGA_TEST_REDIS_SERVER_H
#define CGA_TEST_REDIS_SERVER_H

/* A real redis-server for one test: its own temp dir under /tmp, a unix socket there and a free
 * loopback TCP port from the kernel. $REDIS_SERVER overrides the binary. A missing
 * redis-server is a failure, not a skip. */

#include <stddef.h>
#include <sys/types.h>

struct redisContext;

typedef struct cga_test_redis_s {
    pid_t pid;           /* 0 when not running */
    char dir[64];        /* mkdtemp'd folder: redis.conf, redis.sock, redis.log, data */
    char sock[128];      /* <dir>/redis.sock */
    int port;            /* loopback TCP port, fixed for the server's life (restarts reuse it) */
    char extra[2048];    /* extra redis.conf lines given to start */
} cga_test_redis_t;

/* Starts a server; extra_conf (may be NULL) is appended to redis.conf ("requirepass x\n", ...).
 * Waits up to 5 s for PING. Returns 0 or exits the test with a message. */
int cga_test_redis_start(cga_test_redis_t *s, const char *extra_conf);

/* Sends sig (SIGKILL, SIGTERM, SIGSTOP ...) and, unless SIGSTOP/SIGCONT, reaps the process. */
void cga_test_redis_signal(cga_test_redis_t *s, int sig);

/* Starts the server again on the same port, socket and dir (after a kill). Waits for PING. */
int cga_test_redis_restart(cga_test_redis_t *s);

/* Stops (SIGTERM, then SIGKILL after 5 s), reaps and removes the dir. Safe to call twice. */
void cga_test_redis_stop(cga_test_redis_t *s);

/* A blocking hiredis connection for assertions (unix socket; AUTH with password if not NULL).
 * Exits the test on failure. Free with redisFree(). */
struct redisContext *cga_test_redis_connect(const cga_test_redis_t *s, const char *password);

/* A free loopback TCP port chosen by the kernel. */
int cga_test_free_port(void);

#endif
