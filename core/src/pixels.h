/* Moving pixels between caller frames and the float RGB crops the network
 * sees: reading crops, the area-filtered thumbnail, and writing results with
 * the post-processing (clamp, round, preserve_color, strength). */
#ifndef STYLIZE_PIXELS_H
#define STYLIZE_PIXELS_H

#include "stylize.h"

/* 0 if the frame's format, size and pointers are usable; else a message. */
int sty_frame_check(const stylize_frame *f, const char **why);

/* dst = w x h x 3 floats (RGB 0..255) of the frame's region at (x0, y0). */
void sty_read_rgb(const stylize_frame *f, int x0, int y0, int w, int h, float *dst);

/* Area (box) filter with fractional pixel coverage down to tw x th floats. */
void sty_area_downscale(const stylize_frame *f, int tw, int th, float *dst, double *row_acc);

typedef struct sty_post {
    float strength;     /* 0..1 */
    int preserve_color;
} sty_post;

/* Write the region [x0,x1) x [y0,y1) of out from net (RGB floats, row stride
 * net_stride floats, pixel (x0, y0) first), blending with in's pixels. */
void sty_write_rgb(const stylize_frame *in, stylize_frame *out, int x0, int y0, int x1, int y1,
                   const float *net, long net_stride, const sty_post *post);

/* out = in, converting the pixel format (strength 0). */
void sty_copy_frame(const stylize_frame *in, stylize_frame *out);

#endif
