/* Internals of the oneDNN backend (backend_dnnl*.c).
 *
 * oneDNN is reached through a table of function pointers filled by
 * dlopen("libdnnl.so.2") (backend_dnnl_load.c), so that
 *  - libstylize runs (ref backend) on machines without libdnnl installed, and
 *  - OMP_WAIT_POLICY can still be set before the OpenMP runtime that oneDNN
 *    brings starts, when the program does not already link libdnnl.
 * The same table holds the few OpenMP entry points used to size oneDNN's
 * thread team and to run this backend's own loops on that team.
 *
 * Activation tensors ("sty_tens") are stored with their reflection border
 * (the convolution's padding) included, channel-blocked: element (y, x, c)
 * of a tensor with storage H x W and channel block cb lies at
 * ((c / cb) * H + y) * W + x) * cb + c % cb. cb == Cp (all channels) is
 * NHWC, cb == 1 is planar NCHW, cb == 8 / 16 is oneDNN's nChw8c / nChw16c. */
#ifndef STYLIZE_BACKEND_DNNL_IMPL_H
#define STYLIZE_BACKEND_DNNL_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include <oneapi/dnnl/dnnl.h>

#define STY_DNNL_FUNCS(X)                                                                           \
    X(dnnl_version) X(dnnl_get_effective_cpu_isa) X(dnnl_engine_create) X(dnnl_engine_destroy)     \
    X(dnnl_stream_create) X(dnnl_stream_destroy) X(dnnl_stream_wait) X(dnnl_memory_desc_init_by_tag) \
    X(dnnl_memory_desc_get_size) X(dnnl_memory_desc_equal) X(dnnl_memory_create)                   \
    X(dnnl_memory_destroy) X(dnnl_memory_set_data_handle) X(dnnl_convolution_forward_desc_init)    \
    X(dnnl_primitive_attr_create) X(dnnl_primitive_attr_destroy) X(dnnl_primitive_attr_set_post_ops) \
    X(dnnl_primitive_attr_set_scratchpad_mode) X(dnnl_post_ops_create) X(dnnl_post_ops_destroy)    \
    X(dnnl_post_ops_append_eltwise) X(dnnl_post_ops_append_sum) X(dnnl_post_ops_append_binary)  \
    X(dnnl_primitive_desc_create)                                                                   \
    X(dnnl_primitive_desc_destroy) X(dnnl_primitive_desc_query) X(dnnl_primitive_desc_query_md)    \
    X(dnnl_primitive_create) X(dnnl_primitive_destroy) X(dnnl_primitive_execute)                   \
    X(dnnl_reorder_primitive_desc_create) X(dnnl_matmul_desc_init)

typedef struct sty_dnnl_api {
#define STY_DNNL_DECL(f) __typeof__(&f) f;
    STY_DNNL_FUNCS(STY_DNNL_DECL)
#undef STY_DNNL_DECL
    /* OpenMP (NULL when oneDNN's runtime is not OpenMP) */
    void (*omp_set_num_threads)(int);
    int (*omp_get_max_threads)(void);
    int (*omp_get_thread_num)(void);
    int (*omp_get_num_threads)(void);
    void (*GOMP_parallel)(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags);
    int wait_policy_set; /* 1: this library set OMP_WAIT_POLICY=passive before the runtime loaded */
    int runtime_preloaded; /* 1: the OpenMP runtime was already loaded (the env var came too late) */
} sty_dnnl_api;

/* Load oneDNN once (thread-safe). Returns the table or NULL (then *why says why). */
const sty_dnnl_api *sty_dnnl_load(const char **why);

/* ---- parallel loops on oneDNN's OpenMP team (or serially) ---- */

typedef void (*sty_dnnl_task_fn)(void *arg, int task);

/* Run fn(arg, t) for t in [0, n) on `threads` threads of the OpenMP team;
 * tasks are split into contiguous ranges, one per thread. */
void sty_dnnl_parallel(const sty_dnnl_api *api, int threads, int n, sty_dnnl_task_fn fn, void *arg);

/* ---- tensors and the element-wise passes (backend_dnnl_kern.c) ---- */

typedef struct sty_tens {
    void *p;
    int bf16;     /* element type: 0 fp32, 1 bf16 */
    int C, Cp, cb; /* channels, padded channels (multiple of cb), channel block */
    int nhwc;     /* 1: NHWC (cb == Cp); 0: planar (cb == 1) or oneDNN's nChw8c / nChw16c */
    int H, W;     /* storage size, borders included */
} sty_tens;

typedef struct sty_kern_ctx {
    const sty_dnnl_api *api;
    int threads;
} sty_kern_ctx;

enum { STY_BORDER_NONE = -1, STY_BORDER_REFLECT, STY_BORDER_REPLICATE };

