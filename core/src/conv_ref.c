/* Reference convolution kernels in portable C. The compiler vectorizes them;
 * target_clones adds AVX2+FMA and AVX-512 versions picked at load time, so
 * the library runs on any x86-64 and uses the wide units where present. */
#include "conv_ref.h"

#include <string.h>

#define PIX 4 /* output pixels per register block */

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(STYLIZE_NO_CLONES)
#define MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MULTIVERSION
#endif

void sty_conv_pack(const float *weight, const float *bias, int cout, int cin, int k, int coutp,
                   float *packed, float *bias_padded)
{
    memset(packed, 0, sizeof(float) * (size_t)k * k * cin * coutp);
    memset(bias_padded, 0, sizeof(float) * (size_t)coutp);
    for (int co = 0; co < cout; co++) {
        bias_padded[co] = bias[co];
        for (int ci = 0; ci < cin; ci++)
            for (int t = 0; t < k * k; t++)
                packed[((size_t)t * cin + ci) * coutp + co] = weight[((size_t)co * cin + ci) * k * k + t];
    }
}

void sty_conv_pack_grouped(const float *weight, int cout, int cin_g, int k, float *gpacked)
{
    for (int co = 0; co < cout; co++)
        for (int ci = 0; ci < cin_g; ci++)
            for (int t = 0; t < k * k; t++)
                gpacked[((size_t)t * cin_g + ci) * cout + co] = weight[((size_t)co * cin_g + ci) * k * k + t];
}

long sty_conv_scratch_floats(int cin, int k, int stride, int cols)
{
    long pw = (long)(cols - 1) * stride + k;
    return (long)k * cin * pw + cols + 16;
}

/* Outer-product kernel for cout >= 16: PIX pixels x STY_CONV_BLOCK output
 * channels of accumulators stay in registers over all taps and inputs.
 * GCC/clang vector extensions make the register blocking explicit; the
 * compiler maps the 16-float vector to whatever the clone's ISA has. */
typedef float vec8 __attribute__((vector_size(32)));

static inline __attribute__((always_inline)) vec8 load8(const float *p)
{
    vec8 v;
    memcpy(&v, p, sizeof(v));
    return v;
}

MULTIVERSION
static void conv_row_blocked(const sty_conv_job *j, int oy)
{
    const int k = j->k, cin = j->cin, coutp = j->coutp, s = j->stride;
    float *orow = j->out + (long)oy * j->out_stride;
    for (int ox = 0; ox < j->cols; ox += PIX) {
        int px[PIX];
        for (int p = 0; p < PIX; p++) /* the last block repeats its last pixel */
            px[p] = ox + p < j->cols ? ox + p : j->cols - 1;
        for (int cb = 0; cb < coutp; cb += STY_CONV_BLOCK) {
            const vec8 blo = load8(j->bias_padded + cb), bhi = load8(j->bias_padded + cb + 8);
            vec8 a0 = blo, a1 = blo, a2 = blo, a3 = blo, b0 = bhi, b1 = bhi, b2 = bhi, b3 = bhi;
            for (int ky = 0; ky < k; ky++) {
                const float *irow = j->in + (long)j->ypad[oy * s + ky] * j->iw * cin;
                for (int kx = 0; kx < k; kx++) {
                    const float *x0 = irow + (long)j->xpad[px[0] * s + kx] * cin;
                    const float *x1 = irow + (long)j->xpad[px[1] * s + kx] * cin;
                    const float *x2 = irow + (long)j->xpad[px[2] * s + kx] * cin;
                    const float *x3 = irow + (long)j->xpad[px[3] * s + kx] * cin;
                    const float *wt = j->packed + ((long)(ky * k + kx) * cin) * coutp + cb;
                    for (int ci = 0; ci < cin; ci++) {
                        const vec8 wlo = load8(wt + (long)ci * coutp), whi = load8(wt + (long)ci * coutp + 8);
                        const float v0 = x0[ci], v1 = x1[ci], v2 = x2[ci], v3 = x3[ci];
                        a0 += v0 * wlo;
                        b0 += v0 * whi;
                        a1 += v1 * wlo;
                        b1 += v1 * whi;
                        a2 += v2 * wlo;
                        b2 += v2 * whi;
                        a3 += v3 * wlo;
                        b3 += v3 * whi;
                    }
                }
            }
            const int nc = j->cout - cb < STY_CONV_BLOCK ? j->cout - cb : STY_CONV_BLOCK;
            const vec8 acc[PIX][2] = {{a0, b0}, {a1, b1}, {a2, b2}, {a3, b3}};
            for (int p = 0; p < PIX && ox + p < j->cols; p++)
                memcpy(orow + (long)(ox + p) * j->cout + cb, acc[p], sizeof(float) * (size_t)nc);
        }
    }
}

