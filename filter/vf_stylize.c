/*
 * Neural style transfer filter: a thin adapter over libstylize.
 *
 * This file is part of the stylize project and is built inside FFmpeg's
 * libavfilter (7.1, 8.1 and 9.0): the build symlinks it into
 * libavfilter/vf_stylize.c of a tree patched by patches/<version>/ (see
 * docs/FFMPEG.md). All pixel work happens in libstylize; this file maps
 * AVFrames to stylize_frame views, forwards options and commands, and turns
 * libstylize's status codes into AVERROR codes with a message.
 *
 * When the model is loaded: lazily, in the input's config_props, once per
 * filter instance. ffmpeg (the CLI) creates and initializes every
 * filtergraph once just to learn its inputs and outputs and throws it away
 * unconfigured, and `ffmpeg -h filter=stylize` never configures one, so
 * loading in init would read and set up the model for nothing. init only
 * checks (cheaply, with stylize_find_model) that the model exists, so a
 * wrong name still fails at once with a clear message. A graph that is
 * rebuilt (ffplay on a size change, ffmpeg on -reinit_filter) has new filter
 * instances, which load the model again when they are configured.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stylize.h>

#include "libavutil/avstring.h"
#include "libavutil/frame.h"
#include "libavutil/mem.h"
#include "libavutil/opt.h"
#include "libavutil/pixdesc.h"
#include "libavutil/rational.h"

#include "avfilter.h"
#include "filters.h"
#include "formats.h"
#include "version.h"
#include "video.h"

#if LIBAVFILTER_VERSION_MAJOR >= 11
/* libavfilter 11 (FFmpeg 8.x) moved the private callbacks into FFFilter,
 * which wraps the public AVFilter as its member `p`. */
#define STYLIZE_FFFILTER 1
#else
#define STYLIZE_FFFILTER 0
#endif

enum { STATS_OFF, STATS_WRITE, STATS_READ };

typedef struct StylizeContext {
    const AVClass *class;

    /* options */
    char *model;
    int mode;
    int thumb;
    int tile;
    int overlap;
    float strength;
    int preserve_color;
    float smooth;
    float scene_cut;
    int threads;
    int backend;
    int precision;
    int64_t max_memory;
    int still;
    int exact_layers;
    int tin_stats;
    char *stats_file;
    int stats_mode;
    int stats_window;

    stylize_ctx *sctx;      ///< NULL until the input is configured
    /* Two-pass statistics (libstylize's stats file, see stylize.h): pass 1
     * appends every frame's thumbnail statistics keyed by pts, pass 2 reads
     * those of each frame's pts (window-averaged) instead. */
    stylize_stats_writer *stats_w; ///< stats_mode=write
    stylize_stats_reader *stats_r; ///< stats_mode=read
    float *stats_buf;       ///< one frame's statistics
    size_t stats_n;         ///< floats in stats_buf (stylize_stats_size)
    int64_t stats_frames;   ///< frames written (pass 1)
    AVFrame *tmp_in;        ///< copy of an input with negative linesizes
    AVFrame *tmp_out;       ///< output for a downstream buffer with negative linesizes
    int last_w, last_h;     ///< size the mode was last reported for (0: report at the next frame)
    int last_mode;          ///< the mode libstylize used for it (mode=auto resolved)
} StylizeContext;

/* The option fields that stylize_set_options takes, saved so that a rejected
 * runtime command can restore them. */
typedef struct StylizeOptFields {
    int mode, thumb, tile, overlap;
    float strength;
    int preserve_color;
    float smooth, scene_cut;
    int threads, backend, precision;
    int64_t max_memory;
    int still, exact_layers, tin_stats;
} StylizeOptFields;

static void save_fields(const StylizeContext *s, StylizeOptFields *f)
{
    f->mode = s->mode;
    f->thumb = s->thumb;
    f->tile = s->tile;
    f->overlap = s->overlap;
    f->strength = s->strength;
    f->preserve_color = s->preserve_color;
    f->smooth = s->smooth;
    f->scene_cut = s->scene_cut;
    f->threads = s->threads;
    f->backend = s->backend;
    f->precision = s->precision;
    f->max_memory = s->max_memory;
    f->still = s->still;
    f->exact_layers = s->exact_layers;
    f->tin_stats = s->tin_stats;
}

