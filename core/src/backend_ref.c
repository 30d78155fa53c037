/* Reference backend: the network in portable fp32 C on a thread pool.
 * Activations are NHWC in three rotating buffers sized by walking the layer
 * list; they grow to the largest crop seen and are then reused. Compact
 * networks (docs/COMPACT.md) add two rearrangements: the crop, extended by
 * reflection to a multiple of the total stride, goes through space-to-depth
 * into the first conv's input buffer, and the last conv writes a buffer
 * whose depth-to-space is cropped into the caller's output. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "conv_ref.h"
#include "stylize.h"
#include "threadpool.h"

#define NORM_EPS 1e-5
#define NSLOTS 3
#define ROWS_PER_STATS_TASK 8

typedef struct ref_state {
    const sty_model *m;
    sty_pool *pool;
    int threads;
    float **packed, **bias_padded; /* per conv; NULL for the small kernel */
    float **gpacked;               /* per grouped conv: [k*k][cin/groups][cout] */
    int *coutp;
    int *dst_slot;                 /* per layer, from plan_slots() */
    /* working memory, grown on demand */
    float *slot[NSLOTS];
    size_t slot_cap[NSLOTS];
    int *ypad, *xpad;
    size_t tab_cap;
    float *scratch;
    size_t scratch_cap; /* per thread */
    double *partial;
    size_t partial_cap;
    float *scale, *shift;
    float *in_buf, *final_buf;     /* compact: rearranged input, last conv's output */
    size_t in_cap, final_cap;
} ref_state;

static int uses_blocked_kernel(const sty_conv *c)
{
    return c->groups == 1 && c->cout >= STY_CONV_BLOCK;
}

static void ref_destroy(void *opaque)
{
    ref_state *st = opaque;
    if (!st)
        return;
    sty_pool_destroy(st->pool);
    for (int i = 0; st->packed && i < st->m->n_convs; i++) {
        free(st->packed[i]);
        free(st->bias_padded[i]);
        free(st->gpacked[i]);
    }
    free(st->packed);
    free(st->bias_padded);
    free(st->gpacked);
    free(st->in_buf);
    free(st->final_buf);
    free(st->coutp);
    free(st->dst_slot);
    for (int i = 0; i < NSLOTS; i++)
        free(st->slot[i]);
    free(st->ypad);
    free(st->xpad);
    free(st->scratch);
    free(st->partial);
    free(st->scale);
    free(st->shift);
    free(st);
}

static int ref_available(void)
{
    return 1;
}

static stylize_precision ref_active_precision(const void *state)
{
    return STYLIZE_PRECISION_FP32;
}

