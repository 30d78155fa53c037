/* The interface between the frame logic (TIN, tiling, pixels) and a compute
 * backend that runs the network on one crop. A backend sees float RGB crops
 * and statistics, never frames, so TIN logic stays in one place. */
#ifndef STYLIZE_BACKEND_H
#define STYLIZE_BACKEND_H

#include "model.h"
#include "stylize.h"

enum sty_norm_mode {
    STY_NORM_SELF,  /* every instance norm uses the crop's own statistics */
    STY_NORM_FIXED, /* every instance norm uses the given statistics */
};

typedef struct sty_run {
    const float *in;   /* h x w x 3 floats, RGB 0..255, rows packed */
    int h, w;
    enum sty_norm_mode norm;
    float *stats;      /* SELF: where to record the statistics (may be NULL); FIXED: read */
    int stats_only;    /* stop after the last instance norm; out is not written */
    float *out;        /* out_h x out_w x 3 floats: the top-left block of the network output */
    int out_h, out_w;  /* at most the network's output size (4*ceil(ceil(n/2)/2) classic,
                          total_stride*ceil(n/total_stride) compact) */
    /* Exact mode's statistics passes (moments != 0): norm must be
     * STY_NORM_FIXED with stats valid for the norms before stop_norm (later
     * entries are not read). The network runs up to the convolution of the
     * layer whose norm is stop_norm and stops before normalizing it; for
     * each of that norm's c channels, moments[ch] receives the mean and
     * moments[c + ch] the sum of squared deviations from that mean (double)
     * of the pre-norm output over rows [ry0, ry1) and columns [rx0, rx1) of
     * that layer's output (crop coordinates at the layer's resolution).
     * out is not written. */
    double *moments;
    int stop_norm;
    int ry0, ry1, rx0, rx1;
    /* Exact mode's activation cache. start_layer > 0: run from layer
     * start_layer, whose input (the output of layer start_layer - 1 for
     * this h x w crop: that layer's size for the crop x its channels, NHWC
     * fp32) is act; in is not read. No residual block may be open across
     * start_layer. save != NULL: layer save_layer's output (after its norm,
     * ReLU and skip), the crop's whole extent at that layer, is copied to
     * save (NHWC fp32). */
    int start_layer;
    const float *act;
    int save_layer;
    float *save;
} sty_run;

typedef struct sty_backend_config {
    int threads;                  /* >= 1 */
    stylize_precision precision;  /* AUTO: the backend picks (and reports it through active_precision) */
} sty_backend_config;

typedef struct sty_backend_ops {
    const char *name;
    stylize_backend id;
    /* Is the backend usable on this machine (CPU features, devices)? */
    int (*available)(void);
    /* Optional: why available() is 0, in a few words (NULL when it is 1). */
    const char *(*unavailable_reason)(void);
    /* Optional: why this backend cannot run model m (a sentence), or NULL when
     * it can. AUTO skips a backend that cannot; create refuses such a model. */
    const char *(*model_unsupported)(const sty_model *m);
    /* Prepare for a model. Unsupported precision: STYLIZE_ERR_UNSUPPORTED with a message. */
    int (*create)(const sty_model *m, const sty_backend_config *cfg, void **state, char *err, size_t err_size);
    void (*destroy)(void *state);
    /* Run the network on one crop. Working buffers grow to the largest crop
     * seen and are then reused: no allocation in steady state. */
    int (*run)(void *state, const sty_run *r);
    /* Bytes of working memory needed for an h x w crop (for memory limits). */
    size_t (*workspace_bytes)(const sty_model *m, int h, int w);
    /* 1: run() implements sty_run.moments, start_layer and save (mode=exact). */
    int exact;
    /* The precision in use (never AUTO). */
    stylize_precision (*active_precision)(const void *state);
} sty_backend_ops;

extern const sty_backend_ops sty_backend_ref;
#ifdef STYLIZE_HAVE_DNNL
extern const sty_backend_ops sty_backend_dnnl;
#endif
#ifdef STYLIZE_HAVE_CUDA
extern const sty_backend_ops sty_backend_cuda;
#endif

#endif
