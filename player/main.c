/* stylize-player: live SDL2 preview of libstylize. Options, the window's
 * event loop, the keys, and the scripted (lockstep) mode. See docs/PLAYER.md. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libavutil/log.h>

#include "ui.h"

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: stylize-player -m MODEL [-m MODEL2 ...] [options] [-f FORMAT] INPUT\n"
        "Live preview of neural style transfer (libstylize %s) on a file, a still image,\n"
        "a webcam or an FFmpeg lavfi source.\n"
        "\n"
        "Examples:\n"
        "  stylize-player -m mosaic -m candy video.mp4\n"
        "  stylize-player -m mosaic /dev/video0 --video-size 640x480 --framerate 30\n"
        "  stylize-player -m mosaic -f lavfi testsrc2=size=320x240:rate=10\n"
        "  stylize-player -m mosaic photo.png --view split\n"
        "\n"
        "Input:\n"
        "  INPUT, -i INPUT         a file FFmpeg reads, an image, /dev/videoN, or a lavfi graph\n"
        "  -f, --format FMT        input format as ffmpeg -f: v4l2, lavfi, image2, ...\n"
        "                          (/dev/video* implies v4l2)\n"
        "      --video-size WxH    capture size (webcams, raw video)\n"
        "      --framerate N       capture rate (webcams)\n"
        "      --max-size N        downscale so the longer side is at most N pixels [640];\n"
        "                          0 = full size (the C backend needs ~0.7 s per 100k pixels per core)\n"
        "      --loop              start files again at the end\n"
        "Style (passed to libstylize):\n"
        "  -m, --model PATH|NAME   model (.safetensors file or installed style name); up to 9,\n"
        "                          all loaded at start, switched with keys 1-9; a style's _live\n"
        "                          twin (real time on a CPU), where one exists, is preloaded too\n"
        "      --no-live           do not preload the _live twins\n"
        "      --mode MODE         auto|tin|full|patch|exact: instance-norm statistics [auto: full\n"
        "                          when it fits --max-memory (default 1 GiB), else tin]\n"
        "      --strength F        0..1 blend with the original [1]\n"
        "      --preserve-color    keep the original's colours\n"
        "      --smooth F          temporal smoothing of the statistics, 0..0.99 [0]\n"
        "      --thumb N, --tile N TIN thumbnail and tile sizes [0 = auto, -1 = auto: 768 classic]\n"
        "      --max-memory MB     working memory a frame may use, 0 = no limit [0]; a setting\n"
        "                          that needs more (e.g. full mode on a large frame) is refused\n"
        "      --threads N         worker threads, 0 = all CPUs [0]\n"
        "      --backend NAME      auto|ref|dnnl|cuda [auto]\n"
        "Window:\n"
        "      --view V            stylized | side | split [split]\n"
        "      --split F           divider position in split view, 0..1 [0.5]\n"
        "      --no-overlay        start with the overlay hidden\n"
        "      --fullscreen        start full screen\n"
        "      --window-size WxH   initial window size [the frame's size, x2 side by side]\n"
        "Scripts and tests (work with SDL_VIDEODRIVER=offscreen or dummy):\n"
        "      --exit-after N      quit after N frames have been shown (exit 0)\n"
        "      --keys LIST         press keys after given frames: \"FRAME:KEY,...\", e.g. \"3:2,5:v\";\n"
        "                          KEY is a key below or space, plus, minus, esc; frame 0 = at start\n"
        "      --screenshot PATH   save the window content as PNG when quitting\n"
        "      --lockstep          stylize and show every frame, in order, without pacing or drops\n"
        "                          (implied by --exit-after and --keys)\n"
        "  -v, --verbose           FFmpeg's informational messages\n"
        "  -h, --help              this help\n"
        "\n"
        "Keys:\n"
        "  1-9          switch style (preloaded: no reload, no stutter)\n"
        "  v            view: stylized / side by side / split\n"
        "  [ ]  or drag move the split divider (mouse: drag in split view)\n"
        "  + -          strength up/down by 0.1\n"
        "  c            preserve colour on/off\n"
        "  t            statistics mode: auto -> tin -> patch -> full\n"
        "  s            smoothing: 0 -> 0.5 -> 0.9\n"
        "  space        pause/resume (settings changes still show on the held frame)\n"
        "  f            fullscreen\n"
        "  p            save a PNG screenshot of the window (stylize-player-DATE-TIME.png)\n"
        "  o            overlay: stylize fps, latency, sizes, style, settings, drops\n"
        "  h            key help in the overlay\n"
        "  q, Esc       quit\n"
        "\n"
        "Exit status: 0 on quit or end of input in lockstep mode; 1 on errors (input, model,\n"
        "camera unplugged, display).\n",
        stylize_version());
}

static int die(const char *fmt, const char *a)
{
    fprintf(stderr, "stylize-player: ");
    fprintf(stderr, fmt, a);
    fputc('\n', stderr);
    return 1;
}

/* ---- scripted keys ------------------------------------------------------------- */

