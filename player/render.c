/* stylize-player: drawing (main thread). Two streaming RGB24 textures (the
 * original and the stylized frame), laid out for the view, the split
 * divider, and the overlay text (SDL's 8x8 test font, from libSDL2_test). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ui.h"

#include <SDL_test_font.h>

/* Where the frame(s) go in an ow x oh output: r[0] the frame (or the left
 * one in side-by-side view), r[1] the right one. */
static void layout(const app *a, int ow, int oh, SDL_Rect r[2])
{
    int fw = a->cur->orig->width, fh = a->cur->orig->height;
    int cols = a->view == VIEW_SIDE ? 2 : 1;
    double s = (double)ow / (cols * fw);
    if ((double)oh / fh < s)
        s = (double)oh / fh;
    int dw = (int)(fw * s + 0.5), dh = (int)(fh * s + 0.5);
    if (dw < 1)
        dw = 1;
    if (dh < 1)
        dh = 1;
    int x0 = (ow - cols * dw) / 2, y0 = (oh - dh) / 2;
    r[0] = (SDL_Rect){x0, y0, dw, dh};
    r[1] = (SDL_Rect){x0 + dw, y0, dw, dh};
}

void ui_natural_size(const app *a, int *w, int *h)
{
    int fw, fh;
    if (a->cur) {
        fw = a->cur->orig->width;
        fh = a->cur->orig->height;
    } else {
        source_get_size(a->src, &fw, &fh, NULL, NULL);
    }
    *w = a->view == VIEW_SIDE ? 2 * fw : fw;
    *h = fh;
}

float ui_split_at(const app *a, int x)
{
    if (!a->cur)
        return a->split;
    int ow, oh, ww, wh;
    SDL_Rect r[2];
    SDL_GetRendererOutputSize(a->ren, &ow, &oh);
    SDL_GetWindowSize(a->win, &ww, &wh);
    if (ww > 0)
        x = (int)((double)x * ow / ww); /* window to output pixels (HiDPI) */
    layout(a, ow, oh, r);
    float f = (float)(x - r[0].x) / (float)r[0].w;
    return f < 0 ? 0 : f > 1 ? 1 : f;
}

static SDL_Texture *ensure_texture(app *a, SDL_Texture *t, int w, int h)
{
    if (t && a->tex_w == w && a->tex_h == h)
        return t;
    if (t)
        SDL_DestroyTexture(t);
    t = SDL_CreateTexture(a->ren, SDL_PIXELFORMAT_RGB24, SDL_TEXTUREACCESS_STREAMING, w, h);
    if (!t)
        fprintf(stderr, "stylize-player: cannot create a %dx%d texture: %s\n", w, h, SDL_GetError());
    return t;
}

int ui_upload(app *a)
{
    pframe *o = a->cur->orig, *s = a->cur->styl;
    a->tex_orig = ensure_texture(a, a->tex_orig, o->width, o->height);
    a->tex_styl = ensure_texture(a, a->tex_styl, o->width, o->height);
    if (!a->tex_orig || !a->tex_styl)
        return -1;
    a->tex_w = o->width;
    a->tex_h = o->height;
    SDL_UpdateTexture(a->tex_orig, NULL, o->data, o->linesize);
    SDL_UpdateTexture(a->tex_styl, NULL, s->data, s->linesize);
    return 0;
}

