/* Configuration: layering, .env syntax, flags, validation messages, REDIS_URL, Redis options. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgalpha/config.h"
#include "cgalpha/err.h"
#include "cgalpha/log.h"
#include "cgalpha/redis.h"
#include "test.h"

static char tmpdir[64];

static const cga_setting_t lab_settings[] = {
    {"LAB_THREADS", "threads", CGA_SET_INT, "4", "worker threads", 1, 64, 0, NULL},
    {"LAB_PLUGIN", "plugin", CGA_SET_LIST, NULL, "plugins to load", 0, 0, 0, NULL},
    {"LAB_DRY_RUN", "dry-run", CGA_SET_BOOL, "false", "do nothing", 0, 0, 0, NULL},
    {"LAB_NAME", "name", CGA_SET_STR, "lab", "a name", 0, 0, 0, NULL},
    {"LAB_PIN", NULL, CGA_SET_INT, NULL, "a secret number", 0, 0, 1, NULL},
    {"LAB_OFFSET", "offset", CGA_SET_INT, "0", "no bounds", 0, 0, 0, NULL},
    {"LAB_NOTE", "note", CGA_SET_STR, NULL, "free text", 0, 0, 0, NULL},
};

static cga_config_t *make(void) {
    size_t ncommon;
    const cga_setting_t *common = cga_config_common_settings(&ncommon);
    const cga_setting_t *tables[] = {common, lab_settings};
    size_t counts[] = {ncommon, sizeof lab_settings / sizeof lab_settings[0]};
    cga_config_t *c = NULL;
    CGA_ASSERT_OK(cga_config_create(&c, tables, counts, 2));
    return c;
}

/* Loads argv (NULL-terminated) with envp; returns rc, message in err. */
static int load(cga_config_t *c, char **argv, char **envp, char *err, size_t n) {
    int argc = 0;
    while (argv && argv[argc]) argc++;
    int rc = cga_config_load(c, argc, argv, envp, err, n);
    if (rc) fprintf(stderr, "   (load: %s)\n", err); /* shows the message when a test fails */
    return rc;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CGA_ASSERT(f != NULL);
    fputs(text, f);
    fclose(f);
}

static void path_in_tmp(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/%s", tmpdir, name);
}

static char *no_env[] = {NULL};

static void test_defaults(void) {
    cga_config_t *c = make();
    char err[256];
    CGA_ASSERT_OK(load(c, (char *[]){NULL}, no_env, err, sizeof err));
    CGA_ASSERT_STREQ(cga_config_str(c, "REDIS_HOST"), "127.0.0.1");
    CGA_ASSERT_EQ(cga_config_int(c, "REDIS_PORT"), 6379);
    CGA_ASSERT_EQ(cga_config_int(c, "REDIS_DB"), 0);
    CGA_ASSERT_EQ(cga_config_int(c, "REDIS_CONNECT_TIMEOUT_MS"), 2000);
    CGA_ASSERT_EQ(cga_config_int(c, "REDIS_COMMAND_TIMEOUT_MS"), 5000);
    CGA_ASSERT_EQ(cga_config_int(c, "REDIS_BACKOFF_BASE_MS"), 100);
    CGA_ASSERT_EQ(cga_config_int(c, "REDIS_BACKOFF_CAP_MS"), 5000);
    CGA_ASSERT_EQ(cga_config_int(c, "BREAKER_FAILURES"), 5);
    CGA_ASSERT_EQ(cga_config_int(c, "BREAKER_OPEN_MS"), 30000);
    CGA_ASSERT_STREQ(cga_config_str(c, "CGALPHA_NAMESPACE"), "cgalpha");
    CGA_ASSERT_STREQ(cga_config_str(c, "CGALPHA_LOG_LEVEL"), "info");
    CGA_ASSERT_EQ(cga_config_bool(c, "CGALPHA_SINGLE_INSTANCE"), 0);
    CGA_ASSERT(cga_config_str(c, "REDIS_URL") == NULL);
    CGA_ASSERT(cga_config_str(c, "REDIS_PASSWORD") == NULL);
    CGA_ASSERT_STREQ(cga_config_source(c, "REDIS_URL"), "unset");
    CGA_ASSERT_STREQ(cga_config_origin(c, "REDIS_URL"), "unset");
    CGA_ASSERT_STREQ(cga_config_source(c, "REDIS_PORT"), "default");
    CGA_ASSERT_EQ(cga_config_int(c, "LAB_THREADS"), 4);
    CGA_ASSERT_EQ(cga_config_int(c, "LAB_PIN"), 0); /* unset int reads 0 */
    size_t n = 99;
    cga_config_list(c, "LAB_PLUGIN", &n);
    CGA_ASSERT_EQ(n, 0);
    cga_config_positionals(c, &n);
    CGA_ASSERT_EQ(n, 0);
    cga_config_free(c);
}

