/* stylize-image: stylize one PNG with libstylize. The library's own output,
 * used by the tests as the reference for the ffmpeg filter and by users for
 * stills. */
#include <errno.h>
#include <getopt.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stylize.h"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: stylize-image -m MODEL [options] INPUT.png OUTPUT.png\n"
            "       stylize-image -m MODEL --info\n"
            "Stylize a PNG image with a TransformerNet model (libstylize %s).\n\n"
            "  -m, --model PATH|NAME   model file (.safetensors) or installed style name\n"
            "      --mode MODE         auto|full|exact|tin|patch [auto]: auto = full when it fits 1 GiB\n"
            "                          (or --max-memory), else exact (an image is a still); exact = full's\n"
            "                          result in tiles; tin = thumbnail statistics; patch = per tile\n"
            "      --thumb N           TIN thumbnail longer side, 0 = auto (a tile's pixels) [0]\n"
            "      --tile N            tile side, 0 = whole frame, -1 = auto (768 for the classic network,\n"
            "                          larger for smaller ones: --info's tile_auto) [-1]\n"
            "      --exact-layers N    tin: exact statistics for the first N norm layers [1]; 0 = estimate all\n"
            "      --tin-stats S       tin: sample|thumbnail: estimate the others from full-resolution sample\n"
            "                          tiles (pooled layer by layer) or from a downscaled thumbnail [sample]\n"
            "      --overlap N         context around tiles, -1 = model's receptive field [-1]\n"
            "      --strength F        0..1 blend with the original [1]\n"
            "      --preserve-color    keep the original's colours (BT.601 YCbCr chroma)\n"
            "      --max-memory BYTES  working-memory limit and mode=auto's budget, e.g. 512M [0: none;\n"
            "                          auto's budget is then 1G]\n"
            "      --threads N         worker threads, 0 = all CPUs [0]\n"
            "      --backend NAME      auto|ref|dnnl|cuda [auto]\n"
            "      --precision P       auto|fp32|bf16|fp16 [auto]\n"
            "      --format FMT        pixel layout handed to the library: rgb24 bgr24 rgba bgra\n"
            "                          argb abgr gbrp gbrap [rgb24] (output is the same)\n"
            "      --stats-in FILE     use these TIN statistics (raw float32) instead of a thumbnail\n"
            "      --stats-out FILE    write the TIN statistics used (raw float32)\n"
            "      --repeat N          process the image N times (timing, smoothing) [1]\n"
            "      --info              print the model's facts as JSON and exit\n"
            "      --verbose           print the mode (auto resolved) and the working memory\n"
            "  -h, --help              this help\n",
            stylize_version());
}

static const char *const format_names[] = {"rgb24", "bgr24", "rgba", "bgra", "argb", "abgr", "gbrp", "gbrap"};

static int die(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "stylize-image: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    return 1;
}

/* An image in the chosen layout. */
typedef struct image {
    stylize_frame f;
    uint8_t *buf;
} image;

static int image_alloc(image *im, stylize_pixfmt fmt, int w, int h)
{
    int planar = fmt == STYLIZE_PIX_GBRP || fmt == STYLIZE_PIX_GBRAP;
    int planes = fmt == STYLIZE_PIX_GBRAP ? 4 : 3;
    int bpp = fmt == STYLIZE_PIX_RGB24 || fmt == STYLIZE_PIX_BGR24 ? 3 : 4;
    size_t plane = (size_t)w * h;
    memset(im, 0, sizeof(*im));
    im->buf = calloc(planar ? plane * planes : plane * bpp, 1);
    if (!im->buf)
        return -1;
    im->f.format = fmt;
    im->f.width = w;
    im->f.height = h;
    for (int i = 0; i < (planar ? planes : 1); i++) {
        im->f.data[i] = im->buf + (planar ? plane * i : 0);
        im->f.linesize[i] = planar ? w : (ptrdiff_t)w * bpp;
    }
    return 0;
}

