/* Contract tests of the public API (core/include/stylize.h) on a small
 * random-weight model that the test writes itself. Run by tests/test_api.py
 * against the release and the ASan/UBSan builds.
 * Usage: test_api WORKDIR */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stylize.h"

#include "check.h"

/* ---- a random TransformerNet in safetensors format ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float frand(void) /* uniform in [-1, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}

typedef struct tensor {
    char name[48];
    int shape[4], ndim;
    size_t n;
} tensor;

static int add(tensor *t, int i, const char *name, int ndim, int a, int b, int c, int d)
{
    snprintf(t[i].name, sizeof(t[i].name), "%s", name);
    t[i].ndim = ndim;
    t[i].shape[0] = a;
    t[i].shape[1] = b;
    t[i].shape[2] = c;
    t[i].shape[3] = d;
    t[i].n = (size_t)a * (ndim > 1 ? (size_t)b * c * d : 1);
    return i + 1;
}

static int add_conv(tensor *t, int i, const char *p, int cout, int cin, int k)
{
    char n[48];
    snprintf(n, sizeof(n), "%s.conv.weight", p);
    i = add(t, i, n, 4, cout, cin, k, k);
    snprintf(n, sizeof(n), "%s.conv.bias", p);
    return add(t, i, n, 1, cout, 0, 0, 0);
}

static int add_norm(tensor *t, int i, const char *p, int c)
{
    char n[48];
    snprintf(n, sizeof(n), "%s.weight", p);
    i = add(t, i, n, 1, c, 0, 0, 0);
    snprintf(n, sizeof(n), "%s.bias", p);
    return add(t, i, n, 1, c, 0, 0, 0);
}

static void write_model(const char *path, int c1, int c2, int c3, int nres, int k, const char *style)
{
    tensor t[64];
    int n = 0;
    char p[32];
    n = add_conv(t, n, "conv1", c1, 3, k);
    n = add_norm(t, n, "in1", c1);
    n = add_conv(t, n, "conv2", c2, c1, 3);
    n = add_norm(t, n, "in2", c2);
    n = add_conv(t, n, "conv3", c3, c2, 3);
    n = add_norm(t, n, "in3", c3);
    for (int r = 1; r <= nres; r++) {
        snprintf(p, sizeof(p), "res%d.conv1", r);
        n = add_conv(t, n, p, c3, c3, 3);
        snprintf(p, sizeof(p), "res%d.in1", r);
        n = add_norm(t, n, p, c3);
        snprintf(p, sizeof(p), "res%d.conv2", r);
        n = add_conv(t, n, p, c3, c3, 3);
        snprintf(p, sizeof(p), "res%d.in2", r);
        n = add_norm(t, n, p, c3);
    }
    n = add_conv(t, n, "deconv1", c2, c3, 3);
    n = add_norm(t, n, "in4", c2);
    n = add_conv(t, n, "deconv2", c1, c2, 3);
    n = add_norm(t, n, "in5", c1);
    n = add_conv(t, n, "deconv3", 3, c1, k);

    char header[16384];
    size_t off = 0, len = 0;
    len += (size_t)snprintf(header + len, sizeof(header) - len, "{\"__metadata__\":{\"style\":\"%s\"}", style);
    for (int i = 0; i < n; i++) {
        len += (size_t)snprintf(header + len, sizeof(header) - len, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[", t[i].name);
        for (int d = 0; d < t[i].ndim; d++)
            len += (size_t)snprintf(header + len, sizeof(header) - len, "%s%d", d ? "," : "", t[i].shape[d]);
        len += (size_t)snprintf(header + len, sizeof(header) - len, "],\"data_offsets\":[%zu,%zu]}", off,
                                off + 4 * t[i].n);
        off += 4 * t[i].n;
    }
    len += (size_t)snprintf(header + len, sizeof(header) - len, "}");
    FILE *f = fopen(path, "wb");
    uint64_t hl = len;
    fwrite(&hl, 8, 1, f);
    fwrite(header, 1, len, f);
    for (int i = 0; i < n; i++) {
        int is_norm_weight = strstr(t[i].name, "in") == t[i].name || strstr(t[i].name, ".in");
        int is_weight = strstr(t[i].name, ".weight") != NULL;
        int fan_in = t[i].ndim == 4 ? t[i].shape[1] * t[i].shape[2] * t[i].shape[3] : 1;
        for (size_t j = 0; j < t[i].n; j++) {
            float v;
            if (is_norm_weight)
                v = is_weight ? 1.0f + 0.3f * frand() : 0.3f * frand();
            else if (t[i].ndim == 4)
                v = frand() * 1.7f / sqrtf((float)fan_in);
            else
                v = strstr(t[i].name, "deconv3") ? 128.0f + 40.0f * frand() : 0.1f * frand();
            fwrite(&v, 4, 1, f);
        }
    }
    fclose(f);
}

/* ---- frames ---- */

