#include "cgalpha/err.h"
#include "cgalpha/keys.h"
#include "cgalpha/log.h"
#include "test.h"

static void test_namespace_validation(void) {
    CGA_ASSERT_OK(cga_namespace_validate("cgalpha"));
    CGA_ASSERT_OK(cga_namespace_validate("team-a.v2_test"));
    CGA_ASSERT_EQ(cga_namespace_validate(""), CGA_ECONFIG);
    CGA_ASSERT_EQ(cga_namespace_validate("has space"), CGA_ECONFIG);
    CGA_ASSERT_EQ(cga_namespace_validate("a:b"), CGA_ECONFIG);
    CGA_ASSERT_EQ(cga_namespace_validate(NULL), CGA_ECONFIG);
    char big[CGA_NAMESPACE_MAX + 2];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CGA_ASSERT_EQ(cga_namespace_validate(big), CGA_ECONFIG);
}

static void test_key_building(void) {
    char k[CGA_KEY_MAX];
    CGA_ASSERT_EQ(cga_key(k, sizeof k, "cgalpha", CGA_KIND_QUEUE, CGA_QUEUE_ANALYSIS, NULL), 22);
    CGA_ASSERT_STREQ(k, "cgalpha:queue:analysis");
    cga_key(k, sizeof k, "ns", CGA_KIND_QUEUE, CGA_QUEUE_REPORTS, "dead");
    CGA_ASSERT_STREQ(k, "ns:queue:reports:dead");
    char small[8];
    CGA_ASSERT_EQ(cga_key(small, sizeof small, "cgalpha", "state", "x", NULL), CGA_ETOOBIG);
    CGA_ASSERT_STREQ(small, "");
}

static void test_log_redaction(void) {
    char out[256];
    cga_log_clear_secrets();
    cga_log_redact("connect redis://app:s3cret@10.0.0.1:6379/2 failed", out, sizeof out);
    CGA_ASSERT_STREQ(out, "connect redis://app:***@10.0.0.1:6379/2 failed");
    cga_log_redact("url redis://:pw@h/0", out, sizeof out);
    CGA_ASSERT_STREQ(out, "url redis://:***@h/0");
    cga_log_redact("url redis://onlypass@h", out, sizeof out);
    CGA_ASSERT_STREQ(out, "url redis://***@h");
    cga_log_add_secret("hunter2");
    cga_log_redact("password is hunter2, twice hunter2", out, sizeof out);
    CGA_ASSERT_STREQ(out, "password is ***, twice ***");
    cga_log_redact("no secrets in redis://host:6379", out, sizeof out);
    CGA_ASSERT_STREQ(out, "no secrets in redis://host:6379");
    int lvl = -1;
    CGA_ASSERT_OK(cga_log_level_parse("WARNING", &lvl));
    CGA_ASSERT_EQ(lvl, CGA_LOG_WARN);
    CGA_ASSERT_EQ(cga_log_level_parse("loud", &lvl), CGA_EINVAL);
    cga_log_clear_secrets();
}

static void test_strerror(void) {
    CGA_ASSERT_STREQ(cga_strerror(CGA_ETLS), "TLS is not supported by this build");
    CGA_ASSERT_STREQ(cga_errname(CGA_EOOM), "EOOM");
    CGA_ASSERT_STREQ(cga_strerror(-111), "connection refused");
    CGA_ASSERT_STREQ(cga_strerror(0), "ok");
}

int main(void) {
    CGA_RUN(test_namespace_validation);
    CGA_RUN(test_key_building);
    CGA_RUN(test_log_redaction);
    CGA_RUN(test_strerror);
    return 0;
}
