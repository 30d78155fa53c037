/* Device kernels of the CUDA backend (backend_cuda.c).
 *
 * Compiled by nvcc into a fatbinary only (no host code): the C side loads
 * it with the driver API (cuModuleLoadData) and launches the kernels by
 * name with cuLaunchKernel, so libstylize needs neither libcudart nor a
 * C++ runtime. Every kernel is extern "C" (unmangled names); the element
 * type of the activations is in the suffix: _f32, _f16, _bf16.
 *
 * Layouts (see backend_cuda_impl.h): activations are NHWC with the channel
 * count padded to Cp (zeros in the padded channels); a layer's input is
 * stored with its convolution's border included (reflection, and nearest
 * x2 upsampling before it), so cuDNN convolves with zero padding 0. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

template <typename T> __device__ __forceinline__ float to_f(T v);
template <> __device__ __forceinline__ float to_f<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_f<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

/* sty_reflect of model.h: mirrored-periodic reflection of index i on n pixels. */
__device__ __forceinline__ int reflect(int i, int n)
{
    if (i >= 0 && i < n)
        return i;
    if (n == 1)
        return 0;
    int period = 2 * (n - 1);
    i %= period;
    if (i < 0)
        i += period;
    return i >= n ? period - i : i;
}

/* Source index of position j of a padded (pad p) axis of an n-pixel map,
 * nearest x2 upsampled first when up (the reference's fill_pad_table). */
__device__ __forceinline__ int pad_src(int j, int p, int n, int up)
{
    return up ? reflect(j - p, 2 * n) / 2 : reflect(j - p, n);
}

/* ---- weights: OIHW fp32 -> KRSC (cuDNN's NHWC filter layout), padded channels zero ---- */
template <typename T>
__device__ void weights_body(const float *src, T *dst, int cout, int cin, int k, int coutp, int cinp)
{
    const size_t n = (size_t)coutp * k * k * cinp;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(e % cinp);
        size_t r = e / cinp;
        int kx = (int)(r % k);
        r /= k;
        int ky = (int)(r % k);
        int o = (int)(r / k);
        float v = o < cout && i < cin ? src[(((size_t)o * cin + i) * k + ky) * k + kx] : 0.f;
        dst[e] = from_f<T>(v);
    }
}

/* ---- input: h x w x 3 floats -> Hp x Wp x Cp with a border of p (reflection) ----
 * grid.y walks rows (strided when Hp > gridDim.y), grid.x the Wp * Cp elements of a row. */
template <typename T>
__device__ void input_body(const float *in, int h, int w, T *dst, int Hp, int Wp, int Cp, int p)
{
    const int row = Wp * Cp;
    const int e = blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= row)
        return;
    const int c = e % Cp, x = e / Cp;
    const int sx = reflect(x - p, w);
    for (int y = blockIdx.y; y < Hp; y += gridDim.y) {
        const int sy = reflect(y - p, h);
        float v = c < 3 ? in[((size_t)sy * w + sx) * 3 + c] : 0.f;
        dst[(size_t)y * row + e] = from_f<T>(v);
    }
}

/* ---- epilogue of a layer: normalization (v * scale + shift, the conv
 * bias folded into shift), ReLU, the residual skip, and the next layer's
 * border (and upsampling): writes the next layer's padded input.
 * y: oh x ow x Cp (the raw convolution). skip: NULL or the block's padded
 * input (interior at skip_off, row length skip_wp pixels). dst: Hp x Wp x Cp. */
template <typename T>
__device__ void epilogue_body(const T *y, int oh, int ow, int Cp, const float *scale, const float *shift, int relu,
                              const T *skip, int skip_wp, int skip_off, T *dst, int Hp, int Wp, int pad, int up)
{
    const int row = Wp * Cp;
    const int e = blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= row)
        return;
    const int c = e % Cp, x = e / Cp;
    const int sx = pad_src(x, pad, ow, up);
    const float s = scale[c], t = shift[c];
    for (int yy = blockIdx.y; yy < Hp; yy += gridDim.y) {
        const int sy = pad_src(yy, pad, oh, up);
        float v = to_f(y[((size_t)sy * ow + sx) * Cp + c]) * s + t;
        if (relu && v < 0.f)
            v = 0.f;
        if (skip)
            v += to_f(skip[((size_t)(sy + skip_off) * skip_wp + sx + skip_off) * Cp + c]);
        dst[(size_t)yy * row + e] = from_f<T>(v);
    }
}

/* ---- statistics: per-channel sums over an npix x Cp map (channels < C).
 * Block (32, 8): 32 channels (blockIdx.y picks the group of 32) by 8
 * pixel lanes; blockIdx.x picks ppb consecutive pixels. Pass 1 (mean ==
 * NULL): sum of v; pass 2: sum of (v - mean)^2. In double, one partial per
 * block and channel (reduced in order by sty_stats_finalize: the result
 * does not depend on the launch). */