typedef struct image {
    stylize_frame f;
    uint8_t *buf;
} image;

static image image_new(stylize_pixfmt fmt, int w, int h)
{
    image im;
    int planar = fmt == STYLIZE_PIX_GBRP || fmt == STYLIZE_PIX_GBRAP;
    int bpp = fmt <= STYLIZE_PIX_BGR24 ? 3 : 4;
    int planes = fmt == STYLIZE_PIX_GBRAP ? 4 : 3;
    ptrdiff_t ls = planar ? w + 5 : (ptrdiff_t)w * bpp + 7; /* padded rows */
    memset(&im, 0, sizeof(im));
    im.buf = calloc((size_t)ls * h * (planar ? planes : 1), 1);
    im.f.format = fmt;
    im.f.width = w;
    im.f.height = h;
    for (int i = 0; i < (planar ? planes : 1); i++) {
        im.f.data[i] = im.buf + (size_t)ls * h * i;
        im.f.linesize[i] = ls;
    }
    return im;
}

/* Pointers to the R, G, B, A bytes of pixel (x, y). */
static void px(const image *im, int x, int y, uint8_t **rgba)
{
    const stylize_frame *f = &im->f;
    static const int off[6][4] = {{0, 1, 2, -1}, {2, 1, 0, -1}, {0, 1, 2, 3}, {2, 1, 0, 3}, {1, 2, 3, 0}, {3, 2, 1, 0}};
    if (f->format == STYLIZE_PIX_GBRP || f->format == STYLIZE_PIX_GBRAP) {
        rgba[0] = f->data[2] + y * f->linesize[2] + x;
        rgba[1] = f->data[0] + y * f->linesize[0] + x;
        rgba[2] = f->data[1] + y * f->linesize[1] + x;
        rgba[3] = f->format == STYLIZE_PIX_GBRAP ? f->data[3] + y * f->linesize[3] + x : NULL;
        return;
    }
    int bpp = f->format <= STYLIZE_PIX_BGR24 ? 3 : 4;
    uint8_t *p = f->data[0] + y * f->linesize[0] + x * bpp;
    for (int c = 0; c < 4; c++)
        rgba[c] = off[f->format][c] >= 0 ? p + off[f->format][c] : NULL;
}

/* A smooth synthetic scene with some texture; `scene` changes its colours. */
static void fill(image *im, int scene)
{
    for (int y = 0; y < im->f.height; y++)
        for (int x = 0; x < im->f.width; x++) {
            uint8_t *p[4];
            px(im, x, y, p);
            double u = (double)x / im->f.width, v = (double)y / im->f.height;
            double t = 0.5 + 0.5 * sin(13 * u + 7 * v + scene);
            *p[0] = (uint8_t)(scene == 2 ? 10 + 20 * t : 40 + 200 * u * t);
            *p[1] = (uint8_t)(scene == 2 ? 5 + 10 * v : 30 + 180 * v);
            *p[2] = (uint8_t)(scene == 2 ? 20 : 60 + 150 * t + (scene ? 30 * u : 0));
            if (p[3])
                *p[3] = (uint8_t)(x * 7 + y * 3);
        }
}

static int same_rgb(const image *a, const image *b, int *maxdiff)
{
    int m = 0;
    for (int y = 0; y < a->f.height; y++)
        for (int x = 0; x < a->f.width; x++) {
            uint8_t *p[4], *q[4];
            px(a, x, y, p);
            px(b, x, y, q);
            for (int c = 0; c < 3; c++) {
                int d = abs(*p[c] - *q[c]);
                m = d > m ? d : m;
            }
        }
    if (maxdiff)
        *maxdiff = m;
    return m == 0;
}

