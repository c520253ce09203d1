/* The task buffer on a real file system, with real process deaths and real write failures
 * (no Redis needed):
 *   - kill -9 while appending: every append that returned CGA_OK is there after a restart, in
 *     order, whole;
 *   - kill -9 while draining: every entry was either delivered or is still in the buffer (never
 *     lost; delivered and still there = a duplicate, allowed), and the dead drainer's lease
 *     lapses so another process can take over;
 *   - a write that fails at the file system (RLIMIT_FSIZE: EFBIG from write(2), without root or a
 *     special mount): the append reports CGA_EBUFFER with the errno text and writes nothing.
 * A real ENOSPC would need a small mounted file system (root only); SQLITE_FULL itself is covered
 * by the max_bytes test in tests/unit/test_buffer.c, which goes through the same error path. */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgalpha/buffer.h"
#include "cgalpha/err.h"
#include "test.h"

static char tmpdir[64];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static cga_buffer_t *open_ok(const char *path) {
    cga_buffer_t *b = NULL;
    char err[512];
    int rc = cga_buffer_open(&b, path, NULL, err, sizeof err);
    if (rc) fprintf(stderr, "open %s: %s\n", path, err);
    CGA_ASSERT_OK(rc);
    return b;
}

/* Entry i: 2000 bytes starting with "entry <i>;" then a pattern derived from i. */
static size_t make_entry(char *buf, int i) {
    int n = snprintf(buf, 64, "entry %d;", i);
    for (size_t k = (size_t)n; k < 2000; k++) buf[k] = (char)('a' + (i * 7 + (int)k) % 26);
    return 2000;
}

static int entry_index(const cga_buffer_entry_t *e) {
    char want[2000];
    int i = -1;
    if (sscanf(e->data, "entry %d;", &i) != 1) return -1;
    size_t n = make_entry(want, i);
    return e->len == n && memcmp(e->data, want, n) == 0 ? i : -2;
}

static int read_full(int fd, void *p, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)p + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return 0;
        got += (size_t)r;
    }
    return 1;
}

static void write_full(int fd, const void *p, size_t n) {
    if (write(fd, p, n) != (ssize_t)n) _exit(9);
}

static void test_kill_while_appending(void) {
    char path[256];
    snprintf(path, sizeof path, "%s/append/task_buffer.db", tmpdir);
    int fds[2];
    CGA_ASSERT_OK(pipe(fds));
    pid_t pid = fork();
    CGA_ASSERT(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        cga_buffer_t *b = NULL;
        if (cga_buffer_open(&b, path, NULL, NULL, 0)) _exit(2);
        char buf[2000];
        for (int i = 0;; i++) {
            size_t n = make_entry(buf, i);
            if (cga_buffer_append(b, "analysis", buf, n, 1, "f", "l")) _exit(3);
            write_full(fds[1], &i, sizeof i); /* "the producer forgot it" */
        }
    }
    close(fds[1]);
    int acked = -1, i;
    while (acked < 150 && read_full(fds[0], &i, sizeof i)) acked = i;
    CGA_ASSERT_EQ(acked, 150);
    kill(pid, SIGKILL);
    while (read_full(fds[0], &i, sizeof i)) acked = i; /* acks written before the kill */
    close(fds[0]);
    int status = 0;
    CGA_ASSERT_EQ(waitpid(pid, &status, 0), pid);
    CGA_ASSERT(WIFSIGNALED(status));

    cga_buffer_t *b = open_ok(path);
    cga_buffer_batch_t *bt = NULL;
    CGA_ASSERT_OK(cga_buffer_peek(b, NULL, 0, 100000, 0, &bt));
    fprintf(stderr, "   acknowledged %d appends, %zu rows after the kill\n", acked + 1, bt->n);
    /* every acknowledged append (0..acked) is there, whole and in order; at most one more (its
     * commit was done when the kill came, before the ack was written) */
    CGA_ASSERT(bt->n == (size_t)acked + 1 || bt->n == (size_t)acked + 2);
    for (size_t k = 0; k < bt->n; k++) CGA_ASSERT_EQ(entry_index(&bt->entries[k]), k);
    cga_buffer_batch_free(bt);
    cga_buffer_free(b);
}

