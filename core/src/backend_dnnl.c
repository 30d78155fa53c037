/* oneDNN backend: the TransformerNet as a chain of oneDNN convolutions.
 *
 * Layout. Every activation is stored with the border its consumer's
 * padding needs (k/2 pixels of mirrored-periodic reflection, or edge
 * replication in front of an upsampling layer), in one dense buffer. Each
 * convolution runs over the whole stored extent with oneDNN's zero padding
 * chosen so that its output is again a bordered tensor of the next size:
 * the interior is exact, the border is garbage and is rewritten from the
 * interior by a cheap pass (sty_k_border). So no layer copies its input
 * into a padded buffer, and no convolution writes into a strided interior
 * (which oneDNN 2.6 serves with its slow reference kernel).
 * Activations are NHWC for bf16 (AMX / AVX512-BF16 kernels) and nChw16c /
 * nChw8c for fp32 (the native layouts of the AVX-512 / AVX2 kernels); the
 * same layout is used by every layer, so oneDNN never reorders activations.
 *
 * Layers (compact networks, docs/COMPACT.md: see xl_geometry for the
 * grouped, upsampling and head layers):
 *  - conv1 (k x k), conv2/conv3 (stride 2), residual convs: one convolution.
 *  - nearest x2 upsampling + 3x3 conv (deconv1/2): a 2x2 convolution with 4x
 *    the output channels over the edge-replicated input, then a
 *    depth-to-space (sty_k_shuffle): 4/9 of the multiply-adds, and the
 *    upsampled input is never stored. A grouped one: four 2x2 convolutions,
 *    one per output phase; a 1x1 conv after it runs on each phase as well,
 *    and the depth-to-space follows that conv (xl_geometry: defer).
 *  - the last conv (C -> 3, k x k): a k x 1 convolution C -> 3k (one
 *    output per colour and horizontal tap), then a horizontal sum
 *    (sty_k_final) writing the caller's fp32 output block. A 3-output
 *    convolution runs at a few percent of peak; 3k outputs keep the SIMD
 *    lanes busy.
 *
 * Instance norm. STY_NORM_FIXED (tin tiles): the normalization is part of
 * the convolution: per-channel multiply and add post-ops (s = gamma /
 * sqrt(var + eps), t = beta - mean * s), ReLU, and for the residual add a
 * binary add of the block's input (oneDNN's AVX2 kernels take a sum
 * post-op only in first place): no pass over the activations. Should a
 * CPU's oneDNN serve a fused convolution only with a reference kernel, that
 * layer runs unfused (convolution, then the normalization pass).
 * s and t are recomputed only when the statistics change (content
 * compare). The weights are not scaled by s: with the input's DC component
 * (pixels near 230 on a bright flat frame) the folded products cancel in
 * the accumulation and lose several 8-bit levels; the post-ops compute
 * the same operations as STY_NORM_SELF (multiply, then add), so in fp32
 * the thumbnail pass and the tiles round alike. STY_NORM_SELF (full, patch,
 * the thumbnail): convolution, then statistics over the interior
 * (sty_k_stats: one pass of shifted sums in double), then normalization,
 * ReLU and the skip in one pass. Tried and dropped (2026-12-02, Zen 4,
 * bf16, mosaic_live at 1280x720): that pass and the depthwise 3x3
 * convolution reading its result as one sweep of this backend's own (a
 * ring of normalized rows, fp32 sums in AVX-512 registers) took 1.8-2.1 ms
 * per layer against 1.45 for the pass plus oneDNN's depthwise kernel, and
 * the 1x1 convolution after it slowed by a quarter (its input no longer
 * where oneDNN's threads had left it in cache): about 10% slower in all.
 *
 * Rounding noise. Instance norm divides by sqrt(var + 1e-5): on a
 * (nearly) uniform map it multiplies deviations by up to 316, layer after
 * layer. The reference backend and PyTorch compute every pixel of a uniform
 * map identically (variance exactly 0, output = beta), and so do oneDNN's
 * convolutions (checked), but the four phases of a sub-pixel layer use
 * different (summed) weights: their last-bit differences would be
 * amplified into visible noise (a black frame would come out textured).
 * So a channel whose variance is at most its rounding-noise floor is
 * treated as constant (scale 0, output beta), in both norm modes: for a
 * norm at or after a sub-pixel layer (a compact network's depthwise one has
 * none; the 1x1 conv after it normalizes) (and, in bf16, where the
 * thumbnail and the tiles round differently, every layer) the floor is (r * M)^2 with M = sum |w| *
 * bound of |input| per output channel, r = 2^-16 (fp32) or 2^-12 (bf16),
 * far below the variance of real content; elsewhere it is 0 (a constant
 * channel gives exactly beta).
 *
 * Caching. Primitives, their memory objects and buffer assignment are
 * built once per (crop size, norm mode) and kept (up to MAX_PLANS, least
 * recently used replaced); working buffers and the scratchpad grow to the
 * largest need and are reused. Steady state allocates nothing.
 *
 * Threads: oneDNN's OpenMP team is sized with omp_set_num_threads(threads)
 * around every call (restored afterwards); this backend's own passes run on
 * the same team. See backend_dnnl_load.c for OMP_WAIT_POLICY.
 *
 * Environment (experiments): STYLIZE_DNNL_LAYOUT=nhwc|blocked8|blocked16
 * overrides the activation layout; STYLIZE_DNNL_PROFILE=1 prints the time
 * spent per layer (convolution, depth-to-space / final sum / upsampling
 * copy, normalization, border) when the context is destroyed. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "backend.h"
#include "backend_dnnl_impl.h"
#include "stylize.h"

#define NORM_EPS 1e-5
#define MAX_PLANS 16
#define NSLOT 4

#define A (st->a)

enum xkind { X_CONV, X_SUBPIX, X_FINAL, X_UPSAMPLE, X_HEAD };

/* One model layer as executed (shape-independent). */
typedef struct xlayer {
    int kind;
    int kh, kw, stride, groups;
    int cin, cout; /* the model's channels */
    int xout;      /* channels of the executed convolution: cout, 4*cout (sub-pixel), 3*k (final) */
    int split;     /* X_SUBPIX of a grouped conv: the 4 phases run as 4 convolutions of cout outputs (a
                    * grouped convolution orders its outputs by group, not by phase), whose outputs lie
                    * one after another in the temporary */
    int defer;     /* split X_SUBPIX whose phases the next layer (phase_in) reads: no depth-to-space here */
    int phase_in;  /* a 1x1 conv after a deferred sub-pixel layer: it runs on each of the 4 phases (a 1x1
                    * conv commutes with the depth-to-space), writes 4 phases to its temporary, and the
                    * depth-to-space of its narrower output follows */
    int bin, bout; /* border of the tensor the convolution reads / of the output tensor */
    int bsrc;      /* border of the layer's source tensor (bin, except for X_UPSAMPLE) */
    int bout_mode;
    int bout_read; /* the consumer reads the output's border (not a stride-1 1x1 conv): fill it */
    int bskip;     /* add_skip: border of the skip tensor */
    int skip_fusable; /* add_skip: the skip has the output's geometry (a binary post-op can add it) */
    float *w_raw, *b_raw; /* executed convolution, oihw fp32 (final layer: b_raw = the 3 biases) */
    float *fscale, *fshift; /* [xout] fixed-mode normalization (norm layers) */
    float *var_floor;     /* per channel: variances up to this are rounding noise (norm layers) */
} xlayer;

/* Weights of one layer in the format one primitive asked for. */
typedef struct wentry {
    int layer, phase; /* phase: which of a split sub-pixel layer's 4 weight sets */
    dnnl_memory_desc_t md;
    void *buf;
    dnnl_memory_t mem, user;
    dnnl_primitive_t reorder;
    struct wentry *next;
} wentry;

