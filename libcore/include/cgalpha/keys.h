#ifndef CGALPHA_KEYS_H
#define CGALPHA_KEYS_H

#include <stddef.h>
#include "cgalpha/export.h"

/* Every Redis key and channel cgalpha touches is built here, so nothing is ever written
 * outside the namespace:  <ns>:<kind>:<name>[:<suffix>]
 *   queue   <ns>:queue:analysis        dead letters  <ns>:queue:analysis:dead
 *   state   <ns>:state:regime:BTCUSD   lock          <ns>:lock:ops
 *   channel <ns>:channel:market_regime                                          */
#define CGA_KEY_MAX 256
#define CGA_NAMESPACE_MAX 64
#define CGA_NAMESPACE_DEFAULT "cgalpha"

#define CGA_KIND_QUEUE "queue"
#define CGA_KIND_STATE "state"
#define CGA_KIND_LOCK "lock"
#define CGA_KIND_CHANNEL "channel"

#define CGA_QUEUE_ANALYSIS "analysis"
#define CGA_QUEUE_REPORTS "reports"
#define CGA_GROUP_ANALYSIS "labs"
#define CGA_GROUP_REPORTS "nexus"
#define CGA_CHANNEL_REGIME "market_regime"
#define CGA_STATE_RESOURCES "global_resources"

/* Checks a namespace: 1..64 chars of [A-Za-z0-9_.-]. Returns CGA_OK or CGA_ECONFIG. */
CGA_EXTERN int cga_namespace_validate(const char *ns);

/* Writes "<ns>:<kind>:<name>" (and ":<suffix>" when suffix is not NULL) into out[n].
 * Returns the key's length, or CGA_ETOOBIG if it does not fit (out is then ""). */
CGA_EXTERN int cga_key(char *out, size_t n, const char *ns, const char *kind, const char *name,
                       const char *suffix);

#endif
