/*
 * Two-pass statistics files (format and contract in stylize.h): the writer of
 * pass 1 and the validating, indexing reader of pass 2 with its centred
 * window and scene cuts. Hosts (the FFmpeg filter, the player, tools) keep
 * only their glue; the file may come from another machine or from a pass 1
 * that was killed, so the reader trusts nothing in it (tests/fuzz/fuzz_stats.c).
 */
#define _FILE_OFFSET_BITS 64
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stylize.h"

#define STATS_MAGIC "STYSTATS"
#define STATS_VERSION 1
#define STATS_HEADER 64
#define OFF_FRAMES 40
/* Far above any TransformerNet (the classic model has 3200 floats a frame):
 * a damaged header must not make the reader allocate gigabytes a record. */
#define STATS_MAX_FLOATS ((uint32_t)1 << 24)

typedef struct stats_entry {
    int64_t pts; /* in the file's time base */
    int64_t rec; /* record number (file order) */
} stats_entry;

struct stylize_stats_writer {
    FILE *fp;
    char *path;
    size_t n;        /* floats per frame */
    uint64_t frames; /* records written */
    uint8_t *rec;    /* one record, as in the file */
};

struct stylize_stats_reader {
    FILE *fp;
    char *path;
    size_t n;
    int layers, c1, thumb;
    int tb_num, tb_den;
    int64_t frames;
    stats_entry *idx;  /* sorted by pts */
    uint8_t *cut;      /* cut[i]: a scene cut precedes idx[i] */
    int64_t cuts;
    uint8_t *rec;      /* one record's floats, as in the file */
    double *acc;       /* window sum */
};

static void set_err(char *err, size_t size, const char *fmt, ...)
{
    va_list ap;
    if (!err || !size)
        return;
    va_start(ap, fmt);
    vsnprintf(err, size, fmt, ap);
    va_end(ap);
}

static void wl32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void wl64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t rl32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rl64(const uint8_t *p)
{
    return (uint64_t)rl32(p) | (uint64_t)rl32(p + 4) << 32;
}

static float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static size_t record_size(size_t n)
{
    return 8 + 4 * n;
}

/* The identity of a model's weights: a file copied to another host or
 * renamed keeps it; another model (even of the same shape) does not. */
static int model_hash(const char *path, uint64_t *hash)
{
    uint8_t buf[65536];
    uint64_t h = 0xcbf29ce484222325ULL;
    size_t got;
    int bad;
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    while ((got = fread(buf, 1, sizeof(buf), f)) > 0)
        for (size_t i = 0; i < got; i++)
            h = (h ^ buf[i]) * 0x100000001b3ULL;
    bad = ferror(f);
    fclose(f);
    *hash = h;
    return bad ? -1 : 0;
}

static char *dup_str(const char *s)
{
    size_t len = strlen(s) + 1;
    char *d = malloc(len);
    if (d)
        memcpy(d, s, len);
    return d;
}

/* ---- writer ------------------------------------------------------------ */

static void writer_free(stylize_stats_writer *w)
{
    if (w->fp)
        fclose(w->fp);
    free(w->path);
    free(w->rec);
    free(w);
}

