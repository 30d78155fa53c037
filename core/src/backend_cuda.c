/* CUDA backend: the TransformerNet on one NVIDIA GPU, convolutions through
 * cuDNN, everything else in this backend's own kernels
 * (backend_cuda_kernels.cu). The CUDA driver and cuDNN are loaded at run
 * time (backend_cuda_load.c): without a GPU the backend is unavailable
 * and `auto` falls back to the CPU backends.
 *
 * STATUS: compile-tested only. This file was written on a machine without
 * a GPU; see docs/CUDA.md for what has and has not been verified, and the
 * command that checks it on a GPU (make check-cuda).
 *
 * Precision: fp32 (cuDNN restricted to FMA kernels: no TF32, so the
 * results match the ref backend and PyTorch), fp16 (default) or bf16
 * (tensor cores; fp32 accumulation, activations stored in 16 bits).
 *
 * Layout: activations NHWC, channels padded to a multiple of 8 in 16-bit
 * precisions (tensor-core kernels want it; the first layer's 3 colours
 * become 8, the last layer's 3 outputs 8), zeros in the padded channels.
 * A layer's input is stored with its convolution's border (k/2 pixels of
 * mirrored-periodic reflection, sty_reflect), and for an upsampling layer
 * upsampled first, so cuDNN convolves with zero padding 0 and writes the
 * raw convolution (no bias) into a dense buffer Y. One epilogue kernel
 * then applies the instance norm (v * scale + shift, with the conv's bias
 * folded into shift), the ReLU and the residual add, and writes the next
 * layer's bordered (upsampled) input: normalization, padding and
 * upsampling are one pass over the activations.
 *
 * Instance norm. Fixed statistics (tin tiles): scale and shift per channel
 * computed on the host (fixed_scale_shift) when the statistics change and
 * uploaded; nothing is computed on the GPU but the epilogue. The weights
 * are not rescaled by the statistics (as in the dnnl backend: folding
 * gamma / sigma into the weights would cost the epilogue nothing here and
 * makes the thumbnail pass and the tiles round differently). Own
 * statistics (full, patch, the thumbnail): two reduction passes over Y on
 * the GPU (sum, then sum of squared deviations, in double; partial sums per
 * fixed block of pixels reduced in order) and a finalize kernel that
 * writes the statistics and the epilogue's scale and shift with the same
 * formulas as the host: no round trip to the host between layers.
 * Channels whose variance is within the rounding noise of a uniform input
 * are treated as constant (scale 0), as in the dnnl backend (cuDNN's
 * algorithms need not round every position alike).
 *
 * Streams and memory: one stream per context; the crop is copied into a
 * pinned host buffer and uploaded asynchronously, the result downloaded
 * asynchronously into another pinned buffer; the only synchronization is
 * at the end of a run (the backend interface returns the crop's result).
 * Plans (cuDNN descriptors and algorithms per crop size) are cached, up to
 * MAX_PLANS; device buffers grow to the largest crop and are reused.
 *
 * Environment: STYLIZE_CUDA_DEVICE=n picks the GPU (default 0);
 * STYLIZE_CUDA_FIND=1 benchmarks cuDNN's algorithms for every new crop size
 * (cudnnFindConvolutionForwardAlgorithm) instead of taking its heuristics;
 * STYLIZE_CUDA_WORKSPACE_MB caps cuDNN's workspace (default 1024). */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "backend_cuda_impl.h"
#include "stylize.h"

#define NORM_EPS 1e-5
#define MAX_PLANS 16
#define STATS_PPB 2048   /* pixels per block of the statistics kernel */
#define EPI_THREADS 256
#define MAX_GRID_Y 65535

#define A (st->a)

enum { K_WEIGHTS, K_INPUT, K_EPILOGUE, K_STATS, K_FINAL, K_COUNT };
static const char *const kernel_names[K_COUNT] = {"sty_weights", "sty_input", "sty_epilogue", "sty_stats",
                                                  "sty_final"};

typedef struct clayer {
    int k, stride, up, pad;
    int cin, cout, cinp, coutp;
    int norm, relu, save_skip, add_skip;
    CUdeviceptr w;        /* coutp x k x k x cinp, element type of the precision */
    size_t par;           /* floats into st->params: bias, gamma, beta, floor (coutp each) */
    size_t ss;            /* floats into st->ss: scale, shift (coutp each); norm layers */
    float *floor;         /* host copy of the rounding-noise floor per channel (norm layers) */
    cudnnFilterDescriptor_t wdesc;
} clayer;

typedef struct cstep {
    int H, W;             /* input interior */
    int Hp, Wp;           /* stored input (border, upsampling) */
    int oh, ow;           /* convolution output */
    int pslot;            /* which P buffer holds the input */
    cudnnTensorDescriptor_t x, y;
    cudnnConvolutionDescriptor_t conv;
    cudnnConvolutionFwdAlgo_t algo;
    size_t ws;
} cstep;

typedef struct cplan {
    int h, w, valid;
    unsigned long last_use;
    cstep *steps;
    size_t p_bytes[2], y_bytes, ws_bytes, partial_doubles;
} cplan;

typedef struct cuda_state {
    const sty_cuda_api *a;
    const sty_model *m;
    int prec;             /* STYLIZE_PRECISION_FP32 / FP16 / BF16 */
    size_t esize;         /* bytes per activation element */
    cudnnDataType_t dtype;
    CUcontext ctx;
    int ctx_retained;
    CUstream stream;
    CUmodule mod;
    CUfunction fn[K_COUNT], finalize;
    cudnnHandle_t dnn;
    clayer *L;
    int last_norm_layer;
    size_t ws_limit;
    int find;
    int any_algo;          /* STYLIZE_CUDA_ALGOS=any: 16-bit may use every algorithm (not only position-invariant) */
    int threads;           /* host threads for the copies to and from pinned memory */
    int cold;              /* this run created a plan or grew memory: left out of the profile */
    /* parameters on the device */
    CUdeviceptr params, ss, stats, mean_d;
    size_t params_floats, ss_floats;
    float *h_params, *h_ss;   /* host copies (ss: fixed mode) */
    float *fixed_stats;
    int have_fixed;           /* the device's ss holds the fixed-mode values of fixed_stats */
    /* working memory, grown on demand */
    CUdeviceptr P[2], Y, ws, partial, d_in, d_out;
    size_t P_cap[2], Y_cap, ws_cap, partial_cap, d_in_cap, d_out_cap;
    float *h_in, *h_out, *h_stats; /* pinned */
    size_t h_in_cap, h_out_cap;
    cplan plans[MAX_PLANS];
    unsigned long uses;
    /* STYLIZE_CUDA_PROFILE=1: where a run's time goes, printed at destroy */
    int profile;
    unsigned long prof_runs;
    double prof_copy_in, prof_gpu, prof_copy_out, prof_total;
    char err[256];
} cuda_state;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Copies between the caller's pageable buffers and the pinned staging
 * buffers: one thread moves ~6 GB/s, so a 4K frame's 100 MB each way cost
 * ~40 ms per frame until they were split across threads. */