static int ref_create(const sty_model *m, const sty_backend_config *cfg, void **out, char *err, size_t err_size)
{
    const int threads = cfg->threads;
    *out = NULL;
    if (cfg->precision == STYLIZE_PRECISION_BF16) {
        snprintf(err, err_size, "the ref backend computes in fp32 only (precision=bf16 needs the dnnl backend)");
        return STYLIZE_ERR_UNSUPPORTED;
    }
    if (cfg->precision == STYLIZE_PRECISION_FP16) {
        snprintf(err, err_size, "the ref backend computes in fp32 only (precision=fp16 needs the cuda backend)");
        return STYLIZE_ERR_UNSUPPORTED;
    }
    ref_state *st = calloc(1, sizeof(*st));
    if (!st)
        goto nomem;
    st->m = m;
    st->threads = threads;
    st->pool = sty_pool_create(threads);
    st->packed = calloc((size_t)m->n_convs, sizeof(*st->packed));
    st->bias_padded = calloc((size_t)m->n_convs, sizeof(*st->bias_padded));
    st->gpacked = calloc((size_t)m->n_convs, sizeof(*st->gpacked));
    st->coutp = calloc((size_t)m->n_convs, sizeof(*st->coutp));
    st->dst_slot = calloc((size_t)m->n_layers, sizeof(*st->dst_slot));
    int cmax = 3;
    for (int i = 0; i < m->n_convs; i++)
        cmax = m->convs[i].cout > cmax ? m->convs[i].cout : cmax;
    st->scale = malloc(sizeof(float) * (size_t)cmax);
    st->shift = malloc(sizeof(float) * (size_t)cmax);
    if (!st->pool || !st->packed || !st->bias_padded || !st->gpacked || !st->coutp || !st->dst_slot || !st->scale || !st->shift)
        goto nomem;
    for (int i = 0; i < m->n_convs; i++) {
        const sty_conv *c = &m->convs[i];
        if (c->groups > 1) {
            st->gpacked[i] = malloc(sizeof(float) * (size_t)c->k * c->k * (c->cin / c->groups) * c->cout);
            if (!st->gpacked[i])
                goto nomem;
            sty_conv_pack_grouped(c->weight, c->cout, c->cin / c->groups, c->k, st->gpacked[i]);
            continue;
        }
        if (!uses_blocked_kernel(c))
            continue;
        int coutp = (c->cout + STY_CONV_BLOCK - 1) / STY_CONV_BLOCK * STY_CONV_BLOCK;
        st->coutp[i] = coutp;
        st->packed[i] = malloc(sizeof(float) * (size_t)c->k * c->k * c->cin * coutp);
        st->bias_padded[i] = malloc(sizeof(float) * (size_t)coutp);
        if (!st->packed[i] || !st->bias_padded[i])
            goto nomem;
        sty_conv_pack(c->weight, c->bias, c->cout, c->cin, c->k, coutp, st->packed[i], st->bias_padded[i]);
    }
    *out = st;
    return STYLIZE_OK;
nomem:
    ref_destroy(st);
    snprintf(err, err_size, "reference backend: out of memory");
    return STYLIZE_ERR_NOMEM;
}

/* Which buffer each layer writes to, and how big each buffer must be for an
 * h x w crop. Residual blocks keep their input (the skip) alive, so three
 * buffers rotate. The last layer writes to the caller's output. */
typedef struct plan_info {
    size_t slot_floats[NSLOTS];
    size_t tab_ints;
    size_t scratch_floats;
    size_t partial_doubles;
    size_t in_floats, final_floats; /* compact: rearranged input, last conv's output */
} plan_info;

static void plan_slots(const sty_model *m, int h, int w, int *dst_slot, plan_info *pi)
{
    int cur = -1, skip = -1;
    memset(pi, 0, sizeof(*pi));
    h = sty_model_in_size(m, h);
    w = sty_model_in_size(m, w);
    if (m->arch == STY_ARCH_COMPACT)
        pi->in_floats = (size_t)h * w * m->convs[0].cin;
    for (int li = 0; li < m->n_layers; li++) {
        const sty_layer *L = &m->layers[li];
        const sty_conv *c = &m->convs[L->conv];
        int oh = sty_conv_out_size(c, h), ow = sty_conv_out_size(c, w);
        size_t tab = (size_t)(oh > ow ? oh : ow) * c->stride + c->k;
        if (tab > pi->tab_ints)
            pi->tab_ints = tab;
        if (!uses_blocked_kernel(c)) {
            size_t sc = (size_t)sty_conv_scratch_floats(c->cin, c->k, c->stride, ow);
            if (sc > pi->scratch_floats)
                pi->scratch_floats = sc;
        }
        if (L->norm >= 0) {
            size_t tasks = ((size_t)oh + ROWS_PER_STATS_TASK - 1) / ROWS_PER_STATS_TASK;
            if (tasks * (size_t)c->cout > pi->partial_doubles)
                pi->partial_doubles = tasks * (size_t)c->cout;
        }
        if (L->save_skip)
            skip = cur;
        int dst = -1;
        if (li < m->n_layers - 1) {
            for (dst = 0; dst == cur || dst == skip; dst++)
                ;
            size_t need = (size_t)oh * ow * c->cout;
            if (need > pi->slot_floats[dst])
                pi->slot_floats[dst] = need;
        }
        if (li == m->n_layers - 1 && m->arch == STY_ARCH_COMPACT)
            pi->final_floats = (size_t)oh * ow * c->cout;
        dst_slot[li] = dst;
        if (L->add_skip)
            skip = -1;
        cur = dst;
        h = oh;
        w = ow;
    }
}