int stylize_stats_writer_open(const stylize_ctx *ctx, const char *path, int tb_num, int tb_den,
                              stylize_stats_writer **out, char *err, size_t err_size)
{
    stylize_model_info info;
    stylize_options opts;
    stylize_stats_writer *w;
    uint8_t h[STATS_HEADER];
    uint64_t hash;

    if (out)
        *out = NULL;
    if (!ctx || !path || !out || tb_num <= 0 || tb_den <= 0) {
        set_err(err, err_size, "stylize_stats_writer_open: %s", !ctx || !path || !out ? "NULL argument" :
                "the time base must be positive");
        return STYLIZE_ERR_INVALID_ARG;
    }
    stylize_get_model_info(ctx, &info);
    stylize_get_options(ctx, &opts);
    if (model_hash(info.path, &hash)) {
        set_err(err, err_size, "cannot read model '%s': %s", info.path, strerror(errno));
        return STYLIZE_ERR_IO;
    }
    if (!(w = calloc(1, sizeof(*w))))
        goto nomem;
    w->n = stylize_stats_size(ctx);
    if (!(w->path = dup_str(path)) || !(w->rec = malloc(record_size(w->n))))
        goto nomem;
    if (!(w->fp = fopen(path, "wb"))) {
        set_err(err, err_size, "cannot create stats file '%s': %s", path, strerror(errno));
        writer_free(w);
        return STYLIZE_ERR_IO;
    }
    memset(h, 0, sizeof(h));
    memcpy(h, STATS_MAGIC, 8);
    wl32(h + 8, STATS_VERSION);
    wl32(h + 12, STATS_HEADER);
    wl32(h + 16, (uint32_t)w->n);
    wl32(h + 20, (uint32_t)info.norm_layers);
    wl64(h + 24, hash);
    wl32(h + 32, (uint32_t)tb_num);
    wl32(h + 36, (uint32_t)tb_den);
    wl64(h + OFF_FRAMES, 0); /* incomplete until closed */
    wl32(h + 48, (uint32_t)opts.thumb);
    wl32(h + 52, (uint32_t)info.width1);
    /* On disk at once: a pass 1 killed before its first flush leaves an
     * incomplete statistics file, not an empty one. */
    if (fwrite(h, 1, STATS_HEADER, w->fp) != STATS_HEADER || fflush(w->fp)) {
        set_err(err, err_size, "cannot write stats file '%s': %s", path, strerror(errno));
        writer_free(w);
        return STYLIZE_ERR_IO;
    }
    *out = w;
    return STYLIZE_OK;

nomem:
    if (w)
        writer_free(w);
    set_err(err, err_size, "out of memory");
    return STYLIZE_ERR_NOMEM;
}

int stylize_stats_writer_append(stylize_stats_writer *w, int64_t pts, const float *src, size_t n,
                                char *err, size_t err_size)
{
    if (!w || !src || n != w->n) {
        set_err(err, err_size, "stylize_stats_writer_append: %s", !w || !src ? "NULL argument" :
                "the number of floats differs from the model's stylize_stats_size");
        return STYLIZE_ERR_INVALID_ARG;
    }
    wl64(w->rec, (uint64_t)pts);
    for (size_t i = 0; i < n; i++)
        wl32(w->rec + 8 + 4 * i, f32_bits(src[i]));
    if (fwrite(w->rec, 1, record_size(n), w->fp) != record_size(n)) {
        set_err(err, err_size, "cannot write stats file '%s': %s", w->path, strerror(errno));
        return STYLIZE_ERR_IO;
    }
    w->frames++;
    return STYLIZE_OK;
}

int stylize_stats_writer_close(stylize_stats_writer *w, char *err, size_t err_size)
{
    uint8_t cnt[8];
    int ret = STYLIZE_OK;

    if (!w)
        return STYLIZE_OK;
    wl64(cnt, w->frames);
    /* Flush the records before the count: a count on disk means they are there. */
    if (fflush(w->fp) || fseeko(w->fp, OFF_FRAMES, SEEK_SET) || fwrite(cnt, 1, 8, w->fp) != 8) {
        set_err(err, err_size, "cannot finish stats file '%s': %s", w->path, strerror(errno));
        ret = STYLIZE_ERR_IO;
    }
    if (fclose(w->fp) && ret == STYLIZE_OK) {
        set_err(err, err_size, "cannot finish stats file '%s': %s", w->path, strerror(errno));
        ret = STYLIZE_ERR_IO;
    }
    w->fp = NULL;
    writer_free(w);
    return ret;
}

/* ---- reader ------------------------------------------------------------ */

static int cmp_entry(const void *a, const void *b)
{
    int64_t x = ((const stats_entry *)a)->pts, y = ((const stats_entry *)b)->pts;
    return (x > y) - (x < y);
}

/* The first `floats` floats of record `rec` into dst. */
static int read_record(stylize_stats_reader *r, int64_t rec, size_t floats, float *dst)
{
    off_t off = (off_t)(STATS_HEADER + rec * (int64_t)record_size(r->n) + 8);
    if (fseeko(r->fp, off, SEEK_SET) || fread(r->rec, 4, floats, r->fp) != floats)
        return -1;
    for (size_t i = 0; i < floats; i++)
        dst[i] = f32_from_bits(rl32(r->rec + 4 * i));
    return 0;
}

static void reader_free(stylize_stats_reader *r)
{
    if (r->fp)
        fclose(r->fp);
    free(r->path);
    free(r->idx);
    free(r->cut);
    free(r->rec);
    free(r->acc);
    free(r);
}