typedef struct pstep {
    dnnl_primitive_t prim;
    dnnl_memory_t src, dst, bias, scratch, scale, shift, skip;
    int skip_arg;  /* post-op index of the skip's binary add, -1 none */
    int norm_po;   /* the fixed-mode normalization is a post-op */
    int pass;      /* norm / residual add / ReLU run as a separate pass after the convolution */
    wentry *w[4];  /* per phase of a split sub-pixel layer, else [0] */
} pstep;

typedef struct plan {
    int h, w, fixed, valid;
    unsigned long last_use;
    sty_tens *tens;  /* [0] input; [1 + 2 li] output of layer li; [2 + 2 li] its Y / T temporary */
    int *slot;       /* per tensor, -1 unused */
    size_t slot_bytes[NSLOT];
    size_t scratch_bytes, partial_doubles;
    pstep *steps;    /* per layer */
} plan;

typedef struct dnnl_state {
    const sty_dnnl_api *a;
    const sty_model *m;
    int threads, bf16, cb; /* cb: channel block of activations, 0 = NHWC */
    dnnl_engine_t eng;
    dnnl_stream_t strm;
    xlayer *xl;
    int last_norm_layer;
    wentry *weights;
    plan plans[MAX_PLANS];
    unsigned long uses;
    void *slot[NSLOT];
    size_t slot_cap[NSLOT];
    void *scratch;
    size_t scratch_cap;
    double *partial;
    size_t partial_cap;
    float *scale, *shift; /* STY_MAX_WIDTH + 16 */
    float *fixed_stats; /* the statistics fscale / fshift were computed from */
    int have_fixed;
    int saved_threads;
    /* STYLIZE_DNNL_PROFILE=1: seconds per layer in convolution / own passes, printed by destroy */
    int profile;
    double *prof_conv, *prof_pass, prof_input; /* prof_pass: [layer][shuffle/final, norm, border] */
    long prof_runs;
} dnnl_state;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double norm_scale(const xlayer *X, const sty_norm *n, int c, float var);

/* ------------------------------------------------------------------ setup */

