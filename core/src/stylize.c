/* The public API: contexts, options, model switching, statistics. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "context.h"
#include "pixels.h"

#define STR2(x) #x
#define STR(x) STR2(x)

const char *stylize_version(void)
{
    return STR(STYLIZE_VERSION_MAJOR) "." STR(STYLIZE_VERSION_MINOR) "." STR(STYLIZE_VERSION_PATCH)
        " (backends: ref"
#ifdef STYLIZE_HAVE_DNNL
        ", dnnl"
#endif
#ifdef STYLIZE_HAVE_CUDA
        ", cuda"
#endif
        ")";
}

const char *stylize_strerror(int status)
{
    switch (status) {
    case STYLIZE_OK: return "success";
    case STYLIZE_ERR_INVALID_ARG: return "invalid argument";
    case STYLIZE_ERR_IO: return "model file not found or unreadable";
    case STYLIZE_ERR_MODEL: return "invalid model file";
    case STYLIZE_ERR_NOMEM: return "out of memory";
    case STYLIZE_ERR_UNSUPPORTED: return "not supported";
    case STYLIZE_ERR_BACKEND: return "backend failure";
    case STYLIZE_ERR_TOO_LARGE: return "frame too large for the memory limit";
    default: return "unknown error";
    }
}

int sty_set_error(stylize_ctx *ctx, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err, sizeof(ctx->err), fmt, ap);
    va_end(ap);
    return status;
}

void stylize_options_default(stylize_options *o)
{
    memset(o, 0, sizeof(*o));
    o->mode = STYLIZE_MODE_AUTO;
    o->thumb = 0;
    o->exact_layers = 1;
    o->tin_stats = STYLIZE_TIN_STATS_SAMPLE;
    o->tile = -1;
    o->overlap = -1;
    o->strength = 1.0f;
    o->preserve_color = 0;
    o->smooth = 0.0f;
    o->scene_cut = 0.5f;
    o->threads = 0;
    o->backend = STYLIZE_BACKEND_AUTO;
    o->precision = STYLIZE_PRECISION_AUTO;
}

static const char *const mode_names[] = {"tin", "full", "patch", "exact", "auto"};
static const char *const backend_names[] = {"auto", "ref", "dnnl", "cuda"};
static const char *const precision_names[] = {"auto", "fp32", "bf16", "fp16"};
static const char *const tin_stats_names[] = {"sample", "thumbnail"};
#define N_NAMES(table) ((int)(sizeof(table) / sizeof(table[0])))

/* The index of name in a table of n names (the enum value), or -1. */
static int name_index(const char *name, const char *const *table, int n)
{
    for (int i = 0; name && i < n; i++)
        if (!strcmp(name, table[i]))
            return i;
    return -1;
}

/* Backends built into this library, fastest first (AUTO takes the first available). */
static const sty_backend_ops *const backends[] = {
#ifdef STYLIZE_HAVE_CUDA
    &sty_backend_cuda,
#endif
#ifdef STYLIZE_HAVE_DNNL
    &sty_backend_dnnl,
#endif
    &sty_backend_ref,
};
#define N_BACKENDS (sizeof(backends) / sizeof(backends[0]))

/* The backend for id; with AUTO the first available one that runs model m
 * (m NULL: any model). */
static const sty_backend_ops *find_backend(stylize_backend id, const sty_model *m)
{
    for (size_t i = 0; i < N_BACKENDS; i++) {
        const sty_backend_ops *b = backends[i];
        if (id == STYLIZE_BACKEND_AUTO ? b->available() && !(m && b->model_unsupported && b->model_unsupported(m))
                                       : b->id == id)
            return b;
    }
    return NULL;
}

int stylize_mode_from_name(const char *name, stylize_mode *mode)
{
    const int i = name_index(name, mode_names, N_NAMES(mode_names));
    if (i < 0)
        return STYLIZE_ERR_INVALID_ARG;
    *mode = (stylize_mode)i;
    return STYLIZE_OK;
}