typedef struct key_event {
    long frame;
    SDL_Keycode key;
} key_event;

static int parse_key(const char *s, size_t len, SDL_Keycode *k)
{
    static const struct {
        const char *name;
        SDL_Keycode key;
    } names[] = {
        {"space", SDLK_SPACE}, {"plus", SDLK_PLUS}, {"minus", SDLK_MINUS}, {"esc", SDLK_ESCAPE},
        {"escape", SDLK_ESCAPE}, {"comma", SDLK_COMMA}, {"left", SDLK_LEFT}, {"right", SDLK_RIGHT},
    };
    if (len == 1 && s[0] > ' ' && s[0] < 127 && s[0] != ',') {
        char c = s[0];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        *k = (SDL_Keycode)c; /* SDL keycodes of printable keys are their characters */
        return 0;
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strlen(names[i].name) == len && !strncmp(names[i].name, s, len)) {
            *k = names[i].key;
            return 0;
        }
    return -1;
}

static int parse_keys(const char *spec, key_event **out, int *n)
{
    const char *p = spec;
    *out = NULL;
    *n = 0;
    while (*p) {
        char *end;
        errno = 0;
        long frame = strtol(p, &end, 10);
        if (end == p || *end != ':' || frame < 0 || errno)
            return -1;
        const char *k = end + 1;
        const char *comma = strchr(k, ',');
        size_t len = comma ? (size_t)(comma - k) : strlen(k);
        /* "N:," would be an empty key; a literal comma is "comma" */
        SDL_Keycode key;
        if (parse_key(k, len, &key) < 0)
            return -1;
        key_event *t = realloc(*out, sizeof(**out) * (*n + 1));
        if (!t)
            return -1;
        *out = t;
        (*out)[(*n)++] = (key_event){frame, key};
        p = comma ? comma + 1 : k + len;
    }
    return 0;
}

/* ---- controls ---------------------------------------------------------------------- */

static void set_message(app *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_message(app *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->msg, sizeof(a->msg), fmt, ap);
    va_end(ap);
    a->msg_until = player_now() + 5;
    a->dirty = 1;
}

/* Change the requested options under the lock, then wake the stylizer. */
static void change_options(app *a, void (*fn)(stylize_options *, void *), void *arg)
{
    pthread_mutex_lock(&a->ctl.lock);
    fn(&a->ctl.opts, arg);
    a->ctl.gen++;
    pthread_mutex_unlock(&a->ctl.lock);
    mailbox_kick(&a->in);
    a->dirty = 1;
}

static void opt_strength(stylize_options *o, void *arg)
{
    float s = o->strength + *(float *)arg;
    s = (float)((int)(s * 10 + (s < 0 ? -0.5f : 0.5f))) / 10; /* stay on the 0.1 grid */
    o->strength = s < 0 ? 0 : s > 1 ? 1 : s;
}
static void opt_color(stylize_options *o, void *arg)
{
    (void)arg;
    o->preserve_color = !o->preserve_color;
}
static void opt_mode(stylize_options *o, void *arg)
{
    (void)arg;
    /* exact is left out: several times tin's time, too slow to watch */
    o->mode = o->mode == STYLIZE_MODE_AUTO ? STYLIZE_MODE_TIN :
              o->mode == STYLIZE_MODE_TIN ? STYLIZE_MODE_PATCH :
              o->mode == STYLIZE_MODE_PATCH ? STYLIZE_MODE_FULL : STYLIZE_MODE_AUTO;
}
static void opt_smooth(stylize_options *o, void *arg)
{
    (void)arg;
    o->smooth = o->smooth < 0.25f ? 0.5f : o->smooth < 0.7f ? 0.9f : 0.0f;
}