static int isa_has_bf16(const sty_dnnl_api *a)
{
    unsigned isa = (unsigned)a->dnnl_get_effective_cpu_isa();
    return (isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16;
}

static int cpu_is_amd(void)
{
#if defined(__x86_64__) || defined(__i386__)
    unsigned max_leaf, ebx, ecx, edx;
    if (!__get_cpuid(0, &max_leaf, &ebx, &ecx, &edx))
        return 0;
    return ebx == 0x68747541 && edx == 0x69746e65 && ecx == 0x444d4163; /* "AuthenticAMD" */
#else
    return 0;
#endif
}

/* Does precision=auto pick bf16? Where oneDNN runs bf16 on AMX, and on AMD's
 * AVX512-BF16 (Zen 4: the classic network 1.9x faster than fp32). Not on
 * Intel cores with AVX512-BF16 but no AMX (Cooper Lake; Sapphire/Emerald
 * Rapids under a hypervisor that hides AMX): there oneDNN 2.6's bf16
 * convolutions measured 1.2-1.8x slower than fp32, every conv kind
 * (docs/BENCHMARK_LIVE.md). A rule, not a timing probe, so that a machine
 * always computes the same picture. */
static int bf16_is_faster(const sty_dnnl_api *a)
{
    const unsigned isa = (unsigned)a->dnnl_get_effective_cpu_isa();
    if ((isa & dnnl_cpu_isa_avx512_core_amx) == dnnl_cpu_isa_avx512_core_amx)
        return 1;
    return isa_has_bf16(a) && cpu_is_amd();
}

static int avail_result;
static pthread_once_t avail_once = PTHREAD_ONCE_INIT;

static void check_available(void)
{
    const sty_dnnl_api *a = sty_dnnl_load(NULL);
    dnnl_engine_t e;
    if (a && a->dnnl_engine_create(&e, dnnl_cpu, 0) == dnnl_success) {
        a->dnnl_engine_destroy(e);
        avail_result = 1;
    }
}

/* oneDNN 2.x loads and can create a CPU engine. */
static int dnnl_available(void)
{
    pthread_once(&avail_once, check_available);
    return avail_result;
}

static stylize_precision dnnl_active_precision(const void *opaque)
{
    const dnnl_state *st = opaque;
    return st->bf16 ? STYLIZE_PRECISION_BF16 : STYLIZE_PRECISION_FP32;
}

static void threads_enter(dnnl_state *st)
{
    if (A->omp_set_num_threads) {
        st->saved_threads = A->omp_get_max_threads();
        A->omp_set_num_threads(st->threads);
    }
}

static void threads_leave(dnnl_state *st)
{
    if (A->omp_set_num_threads)
        A->omp_set_num_threads(st->saved_threads);
}

/* Executed form of every layer: kinds, borders, transformed weights.
 * Kinds: X_CONV a plain (possibly grouped) convolution; X_SUBPIX nearest x2
 * upsampling + 3x3 conv as a 2x2 conv to 4 phases (classic decoder; for a
 * grouped conv, such as a compact network's depthwise upsampling, four 2x2
 * convs: at 720p in bf16 on Zen 4, 4 x 0.2 ms against 2.1 ms for the 3x3
 * depthwise conv over the upsampled map, and no upsampling copy);
 * X_FINAL the last conv to 3 channels as k x 1 + horizontal sum;
 * X_UPSAMPLE any other upsampling layer (other kernels, strides): an
 * explicit nearest x2 copy into a bordered temporary, then the convolution;
 * X_HEAD a compact network's last conv into an fp32 temporary, then the
 * depth-to-space into the caller's output. */
static int xl_geometry(const sty_model *m, xlayer *xl)
{
    const int compact = m->arch == STY_ARCH_COMPACT;
    for (int li = 0; li < m->n_layers; li++) {
        const sty_layer *L = &m->layers[li];
        const sty_conv *c = &m->convs[L->conv];
        const int last = li == m->n_layers - 1;
        xlayer *X = &xl[li];
        X->cin = c->cin;
        X->cout = c->cout;
        X->stride = c->stride;
        X->groups = c->groups;
        X->kh = X->kw = c->k;
        X->xout = c->cout;
        X->kind = X_CONV;
        if (c->upsample && c->k == 3 && c->stride == 1 && !last) {
            X->kind = X_SUBPIX;
            X->kh = X->kw = 2;
            X->xout = 4 * c->cout;
            X->split = c->groups > 1;
        } else if (c->upsample) {
            X->kind = X_UPSAMPLE;
        } else if (last && L->norm < 0 && c->cout == 3 && c->stride == 1 && c->groups == 1 && !L->add_skip &&
                   !L->relu) {
            X->kind = X_FINAL;
            X->kw = 1;
            X->xout = 3 * c->k;
        } else if (last && compact) {
            X->kind = X_HEAD;
        }
        X->bin = c->k / 2;
    }
    /* Defer a grouped sub-pixel layer's depth-to-space past the 1x1 conv
     * after it (the live layout's up1.dw, up1.pw: 64 -> 32 channels), so
     * that it moves half the data. Its own output must need no pass (no
     * norm, skip or ReLU: the pass would have no tensor to run on). */
    for (int li = 0; li + 1 < m->n_layers; li++) {
        const sty_layer *L = &m->layers[li], *NL = &m->layers[li + 1];
        xlayer *X = &xl[li], *N = &xl[li + 1];
        if (X->kind == X_SUBPIX && X->split && L->norm < 0 && !L->add_skip && !L->relu && N->kind == X_CONV &&
            N->kh == 1 && N->kw == 1 && N->stride == 1 && N->groups == 1 && !NL->save_skip && !NL->add_skip) {
            X->defer = 1;
            N->phase_in = 1;
        }
    }
    /* Borders. A layer's output carries its consumer's border, so each
     * convolution runs over the stored extent. A stride-1 1x1 convolution
     * reads a source whose border equals its output's (oneDNN's 1x1 kernels
     * take no padding; with padding it falls back to a reference kernel), so
     * such chains pass their border back. An X_UPSAMPLE reads only the
     * interior of its source: its border is free (FREE), resolved going
     * forward to the open residual skip's border (so the add fuses), else 0. */
    enum { FREE = -1 };
    int *nat = calloc(m->n_layers > 0 ? (size_t)m->n_layers : 1, sizeof(int)); /* wanted source border per layer */
    if (!nat)
        return -1;
    for (int li = m->n_layers - 1; li >= 0; li--) {
        const xlayer *X = &xl[li];
        const int next = li + 1 < m->n_layers ? nat[li + 1] : 0;
        if (X->kind == X_UPSAMPLE)
            nat[li] = FREE;
        else if (X->kind == X_CONV && X->kh == 1 && X->stride == 1)
            nat[li] = next;
        else
            nat[li] = X->bin;
    }
    int skip_b = -1, prev_bout = nat[0] == FREE ? 0 : nat[0];
    for (int li = 0; li < m->n_layers; li++) {
        const sty_layer *L = &m->layers[li];
        xlayer *X = &xl[li];
        X->bsrc = prev_bout;
        if (X->kind != X_UPSAMPLE)
            X->bin = X->bsrc;
        if (L->save_skip)
            skip_b = X->bsrc;
        if (li + 1 < m->n_layers) {
            const xlayer *N = &xl[li + 1];
            int want = nat[li + 1];
            if (want == FREE && nat[li] == FREE && X->kind == X_CONV) /* inside a 1x1 chain: keep its border */
                want = X->bsrc;
            else if (want == FREE)
                want = skip_b >= 0 ? skip_b : 0;
            X->bout = want;
            X->bout_mode = N->kind == X_SUBPIX ? STY_BORDER_REPLICATE : STY_BORDER_REFLECT;
            /* A stride-1 1x1 convolution maps border pixels to border pixels
             * only, and every reader of its output's border fills that
             * border itself; interior-only readers (statistics, the
             * normalization pass, skips, upsampling, saves) never look. */
            X->bout_read = !(N->kind == X_CONV && N->kh == 1 && N->kw == 1 && N->stride == 1);
        }
        if (L->add_skip) {
            X->bskip = skip_b;
            X->skip_fusable = skip_b == X->bout;
            skip_b = -1;
        }
        prev_bout = X->bout;
    }
    free(nat);
    return 0;
}

/* Sub-pixel weights: nearest x2 upsampling then a 3x3 conv over the
 * reflection-padded upsampled map equals, on the edge-replicated source
 * (border 1), a 2x2 conv per output phase: taps {0,1},{2} for the phase
 * that starts one row up (odd output rows), {0},{1,2} for the other. */
static void subpix_weights(const sty_conv *c, float *w, float *b)
{
    static const int taps[2][2][2] = {{{0, 1}, {2, -1}}, {{0, -1}, {1, 2}}}; /* [phase][u][..] */
    const int C = c->cout, I = c->cin / c->groups;
    for (int pr = 0; pr < 2; pr++)
        for (int pc = 0; pc < 2; pc++)
            for (int o = 0; o < C; o++) {
                int xo = (pr * 2 + pc) * C + o;
                b[xo] = c->bias[o];
                for (int i = 0; i < I; i++)
                    for (int u = 0; u < 2; u++)
                        for (int v = 0; v < 2; v++) {
                            double s = 0;
                            for (int a = 0; a < 2 && taps[pr][u][a] >= 0; a++)
                                for (int bb = 0; bb < 2 && taps[pc][v][bb] >= 0; bb++)
                                    s += c->weight[(((size_t)o * I + i) * 3 + taps[pr][u][a]) * 3 + taps[pc][v][bb]];
                            w[(((size_t)xo * I + i) * 2 + u) * 2 + v] = (float)s;
                        }
            }
}

/* Final conv as k x 1 with one output per (colour, horizontal tap). */
static void final_weights(const sty_conv *c, float *w)
{
    const int k = c->k, I = c->cin;
    for (int o = 0; o < 3; o++)
        for (int kx = 0; kx < k; kx++)
            for (int i = 0; i < I; i++)
                for (int ky = 0; ky < k; ky++)
                    w[(((size_t)(o * k + kx) * I + i) * k + ky)] = c->weight[(((size_t)o * I + i) * k + ky) * k + kx];
}

static size_t xl_wcount(const xlayer *X)
{
    return (size_t)X->xout * (X->cin / X->groups) * X->kh * X->kw;
}

/* Output channels of one executed convolution (a split layer runs 4). */
static int xl_conv_out(const xlayer *X)
{
    return X->split ? X->xout / 4 : X->xout;
}

/* ------------------------------------------------------------------ plans */

static dnnl_format_tag_t tens_tag(const sty_tens *t)
{
    if (t->nhwc)
        return dnnl_nhwc;
    switch (t->cb) {
    case 1: return dnnl_nchw;
    case 8: return dnnl_nChw8c;
    case 16: return dnnl_nChw16c;
    default: return dnnl_format_tag_undef;
    }
}

static void tens_init(sty_tens *t, int C, int H, int W, int bf16, int cb)
{
    memset(t, 0, sizeof(*t));
    t->C = C;
    t->H = H;
    t->W = W;
    t->bf16 = bf16;
    if (cb == 0 || C == 3) { /* NHWC, or the planar image for blocked layouts */
        t->cb = cb == 0 ? C : 1;
        t->Cp = C;
        t->nhwc = cb == 0;
    } else {
        t->cb = cb;
        t->Cp = (C + cb - 1) / cb * cb;
    }
}

static size_t tens_bytes(const sty_tens *t)
{
    return (size_t)t->Cp * t->H * t->W * (t->bf16 ? 2 : 4);
}

static int first_free(const int *busy, int nbusy)
{
    for (int s = 0;; s++) {
        int used = 0;
        for (int i = 0; i < nbusy; i++)
            used |= busy[i] == s;
        if (!used)
            return s;
    }
}

/* Tensor geometry and buffer slots of an h x w crop (no oneDNN objects). */
static int plan_geometry(const sty_model *m, const xlayer *xl, int bf16, int cb, int h, int w, int fixed, plan *p)
{
    const int nt = 1 + 2 * m->n_layers;
    p->tens = calloc((size_t)nt, sizeof(*p->tens));
    p->slot = malloc(sizeof(int) * (size_t)nt);
    if (!p->tens || !p->slot)
        return -1;
    for (int i = 0; i < nt; i++)
        p->slot[i] = -1;
    memset(p->slot_bytes, 0, sizeof(p->slot_bytes));
    int H = sty_model_in_size(m, h), W = sty_model_in_size(m, w), cur = 0, skip = -1;
    /* the input: planar when it has fewer channels than a block (oneDNN's
     * first-layer kernels read planar sources; padded blocks get its
     * reference kernel) */
    tens_init(&p->tens[0], m->convs[0].cin, H + 2 * xl[0].bsrc, W + 2 * xl[0].bsrc, bf16,
              cb && m->convs[0].cin < cb ? 1 : cb);
    p->slot[0] = 0;
    p->partial_doubles = 0;
    for (int li = 0; li < m->n_layers; li++) {
        const sty_layer *L = &m->layers[li];
        const sty_conv *c = &m->convs[L->conv];
        const xlayer *X = &xl[li];
        const int oh = sty_conv_out_size(c, H), ow = sty_conv_out_size(c, W);
        const int to = 1 + 2 * li, tt = 2 + 2 * li;
        const int tmp_only = X->kind == X_FINAL || X->kind == X_HEAD; /* no bordered output tensor */
        if (L->save_skip)
            skip = cur;
        int busy[4] = {p->slot[cur], skip >= 0 ? p->slot[skip] : -1, -1, -1}, nb = 2;
        if (X->kind == X_SUBPIX) { /* split: one phase's tensor; the slot holds the 4 phases */
            tens_init(&p->tens[tt], xl_conv_out(X), H + 2 * X->bin - 1, W + 2 * X->bin - 1, bf16, cb);
        } else if (X->phase_in) { /* reads the 4 phases of the previous temporary (cur) */
            tens_init(&p->tens[tt], X->cout, p->tens[cur].H, p->tens[cur].W, bf16, cb);
        } else if (X->kind == X_FINAL) {
            tens_init(&p->tens[tt], X->xout, H + 2 * X->bin - X->kh + 1, W + 2 * X->bin, 0, bf16 ? 0 : cb);
        } else if (X->kind == X_UPSAMPLE) {
            tens_init(&p->tens[tt], X->cin, 2 * H + 2 * X->bin, 2 * W + 2 * X->bin, bf16, cb);
        } else if (X->kind == X_HEAD) {
            tens_init(&p->tens[tt], X->cout, oh, ow, 0, bf16 ? 0 : cb);
        }
        if (X->kind != X_CONV || X->phase_in) {
            p->slot[tt] = first_free(busy, nb);
            busy[nb++] = p->slot[tt];
        }
        if (!tmp_only && !X->defer) {
            tens_init(&p->tens[to], X->cout, oh + 2 * X->bout, ow + 2 * X->bout, bf16, cb);
            if (L->add_skip && X->skip_fusable &&
                (skip < 0 || p->tens[skip].H != p->tens[to].H || p->tens[skip].W != p->tens[to].W ||
                 p->tens[skip].Cp != p->tens[to].Cp || p->tens[skip].cb != p->tens[to].cb))
                return -2; /* the skip is added element by element */
            p->slot[to] = first_free(busy, nb);
            if (L->norm >= 0 && !fixed) {
                size_t pd = sty_k_stats_partial(&p->tens[to]);
                if (pd > p->partial_doubles)
                    p->partial_doubles = pd;
            }
        }
        for (int t = to; t <= tt; t++)
            if (p->slot[t] >= 0) {
                if (p->slot[t] >= NSLOT)
                    return -2;
                size_t b = tens_bytes(&p->tens[t]) * (t == tt && (X->split || X->phase_in) ? 4 : 1);
                if (b > p->slot_bytes[p->slot[t]])
                    p->slot_bytes[p->slot[t]] = b;
            }
        {
            size_t b = tens_bytes(&p->tens[0]);
            if (b > p->slot_bytes[p->slot[0]])
                p->slot_bytes[p->slot[0]] = b;
        }
        if (L->add_skip)
            skip = -1;
        cur = X->defer ? tt : to;
        H = oh;
        W = ow;
    }
    return 0;
}

static void plan_free(dnnl_state *st, plan *p)
{
    if (p->steps)
        for (int li = 0; li < st->m->n_layers; li++) {
            pstep *s = &p->steps[li];
            if (s->prim)
                A->dnnl_primitive_destroy(s->prim);
            if (s->src)
                A->dnnl_memory_destroy(s->src);
            if (s->dst)
                A->dnnl_memory_destroy(s->dst);
            if (s->bias)
                A->dnnl_memory_destroy(s->bias);
            if (s->scratch)
                A->dnnl_memory_destroy(s->scratch);
            if (s->scale)
                A->dnnl_memory_destroy(s->scale);
            if (s->shift)
                A->dnnl_memory_destroy(s->shift);
            if (s->skip)
                A->dnnl_memory_destroy(s->skip);
        }
    free(p->steps);
    free(p->tens);
    free(p->slot);
    memset(p, 0, sizeof(*p));
}

static int md_for(dnnl_state *st, dnnl_memory_desc_t *md, const sty_tens *t)
{
    dnnl_dims_t dims = {1, t->C, t->H, t->W};
    dnnl_format_tag_t tag = tens_tag(t);
    if (tag == dnnl_format_tag_undef)
        return -1;
    return A->dnnl_memory_desc_init_by_tag(md, 4, dims, t->bf16 ? dnnl_bf16 : dnnl_f32, tag) != dnnl_success;
}

/* The weights entry of a layer in format md (shared between plans). */
static wentry *weights_for(dnnl_state *st, int li, int phase, const dnnl_memory_desc_t *md)
{
    const xlayer *X = &st->xl[li];
    for (wentry *e = st->weights; e; e = e->next)
        if (e->layer == li && e->phase == phase && A->dnnl_memory_desc_equal(&e->md, md))
            return e;
    wentry *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->layer = li;
    e->phase = phase;
    e->md = *md;
    size_t bytes = A->dnnl_memory_desc_get_size(md);
    e->buf = aligned_alloc(64, (bytes + 63) / 64 * 64);
    dnnl_memory_desc_t umd;
    const int xo = xl_conv_out(X);
    dnnl_dims_t dims = {xo, X->cin, X->kh, X->kw};
    dnnl_dims_t gdims = {X->groups, xo / X->groups, X->cin / X->groups, X->kh, X->kw};
    dnnl_primitive_desc_t rpd = NULL;
    int ok = e->buf &&
             (X->groups > 1 ? A->dnnl_memory_desc_init_by_tag(&umd, 5, gdims, dnnl_f32, dnnl_goihw)
                            : A->dnnl_memory_desc_init_by_tag(&umd, 4, dims, dnnl_f32, dnnl_oihw)) == dnnl_success &&
             A->dnnl_memory_create(&e->user, &umd, st->eng, X->w_raw + (size_t)phase * (xl_wcount(X) / 4)) ==
                 dnnl_success &&
             A->dnnl_memory_create(&e->mem, md, st->eng, e->buf) == dnnl_success &&
             A->dnnl_reorder_primitive_desc_create(&rpd, &umd, st->eng, md, st->eng, NULL) == dnnl_success &&
             A->dnnl_primitive_create(&e->reorder, rpd) == dnnl_success;
    if (rpd)
        A->dnnl_primitive_desc_destroy(rpd);
    if (ok) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, e->user}, {DNNL_ARG_TO, e->mem}};
        ok = A->dnnl_primitive_execute(e->reorder, st->strm, 2, args) == dnnl_success &&
             A->dnnl_stream_wait(st->strm) == dnnl_success;
    }
    e->next = st->weights;
    st->weights = e; /* freed with the state even when incomplete */
    return ok ? e : NULL;
}

