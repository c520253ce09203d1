/* plugin loader: loading by name (search order) and by path, NAME=CONFIG, every refusal with
 * its exact one-line message, output validation, plugin errors, concurrent analyze. */

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgalpha/err.h"
#include "cgalpha/plugin.h"
#include "test.h"

static const char *const builtin_dir[] = {CGA_TEST_PLUGIN_DIR};
static const char *const fixture_dir[] = {CGA_TEST_FIXTURE_PLUGIN_DIR};

/* Loads spec and expects rc and, for a failure, exactly the message want (NULL: don't check). */
static void expect_refusal(const char *spec, const char *const *dirs, size_t ndirs, int rc,
                           const char *want) {
    cga_plugin_t *p = (cga_plugin_t *)&p; /* must be reset to NULL */
    char err[512];
    int got = cga_plugin_load(&p, spec, dirs, ndirs, err, sizeof err);
    if (got != rc) fprintf(stderr, "spec \"%s\": %s\n", spec, err);
    CGA_ASSERT_EQ(got, rc);
    CGA_ASSERT(p == NULL);
    CGA_ASSERT(strchr(err, '\n') == NULL);
    if (want) CGA_ASSERT_STREQ(err, want);
}

static cga_plugin_t *load_ok(const char *spec, const char *const *dirs, size_t ndirs) {
    cga_plugin_t *p = NULL;
    char err[512] = "";
    int rc = cga_plugin_load(&p, spec, dirs, ndirs, err, sizeof err);
    if (rc != 0) fprintf(stderr, "spec \"%s\": %s\n", spec, err);
    CGA_ASSERT_OK(rc);
    CGA_ASSERT(p != NULL);
    return p;
}

/* closes c[0..n) at one-minute bars */
static void make_bars(cga_bar_t *bars, const double *closes, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double prev = i ? closes[i - 1] : closes[0];
        bars[i] = (cga_bar_t){.t = 1700000000000LL + (int64_t)i * 60000, .open = prev,
                              .high = fmax(prev, closes[i]), .low = fmin(prev, closes[i]),
                              .close = closes[i], .volume = 1};
    }
}

static double metric(const cga_lab_output_t *out, const char *name) {
    for (size_t i = 0; i < out->nmetrics; i++)
        if (strcmp(out->metrics[i].name, name) == 0) return out->metrics[i].value;
    CGA_FAIL_("metric %s not in the output", name);
}

static void test_builtins_by_name(void) {
    static const char *names[] = {"trend", "volatility", "momentum", "noop"};
    for (size_t i = 0; i < 4; i++) {
        cga_plugin_t *p = load_ok(names[i], builtin_dir, 1);
        CGA_ASSERT_STREQ(cga_plugin_name(p), names[i]);
        char want[512];
        snprintf(want, sizeof want, "%s/%s.so", CGA_TEST_PLUGIN_DIR, names[i]);
        CGA_ASSERT_STREQ(cga_plugin_path(p), want);
        const cga_lab_plugin_t *d = cga_plugin_desc(p);
        CGA_ASSERT_EQ(d->abi_version, CGA_LAB_ABI_VERSION);
        CGA_ASSERT(d->version[0] && d->description[0]);
        cga_plugin_free(p);
    }
    cga_plugin_free(NULL);

    /* noop: ok, no vote */
    cga_plugin_t *p = load_ok("noop", builtin_dir, 1);
    cga_bar_t bars[1];
    make_bars(bars, (double[]){1.0}, 1);
    cga_lab_input_t in = {.task_id = "X/0/noop", .symbol = "X", .bars = bars, .nbars = 1};
    cga_lab_output_t out;
    memset(&out, 0x5a, sizeof out); /* analyze zeroes it */
    CGA_ASSERT_OK(cga_plugin_analyze(p, &in, &out));
    CGA_ASSERT_EQ(out.regime, CGA_REGIME_UNKNOWN);
    CGA_ASSERT_OP(out.confidence, ==, 0);
    CGA_ASSERT_EQ(out.nmetrics, 0);
    CGA_ASSERT_STREQ(out.error, "");
    cga_plugin_free(p);
}