static void resize_to_view(app *a)
{
    if (a->fullscreen || a->user_resized || a->win_w)
        return;
    int w, h;
    ui_natural_size(a, &w, &h);
    SDL_SetWindowSize(a->win, w, h);
}

static void save_screenshot(app *a)
{
    char path[256], err[PLAYER_MSG_SIZE];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    size_t l = strftime(path, sizeof(path), "stylize-player-%Y%m%d-%H%M%S", &tm);
    for (int i = 0; i < 1000; i++) {
        if (i == 0)
            snprintf(path + l, sizeof(path) - l, ".png");
        else
            snprintf(path + l, sizeof(path) - l, "-%d.png", i);
        if (access(path, F_OK) != 0)
            break;
    }
    if (ui_screenshot(a, path, err, sizeof(err)) < 0) {
        fprintf(stderr, "stylize-player: screenshot: %s\n", err);
        set_message(a, "screenshot failed: %s", err);
    } else {
        fprintf(stderr, "stylize-player: saved %s\n", path);
        set_message(a, "saved %s", path);
    }
}

static void handle_key(app *a, SDL_Keycode k)
{
    float step;
    switch (k) {
    case SDLK_q:
    case SDLK_ESCAPE:
        a->quit = 1;
        break;
    case SDLK_1: case SDLK_2: case SDLK_3: case SDLK_4: case SDLK_5:
    case SDLK_6: case SDLK_7: case SDLK_8: case SDLK_9:
    case SDLK_KP_1: case SDLK_KP_2: case SDLK_KP_3: case SDLK_KP_4: case SDLK_KP_5:
    case SDLK_KP_6: case SDLK_KP_7: case SDLK_KP_8: case SDLK_KP_9: {
        int i = k >= SDLK_1 && k <= SDLK_9 ? (int)(k - SDLK_1) : (int)(k - SDLK_KP_1);
        int n = stylizer_count(a->st);
        if (i >= n) {
            fprintf(stderr, "stylize-player: no style %d: %d loaded (add more with -m); keeping the current one\n",
                    i + 1, n);
            set_message(a, "no style %d: %d loaded (-m); keeping the current one", i + 1, n);
            break;
        }
        pthread_mutex_lock(&a->ctl.lock);
        a->ctl.model = i;
        pthread_mutex_unlock(&a->ctl.lock);
        mailbox_kick(&a->in);
        a->dirty = 1;
        break;
    }
    case SDLK_v:
        a->view = (view_mode)((a->view + 1) % VIEW_COUNT);
        resize_to_view(a);
        a->dirty = 1;
        break;
    case SDLK_LEFTBRACKET:
    case SDLK_LEFT:
    case SDLK_RIGHTBRACKET:
    case SDLK_RIGHT:
        a->split += k == SDLK_LEFTBRACKET || k == SDLK_LEFT ? -0.05f : 0.05f;
        a->split = a->split < 0 ? 0 : a->split > 1 ? 1 : a->split;
        a->dirty = 1;
        break;
    case SDLK_PLUS:
    case SDLK_EQUALS:
    case SDLK_KP_PLUS:
        step = 0.1f;
        change_options(a, opt_strength, &step);
        break;
    case SDLK_MINUS:
    case SDLK_KP_MINUS:
        step = -0.1f;
        change_options(a, opt_strength, &step);
        break;
    case SDLK_c:
        change_options(a, opt_color, NULL);
        break;
    case SDLK_t:
        change_options(a, opt_mode, NULL);
        break;
    case SDLK_s:
        change_options(a, opt_smooth, NULL);
        break;
    case SDLK_SPACE:
        a->paused = !a->paused;
        pthread_mutex_lock(&a->ctl.lock);
        a->ctl.paused = a->paused;
        pthread_mutex_unlock(&a->ctl.lock);
        source_set_paused(a->src, a->paused);
        mailbox_kick(&a->in);
        a->dirty = 1;
        break;
    case SDLK_f:
        a->fullscreen = !a->fullscreen;
        if (SDL_SetWindowFullscreen(a->win, a->fullscreen ? SDL_WINDOW_FULLSCREEN_DESKTOP : 0) < 0) {
            set_message(a, "fullscreen: %s", SDL_GetError());
            a->fullscreen = !a->fullscreen;
        }
        a->dirty = 1;
        break;
    case SDLK_p:
        a->shot_pending = 1;
        a->dirty = 1;
        break;
    case SDLK_o:
        a->overlay = !a->overlay;
        a->dirty = 1;
        break;
    case SDLK_h:
        a->help = !a->help;
        if (a->help)
            a->overlay = 1;
        a->dirty = 1;
        break;
    default:
        break;
    }
}