static void restore_fields(StylizeContext *s, const StylizeOptFields *f)
{
    s->mode = f->mode;
    s->thumb = f->thumb;
    s->tile = f->tile;
    s->overlap = f->overlap;
    s->strength = f->strength;
    s->preserve_color = f->preserve_color;
    s->smooth = f->smooth;
    s->scene_cut = f->scene_cut;
    s->threads = f->threads;
    s->backend = f->backend;
    s->precision = f->precision;
    s->max_memory = f->max_memory;
    s->still = f->still;
    s->exact_layers = f->exact_layers;
    s->tin_stats = f->tin_stats;
}

static void fill_options(const StylizeContext *s, stylize_options *o)
{
    stylize_options_default(o);
    o->mode = (stylize_mode)s->mode;
    o->thumb = s->thumb;
    o->tile = s->tile;
    o->overlap = s->overlap;
    o->strength = s->strength;
    o->preserve_color = s->preserve_color;
    o->smooth = s->smooth;
    o->scene_cut = s->scene_cut;
    o->threads = s->threads;
    o->backend = (stylize_backend)s->backend;
    o->precision = (stylize_precision)s->precision;
    o->max_memory = (size_t)s->max_memory;
    o->still = s->still;
    o->exact_layers = s->exact_layers;
    o->tin_stats = (stylize_tin_stats)s->tin_stats;
}

static int status_to_averror(int status)
{
    switch (status) {
    case STYLIZE_OK:                return 0;
    case STYLIZE_ERR_INVALID_ARG:   return AVERROR(EINVAL);
    case STYLIZE_ERR_IO:            return AVERROR(ENOENT);
    case STYLIZE_ERR_MODEL:         return AVERROR_INVALIDDATA;
    case STYLIZE_ERR_NOMEM:         return AVERROR(ENOMEM);
    case STYLIZE_ERR_UNSUPPORTED:   return AVERROR(ENOSYS);
    case STYLIZE_ERR_TOO_LARGE:     return AVERROR(ENOMEM);
    case STYLIZE_ERR_BACKEND:
    default:                        return AVERROR_EXTERNAL;
    }
}

static int pixfmt_to_stylize(int format, stylize_pixfmt *out)
{
    switch (format) {
    case AV_PIX_FMT_RGB24: *out = STYLIZE_PIX_RGB24; return 0;
    case AV_PIX_FMT_BGR24: *out = STYLIZE_PIX_BGR24; return 0;
    case AV_PIX_FMT_RGBA:  *out = STYLIZE_PIX_RGBA;  return 0;
    case AV_PIX_FMT_BGRA:  *out = STYLIZE_PIX_BGRA;  return 0;
    case AV_PIX_FMT_ARGB:  *out = STYLIZE_PIX_ARGB;  return 0;
    case AV_PIX_FMT_ABGR:  *out = STYLIZE_PIX_ABGR;  return 0;
    case AV_PIX_FMT_GBRP:  *out = STYLIZE_PIX_GBRP;  return 0;
    case AV_PIX_FMT_GBRAP: *out = STYLIZE_PIX_GBRAP; return 0;
    default:               return AVERROR(ENOSYS);
    }
}

/* The formats libstylize reads and writes natively; FFmpeg inserts a scale
 * filter to convert anything else (yuv420p, ...). */
static const enum AVPixelFormat pix_fmts[] = {
    AV_PIX_FMT_RGB24, AV_PIX_FMT_BGR24,
    AV_PIX_FMT_RGBA,  AV_PIX_FMT_BGRA,
    AV_PIX_FMT_ARGB,  AV_PIX_FMT_ABGR,
    AV_PIX_FMT_GBRP,  AV_PIX_FMT_GBRAP,
    AV_PIX_FMT_NONE
};

static int has_negative_linesize(const AVFrame *f)
{
    for (int i = 0; i < 4 && f->data[i]; i++)
        if (f->linesize[i] < 0)
            return 1;
    return 0;
}

/* A stylize_frame view of an AVFrame's planes (no copy). */
static int map_frame(AVFilterContext *ctx, const AVFrame *f, stylize_frame *v)
{
    int ret = pixfmt_to_stylize(f->format, &v->format);
    if (ret < 0) {
        av_log(ctx, AV_LOG_ERROR, "pixel format %s is not supported by libstylize\n",
               av_get_pix_fmt_name(f->format));
        return ret;
    }
    v->width = f->width;
    v->height = f->height;
    for (int i = 0; i < 4; i++) {
        v->data[i] = f->data[i];
        v->linesize[i] = f->data[i] ? f->linesize[i] : 0;
    }
    return 0;
}

