#ifndef CGALPHA_STATE_H
#define CGALPHA_STATE_H

/* State values <ns>:state:<name>: msgpack bytes with a TTL (SET PX / GET), with hit and miss
 * counters for metrics. */

#include <stddef.h>
#include <stdint.h>
#include "cgalpha/export.h"

struct cga_redis_s;

typedef struct cga_state_s cga_state_t;

CGA_EXTERN int cga_state_create(cga_state_t **out, struct cga_redis_s *redis, const char *ns);
CGA_EXTERN void cga_state_free(cga_state_t *s);

typedef void (*cga_state_set_cb)(int status, void *arg);
/* SET <ns>:state:<name> data PX ttl_ms (ttl_ms 0: no expiry). */
CGA_EXTERN int cga_state_set(cga_state_t *s, const char *name, const char *data, size_t len,
                             unsigned ttl_ms, cga_state_set_cb cb, void *arg);

/* status CGA_OK with the bytes (valid during the call), or CGA_ENOTFOUND (a miss). */
typedef void (*cga_state_get_cb)(int status, const char *data, size_t len, void *arg);
CGA_EXTERN int cga_state_get(cga_state_t *s, const char *name, cga_state_get_cb cb, void *arg);

/* Names matching pattern under <ns>:state: (SCAN, never KEYS), e.g. "worker:*": cb is called
 * once with all names (without the prefix). */
typedef void (*cga_state_scan_cb)(int status, const char *const *names, size_t n, void *arg);
CGA_EXTERN int cga_state_scan(cga_state_t *s, const char *pattern, cga_state_scan_cb cb,
                              void *arg);

CGA_EXTERN void cga_state_stats(const cga_state_t *s, uint64_t *hits, uint64_t *misses);

#endif
