#ifndef CGA_OPS_PROGRESS_H
#define CGA_OPS_PROGRESS_H

/* The progress line of `enqueue` on a terminal (pure formatting). */

#include <stddef.h>
#include <stdint.h>

/* "[#########-----------]  45%  12345 tasks  6789 tasks/s" (total 0: unknown, no bar and no
 * percentage). Always NUL-terminated. */
void ops_progress_format(char *out, size_t n, uint64_t done, uint64_t total, uint64_t tasks,
                         double secs);

#endif
