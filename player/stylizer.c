/* stylize-player: the stylizer thread. Every -m model is loaded once, in
 * its own stylize_ctx, before playback starts; switching styles picks
 * another context between two frames (no reload, no graph rebuild). Options
 * (strength, mode, colour, smoothing) go to the context in use with
 * stylize_set_options, which is cheap. A change that fails (a switch, an
 * option, or a frame that the new settings cannot process) is undone: the
 * previous style and options keep running and the reason is reported. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "player.h"

struct stylizer {
    stylizer_model m[PLAYER_MAX_MODELS];
    int n;
    controls *ctl;
    mailbox *in, *out;
    int lockstep;
    pthread_t thread;
    int started;
    int cur;                   /* model of the last good frame */
    stylize_options good;      /* options of the last good frame */
};

static void model_name(stylizer_model *m, const char *arg)
{
    stylize_model_info info;
    stylize_get_model_info(m->ctx, &info);
    snprintf(m->path, sizeof(m->path), "%s", info.path ? info.path : arg);
    if (info.style && info.style[0]) {
        snprintf(m->name, sizeof(m->name), "%s", info.style);
        return;
    }
    const char *base = strrchr(m->path, '/');
    base = base ? base + 1 : m->path;
    snprintf(m->name, sizeof(m->name), "%s", base);
    char *dot = strstr(m->name, ".safetensors");
    if (dot && dot != m->name)
        *dot = 0;
}

stylizer *stylizer_create(const char *const *models, int n, const stylize_options *opts,
                          controls *ctl, char *err, size_t err_size)
{
    stylizer *st = calloc(1, sizeof(*st));
    if (!st) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    st->ctl = ctl;
    st->good = *opts;
    for (int i = 0; i < n && i < PLAYER_MAX_MODELS; i++) {
        char e[1024] = "";
        int r = stylize_create(models[i], opts, &st->m[i].ctx, e, sizeof(e));
        if (r < 0) {
            snprintf(err, err_size, "cannot load model %d '%s': %s", i + 1, models[i],
                     e[0] ? e : stylize_strerror(r));
            stylizer_destroy(st);
            return NULL;
        }
        st->n = i + 1;
        model_name(&st->m[i], models[i]);
        st->m[i].applied_gen = ctl->gen;
    }
    return st;
}

int stylizer_count(const stylizer *st)
{
    return st->n;
}

const stylizer_model *stylizer_model_at(const stylizer *st, int i)
{
    return i >= 0 && i < st->n ? &st->m[i] : NULL;
}

/* Undo a requested change that failed: the controls go back to what the
 * last good frame used (unless the user changed them again meanwhile). */
static void revert_controls(stylizer *st, int model, unsigned gen, int revert_model, int revert_opts)
{
    controls *c = st->ctl;
    pthread_mutex_lock(&c->lock);
    if (revert_model && c->model == model)
        c->model = st->cur;
    if (revert_opts && c->gen == gen) {
        c->opts = st->good;
        c->gen++;
    }
    pthread_mutex_unlock(&c->lock);
}

/* Make model i ready with options o (generation gen). */
static int apply_options(stylizer *st, int i, const stylize_options *o, unsigned gen)
{
    stylizer_model *m = &st->m[i];
    if (m->applied_gen == gen)
        return 0;
    int r = stylize_set_options(m->ctx, o);
    if (r < 0)
        return r;
    m->applied_gen = gen;
    return 0;
}

static void copy_frame(pframe *dst, const pframe *src)
{
    for (int y = 0; y < src->height; y++)
        memcpy(dst->data + (size_t)y * dst->linesize, src->data + (size_t)y * src->linesize,
               (size_t)src->width * 3);
}

static void view(stylize_frame *v, const pframe *f)
{
    memset(v, 0, sizeof(*v));
    v->format = STYLIZE_PIX_RGB24;
    v->width = f->width;
    v->height = f->height;
    v->data[0] = f->data;
    v->linesize[0] = f->linesize;
}

/* Stylize one frame with the requested settings, falling back to the last
 * good ones when they fail. Returns the result, or NULL (out of memory). */