int stylize_tin_stats_from_name(const char *name, stylize_tin_stats *tin_stats)
{
    const int i = name_index(name, tin_stats_names, N_NAMES(tin_stats_names));
    if (i < 0)
        return STYLIZE_ERR_INVALID_ARG;
    *tin_stats = (stylize_tin_stats)i;
    return STYLIZE_OK;
}

const char *stylize_tin_stats_name(stylize_tin_stats tin_stats)
{
    return (unsigned)tin_stats < (unsigned)N_NAMES(tin_stats_names) ? tin_stats_names[tin_stats] : "?";
}

int stylize_backend_from_name(const char *name, stylize_backend *backend)
{
    const int i = name_index(name, backend_names, N_NAMES(backend_names));
    if (i < 0)
        return STYLIZE_ERR_INVALID_ARG;
    *backend = (stylize_backend)i;
    return STYLIZE_OK;
}

int stylize_precision_from_name(const char *name, stylize_precision *precision)
{
    const int i = name_index(name, precision_names, N_NAMES(precision_names));
    if (i < 0)
        return STYLIZE_ERR_INVALID_ARG;
    *precision = (stylize_precision)i;
    return STYLIZE_OK;
}

const char *stylize_precision_name(stylize_precision precision)
{
    return (unsigned)precision < 4 ? precision_names[precision] : "?";
}

const char *stylize_mode_name(stylize_mode mode)
{
    return (unsigned)mode < 5 ? mode_names[mode] : "?";
}

const char *stylize_backend_name(stylize_backend backend)
{
    return (unsigned)backend < 4 ? backend_names[backend] : "?";
}

/* Reject bad values with a message naming the option. */
static int check_options(const stylize_options *o, char *err, size_t n)
{
    if ((unsigned)o->mode > STYLIZE_MODE_AUTO)
        return snprintf(err, n, "mode %d is not tin, full, patch, exact or auto", (int)o->mode),
               STYLIZE_ERR_INVALID_ARG;
    if (o->exact_layers < 0 || o->exact_layers > 1000)
        return snprintf(err, n, "exact_layers %d is outside 0..1000", o->exact_layers), STYLIZE_ERR_INVALID_ARG;
    if ((unsigned)o->tin_stats > STYLIZE_TIN_STATS_THUMBNAIL)
        return snprintf(err, n, "tin_stats %d is not sample or thumbnail", (int)o->tin_stats),
               STYLIZE_ERR_INVALID_ARG;
    if (o->still != 0 && o->still != 1)
        return snprintf(err, n, "still %d is not 0 or 1", o->still), STYLIZE_ERR_INVALID_ARG;
    if (o->thumb != 0 && (o->thumb < 16 || o->thumb > 16384))
        return snprintf(err, n, "thumb %d is outside 16..16384 (0 = auto)", o->thumb), STYLIZE_ERR_INVALID_ARG;
    if (o->tile < -1 || o->tile > 65536)
        return snprintf(err, n, "tile %d is outside -1..65536 (-1 = auto, 0 = whole frame)", o->tile),
               STYLIZE_ERR_INVALID_ARG;
    if (o->overlap < -1 || o->overlap > 1024)
        return snprintf(err, n, "overlap %d is outside -1..1024 (-1 = auto)", o->overlap), STYLIZE_ERR_INVALID_ARG;
    if (!(o->strength >= 0 && o->strength <= 1))
        return snprintf(err, n, "strength %g is outside 0..1", (double)o->strength), STYLIZE_ERR_INVALID_ARG;
    if (!(o->smooth >= 0 && o->smooth < 1))
        return snprintf(err, n, "smooth %g is outside 0..1 (1 excluded)", (double)o->smooth), STYLIZE_ERR_INVALID_ARG;
    if (!(o->scene_cut >= 0 && o->scene_cut <= 1000))
        return snprintf(err, n, "scene_cut %g is outside 0..1000", (double)o->scene_cut), STYLIZE_ERR_INVALID_ARG;
    if (o->threads < 0 || o->threads > 1024)
        return snprintf(err, n, "threads %d is outside 0..1024 (0 = all CPUs)", o->threads), STYLIZE_ERR_INVALID_ARG;
    if ((unsigned)o->backend > STYLIZE_BACKEND_CUDA)
        return snprintf(err, n, "backend %d is unknown", (int)o->backend), STYLIZE_ERR_INVALID_ARG;
    if ((unsigned)o->precision > STYLIZE_PRECISION_FP16)
        return snprintf(err, n, "precision %d is unknown", (int)o->precision), STYLIZE_ERR_INVALID_ARG;
    const sty_backend_ops *b = find_backend(o->backend, NULL);
    if (!b)
        return snprintf(err, n, "backend '%s' is not built into this libstylize (%s)",
                        stylize_backend_name(o->backend), stylize_version()), STYLIZE_ERR_UNSUPPORTED;
    if (o->mode == STYLIZE_MODE_EXACT && !b->exact)
        return snprintf(err, n, "mode=exact is not implemented by the %s backend; use backend=dnnl or backend=ref "
                        "(or mode=tin)", b->name), STYLIZE_ERR_UNSUPPORTED;
    if (!b->available()) {
        const char *why = b->unavailable_reason ? b->unavailable_reason() : NULL;
        return snprintf(err, n, "backend '%s' cannot run on this machine%s%s", b->name, why ? ": " : "",
                        why ? why : ""), STYLIZE_ERR_UNSUPPORTED;
    }
    return STYLIZE_OK;
}