/* Copy between packed RGB24 and any layout (no maths: channel shuffles). */
static void convert_rgb(const uint8_t *rgb, image *im, int to_image)
{
    const stylize_frame *f = &im->f;
    for (int y = 0; y < f->height; y++)
        for (int x = 0; x < f->width; x++) {
            uint8_t *p[4] = {NULL};
            size_t i = (size_t)y * f->width + x;
            switch (f->format) {
            case STYLIZE_PIX_GBRP:
            case STYLIZE_PIX_GBRAP:
                p[0] = f->data[2] + y * f->linesize[2] + x;
                p[1] = f->data[0] + y * f->linesize[0] + x;
                p[2] = f->data[1] + y * f->linesize[1] + x;
                if (f->format == STYLIZE_PIX_GBRAP)
                    p[3] = f->data[3] + y * f->linesize[3] + x;
                break;
            default: {
                static const int off[6][4] = {{0, 1, 2, -1}, {2, 1, 0, -1}, {0, 1, 2, 3},
                                              {2, 1, 0, 3},  {1, 2, 3, 0},  {3, 2, 1, 0}};
                int bpp = f->format <= STYLIZE_PIX_BGR24 ? 3 : 4;
                uint8_t *px = f->data[0] + y * f->linesize[0] + (size_t)x * bpp;
                for (int c = 0; c < 4; c++)
                    p[c] = off[f->format][c] >= 0 ? px + off[f->format][c] : NULL;
            }
            }
            for (int c = 0; c < 3; c++) {
                if (to_image)
                    *p[c] = rgb[i * 3 + c];
                else
                    ((uint8_t *)rgb)[i * 3 + c] = *p[c];
            }
            if (to_image && p[3])
                *p[3] = 255;
        }
}

static uint8_t *read_png(const char *path, int *w, int *h, char *err, size_t n)
{
    png_image img;
    memset(&img, 0, sizeof(img));
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&img, path)) {
        snprintf(err, n, "cannot read '%s': %s", path, img.message);
        return NULL;
    }
    img.format = PNG_FORMAT_RGB;
    uint8_t *buf = malloc(PNG_IMAGE_SIZE(img));
    if (!buf || !png_image_finish_read(&img, NULL, buf, 0, NULL)) {
        snprintf(err, n, "cannot decode '%s': %s", path, buf ? img.message : "out of memory");
        free(buf);
        png_image_free(&img);
        return NULL;
    }
    *w = (int)img.width;
    *h = (int)img.height;
    return buf;
}

static int write_png(const char *path, const uint8_t *rgb, int w, int h, char *err, size_t n)
{
    /* Write to a temporary name and rename, so a failure never leaves a partial file. */
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp%ld", path, (long)getpid());
    png_image img;
    memset(&img, 0, sizeof(img));
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)w;
    img.height = (png_uint_32)h;
    img.format = PNG_FORMAT_RGB;
    if (!png_image_write_to_file(&img, tmp, 0, rgb, 0, NULL)) {
        snprintf(err, n, "cannot write '%s': %s", path, img.message);
        remove(tmp);
        return -1;
    }
    if (rename(tmp, path)) {
        snprintf(err, n, "cannot write '%s': %s", path, strerror(errno));
        remove(tmp);
        return -1;
    }
    return 0;
}

static float *read_stats(const char *path, size_t n, char *err, size_t errn)
{
    FILE *f = fopen(path, "rb");
    float *s = malloc(n * sizeof(float) + 1);
    if (!f || !s) {
        snprintf(err, errn, "cannot read statistics '%s': %s", path, strerror(errno));
        goto fail;
    }
    size_t got = fread(s, sizeof(float), n + 1, f);
    if (got != n) {
        snprintf(err, errn, "statistics file '%s' holds %s floats, the model needs %zu", path,
                 got > n ? "more" : "fewer", n);
        goto fail;
    }
    fclose(f);
    return s;
fail:
    if (f)
        fclose(f);
    free(s);
    return NULL;
}