/* (Re)allocate *tmp as a frame with positive linesizes like ref. */
static int get_tmp_frame(AVFrame **tmp, const AVFrame *ref)
{
    AVFrame *t = *tmp;
    if (t && t->width == ref->width && t->height == ref->height && t->format == ref->format &&
        av_frame_is_writable(t))
        return 0;
    av_frame_free(tmp);
    if (!(t = av_frame_alloc()))
        return AVERROR(ENOMEM);
    t->format = ref->format;
    t->width = ref->width;
    t->height = ref->height;
    if (av_frame_get_buffer(t, 0) < 0) {
        av_frame_free(&t);
        return AVERROR(ENOMEM);
    }
    *tmp = t;
    return 0;
}

static int load_model(AVFilterContext *ctx)
{
    StylizeContext *s = ctx->priv;
    stylize_options opts;
    stylize_model_info info;
    char err[1024] = "";
    int ret;

    fill_options(s, &opts);
    ret = stylize_create(s->model, &opts, &s->sctx, err, sizeof(err));
    if (ret < 0) {
        av_log(ctx, AV_LOG_ERROR, "cannot load model '%s': %s\n", s->model,
               err[0] ? err : stylize_strerror(ret));
        s->sctx = NULL;
        return status_to_averror(ret);
    }
    stylize_get_model_info(s->sctx, &info);
    av_log(ctx, AV_LOG_VERBOSE, "libstylize %s: model %s%s%s%s, %zu parameters, "
           "mode %s, backend %s, threads %d\n",
           stylize_version(), info.path,
           info.style && info.style[0] ? " (style " : "", info.style ? info.style : "",
           info.style && info.style[0] ? ")" : "", info.parameters,
           stylize_mode_name((stylize_mode)s->mode), stylize_backend_name((stylize_backend)s->backend),
           s->threads);
    return 0;
}

/* ---- two-pass statistics: glue to libstylize's stats file ------------- */

static int stats_setup(AVFilterContext *ctx, AVRational tb)
{
    StylizeContext *s = ctx->priv;
    stylize_stats_info info;
    char err[1024] = "";
    int ret;

    s->stats_n = stylize_stats_size(s->sctx);
    av_freep(&s->stats_buf);
    if (!(s->stats_buf = av_malloc_array(s->stats_n, sizeof(float))))
        return AVERROR(ENOMEM);
    if (s->stats_mode == STATS_WRITE) {
        ret = stylize_stats_writer_open(s->sctx, s->stats_file, tb.num, tb.den, &s->stats_w, err, sizeof(err));
    } else {
        /* Scene cuts only matter to a window; without one, skip their scan of the file. */
        ret = stylize_stats_reader_open(s->sctx, s->stats_file, s->stats_window > 0 ? s->scene_cut : 0.0f,
                                        &s->stats_r, err, sizeof(err));
    }
    if (ret < 0) {
        av_log(ctx, AV_LOG_ERROR, "%s\n", err[0] ? err : stylize_strerror(ret));
        return status_to_averror(ret);
    }
    if (s->stats_r) {
        stylize_stats_reader_info(s->stats_r, &info);
        av_log(ctx, AV_LOG_VERBOSE, "statistics of %"PRId64" frames from %s, time base %d/%d, window %d, "
               "%"PRId64" scene cuts\n", info.frames, s->stats_file, info.tb_num, info.tb_den,
               s->stats_window, info.scene_cuts);
    }
    return 0;
}

/* Pass 1 finished: the writer records the frame count, which marks the file complete. */
static void stats_close_write(AVFilterContext *ctx)
{
    StylizeContext *s = ctx->priv;
    char err[1024] = "";
    int ret = stylize_stats_writer_close(s->stats_w, err, sizeof(err));
    s->stats_w = NULL;
    if (ret < 0)
        av_log(ctx, AV_LOG_ERROR, "%s\n", err);
    else
        av_log(ctx, AV_LOG_VERBOSE, "wrote statistics of %"PRId64" frames to %s\n", s->stats_frames, s->stats_file);
}

static int stats_write_frame(AVFilterContext *ctx, const AVFrame *in)
{
    StylizeContext *s = ctx->priv;
    char err[1024] = "";
    int ret;

    if (in->pts == AV_NOPTS_VALUE) {
        av_log(ctx, AV_LOG_ERROR, "stats_mode=write: frame %"PRId64" has no timestamp; "
               "statistics are keyed by pts\n", s->stats_frames);
        return AVERROR(EINVAL);
    }
    ret = stylize_stats_writer_append(s->stats_w, in->pts, s->stats_buf, s->stats_n, err, sizeof(err));
    if (ret < 0) {
        av_log(ctx, AV_LOG_ERROR, "%s\n", err);
        return status_to_averror(ret);
    }
    s->stats_frames++;
    return 0;
}