static int grow(void **buf, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    void *p = realloc(*buf, need * elem);
    if (!p)
        return -1;
    *buf = p;
    *cap = need;
    return 0;
}

static int ensure_workspace(ref_state *st, int h, int w)
{
    plan_info pi;
    plan_slots(st->m, h, w, st->dst_slot, &pi);
    for (int i = 0; i < NSLOTS; i++)
        if (grow((void **)&st->slot[i], &st->slot_cap[i], pi.slot_floats[i], sizeof(float)))
            return -1;
    size_t tab_cap = st->tab_cap;
    if (grow((void **)&st->ypad, &tab_cap, pi.tab_ints, sizeof(int)) ||
        grow((void **)&st->xpad, &st->tab_cap, pi.tab_ints, sizeof(int)))
        return -1;
    if (pi.scratch_floats > st->scratch_cap) {
        float *p = realloc(st->scratch, pi.scratch_floats * (size_t)st->threads * sizeof(float));
        if (!p)
            return -1;
        st->scratch = p;
        st->scratch_cap = pi.scratch_floats;
    }
    if (grow((void **)&st->partial, &st->partial_cap, pi.partial_doubles, sizeof(double)) ||
        grow((void **)&st->in_buf, &st->in_cap, pi.in_floats, sizeof(float)) ||
        grow((void **)&st->final_buf, &st->final_cap, pi.final_floats, sizeof(float)))
        return -1;
    return 0;
}

static size_t ref_workspace_bytes(const sty_model *m, int h, int w)
{
    plan_info pi;
    int *slots = malloc(sizeof(int) * (size_t)m->n_layers);
    if (!slots)
        return (size_t)-1;
    plan_slots(m, h, w, slots, &pi);
    free(slots);
    return sizeof(float) * (pi.slot_floats[0] + pi.slot_floats[1] + pi.slot_floats[2]) +
           2 * sizeof(int) * pi.tab_ints + sizeof(double) * pi.partial_doubles +
           sizeof(float) * (pi.in_floats + pi.final_floats);
}

/* pad[j] = source index of padded (and, when upsampling, upsampled) position j. */
static void fill_pad_table(int *pad, int count, int n, const sty_conv *c)
{
    int p = c->k / 2;
    for (int j = 0; j < count; j++)
        pad[j] = c->upsample ? sty_reflect(j - p, 2L * n) / 2 : sty_reflect(j - p, n);
}

typedef struct conv_task {
    ref_state *st;
    sty_conv_job job;
} conv_task;

static void conv_task_fn(void *arg, int row, int thread)
{
    conv_task *t = arg;
    sty_conv_row(&t->job, row, t->st->scratch + (size_t)thread * t->st->scratch_cap);
}

typedef struct norm_task {
    ref_state *st;
    float *x;        /* n_rows x row_px x c */
    const float *skip;
    int rows, row_px, c, relu;
    const double *mean; /* pass 2 of the statistics */
} norm_task;

static void sum_task_fn(void *arg, int task, int thread)
{
    norm_task *t = arg;
    int r0 = task * ROWS_PER_STATS_TASK, r1 = r0 + ROWS_PER_STATS_TASK < t->rows ? r0 + ROWS_PER_STATS_TASK : t->rows;
    double *acc = t->st->partial + (size_t)task * t->c;
    for (int ch = 0; ch < t->c; ch++)
        acc[ch] = 0;
    const float *p = t->x + (size_t)r0 * t->row_px * t->c;
    size_t n = (size_t)(r1 - r0) * t->row_px;
    if (!t->mean) {
        for (size_t i = 0; i < n; i++, p += t->c)
            for (int ch = 0; ch < t->c; ch++)
                acc[ch] += p[ch];
    } else {
        for (size_t i = 0; i < n; i++, p += t->c)
            for (int ch = 0; ch < t->c; ch++) {
                double d = p[ch] - t->mean[ch];
                acc[ch] += d * d;
            }
    }
}

