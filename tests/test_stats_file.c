/* Contract tests of the two-pass statistics file API (stylize_stats_writer_*,
 * stylize_stats_reader_* in core/include/stylize.h): round trip, pts order,
 * time-base rescaling and its rounding, the centred window and scene cuts,
 * and every refusal with its message. Run by tests/test_stats_file.py against
 * the release and ASan/UBSan builds with three models it writes: A, B (A's
 * shape, other weights) and C (another shape).
 * Usage: test_stats_file WORKDIR MODEL_A MODEL_B MODEL_C */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stylize.h"

#include "check.h"

#define W 32
#define H 24
#define FRAMES 8
#define CUT 5 /* frames 0..4 and 5..7 are two scenes */

static char workdir[2048];

static const char *wpath(const char *name)
{
    static char p[4][2304];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof(p[k]), "%s/%s", workdir, name);
    return p[k];
}

static stylize_ctx *open_model(const char *path)
{
    stylize_options o;
    char err[512] = "";
    stylize_ctx *ctx = NULL;
    stylize_options_default(&o);
    o.threads = 1;
    o.backend = STYLIZE_BACKEND_REF;
    if (stylize_create(path, &o, &ctx, err, sizeof(err))) {
        fprintf(stderr, "cannot load %s: %s\n", path, err);
        exit(2);
    }
    return ctx;
}

/* Frame f: a gradient drifting by a pixel a frame; the second scene is
 * brighter and inverted, a jump of many standard deviations. */
static void make_frame(uint8_t *px, int f)
{
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++) {
                int v = (x + f) * 6 + y * 3 + c * 20;
                px[(y * W + x) * 3 + c] = (uint8_t)(f < CUT ? v % 128 : 255 - v % 64);
            }
}

static int exact(const float *a, const float *b, size_t n)
{
    return !memcmp(a, b, n * sizeof(float));
}

/* The expected window: mean of frames lo..hi (the reader sums in double in pts order). */
static void window_mean(float **st, int lo, int hi, size_t n, float *out)
{
    for (size_t k = 0; k < n; k++) {
        double acc = 0;
        for (int j = lo; j <= hi; j++)
            acc += st[j][k];
        out[k] = (float)(acc / (hi - lo + 1));
    }
}

static int refused(const stylize_ctx *ctx, const char *path, float cut, int want, const char *text)
{
    char err[1024] = "";
    stylize_stats_reader *r = (stylize_stats_reader *)1;
    int ret = stylize_stats_reader_open(ctx, path, cut, &r, err, sizeof(err));
    CHECK(ret == want, "%s: status %d, want %d (%s)", path, ret, want, err);
    CHECK(r == NULL, "%s: reader not NULL after a failure", path);
    CHECK(strstr(err, text) != NULL, "%s: message '%s' lacks '%s'", path, err, text);
    if (!ret)
        stylize_stats_reader_close(r);
    return ret == want;
}

static long file_size(const char *path)
{
    FILE *f = fopen(path, "rb");
    long n;
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fclose(f);
    return n;
}

static void write_bytes(const char *path, const uint8_t *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f)) {
        perror(path);
        exit(2);
    }
}

