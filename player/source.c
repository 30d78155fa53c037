/* stylize-player: the input. Demuxes and decodes with the project's FFmpeg
 * libraries (files, stills, V4L2 webcams, lavfi sources), converts each
 * frame to packed RGB24 at the preview size with swscale, and hands it to
 * the stylizer through a one-slot mailbox. Runs in its own thread. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libavcodec/avcodec.h>
#include <libavdevice/avdevice.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/pixdesc.h>
#include <libavutil/time.h>
#include <libswscale/swscale.h>

#include "player.h"

struct source {
    source_opts o;
    char url[4096];
    char desc[4200];
    AVFormatContext *fmt;
    AVCodecContext *dec;
    int stream;
    struct SwsContext *sws;
    int width, height;         /* delivered size (first frame's, from the stream parameters) */
    int src_width, src_height;
    int live;                  /* a capture device: not paced, not seekable */
    int v4l2;

    pthread_t thread;
    int started;
    atomic_int stop;
    atomic_int paused;
    pthread_mutex_t lock;      /* with cond: waiting while paused */
    pthread_cond_t cond;
    atomic_int failed;
    char errmsg[4608];

    mailbox *out;
    int64_t frames;            /* frames delivered */
    pframe *last;              /* the last delivered frame (repeated for stills in lockstep) */
    double clock_base;         /* pacing: player_now() - pts of the stream, < 0 = unset */
    double last_pts;
};

static int interrupt_cb(void *opaque)
{
    source *s = opaque;
    return atomic_load(&s->stop);
}

static void scaled_size(int w, int h, int max_size, int *ow, int *oh)
{
    *ow = w;
    *oh = h;
    if (max_size > 0 && (w > max_size || h > max_size)) {
        if (w >= h) {
            *ow = max_size;
            *oh = (int)((double)h * max_size / w + 0.5);
        } else {
            *oh = max_size;
            *ow = (int)((double)w * max_size / h + 0.5);
        }
        if (*ow < 1)
            *ow = 1;
        if (*oh < 1)
            *oh = 1;
    }
}

/* The input formats this FFmpeg build has, comma-separated, for messages. */
static void input_formats(char *buf, size_t size)
{
    const AVInputFormat *f;
    void *it = NULL;
    size_t n = 0;
    buf[0] = 0;
    while ((f = av_demuxer_iterate(&it)) && n + 1 < size) {
        const char *name = f->name, *comma = strchr(name, ',');
        int len = comma ? (int)(comma - name) : (int)strlen(name);
        int w = snprintf(buf + n, size - n, "%s%.*s", n ? ", " : "", len, name);
        if (w < 0 || (size_t)w >= size - n) {
            buf[n] = 0;
            break;
        }
        n += (size_t)w;
    }
}

static int is_camera_path(const char *url)
{
    return strncmp(url, "/dev/video", 10) == 0 || strncmp(url, "/dev/v4l/", 9) == 0;
}