static void test_layering(void) {
    char envfile[128], other[128], err[256];
    path_in_tmp(envfile, sizeof envfile, "layer.env");
    path_in_tmp(other, sizeof other, "other.env");
    write_file(envfile, "REDIS_HOST=from-dotenv\nREDIS_PORT=1111\nREDIS_DB=1\n"
                        "CGALPHA_NAMESPACE=dotenv\n");
    write_file(other, "REDIS_HOST=from-other\n");
    char envvar[160];
    snprintf(envvar, sizeof envvar, "CGALPHA_ENV_FILE=%s", envfile);
    char *envp[] = {envvar, "REDIS_PORT=2222", "REDIS_DB=2", "UNRELATED=1", NULL};

    cga_config_t *c = make();
    CGA_ASSERT_OK(load(c, (char *[]){"--redis-port", "3333", NULL}, envp, err, sizeof err));
    CGA_ASSERT_EQ(cga_config_int(c, "REDIS_PORT"), 3333); /* flag > env > .env > default */
    CGA_ASSERT_STREQ(cga_config_source(c, "REDIS_PORT"), "flag");
    CGA_ASSERT_STREQ(cga_config_origin(c, "REDIS_PORT"), "--redis-port");
    CGA_ASSERT_EQ(cga_config_int(c, "REDIS_DB"), 2); /* env > .env */
    CGA_ASSERT_STREQ(cga_config_source(c, "REDIS_DB"), "environment");
    CGA_ASSERT_STREQ(cga_config_str(c, "REDIS_HOST"), "from-dotenv"); /* .env > default */
    CGA_ASSERT_STREQ(cga_config_source(c, "REDIS_HOST"), ".env");
    char where[200];
    snprintf(where, sizeof where, "%s:1", envfile);
    CGA_ASSERT_STREQ(cga_config_origin(c, "REDIS_HOST"), where);
    CGA_ASSERT_STREQ(cga_config_str(c, "CGALPHA_NAMESPACE"), "dotenv");
    CGA_ASSERT_STREQ(cga_config_source(c, "LAB_NAME"), "default");

    /* --env-file wins over $CGALPHA_ENV_FILE, in both spellings */
    char arg[160];
    snprintf(arg, sizeof arg, "--env-file=%s", other);
    CGA_ASSERT_OK(load(c, (char *[]){arg, NULL}, envp, err, sizeof err));
    CGA_ASSERT_STREQ(cga_config_str(c, "REDIS_HOST"), "from-other");
    CGA_ASSERT_EQ(cga_config_int(c, "REDIS_PORT"), 2222); /* reloaded: the flag is gone */
    CGA_ASSERT_OK(load(c, (char *[]){"--env-file", other, NULL}, envp, err, sizeof err));
    CGA_ASSERT_STREQ(cga_config_str(c, "REDIS_HOST"), "from-other");

    /* ./.env is read when nothing names a file (the test runs in tmpdir) */
    write_file(".env", "REDIS_HOST=from-cwd\n");
    CGA_ASSERT_OK(load(c, (char *[]){NULL}, no_env, err, sizeof err));
    CGA_ASSERT_STREQ(cga_config_str(c, "REDIS_HOST"), "from-cwd");
    CGA_ASSERT_STREQ(cga_config_origin(c, "REDIS_HOST"), ".env:1");
    unlink(".env");
    CGA_ASSERT_OK(load(c, (char *[]){NULL}, no_env, err, sizeof err)); /* absent: fine */
    CGA_ASSERT_STREQ(cga_config_str(c, "REDIS_HOST"), "127.0.0.1");

    /* a named file that does not exist is an error naming it */
    char missing[128];
    path_in_tmp(missing, sizeof missing, "missing.env");
    snprintf(envvar, sizeof envvar, "CGALPHA_ENV_FILE=%s", missing);
    char *envp2[] = {envvar, NULL};
    CGA_ASSERT_EQ(load(c, (char *[]){NULL}, envp2, err, sizeof err), CGA_ECONFIG);
    CGA_ASSERT(strstr(err, missing) != NULL);
    CGA_ASSERT(strstr(err, "No such file") != NULL);
    CGA_ASSERT(strstr(err, "CGALPHA_ENV_FILE") != NULL);
    CGA_ASSERT_EQ(load(c, (char *[]){"--env-file", missing, NULL}, no_env, err, sizeof err),
                  CGA_ECONFIG);
    CGA_ASSERT(strstr(err, "--env-file") != NULL);
    CGA_ASSERT_EQ(load(c, (char *[]){"--env-file", NULL}, no_env, err, sizeof err), CGA_ECONFIG);
    CGA_ASSERT_STREQ(err, "option --env-file needs a value");
    cga_config_free(c);
}

