#ifndef CGALPHA_LOCK_H
#define CGALPHA_LOCK_H

/* Distributed lock <ns>:lock:<resource>: SET NX PX with a random token; release by a Lua
 * compare-and-delete, renewal by a Lua compare-and-extend. A held lock renews itself every
 * ttl/3 until released; when a renewal finds the lock gone or taken, or no renewal succeeded
 * for a whole ttl (Redis unreachable), the holder is told it lost the lock. */

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

/* Releases the lock if held (best effort), stops timers and frees; done(arg) runs after. */
CGA_EXTERN void cga_lock_close(cga_lock_t *l, void (*done)(void *arg), void *arg);

/* acquired = 1 when this process now holds the lock, 0 when another holds it or Redis could not
 * be asked (status says which: CGA_OK, or the Redis error). */
typedef void (*cga_lock_cb)(int status, int acquired, void *arg);

/* One attempt. */
CGA_EXTERN int cga_lock_acquire(cga_lock_t *l, cga_lock_cb cb, void *arg);

/* Tries every retry_ms until acquired, then calls cb once (acquired = 1): the standby loop of
 * ops and nexus. Stops with cga_lock_close(). */
CGA_EXTERN int cga_lock_campaign(cga_lock_t *l, unsigned retry_ms, cga_lock_cb cb, void *arg);

/* Compare-and-delete; cb's acquired is 0 after. */
CGA_EXTERN int cga_lock_release(cga_lock_t *l, cga_lock_cb cb, void *arg);

/* Called when a held lock is lost (renewal failed or found another token). */
CGA_EXTERN void cga_lock_on_lost(cga_lock_t *l, void (*cb)(void *arg), void *arg);

CGA_EXTERN int cga_lock_is_held(const cga_lock_t *l);
CGA_EXTERN const char *cga_lock_token(const cga_lock_t *l); /* hex, for logs and tests */

#endif