static void draw_frames(app *a, int ow, int oh)
{
    SDL_Rect r[2];
    layout(a, ow, oh, r);
    int fw = a->tex_w, fh = a->tex_h;
    switch (a->view) {
    case VIEW_STYLIZED:
        SDL_RenderCopy(a->ren, a->tex_styl, NULL, &r[0]);
        break;
    case VIEW_SIDE:
        SDL_RenderCopy(a->ren, a->tex_orig, NULL, &r[0]);
        SDL_RenderCopy(a->ren, a->tex_styl, NULL, &r[1]);
        break;
    default: {
        int sx = (int)(a->split * fw + 0.5f);
        sx = sx < 0 ? 0 : sx > fw ? fw : sx;
        int dx = r[0].x + (int)((double)sx * r[0].w / fw + 0.5);
        if (sx > 0) {
            SDL_Rect src = {0, 0, sx, fh}, dst = {r[0].x, r[0].y, dx - r[0].x, r[0].h};
            SDL_RenderCopy(a->ren, a->tex_orig, &src, &dst);
        }
        if (sx < fw) {
            SDL_Rect src = {sx, 0, fw - sx, fh}, dst = {dx, r[0].y, r[0].x + r[0].w - dx, r[0].h};
            SDL_RenderCopy(a->ren, a->tex_styl, &src, &dst);
        }
        /* The divider, with a grip in the middle. */
        SDL_SetRenderDrawColor(a->ren, 255, 255, 255, 255);
        SDL_Rect line = {dx - 1, r[0].y, 2, r[0].h};
        SDL_RenderFillRect(a->ren, &line);
        int gh = r[0].h / 8 < 24 ? r[0].h / 8 : 24;
        SDL_Rect grip = {dx - 3, r[0].y + (r[0].h - gh) / 2, 6, gh};
        SDL_RenderFillRect(a->ren, &grip);
        break;
    }
    }
}

static const char *const view_names[VIEW_COUNT] = {"stylized", "side by side", "split"};

static void draw_overlay(app *a, int ow, int oh)
{
    char lines[16][200];
    int n = 0;
    int scale = oh >= 720 && ow >= 1000 ? 2 : 1;

    controls *c = &a->ctl;
    pthread_mutex_lock(&c->lock);
    int model = c->model;
    stylize_options o = c->opts;
    pthread_mutex_unlock(&c->lock);
    const stylizer_model *m = stylizer_model_at(a->st, model);

    snprintf(lines[n++], sizeof(lines[0]), "style %d/%d: %s", model + 1, stylizer_count(a->st),
             m ? m->name : "?");
    snprintf(lines[n++], sizeof(lines[0]), "%s | strength %.1f | smooth %.1f", stylize_mode_name(o.mode),
             o.strength, o.smooth);
    snprintf(lines[n++], sizeof(lines[0]), "colour %s | view %s", o.preserve_color ? "kept" : "styled",
             view_names[a->view]);
    if (a->cur) {
        snprintf(lines[n++], sizeof(lines[0]), "stylize %.1f fps (%.0f ms/frame)", a->fps, a->process_ms);
        snprintf(lines[n++], sizeof(lines[0]), "latency %.0f ms | dropped %llu", a->latency_ms,
                 (unsigned long long)(mailbox_dropped(&a->in) + mailbox_dropped(&a->out)));
    } else {
        snprintf(lines[n++], sizeof(lines[0]), "waiting for the first frame...");
    }
    int w = 0, h = 0;
    source_get_size(a->src, &w, &h, NULL, NULL);
    if (a->cur) {
        w = a->cur->orig->width;
        h = a->cur->orig->height;
    }
    if (a->src_w == w && a->src_h == h)
        snprintf(lines[n++], sizeof(lines[0]), "input %dx%d", w, h);
    else
        snprintf(lines[n++], sizeof(lines[0]), "input %dx%d -> %dx%d", a->src_w, a->src_h, w, h);
    snprintf(lines[n++], sizeof(lines[0]), "%s%s%s", a->paused ? "PAUSED | " : "", a->eof ? "END | " : "",
             a->help ? "keys:" : "h: keys");
    if (a->help) {
        static const char *const help[] = {
            "1-9 style  v view  [ ] divider",
            "+ - strength  c colour",
            "t tin/patch/full  s smoothing",
            "space pause  f fullscreen",
            "p screenshot  o overlay  q quit",
        };
        for (size_t i = 0; i < sizeof(help) / sizeof(help[0]); i++)
            snprintf(lines[n++], sizeof(lines[0]), "%s", help[i]);
    }
    int msg_line = -1;
    if (a->msg[0] && player_now() < a->msg_until) {
        msg_line = n;
        snprintf(lines[n++], sizeof(lines[0]), "%.199s", a->msg);
    }

    int maxlen = 0;
    for (int i = 0; i < n; i++) {
        int l = (int)strlen(lines[i]);
        maxlen = l > maxlen ? l : maxlen;
    }
    SDL_RenderSetScale(a->ren, (float)scale, (float)scale);
    int lw = ow / scale;
    int cols = (lw - 12) / FONT_CHARACTER_SIZE;
    if (cols < 1)
        cols = 1;
    if (maxlen > cols)
        maxlen = cols;
    SDL_SetRenderDrawBlendMode(a->ren, SDL_BLENDMODE_BLEND);
    SDL_SetRenderDrawColor(a->ren, 0, 0, 0, 170);
    SDL_Rect box = {4, 4, maxlen * FONT_CHARACTER_SIZE + 8, n * FONT_LINE_HEIGHT + 6};
    SDL_RenderFillRect(a->ren, &box);
    SDL_SetRenderDrawBlendMode(a->ren, SDL_BLENDMODE_NONE);
    for (int i = 0; i < n; i++) {
        lines[i][cols < 199 ? cols : 199] = 0; /* clip to the window */
        if (i == msg_line)
            SDL_SetRenderDrawColor(a->ren, 255, 210, 60, 255);
        else
            SDL_SetRenderDrawColor(a->ren, 235, 235, 235, 255);
        SDLTest_DrawString(a->ren, 8, 8 + i * FONT_LINE_HEIGHT, lines[i]);
    }
    SDL_RenderSetScale(a->ren, 1, 1);
}