static void test_search_order(void) {
    /* first directory holding <name>.so wins; missing and empty dirs are skipped */
    const char *dirs[] = {"/nonexistent-cga", "", CGA_TEST_FIXTURE_PLUGIN_DIR,
                          CGA_TEST_PLUGIN_DIR};
    cga_plugin_t *p = load_ok("faulty", dirs, 4);
    CGA_ASSERT_STREQ(cga_plugin_path(p), CGA_TEST_FIXTURE_PLUGIN_DIR "/faulty.so");
    cga_plugin_free(p);
    p = load_ok("trend", dirs, 4);
    CGA_ASSERT_STREQ(cga_plugin_path(p), CGA_TEST_PLUGIN_DIR "/trend.so");
    cga_plugin_free(p);

    /* a directory earlier in the list shadows the built-in; a file whose descriptor carries
     * another name is refused when asked for by name */
    char tmp[] = "/tmp/cga_plugin_XXXXXX";
    CGA_ASSERT(mkdtemp(tmp) != NULL);
    char link1[128], link2[128];
    snprintf(link1, sizeof link1, "%s/trend.so", tmp);
    snprintf(link2, sizeof link2, "%s/volatility.so", tmp);
    CGA_ASSERT_EQ(symlink(CGA_TEST_PLUGIN_DIR "/trend.so", link1), 0);
    CGA_ASSERT_EQ(symlink(CGA_TEST_FIXTURE_PLUGIN_DIR "/minimal.so", link2), 0);
    const char *dirs2[] = {tmp, CGA_TEST_PLUGIN_DIR};
    p = load_ok("trend", dirs2, 2);
    CGA_ASSERT_STREQ(cga_plugin_path(p), link1);
    cga_plugin_free(p);
    char want[512];
    snprintf(want, sizeof want,
             "plugin volatility: %s declares the name \"minimal\" (rename the file or load it "
             "by path)",
             link2);
    expect_refusal("volatility", dirs2, 2, CGA_EPLUGIN, want);
    /* by path, the same file is fine */
    p = load_ok(link2, NULL, 0);
    CGA_ASSERT_STREQ(cga_plugin_name(p), "minimal");
    cga_plugin_free(p);

    /* not a shared object at all: dlopen's message is passed on */
    char junk[128];
    snprintf(junk, sizeof junk, "%s/junk.so", tmp);
    FILE *f = fopen(junk, "w");
    CGA_ASSERT(f != NULL);
    for (int i = 0; i < 20; i++) fputs("not an ELF file\n", f);
    fclose(f);
    const char *dirs3[] = {tmp};
    char err[512];
    cga_plugin_t *q = NULL;
    CGA_ASSERT_EQ(cga_plugin_load(&q, "junk", dirs3, 1, err, sizeof err), CGA_EPLUGIN);
    snprintf(want, sizeof want, "plugin junk: cannot load: %s: ", junk);
    CGA_ASSERT(strncmp(err, want, strlen(want)) == 0);
    if (!strstr(err, "ELF")) CGA_FAIL_("err: %s", err);
    CGA_ASSERT(q == NULL);

    unlink(junk);
    unlink(link1);
    unlink(link2);
    CGA_ASSERT_EQ(rmdir(tmp), 0);
}

static void test_by_path(void) {
    cga_plugin_t *p = load_ok(CGA_TEST_PLUGIN_DIR "/trend.so", NULL, 0);
    CGA_ASSERT_STREQ(cga_plugin_name(p), "trend");
    cga_plugin_free(p);
    /* a path is taken as given, ".." included: the operator spelled it out */
    p = load_ok(CGA_TEST_PLUGIN_DIR "/../plugins/volatility.so", builtin_dir, 1);
    CGA_ASSERT_STREQ(cga_plugin_name(p), "volatility");
    cga_plugin_free(p);
    /* with a configuration */
    p = load_ok(CGA_TEST_PLUGIN_DIR "/momentum.so=threshold=3", NULL, 0);
    CGA_ASSERT_STREQ(cga_plugin_name(p), "momentum");
    CGA_ASSERT_STREQ(cga_plugin_path(p), CGA_TEST_PLUGIN_DIR "/momentum.so");
    cga_plugin_free(p);
}