/* Pass 2: impose the (window-averaged) statistics of the frame at pts. */
static int stats_lookup(AVFilterContext *ctx, int64_t pts, AVRational tb)
{
    StylizeContext *s = ctx->priv;
    char err[1024] = "";
    int ret;

    if (pts == AV_NOPTS_VALUE) {
        av_log(ctx, AV_LOG_ERROR, "stats_mode=read: a frame has no timestamp; statistics are keyed by pts\n");
        return AVERROR(EINVAL);
    }
    ret = stylize_stats_reader_lookup(s->stats_r, pts, tb.num, tb.den, s->stats_window,
                                      s->stats_buf, s->stats_n, err, sizeof(err));
    if (ret < 0) {
        av_log(ctx, AV_LOG_ERROR, "%s\n", err);
        return ret == STYLIZE_ERR_INVALID_ARG ? AVERROR_INVALIDDATA : status_to_averror(ret);
    }
    ret = stylize_set_stats(s->sctx, s->stats_buf, s->stats_n);
    if (ret < 0) {
        av_log(ctx, AV_LOG_ERROR, "stats file '%s', frame at %.6f s: %s\n", s->stats_file,
               pts * av_q2d(tb), stylize_errmsg(s->sctx));
        return status_to_averror(ret);
    }
    return 0;
}

static av_cold int init(AVFilterContext *ctx)
{
    StylizeContext *s = ctx->priv;
    char path[4096];
    int ret;

    if (!s->model || !s->model[0]) {
        av_log(ctx, AV_LOG_ERROR, "no model given: set model=FILE.safetensors or a style name\n");
        return AVERROR(EINVAL);
    }
    ret = stylize_find_model(s->model, path, sizeof(path));
    if (ret < 0) {
        av_log(ctx, AV_LOG_ERROR, "model '%s' not found: %s\n", s->model, path);
        return status_to_averror(ret);
    }
    av_log(ctx, AV_LOG_DEBUG, "model '%s' resolves to %s\n", s->model, path);
    if (s->stats_mode != STATS_OFF) {
        if (!s->stats_file || !s->stats_file[0]) {
            av_log(ctx, AV_LOG_ERROR, "stats_mode=%s needs stats_file=PATH\n",
                   s->stats_mode == STATS_WRITE ? "write" : "read");
            return AVERROR(EINVAL);
        }
        if (s->mode != STYLIZE_MODE_TIN && s->mode != STYLIZE_MODE_AUTO) {
            av_log(ctx, AV_LOG_ERROR, "stats_mode needs mode=tin or auto (thumbnail statistics)\n");
            return AVERROR(EINVAL);
        }
    } else if (s->stats_file && s->stats_file[0]) {
        av_log(ctx, AV_LOG_WARNING, "stats_file is ignored without stats_mode=write or read\n");
    }
    return 0;
}

static av_cold void uninit(AVFilterContext *ctx)
{
    StylizeContext *s = ctx->priv;
    if (s->stats_w)
        stats_close_write(ctx);
    stylize_stats_reader_close(s->stats_r);
    s->stats_r = NULL;
    av_freep(&s->stats_buf);
    stylize_destroy(s->sctx);
    s->sctx = NULL;
    av_frame_free(&s->tmp_in);
    av_frame_free(&s->tmp_out);
}

static int config_input(AVFilterLink *inlink)
{
    AVFilterContext *ctx = inlink->dst;
    StylizeContext *s = ctx->priv;
    int ret;

    /* Loaded once per filter instance; a reconfiguration keeps the model
     * (and the runtime options) in force. */
    if (!s->sctx && (ret = load_model(ctx)) < 0)
        return ret;
    /* Once per instance too: a reconfiguration must not restart the file. */
    if (s->stats_mode != STATS_OFF && !s->stats_w && !s->stats_r &&
        (ret = stats_setup(ctx, inlink->time_base)) < 0)
        return ret;
    av_log(ctx, AV_LOG_VERBOSE, "%dx%d %s\n", inlink->w, inlink->h,
           av_get_pix_fmt_name(inlink->format));
    return 0;
}

