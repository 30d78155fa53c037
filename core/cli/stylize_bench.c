/* stylize-bench: time libstylize on synthetic frames of a given size.
 *
 * One configuration per run (backend, precision, mode, threads, size); the
 * result is one JSON object on stdout, which tools/bench.py collects into
 * docs/BENCHMARK.md:
 *   ms_best / ms_median   wall time of stylize_process per frame (after
 *                         --warmup frames, default 1; the first frame creates
 *                         the primitives: first_ms)
 *   gflop                 multiply-adds x 2 of the network on the whole frame
 *                         (the classic architecture: nearest upsampling, 3x3
 *                         deconvolutions; compact models: the model's
 *                         multiply-adds per pixel), so GFLOP/s compare across backends
 *                         and modes; tiling overlap and the tin thumbnail are
 *                         overhead, not counted
 *   rss_base_mb           VmRSS once the input and output frames are allocated
 *                         and written, before the library is touched
 *   rss_peak_mb           VmHWM at the end; rss_beyond_frames_mb = peak less
 *                         the input and output frame buffers (as tools/bench.py)
 * With --peak it measures instead the machine's fp32 (and, where the CPU has
 * it, bf16) throughput with a large oneDNN matmul on the same threads.
 *
 *   stylize-bench -m MODEL [--backend B] [--precision P] [--mode M]
 *                 [--threads N] [--size WxH|720p|1080p|4k|8k|16k]
 *                 [--frames N] [--warmup N] [--tile N] [--thumb N]
 *   stylize-bench --peak [--threads N]
 */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stylize.h"
#ifdef STYLIZE_HAVE_DNNL
#include "backend_dnnl_impl.h"
#endif

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* kB value of a /proc/self/status field, or -1 */
static long status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof(line), f))
        if (!strncmp(line, field, n) && line[n] == ':') {
            v = strtol(line + n + 1, NULL, 10);
            break;
        }
    if (f)
        fclose(f);
    return v;
}

static int parse_size(const char *s, int *w, int *h)
{
    static const struct { const char *name; int w, h; } named[] = {
        {"720p", 1280, 720}, {"1080p", 1920, 1080}, {"4k", 3840, 2160}, {"8k", 7680, 4320}, {"16k", 16384, 16384}};
    for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++)
        if (!strcmp(s, named[i].name)) {
            *w = named[i].w;
            *h = named[i].h;
            return 0;
        }
    return sscanf(s, "%dx%d", w, h) == 2 && *w > 0 && *h > 0 ? 0 : -1;
}

/* 2 x multiply-adds of the network on W x H: the classic network from its
 * widths (decoder widths = encoder widths), a compact one from the model's
 * multiply-adds per pixel. */
static double network_gflop(const stylize_model_info *mi, int w, int h)
{
    if (!strcmp(mi->architecture, "compact"))
        return 2 * mi->macs_per_pixel * w * h / 1e9;
    double n1 = (double)w * h;
    long w2 = (w + 1) / 2, h2 = (h + 1) / 2, w3 = (w2 + 1) / 2, h3 = (h2 + 1) / 2;
    double n2 = (double)w2 * h2, n3 = (double)w3 * h3, n2u = 4.0 * n3, n1u = 16.0 * n3;
    double c1 = mi->width1, c2 = mi->width2, c3 = mi->width3, ki = mi->kernel_in, ko = mi->kernel_out;
    double macs = n1 * 3 * c1 * ki * ki + n2 * c1 * c2 * 9 + n3 * c2 * c3 * 9 + n3 * 2 * mi->res_blocks * c3 * c3 * 9 +
                  n2u * c3 * c2 * 9 + n1u * c2 * c1 * 9 + n1u * c1 * 3 * ko * ko;
    return 2 * macs / 1e9;
}

/* A deterministic frame with gradients, edges and grain. */
static void fill_frame(uint8_t *p, int w, int h)
{
    uint32_t s = 12345;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            s = s * 1664525u + 1013904223u;
            int grain = (int)(s >> 28) - 8;
            int r = (x * 255 / (w > 1 ? w - 1 : 1)), g = (y * 255 / (h > 1 ? h - 1 : 1));
            int b = ((x / 64 + y / 64) & 1) ? 200 : 60;
            int v[3] = {r + grain, g + grain, b + grain};
            for (int c = 0; c < 3; c++)
                p[((size_t)y * w + x) * 3 + c] = (uint8_t)(v[c] < 0 ? 0 : v[c] > 255 ? 255 : v[c]);
        }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#ifdef STYLIZE_HAVE_DNNL
