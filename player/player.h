/*
 * stylize-player: a live SDL2 preview of libstylize.
 *
 * Three threads (see docs/PLAYER.md):
 *   source   (source.c)   demux + decode + swscale to RGB24 -> `in` mailbox
 *   stylizer (stylizer.c) `in` mailbox -> libstylize -> `out` mailbox
 *   main     (main.c)     SDL events, controls, rendering (render.c)
 * The mailboxes hold one item: a newer frame replaces an unread one (a
 * drop), so a slow stylizer never builds a queue and latency stays bounded.
 * In lockstep mode (scripts, tests) they block instead: every frame is
 * stylized and shown, in order.
 */
#ifndef PLAYER_H
#define PLAYER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "stylize.h"

#define PLAYER_MAX_MODELS 9
#define PLAYER_MSG_SIZE 512

/* Monotonic clock, seconds. */
double player_now(void);

/* ---- frames: packed RGB24, reference counted ------------------------------ */
typedef struct pframe {
    atomic_int refs;
    int width, height;
    int linesize;          /* bytes per row, >= 3 * width */
    uint8_t *data;
    int64_t index;         /* 0-based number of the source frame */
    double t_capture;      /* player_now() when captured/decoded (or re-submitted) */
    int src_width, src_height; /* size before --max-size scaling */
} pframe;

pframe *pframe_alloc(int width, int height);
pframe *pframe_ref(pframe *f);
void pframe_unref(pframe **f);
void pframe_free_item(void *f); /* pframe_unref for a mailbox */

/* What the stylizer hands to the display: the original and the stylized
 * frame, and how it was made. */
typedef struct presult {
    pframe *orig;
    pframe *styl;
    int model;             /* index of the model used, -1 = passthrough after an error */
    double process_s;      /* time stylize_process took */
    double t_done;         /* player_now() when finished */
    double t_ref;          /* latency reference: the capture time, or when a held
                              frame (paused, still) was re-stylized after a change */
    int restyled;          /* a re-stylized held frame */
} presult;

void presult_free(presult *r);
void presult_free_item(void *r);

/* ---- mailbox: a one-slot "latest item" channel ----------------------------- */
typedef struct mailbox {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    void *item;
    void (*free_item)(void *);
    int lockstep;          /* put blocks until the slot is empty and the last item acknowledged */
    int acked;
    int closed;            /* no more puts or takes: shutting down */
    int eof;               /* the producer has finished (item may still be pending) */
    int kicked;            /* wake the consumer without an item */
    uint64_t dropped;      /* items replaced before they were taken */
} mailbox;

int mailbox_init(mailbox *mb, void (*free_item)(void *), int lockstep);
void mailbox_destroy(mailbox *mb);
/* Returns 0, or -1 when closed (the item is then freed). In lockstep mode
 * it waits for an empty slot, and returns once the consumer acknowledged
 * the item (mailbox_ack). */
int mailbox_put(mailbox *mb, void *item);
/* Waits up to timeout_s (< 0: forever) for an item, a kick, close, or
 * (when wake_on_eof) the end of the producer. Returns the item or NULL;
 * *flags gets MB_* bits describing the state. */
enum { MB_KICK = 1, MB_EOF = 2, MB_CLOSED = 4 };
void *mailbox_take(mailbox *mb, double timeout_s, int wake_on_eof, int *flags);
/* Non-blocking take. */
void *mailbox_poll(mailbox *mb, int *flags);
/* Lockstep: the consumer is done with the last item; the producer may put the next. */
void mailbox_ack(mailbox *mb);
void mailbox_kick(mailbox *mb);
void mailbox_set_eof(mailbox *mb);
void mailbox_close(mailbox *mb);
uint64_t mailbox_dropped(mailbox *mb);

/* ---- source ------------------------------------------------------------------ */
typedef struct source_opts {
    const char *url;
    const char *format;    /* -f, NULL = probe (v4l2 for /dev/video*) */
    const char *video_size;
    const char *framerate;
    int max_size;          /* longer side after scaling, 0 = keep */
    int loop;
    int lockstep;
} source_opts;

typedef struct source source;

/* Opens the input and its decoder. On failure returns NULL with a message in err. */
source *source_open(const source_opts *o, char *err, size_t err_size);
/* Size of the frames it will deliver (after scaling) and of the input. */
void source_get_size(const source *s, int *w, int *h, int *src_w, int *src_h);
const char *source_describe(const source *s); /* "v4l2 /dev/video0", "lavfi testsrc2=..." */
int source_is_live(const source *s);
/* Starts the decode thread, which puts pframe* into out. */
int source_start(source *s, mailbox *out);
void source_set_paused(source *s, int paused);
/* Nonzero once the thread has stopped on an error; the message is copied to msg. */
int source_failed(source *s, char *msg, size_t size);
/* Stops the thread (if started) and frees everything. NULL is a no-op. */
void source_close(source *s);

/* ---- stylizer ------------------------------------------------------------------ */
/* The live settings, written by the main thread, read by the stylizer between frames. */
typedef struct controls {
    pthread_mutex_t lock;
    int model;             /* requested model index */
    stylize_options opts;  /* requested options */
    unsigned gen;          /* bumped on each options change */
    int paused;            /* the source is paused: re-stylize the held frame on changes */
    char msg[PLAYER_MSG_SIZE]; /* last status message (errors of the stylizer) */
    unsigned msg_gen;      /* bumped with each new message */
} controls;

typedef struct stylizer stylizer;

typedef struct stylizer_model {
    stylize_ctx *ctx;
    char name[128];        /* style name from the metadata, else the file name */
    char path[1024];
    unsigned applied_gen;  /* controls.gen last applied with stylize_set_options */
} stylizer_model;

/* Loads every model (each its own stylize_ctx, options opts). On failure
 * returns NULL with a message in err. */
stylizer *stylizer_create(const char *const *models, int n, const stylize_options *opts,
                          controls *ctl, char *err, size_t err_size);
int stylizer_count(const stylizer *st);
const stylizer_model *stylizer_model_at(const stylizer *st, int i);
/* Starts the thread: frames (pframe*) from in, results (presult*) to out. */
int stylizer_start(stylizer *st, mailbox *in, mailbox *out, int lockstep);
/* Joins the thread (in must be closed first) and frees the models. */
void stylizer_destroy(stylizer *st);

/* Post a status message (thread-safe): to stderr and the overlay. */
void controls_message(controls *ctl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- PNG --------------------------------------------------------------------- */
int write_png_rgb(const char *path, const uint8_t *rgb, int w, int h, int linesize,
                  char *err, size_t err_size);

#endif /* PLAYER_H */
