/* TransformerNet model: weights loaded from a validated safetensors file,
 * and the layer sequence every backend executes. */
#ifndef STYLIZE_MODEL_H
#define STYLIZE_MODEL_H

#include <stddef.h>

#define STY_MAX_WIDTH 512   /* channel widths beyond this are rejected */
#define STY_MAX_RES_BLOCKS 64
#define STY_MAX_KERNEL 15
#define STY_MAX_LAYERS 256  /* compact networks: entries of the layer list */

enum sty_arch {
    STY_ARCH_CLASSIC, /* TransformerNet, recognised from its tensor names */
    STY_ARCH_COMPACT, /* layer list described in the file (docs/COMPACT.md) */
};

typedef struct sty_conv {
    int cin, cout, k;
    int groups;    /* divides cin and cout; cin == cout == groups: depthwise */
    int stride;    /* 1 or 2 */
    int upsample;  /* 1: nearest x2 upsampling of the input before padding */
    const float *weight; /* [cout][cin/groups][k][k], as PyTorch stores it */
    const float *bias;   /* [cout] */
} sty_conv;

typedef struct sty_norm {
    int c;
    const float *gamma, *beta; /* instance-norm affine weight and bias */
    size_t stats_offset;       /* floats into the statistics vector: means, then variances */
} sty_norm;

/* One step of the network: conv, then optionally instance norm, the
 * residual add, and ReLU, in that order. */
typedef struct sty_layer {
    int conv;       /* index into model->convs */
    int norm;       /* index into model->norms, or -1 */
    int relu;
    int save_skip;  /* this layer's input is the residual block's skip */
    int add_skip;   /* after the norm, add the saved skip (before the ReLU) */
} sty_layer;

typedef struct sty_model {
    enum sty_arch arch;
    int c1, c2, c3;     /* encoder widths (compact: the first three convs' outputs) */
    int c2d, c1d;       /* decoder widths (deconv1, deconv2 outputs; compact: 0) */
    int res_blocks;     /* compact: number of residual adds */
    int k_in, k_out;
    /* The input is extended by reflection at the bottom and right to a
     * multiple of total_stride and rearranged by space-to-depth
     * (space_to_depth > 1) before the first conv; the last conv's output is
     * rearranged by depth-to-space (pixel_shuffle > 1). Classic: 1, 1, 4.
     * Crops (tiles) start on multiples of total_stride. */
    int space_to_depth, pixel_shuffle, total_stride;
    double macs_per_pixel; /* multiply-adds per input pixel */
    int tile_auto;      /* tile side of options tile -1 (auto): see tile_auto() in model.c */
    int n_convs, n_norms, n_layers;
    sty_conv *convs;
    sty_norm *norms;
    sty_layer *layers;
    size_t stats_size;  /* floats: 2 * sum of norm widths */
    size_t parameters;
    int receptive_radius;
    char *style, *source, *license, *path;
    float *weights;     /* every tensor, fp32 */
} sty_model;

/* Load and validate; on failure returns a negative stylize_status and writes
 * a message naming the problem (and tensor) to err. */
int sty_model_load(const char *path, sty_model **out, char *err, size_t err_size);
void sty_model_free(sty_model *m);

/* The network's reflection padding for index i on an axis of n pixels,
 * extended to any padding width as the mirrored-periodic extension (it is
 * PyTorch's ReflectionPad2d wherever that is defined). Every backend pads
 * with this. */
static inline int sty_reflect(long i, long n)
{
    if (n == 1)
        return 0;
    long period = 2 * (n - 1);
    i %= period;
    if (i < 0)
        i += period;
    return (int)(i >= n ? period - i : i);
}

/* Resolution of layers[layer]'s output relative to the input: num/den
 * (lowest terms; 1/4 for the classic model's residual trunk). */
void sty_layer_scale(const sty_model *m, int layer, int *num, int *den);
/* Receptive-field radius, in input pixels, of the output of the first
 * n_layers layers (n_layers = m->n_layers gives m->receptive_radius). */
int sty_receptive_radius_upto(const sty_model *m, int n_layers);

/* Output size of a conv layer for an input of n pixels along one axis. */
int sty_conv_out_size(const sty_conv *c, int n);

/* Size along one axis of the first conv's input for an n-pixel crop:
 * ceil(n / total_stride) * total_stride / space_to_depth (n for the classic
 * network). The last conv's output is this times space_to_depth /
 * pixel_shuffle before depth-to-space. */
int sty_model_in_size(const sty_model *m, int n);

#endif