static stylize_ctx *create(const char *model, stylize_options *o)
{
    char err[512];
    stylize_ctx *ctx = NULL;
    int r = stylize_create(model, o, &ctx, err, sizeof(err));
    CHECK(r == 0 && ctx, "create failed: %s", err);
    return ctx;
}

/* ---- the tests ---- */

static void test_options(const char *model)
{
    stylize_options o;
    char err[512];
    stylize_ctx *ctx = NULL;
    int r;

    stylize_options_default(&o);
    o.thumb = 1;
    r = stylize_create(model, &o, &ctx, err, sizeof(err));
    CHECK(r == STYLIZE_ERR_INVALID_ARG && !ctx && strstr(err, "thumb"), "thumb 1: %d %s", r, err);

    stylize_options_default(&o);
    o.strength = NAN;
    r = stylize_create(model, &o, &ctx, err, sizeof(err));
    CHECK(r == STYLIZE_ERR_INVALID_ARG && strstr(err, "strength"), "strength NaN: %d %s", r, err);

    stylize_options_default(&o);
    o.tile = -3;
    r = stylize_create(model, &o, &ctx, err, sizeof(err));
    CHECK(r == STYLIZE_ERR_INVALID_ARG && strstr(err, "tile"), "tile -3: %d %s", r, err);

    stylize_options_default(&o);
    o.threads = 10000;
    r = stylize_create(model, &o, &ctx, err, sizeof(err));
    CHECK(r == STYLIZE_ERR_INVALID_ARG && strstr(err, "threads"), "threads 10000: %d %s", r, err);

    stylize_options_default(&o);
    o.smooth = 1.0f;
    r = stylize_create(model, &o, &ctx, err, sizeof(err));
    CHECK(r == STYLIZE_ERR_INVALID_ARG && strstr(err, "smooth"), "smooth 1: %d %s", r, err);

    stylize_options_default(&o);
    CHECK(o.tin_stats == STYLIZE_TIN_STATS_SAMPLE, "tin_stats defaults to sample");
    o.tin_stats = (stylize_tin_stats)7;
    r = stylize_create(model, &o, &ctx, err, sizeof(err));
    CHECK(r == STYLIZE_ERR_INVALID_ARG && !ctx && strstr(err, "tin_stats"), "tin_stats 7: %d %s", r, err);

    r = stylize_create("/nonexistent/model.safetensors", NULL, &ctx, err, sizeof(err));
    CHECK(r == STYLIZE_ERR_IO && strstr(err, "/nonexistent/model.safetensors") && strstr(err, "No such file"),
          "missing file: %d %s", r, err);
    r = stylize_create("no_such_style_name", NULL, &ctx, err, sizeof(err));
    CHECK(r == STYLIZE_ERR_IO && strstr(err, "no_such_style_name"), "missing style: %d %s", r, err);

    stylize_mode m;
    stylize_backend b;
    CHECK(stylize_mode_from_name("patch", &m) == 0 && m == STYLIZE_MODE_PATCH, "mode name");
    CHECK(stylize_mode_from_name("bogus", &m) == STYLIZE_ERR_INVALID_ARG, "bogus mode");
    CHECK(stylize_backend_from_name("ref", &b) == 0 && b == STYLIZE_BACKEND_REF, "backend name");
    stylize_precision pr;
    CHECK(stylize_precision_from_name("bf16", &pr) == 0 && pr == STYLIZE_PRECISION_BF16, "precision name");
    CHECK(stylize_precision_from_name(NULL, &pr) == STYLIZE_ERR_INVALID_ARG, "NULL precision name");
    stylize_tin_stats ts;
    CHECK(stylize_tin_stats_from_name("thumbnail", &ts) == 0 && ts == STYLIZE_TIN_STATS_THUMBNAIL &&
          !strcmp(stylize_tin_stats_name(ts), "thumbnail"), "tin_stats name");
    CHECK(stylize_tin_stats_from_name("thumb", &ts) == STYLIZE_ERR_INVALID_ARG &&
          !strcmp(stylize_tin_stats_name((stylize_tin_stats)9), "?"), "bogus tin_stats");

    /* Runtime changes: a bad value is rejected whole and the old options stay. */
    ctx = create(model, NULL);
    if (!ctx)
        return;
    stylize_get_options(ctx, &o);
    o.strength = 0.25f;
    o.thumb = 5;
    CHECK(stylize_set_options(ctx, &o) == STYLIZE_ERR_INVALID_ARG && strstr(stylize_errmsg(ctx), "thumb"),
          "set bad thumb: %s", stylize_errmsg(ctx));
    stylize_get_options(ctx, &o);
    CHECK(o.strength == 1.0f && o.thumb == 0, "options kept after a rejected change");
    o.threads = 1;
    o.mode = STYLIZE_MODE_PATCH;
    CHECK(stylize_set_options(ctx, &o) == 0, "set threads: %s", stylize_errmsg(ctx));
    stylize_get_options(ctx, &o);
    CHECK(o.threads == 1 && o.mode == STYLIZE_MODE_PATCH, "options changed");
    stylize_destroy(ctx);
}