static void handle_event(app *a, const SDL_Event *e)
{
    switch (e->type) {
    case SDL_QUIT:
        a->quit = 1;
        break;
    case SDL_WINDOWEVENT:
        if (e->window.event == SDL_WINDOWEVENT_RESIZED)
            a->user_resized = 1;
        a->dirty = 1;
        break;
    case SDL_KEYDOWN:
        handle_key(a, e->key.keysym.sym);
        break;
    case SDL_MOUSEBUTTONDOWN:
        if (e->button.button == SDL_BUTTON_LEFT && a->view == VIEW_SPLIT) {
            a->dragging = 1;
            a->split = ui_split_at(a, e->button.x);
            a->dirty = 1;
        }
        break;
    case SDL_MOUSEMOTION:
        if (a->dragging) {
            a->split = ui_split_at(a, e->motion.x);
            a->dirty = 1;
        }
        break;
    case SDL_MOUSEBUTTONUP:
        if (e->button.button == SDL_BUTTON_LEFT)
            a->dragging = 0;
        break;
    default:
        break;
    }
}

/* A new result is on screen: update the measurements. */
static void account(app *a, const presult *r, double t_shown)
{
    a->shown++;
    a->process_ms = r->process_s * 1000;
    double lat = (t_shown - r->t_ref) * 1000;
    a->latency_ms = a->shown == 1 || r->restyled ? lat : 0.7 * a->latency_ms + 0.3 * lat;
    if (r->restyled)
        return;
    a->done_t[a->done_i] = r->t_done;
    a->done_i = (a->done_i + 1) % FPS_RING;
    if (a->done_n < FPS_RING)
        a->done_n++;
    /* Rate over the completions of the last 2 seconds (at least two). */
    int newest = (a->done_i + FPS_RING - 1) % FPS_RING, k = 0;
    double first = a->done_t[newest];
    for (int i = 1; i < a->done_n; i++) {
        double t = a->done_t[(newest - i + FPS_RING) % FPS_RING];
        if (a->done_t[newest] - t > 2 && k >= 1)
            break;
        first = t;
        k = i;
    }
    if (k >= 1 && a->done_t[newest] > first)
        a->fps = k / (a->done_t[newest] - first);
    else
        a->fps = r->process_s > 0 ? 1 / r->process_s : 0;
}

static int parse_size(const char *s, int *w, int *h)
{
    return sscanf(s, "%dx%d", w, h) == 2 && *w > 0 && *h > 0 ? 0 : -1;
}

static int parse_float(const char *s, float lo, float hi, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || v < lo || v > hi)
        return -1;
    *out = (float)v;
    return 0;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

enum {
    OPT_VIDEO_SIZE = 256, OPT_FRAMERATE, OPT_MAX_SIZE, OPT_LOOP, OPT_MODE, OPT_STRENGTH,
    OPT_PRESERVE, OPT_SMOOTH, OPT_THUMB, OPT_TILE, OPT_THREADS, OPT_BACKEND, OPT_VIEW, OPT_SPLIT,
    OPT_NO_OVERLAY, OPT_FULLSCREEN, OPT_WINDOW_SIZE, OPT_EXIT_AFTER, OPT_KEYS, OPT_SCREENSHOT,
    OPT_LOCKSTEP, OPT_MAX_MEMORY, OPT_NO_LIVE,
};