typedef struct copy_part {
    void *dst;
    const void *src;
    size_t n;
} copy_part;

static void *copy_worker(void *arg)
{
    copy_part *c = arg;
    memcpy(c->dst, c->src, c->n);
    return NULL;
}

#define COPY_MAX_THREADS 16
#define COPY_MIN_PART ((size_t)4 << 20)

static void par_copy(void *dst, const void *src, size_t n, int threads)
{
    int parts = threads < COPY_MAX_THREADS ? threads : COPY_MAX_THREADS;
    if ((size_t)parts > n / COPY_MIN_PART)
        parts = (int)(n / COPY_MIN_PART);
    if (parts <= 1) {
        memcpy(dst, src, n);
        return;
    }
    copy_part part[COPY_MAX_THREADS];
    pthread_t tid[COPY_MAX_THREADS];
    int started[COPY_MAX_THREADS] = {0};
    size_t step = (n / (size_t)parts + 63) & ~(size_t)63;
    for (int i = 0; i < parts; i++) {
        size_t off = step * (size_t)i;
        part[i].dst = (char *)dst + off;
        part[i].src = (const char *)src + off;
        part[i].n = off >= n ? 0 : (n - off < step ? n - off : step);
        /* part 0 runs on this thread; a thread that cannot start is done here too */
        if (i > 0)
            started[i] = pthread_create(&tid[i], NULL, copy_worker, &part[i]) == 0;
    }
    copy_worker(&part[0]);
    for (int i = 1; i < parts; i++) {
        if (started[i])
            pthread_join(tid[i], NULL);
        else
            copy_worker(&part[i]);
    }
}

/* ------------------------------------------------------------ helpers */

static int cu_ok(cuda_state *st, CUresult r, const char *what)
{
    if (r == CUDA_SUCCESS)
        return 1;
    const char *s = NULL;
    if (A->cuGetErrorString(r, &s) != CUDA_SUCCESS)
        s = NULL;
    snprintf(st->err, sizeof(st->err), "%s: %s", what, s ? s : "CUDA error");
    return 0;
}

static int dnn_ok(cuda_state *st, cudnnStatus_t r, const char *what)
{
    if (r == CUDNN_STATUS_SUCCESS)
        return 1;
    snprintf(st->err, sizeof(st->err), "%s: %s", what, A->cudnnGetErrorString(r));
    return 0;
}

static void report(cuda_state *st)
{
    if (st->err[0]) {
        fprintf(stderr, "stylize cuda backend: %s\n", st->err);
        st->err[0] = 0;
    }
}

static int ctx_enter(cuda_state *st)
{
    return cu_ok(st, A->cuCtxPushCurrent(st->ctx), "cuCtxPushCurrent");
}

static void ctx_leave(cuda_state *st)
{
    CUcontext dummy;
    A->cuCtxPopCurrent(&dummy);
}

static int round_up(int v, int a)
{
    return (v + a - 1) / a * a;
}

static int cpad(int prec, int c)
{
    return prec == STYLIZE_PRECISION_FP32 ? c : round_up(c, 8);
}

static const char *sfx(const cuda_state *st)
{
    return st->prec == STYLIZE_PRECISION_FP32 ? "_f32" : st->prec == STYLIZE_PRECISION_FP16 ? "_f16" : "_bf16";
}

/* Free and reallocate a device buffer to at least need bytes (the stream is idle). */
static int dgrow(cuda_state *st, CUdeviceptr *p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 1;
    if (*p)
        A->cuMemFree(*p);
    *p = 0;
    *cap = 0;
    need = (need + 255) / 256 * 256;
    if (!cu_ok(st, A->cuMemAlloc(p, need), "cuMemAlloc (GPU memory)"))
        return 0;
    *cap = need;
    return 1;
}

static int hgrow(cuda_state *st, float **p, size_t *cap, size_t need_floats)
{
    if (need_floats <= *cap)
        return 1;
    if (*p)
        A->cuMemFreeHost(*p);
    *p = NULL;
    *cap = 0;
    if (!cu_ok(st, A->cuMemAllocHost((void **)p, need_floats * sizeof(float)), "cuMemAllocHost (pinned memory)"))
        return 0;
    *cap = need_floats;
    return 1;
}

static int launch(cuda_state *st, CUfunction f, unsigned gx, unsigned gy, unsigned bx, unsigned by, void **args,
                  const char *what)
{
    if (gx == 0 || gy == 0)
        return 1;
    return cu_ok(st, A->cuLaunchKernel(f, gx, gy, 1, bx, by, 1, 0, st->stream, args, NULL), what);
}

/* A grid of (row elements / 256, rows) for the row kernels (input, epilogue). */
static int launch_rows(cuda_state *st, CUfunction f, int row_elems, int rows, void **args, const char *what)
{
    unsigned gx = (unsigned)((row_elems + EPI_THREADS - 1) / EPI_THREADS);
    unsigned gy = (unsigned)(rows < MAX_GRID_Y ? rows : MAX_GRID_Y);
    return launch(st, f, gx, gy, EPI_THREADS, 1, args, what);
}

static unsigned flat_grid(size_t n)
{
    size_t g = (n + 255) / 256;
    return (unsigned)(g < 65535u * 32 ? (g ? g : 1) : 65535u * 32);
}

/* ------------------------------------------------------------ availability */

static int cuda_available(void)
{
    return sty_cuda_load(NULL) != NULL;
}

static const char *cuda_unavailable_reason(void)
{
    const char *why = NULL;
    if (sty_cuda_load(&why))
        return NULL;
    return why;
}

static stylize_precision cuda_active_precision(const void *opaque)
{
    const cuda_state *st = opaque;
    return (stylize_precision)st->prec;
}

/* ------------------------------------------------------------ statistics */

