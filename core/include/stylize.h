/*
 * libstylize: feed-forward neural style transfer (Johnson et al. 2016
 * "TransformerNet") with thumbnail instance normalization (TIN, Chen et al.
 * AAAI 2022) for frames of any size.
 *
 * Contract common to every call:
 *  - A stylize_ctx is used by one thread at a time; distinct contexts are
 *    independent and may run concurrently.
 *  - Calls that can fail return STYLIZE_OK (0) or a negative stylize_status.
 *    On failure stylize_errmsg(ctx) describes the problem in one line; the
 *    context stays usable and keeps its previous state (model, options).
 *  - Pixels are 8-bit sRGB-coded RGB as the network was trained on; alpha,
 *    where present, is copied from input to output unchanged.
 */
#ifndef STYLIZE_H
#define STYLIZE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define STYLIZE_VERSION_MAJOR 0
#define STYLIZE_VERSION_MINOR 1
#define STYLIZE_VERSION_PATCH 0

typedef enum stylize_status {
    STYLIZE_OK = 0,
    STYLIZE_ERR_INVALID_ARG = -1, /* bad option value, NULL pointer, size mismatch */
    STYLIZE_ERR_IO = -2,          /* model file missing or unreadable */
    STYLIZE_ERR_MODEL = -3,       /* model file malformed or not a TransformerNet */
    STYLIZE_ERR_NOMEM = -4,       /* allocation failed */
    STYLIZE_ERR_UNSUPPORTED = -5, /* pixel format, backend or precision not available */
    STYLIZE_ERR_BACKEND = -6,     /* the compute backend failed */
    STYLIZE_ERR_TOO_LARGE = -7,   /* frame needs more memory than allowed */
} stylize_status;

/* How instance-norm statistics are obtained. */
typedef enum stylize_mode {
    STYLIZE_MODE_TIN = 0,   /* thumbnail statistics, tiled: bounded memory, seamless, an approximation */
    STYLIZE_MODE_FULL = 1,  /* exact instance norm over the whole frame (= PyTorch); memory grows with the frame */
    STYLIZE_MODE_PATCH = 2, /* each tile normalizes with its own statistics: the naive baseline, shows seams */
    STYLIZE_MODE_EXACT = 3, /* full's statistics computed in tiles: the same picture (within 1 level in fp32)
                               with tile-bounded memory, at the cost of one pass over the tiles per
                               instance-norm layer (several times tin's time); not on the cuda backend */
    STYLIZE_MODE_AUTO = 4,  /* default: full when its working memory fits the budget (max_memory, or
                               STYLIZE_AUTO_BUDGET when that is 0); otherwise exact when `still` is set
                               (and the backend has exact), else tin. Statistics imposed with
                               stylize_set_stats make that frame tin. stylize_resolve_mode tells the choice. */
} stylize_mode;

/* mode=auto's memory budget when max_memory is 0: 1 GiB (full fits up to about 1080p with the classic model). */
#define STYLIZE_AUTO_BUDGET ((size_t)1 << 30)

typedef enum stylize_backend {
    STYLIZE_BACKEND_AUTO = 0, /* fastest available */
    STYLIZE_BACKEND_REF = 1,  /* portable C, fp32, thread pool */
    STYLIZE_BACKEND_DNNL = 2, /* oneDNN (when built with it) */
    STYLIZE_BACKEND_CUDA = 3, /* CUDA (when built with it and a GPU is present) */
} stylize_backend;

/* Arithmetic of the network. */
typedef enum stylize_precision {
    STYLIZE_PRECISION_AUTO = 0, /* CPU: bf16 where it is faster than fp32 (AMX-BF16, or AVX512-BF16 on an
                                   AMD CPU; Intel's AVX512-BF16 without AMX is slower), else fp32; cuda: fp16 */
    STYLIZE_PRECISION_FP32 = 1,
    STYLIZE_PRECISION_BF16 = 2, /* bf16 storage and multiplies, fp32 accumulation */
    STYLIZE_PRECISION_FP16 = 3, /* fp16 storage and multiplies, fp32 accumulation (cuda backend only) */
} stylize_precision;

/* How tin estimates a frame's instance-norm statistics (frames larger than
 * the thumbnail; a frame no larger is its own thumbnail, and its statistics
 * are full's). */