/* Once per frame size (and after an option change): the mode the frame is
 * processed in. mode=auto can change its choice when the size crosses the
 * memory budget; the look then changes (full/exact vs tin), so that is a
 * warning, not a silent switch. */
static void report_mode(AVFilterContext *ctx, int w, int h)
{
    StylizeContext *s = ctx->priv;
    if (w == s->last_w && h == s->last_h)
        return;
    const int mode = stylize_resolve_mode(s->sctx, w, h);
    av_log(ctx, AV_LOG_VERBOSE, "%dx%d: mode %s%s, %zu MiB of working memory\n", w, h,
           stylize_mode_name((stylize_mode)mode), s->mode == STYLIZE_MODE_AUTO ? " (auto)" : "",
           stylize_memory_needed(s->sctx, w, h) >> 20);
    /* full and exact give the same picture; tin's differs from both */
    if (s->last_w && s->mode == STYLIZE_MODE_AUTO && (mode == STYLIZE_MODE_TIN) != (s->last_mode == STYLIZE_MODE_TIN))
        av_log(ctx, AV_LOG_WARNING, "the frame size changed from %dx%d to %dx%d and mode=auto switches from %s "
               "to %s (the memory budget is %"PRId64" MiB): the look changes; set mode=%s (or a larger max_memory) "
               "to keep one look\n", s->last_w, s->last_h, w, h, stylize_mode_name((stylize_mode)s->last_mode),
               stylize_mode_name((stylize_mode)mode),
               (s->max_memory ? s->max_memory : (int64_t)STYLIZE_AUTO_BUDGET) >> 20,
               stylize_mode_name(STYLIZE_MODE_TIN));
    s->last_w = w;
    s->last_h = h;
    s->last_mode = mode;
}

static int filter_frame(AVFilterLink *inlink, AVFrame *in)
{
    AVFilterContext *ctx = inlink->dst;
    StylizeContext *s = ctx->priv;
    AVFilterLink *outlink = ctx->outputs[0];
    const AVFrame *src = in;
    AVFrame *out, *dst;
    stylize_frame vin, vout;
    int ret;

    /* Pass 1: statistics only; the frame goes on unchanged (cheap). */
    if (s->stats_mode == STATS_WRITE) {
        if (has_negative_linesize(in)) {
            if ((ret = get_tmp_frame(&s->tmp_in, in)) < 0 || (ret = av_frame_copy(s->tmp_in, in)) < 0)
                goto fail_in;
            src = s->tmp_in;
        }
        if ((ret = map_frame(ctx, src, &vin)) < 0)
            goto fail_in;
        ret = stylize_compute_stats(s->sctx, &vin, s->stats_buf, s->stats_n);
        if (ret < 0) {
            av_log(ctx, AV_LOG_ERROR, "statistics of a %dx%d frame failed: %s\n",
                   in->width, in->height, stylize_errmsg(s->sctx));
            ret = status_to_averror(ret);
            goto fail_in;
        }
        if ((ret = stats_write_frame(ctx, in)) < 0)
            goto fail_in;
        return ff_filter_frame(outlink, in);
    }
    /* Pass 2: this frame's statistics (smoothed) replace its thumbnail's. */
    if (s->stats_mode == STATS_READ && (ret = stats_lookup(ctx, in->pts, inlink->time_base)) < 0)
        goto fail_in;

    /* Frames carry their own size: with -reinit_filter 0 it may change
     * mid-stream, and libstylize takes any size on every call. */
    out = ff_get_video_buffer(outlink, in->width, in->height);
    if (!out) {
        ret = AVERROR(ENOMEM);
        goto fail;
    }
    if ((ret = av_frame_copy_props(out, in)) < 0)
        goto fail;

    /* libstylize wants non-negative linesizes (vflip makes negative ones). */
    if (has_negative_linesize(in)) {
        if ((ret = get_tmp_frame(&s->tmp_in, in)) < 0 ||
            (ret = av_frame_copy(s->tmp_in, in)) < 0)
            goto fail;
        src = s->tmp_in;
    }
    dst = out;
    if (has_negative_linesize(out)) {
        if ((ret = get_tmp_frame(&s->tmp_out, out)) < 0)
            goto fail;
        dst = s->tmp_out;
    }

    if ((ret = map_frame(ctx, src, &vin)) < 0 || (ret = map_frame(ctx, dst, &vout)) < 0)
        goto fail;
    report_mode(ctx, in->width, in->height);
    ret = stylize_process(s->sctx, &vin, &vout);
    if (ret < 0) {
        av_log(ctx, AV_LOG_ERROR, "stylizing a %dx%d %s frame failed: %s\n",
               in->width, in->height, av_get_pix_fmt_name(in->format), stylize_errmsg(s->sctx));
        ret = status_to_averror(ret);
        goto fail;
    }
    if (dst != out && (ret = av_frame_copy(out, dst)) < 0)
        goto fail;

    av_frame_free(&in);
    return ff_filter_frame(outlink, out);

fail:
    av_frame_free(&out);
fail_in:
    av_frame_free(&in);
    return ret;
}