/* Per norm layer and channel, the variance that rounding alone can produce
 * when the layer's input is uniform: (r * M)^2, M = sum |w| * bound of
 * |input| (255 for the image; |beta| + |gamma| after a norm, plus the
 * skip's bound after a residual add), r by precision (the dnnl backend's
 * rule, applied to every layer since cuDNN's algorithms need not compute
 * every position in the same order). */
static void noise_floors(cuda_state *st)
{
    const sty_model *m = st->m;
    const double rel = st->prec == STYLIZE_PRECISION_FP32 ? 1.0 / 65536
                       : st->prec == STYLIZE_PRECISION_FP16 ? 1.0 / 16384 : 1.0 / 4096;
    double a[STY_MAX_WIDTH], skip[STY_MAX_WIDTH];
    int na = 3;
    for (int c = 0; c < 3; c++)
        a[c] = 255;
    for (int li = 0; li < m->n_layers; li++) {
        const sty_layer *Ly = &m->layers[li];
        const sty_conv *c = &m->convs[Ly->conv];
        if (Ly->save_skip)
            memcpy(skip, a, sizeof(double) * (size_t)na);
        if (Ly->norm < 0)
            continue;
        const sty_norm *n = &m->norms[Ly->norm];
        float *fl = st->L[li].floor;
        for (int o = 0; o < c->cout; o++) {
            double mag = 0;
            for (int i = 0; i < c->cin && i < na; i++) {
                double sw = 0;
                for (int t = 0; t < c->k * c->k; t++)
                    sw += fabs(c->weight[((size_t)o * c->cin + i) * c->k * c->k + t]);
                mag += sw * a[i];
            }
            fl[o] = (float)(rel * mag * rel * mag);
        }
        for (int o = 0; o < n->c; o++)
            a[o] = fabs(n->beta[o]) + fabs(n->gamma[o]) + (Ly->add_skip ? skip[o] : 0);
        na = n->c;
    }
}

/* Fixed mode: the epilogue's scale and shift from the given statistics,
 * with the formulas of sty_stats_finalize (backend_cuda_kernels.cu). */
static void fixed_scale_shift(cuda_state *st, const float *stats)
{
    const sty_model *m = st->m;
    for (int li = 0; li < m->n_layers; li++) {
        const clayer *X = &st->L[li];
        if (X->norm < 0)
            continue;
        const sty_norm *n = &m->norms[X->norm];
        const float *mean = stats + n->stats_offset, *var = mean + n->c;
        const float *bias = st->h_params + X->par;
        float *scale = st->h_ss + X->ss, *shift = scale + X->coutp;
        for (int c = 0; c < X->coutp; c++) {
            if (c >= n->c) {
                scale[c] = shift[c] = 0;
                continue;
            }
            double sc = var[c] <= X->floor[c] ? 0.0 : (double)n->gamma[c] / sqrt((double)var[c] + NORM_EPS);
            float scf = (float)sc;
            float shn = (float)((double)n->beta[c] - (double)mean[c] * sc);
            scale[c] = scf;
            shift[c] = (float)((double)shn + (double)bias[c] * (double)scf);
        }
    }
    memcpy(st->fixed_stats, stats, m->stats_size * sizeof(float));
}

/* ------------------------------------------------------------ plans */

static void plan_free(cuda_state *st, cplan *p)
{
    if (p->steps)
        for (int li = 0; li < st->m->n_layers; li++) {
            cstep *s = &p->steps[li];
            if (s->x)
                A->cudnnDestroyTensorDescriptor(s->x);
            if (s->y)
                A->cudnnDestroyTensorDescriptor(s->y);
            if (s->conv)
                A->cudnnDestroyConvolutionDescriptor(s->conv);
        }
    free(p->steps);
    memset(p, 0, sizeof(*p));
}

/* Algorithms whose every output position is computed alike (no Winograd
 * or FFT transforms): fp32 keeps to these, so that it matches PyTorch and
 * the ref backend and a uniform input gives a uniform output. */
static int position_invariant(cudnnConvolutionFwdAlgo_t a)
{
    return a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM || a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ||
           a == CUDNN_CONVOLUTION_FWD_ALGO_GEMM;
}

static int choose_algo(cuda_state *st, const clayer *X, cstep *s)
{
    const int fp32 = st->prec == STYLIZE_PRECISION_FP32;
    int max = 0;
    if (!dnn_ok(st, A->cudnnGetConvolutionForwardAlgorithmMaxCount(st->dnn, &max), "cuDNN algorithm count"))
        return 0;
    if (max < 1)
        max = 1;
    if (max > 32)
        max = 32;
    cudnnConvolutionFwdAlgoPerf_t perf[32];
    int n = 0;
    if (st->find && A->cudnnFindConvolutionForwardAlgorithm(st->dnn, s->x, X->wdesc, s->conv, s->y, max, &n, perf) ==
                        CUDNN_STATUS_SUCCESS) {
        /* measured, fastest first */
    } else if (!dnn_ok(st, A->cudnnGetConvolutionForwardAlgorithm_v7(st->dnn, s->x, X->wdesc, s->conv, s->y, max,
                                                                       &n, perf),
                       "cudnnGetConvolutionForwardAlgorithm_v7")) {
        return 0;
    }
    int pick = -1;
    for (int pass = 0; pass < 2 && pick < 0; pass++)
        for (int i = 0; i < n && pick < 0; i++) {
            if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > st->ws_limit)
                continue;
            if (fp32 && perf[i].mathType != CUDNN_FMA_MATH && perf[i].mathType != CUDNN_DEFAULT_MATH)
                continue; /* TF32 tensor ops: fp32 means fp32 */
            /* position-invariant algorithms compute every output alike, so
                 * that tiles and the whole frame round alike (Winograd and FFT
                 * kernels round by position within their tiles) */
            if ((fp32 || !st->any_algo) && pass == 0 && !position_invariant(perf[i].algo))
                continue;
            pick = i;
        }
    if (pick < 0) {
        snprintf(st->err, sizeof(st->err), "cuDNN has no algorithm for a %d->%d %dx%d convolution (stride %d) in %s",
                 X->cinp, X->coutp, X->k, X->k, X->stride, stylize_precision_name((stylize_precision)st->prec));
        return 0;
    }
    s->algo = perf[pick].algo;
    cudnnMathType_t mt = fp32 ? CUDNN_FMA_MATH : perf[pick].mathType;
    if (!dnn_ok(st, A->cudnnSetConvolutionMathType(s->conv, mt), "cudnnSetConvolutionMathType"))
        return 0;
    if (!dnn_ok(st, A->cudnnGetConvolutionForwardWorkspaceSize(st->dnn, s->x, X->wdesc, s->conv, s->y, s->algo,
                                                                &s->ws),
                "cudnnGetConvolutionForwardWorkspaceSize"))
        return 0;
    return 1;
}

