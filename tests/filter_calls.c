/* The call sequence of the FFmpeg filter (filter/vf_stylize.c), driven with
 * hostile input, for the ASan/UBSan build: FFmpeg itself is not built with
 * sanitizers here (docs/RELIABILITY.md), so this program makes the calls the
 * filter makes, in the filter's order, with frames laid out as libavfilter
 * lays them out (padded linesizes, separate planes), and lets the
 * sanitizers watch the library. Run by tests/test_hostile.py against the
 * release and ASan builds.
 *
 * Usage: test_filter_calls MODEL_A MODEL_B WORKDIR
 * MODEL_A, MODEL_B: two valid models; WORKDIR: scratch folder. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stylize.h"

#include "check.h"

/* A frame as ff_get_video_buffer makes it: each plane's linesize rounded up
 * to 64 bytes, plus slack after the last row. */
typedef struct buf {
    stylize_frame f;
    uint8_t *mem[4];
} buf;

static int planar(stylize_pixfmt fmt)
{
    return fmt == STYLIZE_PIX_GBRP || fmt == STYLIZE_PIX_GBRAP;
}

static int n_planes(stylize_pixfmt fmt)
{
    return fmt == STYLIZE_PIX_GBRAP ? 4 : planar(fmt) ? 3 : 1;
}

static int bytes_pp(stylize_pixfmt fmt)
{
    return planar(fmt) ? 1 : fmt == STYLIZE_PIX_RGB24 || fmt == STYLIZE_PIX_BGR24 ? 3 : 4;
}

static void buf_alloc(buf *b, stylize_pixfmt fmt, int w, int h, unsigned seed)
{
    memset(b, 0, sizeof(*b));
    b->f.format = fmt;
    b->f.width = w;
    b->f.height = h;
    for (int p = 0; p < n_planes(fmt); p++) {
        ptrdiff_t ls = ((ptrdiff_t)w * bytes_pp(fmt) + 63) / 64 * 64;
        size_t size = (size_t)ls * h;
        b->mem[p] = malloc(size);
        if (!b->mem[p])
            abort();
        for (size_t i = 0; i < size; i++)
            b->mem[p][i] = (uint8_t)((i * 2654435761u + seed * 97 + p * 31) >> 7);
        b->f.data[p] = b->mem[p];
        b->f.linesize[p] = ls;
    }
}

static void buf_free(buf *b)
{
    for (int p = 0; p < 4; p++)
        free(b->mem[p]);
}

/* One frame through stylize_process, as filter_frame does it. */
static int process(stylize_ctx *ctx, stylize_pixfmt fmt, int w, int h)
{
    buf in, out;
    buf_alloc(&in, fmt, w, h, (unsigned)(w * 7 + h));
    buf_alloc(&out, fmt, w, h, 1);
    int r = stylize_process(ctx, &in.f, &out.f);
    if (r == 0 && (fmt == STYLIZE_PIX_GBRAP || fmt == STYLIZE_PIX_RGBA)) {
        /* alpha passes through */
        int plane = fmt == STYLIZE_PIX_GBRAP ? 3 : 0, off = fmt == STYLIZE_PIX_GBRAP ? 0 : 3;
        int step = fmt == STYLIZE_PIX_GBRAP ? 1 : 4;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                size_t i = (size_t)y * in.f.linesize[plane] + (size_t)x * step + off;
                if (in.mem[plane][i] != out.mem[plane][i]) {
                    CHECK(0, "alpha changed at %d,%d of a %dx%d frame", x, y, w, h);
                    y = h;
                    break;
                }
            }
    }
    buf_free(&in);
    buf_free(&out);
    return r;
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f)) {
        perror(path);
        exit(2);
    }
}

