#ifndef CGALPHA_LOCK_H
#define CGALPHA_LOCK_H

/* Distributed lock <ns>:lock:<resource>: SET NX PX with a random token; release by a Lua
 * compare-and-delete, renewal by a Lua compare-and-extend. A held lock renews itself every
 * ttl/3 until released; when a renewal finds the lock gone or taken, or no renewal succeeded
 * for a whole ttl (Redis unreachable), the holder is told it lost the lock.
 *
 * Details:
 *   - the token is 16 random bytes in hex, new for every holding period (after a release or a
 *     loss), so that late replies to an earlier period are recognised;
 *   - acquisition runs SET NX PX inside a Lua script that also accepts (and extends) a key that
 *     already holds our token: an attempt whose reply was lost may have set it;
 *   - every lock command is sent with CGA_REDIS_FAILFAST: a lock decision never waits in the
 *     connection's queue;
 *   - the ttl deadline is measured locally from the moment the last confirming command was
 *     sent, so it never ends later than the key in Redis;
 *   - single_instance: an attempt that cannot reach Redis (CGA_ENOTCONN, CGA_ECONNLOST,
 *     CGA_ETIMEDOUT, CGA_EBREAKER) reports acquired = 1 with CGA_OK and logs once that the
 *     process runs as the single instance. A held lock whose renewals cannot reach Redis for a
 *     whole ttl then also stays held (single instance) instead of being lost. While so held the
 *     lock retries SET NX every ttl/3; when Redis answers it holds the key there again, or, if
 *     another process holds it, the lock is lost.
 * Everything runs on the loop's thread. */

#include <stdint.h>
#include "cgalpha/export.h"

struct uv_loop_s;
struct cga_redis_s;

typedef struct cga_lock_s cga_lock_t;

/* Borrows loop and redis. ttl_ms >= 300 (default 30000 when 0). single_instance: when Redis is
 * unreachable, acquire reports success (the process was told it is the only instance; see
 * CGALPHA_SINGLE_INSTANCE) instead of failure. Returns owned *out. */
CGA_EXTERN int cga_lock_create(cga_lock_t **out, struct uv_loop_s *loop, struct cga_redis_s *redis,
                               const char *ns, const char *resource, unsigned ttl_ms,
                               int single_instance);

/* Stops the campaign and renewals, releases the lock if held (best effort: close waits for
 * that reply, at most the connection's command timeout), closes the timers and frees; the
 * callbacks of attempts still in flight run with CGA_ECANCELED, then done(arg) (may be NULL).
 * The lost callback is not called during or after close. Close the redis connection only
 * after done ran: closing it earlier cancels the release (the key then stays until its ttl
 * ends, and a standby waits that long). NULL is a no-op. */
CGA_EXTERN void cga_lock_close(cga_lock_t *l, void (*done)(void *arg), void *arg);

/* acquired = 1 when this process now holds the lock, 0 when another holds it or Redis could not
 * be asked (status says which: CGA_OK, or the Redis error). */
typedef void (*cga_lock_cb)(int status, int acquired, void *arg);

/* One attempt (when already held: a renewal, which also tells whether it is still held).
 * Returns CGA_OK and cb runs exactly once, later (also when Redis refused the command up front:
 * cb then gets that status); CGA_EINVAL or CGA_ECLOSED (closing) and cb does not run. */
CGA_EXTERN int cga_lock_acquire(cga_lock_t *l, cga_lock_cb cb, void *arg);

/* Tries every retry_ms (0: 1000) until acquired, then calls cb once (acquired = 1): the standby
 * loop of ops and nexus. Stops with cga_lock_close() or cga_lock_release() (cb does not run
 * then). Failures to reach Redis are logged once per streak and retried. CGA_EEXIST if a
 * campaign is already running; after cb ran (or after a loss) a new campaign may be started. */
CGA_EXTERN int cga_lock_campaign(cga_lock_t *l, unsigned retry_ms, cga_lock_cb cb, void *arg);

/* Stops renewing (and any campaign), forgets the token and runs compare-and-delete; cb (may be
 * NULL) gets CGA_OK whether or not the key was ours, or the Redis error; acquired is always 0.
 * A release by a process that does not hold the lock deletes nothing. */
CGA_EXTERN int cga_lock_release(cga_lock_t *l, cga_lock_cb cb, void *arg);

/* Called when a held lock is lost (renewal found another token or no key, or no renewal
 * succeeded for a whole ttl): once per holding period, after renewals stopped. The callback may
 * campaign again or close the lock. */
CGA_EXTERN void cga_lock_on_lost(cga_lock_t *l, void (*cb)(void *arg), void *arg);

/* 1 while held (in Redis, or as the single instance). */
CGA_EXTERN int cga_lock_is_held(const cga_lock_t *l);
/* The current token (32 hex chars; changes after each release or loss): for logs and tests. */
CGA_EXTERN const char *cga_lock_token(const cga_lock_t *l);

#endif