/* Geometry of every layer for an h x w crop (no CUDA objects); returns 0
 * when the model cannot be run this way (a skip of another shape). */
static int plan_geometry(const sty_model *m, const clayer *L, int prec, int h, int w, cstep *steps, size_t *p_bytes,
                         size_t *y_bytes, size_t *partial_doubles, size_t esize)
{
    int H = h, W = w, cur = 0, skip = -1, skip_li = -1;
    p_bytes[0] = p_bytes[1] = *y_bytes = *partial_doubles = 0;
    for (int li = 0; li < m->n_layers; li++) {
        const clayer *X = &L[li];
        const sty_conv *c = &m->convs[m->layers[li].conv];
        cstep *s = &steps[li];
        s->H = H;
        s->W = W;
        s->Hp = (X->up ? 2 * H : H) + 2 * X->pad;
        s->Wp = (X->up ? 2 * W : W) + 2 * X->pad;
        s->oh = sty_conv_out_size(c, H);
        s->ow = sty_conv_out_size(c, W);
        if ((s->Hp - X->k) / X->stride + 1 != s->oh || (s->Wp - X->k) / X->stride + 1 != s->ow)
            return 0;
        if (X->save_skip) {
            skip = cur;
            skip_li = li;
        }
        s->pslot = cur;
        size_t pb = (size_t)s->Hp * s->Wp * X->cinp * esize;
        if (pb > p_bytes[cur])
            p_bytes[cur] = pb;
        size_t yb = (size_t)s->oh * s->ow * X->coutp * esize;
        if (yb > *y_bytes)
            *y_bytes = yb;
        if (X->norm >= 0) {
            size_t blocks = ((size_t)s->oh * s->ow + STATS_PPB - 1) / STATS_PPB;
            if (blocks * X->coutp > *partial_doubles)
                *partial_doubles = blocks * X->coutp;
        }
        if (X->add_skip) {
            const cstep *ss = &steps[skip_li];
            if (skip < 0 || L[skip_li].up || ss->H != s->oh || ss->W != s->ow || L[skip_li].cinp != X->coutp)
                return 0;
        }
        /* the next layer's input: not where the skip lives (it is read by this epilogue) */
        if (li + 1 < m->n_layers)
            cur = skip >= 0 ? 1 - skip : cur;
        if (X->add_skip)
            skip = -1;
        H = s->oh;
        W = s->ow;
    }
    (void)prec;
    return 1;
}