static void test_formats_and_strength(const char *model)
{
    stylize_options o;
    stylize_options_default(&o);
    o.threads = 2;
    o.tile = 24;
    stylize_ctx *ctx = create(model, &o);
    if (!ctx)
        return;
    const int w = 37, h = 29;
    image ref_in = image_new(STYLIZE_PIX_RGB24, w, h), ref_out = image_new(STYLIZE_PIX_RGB24, w, h);
    fill(&ref_in, 0);
    CHECK(stylize_process(ctx, &ref_in.f, &ref_out.f) == 0, "process rgb24: %s", stylize_errmsg(ctx));
    int stylized_differs = !same_rgb(&ref_in, &ref_out, NULL);
    CHECK(stylized_differs, "the network changed the image");

    for (int f = 0; f <= STYLIZE_PIX_GBRAP; f++) {
        for (int g = 0; g <= STYLIZE_PIX_GBRAP; g += 3) { /* a few output formats per input format */
            image in = image_new((stylize_pixfmt)f, w, h), out = image_new((stylize_pixfmt)g, w, h);
            fill(&in, 0);
            int r = stylize_process(ctx, &in.f, &out.f), md = -1;
            CHECK(r == 0 && same_rgb(&out, &ref_out, &md), "format %d -> %d differs by %d: %s", f, g, md,
                  stylize_errmsg(ctx));
            uint8_t *p[4], *q[4];
            px(&in, 5, 3, p);
            px(&out, 5, 3, q);
            if (q[3])
                CHECK(*q[3] == (p[3] ? *p[3] : 255), "alpha carried from format %d to %d", f, g);
            free(in.buf);
            free(out.buf);
        }
    }

    /* strength 0 returns the input exactly; 0.5 lies halfway. */
    image half = image_new(STYLIZE_PIX_RGB24, w, h), zero = image_new(STYLIZE_PIX_RGB24, w, h);
    stylize_get_options(ctx, &o);
    o.strength = 0;
    stylize_set_options(ctx, &o);
    CHECK(stylize_process(ctx, &ref_in.f, &zero.f) == 0 && same_rgb(&zero, &ref_in, NULL), "strength 0 = input");
    o.strength = 0.5f;
    stylize_set_options(ctx, &o);
    CHECK(stylize_process(ctx, &ref_in.f, &half.f) == 0, "strength 0.5");
    int worst = 0;
    for (int i = 0; i < w * h * 3; i++) {
        int y = i / (w * 3), x = (i % (w * 3)) / 3, c = i % 3;
        uint8_t *a[4], *b[4], *s[4];
        px(&ref_in, x, y, a);
        px(&ref_out, x, y, s);
        px(&half, x, y, b);
        int d = abs(2 * *b[c] - (*a[c] + *s[c]));
        worst = d > worst ? d : worst;
    }
    CHECK(worst <= 2, "strength 0.5 is the average of input and stylized (2x error %d)", worst);

    /* Bad frames are refused with a message. */
    CHECK(stylize_process(ctx, &ref_in.f, &ref_in.f) == STYLIZE_ERR_INVALID_ARG &&
          strstr(stylize_errmsg(ctx), "in-place"), "in-place refused: %s", stylize_errmsg(ctx));
    image small = image_new(STYLIZE_PIX_RGB24, w - 1, h);
    CHECK(stylize_process(ctx, &ref_in.f, &small.f) == STYLIZE_ERR_INVALID_ARG, "size mismatch refused");
    stylize_frame bad = ref_in.f;
    bad.linesize[0] = 3;
    CHECK(stylize_process(ctx, &bad, &ref_out.f) == STYLIZE_ERR_INVALID_ARG &&
          strstr(stylize_errmsg(ctx), "linesize"), "short linesize refused: %s", stylize_errmsg(ctx));
    bad = ref_in.f;
    bad.format = (stylize_pixfmt)42;
    CHECK(stylize_process(ctx, &bad, &ref_out.f) == STYLIZE_ERR_INVALID_ARG, "bad format refused");
    CHECK(stylize_process(ctx, NULL, &ref_out.f) == STYLIZE_ERR_INVALID_ARG, "NULL frame refused");

    free(small.buf);
    free(half.buf);
    free(zero.buf);
    free(ref_in.buf);
    free(ref_out.buf);
    stylize_destroy(ctx);
}