static int process_command(AVFilterContext *ctx, const char *cmd, const char *arg,
                           char *res, int res_len, int flags)
{
    StylizeContext *s = ctx->priv;
    StylizeOptFields saved;
    stylize_options opts;
    int ret;

    if (!strcmp(cmd, "model") || !strcmp(cmd, "m")) {
        char path[4096];
        if (s->stats_mode != STATS_OFF) {
            av_log(ctx, AV_LOG_ERROR, "model: cannot switch models with stats_mode (the statistics belong to one model)\n");
            return AVERROR(EINVAL);
        }
        if (!arg || !arg[0]) {
            av_log(ctx, AV_LOG_ERROR, "model: empty model name\n");
            return AVERROR(EINVAL);
        }
        if (s->sctx) {
            ret = stylize_load_model(s->sctx, arg);
            if (ret < 0) {
                av_log(ctx, AV_LOG_ERROR, "cannot switch to model '%s': %s; keeping '%s'\n",
                       arg, stylize_errmsg(s->sctx), s->model);
                return status_to_averror(ret);
            }
        } else if ((ret = stylize_find_model(arg, path, sizeof(path))) < 0) {
            av_log(ctx, AV_LOG_ERROR, "model '%s' not found: %s; keeping '%s'\n", arg, path, s->model);
            return status_to_averror(ret);
        }
        av_log(ctx, AV_LOG_VERBOSE, "model switched to '%s'\n", arg);
        /* Record the new value in the option (frees the old string). */
        return ff_filter_process_command(ctx, cmd, arg, res, res_len, flags);
    }

    save_fields(s, &saved);
    ret = ff_filter_process_command(ctx, cmd, arg, res, res_len, flags);
    if (ret < 0) {
        if (ret != AVERROR(ENOSYS))
            av_log(ctx, AV_LOG_ERROR, "invalid value '%s' for %s\n", arg ? arg : "", cmd);
        restore_fields(s, &saved);
        return ret;
    }
    if (s->sctx) {
        fill_options(s, &opts);
        ret = stylize_set_options(s->sctx, &opts);
        if (ret < 0) {
            av_log(ctx, AV_LOG_ERROR, "%s=%s rejected: %s\n", cmd, arg ? arg : "",
                   stylize_errmsg(s->sctx));
            restore_fields(s, &saved);
            return status_to_averror(ret);
        }
    }
    s->last_w = s->last_h = 0; /* report the mode in force again */
    return 0;
}

#define OFFSET(x) offsetof(StylizeContext, x)
#define FLAGS (AV_OPT_FLAG_VIDEO_PARAM | AV_OPT_FLAG_FILTERING_PARAM)
#define TFLAGS (FLAGS | AV_OPT_FLAG_RUNTIME_PARAM)