/* Header fields against each other, the model (when given) and the file size. */
static int check_header(stylize_stats_reader *r, const stylize_ctx *ctx, const uint8_t *h, int64_t size,
                        char *err, size_t err_size)
{
    const char *path = r->path;
    uint32_t n = rl32(h + 16), layers = rl32(h + 20), c1 = rl32(h + 52);
    uint64_t frames = rl64(h + OFF_FRAMES);

    if (memcmp(h, STATS_MAGIC, 8)) {
        set_err(err, err_size, "'%s' is not a stylize statistics file", path);
        return STYLIZE_ERR_MODEL;
    }
    if (rl32(h + 8) != STATS_VERSION || rl32(h + 12) != STATS_HEADER) {
        set_err(err, err_size, "stats file '%s' has version %" PRIu32 " with a %" PRIu32 "-byte header; "
                "this library reads version %d with a %d-byte header", path, rl32(h + 8), rl32(h + 12),
                STATS_VERSION, STATS_HEADER);
        return STYLIZE_ERR_MODEL;
    }
    if (ctx) {
        stylize_model_info info;
        uint64_t hash;
        stylize_get_model_info(ctx, &info);
        if (n != stylize_stats_size(ctx) || layers != (uint32_t)info.norm_layers || c1 != (uint32_t)info.width1) {
            set_err(err, err_size, "stats file '%s' was computed for a model with %" PRIu32 " statistics in %"
                    PRIu32 " layers; model '%s' has %zu in %d: use the model of pass 1", path, n, layers,
                    info.path, stylize_stats_size(ctx), info.norm_layers);
            return STYLIZE_ERR_INVALID_ARG;
        }
        if (model_hash(info.path, &hash)) {
            set_err(err, err_size, "cannot read model '%s': %s", info.path, strerror(errno));
            return STYLIZE_ERR_IO;
        }
        if (rl64(h + 24) != hash) {
            set_err(err, err_size, "stats file '%s' was computed with other weights than model '%s' "
                    "(same shape, different file contents): use the model of pass 1", path, info.path);
            return STYLIZE_ERR_INVALID_ARG;
        }
    } else if (n == 0 || n > STATS_MAX_FLOATS || layers == 0 || c1 == 0 || c1 > n / 2) {
        set_err(err, err_size, "stats file '%s' is damaged: %" PRIu32 " floats a frame, %" PRIu32
                " layers, %" PRIu32 " channels in the first", path, n, layers, c1);
        return STYLIZE_ERR_MODEL;
    }
    r->n = n;
    r->layers = (int)layers;
    r->c1 = (int)c1;
    r->thumb = (int)rl32(h + 48);
    r->tb_num = (int32_t)rl32(h + 32);
    r->tb_den = (int32_t)rl32(h + 36);
    if (r->tb_num <= 0 || r->tb_den <= 0) {
        set_err(err, err_size, "stats file '%s': invalid time base %d/%d", path, r->tb_num, r->tb_den);
        return STYLIZE_ERR_MODEL;
    }
    if (frames == 0) {
        set_err(err, err_size, "stats file '%s' is incomplete: the pass 1 that wrote it did not finish%s",
                path, size > STATS_HEADER ? "" : " (no frames)");
        return STYLIZE_ERR_MODEL;
    }
    if (frames > (uint64_t)(INT64_MAX - STATS_HEADER) / record_size(n) ||
        size != STATS_HEADER + (int64_t)frames * (int64_t)record_size(n)) {
        set_err(err, err_size, "stats file '%s' is truncated or damaged: its header announces %" PRIu64
                " frames of %zu bytes, the file holds %" PRId64 " bytes of records", path, frames,
                record_size(n), size - STATS_HEADER);
        return STYLIZE_ERR_MODEL;
    }
    r->frames = (int64_t)frames;
    return STYLIZE_OK;
}

/* Mark the cuts the window must not cross: the first layer's means against
 * the previous frame's (pts order), in units of its standard deviations. */
static int mark_cuts(stylize_stats_reader *r, float scene_cut)
{
    size_t c = (size_t)r->c1;
    float *buf = malloc(4 * c * sizeof(float)), *prev, *cur, *t;
    if (!buf)
        return STYLIZE_ERR_NOMEM;
    prev = buf, cur = buf + 2 * c;
    for (int64_t i = 0; i < r->frames; i++) {
        if (read_record(r, r->idx[i].rec, 2 * c, cur)) {
            free(buf);
            return STYLIZE_ERR_IO;
        }
        if (i > 0) {
            double d = 0;
            for (size_t k = 0; k < c; k++)
                d += fabs((double)cur[k] - prev[k]) / sqrt((double)prev[c + k] + 1e-5);
            r->cut[i] = d / (double)c > scene_cut;
            r->cuts += r->cut[i];
        }
        t = prev, prev = cur, cur = t;
    }
    free(buf);
    return STYLIZE_OK;
}