/* GFLOP/s of an n x n x n matmul (best of reps), or -1 when unavailable.
 * The weights are in the layout the kernel prefers (format any), as the
 * backend's are: with plain row-major weights the kernel repacks them on
 * every call and measures about half the machine's throughput. Every
 * element holds the same value, so the buffer needs no reorder. */
static double dnnl_matmul_gflops(const sty_dnnl_api *a, int bf16, int n, int reps)
{
    dnnl_engine_t eng = NULL;
    dnnl_stream_t strm = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    dnnl_memory_t ms = NULL, mw = NULL, md = NULL;
    void *bs = NULL, *bw = NULL, *bd = NULL;
    double best = -1;
    dnnl_memory_desc_t sd, wd, dd;
    dnnl_dims_t dims = {n, n};
    dnnl_data_type_t dt = bf16 ? dnnl_bf16 : dnnl_f32;
    dnnl_matmul_desc_t mmd;
    if (a->dnnl_engine_create(&eng, dnnl_cpu, 0) || a->dnnl_stream_create(&strm, eng, dnnl_stream_default_flags) ||
        a->dnnl_memory_desc_init_by_tag(&sd, 2, dims, dt, dnnl_ab) ||
        a->dnnl_memory_desc_init_by_tag(&wd, 2, dims, dt, dnnl_format_tag_any) ||
        a->dnnl_memory_desc_init_by_tag(&dd, 2, dims, dnnl_f32, dnnl_ab) ||
        a->dnnl_matmul_desc_init(&mmd, &sd, &wd, NULL, &dd) || a->dnnl_primitive_desc_create(&pd, &mmd, NULL, eng, NULL) ||
        a->dnnl_primitive_create(&prim, pd))
        goto done;
    const char *impl = "";
    a->dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    if (strstr(impl, "ref")) /* no fast kernel for this type on this CPU */
        goto done;
    const dnnl_memory_desc_t *wpd = a->dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    if (!wpd)
        goto done;
    wd = *wpd;
    size_t ss = a->dnnl_memory_desc_get_size(&sd), ws = a->dnnl_memory_desc_get_size(&wd),
           ds = a->dnnl_memory_desc_get_size(&dd);
    bs = calloc(1, ss);
    bw = calloc(1, ws);
    bd = calloc(1, ds);
    if (!bs || !bw || !bd)
        goto done;
    memset(bs, 0x3c, ss);
    memset(bw, 0x3c, ws);
    if (a->dnnl_memory_create(&ms, &sd, eng, bs) || a->dnnl_memory_create(&mw, &wd, eng, bw) ||
        a->dnnl_memory_create(&md, &dd, eng, bd))
        goto done;
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, md}};
    for (int i = 0; i < reps + 1; i++) {
        double t0 = now();
        if (a->dnnl_primitive_execute(prim, strm, 3, args) || a->dnnl_stream_wait(strm))
            goto done;
        double g = 2.0 * n * n * (double)n / 1e9 / (now() - t0);
        if (i > 0 && g > best)
            best = g;
    }
done:
    if (ms)
        a->dnnl_memory_destroy(ms);
    if (mw)
        a->dnnl_memory_destroy(mw);
    if (md)
        a->dnnl_memory_destroy(md);
    if (prim)
        a->dnnl_primitive_destroy(prim);
    if (pd)
        a->dnnl_primitive_desc_destroy(pd);
    if (strm)
        a->dnnl_stream_destroy(strm);
    if (eng)
        a->dnnl_engine_destroy(eng);
    free(bs);
    free(bw);
    free(bd);
    return best;
}
#endif

