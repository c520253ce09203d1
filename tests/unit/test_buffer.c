/* The SQLite task buffer (buffer.h): order and bytes across reopen, ids read from the entries,
 * statistics, a crash between send and delete (rows stay: duplicates, never a loss), an
 * unwritable path, a full database (max_bytes: the same SQLITE_FULL as a full disk) with
 * nothing half-written, corrupt and foreign files, read-only handles, the drain lease between
 * handles and processes, and concurrent appends from two processes. Files live in a temp dir;
 * ":memory:" where the file does not matter. */

#define _GNU_SOURCE /* nftw's FTW_DEPTH | FTW_PHYS */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgalpha/buffer.h"
#include "cgalpha/err.h"
#include "cgalpha/proto.h"
#include "test.h"

static char tmpdir[64];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static void make_tmpdir(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cga-buffer-XXXXXX");
    CGA_ASSERT(mkdtemp(tmpdir) != NULL);
}

static void remove_tmpdir(void) {
    chmod(tmpdir, 0700);
    nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static char *path_in(char *out, size_t n, const char *rel) {
    snprintf(out, n, "%s/%s", tmpdir, rel);
    return out;
}

static cga_buffer_t *open_ok(const char *path, const cga_buffer_opts_t *o) {
    cga_buffer_t *b = NULL;
    char err[512];
    int rc = cga_buffer_open(&b, path, o, err, sizeof err);
    if (rc) fprintf(stderr, "open %s: %s\n", path, err);
    CGA_ASSERT_OK(rc);
    CGA_ASSERT(b != NULL);
    CGA_ASSERT_STREQ(cga_buffer_errmsg(b), "");
    return b;
}

/* Appends "<queue>#<i>" style data with the ids given. */
static void append_n(cga_buffer_t *b, const char *queue, int from, int to) {
    for (int i = from; i < to; i++) {
        char data[64], first[32], last[32];
        snprintf(data, sizeof data, "%s#%d", queue, i);
        snprintf(first, sizeof first, "%s/%d/a", queue, i);
        snprintf(last, sizeof last, "%s/%d/z", queue, i);
        CGA_ASSERT_OK(cga_buffer_append(b, queue, data, strlen(data), (uint64_t)i + 1, first,
                                        last));
    }
}

static void check_entry(const cga_buffer_entry_t *e, const char *queue, int i) {
    char data[64], first[32], last[32];
    snprintf(data, sizeof data, "%s#%d", queue, i);
    snprintf(first, sizeof first, "%s/%d/a", queue, i);
    snprintf(last, sizeof last, "%s/%d/z", queue, i);
    CGA_ASSERT_STREQ(e->queue, queue);
    CGA_ASSERT_MEMEQ(e->data, e->len, data, strlen(data));
    CGA_ASSERT_EQ(e->count, i + 1);
    CGA_ASSERT_STREQ(e->first_id, first);
    CGA_ASSERT_STREQ(e->last_id, last);
    CGA_ASSERT(e->created_ms > 1600000000000ULL);
}

static uint64_t count_of(cga_buffer_t *b) {
    uint64_t n = 0;
    CGA_ASSERT_OK(cga_buffer_count(b, &n, NULL));
    return n;
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_memory_peek_delete(void) {
    cga_buffer_t *b = open_ok(":memory:", NULL);
    append_n(b, "analysis", 0, 3);
    append_n(b, "reports", 3, 5);
    append_n(b, "analysis", 5, 6);

    uint64_t entries = 0, tasks = 0;
    CGA_ASSERT_OK(cga_buffer_count(b, &entries, &tasks));
    CGA_ASSERT_EQ(entries, 6);
    CGA_ASSERT_EQ(tasks, 1 + 2 + 3 + 4 + 5 + 6);

    /* all queues, in append order */
    cga_buffer_batch_t *bt = NULL;
    CGA_ASSERT_OK(cga_buffer_peek(b, NULL, 0, 100, 0, &bt));
    CGA_ASSERT_EQ(bt->n, 6);
    const char *qs[] = {"analysis", "analysis", "analysis", "reports", "reports", "analysis"};
    for (int i = 0; i < 6; i++) {
        check_entry(&bt->entries[i], qs[i], i);
        if (i) CGA_ASSERT(bt->entries[i].seq > bt->entries[i - 1].seq);
    }
    CGA_ASSERT_EQ(bt->tasks, 21);
    int64_t seq2 = bt->entries[2].seq, seq3 = bt->entries[3].seq;
    cga_buffer_batch_free(bt);

    /* one queue; max; after_seq */
    CGA_ASSERT_OK(cga_buffer_peek(b, "analysis", 0, 100, 0, &bt));
    CGA_ASSERT_EQ(bt->n, 4);
    check_entry(&bt->entries[3], "analysis", 5);
    cga_buffer_batch_free(bt);
    CGA_ASSERT_OK(cga_buffer_peek(b, NULL, 0, 2, 0, &bt));
    CGA_ASSERT_EQ(bt->n, 2);
    check_entry(&bt->entries[1], "analysis", 1);
    cga_buffer_batch_free(bt);
    CGA_ASSERT_OK(cga_buffer_peek(b, NULL, seq2, 100, 0, &bt));
    CGA_ASSERT_EQ(bt->n, 3);
    check_entry(&bt->entries[0], "reports", 3);
    cga_buffer_batch_free(bt);

    /* max_bytes: "analysis#0" is 10 bytes; the first entry always comes even when larger */
    CGA_ASSERT_OK(cga_buffer_peek(b, NULL, 0, 100, 25, &bt));
    CGA_ASSERT_EQ(bt->n, 2);
    CGA_ASSERT_EQ(bt->bytes, 20);
    cga_buffer_batch_free(bt);
    CGA_ASSERT_OK(cga_buffer_peek(b, NULL, 0, 100, 1, &bt));
    CGA_ASSERT_EQ(bt->n, 1);
    cga_buffer_batch_free(bt);

    /* delete a list (unknown seqs skipped), then up to a seq */
    int64_t del[] = {seq3, 999999, seq3};
    uint64_t deleted = 99;
    CGA_ASSERT_OK(cga_buffer_delete(b, del, 3, &deleted));
    CGA_ASSERT_EQ(deleted, 1);
    CGA_ASSERT_OK(cga_buffer_delete_upto(b, seq2, &deleted));
    CGA_ASSERT_EQ(deleted, 3);
    CGA_ASSERT_OK(cga_buffer_count(b, &entries, &tasks));
    CGA_ASSERT_EQ(entries, 2);
    CGA_ASSERT_EQ(tasks, 5 + 6);
    CGA_ASSERT_OK(cga_buffer_peek(b, NULL, 0, 100, 0, &bt));
    CGA_ASSERT_EQ(bt->n, 2);
    check_entry(&bt->entries[0], "reports", 4);
    check_entry(&bt->entries[1], "analysis", 5);
    cga_buffer_batch_free(bt);
    CGA_ASSERT_OK(cga_buffer_delete(b, NULL, 0, &deleted));
    CGA_ASSERT_EQ(deleted, 0);

    /* nothing left: an empty batch, not an error */
    CGA_ASSERT_OK(cga_buffer_delete_upto(b, INT64_MAX, &deleted));
    CGA_ASSERT_EQ(deleted, 2);
    CGA_ASSERT_OK(cga_buffer_peek(b, NULL, 0, 10, 0, &bt));
    CGA_ASSERT_EQ(bt->n, 0);
    cga_buffer_batch_free(bt);
    CGA_ASSERT_EQ(count_of(b), 0);
    cga_buffer_free(b);
}

static void test_invalid_arguments(void) {
    cga_buffer_t *b = NULL;
    char err[256];
    CGA_ASSERT_EQ(cga_buffer_open(&b, "", NULL, err, sizeof err), CGA_EINVAL);
    CGA_ASSERT(b == NULL);
    cga_buffer_opts_t o;
    cga_buffer_opts_init(&o);
    o.sync = 7;
    CGA_ASSERT_EQ(cga_buffer_open(&b, ":memory:", &o, err, sizeof err), CGA_EINVAL);
    b = open_ok(":memory:", NULL);
    CGA_ASSERT_EQ(cga_buffer_append(b, NULL, "x", 1, 1, "a", "a"), CGA_EINVAL);
    CGA_ASSERT_EQ(cga_buffer_append(b, "", "x", 1, 1, "a", "a"), CGA_EINVAL);
    CGA_ASSERT_EQ(cga_buffer_append(b, "analysis", "x", 0, 1, "a", "a"), CGA_EINVAL);
    CGA_ASSERT_EQ(cga_buffer_append(b, "analysis", NULL, 1, 1, "a", "a"), CGA_EINVAL);
    char longq[300];
    memset(longq, 'q', sizeof longq - 1);
    longq[sizeof longq - 1] = '\0';
    CGA_ASSERT_EQ(cga_buffer_append(b, longq, "x", 1, 1, "a", "a"), CGA_EINVAL);
    CGA_ASSERT(strstr(cga_buffer_errmsg(b), "invalid entry") != NULL);
    cga_buffer_batch_t *bt = (cga_buffer_batch_t *)1;
    CGA_ASSERT_EQ(cga_buffer_peek(b, NULL, 0, 0, 0, &bt), CGA_EINVAL);
    CGA_ASSERT(bt == NULL);
    CGA_ASSERT_EQ(cga_buffer_drain_lock(b, 50), CGA_EINVAL);
    CGA_ASSERT_OK(cga_buffer_append_many(b, NULL, 0));
    CGA_ASSERT_EQ(count_of(b), 0);
    cga_buffer_free(b);
    cga_buffer_free(NULL);
    cga_buffer_batch_free(NULL);
    cga_buffer_stats_free(NULL);
}

/* Durability across close/reopen, folders created 0700, AUTOINCREMENT never reuses a seq. */
static void test_reopen_keeps_order(void) {
    char path[256], dir[256];
    path_in(path, sizeof path, "deep/er/task_buffer.db");
    cga_buffer_t *b = open_ok(path, NULL);
    CGA_ASSERT_STREQ(cga_buffer_path(b), path);
    struct stat sb;
    CGA_ASSERT_OK(stat(path_in(dir, sizeof dir, "deep"), &sb));
    CGA_ASSERT_EQ(sb.st_mode & 0777, 0700);
    CGA_ASSERT_OK(stat(path_in(dir, sizeof dir, "deep/er"), &sb));
    CGA_ASSERT_EQ(sb.st_mode & 0777, 0700);
    append_n(b, "analysis", 0, 50);
    cga_buffer_free(b);

    b = open_ok(path, NULL);
    cga_buffer_batch_t *bt = NULL;
    CGA_ASSERT_OK(cga_buffer_peek(b, NULL, 0, 1000, 0, &bt));
    CGA_ASSERT_EQ(bt->n, 50);
    for (int i = 0; i < 50; i++) check_entry(&bt->entries[i], "analysis", i);
    int64_t last = bt->entries[49].seq;
    cga_buffer_batch_free(bt);

    /* emptied and appended again: seqs keep rising (order across drains) */
    CGA_ASSERT_OK(cga_buffer_delete_upto(b, last, NULL));
    cga_buffer_free(b);
    b = open_ok(path, NULL);
    CGA_ASSERT_EQ(count_of(b), 0);
    append_n(b, "analysis", 50, 51);
    CGA_ASSERT_OK(cga_buffer_peek(b, NULL, 0, 10, 0, &bt));
    CGA_ASSERT_EQ(bt->n, 1);
    CGA_ASSERT(bt->entries[0].seq > last);
    cga_buffer_batch_free(bt);
    cga_buffer_free(b);
}

/* The default path under the working directory, folders created. */
static void test_default_path(void) {
    char cwd[512], path[256];
    CGA_ASSERT(getcwd(cwd, sizeof cwd) != NULL);
    CGA_ASSERT_OK(chdir(tmpdir));
    cga_buffer_t *b = open_ok(NULL, NULL);
    CGA_ASSERT_STREQ(cga_buffer_path(b), CGA_BUFFER_DEFAULT_PATH);
    append_n(b, "analysis", 0, 1);
    cga_buffer_free(b);
    CGA_ASSERT_OK(chdir(cwd));
    struct stat sb;
    CGA_ASSERT_OK(stat(path_in(path, sizeof path, "aipha_memory/temporary"), &sb));
    CGA_ASSERT(S_ISDIR(sb.st_mode));
    CGA_ASSERT_EQ(sb.st_mode & 0777, 0700);
    CGA_ASSERT_OK(stat(path_in(path, sizeof path, CGA_BUFFER_DEFAULT_PATH), &sb));
    CGA_ASSERT(S_ISREG(sb.st_mode));
}

/* A crash after the send and before the delete: the rows are still there after a restart (the
 * drain sends them again: duplicates are possible, never a loss). The child process dies with
 * _exit() holding the handle open, so nothing is closed or checkpointed. */
static void test_crash_between_send_and_delete(void) {
    char path[256];
    path_in(path, sizeof path, "crash/task_buffer.db");
    cga_buffer_t *b = open_ok(path, NULL);
    append_n(b, "analysis", 0, 10);
    cga_buffer_free(b);

    int fds[2];
    CGA_ASSERT_OK(pipe(fds));
    pid_t pid = fork();
    CGA_ASSERT(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        cga_buffer_t *c = NULL;
        if (cga_buffer_open(&c, path, NULL, NULL, 0)) _exit(2);
        if (cga_buffer_drain_lock(c, 60000)) _exit(3);
        cga_buffer_batch_t *bt = NULL;
        if (cga_buffer_peek(c, NULL, 0, 4, 0, &bt) || bt->n != 4) _exit(4);
        /* "sent" the first 4; Redis accepted the first 2; deleted them ... */
        if (cga_buffer_delete(c, (int64_t[]){bt->entries[0].seq, bt->entries[1].seq}, 2, NULL))
            _exit(5);
        /* ... and dies before deleting entries 2 and 3 (also a new row appended meanwhile) */
        append_n(c, "analysis", 10, 11);
        if (write(fds[1], "x", 1) != 1) _exit(6);
        _exit(0);
    }
    close(fds[1]);
    char x;
    CGA_ASSERT_EQ(read(fds[0], &x, 1), 1);
    close(fds[0]);
    int status = 0;
    CGA_ASSERT_EQ(waitpid(pid, &status, 0), pid);
    CGA_ASSERT(WIFEXITED(status));
    CGA_ASSERT_EQ(WEXITSTATUS(status), 0);

    b = open_ok(path, NULL);
    cga_buffer_batch_t *bt = NULL;
    CGA_ASSERT_OK(cga_buffer_peek(b, NULL, 0, 100, 0, &bt));
    CGA_ASSERT_EQ(bt->n, 9); /* 10 - 2 deleted + 1 appended */
    for (int i = 0; i < 9; i++) check_entry(&bt->entries[i], "analysis", i + 2);
    cga_buffer_batch_free(bt);
    /* the dead drainer's lease blocks until it lapses (60 s here): the crash is not a takeover */
    CGA_ASSERT_EQ(cga_buffer_drain_lock(b, 1000), CGA_ELOCKED);
    CGA_ASSERT(strstr(cga_buffer_errmsg(b), "being drained by pid ") != NULL);
    cga_buffer_free(b);
}

/* first_id / last_id / count read from real task and report entries when not given. */
static void test_ids_from_entries(void) {
    cga_buffer_t *b = open_ok(":memory:", NULL);
    cga_proto_writer_t *w = NULL;
    CGA_ASSERT_OK(cga_proto_writer_create(&w, NULL));
    cga_bar_t bars[2] = {{1700000000000, 1, 2, 0.5, 1.5, 10}, {1700000060000, 1, 2, 0.5, 1.5, 10}};
    const char *ids[] = {"BTC/1700000000000/trend", "BTC/1700000000000/volatility",
                         "ETH/1700000000000/trend"};
    for (int i = 0; i < 3; i++) {
        cga_task_t t = {cga_str(ids[i]), cga_str("trend"), cga_str("BTC"), 123, bars, 2};
        CGA_ASSERT_OK(cga_proto_write_task(w, &t));
    }
    const char *data;
    size_t len;
    cga_proto_writer_finish(w, &data, &len);
    CGA_ASSERT_OK(cga_buffer_append(b, "analysis", data, len, 0, NULL, NULL));

    cga_proto_writer_reset(w);
    cga_report_t r = {.task_id = cga_str("BTC/1/trend"), .lab = cga_str("trend"),
                      .symbol = cga_str("BTC"), .worker = cga_str("w1"), .wstart = 1, .wend = 2,
                      .regime = CGA_REGIME_BULL, .confidence = 0.5};
    CGA_ASSERT_OK(cga_proto_write_report(w, &r));
    cga_proto_writer_finish(w, &data, &len);
    CGA_ASSERT_OK(cga_buffer_append(b, "reports", data, len, 0, NULL, "given"));

    /* bytes that are not msgpack are kept all the same (nothing is refused for its content) */
    CGA_ASSERT_OK(cga_buffer_append(b, "analysis", "\xc1garbage", 8, 0, NULL, NULL));

    cga_buffer_batch_t *bt = NULL;
    CGA_ASSERT_OK(cga_buffer_peek(b, NULL, 0, 10, 0, &bt));
    CGA_ASSERT_EQ(bt->n, 3);
    CGA_ASSERT_EQ(bt->entries[0].count, 3);
    CGA_ASSERT_STREQ(bt->entries[0].first_id, ids[0]);
    CGA_ASSERT_STREQ(bt->entries[0].last_id, ids[2]);
    CGA_ASSERT_EQ(bt->entries[1].count, 1);
    CGA_ASSERT_STREQ(bt->entries[1].first_id, "BTC/1/trend");
    CGA_ASSERT_STREQ(bt->entries[1].last_id, "given");
    CGA_ASSERT_MEMEQ(bt->entries[1].data, bt->entries[1].len, data, len);
    CGA_ASSERT_EQ(bt->entries[2].count, 1);
    CGA_ASSERT_STREQ(bt->entries[2].first_id, "");
    CGA_ASSERT_MEMEQ(bt->entries[2].data, bt->entries[2].len, "\xc1garbage", 8);
    cga_buffer_batch_free(bt);
    cga_proto_writer_free(w);
    cga_buffer_free(b);
}

static void test_stats(void) {
    cga_buffer_t *b = open_ok(":memory:", NULL);
    cga_buffer_stats_t *s = NULL;
    CGA_ASSERT_OK(cga_buffer_stats(b, &s));
    CGA_ASSERT_EQ(s->nqueues, 0);
    CGA_ASSERT_EQ(s->entries, 0);
    CGA_ASSERT(s->file_bytes > 0);
    cga_buffer_stats_free(s);

    append_n(b, "reports", 0, 2);
    append_n(b, "analysis", 2, 5);
    append_n(b, "reports", 5, 6);
    CGA_ASSERT_OK(cga_buffer_stats(b, &s));
    CGA_ASSERT_EQ(s->nqueues, 2);
    CGA_ASSERT_EQ(s->entries, 6);
    CGA_ASSERT_EQ(s->tasks, 21);
    cga_buffer_queue_stats_t *a = &s->queues[0], *r = &s->queues[1];
    CGA_ASSERT_STREQ(a->queue, "analysis");
    CGA_ASSERT_EQ(a->entries, 3);
    CGA_ASSERT_EQ(a->tasks, 3 + 4 + 5);
    CGA_ASSERT_EQ(a->bytes, 3 * strlen("analysis#2"));
    CGA_ASSERT_STREQ(a->first_id, "analysis/2/a");
    CGA_ASSERT_STREQ(a->last_id, "analysis/4/z");
    CGA_ASSERT(a->first_seq < a->last_seq);
    CGA_ASSERT(a->first_ms <= a->last_ms && a->first_ms > 0);
    CGA_ASSERT_STREQ(r->queue, "reports");
    CGA_ASSERT_EQ(r->entries, 3);
    CGA_ASSERT_EQ(r->tasks, 1 + 2 + 6);
    CGA_ASSERT_STREQ(r->first_id, "reports/0/a");
    CGA_ASSERT_STREQ(r->last_id, "reports/5/z");
    CGA_ASSERT_EQ(s->bytes, a->bytes + r->bytes);
    cga_buffer_stats_free(s);

    /* the running totals follow deletes (count is O(1): it reads them) */
    int64_t del[] = {2, 6}; /* seqs of reports#1 (count 2) and reports#5 (count 6) */
    CGA_ASSERT_OK(cga_buffer_delete(b, del, 2, NULL));
    uint64_t entries = 0, tasks = 0;
    CGA_ASSERT_OK(cga_buffer_count(b, &entries, &tasks));
    CGA_ASSERT_EQ(entries, 4);
    CGA_ASSERT_EQ(tasks, 21 - 2 - 6);
    CGA_ASSERT_OK(cga_buffer_stats(b, &s));
    CGA_ASSERT_EQ(s->entries, 4);
    CGA_ASSERT_EQ(s->tasks, 13);
    CGA_ASSERT_EQ(s->queues[1].entries, 1);
    CGA_ASSERT_STREQ(s->queues[1].last_id, "reports/0/z");
    cga_buffer_stats_free(s);
    cga_buffer_free(b);
}

/* A folder that cannot be created (a regular file in the way: fails for root too), a path that
 * is a folder, and (not as root) a folder without write permission. */
static void test_unwritable_path(void) {
    char file[256], path[320], err[512];
    path_in(file, sizeof file, "plainfile");
    int fd = open(file, O_CREAT | O_WRONLY, 0600);
    CGA_ASSERT(fd >= 0);
    close(fd);
    snprintf(path, sizeof path, "%s/sub/task_buffer.db", file);
    cga_buffer_t *b = (cga_buffer_t *)1;
    CGA_ASSERT_EQ(cga_buffer_open(&b, path, NULL, err, sizeof err), CGA_EBUFFER);
    CGA_ASSERT(b == NULL);
    fprintf(stderr, "   %s\n", err);
    CGA_ASSERT(strstr(err, path) != NULL);
    CGA_ASSERT(strstr(err, "cannot create folder") != NULL);
    CGA_ASSERT(strstr(err, "Not a directory") != NULL);

    snprintf(path, sizeof path, "%s/task_buffer.db", file); /* the file itself as a folder */
    CGA_ASSERT_EQ(cga_buffer_open(&b, path, NULL, err, sizeof err), CGA_EBUFFER);
    fprintf(stderr, "   %s\n", err);
    CGA_ASSERT(strstr(err, "Not a directory") != NULL);

    CGA_ASSERT_EQ(cga_buffer_open(&b, tmpdir, NULL, err, sizeof err), CGA_EBUFFER);
    fprintf(stderr, "   %s\n", err);
    CGA_ASSERT(strstr(err, "cannot open") != NULL);

    if (geteuid() != 0) {
        char ro[256];
        path_in(ro, sizeof ro, "ro");
        CGA_ASSERT_OK(mkdir(ro, 0500));
        snprintf(path, sizeof path, "%s/task_buffer.db", ro);
        CGA_ASSERT_EQ(cga_buffer_open(&b, path, NULL, err, sizeof err), CGA_EBUFFER);
        fprintf(stderr, "   %s\n", err);
        CGA_ASSERT(strstr(err, path) != NULL);
        chmod(ro, 0700);
    }
}

/* max_bytes gives the same SQLITE_FULL as a full disk: the append fails, says "disk full",
 * writes nothing (no half row), the rows before stay intact, and freeing space makes room. */
static void test_full(void) {
    char path[256];
    path_in(path, sizeof path, "full/task_buffer.db");
    cga_buffer_opts_t o;
    cga_buffer_opts_init(&o);
    o.max_bytes = 64 * 1024; /* 16 pages */
    cga_buffer_t *b = open_ok(path, &o);
    char blob[3000];
    int n = 0, rc;
    for (;;) {
        memset(blob, 'a' + n % 26, sizeof blob);
        rc = cga_buffer_append(b, "analysis", blob, sizeof blob, 1, "f", "l");
        if (rc) break;
        n++;
        CGA_ASSERT(n < 100);
    }
    CGA_ASSERT_EQ(rc, CGA_EBUFFER);
    CGA_ASSERT_EQ(cga_buffer_errkind(b), CGA_BUFFER_EFULL);
    fprintf(stderr, "   after %d appends: %s\n", n, cga_buffer_errmsg(b));
    CGA_ASSERT(strstr(cga_buffer_errmsg(b), "disk full") != NULL);
    CGA_ASSERT(strstr(cga_buffer_errmsg(b), path) != NULL);
    CGA_ASSERT(n >= 3);
    CGA_ASSERT_EQ(count_of(b), n);

    /* all or nothing: a batch that does not fit leaves nothing behind */
    memset(blob, 'z', sizeof blob);
    cga_buffer_entry_t many[8];
    for (int i = 0; i < 8; i++)
        many[i] = (cga_buffer_entry_t){.queue = "analysis", .data = blob, .len = 1000,
                                       .count = 1, .first_id = "m", .last_id = "m"};
    CGA_ASSERT_EQ(cga_buffer_append_many(b, many, 8), CGA_EBUFFER);
    CGA_ASSERT_EQ(cga_buffer_errkind(b), CGA_BUFFER_EFULL);
    CGA_ASSERT_EQ(count_of(b), n);

    /* the rows before are intact, after a reopen too */
    cga_buffer_free(b);
    b = open_ok(path, &o);
    cga_buffer_batch_t *bt = NULL;
    CGA_ASSERT_OK(cga_buffer_peek(b, NULL, 0, 1000, 0, &bt));
    CGA_ASSERT_EQ(bt->n, n);
    for (int i = 0; i < n; i++) {
        memset(blob, 'a' + i % 26, sizeof blob);
        CGA_ASSERT_MEMEQ(bt->entries[i].data, bt->entries[i].len, blob, sizeof blob);
    }
    /* a drain frees room: the refused entry fits now */
    CGA_ASSERT_OK(cga_buffer_delete(b, &bt->entries[0].seq, 1, NULL));
    cga_buffer_batch_free(bt);
    CGA_ASSERT_OK(cga_buffer_append(b, "analysis", blob, sizeof blob, 1, "f", "l"));
    CGA_ASSERT_EQ(count_of(b), n);
    cga_buffer_free(b);
}

static void write_file(const char *path, const void *p, size_t n, off_t at, int trunc) {
    int fd = open(path, O_WRONLY | O_CREAT | (trunc ? O_TRUNC : 0), 0600);
    CGA_ASSERT(fd >= 0);
    CGA_ASSERT_EQ(pwrite(fd, p, n, at), (ssize_t)n);
    close(fd);
}

/* Garbage, a damaged page, another application's SQLite file, a newer schema, an empty file. */
static void test_corrupt_and_foreign(void) {
    char path[256], err[512];
    cga_buffer_t *b = NULL;
    path_in(path, sizeof path, "garbage.db");
    char junk[8192];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (char)("not a database "[i % 15]);
    write_file(path, junk, sizeof junk, 0, 1);
    CGA_ASSERT_EQ(cga_buffer_open(&b, path, NULL, err, sizeof err), CGA_EBUFFER);
    fprintf(stderr, "   %s\n", err);
    CGA_ASSERT(strstr(err, path) != NULL);
    CGA_ASSERT(strstr(err, "corrupt or not a SQLite database") != NULL);
    CGA_ASSERT(strstr(err, "file is not a database") != NULL);
    /* the file is left as it was (it may hold tasks: never rewritten) */
    struct stat sb;
    CGA_ASSERT_OK(stat(path, &sb));
    CGA_ASSERT_EQ(sb.st_size, sizeof junk);

    /* a buffer whose pages past the header are destroyed: open or the first read says so */
    path_in(path, sizeof path, "damaged.db");
    b = open_ok(path, NULL);
    for (int i = 0; i < 20; i++) {
        memset(junk, 'a' + i, 3000);
        CGA_ASSERT_OK(cga_buffer_append(b, "analysis", junk, 3000, 1, "f", "l"));
    }
    cga_buffer_free(b);
    CGA_ASSERT_OK(stat(path, &sb));
    for (off_t at = 4096; at < sb.st_size; at += (off_t)sizeof junk) {
        memset(junk, 0xA5, sizeof junk);
        write_file(path, junk, sizeof junk, at, 0);
    }
    int rc = cga_buffer_open(&b, path, NULL, err, sizeof err);
    if (rc == CGA_OK) {
        cga_buffer_batch_t *bt = NULL;
        rc = cga_buffer_peek(b, NULL, 0, 100, 0, &bt);
        snprintf(err, sizeof err, "%s", cga_buffer_errmsg(b));
        CGA_ASSERT(bt == NULL);
        cga_buffer_free(b);
    }
    fprintf(stderr, "   %s\n", err);
    CGA_ASSERT_EQ(rc, CGA_EBUFFER);
    CGA_ASSERT(strstr(err, "corrupt") != NULL);

    /* header fields (big-endian): user_version at 60, application_id at 68 */
    path_in(path, sizeof path, "foreign.db");
    b = open_ok(path, NULL);
    cga_buffer_free(b);
    write_file(path, "\x12\x34\x56\x78", 4, 68, 0);
    CGA_ASSERT_EQ(cga_buffer_open(&b, path, NULL, err, sizeof err), CGA_EBUFFER);
    fprintf(stderr, "   %s\n", err);
    CGA_ASSERT(strstr(err, "another application") != NULL);
    write_file(path, "CGA1", 4, 68, 0);
    write_file(path, "\0\0\0\x02", 4, 60, 0);
    CGA_ASSERT_EQ(cga_buffer_open(&b, path, NULL, err, sizeof err), CGA_EBUFFER);
    fprintf(stderr, "   %s\n", err);
    CGA_ASSERT(strstr(err, "newer cgalpha") != NULL);
    write_file(path, "\0\0\0\x01", 4, 60, 0);
    b = open_ok(path, NULL);
    cga_buffer_free(b);

    /* an empty file becomes a buffer */
    path_in(path, sizeof path, "empty.db");
    write_file(path, "", 0, 0, 1);
    b = open_ok(path, NULL);
    append_n(b, "analysis", 0, 1);
    cga_buffer_free(b);
}

/* readonly: a missing file is ENOTFOUND and creates nothing; reads work; writes fail clearly. */
static void test_readonly(void) {
    char path[256], dir[256], err[512];
    cga_buffer_opts_t o;
    cga_buffer_opts_init(&o);
    o.readonly = 1;
    cga_buffer_t *b = NULL;
    path_in(path, sizeof path, "ro/task_buffer.db");
    CGA_ASSERT_EQ(cga_buffer_open(&b, path, &o, err, sizeof err), CGA_ENOTFOUND);
    CGA_ASSERT(strstr(err, "no such file") != NULL);
    struct stat sb;
    CGA_ASSERT_EQ(stat(path_in(dir, sizeof dir, "ro"), &sb), -1);

    cga_buffer_t *w = open_ok(path, NULL);
    append_n(w, "analysis", 0, 3);
    b = open_ok(path, &o); /* while the writer is open (WAL: readers see committed rows) */
    cga_buffer_stats_t *s = NULL;
    CGA_ASSERT_OK(cga_buffer_stats(b, &s));
    CGA_ASSERT_EQ(s->entries, 3);
    CGA_ASSERT_STREQ(s->queues[0].first_id, "analysis/0/a");
    CGA_ASSERT_STREQ(s->queues[0].last_id, "analysis/2/z");
    cga_buffer_stats_free(s);
    CGA_ASSERT_EQ(cga_buffer_append(b, "analysis", "x", 1, 1, "a", "a"), CGA_EBUFFER);
    CGA_ASSERT_EQ(cga_buffer_errkind(b), CGA_BUFFER_EREADONLY);
    fprintf(stderr, "   %s\n", cga_buffer_errmsg(b));
    CGA_ASSERT(strstr(cga_buffer_errmsg(b), "read-only") != NULL);
    CGA_ASSERT_EQ(cga_buffer_delete_upto(b, INT64_MAX, NULL), CGA_EBUFFER);
    CGA_ASSERT_EQ(cga_buffer_drain_lock(b, 1000), CGA_EBUFFER);
    append_n(w, "analysis", 3, 4); /* a reader does not block the writer */
    CGA_ASSERT_EQ(count_of(b), 4);
    cga_buffer_free(b);
    cga_buffer_free(w);
    /* closed by the last writer: the reader still opens it */
    b = open_ok(path, &o);
    CGA_ASSERT_EQ(count_of(b), 4);
    cga_buffer_free(b);
}

static void test_drain_lease(void) {
    char path[256];
    path_in(path, sizeof path, "lease/task_buffer.db");
    cga_buffer_t *a = open_ok(path, NULL), *b = open_ok(path, NULL);
    CGA_ASSERT_OK(cga_buffer_drain_lock(a, 5000));
    CGA_ASSERT_OK(cga_buffer_drain_lock(a, 5000)); /* renewal */
    CGA_ASSERT_EQ(cga_buffer_drain_lock(b, 5000), CGA_ELOCKED);
    fprintf(stderr, "   %s\n", cga_buffer_errmsg(b));
    char want[64];
    snprintf(want, sizeof want, "being drained by pid %ld on host ", (long)getpid());
    CGA_ASSERT(strstr(cga_buffer_errmsg(b), want) != NULL);
    CGA_ASSERT_OK(cga_buffer_drain_unlock(b)); /* not the holder: nothing happens */
    CGA_ASSERT_EQ(cga_buffer_drain_lock(b, 5000), CGA_ELOCKED);
    CGA_ASSERT_OK(cga_buffer_drain_unlock(a));
    CGA_ASSERT_OK(cga_buffer_drain_lock(b, 100));
    CGA_ASSERT_EQ(cga_buffer_drain_lock(a, 5000), CGA_ELOCKED);
    usleep(150 * 1000); /* b stops renewing: its lease lapses */
    CGA_ASSERT_OK(cga_buffer_drain_lock(a, 5000));
    CGA_ASSERT_EQ(cga_buffer_drain_lock(b, 5000), CGA_ELOCKED); /* b lost it */
    cga_buffer_free(a);                                         /* free releases it */
    CGA_ASSERT_OK(cga_buffer_drain_lock(b, 5000));
    cga_buffer_free(b);
}

/* Two processes append to one file at the same time: every row lands, each process's rows in
 * its own order, and the file stays consistent (SQLite's locks with busy_timeout). */
static void test_two_processes_append(void) {
    char path[256];
    path_in(path, sizeof path, "shared/task_buffer.db");
    cga_buffer_free(open_ok(path, NULL)); /* created; never carry a connection across fork() */
    cga_buffer_opts_t o;
    cga_buffer_opts_init(&o);
    o.sync = CGA_BUFFER_SYNC_NORMAL; /* the locking is the point here, not the fsyncs */
    enum { N = 150 };
    pid_t kids[2];
    const char *qs[2] = {"left", "right"};
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        CGA_ASSERT(kids[k] >= 0);
        if (kids[k] == 0) {
            cga_buffer_t *c = NULL;
            if (cga_buffer_open(&c, path, &o, NULL, 0)) _exit(2);
            for (int i = 0; i < N; i++) {
                char data[64];
                snprintf(data, sizeof data, "%s#%d", qs[k], i);
                if (cga_buffer_append(c, qs[k], data, strlen(data), 1, "a", "z")) {
                    fprintf(stderr, "%s\n", cga_buffer_errmsg(c));
                    _exit(3);
                }
            }
            cga_buffer_free(c);
            _exit(0);
        }
    }
    for (int k = 0; k < 2; k++) {
        int status = 0;
        CGA_ASSERT_EQ(waitpid(kids[k], &status, 0), kids[k]);
        CGA_ASSERT(WIFEXITED(status));
        CGA_ASSERT_EQ(WEXITSTATUS(status), 0);
    }
    cga_buffer_t *b = open_ok(path, NULL);
    for (int k = 0; k < 2; k++) {
        cga_buffer_batch_t *bt = NULL;
        CGA_ASSERT_OK(cga_buffer_peek(b, qs[k], 0, 1000, 0, &bt));
        CGA_ASSERT_EQ(bt->n, N);
        for (int i = 0; i < N; i++) {
            char data[64];
            snprintf(data, sizeof data, "%s#%d", qs[k], i);
            CGA_ASSERT_MEMEQ(bt->entries[i].data, bt->entries[i].len, data, strlen(data));
        }
        cga_buffer_batch_free(bt);
    }
    CGA_ASSERT_EQ(count_of(b), 2 * N);
    cga_buffer_free(b);
}

/* Several processes open one new path at the same moment (ops run and ops enqueue starting
 * together): every one of them opens it, none takes the half-created file for another
 * application's. Repeated over fresh paths, since the window is small. */
static void test_concurrent_create(void) {
    enum { ROUNDS = 40, KIDS = 4 };
    cga_buffer_opts_t o;
    cga_buffer_opts_init(&o);
    o.sync = CGA_BUFFER_SYNC_NORMAL;
    for (int r = 0; r < ROUNDS; r++) {
        char rel[64], path[256];
        snprintf(rel, sizeof rel, "race/%d/task_buffer.db", r);
        path_in(path, sizeof path, rel);
        pid_t kids[KIDS];
        for (int k = 0; k < KIDS; k++) {
            kids[k] = fork();
            CGA_ASSERT(kids[k] >= 0);
            if (kids[k] == 0) {
                cga_buffer_t *c = NULL;
                char err[512];
                if (cga_buffer_open(&c, path, &o, err, sizeof err)) {
                    fprintf(stderr, "round %d: %s\n", r, err);
                    _exit(2);
                }
                cga_buffer_free(c);
                _exit(0);
            }
        }
        for (int k = 0; k < KIDS; k++) {
            int status = 0;
            CGA_ASSERT_EQ(waitpid(kids[k], &status, 0), kids[k]);
            CGA_ASSERT(WIFEXITED(status));
            CGA_ASSERT_EQ(WEXITSTATUS(status), 0);
        }
    }
}

/* A drained buffer gives its space back (incremental vacuum), so one outage does not leave a
 * large file behind forever. */
static void test_space_returned(void) {
    char path[256];
    path_in(path, sizeof path, "space/task_buffer.db");
    cga_buffer_opts_t o;
    cga_buffer_opts_init(&o);
    o.sync = CGA_BUFFER_SYNC_NORMAL;
    cga_buffer_t *b = open_ok(path, &o);
    static char blob[64 * 1024];
    memset(blob, 'x', sizeof blob);
    cga_buffer_entry_t e[32];
    for (int i = 0; i < 32; i++)
        e[i] = (cga_buffer_entry_t){.queue = "analysis", .data = blob, .len = sizeof blob,
                                    .count = 32, .first_id = "a", .last_id = "z"};
    CGA_ASSERT_OK(cga_buffer_append_many(b, e, 32));
    cga_buffer_stats_t *s = NULL;
    CGA_ASSERT_OK(cga_buffer_stats(b, &s));
    uint64_t full = s->file_bytes;
    CGA_ASSERT(full >= 32 * sizeof blob);
    CGA_ASSERT_EQ(s->bytes, 32 * sizeof blob);
    cga_buffer_stats_free(s);
    CGA_ASSERT_OK(cga_buffer_delete_upto(b, INT64_MAX, NULL));
    CGA_ASSERT_OK(cga_buffer_stats(b, &s));
    fprintf(stderr, "   file %llu bytes full, %llu bytes drained\n", (unsigned long long)full,
            (unsigned long long)s->file_bytes);
    CGA_ASSERT(s->file_bytes < full / 8);
    cga_buffer_stats_free(s);
    cga_buffer_free(b);
}

int main(void) {
    make_tmpdir();
    CGA_RUN(test_memory_peek_delete);
    CGA_RUN(test_invalid_arguments);
    CGA_RUN(test_reopen_keeps_order);
    CGA_RUN(test_default_path);
    CGA_RUN(test_crash_between_send_and_delete);
    CGA_RUN(test_ids_from_entries);
    CGA_RUN(test_stats);
    CGA_RUN(test_unwritable_path);
    CGA_RUN(test_full);
    CGA_RUN(test_corrupt_and_foreign);
    CGA_RUN(test_readonly);
    CGA_RUN(test_drain_lease);
    CGA_RUN(test_two_processes_append);
    CGA_RUN(test_concurrent_create);
    CGA_RUN(test_space_returned);
    remove_tmpdir();
    return 0;
}
