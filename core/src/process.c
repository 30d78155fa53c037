/* The frame pipeline: statistics (thumbnail, smoothing, external, or
 * exact), then the frame in tiles. Tiles start on multiples of the
 * network's total stride (tile_align) and carry `overlap` pixels of context
 * on every side that lies inside the frame, so with fixed statistics each
 * output pixel sees exactly the inputs it would see in one pass over the
 * whole frame: tiled equals untiled, and every output pixel is written
 * exactly once.
 *
 * Exact mode computes the statistics of full mode in tiles: one pass over
 * the tiles per instance-norm layer k, each tile running the network with
 * the exact statistics already found for the layers before k and returning
 * the moments of layer k's pre-norm output over the tile's own region at
 * layer k's resolution (the regions partition that layer's whole output,
 * so every position counts once); the moments are merged in double (Chan's
 * pairwise update). A last pass writes the frame with these statistics. */
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "pixels.h"

/* Tile origins are multiples of this: the network's total stride, so that
 * every layer of a crop samples the same grid as the whole frame. The one
 * place that knows it. */
static int tile_align(const stylize_ctx *ctx)
{
    (void)ctx;
    return 4;
}

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

/* overlap < 0: the model's receptive radius. */
static tiling plan_tiles(const stylize_ctx *ctx, int W, int H, int tile, int overlap)
{
    tiling t;
    const int align = tile_align(ctx);
    t.overlap = round_up(overlap < 0 ? ctx->engine->model->receptive_radius : overlap, align);
    tile = tile > 0 ? round_up(tile, align) : 0;
    t.step_x = tile_step(W, tile, align);
    t.step_y = tile_step(H, tile, align);
    t.max_cw = t.step_x + 2 * t.overlap < W ? t.step_x + 2 * t.overlap : W;
    t.max_ch = t.step_y + 2 * t.overlap < H ? t.step_y + 2 * t.overlap : H;
    return t;
}

/* Exact mode ignores `overlap`: its passes need the receptive radius. */
static int mode_overlap(const stylize_ctx *ctx, stylize_mode mode)
{
    return mode == STYLIZE_MODE_EXACT ? -1 : ctx->opts.overlap;
}