static void apply_task_fn(void *arg, int row, int thread)
{
    norm_task *t = arg;
    const float *scale = t->st->scale, *shift = t->st->shift;
    float *p = t->x + (size_t)row * t->row_px * t->c;
    const float *s = t->skip ? t->skip + (size_t)row * t->row_px * t->c : NULL;
    for (int i = 0; i < t->row_px; i++, p += t->c) {
        for (int ch = 0; ch < t->c; ch++) {
            float v = p[ch] * scale[ch] + shift[ch];
            if (s)
                v += s[ch];
            if (t->relu && v < 0)
                v = 0;
            p[ch] = v;
        }
        if (s)
            s += t->c;
    }
}

/* Exact mode: per-channel mean and sum of squared deviations of the
 * region [ry0, ry1) x [rx0, rx1) of x, in double, two passes, partial sums
 * per fixed row chunk reduced in order (thread-count independent). */
typedef struct region_task {
    ref_state *st;
    const float *x;
    int row_px, c, ry0, ry1, rx0, rx1;
    const double *mean; /* pass 2 */
} region_task;

static void region_task_fn(void *arg, int task, int thread)
{
    region_task *t = arg;
    const int r0 = t->ry0 + task * ROWS_PER_STATS_TASK;
    const int r1 = r0 + ROWS_PER_STATS_TASK < t->ry1 ? r0 + ROWS_PER_STATS_TASK : t->ry1;
    double *acc = t->st->partial + (size_t)task * t->c;
    for (int ch = 0; ch < t->c; ch++)
        acc[ch] = 0;
    for (int y = r0; y < r1; y++) {
        const float *p = t->x + ((size_t)y * t->row_px + (size_t)t->rx0) * t->c;
        for (int x = t->rx0; x < t->rx1; x++, p += t->c)
            for (int ch = 0; ch < t->c; ch++) {
                if (!t->mean) {
                    acc[ch] += p[ch];
                } else {
                    double d = p[ch] - t->mean[ch];
                    acc[ch] += d * d;
                }
            }
    }
}

static void region_moments(ref_state *st, region_task *t, double *moments)
{
    const int tasks = (t->ry1 - t->ry0 + ROWS_PER_STATS_TASK - 1) / ROWS_PER_STATS_TASK;
    const double count = (double)(t->ry1 - t->ry0) * (t->rx1 - t->rx0);
    for (int pass = 0; pass < 2; pass++) {
        t->mean = pass ? moments : NULL;
        sty_pool_run(st->pool, tasks, region_task_fn, t);
        for (int ch = 0; ch < t->c; ch++) {
            double s = 0;
            for (int k = 0; k < tasks; k++)
                s += st->partial[(size_t)k * t->c + ch];
            moments[pass * t->c + ch] = pass ? s : s / count;
        }
    }
}

/* Per-channel mean and biased variance, in double, two passes. Partial sums
 * are per fixed row chunk and reduced in order, so the result does not
 * depend on the number of threads. */
static void channel_stats(ref_state *st, norm_task *t, float *mean_out, float *var_out)
{
    int tasks = (t->rows + ROWS_PER_STATS_TASK - 1) / ROWS_PER_STATS_TASK;
    double count = (double)t->rows * t->row_px;
    double mean[STY_MAX_WIDTH];
    for (int pass = 0; pass < 2; pass++) {
        t->mean = pass ? mean : NULL;
        sty_pool_run(st->pool, tasks, sum_task_fn, t);
        for (int ch = 0; ch < t->c; ch++) {
            double s = 0;
            for (int k = 0; k < tasks; k++)
                s += st->partial[(size_t)k * t->c + ch];
            if (pass == 0)
                mean[ch] = s / count;
            else
                var_out[ch] = (float)(s / count);
        }
    }
    for (int ch = 0; ch < t->c; ch++)
        mean_out[ch] = (float)mean[ch];
}

