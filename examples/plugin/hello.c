/* hello: an example lab plugin, built outside the cgalpha tree (see README.md).
 *
 * It votes by the share of "up" bars in the window, those that closed above their open:
 *
 *   share >= UP          bull      confidence share            (UP defaults to 0.6)
 *   share <= 1 - UP      bear      confidence 1 - share
 *   else                 sideways  confidence 1 - |share - 0.5|
 *
 * Configuration (--plugin hello=up=0.7): UP in (0.5, 1].
 * Metrics: up_share, n_bars.
 * Errors: an empty window or a bar with a non-finite open or close (analyze returns non-zero
 * with a message in out->error: the task gets an "error" report and the lab goes on).
 *
 * The whole ABI is cgalpha/lab.h: a plugin includes it and links nothing of cgalpha's. */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cgalpha/lab.h>

typedef struct hello_state_s {
    double up; /* share of up bars from which it votes bull */
} hello_state_t;

/* Called once, on the lab's main thread, before any analyze(). config is the text after '='
 * in --plugin hello=CONFIG, or NULL. On failure: a message in err, non-zero, nothing kept
 * (fini is not called after a failed init). */
static int hello_init(void **state, const char *config, char *err, size_t errlen) {
    double up = 0.6;
    if (config && *config) {
        char *end;
        if (strncmp(config, "up=", 3) != 0) {
            snprintf(err, errlen, "unknown configuration (want up=<share in (0.5, 1]>)");
            return -1;
        }
        up = strtod(config + 3, &end);
        if (end == config + 3 || *end != '\0' || !(up > 0.5 && up <= 1)) {
            snprintf(err, errlen, "up: want a share in (0.5, 1], got \"%s\"", config + 3);
            return -1;
        }
    }
    hello_state_t *s = malloc(sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->up = up;
    *state = s;
    return 0;
}

/* Called from several worker threads at once: it only reads the shared state. */
static int hello_analyze(void *state, const cga_lab_input_t *in, cga_lab_output_t *out) {
    const hello_state_t *s = state;
    size_t ups = 0;
    for (size_t i = 0; i < in->nbars; i++) {
        const cga_bar_t *b = &in->bars[i];
        if (!isfinite(b->open) || !isfinite(b->close)) {
            snprintf(out->error, sizeof out->error, "bar %zu of %s: open/close not finite", i,
                     in->symbol);
            return -1;
        }
        if (b->close > b->open) ups++;
    }
    if (in->nbars == 0) {
        snprintf(out->error, sizeof out->error, "empty window");
        return -1;
    }
    double share = (double)ups / (double)in->nbars;
    if (share >= s->up) {
        out->regime = CGA_REGIME_BULL;
        out->confidence = share;
    } else if (share <= 1 - s->up) {
        out->regime = CGA_REGIME_BEAR;
        out->confidence = 1 - share;
    } else {
        out->regime = CGA_REGIME_SIDEWAYS;
        out->confidence = 1 - fabs(share - 0.5);
    }
    cga_lab_metric(out, "up_share", share);
    cga_lab_metric(out, "n_bars", (double)in->nbars);
    return 0;
}

/* Called once, on the main thread, after the last analyze(). */
static void hello_fini(void *state) {
    free(state);
}

static const cga_lab_plugin_t hello_plugin = {
    .abi_version = CGA_LAB_ABI_VERSION,
    .name = "hello",
    .version = "1.0.0",
    .description = "example: votes by the share of bars that closed above their open",
    .init = hello_init,
    .analyze = hello_analyze,
    .fini = hello_fini,
};

/* The one exported symbol (CGA_LAB_PLUGIN = default visibility; build with
 * -fvisibility=hidden so that nothing else leaks out). */
CGA_LAB_PLUGIN const cga_lab_plugin_t *cga_lab_plugin_entry(void);
CGA_LAB_PLUGIN const cga_lab_plugin_t *cga_lab_plugin_entry(void) {
    return &hello_plugin;
}
