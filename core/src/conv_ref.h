/* Portable convolution kernels of the reference backend (NHWC activations,
 * reflection padding and nearest upsampling folded into index tables). */
#ifndef STYLIZE_CONV_REF_H
#define STYLIZE_CONV_REF_H

#define STY_CONV_BLOCK 16 /* output channels per register block; weights are padded to it */

typedef struct sty_conv_job {
    const float *in;   /* ih x iw x cin */
    int iw, cin;
    float *out;        /* rows of out_stride floats; pixel ox at out + ox*cout */
    long out_stride;
    int cout, k, stride;
    int cols;          /* output columns to compute, from 0 */
    const int *ypad;   /* input row for padded row j = oy*stride + ky */
    const int *xpad;   /* input column for padded column i = ox*stride + kx */
    const float *packed; /* blocked kernel: [k*k][cin][coutp] weights; NULL: small kernel */
    const float *bias_padded; /* [coutp] */
    int coutp;
    const float *weight; /* small kernel: PyTorch layout [cout][cin][k][k] */
    const float *bias;
    int groups;          /* > 1: the grouped kernel with gpacked */
    const float *gpacked; /* grouped kernel: [k*k][cin/groups][cout] weights */
} sty_conv_job;

/* Compute output row oy. scratch: sty_conv_scratch_floats() floats, private
 * to the calling thread. Every output pixel is computed with the same
 * sequence of operations wherever it lies, so results do not depend on
 * tiling. */
void sty_conv_row(const sty_conv_job *job, int oy, float *scratch);
long sty_conv_scratch_floats(int cin, int k, int stride, int cols);

/* Repack PyTorch [cout][cin/groups][k][k] weights for the grouped kernel:
 * [k*k][cin/groups][cout]. */
void sty_conv_pack_grouped(const float *weight, int cout, int cin_g, int k, float *gpacked);

/* Repack PyTorch [cout][cin][k][k] weights for the blocked kernel. */
void sty_conv_pack(const float *weight, const float *bias, int cout, int cin, int k, int coutp,
                   float *packed, float *bias_padded);

#endif