static int effective_threads(const stylize_options *o)
{
    if (o->threads > 0)
        return o->threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

static void engine_free(sty_engine *e)
{
    if (!e)
        return;
    if (e->backend)
        e->ops->destroy(e->backend);
    sty_model_free(e->model);
    free(e->thumb_stats);
    free(e->used_stats);
    free(e->next_stats);
    free(e->smoother.state);
    free(e);
}

/* Load a model and prepare a backend for it, without touching the context. */
static int engine_create(const char *name, const stylize_options *o, sty_engine **out, char *err, size_t n)
{
    char path[4096];
    int r = stylize_find_model(name, path, sizeof(path));
    *out = NULL;
    if (r && !(r == STYLIZE_ERR_IO && strchr(name ? name : "", '/'))) {
        snprintf(err, n, "%s", path);
        return r;
    }
    sty_engine *e = calloc(1, sizeof(*e));
    if (!e)
        return snprintf(err, n, "out of memory"), STYLIZE_ERR_NOMEM;
    if ((r = sty_model_load(path, &e->model, err, n)))
        goto fail;
    size_t ns = e->model->stats_size;
    e->thumb_stats = calloc(ns, sizeof(float));
    e->used_stats = calloc(ns, sizeof(float));
    e->next_stats = calloc(ns, sizeof(float));
    e->smoother.state = calloc(ns, sizeof(float));
    if (!e->thumb_stats || !e->used_stats || !e->next_stats || !e->smoother.state) {
        r = STYLIZE_ERR_NOMEM;
        snprintf(err, n, "out of memory");
        goto fail;
    }
    e->ops = find_backend(o->backend, e->model); /* check_options made sure there is one (ref runs every model) */
    sty_backend_config cfg = {.threads = effective_threads(o), .precision = o->precision};
    if ((r = e->ops->create(e->model, &cfg, &e->backend, err, n)))
        goto fail;
    *out = e;
    return STYLIZE_OK;
fail:
    engine_free(e);
    return r;
}

int stylize_create(const char *model_path, const stylize_options *opts, stylize_ctx **out, char *err,
                   size_t err_size)
{
    char local[512];
    if (!err || !err_size) {
        err = local;
        err_size = sizeof(local);
    }
    err[0] = 0;
    if (!out)
        return snprintf(err, err_size, "stylize_create: out is NULL"), STYLIZE_ERR_INVALID_ARG;
    *out = NULL;
    stylize_ctx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx)
        return snprintf(err, err_size, "out of memory"), STYLIZE_ERR_NOMEM;
    if (opts)
        ctx->opts = *opts;
    else
        stylize_options_default(&ctx->opts);
    int r = check_options(&ctx->opts, err, err_size);
    if (!r)
        r = engine_create(model_path, &ctx->opts, &ctx->engine, err, err_size);
    if (r) {
        free(ctx);
        return r;
    }
    *out = ctx;
    return STYLIZE_OK;
}

