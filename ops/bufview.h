#ifndef CGA_OPS_BUFVIEW_H
#define CGA_OPS_BUFVIEW_H

/* The task buffer as `status` and `recover --dry-run` show it: read-only statistics, as a JSON
 * object or as text. Rows are per queue, named by their stream key ("cgalpha:queue:analysis"),
 * so a buffer shared by several namespaces shows which rows belong to which. */

#include <stdint.h>
#include <stdio.h>

struct cga_buffer_stats_s;

typedef struct ops_bufview_s {
    const char *path;
    int found;                        /* the file exists (and opened) */
    char err[1024];                   /* why it could not be read ("" when it could) */
    struct cga_buffer_stats_s *stats; /* NULL unless found */
    uint64_t oldest_ms;               /* created_ms of the oldest row (0: none) */
} ops_bufview_t;

/* Opens path read-only (creating nothing), reads the statistics, closes. A missing file is
 * found = 0 without an error. Returns 0, or -1 with v->err set. */
int ops_bufview_read(ops_bufview_t *v, const char *path);
void ops_bufview_free(ops_bufview_t *v);

/* 1 when the queue column (a stream key) belongs to namespace ns. */
int ops_bufview_is_ns(const char *queue, const char *ns);

/* {"path":..,"exists":..,"entries":..,"tasks":..,"bytes":..,"file_bytes":..,
 *  "oldest_age_s":..|null,"queues":[{"queue":..,"namespace":true|false,"entries":..,"tasks":..,
 *  "bytes":..,"first_id":..,"last_id":..,"oldest_age_s":..}],"error":".."} (error only when
 * set). */
void ops_bufview_json(FILE *f, const ops_bufview_t *v, const char *ns, uint64_t now_ms);

/* A few lines: the summary, then one line per queue (rows of other namespaces marked). */
void ops_bufview_text(FILE *f, const ops_bufview_t *v, const char *ns, uint64_t now_ms);

#endif
