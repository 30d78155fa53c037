/* The oneDNN backend's own passes over activations: input and border
 * padding (reflection), instance-norm statistics and normalization, the
 * sub-pixel depth-to-space, and the last conv's horizontal sum. They run
 * on oneDNN's OpenMP team (sty_dnnl_parallel), split into (channel block,
 * row) tasks. Compiled for AVX-512 / AVX2 / baseline, picked at load time. */
#pragma GCC optimize("O3")
#include <string.h>

#include "backend_dnnl_impl.h"
#include "model.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(STYLIZE_NO_CLONES)
#define MULTIVERSION __attribute__((target_clones("arch=skylake-avx512", "arch=haswell", "default")))
#else
#define MULTIVERSION
#endif
#define INLINE static inline __attribute__((always_inline))

#define STATS_ROWS 8   /* rows per statistics task: fixed, so results do not depend on threads */
#define STATS_RUN 64   /* pixels summed in fp32 before adding to the double total */

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

/* Mirrored-periodic extension, as the ref backend and tools/torch_reference.py. */
static int reflect(long i, long n)
{
    if (n == 1)
        return 0;
    long period = 2 * (n - 1);
    i %= period;
    if (i < 0)
        i += period;
    return (int)(i >= n ? period - i : i);
}

static int border_src(long i, long n, int mode)
{
    if (mode == STY_BORDER_REFLECT)
        return reflect(i, n);
    return i < 0 ? 0 : i >= n ? (int)n - 1 : (int)i;
}

/* ---------------------------------------------------------------- input */

typedef struct input_job {
    const float *in;
    int h, w, b;
    const sty_tens *t;
} input_job;

MULTIVERSION
static void input_task(void *arg, int row)
{
    const input_job *j = arg;
    const sty_tens *t = j->t;
    const float *src = j->in + (size_t)reflect(row - j->b, j->h) * j->w * 3;
    for (int x = 0; x < t->W; x++) {
        int sx = x >= j->b && x < j->b + j->w ? x - j->b : reflect(x - j->b, j->w);
        for (int c = 0; c < 3; c++) {
            size_t o = pix_offset(t, c, row, x);
            if (t->bf16)
                ((uint16_t *)t->p)[o] = sty_f2bf(src[sx * 3 + c]);
            else
                ((float *)t->p)[o] = src[sx * 3 + c];
        }
    }
}

void sty_k_input(const sty_kern_ctx *k, const float *in, int h, int w, const sty_tens *t, int b)
{
    input_job j = {in, h, w, b, t};
    if (t->Cp > 3) /* padded channels stay zero */
        memset(t->p, 0, (size_t)t->Cp * t->H * t->W * (t->bf16 ? 2 : 4));
    sty_dnnl_parallel(k->api, k->threads, t->H, input_task, &j);
}

/* --------------------------------------------------------------- border */

typedef struct border_job {
    const sty_tens *t;
    int b, mode, hi, wi, nblk, nrows;
} border_job;