/* The _live twin of a model argument: NAME -> NAME_live, DIR/NAME.safetensors
 * -> DIR/NAME_live.safetensors; "" for a model that is itself a twin. */
static void live_twin_name(const char *model, char *out, size_t size)
{
    const char *ext = ".safetensors";
    size_t n = strlen(model), e = strlen(ext);
    int has_ext = n > e && !strcmp(model + n - e, ext);
    size_t stem = has_ext ? n - e : n;
    if (stem >= 5 && !strncmp(model + stem - 5, "_live", 5)) {
        out[0] = 0;
        return;
    }
    snprintf(out, size, "%.*s_live%s", (int)stem, model, has_ext ? ext : "");
}

/* Append the _live twin of every model that has one (and is not listed
 * yet), within the 9 keys. Returns how many were added. */
static int add_live_twins(const char **models, int *nmodels, char (*names)[1024])
{
    int added = 0, n0 = *nmodels;
    for (int i = 0; i < n0 && *nmodels < PLAYER_MAX_MODELS; i++) {
        char twin[1024], path[4096];
        live_twin_name(models[i], twin, sizeof(twin));
        if (!twin[0] || stylize_find_model(twin, path, sizeof(path)))
            continue;
        int listed = 0;
        for (int j = 0; j < *nmodels; j++)
            listed |= !strcmp(models[j], twin);
        if (listed)
            continue;
        snprintf(names[added], 1024, "%s", twin);
        models[(*nmodels)++] = names[added++];
        fprintf(stderr, "stylize-player: key %d: %s, the real-time twin of %s\n", *nmodels, twin, models[i]);
    }
    return added;
}