static void test_config(void) {
    /* four closes, each +1%: k = 3 equal returns r = ln 1.01.
     * realized sigma = r, z = 3r / (r sqrt 3) = sqrt 3 = 1.73 > 1.5: bull.
     * sigma=0.02: z = 3r / (0.02 sqrt 3) = 0.862: sideways.  threshold=2: 1.73 < 2: sideways */
    cga_bar_t bars[4];
    make_bars(bars, (double[]){100, 101, 102.01, 103.0301}, 4);
    cga_lab_input_t in = {.task_id = "S/0/momentum", .symbol = "S", .bars = bars, .nbars = 4};
    cga_lab_output_t out;
    double r = log(1.01);

    cga_plugin_t *p = load_ok("momentum", builtin_dir, 1);
    CGA_ASSERT_OK(cga_plugin_analyze(p, &in, &out));
    CGA_ASSERT_EQ(out.regime, CGA_REGIME_BULL);
    CGA_ASSERT_OP(fabs(metric(&out, "z") - sqrt(3.0)), <, 1e-9);
    CGA_ASSERT_OP(fabs(metric(&out, "sigma") - r), <, 1e-12);
    cga_plugin_free(p);

    p = load_ok("momentum=sigma=0.02", builtin_dir, 1);
    CGA_ASSERT_OK(cga_plugin_analyze(p, &in, &out));
    CGA_ASSERT_EQ(out.regime, CGA_REGIME_SIDEWAYS);
    CGA_ASSERT_OP(fabs(metric(&out, "z") - 3 * r / (0.02 * sqrt(3.0))), <, 1e-9);
    CGA_ASSERT_OP(metric(&out, "sigma"), ==, 0.02);
    cga_plugin_free(p);

    p = load_ok("momentum=threshold=2:", builtin_dir, 1);
    CGA_ASSERT_OK(cga_plugin_analyze(p, &in, &out));
    CGA_ASSERT_EQ(out.regime, CGA_REGIME_SIDEWAYS);
    cga_plugin_free(p);

    p = load_ok("momentum=sigma=0.001:threshold=20", builtin_dir, 1); /* z = 17.2 < 20 */
    CGA_ASSERT_OK(cga_plugin_analyze(p, &in, &out));
    CGA_ASSERT_OP(fabs(metric(&out, "z") - 3 * r / (0.001 * sqrt(3.0))), <, 1e-9);
    CGA_ASSERT_OK(cga_plugin_analyze(p, &in, &out));
    CGA_ASSERT_EQ(out.regime, CGA_REGIME_SIDEWAYS);
    cga_plugin_free(p);

    p = load_ok("momentum=", builtin_dir, 1); /* empty configuration: defaults */
    CGA_ASSERT_OK(cga_plugin_analyze(p, &in, &out));
    CGA_ASSERT_EQ(out.regime, CGA_REGIME_BULL);
    cga_plugin_free(p);

    /* init refusals carry the plugin's message */
    expect_refusal("momentum=bogus", builtin_dir, 1, CGA_EPLUGIN,
                   "plugin momentum: init failed: \"bogus\": want key=value (keys: sigma, "
                   "threshold)");
    expect_refusal("momentum=sigma=-1", builtin_dir, 1, CGA_EPLUGIN,
                   "plugin momentum: init failed: sigma: \"-1\" is not a positive number");
    expect_refusal("momentum=speed=3", builtin_dir, 1, CGA_EPLUGIN,
                   "plugin momentum: init failed: unknown key \"speed\" (keys: sigma, "
                   "threshold)");
    /* a plugin without init takes no configuration (and the message does not repeat it) */
    expect_refusal("trend=secret-token", builtin_dir, 1, CGA_EPLUGIN,
                   "plugin trend: takes no configuration (it has no init)");
    p = load_ok("trend=", builtin_dir, 1);
    cga_plugin_free(p);
}