source *source_open(const source_opts *o, char *err, size_t err_size)
{
    source *s = calloc(1, sizeof(*s));
    AVDictionary *opts = NULL;
    const AVInputFormat *ifmt = NULL;
    int ret;

    if (!s) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    s->o = *o;
    snprintf(s->url, sizeof(s->url), "%s", o->url);
    s->o.url = s->url;
    s->stream = -1;
    s->clock_base = -1;
    atomic_init(&s->stop, 0);
    atomic_init(&s->paused, 0);
    atomic_init(&s->failed, 0);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);

    avdevice_register_all();
    if (o->format) {
        ifmt = av_find_input_format(o->format);
        if (!ifmt) {
            char list[1024];
            input_formats(list, sizeof(list));
            snprintf(err, err_size, "unknown input format '%s' (this FFmpeg has: %s)", o->format, list);
            goto fail;
        }
    } else if (is_camera_path(o->url)) {
        ifmt = av_find_input_format("v4l2");
        if (!ifmt) {
            snprintf(err, err_size, "'%s' looks like a webcam but this FFmpeg has no v4l2 input", o->url);
            goto fail;
        }
    }
    s->v4l2 = ifmt && strstr(ifmt->name, "v4l2") != NULL;
    s->live = s->v4l2;

    if (o->video_size)
        av_dict_set(&opts, "video_size", o->video_size, 0);
    if (o->framerate)
        av_dict_set(&opts, "framerate", o->framerate, 0);

    if (!(s->fmt = avformat_alloc_context())) {
        snprintf(err, err_size, "out of memory");
        goto fail;
    }
    s->fmt->interrupt_callback.callback = interrupt_cb;
    s->fmt->interrupt_callback.opaque = s;
    if (s->v4l2)
        s->fmt->flags |= AVFMT_FLAG_NONBLOCK; /* reads return EAGAIN: the thread can stop */
    ret = avformat_open_input(&s->fmt, o->url, ifmt, &opts);
    if (ret < 0) {
        char e[AV_ERROR_MAX_STRING_SIZE];
        av_strerror(ret, e, sizeof(e));
        if (s->v4l2)
            snprintf(err, err_size, "cannot open camera '%s': %s%s", o->url, e,
                     ret == AVERROR(ENOENT) || ret == AVERROR(ENODEV) ? " (is a webcam connected?)" :
                     ret == AVERROR(EBUSY) ? " (is another program using it?)" :
                     ret == AVERROR(EINVAL) ? " (unsupported --video-size/--framerate?)" : "");
        else if (ifmt && !strcmp(ifmt->name, "lavfi"))
            snprintf(err, err_size, "cannot open lavfi source '%s': %s", o->url, e);
        else
            snprintf(err, err_size, "cannot open input '%s': %s", o->url, e);
        goto fail;
    }
    {
        const AVDictionaryEntry *t = NULL;
        while ((t = av_dict_get(opts, "", t, AV_DICT_IGNORE_SUFFIX)))
            fprintf(stderr, "stylize-player: warning: input format '%s' ignores option %s=%s\n",
                    s->fmt->iformat->name, t->key, t->value);
    }
    av_dict_free(&opts);

    ret = avformat_find_stream_info(s->fmt, NULL);
    if (ret < 0) {
        char e[AV_ERROR_MAX_STRING_SIZE];
        av_strerror(ret, e, sizeof(e));
        snprintf(err, err_size, "cannot read stream information from '%s': %s", o->url, e);
        goto fail;
    }
    const AVCodec *codec = NULL;
    s->stream = av_find_best_stream(s->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (s->stream == AVERROR_DECODER_NOT_FOUND) {
        int i;
        for (i = 0; i < (int)s->fmt->nb_streams; i++)
            if (s->fmt->streams[i]->codecpar->codec_type == AVMEDIA_TYPE_VIDEO)
                break;
        snprintf(err, err_size, "'%s': no decoder for its video (%s) in this FFmpeg build", o->url,
                 i < (int)s->fmt->nb_streams ? avcodec_get_name(s->fmt->streams[i]->codecpar->codec_id) : "?");
        goto fail;
    }
    if (s->stream < 0) {
        snprintf(err, err_size, "'%s' has no video stream", o->url);
        goto fail;
    }
    AVStream *st = s->fmt->streams[s->stream];
    for (unsigned i = 0; i < s->fmt->nb_streams; i++)
        if ((int)i != s->stream)
            s->fmt->streams[i]->discard = AVDISCARD_ALL;
    if (!(s->dec = avcodec_alloc_context3(codec)) ||
        avcodec_parameters_to_context(s->dec, st->codecpar) < 0) {
        snprintf(err, err_size, "out of memory");
        goto fail;
    }
    /* Slice threads only: frame threads add a frame of latency per thread. */
    s->dec->thread_type = FF_THREAD_SLICE;
    s->dec->thread_count = 0;
    s->dec->pkt_timebase = st->time_base;
    ret = avcodec_open2(s->dec, codec, NULL);
    if (ret < 0) {
        char e[AV_ERROR_MAX_STRING_SIZE];
        av_strerror(ret, e, sizeof(e));
        snprintf(err, err_size, "cannot open the %s decoder for '%s': %s", codec->name, o->url, e);
        goto fail;
    }
    s->src_width = st->codecpar->width;
    s->src_height = st->codecpar->height;
    if (s->src_width <= 0 || s->src_height <= 0) {
        snprintf(err, err_size, "'%s': the video has no frame size", o->url);
        goto fail;
    }
    scaled_size(s->src_width, s->src_height, o->max_size, &s->width, &s->height);
    snprintf(s->desc, sizeof(s->desc), "%s:%s", s->fmt->iformat->name, o->url);
    return s;

fail:
    av_dict_free(&opts);
    source_close(s);
    return NULL;
}