static cplan *get_plan(cuda_state *st, int h, int w)
{
    cplan *victim = NULL;
    st->uses++;
    for (int i = 0; i < MAX_PLANS; i++) {
        cplan *p = &st->plans[i];
        if (p->valid && p->h == h && p->w == w) {
            p->last_use = st->uses;
            return p;
        }
        if (!victim || (victim->valid && (!p->valid || p->last_use < victim->last_use)))
            victim = p;
    }
    plan_free(st, victim);
    st->cold = 1;
    cplan *p = victim;
    const sty_model *m = st->m;
    p->h = h;
    p->w = w;
    p->steps = calloc((size_t)m->n_layers, sizeof(*p->steps));
    if (!p->steps) {
        snprintf(st->err, sizeof(st->err), "out of memory");
        return NULL;
    }
    if (!plan_geometry(m, st->L, st->prec, h, w, p->steps, p->p_bytes, &p->y_bytes, &p->partial_doubles,
                       st->esize)) {
        snprintf(st->err, sizeof(st->err), "the model's layers do not chain for a %dx%d crop", w, h);
        plan_free(st, p);
        return NULL;
    }
    p->ws_bytes = 0;
    for (int li = 0; li < m->n_layers; li++) {
        const clayer *X = &st->L[li];
        cstep *s = &p->steps[li];
        int n, c, hh, ww;
        if (!dnn_ok(st, A->cudnnCreateTensorDescriptor(&s->x), "cudnnCreateTensorDescriptor") ||
            !dnn_ok(st, A->cudnnCreateTensorDescriptor(&s->y), "cudnnCreateTensorDescriptor") ||
            !dnn_ok(st, A->cudnnCreateConvolutionDescriptor(&s->conv), "cudnnCreateConvolutionDescriptor") ||
            !dnn_ok(st, A->cudnnSetTensor4dDescriptor(s->x, CUDNN_TENSOR_NHWC, st->dtype, 1, X->cinp, s->Hp, s->Wp),
                    "cudnnSetTensor4dDescriptor (input)") ||
            !dnn_ok(st, A->cudnnSetTensor4dDescriptor(s->y, CUDNN_TENSOR_NHWC, st->dtype, 1, X->coutp, s->oh, s->ow),
                    "cudnnSetTensor4dDescriptor (output)") ||
            !dnn_ok(st, A->cudnnSetConvolution2dDescriptor(s->conv, 0, 0, X->stride, X->stride, 1, 1,
                                                           CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
                    "cudnnSetConvolution2dDescriptor") ||
            !dnn_ok(st, A->cudnnSetConvolutionMathType(s->conv, st->prec == STYLIZE_PRECISION_FP32 ? CUDNN_FMA_MATH
                                                                                                  : CUDNN_TENSOR_OP_MATH),
                    "cudnnSetConvolutionMathType") ||
            !dnn_ok(st, A->cudnnGetConvolution2dForwardOutputDim(s->conv, s->x, X->wdesc, &n, &c, &hh, &ww),
                    "cudnnGetConvolution2dForwardOutputDim")) {
            plan_free(st, p);
            return NULL;
        }
        if (n != 1 || c != X->coutp || hh != s->oh || ww != s->ow) {
            snprintf(st->err, sizeof(st->err), "cuDNN's output size %dx%d differs from the model's %dx%d", ww, hh,
                     s->ow, s->oh);
            plan_free(st, p);
            return NULL;
        }
        if (!choose_algo(st, X, s)) {
            plan_free(st, p);
            return NULL;
        }
        if (s->ws > p->ws_bytes)
            p->ws_bytes = s->ws;
    }
    p->valid = 1;
    p->last_use = st->uses;
    return p;
}

static int ensure_memory(cuda_state *st, const cplan *p, const sty_run *r)
{
    const size_t in_floats = (size_t)r->h * r->w * 3;
    const size_t out_floats = r->stats_only ? 1 : (size_t)(r->out_h > 0 ? r->out_h : 1) * (r->out_w > 0 ? r->out_w : 1) * 3;
    int need_sync = 0;
    for (int i = 0; i < 2; i++)
        need_sync |= p->p_bytes[i] > st->P_cap[i];
    need_sync |= p->y_bytes > st->Y_cap || p->ws_bytes > st->ws_cap || p->partial_doubles * 8 > st->partial_cap ||
                 in_floats * 4 > st->d_in_cap || out_floats * 4 > st->d_out_cap || in_floats > st->h_in_cap ||
                 out_floats > st->h_out_cap;
    if (!need_sync)
        return 1;
    st->cold = 1;
    if (!cu_ok(st, A->cuStreamSynchronize(st->stream), "cuStreamSynchronize"))
        return 0;
    for (int i = 0; i < 2; i++)
        if (!dgrow(st, &st->P[i], &st->P_cap[i], p->p_bytes[i]))
            return 0;
    return dgrow(st, &st->Y, &st->Y_cap, p->y_bytes) && dgrow(st, &st->ws, &st->ws_cap, p->ws_bytes) &&
           dgrow(st, &st->partial, &st->partial_cap, p->partial_doubles * 8) &&
           dgrow(st, &st->d_in, &st->d_in_cap, in_floats * 4) && dgrow(st, &st->d_out, &st->d_out_cap, out_floats * 4) &&
           hgrow(st, &st->h_in, &st->h_in_cap, in_floats) && hgrow(st, &st->h_out, &st->h_out_cap, out_floats);
}

/* ------------------------------------------------------------ running */

/* Own statistics of layer li's convolution output (in st->Y): into the
 * device statistics vector and the layer's scale / shift. */
static int self_stats(cuda_state *st, int li, const cstep *s)
{
    const clayer *X = &st->L[li];
    const sty_norm *n = &st->m->norms[X->norm];
    long long npix = (long long)s->oh * s->ow;
    int Cp = X->coutp, C = n->c;
    int nblk = (int)((npix + STATS_PPB - 1) / STATS_PPB);
    int ppb = STATS_PPB;
    double count = (double)npix;
    CUdeviceptr none = 0;
    CUdeviceptr stats = st->stats + n->stats_offset * sizeof(float);
    CUdeviceptr bias = st->params + (X->par) * sizeof(float);
    CUdeviceptr gamma = bias + (size_t)X->coutp * sizeof(float), beta = gamma + (size_t)X->coutp * sizeof(float);
    CUdeviceptr vfloor = beta + (size_t)X->coutp * sizeof(float);
    CUdeviceptr scale = st->ss + X->ss * sizeof(float), shift = scale + (size_t)X->coutp * sizeof(float);
    for (int pass = 0; pass < 2; pass++) {
        CUdeviceptr mean = pass ? st->mean_d : none;
        void *sargs[] = {&st->Y, &npix, &Cp, &C, &mean, &st->partial, &ppb};
        if (!launch(st, st->fn[K_STATS], (unsigned)nblk, (unsigned)((C + 31) / 32), 32, 8, sargs, "statistics kernel"))
            return 0;
        void *fargs[] = {&st->partial, &nblk, &Cp, &C, &count, &pass, &st->mean_d, &stats,
                         &bias, &gamma, &beta, &vfloor, &scale, &shift};
        if (!launch(st, st->finalize, (unsigned)((Cp + 127) / 128), 1, 128, 1, fargs, "statistics finalize kernel"))
            return 0;
    }
    return 1;
}

static int run_plan(cuda_state *st, cplan *p, const sty_run *r)
{
    const sty_model *m = st->m;
    const int self = r->norm == STY_NORM_SELF;
    const float one = 1.f, zero = 0.f;
    size_t in_bytes = sizeof(float) * 3 * (size_t)r->h * r->w;
    double t0 = st->profile ? now_ms() : 0;
    par_copy(st->h_in, r->in, in_bytes, st->threads);
    double t1 = st->profile ? now_ms() : 0;
    if (!cu_ok(st, A->cuMemcpyHtoDAsync(st->d_in, st->h_in, in_bytes, st->stream), "upload"))
        return STYLIZE_ERR_BACKEND;
    {
        const clayer *X = &st->L[0];
        const cstep *s = &p->steps[0];
        CUdeviceptr dst = st->P[s->pslot];
        int h = r->h, w = r->w, Hp = s->Hp, Wp = s->Wp, Cp = X->cinp, pad = X->pad;
        void *args[] = {&st->d_in, &h, &w, &dst, &Hp, &Wp, &Cp, &pad};
        if (!launch_rows(st, st->fn[K_INPUT], Wp * Cp, Hp, args, "input kernel"))
            return STYLIZE_ERR_BACKEND;
    }
    int skip_li = -1, done_stats = 0;
    for (int li = 0; li < m->n_layers; li++) {
        const clayer *X = &st->L[li];
        const cstep *s = &p->steps[li];
        const int last = li == m->n_layers - 1;
        if (X->save_skip)
            skip_li = li;
        if (!dnn_ok(st, A->cudnnConvolutionForward(st->dnn, &one, s->x, (const void *)(uintptr_t)st->P[s->pslot],
                                                   X->wdesc, (const void *)(uintptr_t)X->w, s->conv, s->algo,
                                                   (void *)(uintptr_t)st->ws, s->ws, &zero, s->y,
                                                   (void *)(uintptr_t)st->Y),
                    "cudnnConvolutionForward"))
            return STYLIZE_ERR_BACKEND;
        if (last) {
            if (r->stats_only)
                break;
            CUdeviceptr bias = st->params + X->par * sizeof(float);
            int ow = s->ow, Cp = X->coutp, out_h = r->out_h < s->oh ? r->out_h : s->oh,
                out_w = r->out_w < s->ow ? r->out_w : s->ow;
            if (out_h != r->out_h || out_w != r->out_w) {
                snprintf(st->err, sizeof(st->err), "output block %dx%d larger than the network's %dx%d", r->out_w,
                         r->out_h, s->ow, s->oh);
                return STYLIZE_ERR_INVALID_ARG;
            }
            void *args[] = {&st->Y, &ow, &Cp, &bias, &st->d_out, &out_h, &out_w};
            size_t n = (size_t)out_h * out_w * 3;
            if (!launch(st, st->fn[K_FINAL], flat_grid(n), 1, 256, 1, args, "final kernel") ||
                !cu_ok(st, A->cuMemcpyDtoHAsync(st->h_out, st->d_out, n * sizeof(float), st->stream), "download"))
                return STYLIZE_ERR_BACKEND;
            break;
        }
        if (X->norm >= 0 && self) {
            if (!self_stats(st, li, s))
                return STYLIZE_ERR_BACKEND;
            if (r->stats_only && li == st->last_norm_layer) {
                done_stats = 1;
                break;
            }
        }
        /* epilogue: normalization, ReLU, skip, and the next layer's padded input */
        const clayer *N = &st->L[li + 1];
        const cstep *ns = &p->steps[li + 1];
        CUdeviceptr scale = st->ss + X->ss * sizeof(float), shift = scale + (size_t)X->coutp * sizeof(float);
        CUdeviceptr skip = 0, dst = st->P[ns->pslot];
        int skip_wp = 0, skip_off = 0;
        if (X->add_skip) {
            const cstep *ks = &p->steps[skip_li];
            skip = st->P[ks->pslot];
            skip_wp = ks->Wp;
            skip_off = st->L[skip_li].pad;
            skip_li = -1;
        }
        int oh = s->oh, ow = s->ow, Cp = X->coutp, relu = X->relu, Hp = ns->Hp, Wp = ns->Wp, pad = N->pad,
            up = N->up;
        void *args[] = {&st->Y, &oh, &ow, &Cp, &scale, &shift, &relu, &skip, &skip_wp, &skip_off, &dst, &Hp, &Wp,
                        &pad, &up};
        if (!launch_rows(st, st->fn[K_EPILOGUE], Wp * Cp, Hp, args, "epilogue kernel"))
            return STYLIZE_ERR_BACKEND;
    }
    if (self && r->stats &&
        !cu_ok(st, A->cuMemcpyDtoHAsync(st->h_stats, st->stats, m->stats_size * sizeof(float), st->stream),
               "statistics download"))
        return STYLIZE_ERR_BACKEND;
    if (!cu_ok(st, A->cuStreamSynchronize(st->stream), "GPU execution"))
        return STYLIZE_ERR_BACKEND;
    double t2 = st->profile ? now_ms() : 0;
    if (self && r->stats)
        memcpy(r->stats, st->h_stats, m->stats_size * sizeof(float));
    if (!r->stats_only && !done_stats)
        par_copy(r->out, st->h_out, sizeof(float) * 3 * (size_t)r->out_h * r->out_w, st->threads);
    if (st->profile && !st->cold) {
        st->prof_copy_in += t1 - t0;
        st->prof_gpu += t2 - t1;
        st->prof_copy_out += now_ms() - t2;
    }
    return STYLIZE_OK;
}

static int cuda_run(void *opaque, const sty_run *r)
{
    cuda_state *st = opaque;
    const int fixed = r->norm == STY_NORM_FIXED;
    if (fixed && r->stats_only)
        return STYLIZE_OK;
    if (fixed && !r->stats)
        return STYLIZE_ERR_INVALID_ARG;
    if (!ctx_enter(st)) {
        report(st);
        return STYLIZE_ERR_BACKEND;
    }
    int ret = STYLIZE_OK;
    double t_run = st->profile ? now_ms() : 0;
    st->cold = 0;
    if (fixed && (!st->have_fixed || memcmp(st->fixed_stats, r->stats, st->m->stats_size * sizeof(float)))) {
        /* the previous upload of h_ss must be done before h_ss changes */
        if (!cu_ok(st, A->cuStreamSynchronize(st->stream), "cuStreamSynchronize")) {
            ret = STYLIZE_ERR_BACKEND;
            goto out;
        }
        fixed_scale_shift(st, r->stats);
        if (!cu_ok(st, A->cuMemcpyHtoDAsync(st->ss, st->h_ss, st->ss_floats * sizeof(float), st->stream),
                   "statistics upload")) {
            ret = STYLIZE_ERR_BACKEND;
            goto out;
        }
        st->have_fixed = 1;
    }
    if (!fixed)
        st->have_fixed = 0; /* the self-normalized run overwrites the device's scale / shift */
    cplan *p = get_plan(st, r->h, r->w);
    if (!p) {
        ret = STYLIZE_ERR_BACKEND;
        goto out;
    }
    if (!ensure_memory(st, p, r)) {
        ret = STYLIZE_ERR_NOMEM;
        goto out;
    }
    ret = run_plan(st, p, r);
out:
    if (st->profile && !st->cold && ret == STYLIZE_OK) {
        st->prof_runs++;
        st->prof_total += now_ms() - t_run;
    }
    if (ret != STYLIZE_OK) {
        st->have_fixed = 0;
        /* leave the stream idle for the next run */
        A->cuStreamSynchronize(st->stream);
    }
    report(st);
    ctx_leave(st);
    return ret;
}

/* ------------------------------------------------------------ life cycle */

static void cuda_destroy(void *opaque)
{
    cuda_state *st = opaque;
    if (!st)
        return;
    if (st->profile && st->prof_runs)
        fprintf(stderr, "stylize cuda profile: %lu warm runs, per run %.2f ms: host copy into pinned memory %.2f, "
                "GPU (upload, network, download) %.2f, host copy out %.2f\n", st->prof_runs,
                st->prof_total / st->prof_runs, st->prof_copy_in / st->prof_runs, st->prof_gpu / st->prof_runs,
                st->prof_copy_out / st->prof_runs);
    if (st->a && st->ctx && ctx_enter(st)) {
        if (st->stream)
            A->cuStreamSynchronize(st->stream);
        for (int i = 0; i < MAX_PLANS; i++)
            plan_free(st, &st->plans[i]);
        for (int li = 0; st->L && li < st->m->n_layers; li++) {
            if (st->L[li].w)
                A->cuMemFree(st->L[li].w);
            if (st->L[li].wdesc)
                A->cudnnDestroyFilterDescriptor(st->L[li].wdesc);
        }
        CUdeviceptr dev[] = {st->params, st->ss, st->stats, st->mean_d, st->P[0], st->P[1], st->Y,
                             st->ws, st->partial, st->d_in, st->d_out};
        for (size_t i = 0; i < sizeof(dev) / sizeof(dev[0]); i++)
            if (dev[i])
                A->cuMemFree(dev[i]);
        float *host[] = {st->h_in, st->h_out, st->h_stats};
        for (size_t i = 0; i < sizeof(host) / sizeof(host[0]); i++)
            if (host[i])
                A->cuMemFreeHost(host[i]);
        if (st->dnn)
            A->cudnnDestroy(st->dnn);
        if (st->mod)
            A->cuModuleUnload(st->mod);
        if (st->stream)
            A->cuStreamDestroy(st->stream);
        ctx_leave(st);
    }
    if (st->ctx_retained)
        A->cuDevicePrimaryCtxRelease(A->device);
    for (int li = 0; st->L && li < st->m->n_layers; li++)
        free(st->L[li].floor);
    free(st->L);
    free(st->h_params);
    free(st->h_ss);
    free(st->fixed_stats);
    free(st);
}

/* Upload the weights of every layer (converted on the GPU) and the
 * per-channel parameters. */
static int upload_model(cuda_state *st)
{
    const sty_model *m = st->m;
    CUdeviceptr tmp = 0;
    size_t tmp_cap = 0;
    int ok = 1;
    for (int li = 0; ok && li < m->n_layers; li++) {
        clayer *X = &st->L[li];
        const sty_conv *c = &m->convs[m->layers[li].conv];
        size_t raw = sizeof(float) * (size_t)c->cout * c->cin * c->k * c->k;
        size_t n = (size_t)X->coutp * X->k * X->k * X->cinp;
        ok = dgrow(st, &tmp, &tmp_cap, raw) &&
             cu_ok(st, A->cuMemAlloc(&X->w, n * st->esize), "cuMemAlloc (weights)") &&
             cu_ok(st, A->cuMemcpyHtoDAsync(tmp, c->weight, raw, st->stream), "weights upload");
        if (ok) {
            int cout = c->cout, cin = c->cin, k = c->k, coutp = X->coutp, cinp = X->cinp;
            void *args[] = {&tmp, &X->w, &cout, &cin, &k, &coutp, &cinp};
            ok = launch(st, st->fn[K_WEIGHTS], flat_grid(n), 1, 256, 1, args, "weights kernel") &&
                 cu_ok(st, A->cuStreamSynchronize(st->stream), "weights conversion");
        }
        ok = ok && dnn_ok(st, A->cudnnCreateFilterDescriptor(&X->wdesc), "cudnnCreateFilterDescriptor") &&
             dnn_ok(st, A->cudnnSetFilter4dDescriptor(X->wdesc, st->dtype, CUDNN_TENSOR_NHWC, X->coutp, X->cinp, X->k,
                                                      X->k),
                    "cudnnSetFilter4dDescriptor");
    }
    if (tmp)
        A->cuMemFree(tmp);
    if (!ok)
        return 0;
    /* bias, gamma, beta, floor per layer */
    for (int li = 0; li < m->n_layers; li++) {
        const clayer *X = &st->L[li];
        const sty_conv *c = &m->convs[m->layers[li].conv];
        float *b = st->h_params + X->par, *g = b + X->coutp, *be = g + X->coutp, *fl = be + X->coutp;
        for (int o = 0; o < X->coutp; o++) {
            b[o] = o < c->cout ? c->bias[o] : 0;
            g[o] = be[o] = fl[o] = 0;
        }
        if (X->norm >= 0) {
            const sty_norm *n = &m->norms[X->norm];
            for (int o = 0; o < n->c; o++) {
                g[o] = n->gamma[o];
                be[o] = n->beta[o];
                fl[o] = X->floor[o];
            }
        }
    }
    return cu_ok(st, A->cuMemAlloc(&st->params, st->params_floats * sizeof(float)), "cuMemAlloc (parameters)") &&
           cu_ok(st, A->cuMemAlloc(&st->ss, st->ss_floats * sizeof(float)), "cuMemAlloc (normalization)") &&
           cu_ok(st, A->cuMemAlloc(&st->stats, (m->stats_size ? m->stats_size : 1) * sizeof(float)),
                 "cuMemAlloc (statistics)") &&
           cu_ok(st, A->cuMemAlloc(&st->mean_d, (STY_MAX_WIDTH + 8) * sizeof(double)), "cuMemAlloc (statistics)") &&
           cu_ok(st, A->cuMemAllocHost((void **)&st->h_stats, (m->stats_size ? m->stats_size : 1) * sizeof(float)),
                 "cuMemAllocHost") &&
           cu_ok(st, A->cuMemcpyHtoDAsync(st->params, st->h_params, st->params_floats * sizeof(float), st->stream),
                 "parameters upload") &&
           cu_ok(st, A->cuStreamSynchronize(st->stream), "parameters upload");
}

static const char *cuda_model_unsupported(const sty_model *m)
{
    if (m->arch != STY_ARCH_CLASSIC)
        return "backend 'cuda' does not run compact models yet (use backend=dnnl or ref)";
    return NULL;
}

static int cuda_create(const sty_model *m, const sty_backend_config *cfg, void **out, char *err, size_t err_size)
{
    const char *why = cuda_model_unsupported(m);
    *out = NULL;
    if (why) {
        snprintf(err, err_size, "%s", why);
        return STYLIZE_ERR_UNSUPPORTED;
    }
    const sty_cuda_api *a = sty_cuda_load(&why);
    if (!a) {
        snprintf(err, err_size, "cuda backend: %s", why);
        return STYLIZE_ERR_UNSUPPORTED;
    }
    cuda_state *st = calloc(1, sizeof(*st));
    if (!st) {
        snprintf(err, err_size, "cuda backend: out of memory");
        return STYLIZE_ERR_NOMEM;
    }
    st->a = a;
    st->m = m;
    switch (cfg->precision) {
    case STYLIZE_PRECISION_FP32:
        st->prec = STYLIZE_PRECISION_FP32, st->esize = 4, st->dtype = CUDNN_DATA_FLOAT;
        break;
    case STYLIZE_PRECISION_BF16:
        st->prec = STYLIZE_PRECISION_BF16, st->esize = 2, st->dtype = CUDNN_DATA_BFLOAT16;
        break;
    default: /* AUTO, FP16 */
        st->prec = STYLIZE_PRECISION_FP16, st->esize = 2, st->dtype = CUDNN_DATA_HALF;
        break;
    }
    const char *e = getenv("STYLIZE_CUDA_FIND");
    st->find = e && atoi(e) > 0;
    e = getenv("STYLIZE_CUDA_PROFILE");
    st->profile = e && atoi(e) > 0;
    e = getenv("STYLIZE_CUDA_ALGOS");
    st->any_algo = e && !strcmp(e, "any");
    st->threads = cfg->threads > 0 ? cfg->threads : 1;
    e = getenv("STYLIZE_CUDA_WORKSPACE_MB");
    st->ws_limit = (size_t)(e && atol(e) > 0 ? atol(e) : 1024) << 20;
    int ret = STYLIZE_ERR_BACKEND;

    /* layers */
    st->L = calloc((size_t)m->n_layers, sizeof(*st->L));
    st->fixed_stats = calloc(m->stats_size ? m->stats_size : 1, sizeof(float));
    if (!st->L || !st->fixed_stats)
        goto nomem;
    st->last_norm_layer = -1;
    int cin_p = cpad(st->prec, 3);
    for (int li = 0; li < m->n_layers; li++) {
        const sty_layer *Ly = &m->layers[li];
        const sty_conv *c = &m->convs[Ly->conv];
        clayer *X = &st->L[li];
        X->k = c->k;
        X->stride = c->stride;
        X->up = c->upsample;
        X->pad = c->k / 2;
        X->cin = c->cin;
        X->cout = c->cout;
        X->cinp = cin_p;
        X->coutp = cpad(st->prec, c->cout);
        X->norm = Ly->norm;
        X->relu = Ly->relu;
        X->save_skip = Ly->save_skip;
        X->add_skip = Ly->add_skip;
        if (cpad(st->prec, c->cin) != cin_p) {
            snprintf(err, err_size, "cuda backend: layer %d's input channels do not chain", li);
            ret = STYLIZE_ERR_UNSUPPORTED;
            goto fail;
        }
        cin_p = X->coutp;
        X->par = st->params_floats;
        st->params_floats += 4 * (size_t)X->coutp;
        if (Ly->norm >= 0) {
            st->last_norm_layer = li;
            X->ss = st->ss_floats;
            st->ss_floats += 2 * (size_t)X->coutp;
            if (!(X->floor = calloc((size_t)X->coutp, sizeof(float))))
                goto nomem;
        }
        if (li == m->n_layers - 1 && (Ly->norm >= 0 || c->cout != 3 || Ly->relu || Ly->add_skip)) {
            snprintf(err, err_size, "cuda backend: the last layer must be a plain convolution to 3 channels");
            ret = STYLIZE_ERR_UNSUPPORTED;
            goto fail;
        }
        if (li < m->n_layers - 1 && Ly->norm < 0) {
            snprintf(err, err_size, "cuda backend: every layer but the last must have an instance norm");
            ret = STYLIZE_ERR_UNSUPPORTED;
            goto fail;
        }
    }
    if (st->ss_floats == 0)
        st->ss_floats = 1;
    st->h_params = calloc(st->params_floats, sizeof(float));
    st->h_ss = calloc(st->ss_floats, sizeof(float));
    if (!st->h_params || !st->h_ss)
        goto nomem;
    noise_floors(st);

    /* device, module, stream, cuDNN */
    if (!cu_ok(st, a->cuDevicePrimaryCtxRetain(&st->ctx, a->device), "cuDevicePrimaryCtxRetain"))
        goto cuda_fail;
    st->ctx_retained = 1;
    if (!ctx_enter(st))
        goto cuda_fail;
    int ok = cu_ok(st, a->cuStreamCreate(&st->stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate") &&
             cu_ok(st, a->cuModuleLoadData(&st->mod, sty_cuda_fatbin), "loading the kernels (cuModuleLoadData)");
    for (int i = 0; ok && i < K_COUNT; i++) {
        char name[64];
        snprintf(name, sizeof(name), "%s%s", kernel_names[i], sfx(st));
        ok = cu_ok(st, a->cuModuleGetFunction(&st->fn[i], st->mod, name), name);
    }
    ok = ok && cu_ok(st, a->cuModuleGetFunction(&st->finalize, st->mod, "sty_stats_finalize"), "sty_stats_finalize") &&
         dnn_ok(st, a->cudnnCreate(&st->dnn), "cudnnCreate") &&
         dnn_ok(st, a->cudnnSetStream(st->dnn, (cudaStream_t)st->stream), "cudnnSetStream") && upload_model(st);
    ctx_leave(st);
    if (!ok)
        goto cuda_fail;
    *out = st;
    return STYLIZE_OK;
cuda_fail:
    snprintf(err, err_size, "cuda backend (%s): %s", a->device_name, st->err);
    ret = STYLIZE_ERR_BACKEND;
    goto fail;
nomem:
    snprintf(err, err_size, "cuda backend: out of memory");
    ret = STYLIZE_ERR_NOMEM;
fail:
    cuda_destroy(st);
    return ret;
}

/* Device memory for an h x w crop, counted for fp32 (the largest): the two
 * padded inputs, the convolution output, the statistics partials and the
 * crop in and out; cuDNN's workspace (algorithm-dependent, at most
 * STYLIZE_CUDA_WORKSPACE_MB) is not included. */
static size_t cuda_workspace_bytes(const sty_model *m, int h, int w)
{
    clayer *L = calloc((size_t)m->n_layers, sizeof(*L));
    cstep *s = calloc((size_t)m->n_layers, sizeof(*s));
    size_t total = (size_t)-1;
    if (L && s) {
        int cin = 3;
        for (int li = 0; li < m->n_layers; li++) {
            const sty_layer *Ly = &m->layers[li];
            const sty_conv *c = &m->convs[Ly->conv];
            L[li] = (clayer){.k = c->k, .stride = c->stride, .up = c->upsample, .pad = c->k / 2, .cin = c->cin,
                             .cout = c->cout, .cinp = cin, .coutp = c->cout, .norm = Ly->norm, .relu = Ly->relu,
                             .save_skip = Ly->save_skip, .add_skip = Ly->add_skip};
            cin = c->cout;
        }
        size_t pb[2], yb, pd;
        if (plan_geometry(m, L, STYLIZE_PRECISION_FP32, h, w, s, pb, &yb, &pd, 4))
            total = pb[0] + pb[1] + yb + pd * 8 + sizeof(float) * 6 * (size_t)h * w;
    }
    free(L);
    free(s);
    return total;
}

const sty_backend_ops sty_backend_cuda = {
    .name = "cuda",
    .id = STYLIZE_BACKEND_CUDA,
    .available = cuda_available,
    .unavailable_reason = cuda_unavailable_reason,
    .active_precision = cuda_active_precision,
    .model_unsupported = cuda_model_unsupported,
    .create = cuda_create,
    .destroy = cuda_destroy,
    .run = cuda_run,
    .workspace_bytes = cuda_workspace_bytes,
};