int stylize_stats_reader_open(const stylize_ctx *ctx, const char *path, float scene_cut,
                              stylize_stats_reader **out, char *err, size_t err_size)
{
    stylize_stats_reader *r;
    uint8_t h[STATS_HEADER];
    int64_t size;
    int ret;

    if (out)
        *out = NULL;
    if (!path || !out || !(scene_cut >= 0) || !isfinite(scene_cut)) {
        set_err(err, err_size, "stylize_stats_reader_open: %s", !path || !out ? "NULL argument" :
                "scene_cut must be a finite number >= 0");
        return STYLIZE_ERR_INVALID_ARG;
    }
    if (!(r = calloc(1, sizeof(*r))) || !(r->path = dup_str(path))) {
        free(r);
        set_err(err, err_size, "out of memory");
        return STYLIZE_ERR_NOMEM;
    }
    if (!(r->fp = fopen(path, "rb"))) {
        set_err(err, err_size, "cannot open stats file '%s': %s (run pass 1 first)", path, strerror(errno));
        ret = STYLIZE_ERR_IO;
        goto fail;
    }
    if (fread(h, 1, STATS_HEADER, r->fp) != STATS_HEADER) {
        if (ferror(r->fp)) {
            set_err(err, err_size, "cannot read stats file '%s': %s", path, strerror(errno));
            ret = STYLIZE_ERR_IO;
        } else {
            set_err(err, err_size, "'%s' is not a stylize statistics file (shorter than a header)", path);
            ret = STYLIZE_ERR_MODEL;
        }
        goto fail;
    }
    if (fseeko(r->fp, 0, SEEK_END) || (size = (int64_t)ftello(r->fp)) < 0) {
        set_err(err, err_size, "cannot read stats file '%s': %s", path, strerror(errno));
        ret = STYLIZE_ERR_IO;
        goto fail;
    }
    if ((ret = check_header(r, ctx, h, size, err, err_size)))
        goto fail;

    ret = STYLIZE_ERR_NOMEM;
    if (!(r->idx = malloc((size_t)r->frames * sizeof(*r->idx))) || !(r->cut = calloc((size_t)r->frames, 1)) ||
        !(r->rec = malloc(4 * r->n)) || !(r->acc = malloc(r->n * sizeof(double)))) {
        set_err(err, err_size, "out of memory indexing stats file '%s' (%" PRId64 " frames)", path, r->frames);
        goto fail;
    }
    for (int64_t i = 0; i < r->frames; i++) {
        uint8_t p[8];
        if (fseeko(r->fp, (off_t)(STATS_HEADER + i * (int64_t)record_size(r->n)), SEEK_SET) ||
            fread(p, 1, 8, r->fp) != 8) {
            set_err(err, err_size, "cannot read stats file '%s': %s", path, strerror(errno));
            ret = STYLIZE_ERR_IO;
            goto fail;
        }
        r->idx[i] = (stats_entry){ .pts = (int64_t)rl64(p), .rec = i };
    }
    qsort(r->idx, (size_t)r->frames, sizeof(*r->idx), cmp_entry);
    for (int64_t i = 1; i < r->frames; i++)
        if (r->idx[i].pts == r->idx[i - 1].pts) {
            set_err(err, err_size, "stats file '%s' has two frames with pts %" PRId64, path, r->idx[i].pts);
            ret = STYLIZE_ERR_MODEL;
            goto fail;
        }
    if (scene_cut > 0 && (ret = mark_cuts(r, scene_cut))) {
        set_err(err, err_size, "%s stats file '%s' for scene cuts",
                ret == STYLIZE_ERR_IO ? "cannot read" : "out of memory scanning", path);
        goto fail;
    }
    *out = r;
    return STYLIZE_OK;

fail:
    reader_free(r);
    return ret;
}

void stylize_stats_reader_info(const stylize_stats_reader *r, stylize_stats_info *info)
{
    memset(info, 0, sizeof(*info));
    if (!r)
        return;
    info->frames = r->frames;
    info->floats = r->n;
    info->norm_layers = r->layers;
    info->tb_num = r->tb_num;
    info->tb_den = r->tb_den;
    info->first_pts = r->idx[0].pts;
    info->last_pts = r->idx[r->frames - 1].pts;
    info->thumb = r->thumb;
    info->scene_cuts = r->cuts;
}