/* in: h x w x 3 floats (RGB, rows packed) -> t with a border of b on every
 * side by mirrored-periodic reflection. S > 1 (compact networks): the image
 * extended by reflection to a multiple of S (and beyond, to t's interior
 * times S), then space-to-depth: t has 3*S*S channels, channel
 * c*S*S + dy*S + dx of pixel (y, x) holds colour c of pixel (S*y+dy, S*x+dx). */
void sty_k_input(const sty_kern_ctx *k, const float *in, int h, int w, int S, const sty_tens *t, int b);
/* Nearest x2 upsampling of src's interior (border bs) into dst's interior
 * (border bd; same channels and layout); dst's border is not written. */
void sty_k_upsample(const sty_kern_ctx *k, const sty_tens *src, int bs, const sty_tens *dst, int bd);
/* Depth-to-space of t (fp32, no border, 3*P*P channels) into out_h x out_w x 3
 * floats: out(y, x, c) = t(y/P, x/P, c*P*P + (y%P)*P + x%P). */
void sty_k_depth_to_space(const sty_kern_ctx *k, const sty_tens *t, int P, float *out, int out_h, int out_w);
/* Fill the border (b wide) of t around its interior (storage minus 2b) from
 * the interior: mirrored-periodic reflection or edge replication. */
void sty_k_border(const sty_kern_ctx *k, const sty_tens *t, int b, int mode);
/* The second half of sty_k_border: the b rows above and below, copied whole
 * (their side columns included) once every interior row has its sides. */
void sty_k_border_rows(const sty_kern_ctx *k, const sty_tens *t, int b, int mode);
/* Per-channel mean and biased variance of the interior: one pass of
 * shifted sums in double (exact for a constant map: variance 0), partial
 * sums per fixed chunk of rows reduced in order, so results do not depend
 * on the number of threads. partial: >= sty_k_stats_partial(t) doubles. */
size_t sty_k_stats_partial(const sty_tens *t);
void sty_k_stats(const sty_kern_ctx *k, const sty_tens *t, int b, double *partial, float *mean, float *var);
/* Exact mode: per channel, the mean (moments[c]) and the sum of squared
 * deviations from it (moments[C + c]) of the interior rows [ry0, ry1) and
 * columns [rx0, rx1) (interior coordinates), in double. partial as for
 * sty_k_stats. */
void sty_k_region_moments(const sty_kern_ctx *k, const sty_tens *t, int b, int ry0, int ry1, int rx0, int rx1,
                          double *partial, double *moments);
/* Exact mode's activation cache: the interior of t from / to act (NHWC
 * fp32, C channels, the interior's size); load zeroes padded channels and
 * leaves the border to sty_k_border. */
void sty_k_load(const sty_kern_ctx *k, const float *act, const sty_tens *t, int b);
void sty_k_store(const sty_kern_ctx *k, const sty_tens *t, int b, float *act);
/* Interior of t: v = v * scale[c] + shift[c]; + skip's interior (border
 * bskip, same interior size and layout) when skip != NULL; then ReLU.
 * side_mode != STY_BORDER_NONE: each row's left and right border too, filled
 * while the row is in cache (sty_k_border_rows must follow). */
void sty_k_apply(const sty_kern_ctx *k, const sty_tens *t, int b, const float *scale, const float *shift, int relu,
                 const sty_tens *skip, int bskip, int side_mode);
/* Depth-to-space of the sub-pixel deconvolution: y holds 4*C channels
 * ordered (row phase, column phase, c), or, when phase_bytes > 0, y is the
 * first of 4 tensors of C channels phase_bytes apart (same order); pixel
 * (i, j) phase (pr, pc) goes to dst pixel (2i + off + pr, 2j + off + pc).
 * Rows/columns falling outside dst are dropped. */
void sty_k_shuffle(const sty_kern_ctx *k, const sty_tens *y, size_t phase_bytes, const sty_tens *dst, int off);
/* The final conv's second half: out[y][x][c] = bias[c] + sum_kx t(y, x + kx, c * kw + kx)
 * for y < out_h, x < out_w (t is fp32 with 3 * kw channels). */
void sty_k_final(const sty_kern_ctx *k, const sty_tens *t, int kw, const float *bias, float *out, int out_h,
                 int out_w);

/* fp32 -> bf16, round to nearest even */
static inline uint16_t sty_f2bf(float f)
{
    /* round to nearest even (Inf stays Inf); a NaN stays a (quiet) NaN. One
     * select, so the passes that store bf16 vectorize to a few instructions */
    union { float f; uint32_t u; } v = {f};
    const uint32_t r = (v.u + 0x7fffu + ((v.u >> 16) & 1)) >> 16;
    return (uint16_t)((v.u & 0x7fffffffu) > 0x7f800000u ? (v.u >> 16) | 0x40 : r);
}
static inline float sty_bf2f(uint16_t h)
{
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}

#endif
