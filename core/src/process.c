/* The frame pipeline: statistics (thumbnail, smoothing, or external), then
 * the frame in tiles. Tiles start on multiples of the network's total
 * stride (4 for the classic network, from the model for compact ones) and carry `overlap` pixels of context on every side that
 * lies inside the frame, so with fixed statistics each output pixel sees
 * exactly the inputs it would see in one pass over the whole frame: tiled
 * equals untiled, and every output pixel is written exactly once. */
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "pixels.h"

static int round_up(int v, int a)
{
    return (v + a - 1) / a * a;
}

static int grow_floats(float **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    float *p = realloc(*buf, need * sizeof(float));
    if (!p)
        return -1;
    *buf = p;
    *cap = need;
    return 0;
}

/* Tile step along an axis of n pixels: tiles of at most `tile` pixels, as
 * equal as alignment allows. tile 0 = one tile. */
static int tile_step(int n, int tile, int align)
{
    if (tile <= 0 || tile >= n)
        return n;
    int count = (n + tile - 1) / tile;
    return round_up((n + count - 1) / count, align);
}

static void thumb_size(const stylize_ctx *ctx, const stylize_frame *f, int *tw, int *th)
{
    const int thumb = ctx->opts.thumb;
    if (f->width <= thumb && f->height <= thumb) {
        *tw = f->width;
        *th = f->height;
    } else if (f->width >= f->height) {
        *tw = thumb;
        *th = (int)((double)f->height * thumb / f->width + 0.5);
    } else {
        *th = thumb;
        *tw = (int)((double)f->width * thumb / f->height + 0.5);
    }
    if (*tw < 1)
        *tw = 1;
    if (*th < 1)
        *th = 1;
}

/* The tiling of a frame: every tile and crop follows from these. */
typedef struct tiling {
    int overlap, step_x, step_y;
    int max_cw, max_ch; /* largest crop */
} tiling;

static tiling plan_tiles(const stylize_ctx *ctx, int W, int H, int tile)
{
    tiling t;
    const sty_model *m = ctx->engine->model;
    const int align = m->total_stride;
    t.overlap = round_up(ctx->opts.overlap < 0 ? m->receptive_radius : ctx->opts.overlap, align);
    tile = tile > 0 ? round_up(tile, align) : 0;
    t.step_x = tile_step(W, tile, align);
    t.step_y = tile_step(H, tile, align);
    t.max_cw = t.step_x + 2 * t.overlap < W ? t.step_x + 2 * t.overlap : W;
    t.max_ch = t.step_y + 2 * t.overlap < H ? t.step_y + 2 * t.overlap : H;
    return t;
}

size_t sty_memory_needed(const stylize_ctx *ctx, int W, int H)
{
    const sty_engine *e = ctx->engine;
    const stylize_options *o = &ctx->opts;
    int tile = o->mode == STYLIZE_MODE_FULL ? 0 : o->tile;
    tiling t = plan_tiles(ctx, W, H, tile);
    size_t need = e->ops->workspace_bytes(e->model, t.max_ch, t.max_cw);
    need += 2 * sizeof(float) * 3 * (size_t)t.max_cw * (size_t)t.max_ch; /* crop in and out */
    if (o->mode == STYLIZE_MODE_TIN) {
        stylize_frame f = {.width = W, .height = H};
        int tw, th;
        thumb_size(ctx, &f, &tw, &th);
        size_t thumb_ws = e->ops->workspace_bytes(e->model, th, tw);
        if (thumb_ws > need)
            need = thumb_ws; /* the backend's buffers serve both passes */
        need += sizeof(float) * 3 * (size_t)tw * th + sizeof(double) * 3 * (size_t)tw;
    }
    return need;
}

int sty_thumbnail_stats(stylize_ctx *ctx, const stylize_frame *in, float *stats)
{
    sty_engine *e = ctx->engine;
    int tw, th;
    thumb_size(ctx, in, &tw, &th);
    if (grow_floats(&ctx->thumb, &ctx->thumb_cap, (size_t)tw * th * 3))
        return sty_set_error(ctx, STYLIZE_ERR_NOMEM, "out of memory for a %dx%d thumbnail", tw, th);
    if (tw == in->width && th == in->height) {
        sty_read_rgb(in, 0, 0, tw, th, ctx->thumb);
    } else {
        if ((size_t)tw * 3 > ctx->thumb_row_cap) {
            double *p = realloc(ctx->thumb_row, sizeof(double) * (size_t)tw * 3);
            if (!p)
                return sty_set_error(ctx, STYLIZE_ERR_NOMEM, "out of memory for a %dx%d thumbnail", tw, th);
            ctx->thumb_row = p;
            ctx->thumb_row_cap = (size_t)tw * 3;
        }
        sty_area_downscale(in, tw, th, ctx->thumb, ctx->thumb_row);
    }
    sty_run r = {.in = ctx->thumb, .h = th, .w = tw, .norm = STY_NORM_SELF, .stats = stats, .stats_only = 1};
    int ret = e->ops->run(e->backend, &r);
    if (ret)
        return sty_set_error(ctx, ret, "%s backend failed on the %dx%d thumbnail: %s", e->ops->name, tw, th,
                             stylize_strerror(ret));
    return 0;
}