void stylize_destroy(stylize_ctx *ctx)
{
    if (!ctx)
        return;
    engine_free(ctx->engine);
    free(ctx->crop_in);
    free(ctx->crop_out);
    free(ctx->thumb);
    free(ctx->thumb_row);
    free(ctx->act[0]);
    free(ctx->act[1]);
    free(ctx->crop_act_in);
    free(ctx->crop_act_out);
    free(ctx);
}

const char *stylize_errmsg(const stylize_ctx *ctx)
{
    return ctx ? ctx->err : "no context";
}

/* Do the byte ranges of two planes intersect? */
static int ranges_overlap(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    return a < b + blen && b < a + alen;
}

static int frames_overlap(const stylize_frame *in, const stylize_frame *out)
{
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            if (!in->data[i] || !out->data[j])
                continue;
            size_t alen = (size_t)in->linesize[i] * (size_t)in->height;
            size_t blen = (size_t)out->linesize[j] * (size_t)out->height;
            if (ranges_overlap(in->data[i], alen, out->data[j], blen))
                return 1;
        }
    return 0;
}

int stylize_process(stylize_ctx *ctx, const stylize_frame *in, stylize_frame *out)
{
    const char *why;
    if (!ctx)
        return STYLIZE_ERR_INVALID_ARG;
    ctx->err[0] = 0;
    if (sty_frame_check(in, &why))
        return sty_set_error(ctx, STYLIZE_ERR_INVALID_ARG, "input frame: %s", why);
    if (sty_frame_check(out, &why))
        return sty_set_error(ctx, STYLIZE_ERR_INVALID_ARG, "output frame: %s", why);
    if (in->width != out->width || in->height != out->height)
        return sty_set_error(ctx, STYLIZE_ERR_INVALID_ARG, "input is %dx%d but output is %dx%d", in->width,
                             in->height, out->width, out->height);
    if (frames_overlap(in, out))
        return sty_set_error(ctx, STYLIZE_ERR_INVALID_ARG, "output frame overlaps the input frame "
                             "(in-place processing is not supported)");
    return sty_process_frame(ctx, in, out);
}

stylize_mode stylize_resolve_mode(const stylize_ctx *ctx, int width, int height)
{
    if (!ctx || width < 1 || height < 1)
        return ctx ? ctx->opts.mode : STYLIZE_MODE_AUTO;
    return sty_resolve_mode(ctx, width, height);
}

size_t stylize_memory_needed(const stylize_ctx *ctx, int width, int height)
{
    if (!ctx || width < 1 || height < 1)
        return 0;
    return sty_memory_needed(ctx, width, height);
}

void stylize_get_options(const stylize_ctx *ctx, stylize_options *opts)
{
    *opts = ctx->opts;
}

int stylize_set_options(stylize_ctx *ctx, const stylize_options *opts)
{
    if (!ctx || !opts)
        return STYLIZE_ERR_INVALID_ARG;
    int r = check_options(opts, ctx->err, sizeof(ctx->err));
    if (r)
        return r;
    if (effective_threads(opts) != effective_threads(&ctx->opts) || opts->backend != ctx->opts.backend ||
        opts->precision != ctx->opts.precision) {
        sty_engine *e;
        if ((r = engine_create(ctx->engine->model->path, opts, &e, ctx->err, sizeof(ctx->err))))
            return r;
        engine_free(ctx->engine);
        ctx->engine = e;
    }
    ctx->opts = *opts;
    return STYLIZE_OK;
}

int stylize_load_model(stylize_ctx *ctx, const char *model_path)
{
    if (!ctx)
        return STYLIZE_ERR_INVALID_ARG;
    sty_engine *e;
    int r = engine_create(model_path, &ctx->opts, &e, ctx->err, sizeof(ctx->err));
    if (r)
        return r;
    engine_free(ctx->engine);
    ctx->engine = e;
    return STYLIZE_OK;
}