static void draw(app *a)
{
    int ow, oh;
    /* The whole output: some window managers (or none, as under Xvfb) resize
     * the window for fullscreen without the event that updates the viewport. */
    SDL_RenderSetViewport(a->ren, NULL);
    SDL_GetRendererOutputSize(a->ren, &ow, &oh);
    SDL_SetRenderDrawColor(a->ren, 0, 0, 0, 255);
    SDL_RenderClear(a->ren);
    if (a->cur && a->tex_orig && a->tex_styl)
        draw_frames(a, ow, oh);
    if (a->overlay)
        draw_overlay(a, ow, oh);
}

void ui_render(app *a)
{
    draw(a);
    SDL_RenderPresent(a->ren);
}

int ui_screenshot(app *a, const char *path, char *err, size_t err_size)
{
    int ow, oh, r = -1;
    draw(a);
    SDL_GetRendererOutputSize(a->ren, &ow, &oh);
    int pitch = ow * 3;
    uint8_t *buf = malloc((size_t)pitch * oh);
    if (!buf) {
        snprintf(err, err_size, "out of memory");
    } else if (SDL_RenderReadPixels(a->ren, NULL, SDL_PIXELFORMAT_RGB24, buf, pitch) < 0) {
        snprintf(err, err_size, "cannot read the window content: %s", SDL_GetError());
    } else {
        r = write_png_rgb(path, buf, ow, oh, pitch, err, err_size);
    }
    free(buf);
    SDL_RenderPresent(a->ren);
    return r;
}

void ui_free(app *a)
{
    if (a->ren)
        SDLTest_CleanupTextDrawing();
    if (a->tex_orig)
        SDL_DestroyTexture(a->tex_orig);
    if (a->tex_styl)
        SDL_DestroyTexture(a->tex_styl);
    a->tex_orig = a->tex_styl = NULL;
    if (a->ren)
        SDL_DestroyRenderer(a->ren);
    if (a->win)
        SDL_DestroyWindow(a->win);
    a->ren = NULL;
    a->win = NULL;
}