int stylize_stats_reader_pts(const stylize_stats_reader *r, int64_t i, int64_t *pts)
{
    if (!r || !pts || i < 0 || i >= r->frames)
        return STYLIZE_ERR_INVALID_ARG;
    *pts = r->idx[i].pts;
    return STYLIZE_OK;
}

/* pts * (num/den) / (fnum/fden), rounded to nearest with halves away from
 * zero (as FFmpeg's av_rescale_q). Returns -1 if the result overflows. */
static int rescale(int64_t pts, int num, int den, int fnum, int fden, int64_t *out)
{
    if ((int64_t)num * fden == (int64_t)den * fnum) {
        *out = pts;
        return 0;
    }
#ifdef __SIZEOF_INT128__
    __extension__ typedef __int128 i128;
    i128 b = (i128)num * fden, c = (i128)den * fnum;
    i128 a = pts < 0 ? -(i128)pts : (i128)pts;
    i128 q = (a * b + c / 2) / c;
    if (pts < 0)
        q = -q;
    if (q > INT64_MAX || q < INT64_MIN)
        return -1;
    *out = (int64_t)q;
#else
    long double q = (long double)pts * num * fden / ((long double)den * fnum);
    q = q < 0 ? -floorl(-q + 0.5L) : floorl(q + 0.5L);
    if (!(q >= (long double)INT64_MIN && q < (long double)INT64_MAX))
        return -1;
    *out = (int64_t)q;
#endif
    return 0;
}

int stylize_stats_reader_lookup(stylize_stats_reader *r, int64_t pts, int tb_num, int tb_den, int window,
                                float *dst, size_t n, char *err, size_t err_size)
{
    stats_entry key, *e = NULL;
    int64_t i, lo, hi;

    if (!r || !dst || n != r->n || window < 0 || tb_num <= 0 || tb_den <= 0) {
        set_err(err, err_size, "stylize_stats_reader_lookup: %s", !r || !dst ? "NULL argument" :
                n != (r ? r->n : 0) ? "the number of floats differs from the file's" :
                window < 0 ? "negative window" : "the time base must be positive");
        return STYLIZE_ERR_INVALID_ARG;
    }
    if (!rescale(pts, tb_num, tb_den, r->tb_num, r->tb_den, &key.pts))
        e = bsearch(&key, r->idx, (size_t)r->frames, sizeof(*r->idx), cmp_entry);
    if (!e) {
        double tf = (double)r->tb_num / r->tb_den;
        set_err(err, err_size, "stats file '%s' has no statistics for the frame at %.6f s "
                "(pts %" PRId64 " in %d/%d; the file covers %.6f..%.6f s, %" PRId64 " frames): "
                "pass 1 must see the same input with the same timestamps", r->path,
                (double)pts * tb_num / tb_den, pts, tb_num, tb_den, r->idx[0].pts * tf,
                r->idx[r->frames - 1].pts * tf, r->frames);
        return STYLIZE_ERR_INVALID_ARG;
    }
    i = e - r->idx;
    if (window == 0) {
        if (read_record(r, r->idx[i].rec, n, dst))
            goto io;
        return STYLIZE_OK;
    }
    for (lo = i; lo > 0 && lo > i - window && !r->cut[lo]; lo--)
        ;
    for (hi = i; hi + 1 < r->frames && hi < i + window && !r->cut[hi + 1]; hi++)
        ;
    memset(r->acc, 0, n * sizeof(double));
    for (int64_t j = lo; j <= hi; j++) {
        if (read_record(r, r->idx[j].rec, n, dst))
            goto io;
        for (size_t k = 0; k < n; k++)
            r->acc[k] += dst[k];
    }
    for (size_t k = 0; k < n; k++)
        dst[k] = (float)(r->acc[k] / (double)(hi - lo + 1));
    return STYLIZE_OK;

io:
    set_err(err, err_size, "cannot read stats file '%s': %s", r->path,
            ferror(r->fp) ? strerror(errno) : "unexpected end of file (changed since it was opened?)");
    return STYLIZE_ERR_IO;
}

void stylize_stats_reader_close(stylize_stats_reader *r)
{
    if (r)
        reader_free(r);
}
