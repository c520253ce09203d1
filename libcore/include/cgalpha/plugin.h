#ifndef CGALPHA_PLUGIN_H
#define CGALPHA_PLUGIN_H

/* Loads lab plugins (see lab.h for the ABI plugins implement). */

#include <stddef.h>
#include "cgalpha/export.h"
#include "cgalpha/lab.h"

typedef struct cga_plugin_s cga_plugin_t;

/* Loads one plugin. spec is NAME, NAME=CONFIG, PATH or PATH=CONFIG (split at the first '='):
 * a NAME ([a-z0-9_-]{1,32}) is looked up as <dir>/<NAME>.so in dirs[0..ndirs) in order and the
 * first file found is loaded (its descriptor must carry that name); a PATH (containing '/') is
 * loaded as given: nothing else is ever loaded (no LD_LIBRARY_PATH, no "..": a spec without
 * '/' that is not a NAME is refused). dlopen(RTLD_NOW | RTLD_LOCAL), then checks the entry
 * symbol, the ABI version, the name and analyze, then calls init(CONFIG) (CONFIG is NULL
 * without '='; a non-empty CONFIG for a plugin without init is refused). A NULL version or
 * description reads as "" through cga_plugin_desc. Returns CGA_OK and *out, or CGA_EINVAL
 * (malformed spec), CGA_ENOTFOUND (no such file), CGA_EABI, CGA_EPLUGIN (dlopen failed, no
 * entry symbol, bad descriptor, init refused) with one line in err naming the plugin and the
 * reason ("plugin trend: ABI version 2, this lab speaks 1"); err may be NULL. */
CGA_EXTERN int cga_plugin_load(cga_plugin_t **out, const char *spec, const char *const *dirs,
                               size_t ndirs, char *err, size_t errlen);

/* Calls fini, then dlclose. NULL is a no-op. */
CGA_EXTERN void cga_plugin_free(cga_plugin_t *p);

/* The plugin's descriptor (version and description never NULL), its name (the descriptor's)
 * and the file it was loaded from. Borrowed: valid until cga_plugin_free. */
CGA_EXTERN const cga_lab_plugin_t *cga_plugin_desc(const cga_plugin_t *p);
CGA_EXTERN const char *cga_plugin_name(const cga_plugin_t *p);
CGA_EXTERN const char *cga_plugin_path(const cga_plugin_t *p);

/* Runs analyze (thread-safe per the ABI contract): zeroes out, calls the plugin, validates the
 * output (regime in range, confidence in [0,1] and finite, metrics finite and <= max, names
 * NUL-terminated, non-empty, [a-z0-9_.]). Returns CGA_OK (out->error empty), or CGA_EPLUGIN
 * with out->error set to one line: the plugin's message (or "analyze failed (code N)" when it
 * gave none), or "invalid output: ..." saying what was wrong; then regime, confidence and
 * metrics are reset to UNKNOWN, 0 and none. */
CGA_EXTERN int cga_plugin_analyze(const cga_plugin_t *p, const cga_lab_input_t *in,
                                  cga_lab_output_t *out);

#endif
