/* noop: returns at once with no vote (regime unknown, confidence 0, no metrics).
 *
 * For benchmarks: it measures the lab's own cost per task (claim, decode, report, ack) with
 * no analysis in the way. It never fails and reads nothing but the output it is given.
 * Thread-safety: no state, no globals.
 *
 * Built exactly as a third-party plugin: it includes only cgalpha/lab.h. */

#include "cgalpha/lab.h"

static int noop_analyze(void *state, const cga_lab_input_t *in, cga_lab_output_t *out) {
    (void)state;
    (void)in;
    (void)out; /* already zeroed by the lab: regime UNKNOWN, confidence 0 */
    return 0;
}

static const cga_lab_plugin_t noop_plugin = {
    .abi_version = CGA_LAB_ABI_VERSION,
    .name = "noop",
    .version = "1.0.0",
    .description = "does nothing and votes unknown (for benchmarks)",
    .init = NULL,
    .analyze = noop_analyze,
    .fini = NULL,
};

CGA_LAB_PLUGIN const cga_lab_plugin_t *cga_lab_plugin_entry(void);
CGA_LAB_PLUGIN const cga_lab_plugin_t *cga_lab_plugin_entry(void) {
    return &noop_plugin;
}
