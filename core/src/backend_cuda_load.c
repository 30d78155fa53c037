/* Loading the CUDA driver and cuDNN at run time (see backend_cuda_impl.h).
 * Nothing here links against CUDA: a machine without the driver, without a
 * GPU or without cuDNN gets a NULL table and a reason, and the library
 * falls back to the CPU backends. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cuda_impl.h"

#define STY_CU_STR2(x) #x
#define STY_CU_STR(x) STY_CU_STR2(x)

static sty_cuda_api api;
static const char *load_error;
static char load_error_buf[256];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void *open_first(const char *const *names, size_t n)
{
    void *h = NULL;
    for (size_t i = 0; !h && i < n; i++)
        h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    return h;
}

static void load(void)
{
    static const char *const cu_names[] = {"libcuda.so.1", "libcuda.so"};
    static const char *const dnn_names[] = {"libcudnn.so.9", "libcudnn.so"};
    void *cu = open_first(cu_names, sizeof(cu_names) / sizeof(cu_names[0]));
    if (!cu) {
        load_error = "no CUDA device (the NVIDIA driver, libcuda.so.1, is not installed)";
        return;
    }
#define STY_CU_SYM(f)                                                                                     \
    if (!(*(void **)&api.f = dlsym(cu, STY_CU_STR(f)))) {                                               \
        load_error = "the NVIDIA driver is too old (libcuda.so.1 lacks " STY_CU_STR(f) ")";                \
        return;                                                                                            \
    }
    STY_CU_FUNCS(STY_CU_SYM)
#undef STY_CU_SYM
    CUresult r = api.cuInit(0);
    if (r == CUDA_SUCCESS)
        r = api.cuDeviceGetCount(&api.device_count);
    if (r != CUDA_SUCCESS || api.device_count < 1) {
        const char *s = NULL;
        if (r != CUDA_SUCCESS && api.cuGetErrorString(r, &s) != CUDA_SUCCESS)
            s = NULL;
        snprintf(load_error_buf, sizeof(load_error_buf), "no CUDA device (%s)",
                 r != CUDA_SUCCESS ? (s ? s : "cuInit failed") : "the driver sees no GPU");
        load_error = load_error_buf;
        return;
    }
    int ordinal = 0;
    const char *env = getenv("STYLIZE_CUDA_DEVICE");
    if (env && *env)
        ordinal = atoi(env);
    if (ordinal < 0 || ordinal >= api.device_count) {
        snprintf(load_error_buf, sizeof(load_error_buf), "no CUDA device %d (STYLIZE_CUDA_DEVICE; %d found)",
                 ordinal, api.device_count);
        load_error = load_error_buf;
        return;
    }
    if (api.cuDeviceGet(&api.device, ordinal) != CUDA_SUCCESS ||
        api.cuDeviceGetAttribute(&api.cc_major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, api.device) !=
            CUDA_SUCCESS ||
        api.cuDeviceGetAttribute(&api.cc_minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, api.device) !=
            CUDA_SUCCESS) {
        load_error = "no CUDA device (cannot query device)";
        return;
    }
    if (api.cuDeviceGetName(api.device_name, (int)sizeof(api.device_name), api.device) != CUDA_SUCCESS)
        strcpy(api.device_name, "?");
    if (api.cc_major < 8) {
        snprintf(load_error_buf, sizeof(load_error_buf),
                 "the CUDA device (%s, compute capability %d.%d) is older than 8.0 (Ampere), which the kernels need",
                 api.device_name, api.cc_major, api.cc_minor);
        load_error = load_error_buf;
        return;
    }
    void *dnn = open_first(dnn_names, sizeof(dnn_names) / sizeof(dnn_names[0]));
    if (!dnn) {
        load_error = "cuDNN 9 (libcudnn.so.9) could not be loaded";
        return;
    }
#define STY_CU_SYM(f)                                                                                     \
    if (!(*(void **)&api.f = dlsym(dnn, STY_CU_STR(f)))) {                                              \
        load_error = "libcudnn lacks " STY_CU_STR(f);                                                      \
        return;                                                                                            \
    }
    STY_CUDNN_FUNCS(STY_CU_SYM)
#undef STY_CU_SYM
    api.cudnn_version = api.cudnnGetVersion();
    if (api.cudnn_version < 8000) {
        load_error = "the cuDNN found is older than 8.0";
        return;
    }
    /* the handles stay open for the life of the process */
}

const sty_cuda_api *sty_cuda_load(const char **why)
{
    pthread_once(&once, load);
    if (load_error || !api.cudnnConvolutionForward) {
        if (why)
            *why = load_error ? load_error : "CUDA could not be loaded";
        return NULL;
    }
    return &api;
}