static void test_tiny_and_odd_sizes(const char *model)
{
    stylize_options o;
    stylize_options_default(&o);
    o.threads = 2;
    o.tile = 8;
    static const int sizes[][2] = {{1, 1}, {2, 2}, {3, 5}, {5, 3}, {1, 17}, {17, 1}, {4, 4}, {9, 13}};
    stylize_ctx *ctx = create(model, &o);
    if (!ctx)
        return;
    for (int mode = 0; mode < 3; mode++) {
        stylize_get_options(ctx, &o);
        o.mode = (stylize_mode)mode;
        stylize_set_options(ctx, &o);
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            image in = image_new(STYLIZE_PIX_RGB24, sizes[i][0], sizes[i][1]);
            image out = image_new(STYLIZE_PIX_RGB24, sizes[i][0], sizes[i][1]);
            fill(&in, 1);
            CHECK(stylize_process(ctx, &in.f, &out.f) == 0, "mode %d size %dx%d: %s", mode, sizes[i][0],
                  sizes[i][1], stylize_errmsg(ctx));
            free(in.buf);
            free(out.buf);
        }
    }
    stylize_destroy(ctx);
}

static void test_memory_limit(const char *model)
{
    stylize_options o;
    stylize_options_default(&o);
    o.threads = 2;
    o.mode = STYLIZE_MODE_FULL;
    o.max_memory = 4u << 20;
    stylize_ctx *ctx = create(model, &o);
    if (!ctx)
        return;
    const int w = 600, h = 400;
    image in = image_new(STYLIZE_PIX_RGB24, w, h), out = image_new(STYLIZE_PIX_RGB24, w, h);
    fill(&in, 0);
    size_t full_need = stylize_memory_needed(ctx, w, h);
    CHECK(full_need > o.max_memory, "full mode on 600x400 needs %zu bytes", full_need);
    CHECK(stylize_process(ctx, &in.f, &out.f) == STYLIZE_ERR_TOO_LARGE && strstr(stylize_errmsg(ctx), "max_memory"),
          "refused over the limit: %s", stylize_errmsg(ctx));
    o.mode = STYLIZE_MODE_TIN;
    o.tile = 64;
    o.thumb = 128;
    stylize_set_options(ctx, &o);
    size_t tin_need = stylize_memory_needed(ctx, w, h);
    CHECK(tin_need < o.max_memory, "tin with small tiles fits: %zu bytes", tin_need);
    size_t big = stylize_memory_needed(ctx, 16 * w, 16 * h), huge = stylize_memory_needed(ctx, 32 * w, 32 * h);
    CHECK(big <= o.max_memory && big == huge, "tin memory does not grow with the frame (%zu, %zu)", big, huge);
    CHECK(stylize_process(ctx, &in.f, &out.f) == 0, "tin within the limit: %s", stylize_errmsg(ctx));
    free(in.buf);
    free(out.buf);
    stylize_destroy(ctx);
}

/* mode=auto: full within the budget, then exact for stills and tin for
 * video; exact gives full's picture and statistics with tin-like memory. */