void source_get_size(const source *s, int *w, int *h, int *src_w, int *src_h)
{
    *w = s->width;
    *h = s->height;
    if (src_w)
        *src_w = s->src_width;
    if (src_h)
        *src_h = s->src_height;
}

const char *source_describe(const source *s)
{
    return s->desc;
}

int source_is_live(const source *s)
{
    return s->live;
}

static void set_failed(source *s, const char *fmt, const char *a, int averr)
{
    char e[AV_ERROR_MAX_STRING_SIZE];
    av_strerror(averr, e, sizeof(e));
    snprintf(s->errmsg, sizeof(s->errmsg), fmt, a, e);
    atomic_store(&s->failed, 1);
}

int source_failed(source *s, char *msg, size_t size)
{
    if (!s || !atomic_load(&s->failed))
        return 0;
    snprintf(msg, size, "%s", s->errmsg);
    return 1;
}

/* Sleep until player_now() reaches t, waking early on stop or pause. */
static void sleep_until(source *s, double t)
{
    for (;;) {
        double d = t - player_now();
        if (d <= 0 || atomic_load(&s->stop) || atomic_load(&s->paused))
            return;
        if (d > 0.02)
            d = 0.02;
        struct timespec ts = {0, (long)(d * 1e9)};
        nanosleep(&ts, NULL);
    }
}

/* Deliver a frame to the stylizer: 0, or -1 when the mailbox is closed. */
static int post(source *s, pframe *f)
{
    pframe_unref(&s->last);
    s->last = pframe_ref(f);
    return mailbox_put(s->out, f);
}

/* Repeat the last frame of a still image as a new frame: in lockstep mode
 * the frames shown keep counting. */
static int repost_last(source *s)
{
    pframe *l = s->last, *f = pframe_alloc(l->width, l->height);
    if (!f)
        return -1;
    for (int y = 0; y < l->height; y++)
        memcpy(f->data + (size_t)y * f->linesize, l->data + (size_t)y * l->linesize, (size_t)l->width * 3);
    f->index = s->frames++;
    f->t_capture = player_now();
    f->src_width = l->src_width;
    f->src_height = l->src_height;
    return post(s, f);
}