static const AVOption stylize_avoptions[] = {
    { "model", "model file (.safetensors) or style name", OFFSET(model), AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, TFLAGS },
    { "m", "model file (.safetensors) or style name", OFFSET(model), AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, TFLAGS },
    { "mode", "instance-norm statistics", OFFSET(mode), AV_OPT_TYPE_INT, { .i64 = STYLIZE_MODE_AUTO }, 0, 4, TFLAGS, .unit = "mode" },
        { "auto",  "full within max_memory (default 1 GiB), else exact for stills, tin for video", 0, AV_OPT_TYPE_CONST, { .i64 = STYLIZE_MODE_AUTO }, 0, 0, TFLAGS, .unit = "mode" },
        { "full",  "exact instance norm over the whole frame",               0, AV_OPT_TYPE_CONST, { .i64 = STYLIZE_MODE_FULL },  0, 0, TFLAGS, .unit = "mode" },
        { "exact", "full's result in tiles (bounded memory, several times tin's time)", 0, AV_OPT_TYPE_CONST, { .i64 = STYLIZE_MODE_EXACT }, 0, 0, TFLAGS, .unit = "mode" },
        { "tin",   "thumbnail statistics, tiled (bounded memory, seamless)", 0, AV_OPT_TYPE_CONST, { .i64 = STYLIZE_MODE_TIN },   0, 0, TFLAGS, .unit = "mode" },
        { "patch", "each tile uses its own statistics (shows seams)",        0, AV_OPT_TYPE_CONST, { .i64 = STYLIZE_MODE_PATCH }, 0, 0, TFLAGS, .unit = "mode" },
    { "thumb", "TIN thumbnail size (longer side, pixels), 0 = auto (as many pixels as a tile)", OFFSET(thumb), AV_OPT_TYPE_INT, { .i64 = 0 }, 0, 16384, TFLAGS },
    { "tile", "tile side in pixels, 0 = whole frame, -1 = auto (768 for the classic network, larger for smaller ones)", OFFSET(tile), AV_OPT_TYPE_INT, { .i64 = -1 }, -1, 65536, TFLAGS },
    { "overlap", "context around each tile in pixels, -1 = auto (receptive field)", OFFSET(overlap), AV_OPT_TYPE_INT, { .i64 = -1 }, -1, 4096, TFLAGS },
    { "strength", "blend of stylized (1) and original (0)", OFFSET(strength), AV_OPT_TYPE_FLOAT, { .dbl = 1.0 }, 0.0, 1.0, TFLAGS },
    { "preserve_color", "keep the original colours (luminance transfer only)", OFFSET(preserve_color), AV_OPT_TYPE_BOOL, { .i64 = 0 }, 0, 1, TFLAGS },
    { "smooth", "temporal smoothing of the TIN statistics (0 = off)", OFFSET(smooth), AV_OPT_TYPE_FLOAT, { .dbl = 0.0 }, 0.0, 0.99, TFLAGS },
    { "scene_cut", "restart smoothing when statistics jump by this many std devs, 0 = never", OFFSET(scene_cut), AV_OPT_TYPE_FLOAT, { .dbl = 0.5 }, 0.0, 1000.0, TFLAGS },
    { "threads", "worker threads, 0 = number of CPUs", OFFSET(threads), AV_OPT_TYPE_INT, { .i64 = 0 }, 0, 1024, TFLAGS },
    { "backend", "compute backend", OFFSET(backend), AV_OPT_TYPE_INT, { .i64 = STYLIZE_BACKEND_AUTO }, 0, 3, TFLAGS, .unit = "backend" },
        { "auto", "fastest available",            0, AV_OPT_TYPE_CONST, { .i64 = STYLIZE_BACKEND_AUTO }, 0, 0, TFLAGS, .unit = "backend" },
        { "ref",  "portable C (fp32)",            0, AV_OPT_TYPE_CONST, { .i64 = STYLIZE_BACKEND_REF },  0, 0, TFLAGS, .unit = "backend" },
        { "dnnl", "oneDNN, if libstylize has it", 0, AV_OPT_TYPE_CONST, { .i64 = STYLIZE_BACKEND_DNNL }, 0, 0, TFLAGS, .unit = "backend" },
        { "cuda", "CUDA, if libstylize has it",   0, AV_OPT_TYPE_CONST, { .i64 = STYLIZE_BACKEND_CUDA }, 0, 0, TFLAGS, .unit = "backend" },
    { "precision", "arithmetic", OFFSET(precision), AV_OPT_TYPE_INT, { .i64 = STYLIZE_PRECISION_AUTO }, 0, 3, TFLAGS, .unit = "precision" },
        { "auto", "CPU: bf16 where it is faster than fp32, else fp32; cuda: fp16", 0, AV_OPT_TYPE_CONST, { .i64 = STYLIZE_PRECISION_AUTO }, 0, 0, TFLAGS, .unit = "precision" },
        { "fp32", "32-bit floating point",                              0, AV_OPT_TYPE_CONST, { .i64 = STYLIZE_PRECISION_FP32 }, 0, 0, TFLAGS, .unit = "precision" },
        { "bf16", "bfloat16 with fp32 accumulation",                    0, AV_OPT_TYPE_CONST, { .i64 = STYLIZE_PRECISION_BF16 }, 0, 0, TFLAGS, .unit = "precision" },
        { "fp16", "half precision with fp32 accumulation (cuda)",      0, AV_OPT_TYPE_CONST, { .i64 = STYLIZE_PRECISION_FP16 }, 0, 0, TFLAGS, .unit = "precision" },
    { "max_memory", "working memory a frame may use in bytes (e.g. 512M), 0 = no limit", OFFSET(max_memory), AV_OPT_TYPE_INT64, { .i64 = 0 }, 0, INT64_MAX, TFLAGS },
    { "exact_layers", "tin: exact statistics for the first N instance-norm layers, 0 = estimate all", OFFSET(exact_layers), AV_OPT_TYPE_INT, { .i64 = 1 }, 0, 1000, TFLAGS },
    { "tin_stats", "tin: how the other layers' statistics are estimated", OFFSET(tin_stats), AV_OPT_TYPE_INT, { .i64 = STYLIZE_TIN_STATS_SAMPLE }, 0, 1, TFLAGS, .unit = "tin_stats" },
        { "sample",    "full-resolution sample tiles, pooled layer by layer", 0, AV_OPT_TYPE_CONST, { .i64 = STYLIZE_TIN_STATS_SAMPLE },    0, 0, TFLAGS, .unit = "tin_stats" },
        { "thumbnail", "one run on the downscaled frame (the TIN paper's)",   0, AV_OPT_TYPE_CONST, { .i64 = STYLIZE_TIN_STATS_THUMBNAIL }, 0, 0, TFLAGS, .unit = "tin_stats" },
    { "still", "the input is a still image (mode=auto then uses exact, not tin, above the budget)", OFFSET(still), AV_OPT_TYPE_BOOL, { .i64 = 0 }, 0, 1, TFLAGS },
    { "stats_file", "two-pass statistics file", OFFSET(stats_file), AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, FLAGS },
    { "stats_mode", "two-pass statistics", OFFSET(stats_mode), AV_OPT_TYPE_INT, { .i64 = STATS_OFF }, STATS_OFF, STATS_READ, FLAGS, .unit = "stats_mode" },
        { "off",   "one pass",                                        0, AV_OPT_TYPE_CONST, { .i64 = STATS_OFF },   0, 0, FLAGS, .unit = "stats_mode" },
        { "write", "pass 1: write each frame's statistics, pass frames through", 0, AV_OPT_TYPE_CONST, { .i64 = STATS_WRITE }, 0, 0, FLAGS, .unit = "stats_mode" },
        { "read",  "pass 2: stylize with the statistics of pass 1",   0, AV_OPT_TYPE_CONST, { .i64 = STATS_READ },  0, 0, FLAGS, .unit = "stats_mode" },
    { "stats_window", "pass 2: average the statistics over this many frames each side, stopping at scene cuts", OFFSET(stats_window), AV_OPT_TYPE_INT, { .i64 = 0 }, 0, 1000, FLAGS },
    { NULL }
};