static void test_auto_and_exact(const char *model)
{
    stylize_options o;
    stylize_options_default(&o);
    CHECK(o.mode == STYLIZE_MODE_AUTO && o.still == 0, "default mode auto, still 0");
    o.threads = 2;
    o.tile = 48;
    stylize_ctx *ctx = create(model, &o);
    if (!ctx)
        return;
    const int w = 203, h = 157;
    CHECK(stylize_resolve_mode(ctx, w, h) == STYLIZE_MODE_FULL, "auto: a small frame is full");
    o.mode = STYLIZE_MODE_FULL;
    stylize_set_options(ctx, &o);
    const size_t full_need = stylize_memory_needed(ctx, w, h);
    o.mode = STYLIZE_MODE_EXACT;
    stylize_set_options(ctx, &o);
    const size_t exact_need = stylize_memory_needed(ctx, w, h);
    /* beyond the sizes whose activation cache fits the default budget */
    const size_t exact_big = stylize_memory_needed(ctx, 60 * w, 60 * h);
    CHECK(exact_need < full_need && exact_big == stylize_memory_needed(ctx, 80 * w, 80 * h) &&
          exact_big < ((size_t)64 << 20), "exact memory is bounded by the tile (%zu < %zu; %zu at 60x and 80x the size)",
          exact_need, full_need, exact_big);
    o.mode = STYLIZE_MODE_AUTO;
    o.max_memory = full_need - 1;
    stylize_set_options(ctx, &o);
    CHECK(stylize_resolve_mode(ctx, w, h) == STYLIZE_MODE_TIN, "auto over the budget, video: tin");
    o.max_memory = full_need;
    stylize_set_options(ctx, &o);
    CHECK(stylize_resolve_mode(ctx, w, h) == STYLIZE_MODE_FULL, "auto at the budget: full");
    o.max_memory = full_need - 1;
    o.still = 1;
    stylize_set_options(ctx, &o);
    CHECK(stylize_resolve_mode(ctx, w, h) == STYLIZE_MODE_EXACT, "auto over the budget, still: exact");
    o.max_memory = 0;
    stylize_set_options(ctx, &o);
    CHECK(stylize_resolve_mode(ctx, 8000, 8000) == STYLIZE_MODE_EXACT &&
          stylize_resolve_mode(ctx, 64, 64) == STYLIZE_MODE_FULL, "auto with the default budget (1 GiB)");

    image in = image_new(STYLIZE_PIX_RGB24, w, h), full = image_new(STYLIZE_PIX_RGB24, w, h);
    image ex = image_new(STYLIZE_PIX_RGB24, w, h);
    fill(&in, 1);
    const size_t n = stylize_stats_size(ctx);
    float *s_full = malloc(n * sizeof(float)), *s_ex = malloc(n * sizeof(float));
    o.mode = STYLIZE_MODE_FULL;
    stylize_set_options(ctx, &o);
    CHECK(stylize_process(ctx, &in.f, &full.f) == 0 && stylize_get_stats(ctx, s_full, n) == 0, "full: %s",
          stylize_errmsg(ctx));
    o.mode = STYLIZE_MODE_AUTO;
    o.max_memory = exact_need;
    stylize_set_options(ctx, &o);
    CHECK(stylize_process(ctx, &in.f, &ex.f) == 0 && stylize_get_stats(ctx, s_ex, n) == 0, "auto -> exact: %s",
          stylize_errmsg(ctx));
    int maxd = 0;
    for (size_t i = 0; i < (size_t)w * h * 3; i++) {
        int d = abs((int)full.buf[i] - (int)ex.buf[i]);
        maxd = d > maxd ? d : maxd;
    }
    double rel = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)s_full[i] - s_ex[i]) / (fabs((double)s_full[i]) + 1e-3);
        rel = d > rel ? d : rel;
    }
    /* fp32 statistics are summed in double (the same to the last bit); bf16
     * ones in short float runs, far below bf16's own resolution of 2^-8 */
    const double rel_max = stylize_active_precision(ctx) == STYLIZE_PRECISION_BF16 ? 1e-3 : 1e-4;
    CHECK(maxd <= 1, "exact == full within 1 level (max |diff| %d)", maxd);
    CHECK(rel < rel_max, "exact statistics == full's (max relative difference %g, %s)", rel,
          stylize_precision_name(stylize_active_precision(ctx)));
    free(s_full);
    free(s_ex);
    free(in.buf);
    free(full.buf);
    free(ex.buf);
    stylize_destroy(ctx);
}

static double max_rel_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / (fabs((double)b[i]) + 1e-3);
        m = d > m ? d : m;
    }
    return m;
}

