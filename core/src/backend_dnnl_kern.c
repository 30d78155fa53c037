/* The oneDNN backend's own passes over activations: input and border
 * padding (reflection), instance-norm statistics and normalization, the
 * sub-pixel depth-to-space, and the last conv's horizontal sum. They run
 * on oneDNN's OpenMP team (sty_dnnl_parallel), split into (channel block,
 * row) tasks. Compiled for AVX-512 / AVX2 / baseline, picked at load time
 * by CPU features (x86-64-v4 / v3): "arch=skylake-avx512" / "arch=haswell"
 * clones are picked only on those exact CPU models, so every other CPU (AMD
 * EPYC, Sapphire Rapids) ran the baseline SSE2 clone. */
#pragma GCC optimize("O3")
#include <string.h>

#include "backend_dnnl_impl.h"
#include "model.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(STYLIZE_NO_CLONES)
#define MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MULTIVERSION
#endif
#define INLINE static inline __attribute__((always_inline))

#define STATS_ROWS 8   /* rows per statistics task: fixed, so results do not depend on threads */
#define STATS_RUN 16   /* pixels summed in float before a double accumulates them */

static size_t pix_offset(const sty_tens *t, int c, int y, int x)
{
    return ((((size_t)(c / t->cb) * t->H + (size_t)y) * t->W + (size_t)x) * t->cb) + (size_t)(c % t->cb);
}

