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
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "context.h"
#include "pixels.h"

/* Tile origins are multiples of this: the network's total stride (4 for
 * the classic network, from the model for compact ones), so that every
 * layer of a crop samples the same grid as the whole frame. */
static int tile_align(const stylize_ctx *ctx)
{
    return ctx->engine->model->total_stride;
}

/* Exact statistics (mode=exact, and tin's exact_layers) need a backend that
 * runs partial networks, and a classic network: the passes' geometry
 * (layer resolutions, the activation cache) does not know the compact
 * family's space-to-depth and pixel-shuffle rearrangements yet. */
static int exact_supported(const stylize_ctx *ctx)
{
    return ctx->engine->ops->exact && ctx->engine->model->arch == STY_ARCH_CLASSIC;
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

/* The tiling of a frame: every tile and crop follows from these. */
typedef struct tiling {
    int overlap, step_x, step_y;
    int max_cw, max_ch; /* largest crop */
} tiling;

/* overlap < 0: the model's receptive radius; tile < 0: the model's
 * automatic tile side. */
static tiling plan_tiles(const stylize_ctx *ctx, int W, int H, int tile, int overlap)
{
    tiling t;
    const int align = tile_align(ctx);
    if (tile < 0)
        tile = ctx->engine->model->tile_auto;
    t.overlap = round_up(overlap < 0 ? ctx->engine->model->receptive_radius : overlap, align);
    tile = tile > 0 ? round_up(tile, align) : 0;
    t.step_x = tile_step(W, tile, align);
    t.step_y = tile_step(H, tile, align);
    t.max_cw = t.step_x + 2 * t.overlap < W ? t.step_x + 2 * t.overlap : W;
    t.max_ch = t.step_y + 2 * t.overlap < H ? t.step_y + 2 * t.overlap : H;
    return t;
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

/* The thumbnail of a W x H frame: `thumb` pixels on the longer side, or
 * with thumb 0 (auto) the largest thumbnail whose area is at most that of
 * the largest tin crop (so its pass needs no more memory than a tile), and
 * at least 512 on the longer side. Never larger than the frame: a frame no
 * larger than a crop is its own thumbnail (tin then equals full). */
static void thumb_size(const stylize_ctx *ctx, const stylize_frame *f, int *tw, int *th)
{
    int thumb = ctx->opts.thumb;
    const int W = f->width, H = f->height, L = W >= H ? W : H, S = W >= H ? H : W;
    if (thumb <= 0) {
        const tiling t = plan_tiles(ctx, W, H, ctx->opts.tile, ctx->opts.overlap);
        const double area = (double)t.max_cw * t.max_ch;
        thumb = (int)sqrt(area * L / S);
        thumb = thumb < 512 ? 512 : thumb > 16384 ? 16384 : thumb;
    }
    if (W <= thumb && H <= thumb) {
        *tw = W;
        *th = H;
    } else if (W >= H) {
        *tw = thumb;
        *th = (int)((double)H * thumb / W + 0.5);
    } else {
        *th = thumb;
        *tw = (int)((double)W * thumb / H + 0.5);
    }
    if (*tw < 1)
        *tw = 1;
    if (*th < 1)
        *th = 1;
}

/* Exact mode's activation cache. A boundary b (0 < b < n_layers, no
 * residual block open across it) can hold the whole frame's output of layer
 * b - 1 once the statistics of every norm before b are known; a pass that
 * starts there skips layers 0 .. b-1. Two buffers: the pass for norm layer
 * k starts from the last filled boundary and fills the latest eligible one
 * that is <= k, so each pass computes only a few layers. Boundaries whose
 * activation does not fit half the budget are not used (when none fits,
 * every pass starts from the frame: the memory stays that of the tiles). */
typedef struct exact_plan {
    unsigned char *eligible; /* per layer index b */
    size_t buf_floats;       /* per buffer: the largest eligible boundary */
} exact_plan;

static size_t boundary_floats(const sty_model *m, int b, int W, int H)
{
    return (size_t)layer_size(m, b - 1, W) * (size_t)layer_size(m, b - 1, H) * (size_t)m->convs[m->layers[b - 1].conv].cout;
}

static size_t exact_budget(const stylize_ctx *ctx)
{
    return ctx->opts.max_memory ? ctx->opts.max_memory : STYLIZE_AUTO_BUDGET;
}

/* Which boundaries b can be cached within half of what the budget leaves
 * beyond base each (two buffers): those with no residual block open across
 * them whose `count` activations of a w x h input, plus one of a crop_w x
 * crop_h crop (crop_w 0: none), fit. eligible may be NULL (size only).
 * Returns the floats of the largest eligible count x w x h activation;
 * *crop_floats (may be NULL): of the largest eligible crop activation. */
static size_t plan_cache(const stylize_ctx *ctx, size_t base, int count, int w, int h, int crop_w, int crop_h,
                         unsigned char *eligible, size_t *crop_floats)
{
    const sty_model *m = ctx->engine->model;
    const size_t budget = exact_budget(ctx);
    const size_t per_buf = budget > base ? (budget - base) / 2 : 0;
    size_t largest = 0, crop = 0;
    int open = 0;
    for (int b = 1; b < m->n_layers; b++) {
        const sty_layer *prev = &m->layers[b - 1];
        open = (open || prev->save_skip) && !prev->add_skip;
        const size_t fl = (size_t)count * boundary_floats(m, b, w, h);
        const size_t cf = crop_w ? boundary_floats(m, b, crop_w, crop_h) : 0;
        const int ok = !open && (fl + cf) * sizeof(float) <= per_buf;
        if (eligible)
            eligible[b] = (unsigned char)ok;
        if (ok && fl > largest)
            largest = fl;
        if (ok && cf > crop)
            crop = cf;
    }
    if (crop_floats)
        *crop_floats = crop;
    return largest;
}

/* base: the tiles' working memory. eligible may be NULL (size only).
 * Returns the floats of one frame buffer; *crop_floats: of one crop buffer. */
static size_t plan_exact_cache(const stylize_ctx *ctx, int W, int H, size_t base, unsigned char *eligible,
                               size_t *crop_floats)
{
    const tiling t = plan_tiles(ctx, W, H, ctx->opts.tile, -1);
    return plan_cache(ctx, base, 1, W, H, t.max_cw, t.max_ch, eligible, crop_floats);
}

/* tin's sample estimator (tin_stats=sample, the default). A thumbnail sees
 * the frame at the wrong scale: the encoder's 9x9 and stride-2 convs find
 * more detail per pixel in it than in the frame, so its statistics are off
 * from the first layer on (docs/tin_measurement.md). A sample of the frame
 * at its own resolution has the right scale: n tiles of `side` pixels, one
 * from the centre of each cell of a kx x ky grid over the frame, with as
 * many pixels in all as the thumbnail would have. Each tile runs alone (its
 * own padding at its edges, like a small frame), and the statistics are
 * pooled over all tiles layer by layer, as exact mode pools them over the
 * whole frame: the pass for norm layer k runs every tile with the pooled
 * statistics of the layers before k. Running the tiles as one collage in a
 * single pass is cheaper but measured much worse: the seams between tiles
 * reach every deep layer. Each tile's activation is cached at layer
 * boundaries as exact mode caches the frame's, so the passes together cost
 * about two networks over the sample. */
#define STY_SAMPLE_SIDE 256

typedef struct sample_plan {
    int n, kx, ky, side;
} sample_plan;

static sample_plan plan_sample(const stylize_ctx *ctx, int W, int H)
{
    const stylize_frame f = {.width = W, .height = H};
    const int align = tile_align(ctx);
    int tw, th;
    thumb_size(ctx, &f, &tw, &th);
    sample_plan sp;
    /* no more pixels per tile than the thumbnail has (its memory bound), and
     * independent of the tiles (tiled = untiled) */
    int side = round_up(STY_SAMPLE_SIDE, align);
    int small = W < H ? W : H;
    const int thumb_side = (int)sqrt((double)tw * th);
    small = thumb_side < small ? thumb_side : small;
    if (side > small)
        side = small >= align ? small / align * align : small;
    sp.side = side;
    /* as many pixels as the thumbnail; with thumb auto, a tenth of a larger
     * frame (at most 5x the thumbnail), since a fixed number of tiles samples
     * less and less of it: at 8K 12 tiles miss by 2-5 dB more (block-mean)
     * than 50 for 1.03-1.23x the time (docs/tin_measurement.md); up to 4K
     * the thumbnail's pixels are more than a tenth and nothing changes */
    double pixels = (double)tw * th;
    const double tenth = (double)W * H / 10;
    if (ctx->opts.thumb <= 0 && tenth > pixels)
        pixels = tenth < 5 * pixels ? tenth : 5 * pixels;
    const double n = pixels / ((double)side * side);
    /* cells as square as the frame allows: the shorter axis first, so that its
     * clamping (a very wide frame has room for one row) is made up on the other */
    int *first = W >= H ? &sp.ky : &sp.kx, *second = W >= H ? &sp.kx : &sp.ky;
    const int room_first = W >= H ? H / side : W / side, room_second = W >= H ? W / side : H / side;
    *first = (int)(sqrt(n * (W >= H ? (double)H / W : (double)W / H)) + 0.5);
    *first = *first < 1 ? 1 : *first > room_first ? room_first : *first;
    *second = (int)(n / *first + 0.5);
    *second = *second < 1 ? 1 : *second > room_second ? room_second : *second;
    sp.n = sp.kx * sp.ky;
    return sp;
}

/* Origin of sample tile i: centred in its cell, on the tile alignment. */
static void sample_origin(const stylize_ctx *ctx, const sample_plan *sp, int W, int H, int i, int *x0, int *y0)
{
    const int align = tile_align(ctx);
    const int cx = i % sp->kx, cy = i / sp->kx;
    int x = (int)((2.0 * cx + 1) * W / (2.0 * sp->kx)) - sp->side / 2;
    int y = (int)((2.0 * cy + 1) * H / (2.0 * sp->ky)) - sp->side / 2;
    x = x > W - sp->side ? W - sp->side : x;
    y = y > H - sp->side ? H - sp->side : y;
    *x0 = x < 0 ? 0 : x / align * align;
    *y0 = y < 0 ? 0 : y / align * align;
}

/* The sample's activation cache: exact mode's rule (see exact_plan), with
 * every tile's activation at a boundary in one buffer. Returns the floats
 * of one buffer (0: no cache). */
static size_t plan_sample_cache(const stylize_ctx *ctx, const sample_plan *sp, size_t base, unsigned char *eligible)
{
    return plan_cache(ctx, base, sp->n, sp->side, sp->side, 0, 0, eligible, NULL);
}

/* Does tin estimate a W x H frame's statistics from a sample (else from a
 * thumbnail)? Not when the frame is its own thumbnail, nor where the backend
 * or the network has no exact passes (cuda; compact models). */
static int uses_sample(const stylize_ctx *ctx, int W, int H)
{
    const stylize_frame f = {.width = W, .height = H};
    int tw, th;
    thumb_size(ctx, &f, &tw, &th);
    return ctx->opts.tin_stats == STYLIZE_TIN_STATS_SAMPLE && exact_supported(ctx) && !(tw == W && th == H);
}

/* Exact mode ignores `overlap`: its passes need the receptive radius. */
static int mode_overlap(const stylize_ctx *ctx, stylize_mode mode)
{
    return mode == STYLIZE_MODE_EXACT ? -1 : ctx->opts.overlap;
}

static size_t tiles_memory(const stylize_ctx *ctx, int W, int H, stylize_mode mode)
{
    const sty_engine *e = ctx->engine;
    const stylize_options *o = &ctx->opts;
    int tile = mode == STYLIZE_MODE_FULL ? 0 : o->tile;
    tiling t = plan_tiles(ctx, W, H, tile, mode_overlap(ctx, mode));
    size_t need = e->ops->workspace_bytes(e->model, t.max_ch, t.max_cw);
    need += 2 * sizeof(float) * 3 * (size_t)t.max_cw * (size_t)t.max_ch; /* crop in and out */
    if (mode == STYLIZE_MODE_TIN && uses_sample(ctx, W, H)) { /* the backend's buffers serve both */
        const sample_plan sp = plan_sample(ctx, W, H);
        const size_t sample_ws = e->ops->workspace_bytes(e->model, sp.side, sp.side);
        const size_t side2 = (size_t)sp.side * sp.side, crop2 = (size_t)t.max_cw * t.max_ch;
        need = need > sample_ws ? need : sample_ws;
        return need + (side2 > crop2 ? sizeof(float) * 3 * (side2 - crop2) : 0); /* crop_in grows to a tile */
    }
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

static size_t mode_memory(const stylize_ctx *ctx, int W, int H, stylize_mode mode)
{
    size_t need = tiles_memory(ctx, W, H, mode), crop;
    if (mode == STYLIZE_MODE_EXACT) {
        size_t frame = plan_exact_cache(ctx, W, H, need, NULL, &crop);
        need += 2 * sizeof(float) * (frame + crop);
    }
    if (mode == STYLIZE_MODE_TIN && uses_sample(ctx, W, H)) {
        const sample_plan sp = plan_sample(ctx, W, H);
        need += 2 * sizeof(float) * plan_sample_cache(ctx, &sp, need, NULL);
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
    return o->still && exact_supported(ctx) ? STYLIZE_MODE_EXACT : STYLIZE_MODE_TIN;
}

size_t sty_memory_needed(const stylize_ctx *ctx, int W, int H)
{
    return mode_memory(ctx, W, H, sty_resolve_mode(ctx, W, H));
}

/* The statistics of the frame's area-downscaled thumbnail of tw x th. */
static int one_thumbnail_stats(stylize_ctx *ctx, const stylize_frame *in, int tw, int th, float *stats)
{
    sty_engine *e = ctx->engine;
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

static int exact_partial_stats(stylize_ctx *ctx, const stylize_frame *in, float *stats, int n_norms);
static int sample_stats(stylize_ctx *ctx, const stylize_frame *in, float *stats);

/* tin's statistics: the thumbnail's, then (exact_layers > 0, thumbnail
 * smaller than the frame) the first exact_layers instance-norm layers'
 * replaced by the frame's exact statistics. A thumbnail has more detail per
 * pixel than the frame, so the early, full-resolution layers are where its
 * statistics are furthest off (first-layer variances 15-65 % too high), and
 * they are the cheapest to compute exactly (one pass over the tiles per
 * layer up to that layer; the first layer is 5 % of the network). */
int sty_thumbnail_stats(stylize_ctx *ctx, const stylize_frame *in, float *stats)
{
    const sty_model *m = ctx->engine->model;
    int tw, th;
    thumb_size(ctx, in, &tw, &th);
    if (uses_sample(ctx, in->width, in->height))
        return sample_stats(ctx, in, stats);
    int r = one_thumbnail_stats(ctx, in, tw, th, stats);
    if (r || ctx->opts.exact_layers <= 0 || (tw == in->width && th == in->height) || !exact_supported(ctx))
        return r;
    return exact_partial_stats(ctx, in, stats, ctx->opts.exact_layers < m->n_norms ? ctx->opts.exact_layers
                                                                                   : m->n_norms);
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

/* One pass of exact mode over the tiles: from the frame (start 0) or the
 * cached boundary `start`; saving boundary `save` (0: none) into save_buf;
 * then either the moments of norm layer stop_norm (merged into count,
 * mean, m2) or, with out != NULL, the frame itself. */
typedef struct exact_pass {
    int start, save, stop_norm;
    const float *start_buf;
    float *save_buf;
    double count, *mean, *m2;
} exact_pass;

/* Merge one region's moments (nb positions; per channel the mean, then the
 * sum of squared deviations) into the pass's: Chan et al.'s pairwise update. */
static void merge_moments(exact_pass *ps, const double *moments, int nc, double nb)
{
    const double n = ps->count + nb;
    for (int c = 0; c < nc; c++) {
        if (ps->count == 0) {
            ps->mean[c] = moments[c];
            ps->m2[c] = moments[nc + c];
            continue;
        }
        const double d = moments[c] - ps->mean[c];
        ps->mean[c] += d * nb / n;
        ps->m2[c] += moments[nc + c] + d * d * ps->count * nb / n;
    }
    ps->count = n;
}

/* Write a finished pass's statistics for norm layer ni. */
static void store_stats(const sty_model *m, int ni, const exact_pass *ps, float *stats)
{
    const sty_norm *nm = &m->norms[ni];
    for (int c = 0; c < nm->c; c++) {
        stats[nm->stats_offset + c] = (float)ps->mean[c];
        stats[nm->stats_offset + nm->c + c] = (float)(ps->m2[c] / ps->count);
    }
}

/* Copy rows/columns of a layer's activation between a crop and the frame's cache. */
static void copy_block(float *frame_buf, int frame_w, const float *crop_buf, float *crop_out, int crop_w, int c,
                       int fy, int fx, int cy, int cx, int rows, int cols, int to_frame)
{
    for (int y = 0; y < rows; y++) {
        float *f = frame_buf + (((size_t)(fy + y) * frame_w) + (size_t)fx) * c;
        size_t co = (((size_t)(cy + y) * crop_w) + (size_t)cx) * c;
        if (to_frame)
            memcpy(f, crop_buf + co, sizeof(float) * (size_t)cols * c);
        else
            memcpy(crop_out + co, f, sizeof(float) * (size_t)cols * c);
    }
}

static int exact_run_pass(stylize_ctx *ctx, const stylize_frame *in, stylize_frame *out, const tiling *t,
                          float *stats, exact_pass *ps)
{
    sty_engine *e = ctx->engine;
    const sty_model *m = e->model;
    const int W = in->width, H = in->height;
    const sty_post post = {.strength = ctx->opts.strength, .preserve_color = ctx->opts.preserve_color};
    int snum = 1, sden = 1, vnum = 1, vden = 1, knum = 1, kden = 1, start_c = 0, save_c = 0, start_w = 0, save_w = 0;
    if (ps->start) {
        sty_layer_scale(m, ps->start - 1, &snum, &sden);
        start_c = m->convs[m->layers[ps->start - 1].conv].cout;
        start_w = layer_size(m, ps->start - 1, W);
    }
    if (ps->save) {
        sty_layer_scale(m, ps->save - 1, &vnum, &vden);
        save_c = m->convs[m->layers[ps->save - 1].conv].cout;
        save_w = layer_size(m, ps->save - 1, W);
    }
    int stop_layer = -1, nc = 0;
    if (!out) {
        for (int li = 0; li < m->n_layers; li++)
            if (m->layers[li].norm == ps->stop_norm)
                stop_layer = li;
        sty_layer_scale(m, stop_layer, &knum, &kden);
        nc = m->norms[ps->stop_norm].c;
    }
    double moments[2 * STY_MAX_WIDTH];
    for (int y0 = 0; y0 < H; y0 += t->step_y) {
        const int y1 = y0 + t->step_y < H ? y0 + t->step_y : H;
        const int cy0 = y0 - t->overlap > 0 ? y0 - t->overlap : 0;
        const int cy1 = y1 + t->overlap < H ? y1 + t->overlap : H;
        for (int x0 = 0; x0 < W; x0 += t->step_x) {
            const int x1 = x0 + t->step_x < W ? x0 + t->step_x : W;
            const int cx0 = x0 - t->overlap > 0 ? x0 - t->overlap : 0;
            const int cx1 = x1 + t->overlap < W ? x1 + t->overlap : W;
            const int ch = cy1 - cy0, cw = cx1 - cx0;
            sty_run r = {.in = ctx->crop_in, .h = ch, .w = cw, .norm = STY_NORM_FIXED, .stats = stats,
                         .start_layer = ps->start, .save_layer = ps->save - 1,
                         .save = ps->save ? ctx->crop_act_out : NULL};
            if (ps->start) {
                const int ah = layer_size(m, ps->start - 1, ch), aw = layer_size(m, ps->start - 1, cw);
                copy_block((float *)ps->start_buf, start_w, NULL, ctx->crop_act_in, aw, start_c,
                           cy0 / sden * snum, cx0 / sden * snum, 0, 0, ah, aw, 0);
                r.act = ctx->crop_act_in;
            } else {
                sty_read_rgb(in, cx0, cy0, cw, ch, ctx->crop_in);
            }
            if (out) {
                r.out = ctx->crop_out;
                r.out_h = y1 - cy0;
                r.out_w = x1 - cx0;
            } else {
                r.moments = moments;
                r.stop_norm = ps->stop_norm;
                layer_region(m, stop_layer, knum, kden, cy0, cy1, y0, y1, H, &r.ry0, &r.ry1);
                layer_region(m, stop_layer, knum, kden, cx0, cx1, x0, x1, W, &r.rx0, &r.rx1);
            }
            int ret = e->ops->run(e->backend, &r);
            if (ret)
                return sty_set_error(ctx, ret, "%s backend failed on a %dx%d tile (exact mode, %s): %s",
                                     e->ops->name, cw, ch, out ? "output" : "statistics", stylize_strerror(ret));
            if (ps->save) {
                int ry0, ry1, rx0, rx1;
                layer_region(m, ps->save - 1, vnum, vden, cy0, cy1, y0, y1, H, &ry0, &ry1);
                layer_region(m, ps->save - 1, vnum, vden, cx0, cx1, x0, x1, W, &rx0, &rx1);
                copy_block(ps->save_buf, save_w, ctx->crop_act_out, NULL, layer_size(m, ps->save - 1, cw), save_c,
                           cy0 / vden * vnum + ry0, cx0 / vden * vnum + rx0, ry0, rx0, ry1 - ry0, rx1 - rx0, 1);
            }
            if (out) {
                const float *kept = ctx->crop_out + ((size_t)(y0 - cy0) * r.out_w + (size_t)(x0 - cx0)) * 3;
                sty_write_rgb(in, out, x0, y0, x1, y1, kept, (long)r.out_w * 3, &post);
                continue;
            }
            merge_moments(ps, moments, nc, (double)(r.ry1 - r.ry0) * (r.rx1 - r.rx0));
        }
    }
    return 0;
}

static int grow_act(stylize_ctx *ctx, float **buf, size_t *cap, size_t n)
{
    if (grow_floats(buf, cap, n ? n : 1))
        return sty_set_error(ctx, STYLIZE_ERR_NOMEM, "out of memory for exact mode's activation cache (%zu MiB)",
                             (n * sizeof(float)) >> 20);
    return 0;
}

/* Exact statistics (see the top of the file) into stats; with out != NULL,
 * then the frame. */
static int exact_frame(stylize_ctx *ctx, const stylize_frame *in, stylize_frame *out, float *stats)
{
    sty_engine *e = ctx->engine;
    const sty_model *m = e->model;
    const int W = in->width, H = in->height, align = tile_align(ctx);
    if (!e->ops->exact)
        return sty_set_error(ctx, STYLIZE_ERR_UNSUPPORTED, "mode=exact is not implemented by the %s backend; use "
                             "backend=dnnl or backend=ref (or mode=tin)", e->ops->name);
    if (m->arch != STY_ARCH_CLASSIC)
        return sty_set_error(ctx, STYLIZE_ERR_UNSUPPORTED, "mode=exact does not run compact models yet; use "
                             "mode=full (or mode=tin)");
    for (int li = 0; li < m->n_layers; li++) {
        int num, den;
        sty_layer_scale(m, li, &num, &den);
        if (align % den)
            return sty_set_error(ctx, STYLIZE_ERR_UNSUPPORTED, "mode=exact: layer %d's stride %d does not divide "
                                 "the tile alignment %d", li, den, align);
    }
    const tiling t = plan_tiles(ctx, W, H, ctx->opts.tile, -1);
    unsigned char eligible[1024];
    if (m->n_layers > 1024)
        return sty_set_error(ctx, STYLIZE_ERR_UNSUPPORTED, "mode=exact: more than 1024 layers");
    size_t crop_act;
    const size_t cache_floats = plan_exact_cache(ctx, W, H, tiles_memory(ctx, W, H, STYLIZE_MODE_EXACT), eligible,
                                                 &crop_act);
    const size_t crop_floats = (size_t)t.max_cw * t.max_ch * 3;
    if (grow_floats(&ctx->crop_in, &ctx->crop_in_cap, crop_floats) ||
        grow_floats(&ctx->crop_out, &ctx->crop_out_cap, crop_floats))
        return sty_set_error(ctx, STYLIZE_ERR_NOMEM, "out of memory for %dx%d tiles", t.max_cw, t.max_ch);
    if (cache_floats) {
        int r;
        if ((r = grow_act(ctx, &ctx->act[0], &ctx->act_cap[0], cache_floats)) ||
            (r = grow_act(ctx, &ctx->act[1], &ctx->act_cap[1], cache_floats)) ||
            (r = grow_act(ctx, &ctx->crop_act_in, &ctx->crop_act_in_cap, crop_act)) ||
            (r = grow_act(ctx, &ctx->crop_act_out, &ctx->crop_act_out_cap, crop_act)))
            return r;
    }
    memset(stats, 0, m->stats_size * sizeof(float));
    double mean[STY_MAX_WIDTH], m2[STY_MAX_WIDTH];
    /* STYLIZE_EXACT_PROFILE=1: one line per pass on stderr (where the time goes) */
    const int profile = getenv("STYLIZE_EXACT_PROFILE") && atoi(getenv("STYLIZE_EXACT_PROFILE")) > 0;
    struct timespec t0, t1;
    int cur_b = 0, cur_buf = 0; /* the filled boundary (0: none) and its buffer */
    for (int li = 0; li <= m->n_layers; li++) {
        const int last = li == m->n_layers; /* the pass that writes the frame */
        if (!last && m->layers[li].norm < 0)
            continue;
        if (last && !out)
            break;
        int save = 0;
        for (int b = cur_b + 1; !last && b <= li; b++)
            if (eligible[b] && cache_floats)
                save = b;
        exact_pass ps = {.start = cur_b, .save = save, .stop_norm = last ? -1 : m->layers[li].norm,
                         .start_buf = ctx->act[cur_buf], .save_buf = ctx->act[!cur_buf], .mean = mean, .m2 = m2};
        if (profile)
            clock_gettime(CLOCK_MONOTONIC, &t0);
        int r = exact_run_pass(ctx, in, last ? out : NULL, &t, stats, &ps);
        if (r)
            return r;
        if (profile) {
            clock_gettime(CLOCK_MONOTONIC, &t1);
            fprintf(stderr, "exact %dx%d: %s%-2d layers %2d..%-2d (from %s)%s %8.1f ms\n", W, H,
                    last ? "output  " : "norm ", last ? 0 : ps.stop_norm, cur_b, last ? m->n_layers - 1 : li,
                    cur_b ? "cache" : "frame", save ? " +cache" : "       ",
                    (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
        }
        if (save) {
            cur_b = save;
            cur_buf = !cur_buf;
        }
        if (last)
            break;
        store_stats(m, ps.stop_norm, &ps, stats);
    }
    return 0;
}

/* The exact statistics of the first n_norms instance-norm layers (the
 * others in stats are kept), with no activation cache and with each pass's
 * context only the receptive radius of the layers it runs, so it needs no
 * more memory than tin's tiles. */
static int exact_partial_stats(stylize_ctx *ctx, const stylize_frame *in, float *stats, int n_norms)
{
    const sty_model *m = ctx->engine->model;
    const int W = in->width, H = in->height;
    double mean[STY_MAX_WIDTH], m2[STY_MAX_WIDTH];
    for (int li = 0; li < m->n_layers; li++) {
        const int ni = m->layers[li].norm;
        if (ni < 0)
            continue;
        if (ni >= n_norms)
            break;
        const tiling t = plan_tiles(ctx, W, H, ctx->opts.tile, sty_receptive_radius_upto(m, li + 1));
        const size_t crop_floats = (size_t)t.max_cw * t.max_ch * 3;
        if (grow_floats(&ctx->crop_in, &ctx->crop_in_cap, crop_floats))
            return sty_set_error(ctx, STYLIZE_ERR_NOMEM, "out of memory for %dx%d tiles", t.max_cw, t.max_ch);
        exact_pass ps = {.stop_norm = ni, .mean = mean, .m2 = m2};
        int r = exact_run_pass(ctx, in, NULL, &t, stats, &ps);
        if (r)
            return r;
        store_stats(m, ni, &ps, stats);
    }
    return 0;
}

/* The sample estimator's passes (see plan_sample); exact_layers > 0 first
 * takes the first norm layers' statistics from the whole frame, exactly. */
static int sample_stats(stylize_ctx *ctx, const stylize_frame *in, float *stats)
{
    sty_engine *e = ctx->engine;
    const sty_model *m = e->model;
    const int W = in->width, H = in->height;
    const sample_plan sp = plan_sample(ctx, W, H);
    const int side = sp.side;
    unsigned char eligible[1024];
    if (m->n_layers > 1024)
        return sty_set_error(ctx, STYLIZE_ERR_UNSUPPORTED, "tin_stats=sample: more than 1024 layers");
    const size_t cache_floats = plan_sample_cache(ctx, &sp, tiles_memory(ctx, W, H, STYLIZE_MODE_TIN), eligible);
    if (grow_floats(&ctx->crop_in, &ctx->crop_in_cap, (size_t)side * side * 3))
        return sty_set_error(ctx, STYLIZE_ERR_NOMEM, "out of memory for %dx%d sample tiles", side, side);
    if (cache_floats) {
        int r;
        if ((r = grow_act(ctx, &ctx->act[0], &ctx->act_cap[0], cache_floats)) ||
            (r = grow_act(ctx, &ctx->act[1], &ctx->act_cap[1], cache_floats)))
            return r;
    }
    const int n_exact = ctx->opts.exact_layers < m->n_norms ? ctx->opts.exact_layers : m->n_norms;
    if (n_exact > 0) {
        int r = exact_partial_stats(ctx, in, stats, n_exact);
        if (r)
            return r;
    }
    double mean[STY_MAX_WIDTH], m2[STY_MAX_WIDTH], moments[2 * STY_MAX_WIDTH];
    const int profile = getenv("STYLIZE_EXACT_PROFILE") && atoi(getenv("STYLIZE_EXACT_PROFILE")) > 0;
    struct timespec t0, t1;
    int cur_b = 0, cur_buf = 0; /* the filled boundary (0: none) and its buffer */
    for (int li = 0; li < m->n_layers; li++) {
        const int ni = m->layers[li].norm;
        if (ni < n_exact) /* no norm here, or known exactly */
            continue;
        if (profile)
            clock_gettime(CLOCK_MONOTONIC, &t0);
        int save = 0;
        for (int b = cur_b + 1; b <= li; b++)
            if (eligible[b] && cache_floats)
                save = b;
        const size_t start_stride = cur_b ? boundary_floats(m, cur_b, side, side) : 0;
        const size_t save_stride = save ? boundary_floats(m, save, side, side) : 0;
        const int rows = layer_size(m, li, side);
        exact_pass ps = {.stop_norm = ni, .mean = mean, .m2 = m2};
        for (int i = 0; i < sp.n; i++) {
            sty_run r = {.in = ctx->crop_in, .h = side, .w = side, .norm = STY_NORM_FIXED, .stats = stats,
                         .moments = moments, .stop_norm = ni, .ry0 = 0, .ry1 = rows, .rx0 = 0, .rx1 = rows,
                         .start_layer = cur_b, .save_layer = save - 1};
            if (cur_b) {
                r.act = ctx->act[cur_buf] + (size_t)i * start_stride;
            } else {
                int x0, y0;
                sample_origin(ctx, &sp, W, H, i, &x0, &y0);
                sty_read_rgb(in, x0, y0, side, side, ctx->crop_in);
            }
            if (save)
                r.save = ctx->act[!cur_buf] + (size_t)i * save_stride;
            int ret = e->ops->run(e->backend, &r);
            if (ret)
                return sty_set_error(ctx, ret, "%s backend failed on a %dx%d sample tile: %s", e->ops->name, side,
                                     side, stylize_strerror(ret));
            merge_moments(&ps, moments, m->norms[ni].c, (double)rows * rows);
        }
        if (profile) {
            clock_gettime(CLOCK_MONOTONIC, &t1);
            fprintf(stderr, "sample %dx%d, %d tiles of %d: norm %-2d layers %2d..%-2d (from %s)%s %8.1f ms\n", W, H,
                    sp.n, side, ni, cur_b, li, cur_b ? "cache" : "frame", save ? " +cache" : "       ",
                    (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
        }
        if (save) {
            cur_b = save;
            cur_buf = !cur_buf;
        }
        store_stats(m, ni, &ps, stats);
    }
    return 0;
}

int sty_frame_stats(stylize_ctx *ctx, const stylize_frame *in, float *stats)
{
    sty_engine *e = ctx->engine;
    const stylize_mode mode = ctx->opts.mode == STYLIZE_MODE_AUTO
                                  ? sty_resolve_mode(ctx, in->width, in->height) : STYLIZE_MODE_TIN;
    if (mode == STYLIZE_MODE_EXACT)
        return exact_frame(ctx, in, NULL, stats);
    if (mode != STYLIZE_MODE_FULL)
        return sty_thumbnail_stats(ctx, in, stats);
    if (ctx->opts.max_memory && mode_memory(ctx, in->width, in->height, mode) > ctx->opts.max_memory)
        return sty_set_error(ctx, STYLIZE_ERR_TOO_LARGE, "the statistics of a %dx%d frame need more than "
                             "max_memory", in->width, in->height);
    const size_t n = (size_t)in->width * in->height * 3;
    if (grow_floats(&ctx->crop_in, &ctx->crop_in_cap, n))
        return sty_set_error(ctx, STYLIZE_ERR_NOMEM, "out of memory for a %dx%d frame", in->width, in->height);
    sty_read_rgb(in, 0, 0, in->width, in->height, ctx->crop_in);
    sty_run r = {.in = ctx->crop_in, .h = in->height, .w = in->width, .norm = STY_NORM_SELF, .stats = stats,
                 .stats_only = 1};
    int ret = e->ops->run(e->backend, &r);
    if (ret)
        return sty_set_error(ctx, ret, "%s backend failed on a %dx%d frame: %s", e->ops->name, in->width,
                             in->height, stylize_strerror(ret));
    return 0;
}

/* tin on a frame that is its own thumbnail and fits one tile: the thumbnail
 * pass would run the network on the very crop the tile pass runs, with the
 * statistics that pass finds itself, so one pass (full's) draws the same frame
 * (within rounding) at half the cost. Not when smoothing would change the
 * statistics the frame is drawn with. */
static int tin_is_one_pass(const stylize_ctx *ctx, int W, int H)
{
    const stylize_frame f = {.width = W, .height = H};
    int tw, th;
    thumb_size(ctx, &f, &tw, &th);
    if (tw != W || th != H || (ctx->opts.smooth > 0 && ctx->engine->smoother.valid))
        return 0;
    const tiling t = plan_tiles(ctx, W, H, ctx->opts.tile, ctx->opts.overlap);
    return t.step_x >= W && t.step_y >= H;
}

/* The frame as one crop: its statistics are the frame's, kept for
 * stylize_get_stats. */
static int run_full(stylize_ctx *ctx, const stylize_frame *in, stylize_frame *out)
{
    sty_engine *e = ctx->engine;
    int r = run_tiles(ctx, in, out, 0, ctx->opts.overlap, STY_NORM_SELF, e->thumb_stats);
    if (!r) {
        memcpy(e->used_stats, e->thumb_stats, e->model->stats_size * sizeof(float));
        e->have_used = 1;
    }
    return r;
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
    case STYLIZE_MODE_FULL:
        return run_full(ctx, in, out);
    case STYLIZE_MODE_PATCH:
        return run_tiles(ctx, in, out, ctx->opts.tile, ctx->opts.overlap, STY_NORM_SELF, NULL);
    case STYLIZE_MODE_EXACT: {
        int r = exact_frame(ctx, in, out, e->thumb_stats);
        if (r)
            return r;
        memcpy(e->used_stats, e->thumb_stats, e->model->stats_size * sizeof(float));
        e->have_used = 1;
        return 0;
    }
    default:
        break;
    }
    const size_t n = e->model->stats_size;
    if (!e->have_next && tin_is_one_pass(ctx, in->width, in->height)) {
        int r = run_full(ctx, in, out);
        if (!r)
            sty_smoother_update(&e->smoother, e->model, e->thumb_stats, ctx->opts.smooth, ctx->opts.scene_cut);
        return r;
    }
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