static uint8_t *read_all(const char *path, size_t *n)
{
    long sz = file_size(path);
    uint8_t *d = malloc((size_t)sz);
    FILE *f = fopen(path, "rb");
    if (!d || !f || fread(d, 1, (size_t)sz, f) != (size_t)sz) {
        perror(path);
        exit(2);
    }
    fclose(f);
    *n = (size_t)sz;
    return d;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s WORKDIR MODEL_A MODEL_B MODEL_C\n", argv[0]);
        return 2;
    }
    snprintf(workdir, sizeof(workdir), "%s", argv[1]);
    stylize_ctx *a = open_model(argv[2]), *b = open_model(argv[3]), *c = open_model(argv[4]);
    size_t n = stylize_stats_size(a);
    float *st[FRAMES], *got = malloc(n * sizeof(float)), *want = malloc(n * sizeof(float));
    uint8_t px[W * H * 3];
    stylize_frame fr = {.format = STYLIZE_PIX_RGB24, .width = W, .height = H, .data = {px}, .linesize = {W * 3}};
    char err[1024];
    int ret;

    /* Pass 1 in decoding order (B-frames: pts not monotonic), pts 2..9 in 1/25 s. */
    static const int order[FRAMES] = {0, 2, 1, 3, 5, 4, 7, 6};
    const char *sf = wpath("a.stats");
    stylize_stats_writer *w = NULL;
    ret = stylize_stats_writer_open(a, sf, 1, 25, &w, err, sizeof(err));
    CHECK(ret == 0 && w, "writer_open: %d %s", ret, err);
    for (int f = 0; f < FRAMES; f++) {
        st[f] = malloc(n * sizeof(float));
        make_frame(px, f);
        CHECK(stylize_compute_stats(a, &fr, st[f], n) == 0, "compute_stats %d", f);
    }
    for (int i = 0; i < FRAMES; i++)
        CHECK(stylize_stats_writer_append(w, order[i] + 2, st[order[i]], n, err, sizeof(err)) == 0,
              "append %d: %s", i, err);
    err[0] = 0;
    CHECK(stylize_stats_writer_append(w, 99, st[0], n - 1, err, sizeof(err)) == STYLIZE_ERR_INVALID_ARG &&
          strstr(err, "number of floats"), "append with a wrong n: %s", err);
    CHECK(stylize_stats_writer_close(w, err, sizeof(err)) == 0, "writer_close: %s", err);
    CHECK(stylize_stats_writer_close(NULL, err, sizeof(err)) == 0, "writer_close(NULL)");
    CHECK(file_size(sf) == 64 + FRAMES * (long)(8 + 4 * n), "file size %ld", file_size(sf));

    /* Round trip, window 0: each pts gets its own record, bit for bit. */
    stylize_stats_reader *r = NULL;
    stylize_stats_info info;
    ret = stylize_stats_reader_open(a, sf, 0, &r, err, sizeof(err));
    CHECK(ret == 0 && r, "reader_open: %d %s", ret, err);
    if (!r)
        return 1;
    stylize_stats_reader_info(r, &info);
    CHECK(info.frames == FRAMES && info.floats == n && info.tb_num == 1 && info.tb_den == 25 &&
          info.first_pts == 2 && info.last_pts == FRAMES + 1 && info.scene_cuts == 0 && info.thumb == 0 /* the default thumb: auto */,
          "info: %lld frames, %zu floats, tb %d/%d, pts %lld..%lld, %lld cuts, thumb %d", (long long)info.frames,
          info.floats, info.tb_num, info.tb_den, (long long)info.first_pts, (long long)info.last_pts,
          (long long)info.scene_cuts, info.thumb);
    for (int f = 0; f < FRAMES; f++) {
        int64_t p = -1;
        CHECK(stylize_stats_reader_pts(r, f, &p) == 0 && p == f + 2, "pts(%d) = %lld", f, (long long)p);
        CHECK(stylize_stats_reader_lookup(r, f + 2, 1, 25, 0, got, n, err, sizeof(err)) == 0 && exact(got, st[f], n),
              "lookup frame %d: %s", f, err);
        /* The same instant in other time bases. */
        CHECK(stylize_stats_reader_lookup(r, 2 * (f + 2), 1, 50, 0, got, n, err, sizeof(err)) == 0 &&
              exact(got, st[f], n), "lookup frame %d in 1/50", f);
        CHECK(stylize_stats_reader_lookup(r, 1200 * (f + 2) + 599, 1, 30000, 0, got, n, err, sizeof(err)) == 0 &&
              exact(got, st[f], n), "lookup frame %d in 1/30000, just under half a frame late", f);
    }
    int64_t p;
    CHECK(stylize_stats_reader_pts(r, FRAMES, &p) == STYLIZE_ERR_INVALID_ARG, "pts(frames) accepted");
    /* Halves round away from zero (as av_rescale_q): 2.5 frames is pts 3. */
    CHECK(stylize_stats_reader_lookup(r, 3000, 1, 30000, 0, got, n, err, sizeof(err)) == 0 && exact(got, st[1], n),
          "half a frame rounds up");
    err[0] = 0;
    ret = stylize_stats_reader_lookup(r, 1, 1, 25, 0, got, n, err, sizeof(err));
    CHECK(ret == STYLIZE_ERR_INVALID_ARG && strstr(err, "no statistics for the frame") && strstr(err, "8 frames"),
          "pts 1 not in the file: %d %s", ret, err);
    err[0] = 0;
    ret = stylize_stats_reader_lookup(r, INT64_MAX, 1000, 1, 0, got, n, err, sizeof(err));
    CHECK(ret == STYLIZE_ERR_INVALID_ARG && strstr(err, "no statistics"), "overflowing pts: %d %s", ret, err);
    CHECK(stylize_stats_reader_lookup(r, 2, 1, 25, -1, got, n, err, sizeof(err)) == STYLIZE_ERR_INVALID_ARG,
          "negative window accepted");
    CHECK(stylize_stats_reader_lookup(r, 2, 1, 25, 0, got, n + 1, err, sizeof(err)) == STYLIZE_ERR_INVALID_ARG,
          "wrong n accepted");

    /* Window 2 without cuts: frames i-2..i+2, clipped at the ends. */
    for (int f = 0; f < FRAMES; f++) {
        int lo = f - 2 < 0 ? 0 : f - 2, hi = f + 2 >= FRAMES ? FRAMES - 1 : f + 2;
        window_mean(st, lo, hi, n, want);
        CHECK(stylize_stats_reader_lookup(r, f + 2, 1, 25, 2, got, n, err, sizeof(err)) == 0 && exact(got, want, n),
              "window 2 at frame %d", f);
    }
    stylize_stats_reader_close(r);

    /* Scene cuts: one, before frame CUT; windows stop short of it. */
    r = NULL;
    ret = stylize_stats_reader_open(a, sf, 0.5f, &r, err, sizeof(err));
    CHECK(ret == 0 && r, "reader_open with scene_cut: %s", err);
    if (!r)
        return 1;
    stylize_stats_reader_info(r, &info);
    CHECK(info.scene_cuts == 1, "%lld scene cuts, want 1", (long long)info.scene_cuts);
    for (int f = 0; f < FRAMES; f++) {
        int lo = f - 2 < 0 ? 0 : f - 2, hi = f + 2 >= FRAMES ? FRAMES - 1 : f + 2;
        if (f < CUT && hi >= CUT)
            hi = CUT - 1;
        if (f >= CUT && lo < CUT)
            lo = CUT;
        window_mean(st, lo, hi, n, want);
        CHECK(stylize_stats_reader_lookup(r, f + 2, 1, 25, 2, got, n, err, sizeof(err)) == 0 && exact(got, want, n),
              "window 2 with the cut, frame %d (frames %d..%d)", f, lo, hi);
    }
    /* The imposed statistics are what stylize_set_stats takes. */
    CHECK(stylize_set_stats(a, got, n) == 0, "set_stats refused a window: %s", stylize_errmsg(a));
    stylize_stats_reader_close(r);
    stylize_stats_reader_close(NULL);

    /* An inspecting tool may open it without a model. */
    r = NULL;
    CHECK(stylize_stats_reader_open(NULL, sf, 0, &r, err, sizeof(err)) == 0 && r, "open without a model: %s", err);
    stylize_stats_reader_close(r);

    /* Refusals. */
    refused(b, sf, 0, STYLIZE_ERR_INVALID_ARG, "other weights");
    refused(c, sf, 0, STYLIZE_ERR_INVALID_ARG, "was computed for a model with");
    refused(a, wpath("none.stats"), 0, STYLIZE_ERR_IO, "cannot open stats file");
    refused(a, argv[2], 0, STYLIZE_ERR_MODEL, "not a stylize statistics file");
    refused(a, sf, -1, STYLIZE_ERR_INVALID_ARG, "scene_cut");

    size_t len;
    uint8_t *d = read_all(sf, &len);
    write_bytes(wpath("short.stats"), d, 40);
    refused(a, wpath("short.stats"), 0, STYLIZE_ERR_MODEL, "not a stylize statistics file");
    write_bytes(wpath("trunc.stats"), d, len - 100);
    refused(a, wpath("trunc.stats"), 0, STYLIZE_ERR_MODEL, "truncated");
    refused(NULL, wpath("trunc.stats"), 0, STYLIZE_ERR_MODEL, "truncated");
    uint8_t *e = malloc(len);
    memcpy(e, d, len);
    memset(e + 40, 0, 8);
    write_bytes(wpath("incomplete.stats"), e, len);
    refused(a, wpath("incomplete.stats"), 0, STYLIZE_ERR_MODEL, "incomplete");
    memcpy(e, d, len);
    e[8] = 2;
    write_bytes(wpath("v2.stats"), e, len);
    refused(a, wpath("v2.stats"), 0, STYLIZE_ERR_MODEL, "version 2");
    memcpy(e, d, len);
    memset(e + 36, 0, 4);
    write_bytes(wpath("tb.stats"), e, len);
    refused(a, wpath("tb.stats"), 0, STYLIZE_ERR_MODEL, "invalid time base");
    memcpy(e, d, len);
    e[19] = 0x40; /* 1 Gi floats a frame */
    write_bytes(wpath("huge.stats"), e, len);
    refused(NULL, wpath("huge.stats"), 0, STYLIZE_ERR_MODEL, "damaged");
    memcpy(e, d, len);
    memcpy(e + 64 + (8 + 4 * n), e + 64, 8); /* record 1 takes record 0's pts */
    write_bytes(wpath("dup.stats"), e, len);
    refused(a, wpath("dup.stats"), 0, STYLIZE_ERR_MODEL, "two frames with pts");
    free(e);
    free(d);

    /* A pass 1 killed mid-way (no close): the file is incomplete, not half used. */
    pid_t pid = fork();
    if (pid == 0) {
        stylize_stats_writer *kw = NULL;
        if (stylize_stats_writer_open(a, wpath("killed.stats"), 1, 25, &kw, NULL, 0))
            _exit(3);
        for (int f = 0; f < FRAMES; f++)
            stylize_stats_writer_append(kw, f, st[f], n, NULL, 0);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the killed writer's child failed");
    refused(a, wpath("killed.stats"), 0, STYLIZE_ERR_MODEL, "incomplete");

    /* Writer refusals. */
    w = (stylize_stats_writer *)1;
    err[0] = 0;
    ret = stylize_stats_writer_open(a, wpath("no/such/dir.stats"), 1, 25, &w, err, sizeof(err));
    CHECK(ret == STYLIZE_ERR_IO && !w && strstr(err, "cannot create stats file"), "writer into a missing folder: %d %s",
          ret, err);
    w = (stylize_stats_writer *)1;
    ret = stylize_stats_writer_open(a, wpath("x.stats"), 0, 25, &w, err, sizeof(err));
    CHECK(ret == STYLIZE_ERR_INVALID_ARG && !w, "time base 0/25 accepted");

    for (int f = 0; f < FRAMES; f++)
        free(st[f]);
    free(got);
    free(want);
    stylize_destroy(a);
    stylize_destroy(b);
    stylize_destroy(c);
    printf("test_stats_file: %d checks, %d failed\n", checks, failures);
    return failures != 0;
}