static void weights_free(dnnl_state *st)
{
    for (wentry *e = st->weights, *n; e; e = n) {
        n = e->next;
        if (e->reorder)
            A->dnnl_primitive_destroy(e->reorder);
        if (e->mem)
            A->dnnl_memory_destroy(e->mem);
        if (e->user)
            A->dnnl_memory_destroy(e->user);
        free(e->buf);
        free(e);
    }
    st->weights = NULL;
}

static int step_create(dnnl_state *st, plan *p, int li)
{
    const sty_model *m = st->m;
    const sty_layer *L = &m->layers[li];
    const xlayer *X = &st->xl[li];
    /* Post-ops: the fixed-mode norm (multiply, add), the residual add, ReLU.
     * Layers without a norm always take theirs as post-ops; SELF-mode norm
     * layers run them in the normalization pass. */
    const int can_post = (p->fixed || L->norm < 0) && !(L->add_skip && !X->skip_fusable);
    const sty_tens *src = &p->tens[X->kind == X_UPSAMPLE ? 2 + 2 * li
                                   : li == 0                 ? 0
                                   : X->phase_in             ? 2 + 2 * (li - 1)
                                                             : 1 + 2 * (li - 1)];
    const sty_tens *dst = &p->tens[(X->kind == X_CONV && !X->phase_in) || X->kind == X_UPSAMPLE ? 1 + 2 * li
                                                                                              : 2 + 2 * li];
    pstep *s = &p->steps[li];
    dnnl_memory_desc_t smd, dmd, wmd, bmd, cmd;
    const int G = X->groups, xo = xl_conv_out(X);
    dnnl_dims_t wdims = {xo, X->cin, X->kh, X->kw}, bdims = {xo}, cdims = {1, xo, 1, 1};
    dnnl_dims_t gdims = {G, xo / G, X->cin / G, X->kh, X->kw};
    int pl = 0, prh = 0, prw = 0;
    if ((X->kind == X_CONV && !X->phase_in) || X->kind == X_UPSAMPLE || X->kind == X_HEAD) {
        pl = X->bout * X->stride - X->bin + X->kh / 2;
        prh = (dst->H - 1) * X->stride + X->kh - src->H - pl;
        prw = (dst->W - 1) * X->stride + X->kw - src->W - pl;
        if (pl < 0 || prh < 0 || prw < 0)
            return STYLIZE_ERR_BACKEND;
    }
    dnnl_dims_t strides = {X->stride, X->stride}, padl = {pl, pl}, padr = {prh, prw};
    if (md_for(st, &smd, src) || md_for(st, &dmd, dst))
        return STYLIZE_ERR_BACKEND;
    if ((G > 1 ? A->dnnl_memory_desc_init_by_tag(&wmd, 5, gdims, st->bf16 ? dnnl_bf16 : dnnl_f32, dnnl_format_tag_any)
               : A->dnnl_memory_desc_init_by_tag(&wmd, 4, wdims, st->bf16 ? dnnl_bf16 : dnnl_f32, dnnl_format_tag_any)) ||
        A->dnnl_memory_desc_init_by_tag(&bmd, 1, bdims, dnnl_f32, dnnl_a) ||
        A->dnnl_memory_desc_init_by_tag(&cmd, 4, cdims, dnnl_f32, dnnl_nchw))
        return STYLIZE_ERR_BACKEND;
    dnnl_convolution_desc_t cd;
    if (A->dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct, &smd, &wmd,
                                              X->kind == X_FINAL ? NULL : &bmd, &dmd, strides, padl, padr))
        return STYLIZE_ERR_BACKEND;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    int r = STYLIZE_ERR_BACKEND;
    for (int fuse = can_post; fuse >= 0; fuse--) {
        if (pd)
            A->dnnl_primitive_desc_destroy(pd), pd = NULL;
        if (po)
            A->dnnl_post_ops_destroy(po), po = NULL;
        if (attr)
            A->dnnl_primitive_attr_destroy(attr), attr = NULL;
        int npo = 0;
        if (A->dnnl_primitive_attr_create(&attr) || A->dnnl_post_ops_create(&po) ||
            A->dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user))
            goto done;
        s->norm_po = fuse && L->norm >= 0;
        if (s->norm_po) {
            if (A->dnnl_post_ops_append_binary(po, dnnl_binary_mul, &cmd) ||
                A->dnnl_post_ops_append_binary(po, dnnl_binary_add, &cmd))
                goto done;
            npo = 2;
        }
        s->skip_arg = -1;
        if (fuse && L->add_skip) {
            if (A->dnnl_post_ops_append_binary(po, dnnl_binary_add, &dmd))
                goto done;
            s->skip_arg = npo++;
        }
        if (fuse && L->relu) {
            if (A->dnnl_post_ops_append_eltwise(po, 1.f, dnnl_eltwise_relu, 0.f, 0.f))
                goto done;
            npo++;
        }
        if (A->dnnl_primitive_attr_set_post_ops(attr, po) ||
            A->dnnl_primitive_desc_create(&pd, &cd, attr, st->eng, NULL))
            continue;
        const char *impl = "";
        A->dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
        if (fuse && npo && !strncmp(impl, "ref", 3))
            continue; /* a reference kernel: much slower than the unfused path */
        /* the norm / add / ReLU run as a separate pass after the convolution */
        s->pass = !fuse && (L->norm >= 0 || L->add_skip || L->relu);
        break;
    }
    if (!pd || A->dnnl_primitive_create(&s->prim, pd))
        goto done;
    const dnnl_memory_desc_t *q = A->dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    if (!q)
        goto done;
    for (int ph = 0; ph < (X->split ? 4 : 1); ph++)
        if (!(s->w[ph] = weights_for(st, li, ph, q)))
            goto done;
    q = A->dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t sbytes = q ? A->dnnl_memory_desc_get_size(q) : 0;
    if (sbytes) {
        if (A->dnnl_memory_create(&s->scratch, q, st->eng, DNNL_MEMORY_NONE))
            goto done;
        if (sbytes > p->scratch_bytes)
            p->scratch_bytes = sbytes;
    }
    if (A->dnnl_memory_create(&s->src, &smd, st->eng, DNNL_MEMORY_NONE) ||
        A->dnnl_memory_create(&s->dst, &dmd, st->eng, DNNL_MEMORY_NONE))
        goto done;
    if (X->kind != X_FINAL && A->dnnl_memory_create(&s->bias, &bmd, st->eng, X->b_raw))
        goto done;
    if (s->norm_po &&
        (A->dnnl_memory_create(&s->scale, &cmd, st->eng, X->fscale) ||
         A->dnnl_memory_create(&s->shift, &cmd, st->eng, X->fshift)))
        goto done;
    if (s->skip_arg >= 0 && A->dnnl_memory_create(&s->skip, &dmd, st->eng, DNNL_MEMORY_NONE))
        goto done;
    r = STYLIZE_OK;