static void test_kill_while_draining(void) {
    enum { N = 400, LEASE_MS = 400 };
    char path[256];
    snprintf(path, sizeof path, "%s/drain/task_buffer.db", tmpdir);
    cga_buffer_t *b = open_ok(path);
    char buf[2000];
    for (int i = 0; i < N; i++) {
        size_t n = make_entry(buf, i);
        CGA_ASSERT_OK(cga_buffer_append(b, "analysis", buf, n, 1, "f", "l"));
    }
    cga_buffer_free(b); /* never carry an open SQLite connection across fork() */

    int fds[2];
    CGA_ASSERT_OK(pipe(fds));
    pid_t pid = fork();
    CGA_ASSERT(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        cga_buffer_t *c = NULL;
        if (cga_buffer_open(&c, path, NULL, NULL, 0)) _exit(2);
        if (cga_buffer_drain_lock(c, LEASE_MS)) _exit(3);
        for (;;) {
            cga_buffer_batch_t *bt = NULL;
            if (cga_buffer_peek(c, NULL, 0, 16, 0, &bt)) _exit(4);
            if (bt->n == 0) _exit(5);
            int64_t seqs[16];
            for (size_t k = 0; k < bt->n; k++) {
                int idx = entry_index(&bt->entries[k]);
                write_full(fds[1], &idx, sizeof idx); /* "Redis accepted it" */
                seqs[k] = bt->entries[k].seq;
            }
            if (cga_buffer_delete(c, seqs, bt->n, NULL)) _exit(6);
            cga_buffer_batch_free(bt);
            if (cga_buffer_drain_lock(c, LEASE_MS)) _exit(7); /* renew */
        }
    }
    close(fds[1]);
    static int delivered[N];
    int got = 0, idx;
    while (got < N / 2 && read_full(fds[0], &idx, sizeof idx)) {
        CGA_ASSERT(idx >= 0 && idx < N);
        delivered[idx]++;
        got++;
    }
    kill(pid, SIGKILL);
    while (read_full(fds[0], &idx, sizeof idx)) {
        CGA_ASSERT(idx >= 0 && idx < N);
        delivered[idx]++;
        got++;
    }
    close(fds[0]);
    int status = 0;
    CGA_ASSERT_EQ(waitpid(pid, &status, 0), pid);
    CGA_ASSERT(WIFSIGNALED(status));

    /* delivered in order, once each */
    for (int i = 0; i < got; i++) CGA_ASSERT_EQ(delivered[i], 1);
    b = open_ok(path);
    cga_buffer_batch_t *bt = NULL;
    CGA_ASSERT_OK(cga_buffer_peek(b, NULL, 0, 100000, 0, &bt));
    int dup = 0;
    for (size_t k = 0; k < bt->n; k++) {
        int i = entry_index(&bt->entries[k]);
        CGA_ASSERT(i >= 0);
        if (k) CGA_ASSERT_EQ(i, entry_index(&bt->entries[k - 1]) + 1);
        if (delivered[i]) dup++;
    }
    fprintf(stderr, "   %d delivered before the kill, %zu left, %d of them delivered already\n",
            got, bt->n, dup);
    /* nothing lost: what is left starts at or before the first entry not delivered */
    CGA_ASSERT((int)bt->n + got - dup == N);
    CGA_ASSERT(dup <= 16); /* at most the batch between its sends and its delete */
    cga_buffer_batch_free(bt);

    /* the dead drainer's lease holds until it lapses, then another process takes over */
    int rc = cga_buffer_drain_lock(b, 5000);
    if (rc == CGA_ELOCKED) {
        fprintf(stderr, "   %s\n", cga_buffer_errmsg(b));
        usleep((LEASE_MS + 100) * 1000);
        rc = cga_buffer_drain_lock(b, 5000);
    }
    CGA_ASSERT_OK(rc);
    cga_buffer_free(b);
}