/* Kernel for few output channels (the final 3-channel conv): the needed input
 * rows are gathered channel-major, then each output channel accumulates a
 * whole row of pixels at once. */
MULTIVERSION
static void conv_row_small(const sty_conv_job *j, int oy, float *scratch)
{
    const int k = j->k, cin = j->cin, s = j->stride, cols = j->cols;
    const long pw = (long)(cols - 1) * s + k;
    float *rows = scratch;                 /* [k][cin][pw] */
    float *acc = scratch + (long)k * cin * pw; /* [cols] */
    for (int ky = 0; ky < k; ky++) {
        const float *irow = j->in + (long)j->ypad[oy * s + ky] * j->iw * cin;
        for (int ci = 0; ci < cin; ci++) {
            float *dst = rows + ((long)ky * cin + ci) * pw;
            for (long i = 0; i < pw; i++)
                dst[i] = irow[(long)j->xpad[i] * cin + ci];
        }
    }
    float *orow = j->out + (long)oy * j->out_stride;
    for (int co = 0; co < j->cout; co++) {
        for (int ox = 0; ox < cols; ox++)
            acc[ox] = j->bias[co];
        for (int ky = 0; ky < k; ky++)
            for (int ci = 0; ci < cin; ci++) {
                const float *src = rows + ((long)ky * cin + ci) * pw;
                const float *w = j->weight + (((long)co * cin + ci) * k + ky) * k;
                for (int kx = 0; kx < k; kx++) {
                    const float wv = w[kx];
                    const float *sx = src + kx;
                    if (s == 1)
                        for (int ox = 0; ox < cols; ox++)
                            acc[ox] += wv * sx[ox];
                    else
                        for (int ox = 0; ox < cols; ox++)
                            acc[ox] += wv * sx[(long)ox * s];
                }
            }
        for (int ox = 0; ox < cols; ox++)
            orow[(long)ox * j->cout + co] = acc[ox];
    }
}

/* Grouped and depthwise convolutions: each output pixel accumulates its
 * channels as a vector over the taps. The depthwise case (one input and
 * one output channel per group) is a straight multiply-add over all
 * channels per tap, which vectorizes. */
MULTIVERSION
static void conv_row_grouped(const sty_conv_job *j, int oy)
{
    const int k = j->k, cin = j->cin, cout = j->cout, s = j->stride, g = j->groups;
    const int cig = cin / g, cog = cout / g;
    float *orow = j->out + (long)oy * j->out_stride;
    for (int ox = 0; ox < j->cols; ox++) {
        float *restrict o = orow + (long)ox * cout;
        for (int co = 0; co < cout; co++)
            o[co] = j->bias[co];
        for (int ky = 0; ky < k; ky++) {
            const float *irow = j->in + (long)j->ypad[oy * s + ky] * j->iw * cin;
            for (int kx = 0; kx < k; kx++) {
                const float *restrict x = irow + (long)j->xpad[ox * s + kx] * cin;
                const float *restrict wt = j->gpacked + (long)(ky * k + kx) * cig * cout;
                if (cig == 1 && cog == 1) {
                    for (int co = 0; co < cout; co++)
                        o[co] += x[co] * wt[co];
                } else {
                    for (int gi = 0; gi < g; gi++)
                        for (int ci = 0; ci < cig; ci++) {
                            const float xv = x[gi * cig + ci];
                            const float *restrict w = wt + (long)ci * cout + gi * cog;
                            float *restrict og = o + gi * cog;
                            for (int co = 0; co < cog; co++)
                                og[co] += xv * w[co];
                        }
                }
            }
        }
    }
}

void sty_conv_row(const sty_conv_job *job, int oy, float *scratch)
{
    if (job->groups > 1)
        conv_row_grouped(job, oy);
    else if (job->packed)
        conv_row_blocked(job, oy);
    else
        conv_row_small(job, oy, scratch);
}