static void test_stats_and_smoothing(const char *model)
{
    stylize_options o;
    stylize_options_default(&o);
    o.threads = 2;
    o.mode = STYLIZE_MODE_TIN; /* smoothing is tin's */
    o.smooth = 0.5f;
    o.scene_cut = 0;
    o.thumb = 16;
    stylize_ctx *ctx = create(model, &o);
    if (!ctx)
        return;
    const int w = 40, h = 24;
    size_t n = stylize_stats_size(ctx);
    float *sa = malloc(n * sizeof(float)), *sb = malloc(n * sizeof(float)), *sc = malloc(n * sizeof(float));
    float *used = malloc(n * sizeof(float)), *expect = malloc(n * sizeof(float));
    image a = image_new(STYLIZE_PIX_RGB24, w, h), b = image_new(STYLIZE_PIX_RGB24, w, h);
    image c = image_new(STYLIZE_PIX_RGB24, w, h), out = image_new(STYLIZE_PIX_RGB24, w, h);
    fill(&a, 0);
    fill(&b, 1);
    fill(&c, 2);
    stylize_model_info mi;
    stylize_get_model_info(ctx, &mi);
    CHECK(n == 2 * (size_t)(mi.width1 * 2 + mi.width2 * 2 + mi.width3 * (1 + 2 * mi.res_blocks)),
          "stats size %zu matches the layout", n);
    CHECK(!strcmp(mi.style, "api-test"), "style from metadata: '%s'", mi.style);
    CHECK(stylize_get_stats(ctx, used, n) == STYLIZE_ERR_INVALID_ARG, "no stats before a frame");
    CHECK(stylize_compute_stats(ctx, &a.f, sa, n) == 0, "stats of a");
    CHECK(stylize_compute_stats(ctx, &b.f, sb, n) == 0, "stats of b");
    CHECK(stylize_compute_stats(ctx, &c.f, sc, n) == 0, "stats of c");
    CHECK(stylize_compute_stats(ctx, &a.f, used, n - 1) == STYLIZE_ERR_INVALID_ARG, "wrong stats count refused");

    /* The first frame uses its own statistics, then the average moves halfway each frame. */
    stylize_process(ctx, &a.f, &out.f);
    CHECK(stylize_get_stats(ctx, used, n) == 0 && max_rel_diff(used, sa, n) < 1e-6, "first frame: own stats");
    stylize_process(ctx, &b.f, &out.f);
    for (size_t i = 0; i < n; i++)
        expect[i] = 0.5f * sa[i] + 0.5f * sb[i];
    stylize_get_stats(ctx, used, n);
    CHECK(max_rel_diff(used, expect, n) < 1e-5, "one step of the moving average (%g)", max_rel_diff(used, expect, n));
    for (int i = 0; i < 30; i++)
        stylize_process(ctx, &b.f, &out.f);
    stylize_get_stats(ctx, used, n);
    CHECK(max_rel_diff(used, sb, n) < 1e-5, "converges to b's stats (%g)", max_rel_diff(used, sb, n));

    /* Reset: the next frame uses its own statistics. */
    stylize_process(ctx, &a.f, &out.f);
    stylize_reset_smoothing(ctx);
    stylize_process(ctx, &b.f, &out.f);
    stylize_get_stats(ctx, used, n);
    CHECK(max_rel_diff(used, sb, n) < 1e-6, "reset: own stats");

    /* A scene cut restarts the average; a small change does not. */
    stylize_get_options(ctx, &o);
    o.smooth = 0.9f;
    o.scene_cut = 0.5f;
    stylize_set_options(ctx, &o);
    stylize_process(ctx, &a.f, &out.f);
    stylize_get_stats(ctx, used, n);
    CHECK(max_rel_diff(used, sb, n) > 1e-3, "no cut between similar scenes a and b");
    stylize_process(ctx, &c.f, &out.f);
    stylize_get_stats(ctx, used, n);
    CHECK(max_rel_diff(used, sc, n) < 1e-6, "cut to a dark scene restarts smoothing (%g)", max_rel_diff(used, sc, n));

    /* External statistics: used once, as given; invalid ones refused. */
    image o1 = image_new(STYLIZE_PIX_RGB24, w, h), o2 = image_new(STYLIZE_PIX_RGB24, w, h);
    stylize_get_options(ctx, &o);
    o.smooth = 0;
    stylize_set_options(ctx, &o);
    stylize_process(ctx, &a.f, &o1.f); /* a with its own stats */
    CHECK(stylize_set_stats(ctx, sa, n) == 0, "set stats");
    CHECK(stylize_process(ctx, &b.f, &o2.f) == 0, "process with set stats");
    stylize_get_stats(ctx, used, n);
    CHECK(max_rel_diff(used, sa, n) == 0, "set stats used as given");
    stylize_process(ctx, &b.f, &o2.f);
    stylize_get_stats(ctx, used, n);
    CHECK(max_rel_diff(used, sb, n) < 1e-6, "set stats are one-shot");
    memcpy(expect, sa, n * sizeof(float));
    expect[n - 1] = -1;
    CHECK(stylize_set_stats(ctx, expect, n) == STYLIZE_ERR_INVALID_ARG && strstr(stylize_errmsg(ctx), "variance"),
          "negative variance refused: %s", stylize_errmsg(ctx));
    expect[n - 1] = NAN;
    CHECK(stylize_set_stats(ctx, expect, n) == STYLIZE_ERR_INVALID_ARG, "NaN refused");
    CHECK(stylize_set_stats(ctx, sa, n + 1) == STYLIZE_ERR_INVALID_ARG, "wrong count refused");

    free(o1.buf);
    free(o2.buf);
    free(a.buf);
    free(b.buf);
    free(c.buf);
    free(out.buf);
    free(sa);
    free(sb);
    free(sc);
    free(used);
    free(expect);
    stylize_destroy(ctx);
}