static void sdl_log_quiet(void *ud, int cat, SDL_LogPriority pri, const char *msg)
{
    (void)ud;
    (void)cat;
    if (pri >= SDL_LOG_PRIORITY_WARN)
        fprintf(stderr, "stylize-player: SDL: %s\n", msg);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},
        {"format", required_argument, NULL, 'f'},
        {"input", required_argument, NULL, 'i'},
        {"video-size", required_argument, NULL, OPT_VIDEO_SIZE},
        {"video_size", required_argument, NULL, OPT_VIDEO_SIZE},
        {"framerate", required_argument, NULL, OPT_FRAMERATE},
        {"max-size", required_argument, NULL, OPT_MAX_SIZE},
        {"loop", no_argument, NULL, OPT_LOOP},
        {"mode", required_argument, NULL, OPT_MODE},
        {"strength", required_argument, NULL, OPT_STRENGTH},
        {"preserve-color", no_argument, NULL, OPT_PRESERVE},
        {"preserve-colour", no_argument, NULL, OPT_PRESERVE},
        {"smooth", required_argument, NULL, OPT_SMOOTH},
        {"thumb", required_argument, NULL, OPT_THUMB},
        {"tile", required_argument, NULL, OPT_TILE},
        {"max-memory", required_argument, NULL, OPT_MAX_MEMORY},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"backend", required_argument, NULL, OPT_BACKEND},
        {"view", required_argument, NULL, OPT_VIEW},
        {"split", required_argument, NULL, OPT_SPLIT},
        {"no-overlay", no_argument, NULL, OPT_NO_OVERLAY},
        {"no-live", no_argument, NULL, OPT_NO_LIVE},
        {"fullscreen", no_argument, NULL, OPT_FULLSCREEN},
        {"window-size", required_argument, NULL, OPT_WINDOW_SIZE},
        {"exit-after", required_argument, NULL, OPT_EXIT_AFTER},
        {"keys", required_argument, NULL, OPT_KEYS},
        {"screenshot", required_argument, NULL, OPT_SCREENSHOT},
        {"lockstep", no_argument, NULL, OPT_LOCKSTEP},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static app A; /* zeroed; static keeps the big struct off the stack */
    app *a = &A;
    const char *models[PLAYER_MAX_MODELS];
    int nmodels = 0, verbose = 0, no_live = 0;
    source_opts so = {.max_size = 640};
    stylize_options opts;
    key_event *keys = NULL;
    int nkeys = 0, c, ctl_init = 0, in_init = 0, out_init = 0, sdl_init = 0;
    char err[2048];

    stylize_options_default(&opts);
    a->view = VIEW_SPLIT;
    a->split = 0.5f;
    a->overlay = 1;
    a->exit_code = 1;

    while ((c = getopt_long(argc, argv, "m:f:i:vh", longopts, NULL)) != -1) {
        switch (c) {
        case 'm':
            if (nmodels == PLAYER_MAX_MODELS)
                return die("at most 9 models (-m), one per key 1-9%s", "");
            models[nmodels++] = optarg;
            break;
        case 'f': so.format = optarg; break;
        case 'i': so.url = optarg; break;
        case 'v': verbose = 1; break;
        case 'h': usage(stdout); return 0;
        case OPT_VIDEO_SIZE: {
            int w, h;
            if (parse_size(optarg, &w, &h) < 0)
                return die("--video-size wants WIDTHxHEIGHT, not '%s'", optarg);
            so.video_size = optarg;
            break;
        }
        case OPT_FRAMERATE: {
            float r;
            if (parse_float(optarg, 0.01f, 1000, &r) < 0 && !strchr(optarg, '/'))
                return die("--framerate wants a number of frames per second, not '%s'", optarg);
            so.framerate = optarg;
            break;
        }
        case OPT_MAX_SIZE:
            if (parse_int(optarg, 0, 1 << 16, &so.max_size) < 0)
                return die("--max-size wants a number of pixels (0 = full size), not '%s'", optarg);
            break;
        case OPT_LOOP: so.loop = 1; break;
        case OPT_MODE:
            if (stylize_mode_from_name(optarg, &opts.mode) < 0)
                return die("--mode: '%s' is not auto, tin, full, patch or exact", optarg);
            break;
        case OPT_STRENGTH:
            if (parse_float(optarg, 0, 1, &opts.strength) < 0)
                return die("--strength wants a number in 0..1, not '%s'", optarg);
            break;
        case OPT_PRESERVE: opts.preserve_color = 1; break;
        case OPT_SMOOTH:
            if (parse_float(optarg, 0, 0.99f, &opts.smooth) < 0)
                return die("--smooth wants a number in 0..0.99, not '%s'", optarg);
            break;
        case OPT_THUMB:
            if (parse_int(optarg, 16, 1 << 16, &opts.thumb) < 0)
                return die("--thumb wants a number of pixels >= 16, not '%s'", optarg);
            break;
        case OPT_TILE:
            if (parse_int(optarg, -1, 1 << 16, &opts.tile) < 0)
                return die("--tile wants a number of pixels (0 = whole frame, -1 = auto), not '%s'", optarg);
            break;
        case OPT_MAX_MEMORY: {
            float mb;
            if (parse_float(optarg, 0, 1 << 24, &mb) < 0)
                return die("--max-memory wants a number of MiB (0 = no limit), not '%s'", optarg);
            opts.max_memory = (size_t)((double)mb * 1048576.0);
            break;
        }
        case OPT_THREADS:
            if (parse_int(optarg, 0, 1024, &opts.threads) < 0)
                return die("--threads wants a number (0 = all CPUs), not '%s'", optarg);
            break;
        case OPT_BACKEND:
            if (stylize_backend_from_name(optarg, &opts.backend) < 0)
                return die("--backend: '%s' is not auto, ref, dnnl or cuda", optarg);
            break;
        case OPT_VIEW:
            if (!strcmp(optarg, "stylized"))
                a->view = VIEW_STYLIZED;
            else if (!strcmp(optarg, "side") || !strcmp(optarg, "side-by-side"))
                a->view = VIEW_SIDE;
            else if (!strcmp(optarg, "split"))
                a->view = VIEW_SPLIT;
            else
                return die("--view: '%s' is not stylized, side or split", optarg);
            break;
        case OPT_SPLIT:
            if (parse_float(optarg, 0, 1, &a->split) < 0)
                return die("--split wants a number in 0..1, not '%s'", optarg);
            break;
        case OPT_NO_OVERLAY: a->overlay = 0; break;
        case OPT_NO_LIVE: no_live = 1; break;
        case OPT_FULLSCREEN: a->fullscreen = 1; break;
        case OPT_WINDOW_SIZE:
            if (parse_size(optarg, &a->win_w, &a->win_h) < 0)
                return die("--window-size wants WIDTHxHEIGHT, not '%s'", optarg);
            break;
        case OPT_EXIT_AFTER:
            if (parse_int(optarg, 1, 1 << 30, &a->exit_after) < 0)
                return die("--exit-after wants a number of frames >= 1, not '%s'", optarg);
            a->lockstep = 1;
            break;
        case OPT_KEYS:
            free(keys);
            if (parse_keys(optarg, &keys, &nkeys) < 0) {
                free(keys);
                return die("--keys wants \"FRAME:KEY,...\" (e.g. \"3:2,5:v\"; KEY one character or "
                           "space, plus, minus, comma, esc, left, right), not '%s'", optarg);
            }
            a->lockstep = 1;
            break;
        case OPT_SCREENSHOT: a->screenshot_at_exit = optarg; break;
        case OPT_LOCKSTEP: a->lockstep = 1; break;
        default:
            fprintf(stderr, "Try 'stylize-player --help'.\n");
            return 1;
        }
    }
    if (!so.url && optind < argc)
        so.url = argv[optind++];
    if (optind < argc) {
        free(keys);
        return die("unexpected argument '%s' (one input only)", argv[optind]);
    }
    if (!nmodels) {
        free(keys);
        return die("no model: give one or more -m MODEL (a .safetensors file or a style name)%s", "");
    }
    if (!so.url) {
        free(keys);
        return die("no input: give a file, an image, /dev/video0, or -f lavfi GRAPH%s", "");
    }
    static char twin_names[PLAYER_MAX_MODELS][1024];
    if (!no_live)
        add_live_twins(models, &nmodels, twin_names);
    so.lockstep = a->lockstep;
    av_log_set_level(verbose ? AV_LOG_INFO : AV_LOG_ERROR);

    /* Everything that can fail for a bad argument fails here, before a window opens. */
    if (pthread_mutex_init(&a->ctl.lock, NULL)) {
        free(keys);
        return die("cannot create a mutex%s", "");
    }
    ctl_init = 1;
    a->ctl.opts = opts;
    a->ctl.gen = 1;
    if (!(a->st = stylizer_create(models, nmodels, &opts, &a->ctl, err, sizeof(err)))) {
        die("%s", err);
        goto end;
    }
    if (!(a->src = source_open(&so, err, sizeof(err)))) {
        die("%s", err);
        goto end;
    }
    int fw, fh;
    source_get_size(a->src, &fw, &fh, &a->src_w, &a->src_h);

    SDL_LogSetOutputFunction(sdl_log_quiet, NULL);
    SDL_SetHint(SDL_HINT_RENDER_SCALE_QUALITY, "linear");
    if (SDL_Init(SDL_INIT_VIDEO) < 0) {
        snprintf(err, sizeof(err), "cannot open a window: %s (no display? use SDL_VIDEODRIVER=offscreen or xvfb-run)",
                 SDL_GetError());
        die("%s", err);
        goto end;
    }
    sdl_init = 1;
    int ww = a->win_w, wh = a->win_h;
    if (!ww)
        ui_natural_size(a, &ww, &wh);
    /* Never larger than the screen (the frames are scaled to fit). */
    SDL_Rect usable;
    if (!a->win_w && SDL_GetDisplayUsableBounds(0, &usable) == 0 && usable.w > 0 && usable.h > 0 &&
        (ww > usable.w || wh > usable.h)) {
        double s = (double)usable.w / ww < (double)usable.h / wh ? (double)usable.w / ww : (double)usable.h / wh;
        ww = (int)(ww * s);
        wh = (int)(wh * s);
    }
    char title[256];
    snprintf(title, sizeof(title), "stylize-player: %s", so.url);
    a->win = SDL_CreateWindow(title, SDL_WINDOWPOS_UNDEFINED, SDL_WINDOWPOS_UNDEFINED, ww, wh,
                              SDL_WINDOW_RESIZABLE | (a->fullscreen ? SDL_WINDOW_FULLSCREEN_DESKTOP : 0));
    if (!a->win) {
        die("cannot open a window: %s", SDL_GetError());
        goto end;
    }
    a->ren = SDL_CreateRenderer(a->win, -1, 0);
    if (!a->ren)
        a->ren = SDL_CreateRenderer(a->win, -1, SDL_RENDERER_SOFTWARE);
    if (!a->ren) {
        die("cannot create a renderer: %s", SDL_GetError());
        goto end;
    }
    a->dirty = 1;

    if (mailbox_init(&a->in, pframe_free_item, a->lockstep) < 0) {
        die("cannot create a mailbox%s", "");
        goto end;
    }
    in_init = 1;
    if (mailbox_init(&a->out, presult_free_item, a->lockstep) < 0) {
        die("cannot create a mailbox%s", "");
        goto end;
    }
    out_init = 1;

    int next_key = 0;
    while (next_key < nkeys && keys[next_key].frame == 0)
        handle_key(a, keys[next_key++].key);
    if (stylizer_start(a->st, &a->in, &a->out, a->lockstep) < 0 || source_start(a->src, &a->in) < 0) {
        die("cannot start threads%s", "");
        goto end;
    }

    a->exit_code = 0;
    while (!a->quit) {
        SDL_Event e;
        while (SDL_PollEvent(&e))
            handle_event(a, &e);
        if (a->quit)
            break;
        if (source_failed(a->src, err, sizeof(err))) {
            die("%s", err);
            a->exit_code = 1;
            break;
        }
        unsigned g;
        pthread_mutex_lock(&a->ctl.lock);
        g = a->ctl.msg_gen;
        if (g != a->msg_gen_seen) {
            a->msg_gen_seen = g;
            memcpy(a->msg, a->ctl.msg, sizeof(a->msg));
            a->msg_until = player_now() + 5;
            a->dirty = 1;
        }
        pthread_mutex_unlock(&a->ctl.lock);
        if (a->msg_until && player_now() > a->msg_until) {
            a->msg_until = 0;
            a->dirty = 1;
        }

        /* Wait briefly for a result: events are handled at least every 10 ms. */
        int fl = 0;
        presult *r = mailbox_take(&a->out, a->dirty ? 0 : 0.01, !a->eof, &fl);
        if (r) {
            presult_free(a->cur);
            a->cur = r;
            if (ui_upload(a) < 0) {
                a->exit_code = 1;
                break;
            }
            a->dirty = 1;
        }
        if (a->dirty) {
            a->dirty = 0;
            if (a->shot_pending) {
                a->shot_pending = 0;
                save_screenshot(a); /* renders, saves, presents */
            } else {
                ui_render(a);
            }
        }
        if (r) {
            account(a, r, player_now());
            if (a->lockstep) {
                while (next_key < nkeys && keys[next_key].frame <= (long)a->shown)
                    handle_key(a, keys[next_key++].key);
                if (a->exit_after && a->shown >= (uint64_t)a->exit_after)
                    a->quit = 1;
                if (!a->quit) /* quitting: let the stylizer not start another frame */
                    mailbox_ack(&a->out);
            }
        }
        if ((fl & MB_EOF) && !a->eof) {
            a->eof = 1;
            a->dirty = 1;
            if (a->lockstep) /* scripted: the end of the input ends the run */
                a->quit = 1;
        }
    }
    if (a->screenshot_at_exit && a->ren) {
        if (ui_screenshot(a, a->screenshot_at_exit, err, sizeof(err)) < 0) {
            die("%s", err);
            a->exit_code = 1;
        }
    }

end:
    if (a->win)
        SDL_HideWindow(a->win); /* looks closed while a slow frame finishes */
    if (in_init)
        mailbox_close(&a->in);
    if (out_init)
        mailbox_close(&a->out);
    source_close(a->src);
    stylizer_destroy(a->st);
    presult_free(a->cur);
    ui_free(a);
    if (sdl_init)
        SDL_Quit();
    if (in_init)
        mailbox_destroy(&a->in);
    if (out_init)
        mailbox_destroy(&a->out);
    if (ctl_init)
        pthread_mutex_destroy(&a->ctl.lock);
    free(keys);
    return a->exit_code;
}
