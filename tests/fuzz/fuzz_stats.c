/* libFuzzer target for the two-pass statistics file reader: a stats file can
 * come from another machine or from a pass 1 that was killed, and pass 2
 * trusts nothing in it. Every input is written to an in-memory file and
 * opened through the public API (stylize_stats_reader_open, without a model:
 * the header alone decides the record size), once with scene cuts and once
 * without; an accepted file is then looked up at every stored pts (the
 * first 64), with windows 0, 1 and 3, and in a second time base.
 *
 * Invariants checked beyond ASan/UBSan/leaks: a refused file always comes
 * with a message and no reader; an accepted one has >= 1 frame, strictly
 * increasing pts, finds each of them, finds the same record when the pts
 * is given in a time base twice as fine, and refuses a pts it does not hold
 * with a message.
 *
 *   make fuzz-stats FUZZ_SECONDS=1800   (mk/fuzz.mk; corpus in build/fuzz/stats-corpus)
 *   build/fuzz/fuzz_stats FILE...       replay inputs (tests/fuzz/stats-regressions)
 *
 * STYLIZE_FUZZ_REPORT=1 prints "accepted" or "refused: MESSAGE" for each
 * input (tests/test_fuzz.py checks the seed corpus with it). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create */
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "stylize.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fd = -1;
static char path[64];
static int report;

static void setup(void)
{
    fd = memfd_create("fuzz_stats", 0);
    if (fd < 0) {
        perror("memfd_create");
        abort();
    }
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    report = getenv("STYLIZE_FUZZ_REPORT") != NULL;
}

static void fail(const char *what, long long v)
{
    fprintf(stderr, "fuzz_stats: %s (%lld)\n", what, v);
    abort();
}

static void exercise(stylize_stats_reader *r)
{
    stylize_stats_info info;
    stylize_stats_reader_info(r, &info);
    if (info.frames < 1 || info.floats < 1 || info.tb_num <= 0 || info.tb_den <= 0)
        fail("accepted file with impossible facts", info.frames);
    float *a = malloc(info.floats * sizeof(float)), *b = malloc(info.floats * sizeof(float));
    if (!a || !b)
        abort();
    char err[512];
    int64_t prev = 0;
    for (int64_t i = 0; i < info.frames && i < 64; i++) {
        int64_t pts;
        if (stylize_stats_reader_pts(r, i, &pts))
            fail("pts(i) refused", i);
        if (i > 0 && pts <= prev)
            fail("pts not strictly increasing", i);
        prev = pts;
        for (int w = 0; w <= 3; w += 1 + (w > 0)) { /* 0, 1, 3 */
            if (stylize_stats_reader_lookup(r, pts, info.tb_num, info.tb_den, w, a, info.floats, err, sizeof(err)))
                fail("a stored pts is not found", i);
        }
        /* The same instant in a time base twice as fine finds the same record. */
        if (stylize_stats_reader_lookup(r, pts, info.tb_num, info.tb_den, 0, a, info.floats, err, sizeof(err)))
            fail("lookup failed", i);
        if (pts > INT64_MIN / 2 && pts < INT64_MAX / 2 && info.tb_den <= INT32_MAX / 2) {
            if (stylize_stats_reader_lookup(r, 2 * pts, info.tb_num, 2 * info.tb_den, 0, b, info.floats, err,
                                            sizeof(err)))
                fail("the pts in a finer time base is not found", i);
            if (memcmp(a, b, info.floats * sizeof(float)))
                fail("the pts in a finer time base finds another record", i);
        }
    }
    if (info.last_pts < INT64_MAX) {
        err[0] = 0;
        if (!stylize_stats_reader_lookup(r, info.last_pts + 1, info.tb_num, info.tb_den, 0, a, info.floats, err,
                                         sizeof(err)) || !err[0])
            fail("a pts beyond the file was found or refused without a message", info.last_pts);
    }
    free(a);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fd < 0)
        setup();
    if (ftruncate(fd, 0) || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) {
        perror("writing the input");
        abort();
    }
    for (int pass = 0; pass < 2; pass++) {
        char err[512] = "";
        stylize_stats_reader *r = NULL;
        int ret = stylize_stats_reader_open(NULL, path, pass ? 0.5f : 0.0f, &r, err, sizeof(err));
        if (ret) {
            if (pass == 1)
                fail("accepted without scene cuts, refused with them", ret);
            if (r || !err[0])
                fail(r ? "a refused file left a reader" : "a refused file has no message", ret);
            if (report && pass == 0)
                fprintf(stderr, "refused: %s\n", err);
            return 0;
        }
        if (report && pass == 0)
            fprintf(stderr, "accepted\n");
        exercise(r);
        stylize_stats_reader_close(r);
    }
    return 0;
}
