#include "bufview.h"

#include <inttypes.h>
#include <string.h>

#include "cgalpha/buffer.h"
#include "cgalpha/err.h"
#include "ops.h"

int ops_bufview_read(ops_bufview_t *v, const char *path) {
    memset(v, 0, sizeof *v);
    v->path = path ? path : CGA_BUFFER_DEFAULT_PATH;
    cga_buffer_opts_t o;
    cga_buffer_opts_init(&o);
    o.readonly = 1;
    cga_buffer_t *b = NULL;
    int rc = cga_buffer_open(&b, v->path, &o, v->err, sizeof v->err);
    if (rc == CGA_ENOTFOUND) {
        v->err[0] = '\0';
        return 0;
    }
    if (rc != CGA_OK) return -1;
    v->found = 1;
    rc = cga_buffer_stats(b, &v->stats);
    if (rc != CGA_OK) {
        snprintf(v->err, sizeof v->err, "%s", cga_buffer_errmsg(b));
        v->stats = NULL;
    } else {
        for (size_t i = 0; i < v->stats->nqueues; i++) {
            uint64_t t = v->stats->queues[i].first_ms;
            if (t && (!v->oldest_ms || t < v->oldest_ms)) v->oldest_ms = t;
        }
    }
    cga_buffer_free(b);
    return rc == CGA_OK ? 0 : -1;
}

void ops_bufview_free(ops_bufview_t *v) {
    cga_buffer_stats_free(v->stats);
    v->stats = NULL;
}

int ops_bufview_is_ns(const char *queue, const char *ns) {
    size_t n = strlen(ns);
    return strncmp(queue, ns, n) == 0 && strncmp(queue + n, ":queue:", 7) == 0;
}

static double age_s(uint64_t ms, uint64_t now_ms) {
    return ms && now_ms > ms ? (double)(now_ms - ms) / 1000.0 : 0.0;
}

static void json_age(FILE *f, uint64_t ms, uint64_t now_ms) {
    if (ms)
        fprintf(f, "%.3f", age_s(ms, now_ms));
    else
        fputs("null", f);
}

void ops_bufview_json(FILE *f, const ops_bufview_t *v, const char *ns, uint64_t now_ms) {
    const struct cga_buffer_stats_s *s = v->stats;
    fputs("{\"path\":", f);
    ops_json_str(f, v->path, strlen(v->path));
    fprintf(f, ",\"exists\":%s,\"entries\":%" PRIu64 ",\"tasks\":%" PRIu64 ",\"bytes\":%" PRIu64
            ",\"file_bytes\":%" PRIu64 ",\"oldest_age_s\":", v->found ? "true" : "false",
            s ? s->entries : 0, s ? s->tasks : 0, s ? s->bytes : 0, s ? s->file_bytes : 0);
    json_age(f, v->oldest_ms, now_ms);
    fputs(",\"queues\":[", f);
    for (size_t i = 0; s && i < s->nqueues; i++) {
        const cga_buffer_queue_stats_t *q = &s->queues[i];
        fputs(i ? ",{\"queue\":" : "{\"queue\":", f);
        ops_json_str(f, q->queue, strlen(q->queue));
        fprintf(f, ",\"namespace\":%s,\"entries\":%" PRIu64 ",\"tasks\":%" PRIu64
                ",\"bytes\":%" PRIu64 ",\"first_id\":", ops_bufview_is_ns(q->queue, ns) ? "true"
                                                                                    : "false",
                q->entries, q->tasks, q->bytes);
        ops_json_str(f, q->first_id, strlen(q->first_id));
        fputs(",\"last_id\":", f);
        ops_json_str(f, q->last_id, strlen(q->last_id));
        fputs(",\"oldest_age_s\":", f);
        json_age(f, q->first_ms, now_ms);
        fputc('}', f);
    }
    fputc(']', f);
    if (v->err[0]) {
        fputs(",\"error\":", f);
        ops_json_str(f, v->err, strlen(v->err));
    }
    fputc('}', f);
}

void ops_bufview_text(FILE *f, const ops_bufview_t *v, const char *ns, uint64_t now_ms) {
    const struct cga_buffer_stats_s *s = v->stats;
    if (!v->found && !v->err[0]) {
        fprintf(f, "task buffer  none (no file at %s)\n", v->path);
        return;
    }
    if (!s) {
        fprintf(f, "task buffer  UNREADABLE: %s\n", v->err);
        return;
    }
    if (s->entries == 0) {
        fprintf(f, "task buffer  empty (%s)\n", v->path);
        return;
    }
    fprintf(f, "task buffer  %" PRIu64 " entries, %" PRIu64 " tasks, oldest %.1f s ago (%s, "
            "%.1f MiB)\n", s->entries, s->tasks, age_s(v->oldest_ms, now_ms), v->path,
            (double)s->file_bytes / (1024.0 * 1024.0));
    for (size_t i = 0; i < s->nqueues; i++) {
        const cga_buffer_queue_stats_t *q = &s->queues[i];
        fprintf(f, "  %-28s %8" PRIu64 " entries %10" PRIu64 " tasks  oldest %7.1f s  %s .. %s%s\n",
                q->queue, q->entries, q->tasks, age_s(q->first_ms, now_ms), q->first_id,
                q->last_id, ops_bufview_is_ns(q->queue, ns) ? "" : "  (another namespace)");
    }
}