static int convert_and_post(source *s, AVFrame *fr)
{
    AVStream *st = s->fmt->streams[s->stream];
    double t = player_now();
    int ow, oh;

    if (s->live && atomic_load(&s->paused) && !s->o.lockstep)
        return 0; /* paused camera: keep draining it, show nothing new */

    /* A V4L2 frame's timestamp is the capture time (wall clock, microseconds):
     * count the time it spent in the driver's queue as latency too. */
    if (s->v4l2 && fr->pts != AV_NOPTS_VALUE) {
        int64_t us = av_rescale_q(fr->pts, st->time_base, AV_TIME_BASE_Q);
        double age = (av_gettime() - us) * 1e-6;
        if (age > 0 && age < 5)
            t -= age;
    }

    scaled_size(fr->width, fr->height, s->o.max_size, &ow, &oh);
    s->sws = sws_getCachedContext(s->sws, fr->width, fr->height, (enum AVPixelFormat)fr->format,
                                  ow, oh, AV_PIX_FMT_RGB24, SWS_BICUBIC, NULL, NULL, NULL);
    if (!s->sws) {
        snprintf(s->errmsg, sizeof(s->errmsg), "cannot convert %dx%d %s frames to RGB", fr->width,
                 fr->height, av_get_pix_fmt_name((enum AVPixelFormat)fr->format));
        atomic_store(&s->failed, 1);
        return -1;
    }
    /* YUV -> RGB with the frame's matrix and range (as FFmpeg's scale filter does). */
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get((enum AVPixelFormat)fr->format);
    if (desc && !(desc->flags & AV_PIX_FMT_FLAG_RGB) && desc->nb_components >= 3) {
        int cs = fr->colorspace == AVCOL_SPC_BT709 ? SWS_CS_ITU709 :
                 fr->colorspace == AVCOL_SPC_BT2020_NCL || fr->colorspace == AVCOL_SPC_BT2020_CL ? SWS_CS_BT2020 :
                 SWS_CS_DEFAULT;
        int *inv, *tbl, srcr, dstr, bri, con, sat;
        if (sws_getColorspaceDetails(s->sws, &inv, &srcr, &tbl, &dstr, &bri, &con, &sat) >= 0) {
            int full = fr->color_range == AVCOL_RANGE_JPEG || srcr;
            sws_setColorspaceDetails(s->sws, sws_getCoefficients(cs), full, tbl, dstr, bri, con, sat);
        }
    }
    pframe *f = pframe_alloc(ow, oh);
    if (!f) {
        snprintf(s->errmsg, sizeof(s->errmsg), "out of memory");
        atomic_store(&s->failed, 1);
        return -1;
    }
    uint8_t *dst[4] = {f->data};
    int dls[4] = {f->linesize};
    sws_scale(s->sws, (const uint8_t *const *)fr->data, fr->linesize, 0, fr->height, dst, dls);
    f->index = s->frames++;
    f->src_width = fr->width;
    f->src_height = fr->height;

    /* Files and generated sources play at their own pace (live sources and
     * lockstep mode do not wait). */
    if (!s->live && !s->o.lockstep) {
        int64_t ts = fr->best_effort_timestamp;
        double pts = ts != AV_NOPTS_VALUE ? ts * av_q2d(st->time_base) : s->last_pts + 1.0 / 25;
        double now = player_now();
        if (s->clock_base < 0 || pts < s->last_pts || s->clock_base + pts > now + 5)
            s->clock_base = now - pts; /* start, seek, loop or a timestamp jump */
        s->last_pts = pts;
        sleep_until(s, s->clock_base + pts);
        t = player_now();
    }
    f->t_capture = t;
    return post(s, f);
}

/* Decode what the decoder has: 0, 1 = stop, -1 = error. */
static int drain_decoder(source *s, AVFrame *fr)
{
    for (;;) {
        int ret = avcodec_receive_frame(s->dec, fr);
        if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF)
            return 0;
        if (ret < 0) {
            char e[AV_ERROR_MAX_STRING_SIZE];
            av_strerror(ret, e, sizeof(e));
            fprintf(stderr, "stylize-player: warning: decoding '%s': %s\n", s->url, e);
            return 0;
        }
        ret = convert_and_post(s, fr);
        av_frame_unref(fr);
        if (ret < 0)
            return atomic_load(&s->failed) ? -1 : 1;
        if (atomic_load(&s->stop))
            return 1;
    }
}

