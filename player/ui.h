/* stylize-player: the window (main thread): state shared by main.c and render.c. */
#ifndef PLAYER_UI_H
#define PLAYER_UI_H

#include <SDL.h>

#include "player.h"

typedef enum view_mode {
    VIEW_STYLIZED = 0,     /* the stylized frame only */
    VIEW_SIDE = 1,         /* original | stylized */
    VIEW_SPLIT = 2,        /* a wipe: original left of the divider, stylized right */
    VIEW_COUNT
} view_mode;

#define FPS_RING 32

typedef struct app {
    /* setup */
    int lockstep;
    int exit_after;            /* frames to show, 0 = until quit */
    const char *screenshot_at_exit;
    int win_w, win_h;          /* --window-size, 0 = natural */

    /* threads and channels */
    source *src;
    stylizer *st;
    controls ctl;
    mailbox in, out;           /* source -> stylizer, stylizer -> display */

    /* window */
    SDL_Window *win;
    SDL_Renderer *ren;
    SDL_Texture *tex_orig, *tex_styl;
    int tex_w, tex_h;
    presult *cur;              /* on screen */
    view_mode view;
    float split;               /* divider position, 0..1 of the frame width */
    int overlay, help;
    int fullscreen;
    int paused;
    int dragging;
    int user_resized;
    int dirty;
    int shot_pending;          /* 'p': save the next rendered frame */
    int eof;
    int quit, exit_code;

    /* measurements */
    uint64_t shown;            /* new frames displayed */
    double done_t[FPS_RING];   /* completion times of the last stylized frames */
    int done_n, done_i;
    double fps, latency_ms, process_ms;
    int src_w, src_h;

    /* status line */
    char msg[PLAYER_MSG_SIZE];
    double msg_until;
    unsigned msg_gen_seen;
} app;

/* render.c */
void ui_natural_size(const app *a, int *w, int *h);
int ui_upload(app *a);
void ui_render(app *a);
/* Render and save the window content as PNG (call instead of ui_render). */
int ui_screenshot(app *a, const char *path, char *err, size_t err_size);
/* The split position for a window x coordinate. */
float ui_split_at(const app *a, int x);
void ui_free(app *a);

#endif /* PLAYER_UI_H */