static void test_refusals(void) {
    char want[512];
    expect_refusal("bad_abi", fixture_dir, 1, CGA_EABI,
                   "plugin bad_abi: ABI version 999, this lab speaks 1 (rebuild the plugin "
                   "against this cgalpha's lab.h)");
    snprintf(want, sizeof want,
             "plugin no_entry: not a lab plugin: %s/no_entry.so: undefined symbol: "
             "cga_lab_plugin_entry",
             CGA_TEST_FIXTURE_PLUGIN_DIR);
    expect_refusal("no_entry", fixture_dir, 1, CGA_EPLUGIN, want);
    snprintf(want, sizeof want,
             "plugin %s/bad_name.so: invalid name \"Bad Name\" (want [a-z0-9_-]{1,32})",
             CGA_TEST_FIXTURE_PLUGIN_DIR);
    expect_refusal(CGA_TEST_FIXTURE_PLUGIN_DIR "/bad_name.so", NULL, 0, CGA_EPLUGIN, want);
    /* no_analyze's init aborts: it must not be called */
    expect_refusal("no_analyze", fixture_dir, 1, CGA_EPLUGIN,
                   "plugin no_analyze: analyze is NULL (it is required)");

    /* missing */
    expect_refusal("nosuch", fixture_dir, 1, CGA_ENOTFOUND,
                   "plugin nosuch: not found (no nosuch.so in " CGA_TEST_FIXTURE_PLUGIN_DIR ")");
    const char *two[] = {"/nonexistent-a", "/nonexistent-b"};
    expect_refusal("trend", two, 2, CGA_ENOTFOUND,
                   "plugin trend: not found (no trend.so in /nonexistent-a, /nonexistent-b)");
    expect_refusal("trend", NULL, 0, CGA_ENOTFOUND,
                   "plugin trend: not found (no plugin directories to search)");
    expect_refusal("/nonexistent-cga/trend.so", builtin_dir, 1, CGA_ENOTFOUND,
                   "plugin /nonexistent-cga/trend.so: no such file");

    /* names: without '/', only [a-z0-9_-]{1,32}; '..' or a dot never makes a path */
    static const char *bad[] = {"..", "trend.so", "Trend", "", "tr end",
                                "abcdefghijklmnopqrstuvwxyz0123456"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(want, sizeof want,
                 "plugin \"%s\": not a plugin name ([a-z0-9_-]{1,32}) nor a path "
                 "(containing '/')",
                 bad[i]);
        expect_refusal(bad[i], builtin_dir, 1, CGA_EINVAL, want);
    }
    expect_refusal("=x", builtin_dir, 1, CGA_EINVAL, NULL);
    /* with '/', it is a path, relative to the working directory */
    expect_refusal("../trend", builtin_dir, 1, CGA_ENOTFOUND, "plugin ../trend: no such file");
    expect_refusal("./trend.so", builtin_dir, 1, CGA_ENOTFOUND,
                   "plugin ./trend.so: no such file");
    /* err is optional */
    cga_plugin_t *p = NULL;
    CGA_ASSERT_EQ(cga_plugin_load(&p, "nosuch", fixture_dir, 1, NULL, 0), CGA_ENOTFOUND);
    /* a 32-character name is fine (and not found here) */
    expect_refusal("abcdefghijklmnopqrstuvwxyz012345", builtin_dir, 1, CGA_ENOTFOUND, NULL);

    /* the smallest valid plugin: NULL version and description read as "" */
    p = load_ok("minimal", fixture_dir, 1);
    CGA_ASSERT_STREQ(cga_plugin_desc(p)->version, "");
    CGA_ASSERT_STREQ(cga_plugin_desc(p)->description, "");
    cga_plugin_free(p);
}

static void analyze_symbol(const cga_plugin_t *p, const char *symbol, cga_lab_output_t *out,
                           int want_rc) {
    cga_bar_t bars[3];
    make_bars(bars, (double[]){1, 2, 3}, 3);
    cga_lab_input_t in = {.task_id = "t", .symbol = symbol, .bars = bars, .nbars = 3};
    CGA_ASSERT_EQ(cga_plugin_analyze(p, &in, out), want_rc);
}

