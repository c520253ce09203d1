#ifndef CGALPHA_ALLOC_H
#define CGALPHA_ALLOC_H

#include <stddef.h>
#include "cgalpha/export.h"

/* Allocation that never returns NULL: out of memory prints one line and aborts, so callers
 * write no OOM branches. Free with free(). A zero size still returns a unique pointer. */
CGA_EXTERN void *cga_malloc(size_t n);
CGA_EXTERN void *cga_calloc(size_t count, size_t size);
CGA_EXTERN void *cga_realloc(void *p, size_t n);
CGA_EXTERN char *cga_strdup(const char *s);            /* NULL in, NULL out */
CGA_EXTERN char *cga_strndup(const char *s, size_t n); /* always NUL-terminated */
CGA_EXTERN void *cga_memdup(const void *p, size_t n);

/* Grow *buf (capacity *cap, element size elem) so that it holds at least need elements;
 * doubles, so appends are amortised O(1). */
CGA_EXTERN void cga_grow(void **buf, size_t *cap, size_t need, size_t elem);

#endif