static int run_peak(int threads)
{
#ifdef STYLIZE_HAVE_DNNL
    const char *why = NULL;
    const sty_dnnl_api *a = sty_dnnl_load(&why);
    if (!a) {
        printf("{\"threads\": %d, \"peak_fp32_gflops\": null, \"peak_bf16_gflops\": null, \"error\": \"%s\"}\n",
               threads, why);
        return 0;
    }
    if (a->omp_set_num_threads)
        a->omp_set_num_threads(threads);
    double f = dnnl_matmul_gflops(a, 0, 3072, 4), b = dnnl_matmul_gflops(a, 1, 4096, 4);
    unsigned isa = (unsigned)a->dnnl_get_effective_cpu_isa();
    printf("{\"threads\": %d, \"isa\": \"0x%x\", \"peak_fp32_gflops\": %.1f, \"peak_bf16_gflops\": ", threads, isa, f);
    if (b > 0)
        printf("%.1f}\n", b);
    else
        printf("null}\n");
#else
    printf("{\"threads\": %d, \"peak_fp32_gflops\": null, \"peak_bf16_gflops\": null, "
           "\"error\": \"built without oneDNN\"}\n", threads);
#endif
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "Usage: stylize-bench -m MODEL [--backend auto|ref|dnnl] [--precision auto|fp32|bf16]\n"
               "                     [--mode auto|tin|full|exact|patch] [--threads N] [--size WxH|720p|1080p|4k|8k|16k]\n"
               "                     [--frames N] [--warmup N] [--tile N] [--thumb N]\n"
               "                     [--max-memory BYTES|NM] [--still] [--exact-layers N]\n"
               "                     [--tin-stats sample|thumbnail] [--plan]\n"
               "       stylize-bench --peak [--threads N]\n"
               "Prints one JSON object: ms/frame, frames/s, GFLOP/s, peak RSS.\n");
}

