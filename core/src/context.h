/* The library context shared by the public API (stylize.c) and the frame
 * pipeline (process.c). */
#ifndef STYLIZE_CONTEXT_H
#define STYLIZE_CONTEXT_H

#include "backend.h"
#include "model.h"
#include "smoothing.h"
#include "stylize.h"

/* A model with the backend prepared for it: switched as one unit. */
typedef struct sty_engine {
    sty_model *model;
    const sty_backend_ops *ops;
    void *backend;
    float *thumb_stats;   /* statistics of the current frame's thumbnail */
    float *used_stats;    /* statistics used for the last frame */
    float *next_stats;    /* set by stylize_set_stats for the next frame */
    int have_used, have_next;
    sty_smoother smoother;
} sty_engine;

struct stylize_ctx {
    stylize_options opts;
    sty_engine *engine;
    /* frame buffers, grown to the largest need and reused */
    float *crop_in, *crop_out;
    size_t crop_in_cap, crop_out_cap;
    float *thumb;
    size_t thumb_cap;
    double *thumb_row;
    size_t thumb_row_cap;
    float *act[2];          /* exact mode's activation cache (two boundaries: read one, write the next) */
    size_t act_cap[2];
    float *crop_act_in, *crop_act_out; /* a crop's activation at a boundary: read from / written to the cache */
    size_t crop_act_in_cap, crop_act_out_cap;
    stylize_mode last_mode; /* the mode the last processed frame used (auto resolved) */
    char err[512];
};

int sty_set_error(stylize_ctx *ctx, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The frame pipeline (process.c). */
int sty_process_frame(stylize_ctx *ctx, const stylize_frame *in, stylize_frame *out);
int sty_thumbnail_stats(stylize_ctx *ctx, const stylize_frame *in, float *stats);
/* stylize_compute_stats: the thumbnail's statistics, or with mode=auto those
 * of the mode auto picks (full or exact: the frame's own). */
int sty_frame_stats(stylize_ctx *ctx, const stylize_frame *in, float *stats);
size_t sty_memory_needed(const stylize_ctx *ctx, int width, int height);
stylize_mode sty_resolve_mode(const stylize_ctx *ctx, int width, int height);

#endif
