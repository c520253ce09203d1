#ifndef CGALPHA_STATE_H
#define CGALPHA_STATE_H

/* State values <ns>:state:<name>: msgpack bytes with a TTL (SET PX / GET), with hit and miss
 * counters for metrics. Commands wait in the connection's queue while Redis is down (bounded,
 * see redis.h). Loop thread only. Every call that returns CGA_OK runs its callback exactly once,
 * later; a call that fails up front (CGA_EINVAL, CGA_ETOOBIG for a name too long for a key, or
 * redis.h's refusals) does not. */

#include <stddef.h>
#include <stdint.h>
#include "cgalpha/export.h"

struct cga_redis_s;

typedef struct cga_state_s cga_state_t;

/* Borrows redis; copies ns. Returns owned *out. */
CGA_EXTERN int cga_state_create(cga_state_t **out, struct cga_redis_s *redis, const char *ns);
/* Frees s (NULL is a no-op). Commands in flight still complete and run their callbacks; s's
 * memory goes once the last GET answered. */
CGA_EXTERN void cga_state_free(cga_state_t *s);

typedef void (*cga_state_set_cb)(int status, void *arg);
/* SET <ns>:state:<name> data PX ttl_ms (ttl_ms 0: no expiry). cb may be NULL. */
CGA_EXTERN int cga_state_set(cga_state_t *s, const char *name, const char *data, size_t len,
                             unsigned ttl_ms, cga_state_set_cb cb, void *arg);

/* status CGA_OK with the bytes (valid during the call; a hit), CGA_ENOTFOUND (a miss), or the
 * Redis error (counted as neither). */
typedef void (*cga_state_get_cb)(int status, const char *data, size_t len, void *arg);
CGA_EXTERN int cga_state_get(cga_state_t *s, const char *name, cga_state_get_cb cb, void *arg);

/* Names matching pattern under <ns>:state: (SCAN, never KEYS), e.g. "worker:*": cb is called
 * once with all names (without the prefix), sorted and without duplicates; names and the
 * strings are valid during the call. On an error part-way cb gets the status and no names. */
typedef void (*cga_state_scan_cb)(int status, const char *const *names, size_t n, void *arg);
CGA_EXTERN int cga_state_scan(cga_state_t *s, const char *pattern, cga_state_scan_cb cb,
                              void *arg);

/* GETs answered with a value (hits) and with nothing (misses) since create. */
CGA_EXTERN void cga_state_stats(const cga_state_t *s, uint64_t *hits, uint64_t *misses);

#endif