int main(int argc, char **argv)
{
    enum { O_BACKEND = 256, O_PRECISION, O_MODE, O_THREADS, O_SIZE, O_FRAMES, O_WARMUP, O_TILE, O_THUMB, O_PEAK,
           O_MAX_MEMORY, O_STILL, O_EXACT_LAYERS, O_PLAN, O_TIN_STATS };
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},         {"backend", required_argument, NULL, O_BACKEND},
        {"precision", required_argument, NULL, O_PRECISION}, {"mode", required_argument, NULL, O_MODE},
        {"threads", required_argument, NULL, O_THREADS}, {"size", required_argument, NULL, O_SIZE},
        {"frames", required_argument, NULL, O_FRAMES},   {"warmup", required_argument, NULL, O_WARMUP},
        {"tile", required_argument, NULL, O_TILE},
        {"thumb", required_argument, NULL, O_THUMB},     {"peak", no_argument, NULL, O_PEAK},
        {"max-memory", required_argument, NULL, O_MAX_MEMORY}, {"still", no_argument, NULL, O_STILL},
        {"exact-layers", required_argument, NULL, O_EXACT_LAYERS}, {"plan", no_argument, NULL, O_PLAN},
        {"tin-stats", required_argument, NULL, O_TIN_STATS},
        {"help", no_argument, NULL, 'h'},                {NULL, 0, NULL, 0}};
    stylize_options o;
    stylize_options_default(&o);
    o.threads = 1;
    const char *model = NULL;
    int w = 1280, h = 720, frames = 3, warmup = 1, peak = 0, plan = 0, c, bad = 0;
    while ((c = getopt_long(argc, argv, "m:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case O_BACKEND: bad = stylize_backend_from_name(optarg, &o.backend); break;
        case O_PRECISION: bad = stylize_precision_from_name(optarg, &o.precision); break;
        case O_MODE: bad = stylize_mode_from_name(optarg, &o.mode); break;
        case O_THREADS: bad = sscanf(optarg, "%d", &o.threads) != 1 || o.threads < 0; break;
        case O_SIZE: bad = parse_size(optarg, &w, &h); break;
        case O_FRAMES: bad = sscanf(optarg, "%d", &frames) != 1 || frames < 1; break;
        case O_WARMUP: bad = sscanf(optarg, "%d", &warmup) != 1 || warmup < 0; break;
        case O_TILE: bad = sscanf(optarg, "%d", &o.tile) != 1; break;
        case O_THUMB: bad = sscanf(optarg, "%d", &o.thumb) != 1; break;
        case O_PEAK: peak = 1; break;
        case O_MAX_MEMORY: {
            unsigned long long v;
            char unit = 0;
            int n = sscanf(optarg, "%llu%c", &v, &unit);
            bad = n < 1 || (n == 2 && unit != 'M');
            o.max_memory = (size_t)v << (unit == 'M' ? 20 : 0);
            break;
        }
        case O_STILL: o.still = 1; break;
        case O_EXACT_LAYERS: bad = sscanf(optarg, "%d", &o.exact_layers) != 1; break;
        case O_TIN_STATS: bad = stylize_tin_stats_from_name(optarg, &o.tin_stats) != STYLIZE_OK; break;
        case O_PLAN: plan = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 1;
        }
        if (bad) {
            fprintf(stderr, "stylize-bench: invalid value '%s' for %s\n", optarg, argv[optind - 1]);
            return 1;
        }
    }
    if (peak)
        return run_peak(o.threads > 0 ? o.threads : 1);
    if (!model) {
        usage(stderr);
        return 1;
    }

    if (plan) { /* the mode and working memory the library plans for the size, without a frame */
        char perr[1024];
        stylize_ctx *pctx;
        if (stylize_create(model, &o, &pctx, perr, sizeof(perr))) {
            fprintf(stderr, "stylize-bench: %s\n", perr);
            return 1;
        }
        printf("{\"width\": %d, \"height\": %d, \"mode\": \"%s\", \"memory_needed_mb\": %.1f}\n", w, h,
               stylize_mode_name(stylize_resolve_mode(pctx, w, h)), stylize_memory_needed(pctx, w, h) / 1048576.0);
        stylize_destroy(pctx);
        return 0;
    }
    size_t bytes = (size_t)w * h * 3;
    uint8_t *in = malloc(bytes), *out = malloc(bytes);
    if (!in || !out) {
        fprintf(stderr, "stylize-bench: out of memory for two %dx%d frames\n", w, h);
        return 1;
    }
    fill_frame(in, w, h);
    memcpy(out, in, bytes); /* resident now (a zero memset of fresh memory may be turned into calloc) */
    long base_kb = status_kb("VmRSS");

    char err[1024];
    stylize_ctx *ctx;
    double t0 = now();
    if (stylize_create(model, &o, &ctx, err, sizeof(err))) {
        fprintf(stderr, "stylize-bench: %s\n", err);
        return 1;
    }
    double create_ms = (now() - t0) * 1e3;
    stylize_frame fi = {STYLIZE_PIX_RGB24, w, h, {in}, {(ptrdiff_t)w * 3}};
    stylize_frame fo = {STYLIZE_PIX_RGB24, w, h, {out}, {(ptrdiff_t)w * 3}};
    double *ms = malloc(sizeof(double) * (size_t)(frames + warmup));
    for (int i = 0; i < frames + warmup; i++) {
        double s = now();
        if (stylize_process(ctx, &fi, &fo)) {
            fprintf(stderr, "stylize-bench: %s\n", stylize_errmsg(ctx));
            return 1;
        }
        ms[i] = (now() - s) * 1e3;
    }
    double first = ms[0];
    qsort(ms + warmup, (size_t)frames, sizeof(double), cmp_double);
    double best = ms[warmup], median = ms[warmup + frames / 2];
    stylize_model_info mi;
    stylize_get_model_info(ctx, &mi);
    double gflop = network_gflop(&mi, w, h);
    long peak_kb = status_kb("VmHWM");
    uint64_t sum = 0;
    for (size_t i = 0; i < bytes; i += 4099)
        sum += out[i];
    printf("{\"backend\": \"%s\", \"precision\": \"%s\", \"mode\": \"%s\", \"threads\": %d, \"width\": %d, "
           "\"height\": %d, \"tile\": %d, \"thumb\": %d, \"frames\": %d, \"warmup\": %d, \"widths\": [%d, %d, %d], "
           "\"res_blocks\": %d, \"create_ms\": %.1f, \"first_ms\": %.1f, \"ms_best\": %.2f, "
           "\"ms_median\": %.2f, \"fps\": %.3f, \"gflop\": %.2f, \"gflops\": %.1f, \"frame_mb\": %.1f, "
           "\"rss_base_mb\": %.1f, \"rss_peak_mb\": %.1f, \"rss_beyond_frames_mb\": %.1f, \"memory_needed_mb\": %.1f, \"checksum\": %llu}\n",
           stylize_backend_name(stylize_active_backend(ctx)), stylize_precision_name(stylize_active_precision(ctx)),
           stylize_mode_name(stylize_resolve_mode(ctx, w, h)), o.threads, w, h, o.tile < 0 ? mi.tile_auto : o.tile, o.thumb, frames, warmup, mi.width1, mi.width2, mi.width3,
           mi.res_blocks, create_ms, first, best, median, 1e3 / best, gflop, gflop / (best / 1e3),
           (double)bytes / 1048576.0, base_kb / 1024.0, peak_kb / 1024.0, peak_kb / 1024.0 - 2.0 * (double)bytes / 1048576.0,
           stylize_memory_needed(ctx, w, h) / 1048576.0, (unsigned long long)sum);
    stylize_destroy(ctx);
    free(ms);
    free(in);
    free(out);
    return 0;
}