/* Compact input: the crop extended by reflection to in_h*S x in_w*S, then
 * space-to-depth (channel c*S*S + dy*S + dx of pixel (y, x) holds colour c
 * of pixel (S*y + dy, S*x + dx)). */
static void space_to_depth(const sty_run *r, int S, int in_h, int in_w, float *dst)
{
    const int C = 3 * S * S;
    for (int y = 0; y < in_h; y++)
        for (int x = 0; x < in_w; x++) {
            float *d = dst + ((size_t)y * in_w + x) * C;
            for (int dy = 0; dy < S; dy++) {
                const float *row = r->in + (size_t)sty_reflect((long)S * y + dy, r->h) * r->w * 3;
                for (int dx = 0; dx < S; dx++) {
                    const float *px = row + (size_t)sty_reflect((long)S * x + dx, r->w) * 3;
                    for (int c = 0; c < 3; c++)
                        d[c * S * S + dy * S + dx] = px[c];
                }
            }
        }
}

/* Compact output: depth-to-space of the last conv's w x (3*P*P) rows,
 * cropped to the caller's out_h x out_w. */
static void depth_to_space(const float *src, int w, int P, const sty_run *r)
{
    const int C = 3 * P * P;
    for (int y = 0; y < r->out_h; y++)
        for (int x = 0; x < r->out_w; x++) {
            const float *s = src + ((size_t)(y / P) * w + x / P) * C + (y % P) * P + x % P;
            float *d = r->out + ((size_t)y * r->out_w + x) * 3;
            for (int c = 0; c < 3; c++)
                d[c] = s[c * P * P];
        }
}

