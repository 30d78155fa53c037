/* Loading a TransformerNet from a safetensors file. The file comes from a
 * stranger: every length, offset, dtype and shape is checked before use, and
 * every rejection names the problem and the tensor. */
#include "model.h"

#include <errno.h>
#include <json.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stylize.h"

#define MAX_HEADER_BYTES (100u << 20) /* the safetensors format's own limit */
#define MAX_FILE_BYTES ((uint64_t)4 << 30)
#define MAX_TENSORS 4096

typedef struct tensor_entry {
    const char *name;
    int dtype_size; /* 2 or 4 */
    char dtype[8];
    int ndim;
    int64_t shape[4];
    uint64_t begin, end;
    int used;
} tensor_entry;

typedef struct loader {
    const char *path;
    char *err;
    size_t err_size;
    FILE *f;
    uint64_t file_size, header_len;
    char *header;
    struct json_object *root;
    tensor_entry *tensors;
    int n_tensors;
    uint8_t *data; /* the data section */
    uint64_t data_len;
    sty_model *m;
    float *next_weight;
    const char *network; /* the compact description (metadata "network"), or NULL */
} loader;

static int fail(loader *ld, int status, const char *fmt, ...)
{
    if (ld->err && ld->err_size) {
        int n = snprintf(ld->err, ld->err_size, "model '%s': ", ld->path);
        if (n >= 0 && (size_t)n < ld->err_size) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(ld->err + n, ld->err_size - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return status;
}

static uint64_t read_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int read_file_parts(loader *ld)
{
    struct stat st;
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
     * writer forever (a hang inside ffmpeg); it is refused just below. */
    int fd = open(ld->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return fail(ld, STYLIZE_ERR_IO, "cannot open: %s", strerror(errno));
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return fail(ld, STYLIZE_ERR_IO, "cannot stat: %s", strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fail(ld, STYLIZE_ERR_IO, "not a regular file");
    }
    ld->f = fdopen(fd, "rb");
    if (!ld->f) {
        int e = errno;
        close(fd);
        return fail(ld, STYLIZE_ERR_IO, "cannot open: %s", strerror(e));
    }
    ld->file_size = (uint64_t)st.st_size;
    if (ld->file_size > MAX_FILE_BYTES)
        return fail(ld, STYLIZE_ERR_MODEL, "file is %llu bytes, more than the 4 GiB a model may have",
                    (unsigned long long)ld->file_size);
    uint8_t len_bytes[8];
    if (ld->file_size < 8 || fread(len_bytes, 1, 8, ld->f) != 8)
        return fail(ld, STYLIZE_ERR_MODEL, "file is %llu bytes, too short for a safetensors header "
                    "(truncated, or not a safetensors file)", (unsigned long long)ld->file_size);
    ld->header_len = read_le64(len_bytes);
    if (ld->header_len > MAX_HEADER_BYTES)
        return fail(ld, STYLIZE_ERR_MODEL, "header length %llu is larger than the 100 MB safetensors "
                    "limit (corrupt file, or not a safetensors file)", (unsigned long long)ld->header_len);
    if (ld->header_len > ld->file_size - 8)
        return fail(ld, STYLIZE_ERR_MODEL, "header length %llu exceeds the file size (%llu bytes): "
                    "truncated or corrupt file", (unsigned long long)ld->header_len,
                    (unsigned long long)ld->file_size);
    if (ld->header_len < 2)
        return fail(ld, STYLIZE_ERR_MODEL, "header length %llu is too small for a JSON header",
                    (unsigned long long)ld->header_len);
    ld->header = malloc(ld->header_len + 1);
    if (!ld->header)
        return fail(ld, STYLIZE_ERR_NOMEM, "out of memory reading the header");
    if (fread(ld->header, 1, ld->header_len, ld->f) != ld->header_len)
        return fail(ld, STYLIZE_ERR_IO, "short read in the header");
    ld->header[ld->header_len] = 0;
    ld->data_len = ld->file_size - 8 - ld->header_len;
    return 0;
}

static int parse_header(loader *ld)
{
    if (memchr(ld->header, 0, ld->header_len))
        return fail(ld, STYLIZE_ERR_MODEL, "header contains a NUL byte: not a JSON header");
    struct json_tokener *tok = json_tokener_new_ex(16);
    if (!tok)
        return fail(ld, STYLIZE_ERR_NOMEM, "out of memory parsing the header");
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    ld->root = json_tokener_parse_ex(tok, ld->header, (int)ld->header_len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t parsed = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (jerr != json_tokener_success || !ld->root) {
        if (jerr == json_tokener_success || jerr == json_tokener_continue)
            return fail(ld, STYLIZE_ERR_MODEL, "header is not valid JSON: it ends early");
        return fail(ld, STYLIZE_ERR_MODEL, "header is not valid JSON: %s near byte %zu",
                    json_tokener_error_desc(jerr), parsed);
    }
    /* Only padding spaces may follow the JSON object. */
    for (size_t i = parsed; i < ld->header_len; i++)
        if (ld->header[i] != ' ' && ld->header[i] != '\n' && ld->header[i] != '\t' && ld->header[i] != '\r')
            return fail(ld, STYLIZE_ERR_MODEL, "header has trailing data after the JSON object (byte %zu)", i);
    if (!json_object_is_type(ld->root, json_type_object))
        return fail(ld, STYLIZE_ERR_MODEL, "header is not a JSON object");
    return 0;
}

static int get_u64(struct json_object *v, uint64_t *out)
{
    if (!json_object_is_type(v, json_type_int))
        return -1;
    errno = 0;
    int64_t x = json_object_get_int64(v);
    if (x < 0 || errno)
        return -1;
    *out = (uint64_t)x;
    return 0;
}

static int parse_metadata(loader *ld, struct json_object *meta)
{
    if (!json_object_is_type(meta, json_type_object))
        return fail(ld, STYLIZE_ERR_MODEL, "__metadata__ is not a JSON object");
    json_object_object_foreach(meta, key, val) {
        if (!json_object_is_type(val, json_type_string))
            return fail(ld, STYLIZE_ERR_MODEL, "__metadata__ entry '%s' is not a string", key);
        const char *s = json_object_get_string(val);
        if (!strcmp(key, "format_version") && strcmp(s, "1"))
            return fail(ld, STYLIZE_ERR_MODEL, "format_version '%s' is not supported (this library reads version 1)", s);
        if (!strcmp(key, "architecture")) {
            if (!strcmp(s, "compact"))
                ld->m->arch = STY_ARCH_COMPACT;
            else if (strcmp(s, "transformer_net"))
                return fail(ld, STYLIZE_ERR_MODEL, "architecture '%.64s' is not supported (expected transformer_net "
                            "or compact)", s);
        }
        if (!strcmp(key, "network"))
            ld->network = s; /* owned by the header's JSON tree, which outlives the build */
        char **dst = !strcmp(key, "style") ? &ld->m->style : !strcmp(key, "source") ? &ld->m->source
                   : !strcmp(key, "license") ? &ld->m->license : NULL;
        if (dst) {
            free(*dst);
            if (!(*dst = strdup(s)))
                return fail(ld, STYLIZE_ERR_NOMEM, "out of memory");
        }
    }
    return 0;
}

static int parse_tensor(loader *ld, const char *name, struct json_object *desc, tensor_entry *t)
{
    struct json_object *dtype, *shape, *offsets;
    t->name = name;
    if (!json_object_is_type(desc, json_type_object))
        return fail(ld, STYLIZE_ERR_MODEL, "tensor '%s': description is not a JSON object", name);
    if (!json_object_object_get_ex(desc, "dtype", &dtype) || !json_object_is_type(dtype, json_type_string))
        return fail(ld, STYLIZE_ERR_MODEL, "tensor '%s': missing or invalid dtype", name);
    const char *dt = json_object_get_string(dtype);
    if (!strcmp(dt, "F32"))
        t->dtype_size = 4;
    else if (!strcmp(dt, "F16") || !strcmp(dt, "BF16"))
        t->dtype_size = 2;
    else
        return fail(ld, STYLIZE_ERR_MODEL, "tensor '%s': dtype '%.16s' is not supported (F32, F16 or BF16)", name, dt);
    snprintf(t->dtype, sizeof(t->dtype), "%s", dt);

    if (!json_object_object_get_ex(desc, "shape", &shape) || !json_object_is_type(shape, json_type_array))
        return fail(ld, STYLIZE_ERR_MODEL, "tensor '%s': missing or invalid shape", name);
    size_t nd = json_object_array_length(shape);
    if (nd > 4)
        return fail(ld, STYLIZE_ERR_MODEL, "tensor '%s': %zu dimensions, at most 4 expected", name, nd);
    t->ndim = (int)nd;
    uint64_t numel = 1;
    for (size_t i = 0; i < nd; i++) {
        uint64_t d;
        if (get_u64(json_object_array_get_idx(shape, i), &d) || d > (1u << 24))
            return fail(ld, STYLIZE_ERR_MODEL, "tensor '%s': shape entry %zu is not a sane dimension", name, i);
        t->shape[i] = (int64_t)d;
        numel *= d; /* each factor <= 2^24 and nd <= 4: checked below before overflow matters */
        if (numel > ((uint64_t)1 << 32))
            return fail(ld, STYLIZE_ERR_MODEL, "tensor '%s': too many elements", name);
    }

    if (!json_object_object_get_ex(desc, "data_offsets", &offsets) ||
        !json_object_is_type(offsets, json_type_array) || json_object_array_length(offsets) != 2 ||
        get_u64(json_object_array_get_idx(offsets, 0), &t->begin) ||
        get_u64(json_object_array_get_idx(offsets, 1), &t->end))
        return fail(ld, STYLIZE_ERR_MODEL, "tensor '%s': data_offsets must be two non-negative integers", name);
    if (t->begin > t->end || t->end > ld->data_len)
        return fail(ld, STYLIZE_ERR_MODEL, "tensor '%s': data_offsets [%llu, %llu] lie outside the %llu-byte "
                    "data section (truncated or corrupt file)", name, (unsigned long long)t->begin,
                    (unsigned long long)t->end, (unsigned long long)ld->data_len);
    if (t->end - t->begin != numel * (uint64_t)t->dtype_size)
        return fail(ld, STYLIZE_ERR_MODEL, "tensor '%s': data_offsets span %llu bytes but shape and dtype %s "
                    "need %llu", name, (unsigned long long)(t->end - t->begin), t->dtype,
                    (unsigned long long)(numel * (uint64_t)t->dtype_size));
    return 0;
}

static int cmp_begin(const void *a, const void *b)
{
    const tensor_entry *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

static int parse_tensors(loader *ld)
{
    int n = 0;
    json_object_object_foreach(ld->root, key0, val0) {
        (void)val0;
        if (strcmp(key0, "__metadata__"))
            n++;
    }
    if (n == 0)
        return fail(ld, STYLIZE_ERR_MODEL, "the file holds no tensors");
    if (n > MAX_TENSORS)
        return fail(ld, STYLIZE_ERR_MODEL, "%d tensors: too many for a TransformerNet", n);
    ld->tensors = calloc((size_t)n, sizeof(*ld->tensors));
    if (!ld->tensors)
        return fail(ld, STYLIZE_ERR_NOMEM, "out of memory");
    json_object_object_foreach(ld->root, key, val) {
        int r;
        if (!strcmp(key, "__metadata__"))
            r = parse_metadata(ld, val);
        else
            r = parse_tensor(ld, key, val, &ld->tensors[ld->n_tensors++]);
        if (r)
            return r;
    }
    /* The data section must be covered exactly: no overlaps, no holes. */
    tensor_entry *sorted = malloc((size_t)n * sizeof(*sorted));
    if (!sorted)
        return fail(ld, STYLIZE_ERR_NOMEM, "out of memory");
    memcpy(sorted, ld->tensors, (size_t)n * sizeof(*sorted));
    qsort(sorted, (size_t)n, sizeof(*sorted), cmp_begin);
    uint64_t pos = 0;
    int r = 0;
    for (int i = 0; i < n && !r; i++) {
        if (sorted[i].begin < pos)
            r = fail(ld, STYLIZE_ERR_MODEL, "tensors '%s' and '%s' overlap in the data section",
                     sorted[i - 1].name, sorted[i].name);
        else if (sorted[i].begin > pos)
            r = fail(ld, STYLIZE_ERR_MODEL, "data section has %llu unused bytes before tensor '%s' "
                     "(offsets are not contiguous)", (unsigned long long)(sorted[i].begin - pos), sorted[i].name);
        pos = sorted[i].end;
    }
    if (!r && pos != ld->data_len)
        r = fail(ld, STYLIZE_ERR_MODEL, "data section has %llu bytes after the last tensor",
                 (unsigned long long)(ld->data_len - pos));
    free(sorted);
    return r;
}

static tensor_entry *find_tensor(loader *ld, const char *name)
{
    for (int i = 0; i < ld->n_tensors; i++)
        if (!strcmp(ld->tensors[i].name, name))
            return &ld->tensors[i];
    return NULL;
}

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, mant = h & 1023, bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: renormalize */
            exp = 127 - 15 + 1;
            while (!(mant & 1024)) {
                mant <<= 1;
                exp--;
            }
            bits = sign | exp << 23 | (mant & 1023) << 13;
        }
    } else if (exp == 31) {
        bits = sign | 0xff << 23 | mant << 13;
    } else {
        bits = sign | (exp + 127 - 15) << 23 | mant << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Convert a tensor to fp32 into the model's weight block; check its shape. */
static int take_tensor(loader *ld, const char *name, int ndim, const int64_t *shape, const float **out)
{
    tensor_entry *t = find_tensor(ld, name);
    if (!t)
        return fail(ld, STYLIZE_ERR_MODEL, "tensor '%s' is missing: not a %s model", name,
                    ld->m->arch == STY_ARCH_COMPACT ? "valid compact" : "TransformerNet");
    if (t->used)
        return fail(ld, STYLIZE_ERR_MODEL, "tensor '%s' is used by two layers (each layer needs its own)", name);
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = t->shape[i] == shape[i];
    if (!ok) {
        char got[96] = "[", want[96] = "[";
        for (int i = 0; i < t->ndim; i++)
            snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%lld", i ? "," : "", (long long)t->shape[i]);
        for (int i = 0; i < ndim; i++)
            snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s%lld", i ? "," : "", (long long)shape[i]);
        return fail(ld, STYLIZE_ERR_MODEL, "tensor '%s' has shape %s], expected %s] (inconsistent with the "
                    "layers before it)", name, got, want);
    }
    size_t numel = (size_t)((t->end - t->begin) / (uint64_t)t->dtype_size);
    const uint8_t *src = ld->data + t->begin;
    float *dst = ld->next_weight;
    for (size_t i = 0; i < numel; i++) {
        float v;
        if (t->dtype_size == 4) {
            memcpy(&v, src + 4 * i, 4);
        } else {
            uint16_t h = (uint16_t)(src[2 * i] | src[2 * i + 1] << 8);
            if (t->dtype[0] == 'B') {
                uint32_t bits = (uint32_t)h << 16;
                memcpy(&v, &bits, 4);
            } else {
                v = half_to_float(h);
            }
        }
        if (!isfinite(v))
            return fail(ld, STYLIZE_ERR_MODEL, "tensor '%s' contains a non-finite value (NaN or Inf) at "
                        "element %zu", name, i);
        dst[i] = v;
    }
    t->used = 1;
    ld->next_weight += numel;
    *out = dst;
    return 0;
}

/* Read a conv's weight shape [cout, cin, k, k] without taking it. */
static int peek_conv(loader *ld, const char *prefix, int64_t dims[4])
{
    char name[64];
    snprintf(name, sizeof(name), "%s.conv.weight", prefix);
    tensor_entry *t = find_tensor(ld, name);
    if (!t)
        return fail(ld, STYLIZE_ERR_MODEL, "tensor '%s' is missing: not a TransformerNet model", name);
    if (t->ndim != 4 || t->shape[2] != t->shape[3] || t->shape[2] % 2 == 0 || t->shape[2] > STY_MAX_KERNEL)
        return fail(ld, STYLIZE_ERR_MODEL, "tensor '%s' must have shape [out, in, k, k] with an odd k <= %d",
                    name, STY_MAX_KERNEL);
    for (int i = 0; i < 2; i++)
        if (t->shape[i] < 1 || t->shape[i] > STY_MAX_WIDTH)
            return fail(ld, STYLIZE_ERR_MODEL, "tensor '%s': %lld channels is outside 1..%d", name,
                        (long long)t->shape[i], STY_MAX_WIDTH);
    memcpy(dims, t->shape, sizeof(int64_t) * 4);
    return 0;
}

static int add_conv(loader *ld, const char *prefix, int cin, int cout, int k, int stride, int upsample)
{
    sty_model *m = ld->m;
    sty_conv *c = &m->convs[m->n_convs];
    char name[64];
    int64_t wshape[4] = {cout, cin, k, k}, bshape[1] = {cout};
    int r;
    snprintf(name, sizeof(name), "%s.conv.weight", prefix);
    if ((r = take_tensor(ld, name, 4, wshape, &c->weight)))
        return r;
    snprintf(name, sizeof(name), "%s.conv.bias", prefix);
    if ((r = take_tensor(ld, name, 1, bshape, &c->bias)))
        return r;
    c->cin = cin;
    c->cout = cout;
    c->k = k;
    c->groups = 1;
    c->stride = stride;
    c->upsample = upsample;
    return m->n_convs++;
}

static int add_norm(loader *ld, const char *prefix, int c)
{
    sty_model *m = ld->m;
    sty_norm *n = &m->norms[m->n_norms];
    char name[128];
    int64_t shape[1] = {c};
    int r;
    snprintf(name, sizeof(name), "%s.weight", prefix);
    if ((r = take_tensor(ld, name, 1, shape, &n->gamma)))
        return r;
    snprintf(name, sizeof(name), "%s.bias", prefix);
    if ((r = take_tensor(ld, name, 1, shape, &n->beta)))
        return r;
    n->c = c;
    n->stats_offset = m->stats_size;
    m->stats_size += 2 * (size_t)c;
    return m->n_norms++;
}

static int add_layer(loader *ld, int conv, int norm, int relu, int save_skip, int add_skip)
{
    if (conv < 0)
        return conv;
    if (norm < 0 && norm != -100)
        return norm;
    sty_layer *l = &ld->m->layers[ld->m->n_layers++];
    l->conv = conv;
    l->norm = norm == -100 ? -1 : norm;
    l->relu = relu;
    l->save_skip = save_skip;
    l->add_skip = add_skip;
    return 0;
}

static int count_res_blocks(loader *ld)
{
    int n = 0;
    for (;;) {
        char name[64];
        snprintf(name, sizeof(name), "res%d.conv1.conv.weight", n + 1);
        if (!find_tensor(ld, name))
            return n;
        if (++n > STY_MAX_RES_BLOCKS)
            return n;
    }
}

int sty_conv_out_size(const sty_conv *c, int n)
{
    if (c->upsample)
        n *= 2;
    return (n + 2 * (c->k / 2) - c->k) / c->stride + 1;
}

int sty_model_in_size(const sty_model *m, int n)
{
    const int t = m->total_stride;
    if (m->arch == STY_ARCH_CLASSIC)
        return n;
    return (n + t - 1) / t * t / m->space_to_depth;
}

static long floor_div(long a, long b)
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/* Receptive-field radius: follow the dependency interval of one output pixel
 * back through every layer and the depth-to-space / space-to-depth
 * rearrangements, for every output phase modulo the total stride (strides,
 * upsampling and the rearrangements make it depend on the phase). */
static int receptive_radius(const sty_model *m)
{
    const long base = 1L << 20; /* a multiple of every total stride */
    int radius = 0;
    for (int phase = 0; phase < 2 * m->total_stride; phase++) {
        const long pos = base + phase;
        long lo = floor_div(pos, m->pixel_shuffle), hi = lo;
        for (int i = m->n_layers - 1; i >= 0; i--) {
            const sty_conv *c = &m->convs[m->layers[i].conv];
            int p = c->k / 2;
            lo = lo * c->stride - p;
            hi = hi * c->stride - p + c->k - 1;
            if (c->upsample) { /* upsampled index u reads source floor(u/2) */
                lo = floor_div(lo, 2);
                hi = floor_div(hi, 2);
            }
        }
        lo *= m->space_to_depth;
        hi = hi * m->space_to_depth + m->space_to_depth - 1;
        if (pos - lo > radius)
            radius = (int)(pos - lo);
        if (hi - pos > radius)
            radius = (int)(hi - pos);
    }
    return radius;
}

/* The same for the output of layer n_layers - 1 (exact mode's passes stop
 * there). Classic networks only: exact mode refuses compact ones. */
int sty_receptive_radius_upto(const sty_model *m, int n_layers)
{
    int num, den;
    sty_layer_scale(m, n_layers - 1, &num, &den);
    int radius = 0;
    for (int phase = 0; phase < 8 * den; phase++) {
        long lo = 1024 * den + phase, hi = lo;
        const long pos = lo * den / num; /* the output's position in input pixels */
        for (int i = n_layers - 1; i >= 0; i--) {
            const sty_conv *c = &m->convs[m->layers[i].conv];
            int p = c->k / 2;
            lo = lo * c->stride - p;
            hi = hi * c->stride - p + c->k - 1;
            if (c->upsample) {
                lo = floor_div(lo, 2);
                hi = floor_div(hi, 2);
            }
        }
        if (pos - lo > radius)
            radius = (int)(pos - lo);
        if (hi - pos > radius)
            radius = (int)(hi - pos);
    }
    return radius;
}

void sty_layer_scale(const sty_model *m, int layer, int *num, int *den)
{
    int n = 1, d = 1;
    for (int i = 0; i <= layer && i < m->n_layers; i++) {
        const sty_conv *c = &m->convs[m->layers[i].conv];
        n *= c->upsample ? 2 : 1;
        d *= c->stride;
        while (n % 2 == 0 && d % 2 == 0) {
            n /= 2;
            d /= 2;
        }
    }
    *num = n;
    *den = d;
}

/* Multiply-adds per input pixel (layer resolutions relative to the input). */
static double macs_per_pixel(const sty_model *m)
{
    double scale = 1.0 / m->space_to_depth, total = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const sty_conv *c = &m->convs[m->layers[i].conv];
        if (c->upsample)
            scale *= 2;
        if (c->stride == 2)
            scale /= 2;
        total += (double)c->cout * (c->cin / c->groups) * c->k * c->k * scale * scale;
    }
    return total;
}

/* Floats per input pixel of the largest pair of tensors a layer reads and
 * writes (an upsampling conv reads its upsampled input): what a tile's
 * working memory grows with. 96 for the classic network (its last
 * upsampling conv: 64 channels in, 32 out, at full resolution). */
static double pair_floats_per_pixel(const sty_model *m)
{
    double scale = 1.0 / m->space_to_depth, most = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const sty_conv *c = &m->convs[m->layers[i].conv];
        if (c->upsample)
            scale *= 2;
        const double in = c->cin * scale * scale;
        if (c->stride == 2)
            scale /= 2;
        const double pair = in + c->cout * scale * scale;
        most = pair > most ? pair : most;
    }
    return most;
}

/* The automatic tile side: the tile a classic network gets (768) scaled so
 * that the model's largest pair of tensors on it holds as many floats as
 * the classic network's on a 768-pixel tile. A small network thus runs a
 * 720p frame in one tile (tin = full there) with no more memory than a
 * classic tile; a multiple of the total stride, at least 256. */
static int tile_auto(const sty_model *m)
{
    const double classic_floats = 96.0 * 768 * 768, per_px = pair_floats_per_pixel(m);
    double side = per_px > 0 ? sqrt(classic_floats / per_px) : 65536;
    side = side < 256 ? 256 : side > 65536 ? 65536 : side;
    const int a = m->total_stride > 0 ? m->total_stride : 1;
    return (int)side / a * a;
}

static int alloc_network(loader *ld, int nconv)
{
    sty_model *m = ld->m;
    m->convs = calloc((size_t)nconv, sizeof(*m->convs));
    m->norms = calloc((size_t)nconv, sizeof(*m->norms));
    m->layers = calloc((size_t)nconv, sizeof(*m->layers));
    size_t total = 0;
    for (int i = 0; i < ld->n_tensors; i++)
        total += (size_t)((ld->tensors[i].end - ld->tensors[i].begin) / (uint64_t)ld->tensors[i].dtype_size);
    m->weights = malloc((total ? total : 1) * sizeof(float));
    if (!m->convs || !m->norms || !m->layers || !m->weights)
        return fail(ld, STYLIZE_ERR_NOMEM, "out of memory for the weights");
    ld->next_weight = m->weights;
    return 0;
}

static int build_network(loader *ld)
{
    sty_model *m = ld->m;
    int64_t d[4];
    int r;
    if ((r = peek_conv(ld, "conv1", d)))
        return r;
    m->c1 = (int)d[0];
    m->k_in = (int)d[2];
    if ((r = peek_conv(ld, "conv2", d)))
        return r;
    m->c2 = (int)d[0];
    if ((r = peek_conv(ld, "conv3", d)))
        return r;
    m->c3 = (int)d[0];
    if ((r = peek_conv(ld, "deconv1", d)))
        return r;
    m->c2d = (int)d[0];
    if ((r = peek_conv(ld, "deconv2", d)))
        return r;
    m->c1d = (int)d[0];
    if ((r = peek_conv(ld, "deconv3", d)))
        return r;
    m->k_out = (int)d[2];
    m->res_blocks = count_res_blocks(ld);
    if (m->res_blocks > STY_MAX_RES_BLOCKS)
        return fail(ld, STYLIZE_ERR_MODEL, "more than %d residual blocks", STY_MAX_RES_BLOCKS);

    if ((r = alloc_network(ld, 6 + 2 * m->res_blocks)))
        return r;
    m->space_to_depth = m->pixel_shuffle = 1;
    m->total_stride = 4;

    /* Shapes are checked layer by layer against the widths before them. */
    if ((r = add_layer(ld, add_conv(ld, "conv1", 3, m->c1, m->k_in, 1, 0), add_norm(ld, "in1", m->c1), 1, 0, 0)))
        return r;
    if ((r = add_layer(ld, add_conv(ld, "conv2", m->c1, m->c2, 3, 2, 0), add_norm(ld, "in2", m->c2), 1, 0, 0)))
        return r;
    if ((r = add_layer(ld, add_conv(ld, "conv3", m->c2, m->c3, 3, 2, 0), add_norm(ld, "in3", m->c3), 1, 0, 0)))
        return r;
    for (int b = 1; b <= m->res_blocks; b++) {
        char cp[32], np[32];
        snprintf(cp, sizeof(cp), "res%d.conv1", b);
        snprintf(np, sizeof(np), "res%d.in1", b);
        if ((r = add_layer(ld, add_conv(ld, cp, m->c3, m->c3, 3, 1, 0), add_norm(ld, np, m->c3), 1, 1, 0)))
            return r;
        snprintf(cp, sizeof(cp), "res%d.conv2", b);
        snprintf(np, sizeof(np), "res%d.in2", b);
        if ((r = add_layer(ld, add_conv(ld, cp, m->c3, m->c3, 3, 1, 0), add_norm(ld, np, m->c3), 0, 0, 1)))
            return r;
    }
    if ((r = add_layer(ld, add_conv(ld, "deconv1", m->c3, m->c2d, 3, 1, 1), add_norm(ld, "in4", m->c2d), 1, 0, 0)))
        return r;
    if ((r = add_layer(ld, add_conv(ld, "deconv2", m->c2d, m->c1d, 3, 1, 1), add_norm(ld, "in5", m->c1d), 1, 0, 0)))
        return r;
    if ((r = add_layer(ld, add_conv(ld, "deconv3", m->c1d, 3, m->k_out, 1, 0), -100, 0, 0, 0)))
        return r;

    /* Everything in the file must have been used, except the running
     * statistics that old PyTorch checkpoints carry (instance norm ignores them). */
    for (int i = 0; i < ld->n_tensors; i++) {
        const char *n = ld->tensors[i].name;
        const char *dot = strrchr(n, '.');
        if (ld->tensors[i].used)
            continue;
        if (dot && (!strcmp(dot, ".running_mean") || !strcmp(dot, ".running_var") ||
                    !strcmp(dot, ".num_batches_tracked")))
            continue;
        return fail(ld, STYLIZE_ERR_MODEL, "unexpected tensor '%s': not part of a TransformerNet with %d "
                    "residual blocks", n, m->res_blocks);
    }
    m->parameters = (size_t)(ld->next_weight - m->weights);
    m->receptive_radius = receptive_radius(m);
    m->macs_per_pixel = macs_per_pixel(m);
    m->tile_auto = tile_auto(m);
    return 0;
}

/* ------------------------------------------------ compact networks */

#define MAX_TOTAL_STRIDE 64
#define MAX_NAME 100

static int json_int_in(struct json_object *v, int lo, int hi, int *out)
{
    if (!json_object_is_type(v, json_type_int))
        return -1;
    errno = 0;
    int64_t x = json_object_get_int64(v);
    if (errno || x < lo || x > hi)
        return -1;
    *out = (int)x;
    return 0;
}

static int is_power_124(int v)
{
    return v == 1 || v == 2 || v == 4;
}

/* One layer entry of the description: fill l (conv name and flags). */
typedef struct layer_desc {
    const char *conv, *norm;
    int stride, upsample, groups, relu, save_skip, add_skip;
} layer_desc;

static int parse_layer_desc(loader *ld, int i, struct json_object *o, layer_desc *d)
{
    memset(d, 0, sizeof(*d));
    d->stride = d->upsample = d->groups = 1;
    if (!json_object_is_type(o, json_type_object))
        return fail(ld, STYLIZE_ERR_MODEL, "network layer %d is not a JSON object", i);
    json_object_object_foreach(o, key, v) {
        int *flag = !strcmp(key, "relu") ? &d->relu : !strcmp(key, "save_skip") ? &d->save_skip
                  : !strcmp(key, "add_skip") ? &d->add_skip : NULL;
        if (!strcmp(key, "conv") || !strcmp(key, "norm")) {
            if (!strcmp(key, "norm") && json_object_is_type(v, json_type_null))
                continue;
            if (!json_object_is_type(v, json_type_string) || json_object_get_string_len(v) < 1 ||
                json_object_get_string_len(v) > MAX_NAME)
                return fail(ld, STYLIZE_ERR_MODEL, "network layer %d: '%s' must be a tensor name prefix of 1 to %d "
                            "characters%s", i, key, MAX_NAME, !strcmp(key, "norm") ? " (or null)" : "");
            *(!strcmp(key, "conv") ? &d->conv : &d->norm) = json_object_get_string(v);
        } else if (!strcmp(key, "stride") || !strcmp(key, "upsample")) {
            if (json_int_in(v, 1, 2, !strcmp(key, "stride") ? &d->stride : &d->upsample))
                return fail(ld, STYLIZE_ERR_MODEL, "network layer %d: '%s' must be 1 or 2", i, key);
        } else if (!strcmp(key, "groups")) {
            if (json_int_in(v, 1, STY_MAX_WIDTH, &d->groups))
                return fail(ld, STYLIZE_ERR_MODEL, "network layer %d: 'groups' must be an integer in 1..%d", i,
                            STY_MAX_WIDTH);
        } else if (flag) {
            if (!json_object_is_type(v, json_type_boolean))
                return fail(ld, STYLIZE_ERR_MODEL, "network layer %d: '%s' must be true or false", i, key);
            *flag = json_object_get_boolean(v);
        } else {
            return fail(ld, STYLIZE_ERR_MODEL, "network layer %d: unknown key '%.40s' (a newer format?)", i, key);
        }
    }
    if (!d->conv)
        return fail(ld, STYLIZE_ERR_MODEL, "network layer %d has no 'conv' (its tensor name prefix)", i);
    return 0;
}

/* Check layer i's weight against the channels it receives; take its tensors. */
static int add_compact_layer(loader *ld, int i, const layer_desc *d, int cin)
{
    sty_model *m = ld->m;
    char name[MAX_NAME + 16];
    snprintf(name, sizeof(name), "%s.weight", d->conv);
    tensor_entry *t = find_tensor(ld, name);
    if (!t)
        return fail(ld, STYLIZE_ERR_MODEL, "network layer %d: tensor '%s' is missing", i, name);
    if (t->ndim != 4 || t->shape[2] != t->shape[3] || t->shape[2] % 2 == 0 || t->shape[2] > STY_MAX_KERNEL)
        return fail(ld, STYLIZE_ERR_MODEL, "network layer %d: tensor '%s' must have shape [out, in/groups, k, k] "
                    "with an odd k <= %d", i, name, STY_MAX_KERNEL);
    const int cout = (int)t->shape[0], k = (int)t->shape[2], g = d->groups;
    if (cout < 1 || cout > STY_MAX_WIDTH)
        return fail(ld, STYLIZE_ERR_MODEL, "network layer %d: tensor '%s': %d output channels is outside 1..%d", i,
                    name, cout, STY_MAX_WIDTH);
    if (cin % g || cout % g)
        return fail(ld, STYLIZE_ERR_MODEL, "network layer %d ('%s'): groups %d does not divide its %d input and %d "
                    "output channels", i, d->conv, g, cin, cout);
    if (t->shape[1] != cin / g)
        return fail(ld, STYLIZE_ERR_MODEL, "network layer %d: tensor '%s' has shape [%d,%lld,%d,%d], but the layer "
                    "receives %d channels (groups %d: expected [%d,%d,%d,%d])", i, name, cout,
                    (long long)t->shape[1], k, k, cin, g, cout, cin / g, k, k);
    sty_conv *c = &m->convs[m->n_convs];
    int64_t wshape[4] = {cout, cin / g, k, k}, bshape[1] = {cout};
    int r;
    if ((r = take_tensor(ld, name, 4, wshape, &c->weight)))
        return r;
    snprintf(name, sizeof(name), "%s.bias", d->conv);
    if ((r = take_tensor(ld, name, 1, bshape, &c->bias)))
        return r;
    c->cin = cin;
    c->cout = cout;
    c->k = k;
    c->groups = g;
    c->stride = d->stride;
    c->upsample = d->upsample == 2;
    int norm = -1;
    if (d->norm && (norm = add_norm(ld, d->norm, cout)) < 0)
        return norm;
    sty_layer *l = &m->layers[m->n_layers++];
    l->conv = m->n_convs++;
    l->norm = norm;
    l->relu = d->relu;
    l->save_skip = d->save_skip;
    l->add_skip = d->add_skip;
    return 0;
}

/* A compact network from its description (docs/COMPACT.md): parse, check
 * every rule, take the tensors; every rejection names the layer or tensor. */
static int build_compact(loader *ld)
{
    sty_model *m = ld->m;
    int r;
    if (!ld->network)
        return fail(ld, STYLIZE_ERR_MODEL, "architecture 'compact' needs a 'network' description in __metadata__");
    struct json_tokener *tok = json_tokener_new_ex(32);
    if (!tok)
        return fail(ld, STYLIZE_ERR_NOMEM, "out of memory");
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    const int len = (int)strlen(ld->network);
    struct json_object *doc = json_tokener_parse_ex(tok, ld->network, len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (jerr != json_tokener_success || !doc) {
        if (doc)
            json_object_put(doc);
        return fail(ld, STYLIZE_ERR_MODEL, "the network description is not valid JSON: %s",
                    jerr == json_tokener_success || jerr == json_tokener_continue ? "it ends early"
                                                                                : json_tokener_error_desc(jerr));
    }
    for (; (int)end < len; end++)
        if (!strchr(" \t\r\n", ld->network[end])) {
            json_object_put(doc);
            return fail(ld, STYLIZE_ERR_MODEL, "the network description has trailing data after its JSON object");
        }
    r = 0;
    struct json_object *layers = NULL;
    int version = 0;
    m->space_to_depth = m->pixel_shuffle = 1;
    if (!json_object_is_type(doc, json_type_object)) {
        r = fail(ld, STYLIZE_ERR_MODEL, "the network description is not a JSON object");
        goto out;
    }
    json_object_object_foreach(doc, key, v) {
        if (!strcmp(key, "version")) {
            if (json_int_in(v, 1, 1, &version)) {
                r = fail(ld, STYLIZE_ERR_MODEL, "network description version %.20s is not supported (this library "
                         "reads version 1)", json_object_to_json_string(v));
                goto out;
            }
        } else if (!strcmp(key, "space_to_depth") || !strcmp(key, "pixel_shuffle")) {
            int *dst = !strcmp(key, "space_to_depth") ? &m->space_to_depth : &m->pixel_shuffle;
            if (json_int_in(v, 1, 4, dst) || !is_power_124(*dst)) {
                r = fail(ld, STYLIZE_ERR_MODEL, "network description: '%s' must be 1, 2 or 4", key);
                goto out;
            }
        } else if (!strcmp(key, "layers")) {
            layers = v;
        } else {
            r = fail(ld, STYLIZE_ERR_MODEL, "network description: unknown key '%.40s' (a newer format?)", key);
            goto out;
        }
    }
    if (version != 1) {
        r = fail(ld, STYLIZE_ERR_MODEL, "network description has no 'version' (1)");
        goto out;
    }
    if (!layers || !json_object_is_type(layers, json_type_array) || json_object_array_length(layers) < 1 ||
        json_object_array_length(layers) > STY_MAX_LAYERS) {
        r = fail(ld, STYLIZE_ERR_MODEL, "network description: 'layers' must be a list of 1 to %d layers",
                 STY_MAX_LAYERS);
        goto out;
    }
    const int n = (int)json_object_array_length(layers);
    if ((r = alloc_network(ld, n)))
        goto out;
    /* Resolution as a power of two relative to the input (0 = full). */
    const int s_log = m->space_to_depth == 4 ? 2 : m->space_to_depth == 2 ? 1 : 0;
    const int p_log = m->pixel_shuffle == 4 ? 2 : m->pixel_shuffle == 2 ? 1 : 0;
    int c = 3 * m->space_to_depth * m->space_to_depth, res = -s_log, downs = 0, ups = 0;
    int skip_c = -1, skip_res = 0, skip_layer = -1;
    layer_desc d;
    for (int i = 0; i < n; i++) {
        if ((r = parse_layer_desc(ld, i, json_object_array_get_idx(layers, i), &d)))
            goto out;
        if (d.save_skip) {
            if (skip_layer >= 0) {
                r = fail(ld, STYLIZE_ERR_MODEL, "network layer %d saves a residual skip while layer %d's is not "
                         "added yet (skips do not nest)", i, skip_layer);
                goto out;
            }
            skip_c = c;
            skip_res = res;
            skip_layer = i;
        }
        if ((r = add_compact_layer(ld, i, &d, c)))
            goto out;
        res += (d.upsample == 2) - (d.stride == 2);
        downs += d.stride == 2;
        ups += d.upsample == 2;
        if (res > 0) {
            r = fail(ld, STYLIZE_ERR_MODEL, "network layer %d ('%s') upsamples above the input's resolution", i,
                     d.conv);
            goto out;
        }
        if (s_log + downs > 6) {
            r = fail(ld, STYLIZE_ERR_MODEL, "network layer %d ('%s'): the total stride exceeds %d", i, d.conv,
                     MAX_TOTAL_STRIDE);
            goto out;
        }
        c = m->convs[m->n_convs - 1].cout;
        if (d.add_skip) {
            if (skip_layer < 0) {
                r = fail(ld, STYLIZE_ERR_MODEL, "network layer %d ('%s') adds a residual skip that no layer saved",
                         i, d.conv);
                goto out;
            }
            if (skip_c != c || skip_res != res) {
                r = fail(ld, STYLIZE_ERR_MODEL, "network layer %d ('%s'): its output (%d channels at 1/%d) does not "
                         "match the residual skip saved at layer %d (%d channels at 1/%d)", i, d.conv, c, 1 << -res,
                         skip_layer, skip_c, 1 << -skip_res);
                goto out;
            }
            skip_layer = -1;
            m->res_blocks++;
        }
    }
    if (skip_layer >= 0) {
        r = fail(ld, STYLIZE_ERR_MODEL, "network layer %d saves a residual skip that no later layer adds", skip_layer);
        goto out;
    }
    if (c != 3 * m->pixel_shuffle * m->pixel_shuffle) {
        r = fail(ld, STYLIZE_ERR_MODEL, "the last network layer ('%s') has %d output channels; pixel_shuffle %d "
                 "needs %d", d.conv, c, m->pixel_shuffle, 3 * m->pixel_shuffle * m->pixel_shuffle);
        goto out;
    }
    if (d.norm || d.relu || d.add_skip) {
        r = fail(ld, STYLIZE_ERR_MODEL, "the last network layer ('%s') must have no norm, residual add or ReLU",
                 d.conv);
        goto out;
    }
    if (s_log + downs != p_log + ups) {
        r = fail(ld, STYLIZE_ERR_MODEL, "network: the total stride %d (space_to_depth %d, %d stride-2 layers) does "
                 "not equal the output scale %d (pixel_shuffle %d, %d upsampling layers)",
                 m->space_to_depth << downs, m->space_to_depth, downs, m->pixel_shuffle << ups, m->pixel_shuffle, ups);
        goto out;
    }
    for (int i = 0; i < ld->n_tensors; i++)
        if (!ld->tensors[i].used) {
            r = fail(ld, STYLIZE_ERR_MODEL, "unexpected tensor '%s': no layer of the network description uses it",
                     ld->tensors[i].name);
            goto out;
        }
    m->total_stride = m->space_to_depth << downs;
    m->c1 = m->convs[0].cout;
    m->c2 = n > 1 ? m->convs[1].cout : 0;
    m->c3 = n > 2 ? m->convs[2].cout : 0;
    m->k_in = m->convs[0].k;
    m->k_out = m->convs[n - 1].k;
    m->parameters = (size_t)(ld->next_weight - m->weights);
    m->receptive_radius = receptive_radius(m);
    m->macs_per_pixel = macs_per_pixel(m);
    m->tile_auto = tile_auto(m);
out:
    json_object_put(doc);
    return r;
}

int sty_model_load(const char *path, sty_model **out, char *err, size_t err_size)
{
    loader ld = {.path = path, .err = err, .err_size = err_size};
    int r;
    *out = NULL;
    if (err && err_size)
        err[0] = 0;
    ld.m = calloc(1, sizeof(*ld.m));
    if (!ld.m)
        return fail(&ld, STYLIZE_ERR_NOMEM, "out of memory");
    if ((r = read_file_parts(&ld)) || (r = parse_header(&ld)) || (r = parse_tensors(&ld)))
        goto done;
    ld.data = malloc(ld.data_len ? ld.data_len : 1);
    if (!ld.data) {
        r = fail(&ld, STYLIZE_ERR_NOMEM, "out of memory for %llu bytes of tensors", (unsigned long long)ld.data_len);
        goto done;
    }
    if (fread(ld.data, 1, ld.data_len, ld.f) != ld.data_len) {
        r = fail(&ld, STYLIZE_ERR_IO, "short read in the data section");
        goto done;
    }
    if (ld.network && ld.m->arch != STY_ARCH_COMPACT) {
        r = fail(&ld, STYLIZE_ERR_MODEL, "__metadata__ has a 'network' description but the architecture is not "
                 "'compact'");
        goto done;
    }
    if ((r = ld.m->arch == STY_ARCH_COMPACT ? build_compact(&ld) : build_network(&ld)))
        goto done;
    if (!(ld.m->path = strdup(path)) || (!ld.m->style && !(ld.m->style = strdup(""))) ||
        (!ld.m->source && !(ld.m->source = strdup(""))) || (!ld.m->license && !(ld.m->license = strdup("")))) {
        r = fail(&ld, STYLIZE_ERR_NOMEM, "out of memory");
        goto done;
    }
    *out = ld.m;
    ld.m = NULL;
done:
    if (ld.f)
        fclose(ld.f);
    free(ld.header);
    free(ld.tensors); /* names point into root, freed next */
    if (ld.root)
        json_object_put(ld.root);
    free(ld.data);
    sty_model_free(ld.m);
    return r;
}

void sty_model_free(sty_model *m)
{
    if (!m)
        return;
    free(m->convs);
    free(m->norms);
    free(m->layers);
    free(m->weights);
    free(m->style);
    free(m->source);
    free(m->license);
    free(m->path);
    free(m);
}