static void wait_while_paused(source *s)
{
    pthread_mutex_lock(&s->lock);
    while (atomic_load(&s->paused) && !atomic_load(&s->stop))
        pthread_cond_wait(&s->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
    s->clock_base = -1; /* resume: restart the pacing clock */
}

static void *source_thread(void *arg)
{
    source *s = arg;
    AVPacket *pkt = av_packet_alloc();
    AVFrame *fr = av_frame_alloc();
    int eof = 0, still = 0;

    if (!pkt || !fr) {
        snprintf(s->errmsg, sizeof(s->errmsg), "out of memory");
        atomic_store(&s->failed, 1);
        goto done;
    }
    while (!atomic_load(&s->stop)) {
        if (atomic_load(&s->paused) && (s->o.lockstep || !s->live)) {
            wait_while_paused(s); /* (lockstep: the stylizer repeats the held frame) */
            continue;
        }
        if (eof) {
            /* A still image: lockstep mode shows it again for every frame;
             * otherwise the stylizer keeps it (re-stylized on changes). */
            if (s->o.lockstep && still && s->last) {
                if (repost_last(s) < 0)
                    break;
                continue;
            }
            break;
        }
        int ret = av_read_frame(s->fmt, pkt);
        if (ret == AVERROR(EAGAIN)) {
            struct timespec ts = {0, 2000000};
            nanosleep(&ts, NULL);
            continue;
        }
        if (ret < 0 && ret != AVERROR_EOF && !atomic_load(&s->stop) && !s->live && s->frames > 0) {
            char e[AV_ERROR_MAX_STRING_SIZE];
            av_strerror(ret, e, sizeof(e));
            fprintf(stderr, "stylize-player: warning: reading '%s': %s: treating it as the end\n", s->url, e);
            ret = AVERROR_EOF;
        }
        if (ret == AVERROR_EOF) {
            avcodec_send_packet(s->dec, NULL);
            if (drain_decoder(s, fr))
                break;
            if (s->frames == 0) {
                snprintf(s->errmsg, sizeof(s->errmsg), "no frame could be decoded from '%s'", s->url);
                atomic_store(&s->failed, 1);
                break;
            }
            if (s->o.loop && s->frames > 1 && !s->live) {
                int64_t start = s->fmt->start_time != AV_NOPTS_VALUE ? s->fmt->start_time : 0;
                if (avformat_seek_file(s->fmt, -1, INT64_MIN, start, start, 0) >= 0) {
                    avcodec_flush_buffers(s->dec);
                    s->clock_base = -1;
                    s->last_pts = 0;
                    continue;
                }
                fprintf(stderr, "stylize-player: warning: '%s' cannot seek: not looping\n", s->url);
            }
            eof = 1;
            still = s->frames == 1;
            continue;
        }
        if (ret < 0) {
            if (!atomic_load(&s->stop))
                set_failed(s, s->live ? "camera '%s' stopped: %s (unplugged?)" : "cannot read '%s': %s",
                           s->url, ret);
            break;
        }
        if (pkt->stream_index == s->stream) {
            ret = avcodec_send_packet(s->dec, pkt);
            if (ret < 0 && ret != AVERROR(EAGAIN)) {
                char e[AV_ERROR_MAX_STRING_SIZE];
                av_strerror(ret, e, sizeof(e));
                fprintf(stderr, "stylize-player: warning: decoding '%s': %s\n", s->url, e);
            }
            av_packet_unref(pkt);
            if (drain_decoder(s, fr))
                break;
        } else {
            av_packet_unref(pkt);
        }
    }
done:
    mailbox_set_eof(s->out);
    av_packet_free(&pkt);
    av_frame_free(&fr);
    return NULL;
}

int source_start(source *s, mailbox *out)
{
    s->out = out;
    if (pthread_create(&s->thread, NULL, source_thread, s))
        return -1;
    s->started = 1;
    return 0;
}

void source_set_paused(source *s, int paused)
{
    pthread_mutex_lock(&s->lock);
    atomic_store(&s->paused, paused);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

void source_close(source *s)
{
    if (!s)
        return;
    if (s->started) {
        pthread_mutex_lock(&s->lock);
        atomic_store(&s->stop, 1);
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        /* The caller closed the mailbox, so a blocked put returns. */
        pthread_join(s->thread, NULL);
    }
    pframe_unref(&s->last);
    sws_freeContext(s->sws);
    avcodec_free_context(&s->dec);
    avformat_close_input(&s->fmt);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