typedef enum stylize_tin_stats {
    STYLIZE_TIN_STATS_SAMPLE = 0,    /* default: tiles of 256 pixels (smaller for a smaller thumbnail) at
                                        the frame's own resolution, one from the centre of each cell of a
                                        grid over the frame, as many pixels in all as the thumbnail (with
                                        thumb auto, a tenth of a frame larger than 4K: at most 5x the
                                        thumbnail's pixels); each runs alone and the statistics are pooled
                                        over them layer by layer (one pass per norm layer). Right scale, so
                                        far closer to full than a thumbnail (docs/tin_measurement.md). Needs
                                        exact passes: the cuda backend and compact models use the thumbnail */
    STYLIZE_TIN_STATS_THUMBNAIL = 1, /* the network run once on the area-downscaled frame (the estimator of
                                        the TIN paper, and the default before) */
} stylize_tin_stats;

/* Pixel layouts, 8 bits per component. Names follow FFmpeg's AV_PIX_FMT_*. */
typedef enum stylize_pixfmt {
    STYLIZE_PIX_RGB24 = 0, /* packed R,G,B */
    STYLIZE_PIX_BGR24 = 1, /* packed B,G,R */
    STYLIZE_PIX_RGBA = 2,  /* packed R,G,B,A */
    STYLIZE_PIX_BGRA = 3,  /* packed B,G,R,A */
    STYLIZE_PIX_ARGB = 4,  /* packed A,R,G,B */
    STYLIZE_PIX_ABGR = 5,  /* packed A,B,G,R */
    STYLIZE_PIX_GBRP = 6,  /* planar: data[0]=G, data[1]=B, data[2]=R */
    STYLIZE_PIX_GBRAP = 7, /* planar: data[0]=G, data[1]=B, data[2]=R, data[3]=A */
} stylize_pixfmt;

/* Options. Always start from stylize_options_default(); fields may be added
 * at the end in later versions. */
typedef struct stylize_options {
    stylize_mode mode;     /* default STYLIZE_MODE_AUTO */
    int thumb;             /* TIN thumbnail: longer side in pixels, 16..16384, never upscaled (with
                              tin_stats=sample the sample has the thumbnail's number of pixels, and with
                              thumb auto a tenth of a larger frame's, at most 5x: beyond 4K); 0 = auto
                              (default): the largest thumbnail with no more pixels than one tile's crop
                              (at least 512; about 1184x666 for a 16:9 frame with a 768 tile), so the
                              thumbnail pass needs no more memory than a tile. 512 was the default
                              before; a larger thumbnail estimates the frame's statistics better */
    int tile;              /* tile side in pixels (rounded up to a multiple of the model's total
                              stride: 4 classic, see stylize_model_info); 0 = one tile covering the
                              whole frame; -1 = auto (default): stylize_model_info.tile_auto, 768 for
                              the classic network and larger for smaller networks, so that a tile
                              needs about the memory of a classic 768 tile (768 was the default for
                              every model before) */
    int overlap;           /* context around each tile in pixels; -1 = auto: the model's
                              receptive-field radius (seamless in tin mode). Rounded up to a multiple of the total stride */
    float strength;        /* 0..1: blend of stylized (1) and original (0), default 1 */
    int preserve_color;    /* 1: luminance from the stylized frame, chroma from the original
                              (BT.601 full-range YCbCr, as JPEG); default 0 */
    float smooth;          /* 0 <= smooth < 1: exponential moving average of the TIN statistics
                              across frames (0 = off, 0.9 = heavy); tin mode only; default 0 */
    float scene_cut;       /* smoothing restarts when the first layer's mean moves by more than this
                              many standard deviations between frames; 0 = never; default 0.5 */
    int threads;           /* worker threads, 0 = number of online CPUs (default) */
    stylize_backend backend; /* default AUTO */
    stylize_precision precision; /* default AUTO */
    size_t max_memory;     /* bytes of working memory a frame may use, 0 = no limit (default).
                              A frame that needs more fails with STYLIZE_ERR_TOO_LARGE before
                              anything is allocated; in tin mode the need depends on tile and
                              thumb only (stylize_memory_needed tells it). */
    int still;             /* 1: the frames are independent still images (photos), so mode=auto may spend
                              exact mode's time on frames too large for full; 0: video (default), where
                              auto uses tin for them */
    int exact_layers;      /* tin: the first exact_layers instance-norm layers use the frame's exact
                              statistics (computed in tiles as exact mode does, one pass per layer
                              over the first layers only), the others are estimated (tin_stats).
                              Default 1 (about 5-8 % of a frame's time); 0 = estimate all; values >=
                              the number of norm layers give exact mode's statistics with tin's memory
                              but several times its time. Frames no larger than the thumbnail use
                              their own statistics. The cuda backend has no exact passes: there it is
                              ignored (thumbnail only) */
    stylize_tin_stats tin_stats; /* tin: how the other layers' statistics are estimated; default
                              STYLIZE_TIN_STATS_SAMPLE. `thumb` sets the size of either (the sample has
                              the thumbnail's number of pixels) */
} stylize_options;