done:
    if (pd)
        A->dnnl_primitive_desc_destroy(pd);
    if (po)
        A->dnnl_post_ops_destroy(po);
    if (attr)
        A->dnnl_primitive_attr_destroy(attr);
    return r;
}

static plan *get_plan(dnnl_state *st, int h, int w, int fixed, int *err)
{
    plan *victim = NULL;
    st->uses++;
    for (int i = 0; i < MAX_PLANS; i++) {
        plan *p = &st->plans[i];
        if (p->valid && p->h == h && p->w == w && p->fixed == fixed) {
            p->last_use = st->uses;
            return p;
        }
        if (!victim || (victim->valid && (!p->valid || p->last_use < victim->last_use)))
            victim = p;
    }
    plan_free(st, victim);
    plan *p = victim;
    p->h = h;
    p->w = w;
    p->fixed = fixed;
    int g = plan_geometry(st->m, st->xl, st->bf16, st->cb, h, w, fixed, p);
    if (g) {
        *err = g == -1 ? STYLIZE_ERR_NOMEM : STYLIZE_ERR_BACKEND;
        plan_free(st, p);
        return NULL;
    }
    p->steps = calloc((size_t)st->m->n_layers, sizeof(*p->steps));
    if (!p->steps) {
        *err = STYLIZE_ERR_NOMEM;
        plan_free(st, p);
        return NULL;
    }
    for (int li = 0; li < st->m->n_layers; li++)
        if ((*err = step_create(st, p, li))) {
            plan_free(st, p);
            return NULL;
        }
    p->valid = 1;
    p->last_use = st->uses;
    return p;
}

/* ---------------------------------------------------------------- running */

static int grow(void **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    void *p = aligned_alloc(64, (need + 63) / 64 * 64);
    if (!p)
        return -1;
    free(*buf);
    *buf = p;
    *cap = need;
    return 0;
}