INLINE float ld(const void *p, size_t i, int bf)
{
    return bf ? sty_bf2f(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

INLINE void st(void *p, size_t i, float v, int bf)
{
    if (bf)
        ((uint16_t *)p)[i] = sty_f2bf(v);
    else
        ((float *)p)[i] = v;
}

static int border_src(long i, long n, int mode)
{
    if (mode == STY_BORDER_REFLECT)
        return sty_reflect(i, n);
    return i < 0 ? 0 : i >= n ? (int)n - 1 : (int)i;
}

/* ---------------------------------------------------------------- input */

typedef struct input_job {
    const float *in;
    int h, w, S, b, hs, ws; /* hs x ws: t's interior (the space-to-depth map) */
    const sty_tens *t;
} input_job;

/* One storage row of the space-to-depth tensor. Channel (c, dy, dx) at
 * interior column x reads source column S*(x-b)+dx of source row
 * S*ys+dy. Interior columns whose S source pixels all lie in the frame go
 * pixel by pixel through every channel (their stores are adjacent); the
 * few others reflect, a channel at a time. Padded channels are zeros. */
#define INPUT_MAX_CH 48 /* 3 * 4 * 4: space_to_depth is at most 4 */

/* Storage column x outside the interior run: its source column reflected
 * twice (into the map, then into the frame), worked out once per dx. */
INLINE void input_col(const input_job *j, int x, const size_t *base, const float *const *src, const int S, const int bf)
{
    const sty_tens *t = j->t;
    const long xs = (long)S * sty_reflect(x - j->b, j->ws);
    long off[4]; /* per dx: the source pixel's offset from src[ch], which sits at column dx */
    for (int dx = 0; dx < S; dx++)
        off[dx] = 3 * (sty_reflect(xs + dx, j->w) - dx);
    for (int ch = 0; ch < 3 * S * S; ch++)
        st(t->p, base[ch] + (size_t)x * t->cb, src[ch][off[ch % S]], bf);
}

INLINE void input_row(const input_job *j, int row, const int S, const int bf)
{
    const sty_tens *t = j->t;
    const int ss = S * S, nreal = 3 * ss, W = t->W, cb = t->cb, b = j->b;
    const int ys = sty_reflect(row - b, j->hs);
    size_t base[INPUT_MAX_CH];
    const float *src[INPUT_MAX_CH]; /* channel ch's source row, at its (dx, c) offset */
    for (int ch = 0; ch < t->Cp; ch++) {
        const size_t o = ((size_t)(ch / cb) * t->H + (size_t)row) * W * cb + (size_t)(ch % cb);
        if (ch >= nreal) {
            for (int x = 0; x < W; x++)
                st(t->p, o + (size_t)x * cb, 0.0f, bf);
            continue;
        }
        base[ch] = o;
        const int c = ch / ss, dy = ch % ss / S, dx = ch % S;
        src[ch] = j->in + (size_t)sty_reflect((long)S * ys + dy, j->h) * j->w * 3 + (size_t)dx * 3 + c;
    }
    int x1 = b + j->ws; /* [b, x1): interior columns whose S source pixels lie in the frame */
    while (x1 > b && S * (x1 - b) > j->w)
        x1--;
    for (int x = b; x < x1; x++) {
        const size_t sx = (size_t)S * (x - b) * 3;
        for (int ch = 0; ch < nreal; ch++)
            st(t->p, base[ch] + (size_t)x * cb, src[ch][sx], bf);
    }
    for (int x = 0; x < b; x++) /* the rest, [0, b) and [x1, W): reflected */
        input_col(j, x, base, src, S, bf);
    for (int x = x1; x < W; x++)
        input_col(j, x, base, src, S, bf);
}

MULTIVERSION
static void input_task(void *arg, int row)
{
    const input_job *j = arg;
    const int bf = j->t->bf16;
    switch (j->S) { /* constant strides: the interior loop unrolls */
    case 1: bf ? input_row(j, row, 1, 1) : input_row(j, row, 1, 0); break;
    case 2: bf ? input_row(j, row, 2, 1) : input_row(j, row, 2, 0); break;
    case 4: bf ? input_row(j, row, 4, 1) : input_row(j, row, 4, 0); break;
    default: bf ? input_row(j, row, j->S, 1) : input_row(j, row, j->S, 0); break;
    }
}

void sty_k_input(const sty_kern_ctx *k, const float *in, int h, int w, int S, const sty_tens *t, int b)
{
    input_job j = {in, h, w, S, b, t->H - 2 * b, t->W - 2 * b, t};
    sty_dnnl_parallel(k->api, k->threads, t->H, input_task, &j);
}

/* ------------------------------------------------------------- upsample */

typedef struct upsample_job {
    const sty_tens *s, *d;
    int bs, bd;
} upsample_job;

INLINE void upsample_row(char *d, const char *s, int wi, const size_t pix)
{
    for (int x = 0; x < wi; x++)
        memcpy(d + (size_t)x * pix, s + (size_t)(x / 2) * pix, pix);
}

/* One source row of one channel block -> two destination rows. */
MULTIVERSION
static void upsample_task(void *arg, int task)
{
    const upsample_job *j = arg;
    const sty_tens *s = j->s, *d = j->d;
    const int hs = s->H - 2 * j->bs, wi = d->W - 2 * j->bd, blk = task / hs, y = task % hs;
    const size_t esz = d->bf16 ? 2 : 4, pix = (size_t)d->cb * esz;
    const char *srow = (const char *)s->p + (((size_t)blk * s->H + (size_t)(y + j->bs)) * s->W + j->bs) * pix;
    char *drow = (char *)d->p + (((size_t)blk * d->H + (size_t)(2 * y + j->bd)) * d->W + j->bd) * pix;
    switch (pix) { /* constant sizes: the copies inline */
    case 32: upsample_row(drow, srow, wi, 32); break;
    case 64: upsample_row(drow, srow, wi, 64); break;
    case 128: upsample_row(drow, srow, wi, 128); break;
    default: upsample_row(drow, srow, wi, pix); break;
    }
    memcpy(drow + (size_t)d->W * pix, drow, (size_t)wi * pix);
}

void sty_k_upsample(const sty_kern_ctx *k, const sty_tens *src, int bs, const sty_tens *dst, int bd)
{
    upsample_job j = {src, dst, bs, bd};
    sty_dnnl_parallel(k->api, k->threads, (dst->Cp / dst->cb) * (src->H - 2 * bs), upsample_task, &j);
}

/* --------------------------------------------------------------- border */

typedef struct border_job {
    const sty_tens *t;
    int b, mode, hi, wi, nblk, nrows;
} border_job;

/* The left and right border of one storage row (row: its first pixel). */
INLINE void fill_sides(char *row, int W, int b, int wi, size_t pix, int mode)
{
    for (int x = 0; x < b; x++)
        memcpy(row + x * pix, row + (b + border_src(x - b, wi, mode)) * pix, pix);
    for (int x = b + wi; x < W; x++)
        memcpy(row + x * pix, row + (b + border_src(x - b, wi, mode)) * pix, pix);
}

static void border_cols_task(void *arg, int task)
{
    const border_job *j = arg;
    const sty_tens *t = j->t;
    const int blk = task / j->hi, y = j->b + task % j->hi;
    const size_t esz = t->bf16 ? 2 : 4, pix = (size_t)t->cb * esz;
    fill_sides((char *)t->p + (((size_t)blk * t->H + y) * t->W) * pix, t->W, j->b, j->wi, pix, j->mode);
}

static void border_rows_task(void *arg, int task)
{
    const border_job *j = arg;
    const sty_tens *t = j->t;
    const int blk = task / j->nrows, r = task % j->nrows;
    const int y = r < j->b ? r : j->b + j->hi + (r - j->b);
    const int sy = j->b + border_src(y - j->b, j->hi, j->mode);
    const size_t esz = t->bf16 ? 2 : 4, rowsz = (size_t)t->W * t->cb * esz;
    char *base = (char *)t->p + (size_t)blk * t->H * rowsz;
    memcpy(base + y * rowsz, base + sy * rowsz, rowsz);
}

void sty_k_border(const sty_kern_ctx *k, const sty_tens *t, int b, int mode)
{
    border_job j = {t, b, mode, t->H - 2 * b, t->W - 2 * b, t->Cp / t->cb, 2 * b};
    if (b <= 0)
        return;
    sty_dnnl_parallel(k->api, k->threads, j.nblk * j.hi, border_cols_task, &j);
    sty_dnnl_parallel(k->api, k->threads, j.nblk * j.nrows, border_rows_task, &j);
}

void sty_k_border_rows(const sty_kern_ctx *k, const sty_tens *t, int b, int mode)
{
    border_job j = {t, b, mode, t->H - 2 * b, t->W - 2 * b, t->Cp / t->cb, 2 * b};
    if (b > 0)
        sty_dnnl_parallel(k->api, k->threads, j.nblk * j.nrows, border_rows_task, &j);
}

/* ----------------------------------------------------------- statistics */

typedef struct stats_job {
    const sty_tens *t;
    int oy, ox, hi, wi, nchunk; /* the region: storage rows oy.., columns ox.. */
    double *partial;   /* [blk][chunk][2][cb]: sum of (x - pilot), sum of (x - pilot)^2 */
    const double *pilot; /* per channel: the shift (pilot_sums) */
} stats_job;

/* bf16 tensors: sums of STATS_RUN pixels in float (full vector width, half
 * the work of double; float's rounding over 16 terms is far below the 8
 * bits a bf16 value carries), their sums in double. fp32 tensors: every
 * term in double, so exact mode's region sums reproduce full mode's
 * statistics to the last bit. */
INLINE void stats_task_impl(const stats_job *j, int task, const int cb, const int bf)
{
    const sty_tens *t = j->t;
    const int blk = task / j->nchunk, chunk = task % j->nchunk;
    const int y0 = chunk * STATS_ROWS, y1 = y0 + STATS_ROWS < j->hi ? y0 + STATS_ROWS : j->hi;
    double *s1 = j->partial + (size_t)task * 2 * cb, *s2 = s1 + cb;
    const double *k = j->pilot + (size_t)blk * cb;
    float kf[STY_MAX_WIDTH + 16], r1[STY_MAX_WIDTH + 16], r2[STY_MAX_WIDTH + 16];
    for (int c = 0; c < cb; c++) {
        s1[c] = s2[c] = 0;
        kf[c] = (float)k[c]; /* exact: the pilot is a float */
    }
    for (int y = y0; y < y1; y++) {
        const size_t o = (((size_t)blk * t->H + (size_t)(y + j->oy)) * t->W + (size_t)j->ox) * cb;
        if (!bf) {
            for (int x = 0; x < j->wi; x++) {
                const size_t q = o + (size_t)x * cb;
                for (int c = 0; c < cb; c++) {
                    double d = (double)ld(t->p, q + c, 0) - k[c]; /* exact: both are floats */
                    s1[c] += d;
                    s2[c] += d * d;
                }
            }
            continue;
        }
        for (int x0 = 0; x0 < j->wi; x0 += STATS_RUN) {
            const int x1 = x0 + STATS_RUN < j->wi ? x0 + STATS_RUN : j->wi;
            for (int c = 0; c < cb; c++)
                r1[c] = r2[c] = 0;
            for (int x = x0; x < x1; x++) {
                const size_t q = o + (size_t)x * cb;
                for (int c = 0; c < cb; c++) {
                    float d = ld(t->p, q + c, 1) - kf[c];
                    r1[c] += d;
                    r2[c] += d * d;
                }
            }
            for (int c = 0; c < cb; c++) {
                s1[c] += r1[c];
                s2[c] += r2[c];
            }
        }
    }
}

MULTIVERSION
static void stats_task(void *arg, int task)
{
    const stats_job *j = arg;
    const int bf = j->t->bf16;
    switch (j->t->cb) {
    case 8: bf ? stats_task_impl(j, task, 8, 1) : stats_task_impl(j, task, 8, 0); break;
    case 16: bf ? stats_task_impl(j, task, 16, 1) : stats_task_impl(j, task, 16, 0); break;
    default: bf ? stats_task_impl(j, task, j->t->cb, 1) : stats_task_impl(j, task, j->t->cb, 0); break;
    }
}

size_t sty_k_stats_partial(const sty_tens *t)
{
    return 2 * (size_t)t->Cp * (size_t)((t->H + STATS_ROWS - 1) / STATS_ROWS);
}

/* One pass over rows [y0, y0+hi) x columns [x0, x0+wi) of t (tensor
 * coordinates): per channel c, s1[c] = sum of (x - pilot[c]) and s2[c] = sum
 * of its square. The pilot is the mean of the region's middle row, rounded
 * to float: close to the channel's mean, so E[d^2] - E[d]^2 cancels little
 * and the short float sums (stats_task) lose nothing that matters; a
 * constant channel still gives its value and variance 0 exactly. */
static void pilot_sums(const sty_kern_ctx *k, const sty_tens *t, int y0, int x0, int hi, int wi, double *partial,
                       double *pilot, double *s1, double *s2)
{
    const int nblk = t->Cp / t->cb;
    stats_job j = {t, y0, x0, hi, wi, (hi + STATS_ROWS - 1) / STATS_ROWS, partial, pilot};
    for (int c = 0; c < t->Cp; c++) {
        double m = 0;
        for (int x = 0; x < wi; x++)
            m += ld(t->p, pix_offset(t, c, y0 + hi / 2, x0 + x), t->bf16);
        pilot[c] = wi > 0 ? (float)(m / wi) : 0.0f;
    }
    sty_dnnl_parallel(k->api, k->threads, nblk * j.nchunk, stats_task, &j);
    for (int c = 0; c < t->C; c++) {
        const int blk = c / t->cb, cc = c % t->cb;
        s1[c] = s2[c] = 0;
        for (int ch = 0; ch < j.nchunk; ch++) {
            const double *q = partial + ((size_t)blk * j.nchunk + ch) * 2 * t->cb;
            s1[c] += q[cc];
            s2[c] += q[t->cb + cc];
        }
    }
}

/* The interior's statistics: var = E[(x-p)^2] - E[x-p]^2, clamped at 0. A
 * constant channel gives exactly its value and variance 0. */
void sty_k_stats(const sty_kern_ctx *k, const sty_tens *t, int b, double *partial, float *mean, float *var)
{
    const int hi = t->H - 2 * b, wi = t->W - 2 * b;
    double pilot[STY_MAX_WIDTH + 16], s1[STY_MAX_WIDTH], s2[STY_MAX_WIDTH];
    const double count = (double)hi * wi;
    pilot_sums(k, t, b, b, hi, wi, partial, pilot, s1, s2);
    for (int c = 0; c < t->C; c++) {
        const double m1 = s1[c] / count, v = s2[c] / count - m1 * m1;
        mean[c] = (float)(pilot[c] + m1);
        var[c] = (float)(v > 0 ? v : 0);
    }
}

/* The region's moments about its own mean from the pilot-shifted sums:
 * mean = pilot + s1/n, M2 = s2 - s1^2/n (clamped at 0). */
void sty_k_region_moments(const sty_kern_ctx *k, const sty_tens *t, int b, int ry0, int ry1, int rx0, int rx1,
                          double *partial, double *moments)
{
    const int hi = ry1 - ry0, wi = rx1 - rx0;
    double pilot[STY_MAX_WIDTH + 16], s1[STY_MAX_WIDTH], s2[STY_MAX_WIDTH];
    const double count = (double)hi * wi;
    pilot_sums(k, t, b + ry0, b + rx0, hi, wi, partial, pilot, s1, s2);
    for (int c = 0; c < t->C; c++) {
        const double m2 = s2[c] - s1[c] * s1[c] / count;
        moments[c] = pilot[c] + s1[c] / count;
        moments[t->C + c] = m2 > 0 ? m2 : 0;
    }
}

/* ------------------------------------------ exact mode's activation cache */

typedef struct copy_job {
    const sty_tens *t;
    int b, hi, wi;
    float *act; /* hi x wi x C, NHWC fp32 */
    int store;  /* 1: tensor -> act; 0: act -> tensor (padded channels set to 0) */
} copy_job;

static void copy_task(void *arg, int task)
{
    const copy_job *j = arg;
    const sty_tens *t = j->t;
    const int blk = task / j->hi, y = task % j->hi, c0 = blk * t->cb;
    const int c1 = c0 + t->cb < t->C ? c0 + t->cb : t->C;
    for (int x = 0; x < j->wi; x++) {
        const size_t o = pix_offset(t, c0, y + j->b, x + j->b);
        float *a = j->act + ((size_t)y * j->wi + (size_t)x) * t->C;
        if (j->store) {
            for (int c = c0; c < c1; c++)
                a[c] = ld(t->p, o + (size_t)(c - c0), t->bf16);
        } else {
            for (int c = c0; c < c0 + t->cb; c++)
                st(t->p, o + (size_t)(c - c0), c < c1 ? a[c] : 0.0f, t->bf16);
        }
    }
}

void sty_k_load(const sty_kern_ctx *k, const float *act, const sty_tens *t, int b)
{
    copy_job j = {t, b, t->H - 2 * b, t->W - 2 * b, (float *)act, 0};
    sty_dnnl_parallel(k->api, k->threads, (t->Cp / t->cb) * j.hi, copy_task, &j);
}

void sty_k_store(const sty_kern_ctx *k, const sty_tens *t, int b, float *act)
{
    copy_job j = {t, b, t->H - 2 * b, t->W - 2 * b, act, 1};
    sty_dnnl_parallel(k->api, k->threads, (t->Cp / t->cb) * j.hi, copy_task, &j);
}

/* ---------------------------------------------------------------- apply */

typedef struct apply_job {
    const sty_tens *t, *skip;
    int b, hi, wi, relu, bskip, side_mode;
    const float *scale, *shift;
} apply_job;

/* One row of one channel block; relu / skip / bf are compile-time constants
 * at every call, so each variant is a straight vectorizable loop. */
INLINE void apply_row(void *row, const void *skrow, int wi, const int cb, const float *restrict sc,
                      const float *restrict sh, const int relu, const int skip, const int bf)
{
    if (!bf) {
        float *restrict p = row;
        const float *restrict k = skrow;
        for (int x = 0; x < wi; x++)
            for (int c = 0; c < cb; c++) {
                float v = p[x * cb + c] * sc[c] + sh[c];
                if (skip)
                    v += k[x * cb + c];
                if (relu)
                    v = v > 0 ? v : 0;
                p[x * cb + c] = v;
            }
    } else {
        uint16_t *restrict p = row;
        const uint16_t *restrict k = skrow;
        for (int x = 0; x < wi; x++)
            for (int c = 0; c < cb; c++) {
                float v = sty_bf2f(p[x * cb + c]) * sc[c] + sh[c];
                if (skip)
                    v += sty_bf2f(k[x * cb + c]);
                if (relu)
                    v = v > 0 ? v : 0;
                p[x * cb + c] = sty_f2bf(v);
            }
    }
}

INLINE void apply_task_impl(const apply_job *j, int task, const int cb, const int bf)
{
    const sty_tens *t = j->t;
    const int blk = task / j->hi, y = j->b + task % j->hi;
    const size_t o = (((size_t)blk * t->H + (size_t)y) * t->W + (size_t)j->b) * cb, esz = bf ? 2 : 4;
    float sc[STY_MAX_WIDTH + 16], sh[STY_MAX_WIDTH + 16]; /* local copies: no aliasing with the row */
    memcpy(sc, j->scale + (size_t)blk * cb, sizeof(float) * (size_t)cb);
    memcpy(sh, j->shift + (size_t)blk * cb, sizeof(float) * (size_t)cb);
    void *row = (char *)t->p + o * esz;
    const sty_tens *k = j->skip;
    const void *sk = k ? (const char *)k->p + ((((size_t)blk * k->H + (size_t)(y - j->b + j->bskip)) * k->W +
                                               (size_t)j->bskip) * cb) * esz : NULL;
    if (j->relu && sk)
        apply_row(row, sk, j->wi, cb, sc, sh, 1, 1, bf);
    else if (j->relu)
        apply_row(row, sk, j->wi, cb, sc, sh, 1, 0, bf);
    else if (sk)
        apply_row(row, sk, j->wi, cb, sc, sh, 0, 1, bf);
    else
        apply_row(row, sk, j->wi, cb, sc, sh, 0, 0, bf);
    if (j->side_mode != STY_BORDER_NONE && j->b > 0)
        fill_sides((char *)row - (size_t)j->b * cb * esz, t->W, j->b, j->wi, (size_t)cb * esz, j->side_mode);
}

MULTIVERSION
static void apply_task(void *arg, int task)
{
    const apply_job *j = arg;
    const int bf = j->t->bf16;
    switch (j->t->cb) {
    case 8: bf ? apply_task_impl(j, task, 8, 1) : apply_task_impl(j, task, 8, 0); break;
    case 16: bf ? apply_task_impl(j, task, 16, 1) : apply_task_impl(j, task, 16, 0); break;
    default: bf ? apply_task_impl(j, task, j->t->cb, 1) : apply_task_impl(j, task, j->t->cb, 0); break;
    }
}

void sty_k_apply(const sty_kern_ctx *k, const sty_tens *t, int b, const float *scale, const float *shift, int relu,
                 const sty_tens *skip, int bskip, int side_mode)
{
    apply_job j = {t, skip, b, t->H - 2 * b, t->W - 2 * b, relu, bskip, side_mode, scale, shift};
    sty_dnnl_parallel(k->api, k->threads, (t->Cp / t->cb) * j.hi, apply_task, &j);
}

/* -------------------------------------------------------------- shuffle */

typedef struct shuffle_job {
    const sty_tens *y, *d;
    size_t phase_bytes;
    int off, C;
} shuffle_job;

/* Copy n pixels of `bytes` each from a source with pixel stride sstride to
 * a destination with pixel stride dstride (bytes); constant sizes inline. */
INLINE void copy_pixels(char *d, const char *sp, int n, size_t dstride, size_t sstride, const size_t bytes)
{
    for (int i = 0; i < n; i++)
        memcpy(d + (size_t)i * dstride, sp + (size_t)i * sstride, bytes);
}

MULTIVERSION
static void shuffle_task(void *arg, int task)
{
    const shuffle_job *j = arg;
    const sty_tens *y = j->y, *d = j->d;
    const int nblk = d->Cp / d->cb, blk = task % nblk, i = task / nblk;
    const int c0 = blk * d->cb, nc = d->C - c0 < d->cb ? d->C - c0 : d->cb;
    const size_t esz = d->bf16 ? 2 : 4;
    for (int pr = 0; pr < 2; pr++) {
        const int rr = 2 * i + j->off + pr;
        if (rr < 0 || rr >= d->H)
            continue;
        for (int pc = 0; pc < 2; pc++) {
            const int ph = pr * 2 + pc, sc0 = j->phase_bytes ? c0 : ph * j->C + c0;
            int jx0 = 0, jx1 = y->W;
            while (2 * jx0 + j->off + pc < 0)
                jx0++;
            while (jx1 > jx0 && 2 * (jx1 - 1) + j->off + pc >= d->W)
                jx1--;
            if (jx1 <= jx0)
                continue;
            char *dp = (char *)d->p + pix_offset(d, c0, rr, 2 * jx0 + j->off + pc) * esz;
            const char *ybase = (const char *)y->p + (j->phase_bytes ? ph * j->phase_bytes : 0);
            const char *sp = ybase + pix_offset(y, sc0, i, jx0) * esz;
            const size_t ds = 2 * (size_t)d->cb * esz, ss = (size_t)y->cb * esz, bytes = (size_t)nc * esz;
            const int n = jx1 - jx0;
            if (sc0 % y->cb + nc <= y->cb) { /* the run of channels is contiguous in y */
                switch (bytes) {
                case 16: copy_pixels(dp, sp, n, ds, ss, 16); break;
                case 32: copy_pixels(dp, sp, n, ds, ss, 32); break;
                case 64: copy_pixels(dp, sp, n, ds, ss, 64); break;
                case 128: copy_pixels(dp, sp, n, ds, ss, 128); break;
                default: copy_pixels(dp, sp, n, ds, ss, bytes); break;
                }
            } else {
                for (int jx = jx0; jx < jx1; jx++) {
                    char *q = (char *)d->p + pix_offset(d, c0, rr, 2 * jx + j->off + pc) * esz;
                    for (int c = 0; c < nc; c++)
                        memcpy(q + (size_t)c * esz, ybase + pix_offset(y, sc0 + c, i, jx) * esz, esz);
                }
            }
        }
    }
}

void sty_k_shuffle(const sty_kern_ctx *k, const sty_tens *y, size_t phase_bytes, const sty_tens *dst, int off)
{
    shuffle_job j = {y, dst, phase_bytes, off, dst->C};
    sty_dnnl_parallel(k->api, k->threads, y->H * (dst->Cp / dst->cb), shuffle_task, &j);
}

/* ---------------------------------------------------------------- final */

typedef struct final_job {
    const sty_tens *t;
    int kw, out_w;
    const float *bias;
    float *out;
    size_t off[3][STY_MAX_KERNEL];
} final_job;

MULTIVERSION
static void final_task(void *arg, int y)
{
    const final_job *j = arg;
    const sty_tens *t = j->t;
    const float *row = (const float *)t->p + (size_t)y * t->W * t->cb;
    float *o = j->out + (size_t)y * j->out_w * 3;
    const int cb = t->cb, kw = j->kw;
    for (int x = 0; x < j->out_w; x++) {
        const float *px = row + (size_t)x * cb;
        for (int c = 0; c < 3; c++) {
            float acc = j->bias[c];
            for (int kx = 0; kx < kw; kx++)
                acc += px[j->off[c][kx]];
            o[x * 3 + c] = acc;
        }
    }
}

void sty_k_final(const sty_kern_ctx *k, const sty_tens *t, int kw, const float *bias, float *out, int out_h,
                 int out_w)
{
    final_job j = {t, kw, out_w, bias, out, {{0}}};
    for (int c = 0; c < 3; c++)
        for (int kx = 0; kx < kw; kx++)
            j.off[c][kx] = pix_offset(t, c * kw + kx, 0, kx);
    sty_dnnl_parallel(k->api, k->threads, out_h, final_task, &j);
}

/* ------------------------------------------------------- depth to space */

typedef struct d2s_job {
    const sty_tens *t;
    int P, out_w;
    float *out;
} d2s_job;

MULTIVERSION
static void d2s_task(void *arg, int y)
{
    const d2s_job *j = arg;
    const sty_tens *t = j->t;
    const int P = j->P, pp = P * P, dy = y % P;
    const float *tp = t->p;
    float *o = j->out + (size_t)y * j->out_w * 3;
    if (t->Cp == t->cb) { /* one channel block (NHWC, or <= 16 channels blocked): pixels are contiguous */
        const float *row = tp + (size_t)(y / P) * t->W * t->cb;
        size_t off[4][3];
        for (int dx = 0; dx < P; dx++)
            for (int c = 0; c < 3; c++)
                off[dx][c] = (size_t)(c * pp + dy * P + dx);
        for (int x = 0; x < j->out_w; x++) {
            const float *px = row + (size_t)(x / P) * t->cb;
            const size_t *q = off[x % P];
            o[x * 3 + 0] = px[q[0]];
            o[x * 3 + 1] = px[q[1]];
            o[x * 3 + 2] = px[q[2]];
        }
        return;
    }
    for (int x = 0; x < j->out_w; x++)
        for (int c = 0; c < 3; c++)
            o[x * 3 + c] = tp[pix_offset(t, c * pp + dy * P + x % P, y / P, x / P)];
}

void sty_k_depth_to_space(const sty_kern_ctx *k, const sty_tens *t, int P, float *out, int out_h, int out_w)
{
    d2s_job j = {t, P, out_w, out};
    sty_dnnl_parallel(k->api, k->threads, out_h, d2s_task, &j);
}