/* Model facts, read from the model file. Fields may be added at the end in
 * later versions. */
typedef struct stylize_model_info {
    int width1, width2, width3; /* channels of the three encoder convs (32, 64, 128 for the classic model);
                                   compact models: of their first three convs */
    int res_blocks;             /* number of residual blocks (5 classic; compact: residual adds) */
    int kernel_in, kernel_out;  /* first and last conv kernel sizes (9, 9 classic) */
    int norm_layers;            /* instance-norm layers, in network order */
    int receptive_radius;       /* pixels an output pixel depends on in each direction */
    size_t parameters;          /* number of weights and biases */
    const char *style;          /* from the file's metadata, "" when absent */
    const char *source;         /* idem */
    const char *license;        /* idem */
    const char *path;           /* the file it was loaded from */
    const char *architecture;   /* "transformer_net" (classic) or "compact" (docs/COMPACT.md) */
    int total_stride;           /* tiles start on multiples of this (4 classic) */
    double macs_per_pixel;      /* multiply-adds per input pixel (154 k for the classic model) */
    int tile_auto;              /* the tile side of options.tile -1: 768 classic; for other networks
                                   scaled by the floats per pixel of their largest layer (input +
                                   output tensors) against the classic network's, so a tile needs
                                   about the same memory (1328 for the shipped _live twins) */
} stylize_model_info;

/* A frame view. width and height >= 1. For packed formats only data[0] and
 * linesize[0] are used. linesize is in bytes and may be larger than needed
 * (padding); it must not be negative. */
typedef struct stylize_frame {
    stylize_pixfmt format;
    int width, height;
    uint8_t *data[4];
    ptrdiff_t linesize[4];
} stylize_frame;

typedef struct stylize_ctx stylize_ctx;

/* Library version as "MAJOR.MINOR.PATCH (backends: ref[, dnnl][, cuda])". */
const char *stylize_version(void);

/* A static English description of a status code. */
const char *stylize_strerror(int status);

/* Fill *opts with the defaults documented above. */
void stylize_options_default(stylize_options *opts);

/* Parse "tin", "full", "patch", "exact", "auto" / "auto", "ref", "dnnl", "cuda" /
 * "auto", "fp32", "bf16", "fp16" into the enums.
 * Return 0, or STYLIZE_ERR_INVALID_ARG for an unknown name. */
int stylize_mode_from_name(const char *name, stylize_mode *mode);
int stylize_backend_from_name(const char *name, stylize_backend *backend);
int stylize_precision_from_name(const char *name, stylize_precision *precision);
int stylize_tin_stats_from_name(const char *name, stylize_tin_stats *tin_stats); /* "sample", "thumbnail" */
const char *stylize_mode_name(stylize_mode mode);
const char *stylize_tin_stats_name(stylize_tin_stats tin_stats);
const char *stylize_backend_name(stylize_backend backend);
const char *stylize_precision_name(stylize_precision precision);

/* The backend and precision actually in use (AUTO resolved). */
stylize_backend stylize_active_backend(const stylize_ctx *ctx);
stylize_precision stylize_active_precision(const stylize_ctx *ctx);

/* Resolve a model argument to a file: `name` is used as a path when it
 * names an existing file or contains a '/'; otherwise the bare style name
 * (with or without ".safetensors") is looked up in the installed models
 * folder (PREFIX/share/stylize/models), then in each folder of the
 * colon-separated STYLIZE_MODEL_PATH, then (the build tree's library
 * only, not the one `make install` installs) in the source tree's models/.
 * A style that was renamed is still found by its old name when no file of
 * that name exists (starry_night_fast -> starry_night_live).
 * Writes the path to path[0..path_size) and returns 0, or
 * STYLIZE_ERR_IO when nothing is found (path then holds a message listing
 * where it looked). */
int stylize_find_model(const char *name, char *path, size_t path_size);

/* Load the model named by model_path (resolved with stylize_find_model: a
 * .safetensors file written by tools/convert_model.py or any file that
 * follows its layout, or a bare style name), validate it,
 * and set up the backend. opts may be NULL for defaults. On success *out is
 * a new context and STYLIZE_OK is returned. On failure *out is NULL, nothing
 * is leaked, and when err is non-NULL a message naming the problem (and the
 * tensor, for model errors) is written to err (truncated to err_size). */
int stylize_create(const char *model_path, const stylize_options *opts,
                   stylize_ctx **out, char *err, size_t err_size);