static void test_write_failure(void) {
    char path[256];
    snprintf(path, sizeof path, "%s/efbig/task_buffer.db", tmpdir);
    cga_buffer_t *b = open_ok(path);
    cga_buffer_free(b);
    int fds[2];
    CGA_ASSERT_OK(pipe(fds));
    pid_t pid = fork();
    CGA_ASSERT(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        signal(SIGXFSZ, SIG_IGN); /* write(2) then fails with EFBIG instead of killing us */
        cga_buffer_t *c = NULL;
        if (cga_buffer_open(&c, path, NULL, NULL, 0)) _exit(2);
        struct rlimit rl = {256 * 1024, 256 * 1024}; /* no file may grow past 256 KiB */
        if (setrlimit(RLIMIT_FSIZE, &rl)) _exit(3);
        char buf[2000];
        int i, rc = CGA_OK;
        for (i = 0; i < 1000 && rc == CGA_OK; i++) {
            size_t n = make_entry(buf, i);
            rc = cga_buffer_append(c, "analysis", buf, n, 1, "f", "l");
        }
        int ok = i - 1, kind = cga_buffer_errkind(c);
        write_full(fds[1], &rc, sizeof rc);
        write_full(fds[1], &ok, sizeof ok);
        write_full(fds[1], &kind, sizeof kind);
        char msg[768];
        snprintf(msg, sizeof msg, "%s", cga_buffer_errmsg(c));
        write_full(fds[1], msg, sizeof msg);
        cga_buffer_free(c);
        _exit(0);
    }
    close(fds[1]);
    int rc = 0, ok = 0, kind = 0;
    char msg[768];
    CGA_ASSERT(read_full(fds[0], &rc, sizeof rc));
    CGA_ASSERT(read_full(fds[0], &ok, sizeof ok));
    CGA_ASSERT(read_full(fds[0], &kind, sizeof kind));
    CGA_ASSERT(read_full(fds[0], msg, sizeof msg));
    close(fds[0]);
    int status = 0;
    CGA_ASSERT_EQ(waitpid(pid, &status, 0), pid);
    CGA_ASSERT(WIFEXITED(status));
    CGA_ASSERT_EQ(WEXITSTATUS(status), 0);
    fprintf(stderr, "   after %d appends: %s\n", ok, msg);
    CGA_ASSERT_EQ(rc, CGA_EBUFFER);
    CGA_ASSERT_EQ(kind, CGA_BUFFER_EIO);
    CGA_ASSERT(strstr(msg, "File too large") != NULL);
    CGA_ASSERT(strstr(msg, path) != NULL);
    CGA_ASSERT(ok > 10);

    /* without the limit: exactly the appends that returned OK, whole; and appends work again */
    b = open_ok(path);
    cga_buffer_batch_t *bt = NULL;
    CGA_ASSERT_OK(cga_buffer_peek(b, NULL, 0, 100000, 0, &bt));
    CGA_ASSERT_EQ(bt->n, ok);
    for (size_t k = 0; k < bt->n; k++) CGA_ASSERT_EQ(entry_index(&bt->entries[k]), k);
    cga_buffer_batch_free(bt);
    char buf[2000];
    size_t n = make_entry(buf, ok);
    CGA_ASSERT_OK(cga_buffer_append(b, "analysis", buf, n, 1, "f", "l"));
    cga_buffer_free(b);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cga-bufdisk-XXXXXX");
    CGA_ASSERT(mkdtemp(tmpdir) != NULL);
    CGA_RUN(test_kill_while_appending);
    CGA_RUN(test_kill_while_draining);
    CGA_RUN(test_write_failure);
    nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