static int ensure_memory(dnnl_state *st, const plan *p)
{
    for (int i = 0; i < NSLOT; i++)
        if (grow(&st->slot[i], &st->slot_cap[i], p->slot_bytes[i]))
            return -1;
    if (grow(&st->scratch, &st->scratch_cap, p->scratch_bytes))
        return -1;
    if (p->partial_doubles > st->partial_cap) {
        void *q = realloc(st->partial, p->partial_doubles * sizeof(double));
        if (!q)
            return -1;
        st->partial = q;
        st->partial_cap = p->partial_doubles;
    }
    return 0;
}

/* New statistics for fixed mode: the per-channel scale and shift the
 * convolutions' post-ops apply (computed as in self_norm). */
static void set_fixed(dnnl_state *st, const float *stats)
{
    const sty_model *m = st->m;
    for (int li = 0; li < m->n_layers; li++) {
        const sty_layer *L = &m->layers[li];
        const xlayer *X = &st->xl[li];
        if (L->norm < 0)
            continue;
        const sty_norm *n = &m->norms[L->norm];
        const float *mean = stats + n->stats_offset, *var = mean + n->c;
        for (int c = 0; c < n->c; c++) {
            double sc = norm_scale(X, n, c, var[c]);
            for (int o = c; o < X->xout; o += X->cout) { /* the 4 phases of a sub-pixel layer */
                X->fscale[o] = (float)sc;
                X->fshift[o] = (float)(n->beta[c] - mean[c] * sc);
            }
        }
    }
    memcpy(st->fixed_stats, stats, m->stats_size * sizeof(float));
    st->have_fixed = 1;
}

static int exec_step(dnnl_state *st, plan *p, int li, int phase, void *src, void *dst, void *skip)
{
    pstep *s = &p->steps[li];
    dnnl_exec_arg_t args[8];
    int n = 0;
    A->dnnl_memory_set_data_handle(s->src, src);
    A->dnnl_memory_set_data_handle(s->dst, dst);
    args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, s->src};
    args[n++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, s->w[phase]->mem};
    args[n++] = (dnnl_exec_arg_t){DNNL_ARG_DST, s->dst};
    if (s->bias)
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, s->bias};
    if (s->scratch) {
        A->dnnl_memory_set_data_handle(s->scratch, st->scratch);
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, s->scratch};
    }
    if (s->scale) {
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, s->scale};
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_MULTIPLE_POST_OP(1) | DNNL_ARG_SRC_1, s->shift};
    }
    if (s->skip) {
        A->dnnl_memory_set_data_handle(s->skip, skip);
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_MULTIPLE_POST_OP(s->skip_arg) | DNNL_ARG_SRC_1, s->skip};
    }
    return A->dnnl_primitive_execute(s->prim, st->strm, n, args) ? STYLIZE_ERR_BACKEND : STYLIZE_OK;
}

/* The pass after a convolution whose norm / residual add / ReLU are not
 * post-ops: SELF mode statistics of t's interior (recorded), or the fixed
 * ones; then normalization, the skip, ReLU, and the side borders in
 * side_mode. A layer without a norm gets scale 1, shift 0. Returns 1 when
 * a stats_only run is done. */
static int layer_pass(dnnl_state *st, const sty_kern_ctx *k, const sty_run *r, int li, const sty_tens *t, int b,
                      const sty_tens *skip, int bskip, int side_mode)
{
    const sty_layer *L = &st->m->layers[li];
    memset(st->scale, 0, sizeof(float) * (size_t)t->Cp);
    memset(st->shift, 0, sizeof(float) * (size_t)t->Cp);
    if (L->norm < 0) {
        for (int c = 0; c < t->C; c++)
            st->scale[c] = 1;
        sty_k_apply(k, t, b, st->scale, st->shift, L->relu, skip, bskip, side_mode);
        return 0;
    }
    const sty_norm *n = &st->m->norms[L->norm];
    float mean[STY_MAX_WIDTH], var[STY_MAX_WIDTH];
    if (r->norm == STY_NORM_FIXED) { /* a fixed-mode layer that could not be fused */
        memcpy(mean, r->stats + n->stats_offset, sizeof(float) * (size_t)n->c);
        memcpy(var, r->stats + n->stats_offset + n->c, sizeof(float) * (size_t)n->c);
    } else {
        sty_k_stats(k, t, b, st->partial, mean, var);
    }
    if (r->stats && r->norm == STY_NORM_SELF) {
        memcpy(r->stats + n->stats_offset, mean, sizeof(float) * (size_t)n->c);
        memcpy(r->stats + n->stats_offset + n->c, var, sizeof(float) * (size_t)n->c);
    }
    if (r->stats_only && li == st->last_norm_layer)
        return 1;
    for (int c = 0; c < n->c; c++) {
        double sc = norm_scale(&st->xl[li], n, c, var[c]);
        st->scale[c] = (float)sc;
        st->shift[c] = (float)(n->beta[c] - mean[c] * sc);
    }
    sty_k_apply(k, t, b, st->scale, st->shift, L->relu, skip, bskip, side_mode);
    return 0;
}