/* Free everything the context owns. NULL is a no-op. */
void stylize_destroy(stylize_ctx *ctx);

/* The message of the last failed call on ctx ("" when none). Valid until the
 * next call on ctx. */
const char *stylize_errmsg(const stylize_ctx *ctx);

/* Stylize one frame. in and out must have the same width and height and a
 * supported format each (they may differ); out's buffers must not overlap
 * in's. Every output pixel is written exactly once. In tin mode working
 * memory depends on tile and thumb, not on the frame size (in exact mode,
 * on tile and the budget), and nothing is allocated once a frame of this
 * size has been processed. */
int stylize_process(stylize_ctx *ctx, const stylize_frame *in, stylize_frame *out);

/* Bytes of working memory (beyond the caller's frames) that processing a
 * width x height frame needs with the current model and options (with
 * mode=auto: in the mode it picks). In exact mode this includes the
 * activation cache, which is used only where it fits max_memory (or
 * STYLIZE_AUTO_BUDGET when that is 0); without it exact needs about what
 * tin needs. */
size_t stylize_memory_needed(const stylize_ctx *ctx, int width, int height);

/* The mode a width x height frame is processed in with the current options:
 * mode itself, or what auto chooses (see STYLIZE_MODE_AUTO). */
stylize_mode stylize_resolve_mode(const stylize_ctx *ctx, int width, int height);

/* Read the options in force. */
void stylize_get_options(const stylize_ctx *ctx, stylize_options *opts);

/* Change options between frames. Every field may change; a change of
 * threads or backend rebuilds the backend (slow), the others are cheap.
 * Invalid values are rejected as a whole and the old options stay. */
int stylize_set_options(stylize_ctx *ctx, const stylize_options *opts);

/* Switch to another model (path or style name, as stylize_create) between
 * frames. On failure the current model stays in use. Smoothing state restarts. */
int stylize_load_model(stylize_ctx *ctx, const char *model_path);

/* Facts about the current model; the strings live as long as the model. */
void stylize_get_model_info(const stylize_ctx *ctx, stylize_model_info *info);

/* Instance-norm statistics. Layout: for every instance-norm layer in network
 * order (in1, in2, in3, res1.in1, res1.in2, ..., in4, in5; compact models:
 * the norms in layer-list order), its C means then
 * its C variances (biased, of the layer's input), as float. */

/* Number of floats in the statistics of the current model. */
size_t stylize_stats_size(const stylize_ctx *ctx);

/* Copy the statistics used for the last processed frame in tin mode (after
 * smoothing) or exact mode (the frame's exact statistics) to dst[0..n). n
 * must equal stylize_stats_size(). Fails if no frame has been processed in
 * tin or exact mode since the model was loaded. */
int stylize_get_stats(const stylize_ctx *ctx, float *dst, size_t n);

/* Use src[0..n) as the statistics of the next processed frame in tin mode
 * (mode=auto processes that frame as tin),
 * instead of computing them from a thumbnail (one shot; smoothing is
 * bypassed for that frame and its state is set to these statistics).
 * Variances must be >= 0 and all values finite. */
int stylize_set_stats(stylize_ctx *ctx, const float *src, size_t n);

/* Compute the statistics of a frame without stylizing it (pass 1 of
 * two-pass processing); dst as for stylize_get_stats. With mode=auto they
 * are those of the mode auto picks for the frame (full or exact: the
 * frame's own statistics, so that pass 2, which imposes them and runs as
 * tin tiles, gives full's picture; tin: the thumbnail's); with any other
 * mode the thumbnail's. Smoothing state is not touched. */
int stylize_compute_stats(stylize_ctx *ctx, const stylize_frame *in, float *dst, size_t n);

/* Forget the smoothing history: the next frame uses its own statistics. */
void stylize_reset_smoothing(stylize_ctx *ctx);

/* ---- Two-pass statistics files ---------------------------------------
 *
 * Pass 1 computes every frame's thumbnail statistics (stylize_compute_stats)
 * and appends them, keyed by the frame's timestamp, to a file; pass 2 looks
 * up each frame's record, optionally averaged over a centred window of
 * neighbours that stops at scene cuts, and imposes it (stylize_set_stats).
 * The FFmpeg filter's stats_mode=write/read, the batch tool and the player
 * share this file format (docs/BATCH.md).
 *
 * File layout (little-endian), version 1. A 64-byte header:
 *   0  "STYSTATS"          8  u32 version (1)      12 u32 header size (64)
 *   16 u32 floats/frame    20 u32 norm layers      24 u64 model hash (FNV-1a of the model file)
 *   32 i32 time base num   36 i32 time base den    40 u64 frames (0 until the writer is closed)
 *   48 u32 thumb           52 u32 first layer C    56 8 bytes zero
 * then one record per frame in the order written: i64 pts, float stats[floats/frame].
 * The frame count is written last, so the file of a pass 1 that was killed is
 * refused instead of half used.
 *
 * Failing calls return a negative stylize_status and, when err is non-NULL,
 * write a one-line message naming the file to err (truncated to err_size).
 * A writer or reader is used by one thread at a time. */