static int ref_run(void *opaque, const sty_run *r)
{
    ref_state *st = opaque;
    const sty_model *m = st->m;
    const int compact = m->arch == STY_ARCH_COMPACT;

    int last_norm_layer = -1;
    for (int li = 0; li < m->n_layers; li++)
        if (m->layers[li].norm >= 0)
            last_norm_layer = li;
    if (r->stats_only && last_norm_layer < 0)
        return STYLIZE_OK; /* no statistics to record */
    if (ensure_workspace(st, r->h, r->w))
        return STYLIZE_ERR_NOMEM;

    const float *cur = r->start_layer > 0 ? r->act : r->in;
    const float *skip = NULL;
    int h = sty_model_in_size(m, r->h), w = sty_model_in_size(m, r->w);
    if (compact && r->start_layer == 0) {
        space_to_depth(r, m->space_to_depth, h, w, st->in_buf);
        cur = st->in_buf;
    }
    for (int li = 0; li < r->start_layer; li++) { /* exact mode's cache: classic networks only */
        h = sty_conv_out_size(&m->convs[m->layers[li].conv], h);
        w = sty_conv_out_size(&m->convs[m->layers[li].conv], w);
    }
    for (int li = r->start_layer; li < m->n_layers; li++) {
        const sty_layer *L = &m->layers[li];
        const sty_conv *c = &m->convs[L->conv];
        const int oh = sty_conv_out_size(c, h), ow = sty_conv_out_size(c, w);
        const int last = li == m->n_layers - 1;
        if (L->save_skip)
            skip = cur;

        conv_task ct = {.st = st};
        sty_conv_job *j = &ct.job;
        j->in = cur;
        j->iw = w;
        j->cin = c->cin;
        j->cout = c->cout;
        j->k = c->k;
        j->stride = c->stride;
        j->packed = st->packed[L->conv];
        j->bias_padded = st->bias_padded[L->conv];
        j->coutp = st->coutp[L->conv];
        j->weight = c->weight;
        j->bias = c->bias;
        j->groups = c->groups;
        j->gpacked = st->gpacked[L->conv];
        j->ypad = st->ypad;
        j->xpad = st->xpad;
        fill_pad_table(st->ypad, (oh - 1) * c->stride + c->k, h, c);
        fill_pad_table(st->xpad, (ow - 1) * c->stride + c->k, w, c);
        int rows = oh;
        if (last && !compact) {
            j->out = r->out;
            j->cols = r->out_w < ow ? r->out_w : ow;
            j->out_stride = (long)r->out_w * 3;
            rows = r->out_h < oh ? r->out_h : oh;
        } else {
            j->out = last ? st->final_buf : st->slot[st->dst_slot[li]];
            j->cols = ow;
            j->out_stride = (long)ow * c->cout;
        }
        sty_pool_run(st->pool, rows, conv_task_fn, &ct);

        if (L->norm >= 0 && r->moments && L->norm == r->stop_norm) {
            if (r->ry0 < 0 || r->rx0 < 0 || r->ry1 > oh || r->rx1 > ow || r->ry0 >= r->ry1 || r->rx0 >= r->rx1)
                return STYLIZE_ERR_INVALID_ARG;
            region_task rt = {.st = st, .x = j->out, .row_px = ow, .c = c->cout,
                              .ry0 = r->ry0, .ry1 = r->ry1, .rx0 = r->rx0, .rx1 = r->rx1};
            region_moments(st, &rt, r->moments);
            return STYLIZE_OK;
        }
        /* norm, then the residual add, then ReLU, in one pass */
        if (L->norm >= 0 || L->add_skip || L->relu) {
            norm_task nt = {.st = st, .x = j->out, .skip = L->add_skip ? skip : NULL,
                            .rows = oh, .row_px = ow, .c = c->cout, .relu = L->relu};
            if (L->norm >= 0) {
                const sty_norm *n = &m->norms[L->norm];
                float mean_buf[STY_MAX_WIDTH], var_buf[STY_MAX_WIDTH];
                const float *mean = mean_buf, *var = var_buf;
                if (r->norm == STY_NORM_SELF) {
                    channel_stats(st, &nt, mean_buf, var_buf);
                    if (r->stats) {
                        memcpy(r->stats + n->stats_offset, mean_buf, sizeof(float) * (size_t)n->c);
                        memcpy(r->stats + n->stats_offset + n->c, var_buf, sizeof(float) * (size_t)n->c);
                    }
                } else {
                    mean = r->stats + n->stats_offset;
                    var = mean + n->c;
                }
                for (int ch = 0; ch < n->c; ch++) {
                    double sc = n->gamma[ch] / sqrt((double)var[ch] + NORM_EPS);
                    st->scale[ch] = (float)sc;
                    st->shift[ch] = (float)(n->beta[ch] - mean[ch] * sc);
                }
                if (r->stats_only && li == last_norm_layer)
                    return STYLIZE_OK;
            } else {
                for (int ch = 0; ch < c->cout; ch++) {
                    st->scale[ch] = 1;
                    st->shift[ch] = 0;
                }
            }
            sty_pool_run(st->pool, oh, apply_task_fn, &nt);
            if (L->add_skip)
                skip = NULL;
        }
        if (r->save && li == r->save_layer)
            memcpy(r->save, j->out, sizeof(float) * (size_t)oh * ow * c->cout);
        cur = j->out;
        h = oh;
        w = ow;
    }
    if (compact)
        depth_to_space(st->final_buf, w, m->pixel_shuffle, r);
    return STYLIZE_OK;
}

const sty_backend_ops sty_backend_ref = {
    .name = "ref",
    .id = STYLIZE_BACKEND_REF,
    .available = ref_available,
    .active_precision = ref_active_precision,
    .create = ref_create,
    .destroy = ref_destroy,
    .run = ref_run,
    .workspace_bytes = ref_workspace_bytes,
    .exact = 1,
};