static void test_dotenv_syntax(void) {
    char envfile[128], err[256];
    path_in_tmp(envfile, sizeof envfile, "syntax.env");
    write_file(envfile,
               "# a comment\n"
               "\n"
               "   \t\n"
               "export REDIS_HOST=exported.example\n"
               "REDIS_USERNAME = spaced   # trailing comment\n"
               "LAB_NAME=\"say \\\"hi\\\"\\nnext\\\\line\\tTab\\q\"   # comment after quotes\n"
               "REDIS_PASSWORD='single # not a comment \\n kept'\n"
               "LAB_NOTE=raw#hash\r\n"
               "LAB_PLUGIN=trend, volatility ,,momentum\n"
               "SOMETHING_ELSE=ignored\n"
               "LAB_THREADS=8\n"
               "LAB_THREADS=9\n"
               "REDIS_PASSWORD_FILE=\n");
    char arg[160];
    snprintf(arg, sizeof arg, "--env-file=%s", envfile);
    cga_config_t *c = make();
    CGA_ASSERT_OK(load(c, (char *[]){arg, NULL}, no_env, err, sizeof err));
    CGA_ASSERT_STREQ(cga_config_str(c, "REDIS_HOST"), "exported.example");
    CGA_ASSERT_STREQ(cga_config_str(c, "REDIS_USERNAME"), "spaced");
    CGA_ASSERT_STREQ(cga_config_str(c, "LAB_NAME"), "say \"hi\"\nnext\\line\tTab\\q");
    CGA_ASSERT_STREQ(cga_config_str(c, "REDIS_PASSWORD"), "single # not a comment \\n kept");
    CGA_ASSERT_STREQ(cga_config_str(c, "LAB_NOTE"), "raw#hash");
    CGA_ASSERT_EQ(cga_config_int(c, "LAB_THREADS"), 9); /* the last line wins */
    CGA_ASSERT_STREQ(cga_config_str(c, "REDIS_PASSWORD_FILE"), ""); /* empty: no file */
    size_t n;
    const char *const *items = cga_config_list(c, "LAB_PLUGIN", &n);
    CGA_ASSERT_EQ(n, 3);
    CGA_ASSERT_STREQ(items[0], "trend");
    CGA_ASSERT_STREQ(items[1], "volatility");
    CGA_ASSERT_STREQ(items[2], "momentum");
    char where[200];
    snprintf(where, sizeof where, "%s:4", envfile);
    CGA_ASSERT_STREQ(cga_config_origin(c, "REDIS_HOST"), where);

    /* malformed lines: an error naming file:line, never the line's text */
    static const struct {
        const char *text;
        int line;
        const char *why;
    } bad[] = {
        {"REDIS_HOST=ok\n# fine\nthis line has no equals hunter2\n", 3, "expected KEY=VALUE"},
        {"=value\n", 1, "expected KEY=VALUE"},
        {"1KEY=value\n", 1, "expected KEY=VALUE"},
        {"\nREDIS_PASSWORD=\"hunter2\n", 2, "unterminated double quote"},
        {"REDIS_PASSWORD='hunter2\n", 1, "unterminated single quote"},
        {"REDIS_PASSWORD=\"hun\"ter2\n", 1, "unexpected text after the closing quote"},
        {"export\n", 1, "expected KEY=VALUE"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(envfile, bad[i].text);
        CGA_ASSERT_EQ(load(c, (char *[]){arg, NULL}, no_env, err, sizeof err), CGA_ECONFIG);
        char want[256];
        snprintf(want, sizeof want, "%s:%d: %s", envfile, bad[i].line, bad[i].why);
        CGA_ASSERT_STREQ(err, want);
        CGA_ASSERT(strstr(err, "hunter2") == NULL);
    }
    cga_config_free(c);
}

static void test_flags(void) {
    char err[256];
    cga_config_t *c = make();
    char *envp[] = {"LAB_PLUGIN=a,b", "LAB_DRY_RUN=yes", NULL};
    CGA_ASSERT_OK(load(c, (char *[]){NULL}, envp, err, sizeof err));
    size_t n;
    const char *const *items = cga_config_list(c, "LAB_PLUGIN", &n);
    CGA_ASSERT_EQ(n, 2);
    CGA_ASSERT_EQ(cga_config_bool(c, "LAB_DRY_RUN"), 1);

    CGA_ASSERT_OK(load(c,
                       (char *[]){"first", "--plugin", "x", "--threads=12", "--no-dry-run",
                                  "--plugin=y,z", "-", "--name", "--odd", "second", "--",
                                  "--redis-port", "-q", NULL},
                       envp, err, sizeof err));
    items = cga_config_list(c, "LAB_PLUGIN", &n); /* flags replace the env list, then append */
    CGA_ASSERT_EQ(n, 3);
    CGA_ASSERT_STREQ(items[0], "x");
    CGA_ASSERT_STREQ(items[1], "y");
    CGA_ASSERT_STREQ(items[2], "z");
    CGA_ASSERT_STREQ(cga_config_source(c, "LAB_PLUGIN"), "flag");
    CGA_ASSERT_EQ(cga_config_int(c, "LAB_THREADS"), 12);
    CGA_ASSERT_EQ(cga_config_bool(c, "LAB_DRY_RUN"), 0);
    CGA_ASSERT_STREQ(cga_config_origin(c, "LAB_DRY_RUN"), "--no-dry-run");
    CGA_ASSERT_STREQ(cga_config_str(c, "LAB_NAME"), "--odd"); /* a value may start with -- */
    char *const *pos = cga_config_positionals(c, &n);
    CGA_ASSERT_EQ(n, 5);
    CGA_ASSERT_STREQ(pos[0], "first");
    CGA_ASSERT_STREQ(pos[1], "-");
    CGA_ASSERT_STREQ(pos[2], "second");
    CGA_ASSERT_STREQ(pos[3], "--redis-port"); /* after "--" */
    CGA_ASSERT_STREQ(pos[4], "-q");
    CGA_ASSERT_EQ(cga_config_int(c, "REDIS_PORT"), 6379);

    /* bools: bare flag, --flag=VALUE; a bool never takes the next argument */
    CGA_ASSERT_OK(load(c, (char *[]){"--single-instance", "true", NULL}, no_env, err, sizeof err));
    CGA_ASSERT_EQ(cga_config_bool(c, "CGALPHA_SINGLE_INSTANCE"), 1);
    pos = cga_config_positionals(c, &n);
    CGA_ASSERT_EQ(n, 1);
    CGA_ASSERT_STREQ(pos[0], "true");
    static const char *const truthy[] = {"1", "true", "YES", "On"};
    static const char *const falsy[] = {"0", "False", "no", "OFF"};
    for (int i = 0; i < 4; i++) {
        char a1[64];
        snprintf(a1, sizeof a1, "--dry-run=%s", truthy[i]);
        CGA_ASSERT_OK(load(c, (char *[]){a1, NULL}, no_env, err, sizeof err));
        CGA_ASSERT_EQ(cga_config_bool(c, "LAB_DRY_RUN"), 1);
        snprintf(a1, sizeof a1, "--dry-run=%s", falsy[i]);
        CGA_ASSERT_OK(load(c, (char *[]){a1, NULL}, no_env, err, sizeof err));
        CGA_ASSERT_EQ(cga_config_bool(c, "LAB_DRY_RUN"), 0);
    }

    /* errors */
    static const struct {
        char *argv[4];
        const char *want;
    } bad[] = {
        {{"--foo", NULL}, "unknown option --foo (see --help)"},
        {{"--foo=hunter2", NULL}, "unknown option --foo (see --help)"},
        {{"--help", NULL}, "unknown option --help (see --help)"},
        {{"-x", NULL}, "unknown option -x (see --help)"},
        {{"--no-redis-port", NULL}, "unknown option --no-redis-port (see --help)"},
        {{"--no-dry-run=1", NULL}, "option --no-dry-run takes no value"},
        {{"--redis-port", NULL}, "option --redis-port needs a value"},
        {{"--dry-run=maybe", NULL},
         "LAB_DRY_RUN: 'maybe' is not a boolean (true/false, yes/no, on/off, 1/0) "
         "(from --dry-run)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CGA_ASSERT_EQ(load(c, (char **)bad[i].argv, no_env, err, sizeof err), CGA_ECONFIG);
        CGA_ASSERT_STREQ(err, bad[i].want);
    }
    cga_config_free(c);
}

static void test_validation(void) {
    char err[256];
    cga_config_t *c = make();
    static const struct {
        char *argv[3];
        char *env[3];
        const char *want;
    } bad[] = {
        {{"--redis-port", "abc"}, {NULL}, "REDIS_PORT: 'abc' is not a number (from --redis-port)"},
        {{NULL}, {"REDIS_PORT=70000"},
         "REDIS_PORT: '70000' is out of range (1..65535) (from environment)"},
        {{"--redis-port=0"}, {NULL}, "REDIS_PORT: '0' is out of range (1..65535) (from "
                                     "--redis-port)"},
        {{NULL}, {"REDIS_PORT="}, "REDIS_PORT: '' is not a number (from environment)"},
        {{NULL}, {"REDIS_PORT= 6379"}, "REDIS_PORT: ' 6379' is not a number (from environment)"},
        {{"--redis-db", "-1"}, {NULL}, "REDIS_DB: '-1' is out of range (0..2147483647) (from "
                                       "--redis-db)"},
        {{"--offset", "99999999999999999999"}, {NULL},
         "LAB_OFFSET: '99999999999999999999' is out of range (from --offset)"},
        {{NULL}, {"LAB_PIN=12x4"}, "LAB_PIN: the value is not a number (from environment)"},
        {{"--namespace", "has space"}, {NULL},
         "CGALPHA_NAMESPACE: 'has space' is not a valid namespace (1 to 64 characters of A-Z "
         "a-z 0-9 _ . -) (from --namespace)"},
        {{"--log-level=loud"}, {NULL},
         "CGALPHA_LOG_LEVEL: 'loud' is not a log level (debug, info, warn, error or off) (from "
         "--log-level)"},
        {{NULL}, {"CGALPHA_SINGLE_INSTANCE=2"},
         "CGALPHA_SINGLE_INSTANCE: '2' is not a boolean (true/false, yes/no, on/off, 1/0) (from "
         "environment)"},
        {{"--redis-host="}, {NULL}, "REDIS_HOST: '' is empty (from --redis-host)"},
        {{"--redis-backoff-cap-ms", "50"}, {"REDIS_BACKOFF_BASE_MS=100"},
         "REDIS_BACKOFF_CAP_MS: 50 is below REDIS_BACKOFF_BASE_MS (100) (from "
         "--redis-backoff-cap-ms)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CGA_ASSERT_EQ(load(c, (char **)bad[i].argv, (char **)bad[i].env, err, sizeof err),
                      CGA_ECONFIG);
        CGA_ASSERT_STREQ(err, bad[i].want);
    }
    /* a bad value in a lower layer does not matter when a higher one overrides it */
    char *envp[] = {"REDIS_PORT=abc", NULL};
    CGA_ASSERT_OK(load(c, (char *[]){"--redis-port", "6380", NULL}, envp, err, sizeof err));
    CGA_ASSERT_EQ(cga_config_int(c, "REDIS_PORT"), 6380);
    /* bounds are inclusive; "no bounds" takes any int64 */
    CGA_ASSERT_OK(load(c, (char *[]){"--redis-port", "65535", "--offset", "-9000000000", NULL},
                       no_env, err, sizeof err));
    CGA_ASSERT_EQ(cga_config_int(c, "REDIS_PORT"), 65535);
    CGA_ASSERT_EQ(cga_config_int(c, "LAB_OFFSET"), -9000000000LL);
    /* a long bad value is shortened in the message */
    char longv[300];
    memset(longv, 'z', sizeof longv - 1);
    longv[sizeof longv - 1] = '\0';
    CGA_ASSERT_EQ(load(c, (char *[]){"--threads", longv, NULL}, no_env, err, sizeof err),
                  CGA_ECONFIG);
    CGA_ASSERT(strstr(err, "...' is not a number (from --threads)") != NULL);
    CGA_ASSERT(strlen(err) < 120);
    cga_config_free(c);
}

static void test_tables(void) {
    size_t ncommon;
    const cga_setting_t *common = cga_config_common_settings(&ncommon);
    CGA_ASSERT_EQ(ncommon, 16);
    cga_config_t *c = NULL;
    char err[256];
    /* a later table redefines a common setting's default */
    static const cga_setting_t quiet[] = {
        {"CGALPHA_LOG_LEVEL", "log-level", CGA_SET_STR, "warn", "log level", 0, 0, 0, NULL},
    };
    const cga_setting_t *t1[] = {common, quiet};
    size_t n1[] = {ncommon, 1};
    CGA_ASSERT_OK(cga_config_create(&c, t1, n1, 2));
    CGA_ASSERT_OK(cga_config_load(c, 0, NULL, no_env, err, sizeof err));
    CGA_ASSERT_STREQ(cga_config_str(c, "CGALPHA_LOG_LEVEL"), "warn");
    cga_config_free(c);
    /* two settings with one flag, reserved flags, no env name */
    static const cga_setting_t dup[] = {
        {"OTHER_PORT", "redis-port", CGA_SET_INT, "1", "", 0, 0, 0, NULL},
    };
    static const cga_setting_t reserved[] = {
        {"MY_HELP", "help", CGA_SET_BOOL, NULL, "", 0, 0, 0, NULL},
    };
    static const cga_setting_t noname[] = {
        {NULL, "x", CGA_SET_BOOL, NULL, "", 0, 0, 0, NULL},
    };
    const cga_setting_t *t2[] = {common, dup};
    CGA_ASSERT_EQ(cga_config_create(&c, t2, n1, 2), CGA_EINVAL);
    CGA_ASSERT(c == NULL);
    const cga_setting_t *t3[] = {reserved};
    size_t one = 1;
    CGA_ASSERT_EQ(cga_config_create(&c, t3, &one, 1), CGA_EINVAL);
    const cga_setting_t *t4[] = {noname};
    CGA_ASSERT_EQ(cga_config_create(&c, t4, &one, 1), CGA_EINVAL);
    cga_config_free(NULL);
}

/* ---- REDIS_URL ------------------------------------------------------------------------- */

#define PW "S3cr3tPw"

static void url_ok(const char *url, const char *host, int port, const char *path,
                   const char *user, const char *pass, int db) {
    cga_redis_url_t u;
    char err[256];
    int rc = cga_redis_url_parse(url, &u, err, sizeof err);
    if (rc) fprintf(stderr, "url %s: %s\n", url, err);
    CGA_ASSERT_OK(rc);
    if (host)
        CGA_ASSERT_STREQ(u.host, host);
    else
        CGA_ASSERT(u.host == NULL);
    if (path)
        CGA_ASSERT_STREQ(u.unix_path, path);
    else
        CGA_ASSERT(u.unix_path == NULL);
    if (user)
        CGA_ASSERT_STREQ(u.username, user);
    else
        CGA_ASSERT(u.username == NULL);
    if (pass)
        CGA_ASSERT_STREQ(u.password, pass);
    else
        CGA_ASSERT(u.password == NULL);
    CGA_ASSERT_EQ(u.port, port);
    CGA_ASSERT_EQ(u.db, db);
    cga_redis_url_clear(&u);
    CGA_ASSERT(u.host == NULL && u.password == NULL);
}

static void url_bad(const char *url, int want_rc, const char *want) {
    cga_redis_url_t u;
    char err[256];
    memset(&u, 0x5a, sizeof u);
    int rc = cga_redis_url_parse(url, &u, err, sizeof err);
    if (rc != want_rc) fprintf(stderr, "url %s: rc %d msg %s\n", url, rc, err);
    CGA_ASSERT_EQ(rc, want_rc);
    CGA_ASSERT_STREQ(err, want);
    CGA_ASSERT(strstr(err, PW) == NULL);
    CGA_ASSERT(u.host == NULL && u.unix_path == NULL && u.username == NULL && u.password == NULL);
}

static void test_url_parse(void) {
    cga_log_clear_secrets();
    url_ok("redis://localhost", "localhost", 6379, NULL, NULL, NULL, 0);
    url_ok("redis://10.0.0.5:6380/3", "10.0.0.5", 6380, NULL, NULL, NULL, 3);
    url_ok("REDIS://h:1/", "h", 1, NULL, NULL, NULL, 0);
    url_ok("redis://app:" PW "@h:7000/15", "h", 7000, NULL, "app", PW, 15);
    url_ok("redis://:" PW "@h", "h", 6379, NULL, NULL, PW, 0);
    url_ok("redis://" PW "@h/2", "h", 6379, NULL, NULL, PW, 2); /* lone userinfo = password */
    url_ok("redis://app:@h", "h", 6379, NULL, "app", NULL, 0);
    url_ok("redis://us%65r:p%40ss%3Aw%2Fd%25@h", "h", 6379, NULL, "user", "p@ss:w/d%", 0);
    url_ok("redis://u:pa/ss@word@h:6379/1", "h", 6379, NULL, "u", "pa/ss@word", 1);
    url_ok("redis://[::1]:6390/4", "::1", 6390, NULL, NULL, NULL, 4);
    url_ok("redis://u:" PW "@[fe80::1]", "fe80::1", 6379, NULL, "u", PW, 0);
    url_ok("redis://h?db=7", "h", 6379, NULL, NULL, NULL, 7);
    url_ok("redis://h:6379/2147483647", "h", 6379, NULL, NULL, NULL, 2147483647);
    url_ok("unix:///tmp/redis.sock", NULL, 6379, "/tmp/redis.sock", NULL, NULL, 0);
    url_ok("unix://:" PW "@/run/r.sock?db=3", NULL, 6379, "/run/r.sock", NULL, PW, 3);
    url_ok("unix://u:" PW "@/run/r.sock", NULL, 6379, "/run/r.sock", "u", PW, 0);
    url_ok("redis+unix:///var/run/redis%20x.sock?db=2", NULL, 6379, "/var/run/redis x.sock", NULL,
           NULL, 2);

    url_bad("rediss://u:" PW "@h:6380", CGA_ETLS,
            "REDIS_URL: rediss:// (TLS) is not supported by this build");
    url_bad("http://u:" PW "@h", CGA_ECONFIG,
            "REDIS_URL: unsupported scheme 'http://' (use redis:// or unix://)");
    static const char *forms =
        "REDIS_URL: not a URL (expected redis://host[:port][/db] or unix:///path/to/redis.sock)";
    url_bad(PW, CGA_ECONFIG, forms);
    url_bad("u:" PW "@h:6379", CGA_ECONFIG, forms);
    url_bad("x:" PW "://h", CGA_ECONFIG, forms);
    url_bad("", CGA_ECONFIG, forms);
    url_bad(NULL, CGA_ECONFIG, forms);
    url_bad("redis://u:" PW "@h:abc/0", CGA_ECONFIG, "REDIS_URL: bad port 'abc' (1..65535)");
    url_bad("redis://u:" PW "@h:0", CGA_ECONFIG, "REDIS_URL: bad port '0' (1..65535)");
    url_bad("redis://u:" PW "@h:65536", CGA_ECONFIG, "REDIS_URL: bad port '65536' (1..65535)");
    url_bad("redis://u:" PW "@h:", CGA_ECONFIG, "REDIS_URL: bad port '' (1..65535)");
    url_bad("redis://u:" PW "@h/x", CGA_ECONFIG,
            "REDIS_URL: bad database 'x' (a number, 0 or more)");
    url_bad("redis://u:" PW "@h/-1", CGA_ECONFIG,
            "REDIS_URL: bad database '-1' (a number, 0 or more)");
    url_bad("redis://u:" PW "@h/2147483648", CGA_ECONFIG,
            "REDIS_URL: bad database '2147483648' (a number, 0 or more)");
    url_bad("unix://u:" PW "@/s.sock?db=z", CGA_ECONFIG,
            "REDIS_URL: bad database 'z' (a number, 0 or more)");
    url_bad("redis://u:" PW "@h?timeout=3", CGA_ECONFIG,
            "REDIS_URL: unsupported parameter 'timeout'");
    url_bad("redis://u:" PW "@", CGA_ECONFIG,
            "REDIS_URL: no host (expected redis://host[:port][/db])");
    url_bad("redis://", CGA_ECONFIG,
            "REDIS_URL: no host (expected redis://host[:port][/db])");
    url_bad("redis://u:" PW "%zz@h", CGA_ECONFIG,
            "REDIS_URL: bad percent-encoding in the password");
    url_bad("redis://u:" PW "%0@h", CGA_ECONFIG,
            "REDIS_URL: bad percent-encoding in the password");
    url_bad("redis://u%00:" PW "@h", CGA_ECONFIG,
            "REDIS_URL: bad percent-encoding in the user name");
    url_bad("redis://u:" PW "@::1:6379", CGA_ECONFIG,
            "REDIS_URL: an IPv6 address needs brackets: redis://[::1]:6379");
    url_bad("redis://u:" PW "@[::1:6379", CGA_ECONFIG,
            "REDIS_URL: missing ']' after an IPv6 address");
    url_bad("redis://u:" PW "@[::1]x", CGA_ECONFIG, "REDIS_URL: unexpected text after ']'");
    url_bad("unix://u:" PW "@tmp/r.sock", CGA_ECONFIG,
            "REDIS_URL: unix:// needs an absolute socket path (unix:///path/to/redis.sock)");
    url_bad("unix://u:" PW "@/", CGA_ECONFIG, "REDIS_URL: unix:// needs a socket path");

    /* through the loader: the setting's origin is added, the password never shown */
    char err[256];
    cga_config_t *c = make();
    char *envp[] = {"REDIS_URL=redis://u:" PW "@h:99999", NULL};
    CGA_ASSERT_EQ(load(c, (char *[]){NULL}, envp, err, sizeof err), CGA_ECONFIG);
    CGA_ASSERT_STREQ(err, "REDIS_URL: bad port '99999' (1..65535) (from environment)");
    CGA_ASSERT_EQ(load(c, (char *[]){"--redis-url", "rediss://:" PW "@h", NULL}, no_env, err,
                       sizeof err),
                  CGA_ECONFIG);
    CGA_ASSERT_STREQ(err,
                     "REDIS_URL: rediss:// (TLS) is not supported by this build (from --redis-url)");
    /* REDIS_URL= (empty) means no URL */
    char *envp2[] = {"REDIS_URL=", NULL};
    CGA_ASSERT_OK(load(c, (char *[]){NULL}, envp2, err, sizeof err));
    cga_config_free(c);
    cga_log_clear_secrets();
}

/* ---- Redis options, password file, secrets --------------------------------------------- */

static void test_redis_opts(void) {
    char err[256];
    cga_redis_opts_t o;
    cga_log_clear_secrets();
    cga_config_t *c = make();

    /* separate settings */
    char *envp[] = {"REDIS_HOST=db.internal", "REDIS_PORT=6390", "REDIS_DB=3",
                    "REDIS_USERNAME=app", "REDIS_PASSWORD=envpw", "REDIS_CONNECT_TIMEOUT_MS=111",
                    "REDIS_COMMAND_TIMEOUT_MS=222", "REDIS_BACKOFF_BASE_MS=33",
                    "REDIS_BACKOFF_CAP_MS=444", "BREAKER_FAILURES=7", "BREAKER_OPEN_MS=888", NULL};
    CGA_ASSERT_OK(load(c, (char *[]){NULL}, envp, err, sizeof err));
    CGA_ASSERT_OK(cga_config_redis_opts(c, &o, err, sizeof err));
    CGA_ASSERT_STREQ(o.host, "db.internal");
    CGA_ASSERT(o.unix_path == NULL);
    CGA_ASSERT_EQ(o.port, 6390);
    CGA_ASSERT_EQ(o.db, 3);
    CGA_ASSERT_STREQ(o.username, "app");
    CGA_ASSERT_STREQ(o.password, "envpw");
    CGA_ASSERT_EQ(o.connect_timeout_ms, 111);
    CGA_ASSERT_EQ(o.command_timeout_ms, 222);
    CGA_ASSERT_EQ(o.backoff_base_ms, 33);
    CGA_ASSERT_EQ(o.backoff_cap_ms, 444);
    CGA_ASSERT_EQ(o.breaker_failures, 7);
    CGA_ASSERT_EQ(o.breaker_open_ms, 888);
    CGA_ASSERT(o.client_name == NULL);
    CGA_ASSERT_EQ(o.max_queued, 100000); /* defaults from cga_redis_opts_init stay */
    CGA_ASSERT_EQ(o.queue_timeout_ms, 10000);
    char red[128];
    cga_log_redact("auth with envpw failed", red, sizeof red); /* registered by load */
    CGA_ASSERT_STREQ(red, "auth with *** failed");

    /* REDIS_URL wins over the separate settings; its password over REDIS_PASSWORD */
    char *envp2[] = {"REDIS_HOST=db.internal", "REDIS_PORT=6390", "REDIS_PASSWORD=envpw",
                     "REDIS_USERNAME=envuser", "REDIS_URL=redis://urluser:urlpw@10.1.1.1:7000/5",
                     NULL};
    CGA_ASSERT_OK(load(c, (char *[]){NULL}, envp2, err, sizeof err));
    CGA_ASSERT_OK(cga_config_redis_opts(c, &o, err, sizeof err));
    CGA_ASSERT_STREQ(o.host, "10.1.1.1");
    CGA_ASSERT_EQ(o.port, 7000);
    CGA_ASSERT_EQ(o.db, 5);
    CGA_ASSERT_STREQ(o.username, "urluser");
    CGA_ASSERT_STREQ(o.password, "urlpw");
    cga_log_redact("urlpw", red, sizeof red);
    CGA_ASSERT_STREQ(red, "***");

    /* a URL without credentials takes REDIS_USERNAME / REDIS_PASSWORD */
    char *envp3[] = {"REDIS_PASSWORD=envpw", "REDIS_USERNAME=envuser",
                     "REDIS_URL=unix:///tmp/x/redis.sock?db=1", NULL};
    CGA_ASSERT_OK(load(c, (char *[]){NULL}, envp3, err, sizeof err));
    CGA_ASSERT_OK(cga_config_redis_opts(c, &o, err, sizeof err));
    CGA_ASSERT_STREQ(o.unix_path, "/tmp/x/redis.sock");
    CGA_ASSERT_EQ(o.db, 1);
    CGA_ASSERT_STREQ(o.username, "envuser");
    CGA_ASSERT_STREQ(o.password, "envpw");

    /* REDIS_HOST=/path is a unix socket */
    CGA_ASSERT_OK(load(c, (char *[]){"--redis-host", "/run/redis.sock", NULL}, no_env, err,
                       sizeof err));
    CGA_ASSERT_OK(cga_config_redis_opts(c, &o, err, sizeof err));
    CGA_ASSERT_STREQ(o.unix_path, "/run/redis.sock");
    CGA_ASSERT(o.password == NULL);
    CGA_ASSERT(o.username == NULL);

    /* REDIS_PASSWORD_FILE: the first line, newline stripped; REDIS_PASSWORD wins over it */
    char pwfile[128], arg[160];
    path_in_tmp(pwfile, sizeof pwfile, "pw.txt");
    write_file(pwfile, "filepw-1\r\nsecond line ignored\n");
    snprintf(arg, sizeof arg, "--redis-password-file=%s", pwfile);
    CGA_ASSERT_OK(load(c, (char *[]){arg, NULL}, no_env, err, sizeof err));
    CGA_ASSERT_OK(cga_config_redis_opts(c, &o, err, sizeof err));
    CGA_ASSERT_STREQ(o.password, "filepw-1");
    CGA_ASSERT_STREQ(cga_config_str(c, "REDIS_PASSWORD_FILE"), pwfile);
    cga_log_redact("x filepw-1 x", red, sizeof red);
    CGA_ASSERT_STREQ(red, "x *** x");
    write_file(pwfile, "nonl"); /* no newline at all */
    CGA_ASSERT_OK(load(c, (char *[]){arg, NULL}, no_env, err, sizeof err));
    CGA_ASSERT_OK(cga_config_redis_opts(c, &o, err, sizeof err));
    CGA_ASSERT_STREQ(o.password, "nonl");
    char *envp4[] = {"REDIS_PASSWORD=envpw", NULL};
    CGA_ASSERT_OK(load(c, (char *[]){arg, NULL}, envp4, err, sizeof err));
    CGA_ASSERT_OK(cga_config_redis_opts(c, &o, err, sizeof err));
    CGA_ASSERT_STREQ(o.password, "envpw");
    /* unreadable, empty */
    char missing[128];
    path_in_tmp(missing, sizeof missing, "nope.txt");
    snprintf(arg, sizeof arg, "--redis-password-file=%s", missing);
    CGA_ASSERT_EQ(load(c, (char *[]){arg, NULL}, no_env, err, sizeof err), CGA_ECONFIG);
    char want[300];
    snprintf(want, sizeof want,
             "REDIS_PASSWORD_FILE: cannot read %s: No such file or directory (from "
             "--redis-password-file)",
             missing);
    CGA_ASSERT_STREQ(err, want);
    if (geteuid() != 0) {
        write_file(pwfile, "x\n");
        chmod(pwfile, 0);
        snprintf(arg, sizeof arg, "--redis-password-file=%s", pwfile);
        CGA_ASSERT_EQ(load(c, (char *[]){arg, NULL}, no_env, err, sizeof err), CGA_ECONFIG);
        CGA_ASSERT(strstr(err, "Permission denied") != NULL);
        chmod(pwfile, 0600);
    }
    write_file(pwfile, "\nsecond\n");
    snprintf(arg, sizeof arg, "--redis-password-file=%s", pwfile);
    CGA_ASSERT_EQ(load(c, (char *[]){arg, NULL}, no_env, err, sizeof err), CGA_ECONFIG);
    CGA_ASSERT(strstr(err, "REDIS_PASSWORD_FILE: the first line of") != NULL);
    write_file(pwfile, "");
    CGA_ASSERT_EQ(load(c, (char *[]){arg, NULL}, no_env, err, sizeof err), CGA_ECONFIG);
    snprintf(want, sizeof want, "REDIS_PASSWORD_FILE: %s is empty (from --redis-password-file)",
             pwfile);
    CGA_ASSERT_STREQ(err, want);
    cga_config_free(c);
    cga_log_clear_secrets();
}

static void test_help(void) {
    static const cga_setting_t extra[] = {
        {"LAB_TOKEN", "token", CGA_SET_STR, "topsecret-default", "a token", 0, 0, 1, NULL},
    };
    size_t ncommon;
    const cga_setting_t *common = cga_config_common_settings(&ncommon);
    const cga_setting_t *tables[] = {common, lab_settings, extra};
    size_t counts[] = {ncommon, sizeof lab_settings / sizeof lab_settings[0], 1};
    cga_config_t *c = NULL;
    CGA_ASSERT_OK(cga_config_create(&c, tables, counts, 3));
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cga_config_print_help(c, f);
    fclose(f);
    static const char *const want[] = {
        "  --redis-port N",
        "REDIS_PORT (default: 6379; 1..65535)\n      Redis TCP port\n",
        "  --redis-host VALUE",
        "REDIS_HOST (default: 127.0.0.1)",
        "  --redis-password VALUE",
        "REDIS_PASSWORD (secret)",
        "LAB_TOKEN (secret)",
        "  --[no-]single-instance",
        "CGALPHA_SINGLE_INSTANCE (default: false)",
        "  --plugin VALUE ...",
        "  (environment only)",
        "  --env-file PATH",
        "CGALPHA_ENV_FILE",
        "CGALPHA_LOG_LEVEL (default: info)",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (!strstr(buf, want[i])) fprintf(stderr, "help lacks \"%s\":\n%s", want[i], buf);
        CGA_ASSERT(strstr(buf, want[i]) != NULL);
    }
    CGA_ASSERT(strstr(buf, "topsecret") == NULL);
    for (char *line = buf; *line;) { /* 100 columns at most */
        size_t l = strcspn(line, "\n");
        if (l > 100) fprintf(stderr, "long help line: %.*s\n", (int)l, line);
        CGA_ASSERT(l <= 100);
        line += l + (line[l] ? 1 : 0);
    }
    free(buf);
    cga_config_free(c);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cga-cfg-XXXXXX");
    CGA_ASSERT(mkdtemp(tmpdir) != NULL);
    CGA_ASSERT_OK(chdir(tmpdir)); /* so that ./.env is ours */
    CGA_RUN(test_defaults);
    CGA_RUN(test_layering);
    CGA_RUN(test_dotenv_syntax);
    CGA_RUN(test_flags);
    CGA_RUN(test_validation);
    CGA_RUN(test_tables);
    CGA_RUN(test_url_parse);
    CGA_RUN(test_redis_opts);
    CGA_RUN(test_help);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    CGA_ASSERT_EQ(system(cmd), 0);
    fprintf(stderr, "ok\n");
    return 0;
}
