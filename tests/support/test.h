#ifndef CGA_TEST_H
#define CGA_TEST_H

/* Minimal assertions for cgalpha tests. Each test binary is one CTest test; a failed assertion
 * prints file:line, the expression and both values, then exits 1. */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CGA_FAIL_(...)                                                                     \
    do {                                                                                   \
        fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                               \
        fprintf(stderr, __VA_ARGS__);                                                      \
        fprintf(stderr, "\n");                                                             \
        exit(1);                                                                           \
    } while (0)

#define CGA_ASSERT(cond)                                                                   \
    do {                                                                                   \
        if (!(cond)) CGA_FAIL_("assertion failed: %s", #cond);                             \
    } while (0)

#define CGA_ASSERT_EQ(got, want)                                                           \
    do {                                                                                   \
        long long g_ = (long long)(got), w_ = (long long)(want);                           \
        if (g_ != w_) CGA_FAIL_("%s == %s: got %lld, want %lld", #got, #want, g_, w_);     \
    } while (0)

#define CGA_ASSERT_NE(got, bad)                                                            \
    do {                                                                                   \
        long long g_ = (long long)(got), b_ = (long long)(bad);                            \
        if (g_ == b_) CGA_FAIL_("%s != %s: both %lld", #got, #bad, g_);                    \
    } while (0)

#define CGA_ASSERT_OP(got, op, want)                                                       \
    do {                                                                                   \
        double g_ = (double)(got), w_ = (double)(want);                                    \
        if (!(g_ op w_)) CGA_FAIL_("%s %s %s: got %g, want %s %g", #got, #op, #want, g_,   \
                                   #op, w_);                                               \
    } while (0)

#define CGA_ASSERT_OK(rc)                                                                  \
    do {                                                                                   \
        int r_ = (rc);                                                                     \
        if (r_ != 0) CGA_FAIL_("%s: got %d (%s), want 0", #rc, r_, cga_strerror(r_));      \
    } while (0)

#define CGA_ASSERT_STREQ(got, want)                                                        \
    do {                                                                                   \
        const char *g_ = (got), *w_ = (want);                                              \
        if (!g_ || !w_ || strcmp(g_, w_) != 0)                                             \
            CGA_FAIL_("%s == %s: got \"%s\", want \"%s\"", #got, #want, g_ ? g_ : "(null)", \
                      w_ ? w_ : "(null)");                                                 \
    } while (0)

#define CGA_ASSERT_MEMEQ(got, glen, want, wlen)                                            \
    do {                                                                                   \
        size_t gl_ = (glen), wl_ = (wlen);                                                 \
        if (gl_ != wl_ || memcmp((got), (want), gl_) != 0)                                 \
            CGA_FAIL_("%s == %s: got \"%.*s\", want \"%.*s\"", #got, #want, (int)gl_,      \
                      (const char *)(got), (int)wl_, (const char *)(want));                \
    } while (0)

#define CGA_RUN(fn)                                                                        \
    do {                                                                                   \
        fprintf(stderr, "-- %s\n", #fn);                                                   \
        fn();                                                                              \
    } while (0)

#endif