typedef struct stylize_stats_writer stylize_stats_writer;
typedef struct stylize_stats_reader stylize_stats_reader;

/* Create (truncate) the file at path for the statistics of ctx's current
 * model. Timestamps passed to append are in units of tb_num/tb_den seconds
 * (both > 0). On success *out is a new writer; on failure *out is NULL.
 * Status: INVALID_ARG (bad argument), IO (cannot create or write the file,
 * cannot read the model file for its hash), NOMEM. */
int stylize_stats_writer_open(const stylize_ctx *ctx, const char *path, int tb_num, int tb_den,
                              stylize_stats_writer **out, char *err, size_t err_size);

/* Append one frame's statistics: src[0..n) as from stylize_compute_stats,
 * n == stylize_stats_size() of the model the writer was opened for.
 * Frames may come in any order; two with the same pts make the file
 * unreadable. Status: INVALID_ARG (n mismatch, NULL), IO. */
int stylize_stats_writer_append(stylize_stats_writer *w, int64_t pts, const float *src, size_t n,
                                char *err, size_t err_size);

/* Mark the file complete (write the frame count) and close it. The writer is
 * freed whatever happens; NULL is a no-op returning STYLIZE_OK. Status: IO
 * when the file could not be finished (it then stays incomplete). */
int stylize_stats_writer_close(stylize_stats_writer *w, char *err, size_t err_size);

/* Open, validate and index a complete statistics file. Only a pts index is
 * held in memory (16 bytes a frame); records are read as lookups need them.
 * ctx: the model the statistics are for: the file must have been written for
 * the same weights (floats per frame, layers, first-layer channels, hash of
 * the model file); NULL skips this check (tools that only inspect a file).
 * scene_cut > 0 scans the first layer's records once to mark scene cuts for
 * windowed lookups: a cut precedes a frame whose first-layer means moved by
 * more than scene_cut standard deviations (mean over channels) from its
 * predecessor in pts order; 0 marks none (and skips the scan).
 * Status: IO (cannot open or read), MODEL (not a statistics file, another
 * version, truncated, incomplete, damaged header, duplicate pts),
 * INVALID_ARG (written for another model, bad argument), NOMEM. */
int stylize_stats_reader_open(const stylize_ctx *ctx, const char *path, float scene_cut,
                              stylize_stats_reader **out, char *err, size_t err_size);

/* Facts about an open file. */
typedef struct stylize_stats_info {
    int64_t frames;          /* records in the file, >= 1 */
    size_t floats;           /* floats per record (= stylize_stats_size of its model) */
    int norm_layers;         /* instance-norm layers of its model */
    int tb_num, tb_den;      /* time base of the stored pts */
    int64_t first_pts, last_pts; /* smallest and largest stored pts */
    int thumb;               /* the thumb option pass 1 ran with (0 = auto) */
    int64_t scene_cuts;      /* cuts marked at open (0 when scene_cut was 0) */
} stylize_stats_info;

void stylize_stats_reader_info(const stylize_stats_reader *r, stylize_stats_info *info);

/* The i-th stored pts in ascending order, 0 <= i < frames (time base of
 * the file). Returns STYLIZE_ERR_INVALID_ARG for i out of range. */
int stylize_stats_reader_pts(const stylize_stats_reader *r, int64_t i, int64_t *pts);

/* The statistics of the frame at pts (in units of tb_num/tb_den seconds,
 * rescaled to the file's time base, rounding to nearest): its own record
 * when window is 0, else the average of the records from up to `window`
 * frames before it to up to `window` after it in pts order, stopping short of
 * scene cuts. Written to dst[0..n), n == info.floats; pass them to
 * stylize_set_stats. Status: INVALID_ARG (no record has this pts — pass 1
 * must see the same timestamps —, window < 0, n mismatch), IO. */
int stylize_stats_reader_lookup(stylize_stats_reader *r, int64_t pts, int tb_num, int tb_den, int window,
                                float *dst, size_t n, char *err, size_t err_size);

/* Close the file and free the reader. NULL is a no-op. */
void stylize_stats_reader_close(stylize_stats_reader *r);

#ifdef __cplusplus
}
#endif

#endif /* STYLIZE_H */