static void test_model_switch(const char *model, const char *model2, const char *workdir)
{
    stylize_options o;
    stylize_options_default(&o);
    o.threads = 2;
    stylize_ctx *ctx = create(model, &o);
    if (!ctx)
        return;
    const int w = 33, h = 21;
    image in = image_new(STYLIZE_PIX_RGB24, w, h), o1 = image_new(STYLIZE_PIX_RGB24, w, h);
    image o2 = image_new(STYLIZE_PIX_RGB24, w, h), o3 = image_new(STYLIZE_PIX_RGB24, w, h);
    fill(&in, 0);
    stylize_process(ctx, &in.f, &o1.f);
    char bad[1024];
    snprintf(bad, sizeof(bad), "%s/garbage.safetensors", workdir);
    FILE *f = fopen(bad, "wb");
    fputs("this is not a model", f);
    fclose(f);
    CHECK(stylize_load_model(ctx, bad) == STYLIZE_ERR_MODEL && strstr(stylize_errmsg(ctx), "garbage.safetensors"),
          "bad model refused: %s", stylize_errmsg(ctx));
    stylize_process(ctx, &in.f, &o2.f);
    CHECK(same_rgb(&o1, &o2, NULL), "old model still in use after a failed switch");
    CHECK(stylize_load_model(ctx, model2) == 0, "switch: %s", stylize_errmsg(ctx));
    stylize_process(ctx, &in.f, &o3.f);
    CHECK(!same_rgb(&o1, &o3, NULL), "new model changes the output");
    stylize_model_info mi;
    stylize_get_model_info(ctx, &mi);
    CHECK(mi.width1 == 8 && mi.res_blocks == 2, "new model's facts: %d %d", mi.width1, mi.res_blocks);
    free(in.buf);
    free(o1.buf);
    free(o2.buf);
    free(o3.buf);
    stylize_destroy(ctx);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_api WORKDIR\n");
        return 2;
    }
    char m1[1024], m2[1024];
    snprintf(m1, sizeof(m1), "%s/api_a.safetensors", argv[1]);
    snprintf(m2, sizeof(m2), "%s/api_b.safetensors", argv[1]);
    write_model(m1, 16, 16, 32, 1, 5, "api-test");
    write_model(m2, 8, 16, 16, 2, 3, "api-test-2");
    printf("%s\n", stylize_version());
    test_options(m1);
    test_formats_and_strength(m1);
    test_tiny_and_odd_sizes(m1);
    test_stats_and_smoothing(m1);
    test_memory_limit(m1);
    test_auto_and_exact(m1);
    test_model_switch(m1, m2, argv[1]);
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