static void border_cols_task(void *arg, int task)
{
    const border_job *j = arg;
    const sty_tens *t = j->t;
    const int blk = task / j->hi, y = j->b + task % j->hi;
    const size_t esz = t->bf16 ? 2 : 4, pix = (size_t)t->cb * esz;
    char *row = (char *)t->p + (((size_t)blk * t->H + y) * t->W) * pix;
    for (int x = 0; x < t->W; x++) {
        if (x == j->b) {
            x = j->b + j->wi - 1;
            continue;
        }
        int sx = j->b + border_src(x - j->b, j->wi, j->mode);
        memcpy(row + x * pix, row + sx * pix, pix);
    }
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

/* ----------------------------------------------------------- statistics */

typedef struct stats_job {
    const sty_tens *t;
    int b, hi, wi, nchunk;
    double *partial; /* [blk][chunk][cb] */
    const float *mean; /* NULL: pass 1 (sums); else pass 2 (squared deviations) */
} stats_job;

INLINE void stats_row(const void *p, size_t o, int wi, const int cb, const float *mean, double *dacc, int bf)
{
    float acc[STY_MAX_WIDTH];
    for (int x0 = 0; x0 < wi; x0 += STATS_RUN) {
        int x1 = x0 + STATS_RUN < wi ? x0 + STATS_RUN : wi;
        for (int c = 0; c < cb; c++)
            acc[c] = 0;
        for (int x = x0; x < x1; x++) {
            size_t q = o + (size_t)x * cb;
            if (mean) {
                for (int c = 0; c < cb; c++) {
                    float d = ld(p, q + c, bf) - mean[c];
                    acc[c] += d * d;
                }
            } else {
                for (int c = 0; c < cb; c++)
                    acc[c] += ld(p, q + c, bf);
            }
        }
        for (int c = 0; c < cb; c++)
            dacc[c] += acc[c];
    }
}

INLINE void stats_task_impl(const stats_job *j, int task, const int cb, int bf)
{
    const sty_tens *t = j->t;
    const int blk = task / j->nchunk, chunk = task % j->nchunk;
    const int y0 = chunk * STATS_ROWS, y1 = y0 + STATS_ROWS < j->hi ? y0 + STATS_ROWS : j->hi;
    double *dacc = j->partial + (size_t)task * cb;
    const float *mean = j->mean ? j->mean + (size_t)blk * cb : NULL;
    for (int c = 0; c < cb; c++)
        dacc[c] = 0;
    for (int y = y0; y < y1; y++) {
        size_t o = (((size_t)blk * t->H + (size_t)(y + j->b)) * t->W + (size_t)j->b) * cb;
        stats_row(t->p, o, j->wi, cb, mean, dacc, bf);
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
    return (size_t)t->Cp * (size_t)((t->H + STATS_ROWS - 1) / STATS_ROWS);
}

void sty_k_stats(const sty_kern_ctx *k, const sty_tens *t, int b, double *partial, float *mean, float *var)
{
    const int hi = t->H - 2 * b, wi = t->W - 2 * b, nblk = t->Cp / t->cb;
    stats_job j = {t, b, hi, wi, (hi + STATS_ROWS - 1) / STATS_ROWS, partial, NULL};
    const double count = (double)hi * wi;
    float meanp[STY_MAX_WIDTH + 16];
    double dmean[STY_MAX_WIDTH + 16];
    for (int pass = 0; pass < 2; pass++) {
        j.mean = pass ? meanp : NULL;
        sty_dnnl_parallel(k->api, k->threads, nblk * j.nchunk, stats_task, &j);
        for (int c = 0; c < t->Cp; c++) {
            const int blk = c / t->cb, cc = c % t->cb;
            double s = 0;
            for (int ch = 0; ch < j.nchunk; ch++)
                s += partial[((size_t)blk * j.nchunk + ch) * t->cb + cc];
            if (pass == 0) {
                dmean[c] = s / count;
                meanp[c] = (float)dmean[c];
            } else if (c < t->C) {
                var[c] = (float)(s / count);
            }
        }
    }
    for (int c = 0; c < t->C; c++)
        mean[c] = (float)dmean[c];
}

/* ---------------------------------------------------------------- apply */

typedef struct apply_job {
    const sty_tens *t, *skip;
    int b, hi, wi, relu;
    const float *scale, *shift;
} apply_job;

INLINE void apply_task_impl(const apply_job *j, int task, const int cb, int bf)
{
    const sty_tens *t = j->t;
    const int blk = task / j->hi, y = j->b + task % j->hi;
    const size_t o = (((size_t)blk * t->H + (size_t)y) * t->W + (size_t)j->b) * cb;
    const float *sc = j->scale + (size_t)blk * cb, *sh = j->shift + (size_t)blk * cb;
    const void *sk = j->skip ? j->skip->p : NULL;
    for (int x = 0; x < j->wi; x++) {
        size_t q = o + (size_t)x * cb;
        for (int c = 0; c < cb; c++) {
            float v = ld(t->p, q + c, bf) * sc[c] + sh[c];
            if (j->relu)
                v = v > 0 ? v : 0;
            if (sk)
                v += ld(sk, q + c, bf);
            st(t->p, q + c, v, bf);
        }
    }
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
                 const sty_tens *skip)
{
    apply_job j = {t, skip, b, t->H - 2 * b, t->W - 2 * b, relu, scale, shift};
    sty_dnnl_parallel(k->api, k->threads, (t->Cp / t->cb) * j.hi, apply_task, &j);
}

/* -------------------------------------------------------------- shuffle */

typedef struct shuffle_job {
    const sty_tens *y, *d;
    int off, C;
} shuffle_job;

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
            const int sc0 = (pr * 2 + pc) * j->C + c0;
            const int contiguous = sc0 % y->cb + nc <= y->cb;
            int jx0 = 0;
            while (2 * jx0 + j->off + pc < 0)
                jx0++;
            for (int jx = jx0; jx < y->W; jx++) {
                const int cc = 2 * jx + j->off + pc;
                if (cc >= d->W)
                    break;
                char *dp = (char *)d->p + pix_offset(d, c0, rr, cc) * esz;
                if (contiguous) {
                    memcpy(dp, (const char *)y->p + pix_offset(y, sc0, i, jx) * esz, (size_t)nc * esz);
                } else {
                    for (int c = 0; c < nc; c++)
                        memcpy(dp + (size_t)c * esz, (const char *)y->p + pix_offset(y, sc0 + c, i, jx) * esz, esz);
                }
            }
        }
    }
}

void sty_k_shuffle(const sty_kern_ctx *k, const sty_tens *y, const sty_tens *dst, int off)
{
    shuffle_job j = {y, dst, off, dst->C};
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