static void test_output_validation(void) {
    cga_plugin_t *p = load_ok("bad_output", fixture_dir, 1);
    static const struct {
        const char *symbol, *msg;
    } cases[] = {
        {"NAN", "invalid output: confidence nan (want a finite value in [0,1])"},
        {"RANGE", "invalid output: confidence 1.5 (want a finite value in [0,1])"},
        {"REGIME", "invalid output: regime 99 (want 0..4)"},
        {"NMETRICS", "invalid output: 17 metrics (at most 16)"},
        {"METRICNAME", "invalid output: metric 0: name \"Bad Name\" (want [a-z0-9_.]+)"},
        {"UNTERM", "invalid output: metric 0: name not NUL-terminated within 32 bytes"},
        {"METRICINF", "invalid output: metric ok_name = inf (want a finite value)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cga_lab_output_t out;
        analyze_symbol(p, cases[i].symbol, &out, CGA_EPLUGIN);
        CGA_ASSERT_STREQ(out.error, cases[i].msg);
        /* nothing of the invalid output is left to be used */
        CGA_ASSERT_EQ(out.regime, CGA_REGIME_UNKNOWN);
        CGA_ASSERT_OP(out.confidence, ==, 0);
        CGA_ASSERT_EQ(out.nmetrics, 0);
    }
    cga_plugin_free(p);

    p = load_ok("faulty", fixture_dir, 1);
    cga_lab_output_t out;
    analyze_symbol(p, "ERR", &out, CGA_EPLUGIN);
    CGA_ASSERT_STREQ(out.error, "faulty: asked to fail (symbol ERR)");
    CGA_ASSERT_EQ(out.regime, CGA_REGIME_UNKNOWN);
    analyze_symbol(p, "OK", &out, CGA_OK);
    CGA_ASSERT_EQ(out.regime, CGA_REGIME_SIDEWAYS);
    CGA_ASSERT_OP(out.confidence, ==, 0.5);
    CGA_ASSERT_OP(metric(&out, "nbars"), ==, 3);
    CGA_ASSERT_STREQ(out.error, "");
    cga_plugin_free(p);

    /* built-in plugins report bad input as an error, not a crash */
    p = load_ok("trend", builtin_dir, 1);
    analyze_symbol(p, "X", &out, CGA_OK);
    cga_bar_t bars[3];
    make_bars(bars, (double[]){1, 0, 3}, 3);
    cga_lab_input_t in = {.task_id = "t", .symbol = "X", .bars = bars, .nbars = 3};
    CGA_ASSERT_EQ(cga_plugin_analyze(p, &in, &out), CGA_EPLUGIN);
    CGA_ASSERT_STREQ(out.error, "bar 1 (t=1700000060000): close 0 is not a positive finite price");
    in.nbars = 2;
    CGA_ASSERT_EQ(cga_plugin_analyze(p, &in, &out), CGA_EPLUGIN);
    CGA_ASSERT_STREQ(out.error, "need at least 3 bars, got 2");
    cga_plugin_free(p);
}

/* ---- analyze from several threads at once gives what one thread gives ---- */

#define NWIN 64
#define WINLEN 32

typedef struct job_s {
    const cga_plugin_t *p;
    const cga_bar_t (*wins)[WINLEN];
    cga_lab_output_t *outs; /* NWIN */
} job_t;

static void *run_job(void *arg) {
    job_t *j = arg;
    for (int rep = 0; rep < 20; rep++)
        for (int w = 0; w < NWIN; w++) {
            cga_lab_input_t in = {.task_id = "t", .symbol = "S", .bars = j->wins[w],
                                  .nbars = WINLEN};
            CGA_ASSERT_OK(cga_plugin_analyze(j->p, &in, &j->outs[w]));
        }
    return NULL;
}

static void test_concurrent_analyze(void) {
    static cga_bar_t wins[NWIN][WINLEN];
    uint64_t x = 42;
    for (int w = 0; w < NWIN; w++) {
        double c = 100, closes[WINLEN];
        for (int i = 0; i < WINLEN; i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            c *= 1 + ((double)(x >> 11) / 9007199254740992.0 - 0.5) * 0.02 * (w % 4);
            closes[i] = c;
        }
        make_bars(wins[w], closes, WINLEN);
    }
    static const char *specs[] = {"trend", "volatility", "momentum=threshold=1"};
    for (size_t s = 0; s < 3; s++) {
        cga_plugin_t *p = load_ok(specs[s], builtin_dir, 1);
        static cga_lab_output_t ref[NWIN], outs[4][NWIN];
        job_t one = {p, (const cga_bar_t(*)[WINLEN])wins, ref};
        run_job(&one);
        pthread_t th[4];
        job_t jobs[4];
        for (int t = 0; t < 4; t++) {
            jobs[t] = (job_t){p, (const cga_bar_t(*)[WINLEN])wins, outs[t]};
            CGA_ASSERT_EQ(pthread_create(&th[t], NULL, run_job, &jobs[t]), 0);
        }
        for (int t = 0; t < 4; t++) pthread_join(th[t], NULL);
        for (int t = 0; t < 4; t++)
            CGA_ASSERT(memcmp(outs[t], ref, sizeof ref) == 0);
        cga_plugin_free(p);
    }
}

int main(void) {
    CGA_RUN(test_builtins_by_name);
    CGA_RUN(test_search_order);
    CGA_RUN(test_by_path);
    CGA_RUN(test_config);
    CGA_RUN(test_refusals);
    CGA_RUN(test_output_validation);
    CGA_RUN(test_concurrent_analyze);
    return 0;
}