static void copy_file(const char *src, const char *dst, size_t limit)
{
    FILE *f = fopen(src, "rb");
    if (!f) {
        perror(src);
        exit(2);
    }
    static uint8_t data[1 << 22];
    size_t n = fread(data, 1, sizeof(data), f);
    fclose(f);
    write_file(dst, data, n < limit ? n : limit);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL_A MODEL_B WORKDIR\n", argv[0]);
        return 2;
    }
    const char *model_a = argv[1], *model_b = argv[2], *dir = argv[3];
    char path[4096], cur[4096], err[512];

    /* init: the model is only located; config_input creates the context. */
    CHECK(stylize_find_model(model_a, path, sizeof(path)) == 0, "%s", path);
    stylize_options o;
    stylize_options_default(&o);
    o.threads = 2;
    o.tile = 48; /* several tiles even on small frames */
    o.thumb = 32;
    /* The ref backend for the bulk: oneDNN compiles kernels for every new
     * tile shape (slow, and outside the sanitizers' view); it gets its turn
     * at the end. */
    o.backend = STYLIZE_BACKEND_REF;
    stylize_ctx *ctx = NULL;
    int r = stylize_create(model_a, &o, &ctx, err, sizeof(err));
    if (r) {
        fprintf(stderr, "cannot load %s: %s\n", model_a, err);
        return 1;
    }

    /* Frames of hostile sizes in every native format, sizes changing on every frame. */
    static const int sizes[][2] = {{1, 1}, {2, 2}, {3, 5}, {5, 3}, {17, 13}, {1, 77}, {77, 1},
                                   {49, 49}, {96, 7}, {300, 2}, {2, 300}, {64, 48}};
    for (int f = 0; f <= STYLIZE_PIX_GBRAP; f++)
        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
            r = process(ctx, (stylize_pixfmt)f, sizes[s][0], sizes[s][1]);
            CHECK(r == 0, "format %d %dx%d: %s", f, sizes[s][0], sizes[s][1], stylize_errmsg(ctx));
        }

    /* process_command: valid extremes, each followed by frames. */
    static const char *const valid[] = {"tile 0", "tile 1", "tile 3 overlap 0", "overlap 1024", "mode full",
                                        "mode patch tile 4", "strength 0", "preserve_color", "smooth 0.99",
                                        "scene_cut 0", "threads 1", "threads 7", "backend auto", "thumb 16"};
    for (int i = 0; i < (int)(sizeof(valid) / sizeof(valid[0])); i++) {
        stylize_options v;
        stylize_options_default(&v);
        v.threads = 2;
        v.tile = 48;
        v.thumb = 32;
        v.backend = STYLIZE_BACKEND_REF;
        switch (i) {
        case 0: v.tile = 0; break;
        case 1: v.tile = 1; break;
        case 2: v.tile = 3; v.overlap = 0; break;
        case 3: v.overlap = 1024; break;
        case 4: v.mode = STYLIZE_MODE_FULL; break;
        case 5: v.mode = STYLIZE_MODE_PATCH; v.tile = 4; break;
        case 6: v.strength = 0; break;
        case 7: v.preserve_color = 1; break;
        case 8: v.smooth = 0.99f; break;
        case 9: v.scene_cut = 0; break;
        case 10: v.threads = 1; break;
        case 11: v.threads = 7; break;
        case 12: v.backend = STYLIZE_BACKEND_AUTO; break;
        case 13: v.thumb = 16; break;
        }
        r = stylize_set_options(ctx, &v);
        CHECK(r == 0, "%s: %s", valid[i], stylize_errmsg(ctx));
        for (int k = 0; k < 2; k++) {
            r = process(ctx, k ? STYLIZE_PIX_GBRAP : STYLIZE_PIX_BGR24, 23 + k * 10, 19 + k);
            CHECK(r == 0, "%s, frame %d: %s", valid[i], k, stylize_errmsg(ctx));
        }
    }

    /* Absurd values are refused as a whole; the options in force stay. */
    stylize_options before, after, bad;
    stylize_get_options(ctx, &before);
    for (int i = 0; i < 9; i++) {
        bad = before;
        switch (i) {
        case 0: bad.strength = NAN; break;
        case 1: bad.strength = INFINITY; break;
        case 2: bad.thumb = 1; break;
        case 3: bad.threads = 10000; break;
        case 4: bad.tile = -2; break;
        case 5: bad.smooth = NAN; break;
        case 6: bad.scene_cut = NAN; break;
        case 7: bad.mode = (stylize_mode)9; break;
        case 8: bad.overlap = 99999; break;
        }
        r = stylize_set_options(ctx, &bad);
        CHECK(r == STYLIZE_ERR_INVALID_ARG && stylize_errmsg(ctx)[0], "absurd value %d accepted (%d)", i, r);
        stylize_get_options(ctx, &after);
        CHECK(!memcmp(&before, &after, sizeof(before)), "absurd value %d changed the options", i);
        CHECK(process(ctx, STYLIZE_PIX_RGB24, 9, 9) == 0, "after absurd value %d: %s", i, stylize_errmsg(ctx));
    }

    /* max_memory: too small fails with a message, then lifting it works again. */
    bad = before;
    bad.max_memory = 1024;
    CHECK(stylize_set_options(ctx, &bad) == 0, "max_memory 1024: %s", stylize_errmsg(ctx));
    r = process(ctx, STYLIZE_PIX_RGB24, 64, 48);
    CHECK(r == STYLIZE_ERR_TOO_LARGE && strstr(stylize_errmsg(ctx), "max_memory"), "max_memory: %d %s", r,
          stylize_errmsg(ctx));
    bad.max_memory = stylize_memory_needed(ctx, 64, 48);
    CHECK(stylize_set_options(ctx, &bad) == 0, "max_memory exact: %s", stylize_errmsg(ctx));
    CHECK(process(ctx, STYLIZE_PIX_RGB24, 64, 48) == 0, "max_memory = need: %s", stylize_errmsg(ctx));
    CHECK(stylize_set_options(ctx, &before) == 0, "restore: %s", stylize_errmsg(ctx));

    /* Runtime model switches while the file under the name changes. */
    snprintf(cur, sizeof(cur), "%s/cur.safetensors", dir);
    copy_file(model_b, cur, SIZE_MAX);
    CHECK(stylize_load_model(ctx, cur) == 0, "switch to b: %s", stylize_errmsg(ctx));
    CHECK(process(ctx, STYLIZE_PIX_RGBA, 31, 17) == 0, "after switch: %s", stylize_errmsg(ctx));
    for (int step = 0; step < 6; step++) {
        unlink(cur);
        const char *expect = "";
        switch (step) {
        case 0: expect = "No such file"; break;
        case 1: write_file(cur, "garbage!garbage!garbage!", 24); expect = "header length"; break;
        case 2: copy_file(model_a, cur, 3000); expect = "data"; break;
        case 3: CHECK(mkfifo(cur, 0600) == 0, "mkfifo"); expect = "not a regular file"; break;
        case 4: CHECK(mkdir(cur, 0700) == 0, "mkdir"); expect = "not a regular file"; break;
        case 5: write_file(cur, "", 0); expect = "too short"; break;
        }
        r = stylize_load_model(ctx, cur);
        CHECK(r != 0 && strstr(stylize_errmsg(ctx), expect), "step %d: %d '%s'", step, r, stylize_errmsg(ctx));
        if (step == 4)
            rmdir(cur);
        CHECK(process(ctx, STYLIZE_PIX_ARGB, 21, 11) == 0, "after failed switch %d: %s", step,
              stylize_errmsg(ctx));
    }
    unlink(cur);
    CHECK(stylize_load_model(ctx, model_a) == 0, "switch back: %s", stylize_errmsg(ctx));

    /* Two-pass statistics, as stats_mode=write/read uses them, with bad vectors. */
    size_t n = stylize_stats_size(ctx);
    float *st = calloc(n, sizeof(float));
    buf in;
    buf_alloc(&in, STYLIZE_PIX_RGB24, 40, 30, 5);
    CHECK(stylize_compute_stats(ctx, &in.f, st, n) == 0, "compute_stats: %s", stylize_errmsg(ctx));
    CHECK(stylize_compute_stats(ctx, &in.f, st, n + 1) != 0, "compute_stats with a wrong size accepted");
    st[n / 2 + 1] = -1.0f; /* a negative variance */
    CHECK(stylize_set_stats(ctx, st, n) != 0, "negative variance accepted");
    st[n / 2 + 1] = NAN;
    CHECK(stylize_set_stats(ctx, st, n) != 0, "NaN statistics accepted");
    CHECK(stylize_compute_stats(ctx, &in.f, st, n) == 0, "compute_stats: %s", stylize_errmsg(ctx));
    CHECK(stylize_set_stats(ctx, st, n) == 0, "set_stats: %s", stylize_errmsg(ctx));
    CHECK(process(ctx, STYLIZE_PIX_RGB24, 40, 30) == 0, "with set stats: %s", stylize_errmsg(ctx));
    buf_free(&in);
    free(st);

    /* Backend rebuilds between frames (threads, backend), then uninit. */
    for (int i = 0; i < 4; i++) {
        stylize_options v = before;
        v.threads = 1 + i;
        v.backend = i % 2 ? STYLIZE_BACKEND_REF : STYLIZE_BACKEND_AUTO;
        CHECK(stylize_set_options(ctx, &v) == 0, "rebuild %d: %s", i, stylize_errmsg(ctx));
        CHECK(process(ctx, STYLIZE_PIX_GBRP, 33 + i, 27) == 0, "after rebuild %d: %s", i, stylize_errmsg(ctx));
    }
    stylize_destroy(ctx);

    if (failures) {
        fprintf(stderr, "%d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("filter call sequence: %d checks, ok\n", checks);
    return 0;
}
