/* stylize-player: frames, the one-slot mailbox, messages, PNG output. */
#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "player.h"

double player_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- frames ------------------------------------------------------------------ */

pframe *pframe_alloc(int width, int height)
{
    pframe *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->linesize = (3 * width + 31) & ~31;
    f->data = malloc((size_t)f->linesize * height);
    if (!f->data) {
        free(f);
        return NULL;
    }
    atomic_init(&f->refs, 1);
    f->width = width;
    f->height = height;
    f->src_width = width;
    f->src_height = height;
    return f;
}

pframe *pframe_ref(pframe *f)
{
    if (f)
        atomic_fetch_add(&f->refs, 1);
    return f;
}

void pframe_unref(pframe **pf)
{
    pframe *f = *pf;
    *pf = NULL;
    if (f && atomic_fetch_sub(&f->refs, 1) == 1) {
        free(f->data);
        free(f);
    }
}

void pframe_free_item(void *f)
{
    pframe *p = f;
    pframe_unref(&p);
}

void presult_free_item(void *r)
{
    presult_free(r);
}

void presult_free(presult *r)
{
    if (!r)
        return;
    pframe_unref(&r->orig);
    pframe_unref(&r->styl);
    free(r);
}

/* ---- mailbox -------------------------------------------------------------------- */

int mailbox_init(mailbox *mb, void (*free_item)(void *), int lockstep)
{
    memset(mb, 0, sizeof(*mb));
    if (pthread_mutex_init(&mb->lock, NULL))
        return -1;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int r = pthread_cond_init(&mb->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (r) {
        pthread_mutex_destroy(&mb->lock);
        return -1;
    }
    mb->free_item = free_item;
    mb->lockstep = lockstep;
    mb->acked = 1;
    return 0;
}

void mailbox_destroy(mailbox *mb)
{
    if (mb->item && mb->free_item)
        mb->free_item(mb->item);
    mb->item = NULL;
    pthread_cond_destroy(&mb->cond);
    pthread_mutex_destroy(&mb->lock);
}

int mailbox_put(mailbox *mb, void *item)
{
    pthread_mutex_lock(&mb->lock);
    if (mb->lockstep)
        while (!mb->closed && (mb->item || !mb->acked))
            pthread_cond_wait(&mb->cond, &mb->lock);
    if (mb->closed) {
        pthread_mutex_unlock(&mb->lock);
        mb->free_item(item);
        return -1;
    }
    void *old = mb->item;
    mb->item = item;
    mb->acked = 0;
    if (old)
        mb->dropped++;
    pthread_cond_broadcast(&mb->cond);
    /* Lockstep: return only once the consumer has finished with it. */
    if (mb->lockstep)
        while (!mb->closed && !mb->acked)
            pthread_cond_wait(&mb->cond, &mb->lock);
    pthread_mutex_unlock(&mb->lock);
    if (old)
        mb->free_item(old); /* outside the lock: freeing may be slow */
    return 0;
}

static void *take_locked(mailbox *mb, int *flags)
{
    void *item = mb->item;
    mb->item = NULL;
    int fl = 0;
    if (mb->kicked)
        fl |= MB_KICK;
    mb->kicked = 0;
    if (mb->eof && !item)
        fl |= MB_EOF;
    if (mb->closed)
        fl |= MB_CLOSED;
    if (flags)
        *flags = fl;
    if (item)
        pthread_cond_broadcast(&mb->cond); /* a lockstep producer waits for the empty slot */
    return item;
}

void *mailbox_take(mailbox *mb, double timeout_s, int wake_on_eof, int *flags)
{
    struct timespec until;
    if (timeout_s >= 0) {
        clock_gettime(CLOCK_MONOTONIC, &until);
        double t = until.tv_nsec * 1e-9 + timeout_s;
        until.tv_sec += (time_t)floor(t);
        until.tv_nsec = (long)((t - floor(t)) * 1e9);
    }
    pthread_mutex_lock(&mb->lock);
    while (!mb->item && !mb->kicked && !(wake_on_eof && mb->eof) && !mb->closed) {
        if (timeout_s < 0)
            pthread_cond_wait(&mb->cond, &mb->lock);
        else if (pthread_cond_timedwait(&mb->cond, &mb->lock, &until) == ETIMEDOUT)
            break;
    }
    void *item = take_locked(mb, flags);
    pthread_mutex_unlock(&mb->lock);
    return item;
}

void *mailbox_poll(mailbox *mb, int *flags)
{
    pthread_mutex_lock(&mb->lock);
    void *item = take_locked(mb, flags);
    pthread_mutex_unlock(&mb->lock);
    return item;
}

void mailbox_ack(mailbox *mb)
{
    pthread_mutex_lock(&mb->lock);
    mb->acked = 1;
    pthread_cond_broadcast(&mb->cond);
    pthread_mutex_unlock(&mb->lock);
}

void mailbox_kick(mailbox *mb)
{
    pthread_mutex_lock(&mb->lock);
    mb->kicked = 1;
    pthread_cond_broadcast(&mb->cond);
    pthread_mutex_unlock(&mb->lock);
}

void mailbox_set_eof(mailbox *mb)
{
    pthread_mutex_lock(&mb->lock);
    mb->eof = 1;
    pthread_cond_broadcast(&mb->cond);
    pthread_mutex_unlock(&mb->lock);
}

void mailbox_close(mailbox *mb)
{
    pthread_mutex_lock(&mb->lock);
    mb->closed = 1;
    void *old = mb->item;
    mb->item = NULL;
    pthread_cond_broadcast(&mb->cond);
    pthread_mutex_unlock(&mb->lock);
    if (old)
        mb->free_item(old);
}

uint64_t mailbox_dropped(mailbox *mb)
{
    pthread_mutex_lock(&mb->lock);
    uint64_t d = mb->dropped;
    pthread_mutex_unlock(&mb->lock);
    return d;
}

/* ---- messages ------------------------------------------------------------------- */

void controls_message(controls *ctl, const char *fmt, ...)
{
    char buf[PLAYER_MSG_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    fprintf(stderr, "stylize-player: %s\n", buf);
    pthread_mutex_lock(&ctl->lock);
    memcpy(ctl->msg, buf, sizeof(buf));
    ctl->msg_gen++;
    pthread_mutex_unlock(&ctl->lock);
}

/* ---- PNG ------------------------------------------------------------------------ */

int write_png_rgb(const char *path, const uint8_t *rgb, int w, int h, int linesize,
                  char *err, size_t err_size)
{
    /* A temporary name and a rename: a failure never leaves a partial file. */
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp%ld", path, (long)getpid()) >= (int)sizeof(tmp)) {
        snprintf(err, err_size, "path too long: %s", path);
        return -1;
    }
    png_image img;
    memset(&img, 0, sizeof(img));
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)w;
    img.height = (png_uint_32)h;
    img.format = PNG_FORMAT_RGB;
    if (!png_image_write_to_file(&img, tmp, 0, rgb, linesize, NULL)) {
        snprintf(err, err_size, "cannot write '%s': %s", path, img.message);
        png_image_free(&img);
        remove(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        snprintf(err, err_size, "cannot write '%s': %s", path, strerror(errno));
        remove(tmp);
        return -1;
    }
    return 0;
}