/* Not AVFILTER_DEFINE_CLASS(stylize): stylize_options is libstylize's type. */
AVFILTER_DEFINE_CLASS_EXT(stylize, "stylize", stylize_avoptions);

static const AVFilterPad stylize_inputs[] = {
    {
        .name         = "default",
        .type         = AVMEDIA_TYPE_VIDEO,
        .filter_frame = filter_frame,
        .config_props = config_input,
    },
};

static const AVFilterPad stylize_outputs[] = {
    {
        .name = "default",
        .type = AVMEDIA_TYPE_VIDEO,
    },
};

#if STYLIZE_FFFILTER
const FFFilter ff_vf_stylize = {
    .p.name          = "stylize",
    .p.description   = NULL_IF_CONFIG_SMALL("Apply a neural style (libstylize TransformerNet with thumbnail instance normalization)."),
    .p.priv_class    = &stylize_class,
    .p.flags         = AVFILTER_FLAG_SUPPORT_TIMELINE_GENERIC,
#else
const AVFilter ff_vf_stylize = {
    .name            = "stylize",
    .description     = NULL_IF_CONFIG_SMALL("Apply a neural style (libstylize TransformerNet with thumbnail instance normalization)."),
    .priv_class      = &stylize_class,
    .flags           = AVFILTER_FLAG_SUPPORT_TIMELINE_GENERIC,
#endif
    .priv_size       = sizeof(StylizeContext),
    .init            = init,
    .uninit          = uninit,
    .process_command = process_command,
    FILTER_INPUTS(stylize_inputs),
    FILTER_OUTPUTS(stylize_outputs),
    FILTER_PIXFMTS_ARRAY(pix_fmts),
};