static void print_info(stylize_ctx *ctx)
{
    stylize_model_info mi;
    stylize_get_model_info(ctx, &mi);
    printf("{\"backend\": \"%s\", \"precision\": \"%s\", \"width1\": %d, \"width2\": %d, \"width3\": %d, \"res_blocks\": %d, \"kernel_in\": %d, "
           "\"kernel_out\": %d, \"norm_layers\": %d, \"receptive_radius\": %d, \"parameters\": %zu, "
           "\"stats_size\": %zu, \"architecture\": \"%s\", \"total_stride\": %d, \"tile_auto\": %d, \"macs_per_pixel\": %.0f, "
           "\"style\": \"%s\", \"license\": \"%s\"}\n",
           stylize_backend_name(stylize_active_backend(ctx)), stylize_precision_name(stylize_active_precision(ctx)),
           mi.width1, mi.width2, mi.width3, mi.res_blocks, mi.kernel_in, mi.kernel_out, mi.norm_layers,
           mi.receptive_radius, mi.parameters, stylize_stats_size(ctx), mi.architecture, mi.total_stride,
           mi.tile_auto, mi.macs_per_pixel, mi.style, mi.license);
}

/* "512M", "2G", "1048576": bytes with an optional K/M/G (binary) suffix. */
static int parse_bytes(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    int shift = 0;
    if (*end == 'K' || *end == 'k')
        shift = 10;
    else if (*end == 'M' || *end == 'm')
        shift = 20;
    else if (*end == 'G' || *end == 'g')
        shift = 30;
    if (shift)
        end++;
    if (errno || end == s || *end || s[0] == '-' || v > (SIZE_MAX >> shift))
        return -1;
    *out = (size_t)v << shift;
    return 0;
}

static int parse_int(const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < -2147483647L || v > 2147483647L)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse_float(const char *s, float *out)
{
    char *end;
    errno = 0;
    *out = strtof(s, &end);
    return errno || end == s || *end ? -1 : 0;
}