static int run_plan(dnnl_state *st, plan *p, const sty_run *r)
{
    const sty_model *m = st->m;
    const sty_kern_ctx k = {st->a, st->threads};
    for (int i = 0; i < 1 + 2 * m->n_layers; i++)
        p->tens[i].p = p->slot[i] >= 0 ? st->slot[p->slot[i]] : NULL;
    double t0 = st->profile ? now_s() : 0, t1;
    int cur = 0, skip = -1, skip_b = 0, ret;
    if (r->start_layer > 0) { /* exact mode: from a cached activation (classic networks only) */
        cur = 1 + 2 * (r->start_layer - 1);
        const xlayer *P = &st->xl[r->start_layer - 1];
        sty_k_load(&k, r->act, &p->tens[cur], P->bout);
        if (P->bout_read)
            sty_k_border(&k, &p->tens[cur], P->bout, P->bout_mode);
    } else {
        sty_k_input(&k, r->in, r->h, r->w, m->space_to_depth, &p->tens[0], st->xl[0].bsrc);
    }
    if (st->profile) {
        t1 = now_s();
        st->prof_input += t1 - t0;
        t0 = t1;
        st->prof_runs++;
    }
    for (int li = r->start_layer; li < m->n_layers; li++) {
        const sty_layer *L = &m->layers[li];
        const xlayer *X = &st->xl[li];
        const sty_tens *out = &p->tens[1 + 2 * li], *tmp = &p->tens[2 + 2 * li];
        const int direct = (X->kind == X_CONV && !X->phase_in) || X->kind == X_UPSAMPLE; /* the conv writes `out` */
        if (L->save_skip) {
            skip = cur;
            skip_b = X->bsrc;
        }
        if (X->kind == X_UPSAMPLE) {
            sty_k_upsample(&k, &p->tens[cur], X->bsrc, tmp, X->bin);
            sty_k_border(&k, tmp, X->bin, STY_BORDER_REFLECT);
            if (st->profile) { /* counted with the passes (shuffle column) */
                t1 = now_s();
                st->prof_pass[3 * li] += t1 - t0;
                t0 = t1;
            }
        }
        const size_t phase_bytes = X->split || X->phase_in ? tens_bytes(tmp) : 0;
        const size_t src_phase_bytes = X->phase_in ? tens_bytes(&p->tens[cur]) : 0;
        for (int ph = 0; ph < (phase_bytes ? 4 : 1); ph++)
            if ((ret = exec_step(st, p, li, X->split ? ph : 0,
                                 X->kind == X_UPSAMPLE ? tmp->p : (char *)p->tens[cur].p + ph * src_phase_bytes,
                                 direct ? out->p : (char *)tmp->p + ph * phase_bytes,
                                 skip >= 0 ? p->tens[skip].p : NULL)))
                return ret;
        if (st->profile) {
            t1 = now_s();
            st->prof_conv[li] += t1 - t0;
            t0 = t1;
        }
        if (X->kind == X_FINAL || X->kind == X_HEAD) {
            if (X->kind == X_FINAL)
                sty_k_final(&k, tmp, X->kh, X->b_raw, r->out, r->out_h, r->out_w);
            else
                sty_k_depth_to_space(&k, tmp, m->pixel_shuffle, r->out, r->out_h, r->out_w);
            if (st->profile)
                st->prof_pass[3 * li] += now_s() - t0;
            break;
        }
        if (X->defer) { /* the next layer reads the phases; no norm, skip or border here */
            cur = 2 + 2 * li;
            continue;
        }
        if (X->kind == X_SUBPIX || X->phase_in)
            sty_k_shuffle(&k, tmp, phase_bytes, out, X->bout - 1);
        if (st->profile) {
            t1 = now_s();
            st->prof_pass[3 * li] += t1 - t0;
            t0 = t1;
        }
        if (L->norm >= 0 && r->moments && L->norm == r->stop_norm) { /* exact mode's statistics pass */
            const int hi = out->H - 2 * X->bout, wi = out->W - 2 * X->bout;
            if (r->ry0 < 0 || r->rx0 < 0 || r->ry1 > hi || r->rx1 > wi || r->ry0 >= r->ry1 || r->rx0 >= r->rx1)
                return STYLIZE_ERR_INVALID_ARG;
            if (A->dnnl_stream_wait(st->strm))
                return STYLIZE_ERR_BACKEND;
            sty_k_region_moments(&k, out, X->bout, r->ry0, r->ry1, r->rx0, r->rx1, st->partial, r->moments);
            return STYLIZE_OK;
        }
        const int side_mode = X->bout_read ? X->bout_mode : STY_BORDER_NONE;
        if (p->steps[li].pass &&
            layer_pass(st, &k, r, li, out, X->bout, L->add_skip ? &p->tens[skip] : NULL, skip_b, side_mode))
            return STYLIZE_OK; /* stats_only: done */
        if (st->profile) {
            t1 = now_s();
            st->prof_pass[3 * li + 1] += t1 - t0;
            t0 = t1;
        }
        if (X->bout_read && p->steps[li].pass) /* the pass filled the sides */
            sty_k_border_rows(&k, out, X->bout, X->bout_mode);
        else if (X->bout_read)
            sty_k_border(&k, out, X->bout, X->bout_mode);
        if (r->save && li == r->save_layer) {
            if (A->dnnl_stream_wait(st->strm))
                return STYLIZE_ERR_BACKEND;
            sty_k_store(&k, out, X->bout, r->save);
        }
        if (st->profile) {
            t1 = now_s();
            st->prof_pass[3 * li + 2] += t1 - t0;
            t0 = t1;
        }
        if (L->add_skip)
            skip = -1;
        cur = 1 + 2 * li;
    }
    return A->dnnl_stream_wait(st->strm) ? STYLIZE_ERR_BACKEND : STYLIZE_OK;
}

static int dnnl_run(void *opaque, const sty_run *r)
{
    dnnl_state *st = opaque;
    /* Exact mode's statistics passes run unfused (the plan of SELF mode,
     * reading the given statistics in layer_pass), so that the stopping
     * layer's pre-norm output exists and every layer rounds as in full mode. */
    const int fixed = r->norm == STY_NORM_FIXED && !r->moments;
    if (r->moments && (r->norm != STY_NORM_FIXED || !r->stats))
        return STYLIZE_ERR_INVALID_ARG;
    if (r->stats_only && (fixed || st->last_norm_layer < 0))
        return STYLIZE_OK;
    if (fixed && !r->stats)
        return STYLIZE_ERR_INVALID_ARG;
    threads_enter(st);
    int ret = STYLIZE_OK;
    if (fixed && (!st->have_fixed || memcmp(st->fixed_stats, r->stats, st->m->stats_size * sizeof(float))))
        set_fixed(st, r->stats);
    plan *p = get_plan(st, r->h, r->w, fixed, &ret);
    if (p && ensure_memory(st, p))
        ret = STYLIZE_ERR_NOMEM;
    else if (p)
        ret = run_plan(st, p, r);
    threads_leave(st);
    return ret;
}

/* ------------------------------------------------------------ life cycle */

static void dnnl_destroy(void *opaque)
{
    dnnl_state *st = opaque;
    if (!st)
        return;
    if (st->profile && st->prof_runs) {
        double tc = 0, tp = 0;
        fprintf(stderr, "stylize dnnl profile: %ld runs, input %.1f ms\n", st->prof_runs, 1e3 * st->prof_input);
        for (int li = 0; li < st->m->n_layers; li++) {
            const double *q = st->prof_pass + 3 * li;
            fprintf(stderr, "  layer %2d kind %d %3d->%3d k%dx%d: conv %8.1f ms; shuffle/final %6.1f, norm %6.1f, "
                    "border %5.1f ms\n", li, st->xl[li].kind, st->xl[li].cin, st->xl[li].xout, st->xl[li].kh,
                    st->xl[li].kw, 1e3 * st->prof_conv[li], 1e3 * q[0], 1e3 * q[1], 1e3 * q[2]);
            tc += st->prof_conv[li];
            tp += q[0] + q[1] + q[2];
        }
        fprintf(stderr, "  total: conv %.1f ms, passes %.1f ms\n", 1e3 * tc, 1e3 * (tp + st->prof_input));
    }
    free(st->prof_conv);
    free(st->prof_pass);
    if (st->a) {
        for (int i = 0; i < MAX_PLANS; i++)
            plan_free(st, &st->plans[i]);
        weights_free(st);
        if (st->strm)
            A->dnnl_stream_destroy(st->strm);
        if (st->eng)
            A->dnnl_engine_destroy(st->eng);
    }
    for (int li = 0; st->xl && li < st->m->n_layers; li++) {
        free(st->xl[li].w_raw);
        free(st->xl[li].b_raw);
        free(st->xl[li].fscale);
        free(st->xl[li].fshift);
        free(st->xl[li].var_floor);
    }
    free(st->xl);
    for (int i = 0; i < NSLOT; i++)
        free(st->slot[i]);
    free(st->scratch);
    free(st->partial);
    free(st->scale);
    free(st->shift);
    free(st->fixed_stats);
    free(st);
}

/* Per norm layer and channel, the variance that rounding alone can produce
 * when the layer's input is uniform (see "Rounding noise" above). Bounds of
 * |input| per channel are propagated through the network: 255 for the
 * image, |beta| + |gamma| after a norm, sum |w| * bound + |bias| after a
 * conv without one (plus the skip's bound after a residual add). */
