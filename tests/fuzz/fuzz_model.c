/* libFuzzer target for the model loader: every input is written to an
 * in-memory file and loaded through the public API (stylize_create), as the
 * filter loads a stranger's model. When the loader accepts it, a 4x4 frame
 * goes through the network too, so that the layer list, the receptive-field
 * radius and the backend set up from the loaded shapes are exercised.
 *
 * Invariants checked beyond ASan/UBSan/leaks: a refused file always comes
 * with a message, and an accepted one processes a frame.
 *
 *   make fuzz FUZZ_SECONDS=1800     (mk/fuzz.mk; corpus in build/fuzz/corpus)
 *   build/fuzz/fuzz_model FILE...   replay inputs (tests/fuzz/regressions)
 *
 * STYLIZE_FUZZ_BACKEND=dnnl selects the oneDNN backend (slower per input);
 * the default is the portable reference backend on one thread. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create */
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "stylize.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fd = -1;
static char path[64];
static stylize_backend backend = STYLIZE_BACKEND_REF;

static void setup(void)
{
    /* A memfd reached through /proc keeps each input off the disk and
     * still goes through the loader's real fopen/fstat/fread path. */
    fd = memfd_create("fuzz_model", 0);
    if (fd < 0) {
        perror("memfd_create");
        abort();
    }
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    const char *b = getenv("STYLIZE_FUZZ_BACKEND");
    if (b && stylize_backend_from_name(b, &backend)) {
        fprintf(stderr, "STYLIZE_FUZZ_BACKEND=%s is unknown\n", b);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fd < 0)
        setup();
    if (ftruncate(fd, 0) || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) {
        perror("writing the input");
        abort();
    }

    stylize_options o;
    stylize_options_default(&o);
    o.threads = 1;
    o.backend = backend;
    o.thumb = 16;
    o.tile = 0;
    o.max_memory = (size_t)256 << 20; /* a 4x4 frame never needs this much */

    char err[512] = "";
    stylize_ctx *ctx = NULL;
    int r = stylize_create(path, &o, &ctx, err, sizeof(err));
    if (r) {
        if (ctx || !err[0]) {
            fprintf(stderr, "stylize_create failed (%d) with %s\n", r, ctx ? "a context" : "no message");
            abort();
        }
        return 0;
    }

    /* 4x4 rgba: exercises the alpha path as well as the network. */
    uint8_t in[4 * 4 * 4], out[4 * 4 * 4];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (uint8_t)(i * 37 + (size ? data[i % size] : 0));
    stylize_frame fi = {.format = STYLIZE_PIX_RGBA, .width = 4, .height = 4, .data = {in}, .linesize = {16}};
    stylize_frame fo = fi;
    fo.data[0] = out;
    r = stylize_process(ctx, &fi, &fo);
    if (r) {
        fprintf(stderr, "a loaded model failed a 4x4 frame: %s\n", stylize_errmsg(ctx));
        abort();
    }
    for (int i = 0; i < 16; i++)
        if (out[4 * i + 3] != in[4 * i + 3]) {
            fprintf(stderr, "alpha not copied at pixel %d\n", i);
            abort();
        }
    stylize_destroy(ctx);
    return 0;
}
