#ifndef CGALPHA_PLUGIN_H
#define CGALPHA_PLUGIN_H

/* Loads lab plugins (see lab.h for the ABI plugins implement). */

#include <stddef.h>
#include "cgalpha/export.h"
#include "cgalpha/lab.h"

typedef struct cga_plugin_s cga_plugin_t;

/* Loads one plugin. spec is NAME, NAME=CONFIG, PATH or PATH=CONFIG: a NAME ([a-z0-9_-]+) is
 * looked up as <dir>/<NAME>.so in dirs[0..ndirs) in order; a PATH (containing '/') is loaded
 * as given: nothing else is ever loaded. Checks the entry symbol, the ABI version, the name
 * and analyze, then calls init(CONFIG). Returns CGA_OK and *out, or CGA_ENOTFOUND, CGA_EABI,
 * CGA_EPLUGIN with one line in err ("plugin trend: ABI version 2, this lab speaks 1"). */
CGA_EXTERN int cga_plugin_load(cga_plugin_t **out, const char *spec, const char *const *dirs,
                               size_t ndirs, char *err, size_t errlen);

/* Calls fini, then dlclose. NULL is a no-op. */
CGA_EXTERN void cga_plugin_free(cga_plugin_t *p);

CGA_EXTERN const cga_lab_plugin_t *cga_plugin_desc(const cga_plugin_t *p);
CGA_EXTERN const char *cga_plugin_name(const cga_plugin_t *p);
CGA_EXTERN const char *cga_plugin_path(const cga_plugin_t *p);

/* Runs analyze (thread-safe per the ABI contract): zeroes out, calls the plugin, validates the
 * output (regime in range, confidence in [0,1] and finite, metrics finite and <= max, names
 * NUL-terminated). Returns CGA_OK, or CGA_EPLUGIN with out->error set (the plugin's message,
 * or what was wrong with its output). */
CGA_EXTERN int cga_plugin_analyze(const cga_plugin_t *p, const cga_lab_input_t *in,
                                  cga_lab_output_t *out);

#endif