stylize_backend stylize_active_backend(const stylize_ctx *ctx)
{
    return ctx->engine->ops->id;
}

stylize_precision stylize_active_precision(const stylize_ctx *ctx)
{
    return ctx->engine->ops->active_precision(ctx->engine->backend);
}

void stylize_get_model_info(const stylize_ctx *ctx, stylize_model_info *info)
{
    const sty_model *m = ctx->engine->model;
    info->width1 = m->c1;
    info->width2 = m->c2;
    info->width3 = m->c3;
    info->res_blocks = m->res_blocks;
    info->kernel_in = m->k_in;
    info->kernel_out = m->k_out;
    info->norm_layers = m->n_norms;
    info->receptive_radius = m->receptive_radius;
    info->parameters = m->parameters;
    info->style = m->style;
    info->source = m->source;
    info->license = m->license;
    info->path = m->path;
    info->architecture = m->arch == STY_ARCH_COMPACT ? "compact" : "transformer_net";
    info->total_stride = m->total_stride;
    info->macs_per_pixel = m->macs_per_pixel;
    info->tile_auto = m->tile_auto;
}

size_t stylize_stats_size(const stylize_ctx *ctx)
{
    return ctx->engine->model->stats_size;
}

static int check_stats_count(stylize_ctx *ctx, size_t n)
{
    if (n != ctx->engine->model->stats_size)
        return sty_set_error(ctx, STYLIZE_ERR_INVALID_ARG, "statistics have %zu floats, the model needs %zu", n,
                             ctx->engine->model->stats_size);
    return 0;
}

int stylize_get_stats(const stylize_ctx *ctx_c, float *dst, size_t n)
{
    stylize_ctx *ctx = (stylize_ctx *)ctx_c; /* only the error message changes */
    int r;
    if (!ctx || !dst)
        return STYLIZE_ERR_INVALID_ARG;
    if ((r = check_stats_count(ctx, n)))
        return r;
    if (!ctx->engine->have_used)
        return sty_set_error(ctx, STYLIZE_ERR_INVALID_ARG, "no frame has been processed in tin or exact mode yet");
    memcpy(dst, ctx->engine->used_stats, n * sizeof(float));
    return STYLIZE_OK;
}

int stylize_set_stats(stylize_ctx *ctx, const float *src, size_t n)
{
    int r;
    if (!ctx || !src)
        return STYLIZE_ERR_INVALID_ARG;
    if ((r = check_stats_count(ctx, n)))
        return r;
    const sty_model *m = ctx->engine->model;
    for (int l = 0; l < m->n_norms; l++) {
        const sty_norm *nm = &m->norms[l];
        for (int c = 0; c < 2 * nm->c; c++) {
            float v = src[nm->stats_offset + (size_t)c];
            if (!isfinite(v) || (c >= nm->c && v < 0))
                return sty_set_error(ctx, STYLIZE_ERR_INVALID_ARG, "statistics of norm layer %d channel %d: "
                                     "%s %g is not allowed", l, c % nm->c, c < nm->c ? "mean" : "variance", v);
        }
    }
    memcpy(ctx->engine->next_stats, src, n * sizeof(float));
    ctx->engine->have_next = 1;
    return STYLIZE_OK;
}

int stylize_compute_stats(stylize_ctx *ctx, const stylize_frame *in, float *dst, size_t n)
{
    const char *why;
    int r;
    if (!ctx || !dst)
        return STYLIZE_ERR_INVALID_ARG;
    if ((r = check_stats_count(ctx, n)))
        return r;
    if (sty_frame_check(in, &why))
        return sty_set_error(ctx, STYLIZE_ERR_INVALID_ARG, "input frame: %s", why);
    return sty_frame_stats(ctx, in, dst);
}

void stylize_reset_smoothing(stylize_ctx *ctx)
{
    if (ctx)
        ctx->engine->smoother.valid = 0;
}