int main(int argc, char **argv)
{
    enum { O_MODE = 256, O_THUMB, O_TILE, O_OVERLAP, O_STRENGTH, O_PRESERVE, O_SMOOTH, O_THREADS, O_BACKEND,
           O_FORMAT, O_PRECISION, O_STATS_IN, O_STATS_OUT, O_REPEAT, O_INFO, O_MAX_MEMORY, O_VERBOSE, O_EXACT_LAYERS,
           O_TIN_STATS };
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},     {"mode", required_argument, NULL, O_MODE},
        {"thumb", required_argument, NULL, O_THUMB}, {"tile", required_argument, NULL, O_TILE},
        {"overlap", required_argument, NULL, O_OVERLAP}, {"strength", required_argument, NULL, O_STRENGTH},
        {"preserve-color", no_argument, NULL, O_PRESERVE}, {"smooth", required_argument, NULL, O_SMOOTH},
        {"threads", required_argument, NULL, O_THREADS}, {"backend", required_argument, NULL, O_BACKEND},
        {"format", required_argument, NULL, O_FORMAT}, {"precision", required_argument, NULL, O_PRECISION}, {"stats-in", required_argument, NULL, O_STATS_IN},
        {"stats-out", required_argument, NULL, O_STATS_OUT}, {"repeat", required_argument, NULL, O_REPEAT},
        {"max-memory", required_argument, NULL, O_MAX_MEMORY}, {"verbose", no_argument, NULL, O_VERBOSE},
        {"exact-layers", required_argument, NULL, O_EXACT_LAYERS}, {"tin-stats", required_argument, NULL, O_TIN_STATS},
        {"info", no_argument, NULL, O_INFO},         {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    stylize_options o;
    stylize_options_default(&o);
    o.still = 1; /* an image: mode=auto may take exact mode's time for it */
    const char *model = NULL, *stats_in = NULL, *stats_out = NULL;
    stylize_pixfmt fmt = STYLIZE_PIX_RGB24;
    int info = 0, repeat = 1, c, bad = 0, verbose = 0;
    while ((c = getopt_long(argc, argv, "m:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case O_MODE: bad = stylize_mode_from_name(optarg, &o.mode); break;
        case O_THUMB: bad = parse_int(optarg, &o.thumb); break;
        case O_TILE: bad = parse_int(optarg, &o.tile); break;
        case O_OVERLAP: bad = parse_int(optarg, &o.overlap); break;
        case O_STRENGTH: bad = parse_float(optarg, &o.strength); break;
        case O_PRESERVE: o.preserve_color = 1; break;
        case O_SMOOTH: bad = parse_float(optarg, &o.smooth); break;
        case O_THREADS: bad = parse_int(optarg, &o.threads); break;
        case O_BACKEND: bad = stylize_backend_from_name(optarg, &o.backend); break;
        case O_PRECISION: bad = stylize_precision_from_name(optarg, &o.precision); break;
        case O_FORMAT:
            bad = -1;
            for (int i = 0; i < 8; i++)
                if (!strcmp(optarg, format_names[i])) {
                    fmt = (stylize_pixfmt)i;
                    bad = 0;
                }
            break;
        case O_STATS_IN: stats_in = optarg; break;
        case O_STATS_OUT: stats_out = optarg; break;
        case O_REPEAT: bad = parse_int(optarg, &repeat) || repeat < 1; break;
        case O_MAX_MEMORY: bad = parse_bytes(optarg, &o.max_memory); break;
        case O_VERBOSE: verbose = 1; break;
        case O_EXACT_LAYERS: bad = parse_int(optarg, &o.exact_layers); break;
        case O_TIN_STATS: bad = stylize_tin_stats_from_name(optarg, &o.tin_stats) != STYLIZE_OK; break;
        case O_INFO: info = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 1;
        }
        if (bad)
            return die("invalid value '%s' for option %s (see --help)", optarg, argv[optind - 1]);
    }
    if (!model)
        return die("no model given (-m MODEL)%s%s", "", "");
    if (!info && argc - optind != 2) {
        usage(stderr);
        return 1;
    }

    char err[1024];
    stylize_ctx *ctx;
    if (stylize_create(model, &o, &ctx, err, sizeof(err)))
        return die("%s%s", err, "");
    if (info) {
        print_info(ctx);
        stylize_destroy(ctx);
        return 0;
    }

    int status = 1, w, h;
    uint8_t *rgb = read_png(argv[optind], &w, &h, err, sizeof(err));
    float *stats = NULL;
    image in = {0}, out = {0};
    if (!rgb) {
        die("%s%s", err, "");
        goto done;
    }
    size_t ns = stylize_stats_size(ctx);
    if (stats_in && !(stats = read_stats(stats_in, ns, err, sizeof(err)))) {
        die("%s%s", err, "");
        goto done;
    }
    if (image_alloc(&in, fmt, w, h) || image_alloc(&out, fmt, w, h)) {
        die("out of memory for a %s image%s", argv[optind], "");
        goto done;
    }
    convert_rgb(rgb, &in, 1);
    if (verbose)
        fprintf(stderr, "stylize-image: %dx%d: mode %s%s, %zu KiB of working memory\n", w, h,
                stylize_mode_name(stylize_resolve_mode(ctx, w, h)), o.mode == STYLIZE_MODE_AUTO ? " (auto)" : "",
                stylize_memory_needed(ctx, w, h) >> 10);
    for (int i = 0; i < repeat; i++) {
        if (stats && stylize_set_stats(ctx, stats, ns)) {
            die("%s%s", stylize_errmsg(ctx), "");
            goto done;
        }
        if (stylize_process(ctx, &in.f, &out.f)) {
            die("%s%s", stylize_errmsg(ctx), "");
            goto done;
        }
    }
    if (stats_out) {
        float *s = malloc(ns * sizeof(float));
        FILE *f = NULL;
        int ok = s && !stylize_get_stats(ctx, s, ns) && (f = fopen(stats_out, "wb")) &&
                 fwrite(s, sizeof(float), ns, f) == ns;
        if (f && fclose(f))
            ok = 0;
        free(s);
        if (!ok) {
            die("cannot write statistics to '%s': %s", stats_out,
                *stylize_errmsg(ctx) ? stylize_errmsg(ctx) : strerror(errno));
            goto done;
        }
    }
    convert_rgb(rgb, &out, 0);
    if (write_png(argv[optind + 1], rgb, w, h, err, sizeof(err))) {
        die("%s%s", err, "");
        goto done;
    }
    status = 0;
done:
    free(rgb);
    free(stats);
    free(in.buf);
    free(out.buf);
    stylize_destroy(ctx);
    return status;
}