static presult *stylize_one(stylizer *st, pframe *in, int restyled, double t_start)
{
    presult *res = calloc(1, sizeof(*res));
    pframe *out = pframe_alloc(in->width, in->height);
    if (!res || !out) {
        free(res);
        pframe_unref(&out);
        return NULL;
    }
    out->index = in->index;
    out->t_capture = in->t_capture;
    out->src_width = in->src_width;
    out->src_height = in->src_height;

    for (int attempt = 0; attempt < 3; attempt++) {
        controls *c = st->ctl;
        pthread_mutex_lock(&c->lock);
        int want = c->model;
        stylize_options o = c->opts;
        unsigned gen = c->gen;
        pthread_mutex_unlock(&c->lock);
        if (want < 0 || want >= st->n)
            want = st->cur;

        int r = apply_options(st, want, &o, gen);
        if (r < 0) {
            const char *why = stylize_errmsg(st->m[want].ctx);
            if (want != st->cur)
                controls_message(c, "cannot switch to style %d (%s): %s; keeping %s", want + 1,
                                 st->m[want].name, why[0] ? why : stylize_strerror(r), st->m[st->cur].name);
            else
                controls_message(c, "cannot apply the new settings: %s; keeping the previous ones",
                                 why[0] ? why : stylize_strerror(r));
            revert_controls(st, want, gen, want != st->cur, want == st->cur);
            continue;
        }
        if (want != st->cur)
            stylize_reset_smoothing(st->m[want].ctx); /* its history is from another time */

        stylize_frame vi, vo;
        view(&vi, in);
        view(&vo, out);
        double t0 = player_now();
        r = stylize_process(st->m[want].ctx, &vi, &vo);
        double t1 = player_now();
        if (r < 0) {
            const char *why = stylize_errmsg(st->m[want].ctx);
            int switched = want != st->cur;
            int opts_changed = memcmp(&o, &st->good, sizeof(o)) != 0;
            if (switched || opts_changed) {
                controls_message(c, "%s failed on a %dx%d frame: %s; keeping %s", switched ? "the new style" :
                                 "the new settings", in->width, in->height, why[0] ? why : stylize_strerror(r),
                                 switched ? st->m[st->cur].name : "the previous settings");
                revert_controls(st, want, gen, switched, !switched && opts_changed);
                st->m[want].applied_gen = 0; /* re-apply the options next time it is used */
                continue;
            }
            controls_message(c, "stylizing a %dx%d frame failed: %s (showing it unstyled)", in->width,
                             in->height, why[0] ? why : stylize_strerror(r));
            break;
        }
        st->cur = want;
        st->good = o;
        res->model = want;
        res->process_s = t1 - t0;
        res->orig = pframe_ref(in);
        res->styl = out;
        res->t_done = t1;
        res->t_ref = restyled ? t_start : in->t_capture;
        res->restyled = restyled;
        return res;
    }
    /* Nothing worked: show the frame as it is. */
    copy_frame(out, in);
    res->model = -1;
    res->orig = pframe_ref(in);
    res->styl = out;
    res->t_done = player_now();
    res->t_ref = restyled ? t_start : in->t_capture;
    res->restyled = restyled;
    return res;
}

static void *stylizer_thread(void *arg)
{
    stylizer *st = arg;
    pframe *held = NULL;
    int in_eof = 0;

    for (;;) {
        int fl = 0;
        if (st->lockstep && held) {
            /* Paused in lockstep mode: every shown frame is the held one,
             * stylized with the settings of the moment. A frame decoded
             * before the pause stays in the mailbox until the resume. */
            pthread_mutex_lock(&st->ctl->lock);
            int paused = st->ctl->paused;
            pthread_mutex_unlock(&st->ctl->lock);
            if (paused) {
                presult *res = stylize_one(st, held, 0, player_now());
                if (!res || mailbox_put(st->out, res) < 0)
                    break;
                continue;
            }
        }
        pframe *f = mailbox_take(st->in, -1, !in_eof, &fl);
        if (fl & MB_CLOSED) {
            pframe_unref(&f);
            break;
        }
        int restyle = 0;
        double t_start = player_now();
        if (f) {
            if (st->lockstep)
                mailbox_ack(st->in); /* the source may decode the next frame meanwhile */
            pframe_unref(&held);
            held = f;
        } else if ((fl & MB_EOF) && !in_eof) {
            in_eof = 1;
            mailbox_set_eof(st->out);
            continue;
        } else if ((fl & MB_KICK) && held && !st->lockstep) {
            /* A setting changed: show it on the held frame when no new
             * frame is coming (paused, a still image, the end of a file). */
            pthread_mutex_lock(&st->ctl->lock);
            int paused = st->ctl->paused;
            pthread_mutex_unlock(&st->ctl->lock);
            if (!paused && !in_eof)
                continue;
            restyle = 1;
        } else {
            continue;
        }
        presult *res = stylize_one(st, held, restyle, t_start);
        if (!res) {
            controls_message(st->ctl, "out of memory");
            continue;
        }
        if (mailbox_put(st->out, res) < 0)
            break;
    }
    pframe_unref(&held);
    return NULL;
}

int stylizer_start(stylizer *st, mailbox *in, mailbox *out, int lockstep)
{
    st->in = in;
    st->out = out;
    st->lockstep = lockstep;
    if (pthread_create(&st->thread, NULL, stylizer_thread, st))
        return -1;
    st->started = 1;
    return 0;
}

void stylizer_destroy(stylizer *st)
{
    if (!st)
        return;
    if (st->started)
        pthread_join(st->thread, NULL);
    for (int i = 0; i < st->n; i++)
        stylize_destroy(st->m[i].ctx);
    free(st);
}
