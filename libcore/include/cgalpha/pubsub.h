#ifndef CGALPHA_PUBSUB_H
#define CGALPHA_PUBSUB_H

/* Publish / subscribe on <ns>:channel:<name>. Publishing uses the process's command
 * connection; subscribing needs a connection of its own (a second cga_redis_t), and
 * resubscribes by itself after every reconnect. Pub/sub forgets what nobody heard: durable
 * facts also go to a stream (see the regime log in proto/SCHEMA.md). */

#include <stddef.h>
#include "cgalpha/export.h"

struct cga_redis_s;

typedef struct cga_pubsub_s cga_pubsub_t;

/* cmd: the command connection (for PUBLISH); sub: a dedicated connection, or NULL for a
 * publisher only. Both borrowed. */
CGA_EXTERN int cga_pubsub_create(cga_pubsub_t **out, struct cga_redis_s *cmd,
                                 struct cga_redis_s *sub, const char *ns);
/* Frees p (NULL is a no-op): its subscriptions end at once (cga_redis_unsubscribe(), so free p
 * before closing the sub connection); publishes in flight still run their callbacks. May be
 * called from inside a message callback. */
CGA_EXTERN void cga_pubsub_free(cga_pubsub_t *p);

/* PUBLISH <ns>:channel:<channel> data; cb gets the number of receivers (may be NULL). The
 * command waits in the connection's queue while Redis is down (bounded, see redis.h). Returns
 * CGA_OK (cb runs once, later) or an up-front refusal (cb does not run). */
typedef void (*cga_pubsub_published_cb)(int status, long long receivers, void *arg);
CGA_EXTERN int cga_pubsub_publish(cga_pubsub_t *p, const char *channel, const char *data,
                                  size_t len, cga_pubsub_published_cb cb, void *arg);

/* Subscribes to <ns>:channel:<channel> on the sub connection (CGA_EINVAL without one); cb gets
 * each message (valid during the call), from the loop thread, until p is freed. Messages
 * published while the connection is down are lost (pub/sub keeps nothing). */
typedef void (*cga_pubsub_message_cb)(const char *data, size_t len, void *arg);
CGA_EXTERN int cga_pubsub_subscribe(cga_pubsub_t *p, const char *channel, cga_pubsub_message_cb cb,
                                    void *arg);

#endif