static int run_tiles(stylize_ctx *ctx, const stylize_frame *in, stylize_frame *out, int tile,
                     enum sty_norm_mode norm, float *stats)
{
    sty_engine *e = ctx->engine;
    const int W = in->width, H = in->height;
    const tiling t = plan_tiles(ctx, W, H, tile);
    const int overlap = t.overlap, step_x = t.step_x, step_y = t.step_y, max_cw = t.max_cw, max_ch = t.max_ch;
    const size_t crop_floats = (size_t)max_cw * max_ch * 3;
    if (grow_floats(&ctx->crop_in, &ctx->crop_in_cap, crop_floats) ||
        grow_floats(&ctx->crop_out, &ctx->crop_out_cap, crop_floats))
        return sty_set_error(ctx, STYLIZE_ERR_NOMEM, "out of memory for %dx%d tiles", max_cw, max_ch);
    const sty_post post = {.strength = ctx->opts.strength, .preserve_color = ctx->opts.preserve_color};

    for (int y0 = 0; y0 < H; y0 += step_y) {
        const int y1 = y0 + step_y < H ? y0 + step_y : H;
        const int cy0 = y0 - overlap > 0 ? y0 - overlap : 0;
        const int cy1 = y1 + overlap < H ? y1 + overlap : H;
        for (int x0 = 0; x0 < W; x0 += step_x) {
            const int x1 = x0 + step_x < W ? x0 + step_x : W;
            const int cx0 = x0 - overlap > 0 ? x0 - overlap : 0;
            const int cx1 = x1 + overlap < W ? x1 + overlap : W;
            sty_read_rgb(in, cx0, cy0, cx1 - cx0, cy1 - cy0, ctx->crop_in);
            sty_run r = {.in = ctx->crop_in, .h = cy1 - cy0, .w = cx1 - cx0, .norm = norm, .stats = stats,
                         .out = ctx->crop_out, .out_h = y1 - cy0, .out_w = x1 - cx0};
            int ret = e->ops->run(e->backend, &r);
            if (ret)
                return sty_set_error(ctx, ret, "%s backend failed on a %dx%d tile: %s", e->ops->name,
                                     r.w, r.h, stylize_strerror(ret));
            const float *kept = ctx->crop_out + ((size_t)(y0 - cy0) * r.out_w + (size_t)(x0 - cx0)) * 3;
            sty_write_rgb(in, out, x0, y0, x1, y1, kept, (long)r.out_w * 3, &post);
        }
    }
    return 0;
}

int sty_process_frame(stylize_ctx *ctx, const stylize_frame *in, stylize_frame *out)
{
    sty_engine *e = ctx->engine;
    if (ctx->opts.strength <= 0) { /* the network's result would be discarded */
        sty_copy_frame(in, out);
        return 0;
    }
    if (ctx->opts.max_memory) {
        size_t need = sty_memory_needed(ctx, in->width, in->height);
        if (need > ctx->opts.max_memory)
            return sty_set_error(ctx, STYLIZE_ERR_TOO_LARGE, "a %dx%d frame in %s mode needs %zu MiB of working "
                                 "memory, more than max_memory (%zu MiB)%s", in->width, in->height,
                                 stylize_mode_name(ctx->opts.mode), need >> 20, ctx->opts.max_memory >> 20,
                                 ctx->opts.mode == STYLIZE_MODE_TIN ? ": lower tile or thumb"
                                                                    : ": use mode=tin, whose memory does not grow with the frame");
    }
    switch (ctx->opts.mode) {
    case STYLIZE_MODE_FULL:
        return run_tiles(ctx, in, out, 0, STY_NORM_SELF, NULL);
    case STYLIZE_MODE_PATCH:
        return run_tiles(ctx, in, out, ctx->opts.tile, STY_NORM_SELF, NULL);
    case STYLIZE_MODE_TIN:
    default:
        break;
    }
    const size_t n = e->model->stats_size;
    if (e->have_next) {
        memcpy(e->smoother.state, e->next_stats, n * sizeof(float));
        e->smoother.valid = 1;
        e->have_next = 0;
    } else {
        int r = sty_thumbnail_stats(ctx, in, e->thumb_stats);
        if (r)
            return r;
        sty_smoother_update(&e->smoother, e->model, e->thumb_stats, ctx->opts.smooth, ctx->opts.scene_cut);
    }
    memcpy(e->used_stats, e->smoother.state, n * sizeof(float));
    e->have_used = 1;
    return run_tiles(ctx, in, out, ctx->opts.tile, STY_NORM_FIXED, e->used_stats);
}