static int noise_floors(dnnl_state *st)
{
    const sty_model *m = st->m;
    const double rel = st->bf16 ? 1.0 / 4096 : 1.0 / 65536;
    double a[STY_MAX_WIDTH], skip[STY_MAX_WIDTH], mag[STY_MAX_WIDTH];
    int na = m->convs[0].cin, subpix = 0; /* subpix: a sub-pixel layer since the last norm */
    for (int c = 0; c < na; c++)
        a[c] = 255;
    for (int li = 0; li < m->n_layers; li++) {
        const sty_layer *L = &m->layers[li];
        const sty_conv *c = &m->convs[L->conv];
        const int cig = c->cin / c->groups, cog = c->cout / c->groups, kk = c->k * c->k;
        xlayer *X = &st->xl[li];
        if (L->save_skip)
            memcpy(skip, a, sizeof(double) * (size_t)na);
        subpix |= X->kind == X_SUBPIX;
        /* mag[o]: bound of |conv output o - bias o| from the bounds of its inputs */
        for (int o = 0; o < c->cout; o++) {
            double sum = 0;
            for (int i = 0; i < cig; i++) {
                double sw = 0;
                for (int t = 0; t < kk; t++)
                    sw += fabs(c->weight[((size_t)o * cig + i) * kk + t]);
                sum += sw * a[(o / cog) * cig + i];
            }
            mag[o] = sum;
        }
        if (L->norm >= 0) {
            const sty_norm *n = &m->norms[L->norm];
            if (!(X->var_floor = malloc(sizeof(float) * (size_t)n->c)))
                return -1;
            for (int o = 0; o < c->cout; o++) {
                const int noisy = st->bf16 || subpix;
                X->var_floor[o] = noisy ? (float)(rel * mag[o] * rel * mag[o]) : 0.0f;
                a[o] = fabs(n->beta[o]) + fabs(n->gamma[o]);
            }
            subpix = 0;
        } else {
            for (int o = 0; o < c->cout; o++)
                a[o] = mag[o] + fabs(c->bias[o]);
        }
        for (int o = 0; o < c->cout; o++)
            a[o] += L->add_skip ? skip[o] : 0;
        na = c->cout;
    }
    return 0;
}

/* Scale of a norm channel, 0 for a channel that is constant up to rounding. */
static double norm_scale(const xlayer *X, const sty_norm *n, int c, float var)
{
    if (var <= X->var_floor[c])
        return 0;
    return n->gamma[c] / sqrt((double)var + NORM_EPS);
}

static int layout_from_env(int bf16, unsigned isa)
{
    const char *e = getenv("STYLIZE_DNNL_LAYOUT");
    if (e && !strcmp(e, "nhwc"))
        return 0;
    if (e && !strcmp(e, "blocked8"))
        return 8;
    if (e && !strcmp(e, "blocked16"))
        return 16;
    if (bf16)
        return 0;
    return (isa & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core ? 16 : 8;
}

static int dnnl_create(const sty_model *m, const sty_backend_config *cfg, void **out, char *err, size_t err_size)
{
    const char *why = NULL;
    *out = NULL;
    const sty_dnnl_api *a = sty_dnnl_load(&why);
    if (!a) {
        snprintf(err, err_size, "dnnl backend: %s", why);
        return STYLIZE_ERR_UNSUPPORTED;
    }
    const int has_bf16 = isa_has_bf16(a);
    if (cfg->precision == STYLIZE_PRECISION_FP16) {
        snprintf(err, err_size, "the dnnl backend computes in fp32 or bf16 (precision=fp16 needs the cuda backend)");
        return STYLIZE_ERR_UNSUPPORTED;
    }
    if (cfg->precision == STYLIZE_PRECISION_BF16 && !has_bf16) {
        snprintf(err, err_size, "precision=bf16 needs a CPU with AVX512-BF16 or AMX-BF16; this one has neither "
                 "(oneDNN ISA 0x%x): use precision=fp32 or auto", (unsigned)a->dnnl_get_effective_cpu_isa());
        return STYLIZE_ERR_UNSUPPORTED;
    }
    dnnl_state *st = calloc(1, sizeof(*st));
    if (!st)
        goto nomem;
    st->a = a;
    st->m = m;
    st->threads = cfg->threads > 0 ? cfg->threads : 1;
    st->bf16 = cfg->precision == STYLIZE_PRECISION_BF16 || (cfg->precision == STYLIZE_PRECISION_AUTO && bf16_is_faster(a));
    st->cb = layout_from_env(st->bf16, (unsigned)a->dnnl_get_effective_cpu_isa());
    st->xl = calloc((size_t)m->n_layers, sizeof(*st->xl));
    st->scale = calloc(STY_MAX_WIDTH + 16, sizeof(float));
    st->shift = calloc(STY_MAX_WIDTH + 16, sizeof(float));
    st->fixed_stats = calloc(m->stats_size ? m->stats_size : 1, sizeof(float));
    if (!st->xl || !st->scale || !st->shift || !st->fixed_stats)
        goto nomem;
    if (xl_geometry(m, st->xl))
        goto nomem;
    st->last_norm_layer = -1;
    if (getenv("STYLIZE_DNNL_PROFILE") && atoi(getenv("STYLIZE_DNNL_PROFILE")) > 0) {
        st->profile = 1;
        st->prof_conv = calloc((size_t)m->n_layers, sizeof(double));
        st->prof_pass = calloc(3 * (size_t)m->n_layers, sizeof(double));
        if (!st->prof_conv || !st->prof_pass)
            goto nomem;
    }
    for (int li = 0; li < m->n_layers; li++) {
        const sty_layer *L = &m->layers[li];
        const sty_conv *c = &m->convs[L->conv];
        xlayer *X = &st->xl[li];
        if (L->norm >= 0)
            st->last_norm_layer = li;
        X->w_raw = malloc(sizeof(float) * xl_wcount(X));
        X->b_raw = malloc(sizeof(float) * (size_t)X->xout);
        if (!X->w_raw || !X->b_raw)
            goto nomem;
        if (L->norm >= 0) {
            X->fscale = malloc(sizeof(float) * (size_t)X->xout);
            X->fshift = malloc(sizeof(float) * (size_t)X->xout);
            if (!X->fscale || !X->fshift)
                goto nomem;
        }
        if (X->kind == X_SUBPIX) {
            subpix_weights(c, X->w_raw, X->b_raw);
        } else if (X->kind == X_FINAL) {
            final_weights(c, X->w_raw);
            memcpy(X->b_raw, c->bias, 3 * sizeof(float)); /* added by sty_k_final */
        } else {
            memcpy(X->w_raw, c->weight, sizeof(float) * xl_wcount(X));
            memcpy(X->b_raw, c->bias, sizeof(float) * (size_t)X->xout);
        }
    }
    if (noise_floors(st))
        goto nomem;
    if (a->dnnl_engine_create(&st->eng, dnnl_cpu, 0) ||
        a->dnnl_stream_create(&st->strm, st->eng, dnnl_stream_default_flags)) {
        snprintf(err, err_size, "dnnl backend: cannot create a oneDNN CPU engine");
        dnnl_destroy(st);
        return STYLIZE_ERR_BACKEND;
    }
    *out = st;
    return STYLIZE_OK;
nomem:
    dnnl_destroy(st);
    snprintf(err, err_size, "dnnl backend: out of memory");
    return STYLIZE_ERR_NOMEM;
}

static size_t dnnl_workspace_bytes(const sty_model *m, int h, int w)
{
    xlayer *xl = calloc((size_t)m->n_layers, sizeof(*xl));
    plan p;
    size_t total = 0;
    memset(&p, 0, sizeof(p));
    if (!xl || xl_geometry(m, xl)) {
        free(xl);
        return (size_t)-1;
    }
    /* fp32 with 16-channel blocks: the largest of the layouts this backend uses */
    for (int fixed = 0; fixed < 2; fixed++) {
        size_t t = 0;
        if (plan_geometry(m, xl, 0, 16, h, w, fixed, &p) == 0) {
            for (int i = 0; i < NSLOT; i++)
                t += p.slot_bytes[i];
            t += p.partial_doubles * sizeof(double);
        } else {
            t = (size_t)-1;
        }
        free(p.tens);
        free(p.slot);
        memset(&p, 0, sizeof(p));
        if (t > total)
            total = t;
    }
    free(xl);
    return total;
}

const sty_backend_ops sty_backend_dnnl = {
    .name = "dnnl",
    .id = STYLIZE_BACKEND_DNNL,
    .available = dnnl_available,
    .active_precision = dnnl_active_precision,
    .create = dnnl_create,
    .destroy = dnnl_destroy,
    .run = dnnl_run,
    .workspace_bytes = dnnl_workspace_bytes,
    .exact = 1,
};