template <typename T>
__device__ void stats_body(const T *y, long long npix, int Cp, int C, const double *mean, double *partial, int ppb)
{
    __shared__ double red[8][32];
    const int c = blockIdx.y * 32 + threadIdx.x;
    const long long p0 = (long long)blockIdx.x * ppb;
    const long long p1 = p0 + ppb < npix ? p0 + ppb : npix;
    double acc = 0;
    if (c < C) {
        const double m = mean ? mean[c] : 0;
        for (long long p = p0 + threadIdx.y; p < p1; p += 8) {
            double v = to_f(y[p * Cp + c]);
            if (mean) {
                v -= m;
                acc += v * v;
            } else {
                acc += v;
            }
        }
    }
    red[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        double s = 0;
        for (int j = 0; j < 8; j++)
            s += red[j][threadIdx.x];
        partial[(size_t)blockIdx.x * Cp + c] = s;
    }
}

/* ---- the last layer: out[y][x][c] = y[y][x][c] + bias[c] for c < 3, y < out_h, x < out_w ---- */
template <typename T>
__device__ void final_body(const T *y, int ow, int Cp, const float *bias, float *out, int out_h, int out_w)
{
    const size_t n = (size_t)out_h * out_w * 3;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        int c = (int)(e % 3);
        size_t px = e / 3;
        int x = (int)(px % out_w), yy = (int)(px / out_w);
        out[e] = to_f(y[((size_t)yy * ow + x) * Cp + c]) + bias[c];
    }
}

#define STY_INSTANTIATE(T, sfx)                                                                                  \
    extern "C" __global__ void sty_weights_##sfx(const float *src, T *dst, int cout, int cin, int k, int coutp,  \
                                                 int cinp)                                                      \
    {                                                                                                           \
        weights_body<T>(src, dst, cout, cin, k, coutp, cinp);                                                   \
    }                                                                                                           \
    extern "C" __global__ void sty_input_##sfx(const float *in, int h, int w, T *dst, int Hp, int Wp, int Cp,   \
                                               int p)                                                           \
    {                                                                                                           \
        input_body<T>(in, h, w, dst, Hp, Wp, Cp, p);                                                            \
    }                                                                                                           \
    extern "C" __global__ void sty_epilogue_##sfx(const T *y, int oh, int ow, int Cp, const float *scale,       \
                                                  const float *shift, int relu, const T *skip, int skip_wp,     \
                                                  int skip_off, T *dst, int Hp, int Wp, int pad, int up)        \
    {                                                                                                           \
        epilogue_body<T>(y, oh, ow, Cp, scale, shift, relu, skip, skip_wp, skip_off, dst, Hp, Wp, pad, up);     \
    }                                                                                                           \
    extern "C" __global__ void __launch_bounds__(256) sty_stats_##sfx(const T *y, long long npix, int Cp, int C, \
                                                                      const double *mean, double *partial,     \
                                                                      int ppb)                                  \
    {                                                                                                           \
        stats_body<T>(y, npix, Cp, C, mean, partial, ppb);                                                      \
    }                                                                                                           \
    extern "C" __global__ void sty_final_##sfx(const T *y, int ow, int Cp, const float *bias, float *out,       \
                                               int out_h, int out_w)                                            \
    {                                                                                                           \
        final_body<T>(y, ow, Cp, bias, out, out_h, out_w);                                                      \
    }

STY_INSTANTIATE(float, f32)
STY_INSTANTIATE(__half, f16)
STY_INSTANTIATE(__nv_bfloat16, bf16)

/* Reduce the partials of one layer (nblk blocks, in order). Pass 0: the
 * mean of the raw convolution into mean_d. Pass 1: the statistics as the
 * library reports them (mean of conv + bias, biased variance) into stats
 * (means at [0, C), variances at [C, 2C)), and the epilogue's scale and
 * shift, with the same formulas as the host's fixed mode (backend_cuda.c
 * fixed_scale_shift): s = gamma / sqrt(var + eps), 0 at or below the
 * rounding-noise floor; shift = (beta - mean * s) + bias * s. Padded
 * channels get scale = shift = 0. */
extern "C" __global__ void sty_stats_finalize(const double *partial, int nblk, int Cp, int C, double count, int pass,
                                              double *mean_d, float *stats, const float *bias, const float *gamma,
                                              const float *beta, const float *vfloor, float *scale, float *shift)
{
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= Cp)
        return;
    if (c >= C) {
        if (pass) {
            scale[c] = 0.f;
            shift[c] = 0.f;
        }
        return;
    }
    double s = 0;
    for (int b = 0; b < nblk; b++)
        s += partial[(size_t)b * Cp + c];
    if (!pass) {
        mean_d[c] = s / count;
        return;
    }
    const float var = (float)(s / count);
    const float mean = (float)(mean_d[c] + (double)bias[c]);
    stats[c] = mean;
    stats[C + c] = var;
    const double sc = var <= vfloor[c] ? 0.0 : (double)gamma[c] / sqrt((double)var + 1e-5);
    const float scf = (float)sc;
    const float shn = (float)((double)beta[c] - (double)mean * sc);
    scale[c] = scf;
    shift[c] = (float)((double)shn + (double)bias[c] * (double)scf);
}