static size_t mode_memory(const stylize_ctx *ctx, int W, int H, stylize_mode mode)
{
    const sty_engine *e = ctx->engine;
    const stylize_options *o = &ctx->opts;
    int tile = mode == STYLIZE_MODE_FULL ? 0 : o->tile;
    tiling t = plan_tiles(ctx, W, H, tile, mode_overlap(ctx, mode));
    size_t need = e->ops->workspace_bytes(e->model, t.max_ch, t.max_cw);
    need += 2 * sizeof(float) * 3 * (size_t)t.max_cw * (size_t)t.max_ch; /* crop in and out */
    if (mode == STYLIZE_MODE_TIN) {
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

stylize_mode sty_resolve_mode(const stylize_ctx *ctx, int W, int H)
{
    const stylize_options *o = &ctx->opts;
    if (o->mode != STYLIZE_MODE_AUTO)
        return o->mode;
    if (ctx->engine->have_next) /* statistics imposed with stylize_set_stats are tin statistics */
        return STYLIZE_MODE_TIN;
    size_t budget = o->max_memory ? o->max_memory : STYLIZE_AUTO_BUDGET;
    if (mode_memory(ctx, W, H, STYLIZE_MODE_FULL) <= budget)
        return STYLIZE_MODE_FULL;
    return o->still && ctx->engine->ops->exact ? STYLIZE_MODE_EXACT : STYLIZE_MODE_TIN;
}

size_t sty_memory_needed(const stylize_ctx *ctx, int W, int H)
{
    return mode_memory(ctx, W, H, sty_resolve_mode(ctx, W, H));
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

static int run_tiles(stylize_ctx *ctx, const stylize_frame *in, stylize_frame *out, int tile, int overlap,
                     enum sty_norm_mode norm, float *stats)
{
    sty_engine *e = ctx->engine;
    const int W = in->width, H = in->height;
    const tiling t = plan_tiles(ctx, W, H, tile, overlap);
    const int step_x = t.step_x, step_y = t.step_y, max_cw = t.max_cw, max_ch = t.max_ch;
    overlap = t.overlap;
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

/* Size of layer `layer`'s output for an input of n pixels along one axis. */
static int layer_size(const sty_model *m, int layer, int n)
{
    for (int i = 0; i <= layer; i++)
        n = sty_conv_out_size(&m->convs[m->layers[i].conv], n);
    return n;
}

/* The part of a crop's layer output that belongs to its tile: the tile's
 * [t0, t1) of the axis, in a crop starting at c0 (c0 and t0 aligned), at
 * the layer's resolution num/den; the last tile of the axis (t1 == n) takes
 * the rest of the layer's output, which the network extends past the frame
 * when n is not a multiple of the total stride (full mode counts it too). */
static void layer_region(const sty_model *m, int layer, int num, int den, int c0, int c1, int t0, int t1, int n,
                         int *r0, int *r1)
{
    *r0 = (t0 - c0) / den * num;
    *r1 = t1 == n ? layer_size(m, layer, c1 - c0) : (t1 - c0) / den * num;
}

/* Exact statistics of the frame (see the top of the file) into stats. */
static int exact_stats(stylize_ctx *ctx, const stylize_frame *in, float *stats)
{
    sty_engine *e = ctx->engine;
    const sty_model *m = e->model;
    const int W = in->width, H = in->height, align = tile_align(ctx);
    if (!e->ops->exact)
        return sty_set_error(ctx, STYLIZE_ERR_UNSUPPORTED, "the %s backend does not implement mode=exact; use "
                             "backend=dnnl or backend=ref (or mode=tin)", e->ops->name);
    const tiling t = plan_tiles(ctx, W, H, ctx->opts.tile, -1);
    const size_t crop_floats = (size_t)t.max_cw * t.max_ch * 3;
    if (grow_floats(&ctx->crop_in, &ctx->crop_in_cap, crop_floats))
        return sty_set_error(ctx, STYLIZE_ERR_NOMEM, "out of memory for %dx%d tiles", t.max_cw, t.max_ch);
    memset(stats, 0, m->stats_size * sizeof(float));
    double moments[2 * STY_MAX_WIDTH], mean[STY_MAX_WIDTH], m2[STY_MAX_WIDTH];
    for (int li = 0; li < m->n_layers; li++) {
        const int ni = m->layers[li].norm;
        if (ni < 0)
            continue;
        const sty_norm *nm = &m->norms[ni];
        int num, den;
        sty_layer_scale(m, li, &num, &den);
        if (align % den)
            return sty_set_error(ctx, STYLIZE_ERR_UNSUPPORTED, "mode=exact: layer %d's stride %d does not divide "
                                 "the tile alignment %d", li, den, align);
        double count = 0;
        for (int y0 = 0; y0 < H; y0 += t.step_y) {
            const int y1 = y0 + t.step_y < H ? y0 + t.step_y : H;
            const int cy0 = y0 - t.overlap > 0 ? y0 - t.overlap : 0;
            const int cy1 = y1 + t.overlap < H ? y1 + t.overlap : H;
            for (int x0 = 0; x0 < W; x0 += t.step_x) {
                const int x1 = x0 + t.step_x < W ? x0 + t.step_x : W;
                const int cx0 = x0 - t.overlap > 0 ? x0 - t.overlap : 0;
                const int cx1 = x1 + t.overlap < W ? x1 + t.overlap : W;
                sty_run r = {.in = ctx->crop_in, .h = cy1 - cy0, .w = cx1 - cx0, .norm = STY_NORM_FIXED,
                             .stats = stats, .moments = moments, .stop_norm = ni};
                layer_region(m, li, num, den, cy0, cy1, y0, y1, H, &r.ry0, &r.ry1);
                layer_region(m, li, num, den, cx0, cx1, x0, x1, W, &r.rx0, &r.rx1);
                if (r.ry0 >= r.ry1 || r.rx0 >= r.rx1)
                    continue;
                sty_read_rgb(in, cx0, cy0, r.w, r.h, ctx->crop_in);
                int ret = e->ops->run(e->backend, &r);
                if (ret)
                    return sty_set_error(ctx, ret, "%s backend failed on a %dx%d tile (exact statistics of norm "
                                         "layer %d): %s", e->ops->name, r.w, r.h, ni, stylize_strerror(ret));
                const double nb = (double)(r.ry1 - r.ry0) * (r.rx1 - r.rx0), n = count + nb;
                for (int ch = 0; ch < nm->c; ch++) {
                    if (count == 0) {
                        mean[ch] = moments[ch];
                        m2[ch] = moments[nm->c + ch];
                        continue;
                    }
                    const double d = moments[ch] - mean[ch];
                    mean[ch] += d * nb / n;
                    m2[ch] += moments[nm->c + ch] + d * d * count * nb / n;
                }
                count = n;
            }
        }
        for (int ch = 0; ch < nm->c; ch++) {
            stats[nm->stats_offset + ch] = (float)mean[ch];
            stats[nm->stats_offset + nm->c + ch] = (float)(m2[ch] / count);
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
    const stylize_mode mode = sty_resolve_mode(ctx, in->width, in->height);
    if (ctx->opts.max_memory) {
        size_t need = mode_memory(ctx, in->width, in->height, mode);
        if (need > ctx->opts.max_memory)
            return sty_set_error(ctx, STYLIZE_ERR_TOO_LARGE, "a %dx%d frame in %s mode needs %zu MiB of working "
                                 "memory, more than max_memory (%zu MiB)%s", in->width, in->height,
                                 stylize_mode_name(mode), need >> 20, ctx->opts.max_memory >> 20,
                                 mode == STYLIZE_MODE_FULL || mode == STYLIZE_MODE_PATCH
                                     ? ": use mode=exact or mode=tin, whose memory does not grow with the frame"
                                     : ": lower tile or thumb");
    }
    ctx->last_mode = mode;
    switch (mode) {
    case STYLIZE_MODE_FULL: { /* one crop: its statistics are the frame's, kept for stylize_get_stats */
        int r = run_tiles(ctx, in, out, 0, ctx->opts.overlap, STY_NORM_SELF, e->thumb_stats);
        if (!r) {
            memcpy(e->used_stats, e->thumb_stats, e->model->stats_size * sizeof(float));
            e->have_used = 1;
        }
        return r;
    }
    case STYLIZE_MODE_PATCH:
        return run_tiles(ctx, in, out, ctx->opts.tile, ctx->opts.overlap, STY_NORM_SELF, NULL);
    case STYLIZE_MODE_EXACT: {
        int r = exact_stats(ctx, in, e->thumb_stats);
        if (r)
            return r;
        memcpy(e->used_stats, e->thumb_stats, e->model->stats_size * sizeof(float));
        e->have_used = 1;
        return run_tiles(ctx, in, out, ctx->opts.tile, -1, STY_NORM_FIXED, e->used_stats);
    }
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
    return run_tiles(ctx, in, out, ctx->opts.tile, ctx->opts.overlap, STY_NORM_FIXED, e->used_stats);
}
