/* Internals of the CUDA backend (backend_cuda*.c, backend_cuda_kernels.cu).
 *
 * The CUDA driver (libcuda.so.1) and cuDNN (libcudnn.so.9) are reached
 * through tables of function pointers filled by dlopen
 * (backend_cuda_load.c), as the dnnl backend does for oneDNN: a libstylize
 * built with CUDA support loads and runs (ref / dnnl backends) on machines
 * without a GPU, a driver or cuDNN; the cuda backend then reports itself
 * unavailable with the reason. Only the headers (cuda.h, cudnn.h) are
 * needed at build time. The kernels are a fatbinary (nvcc --fatbin,
 * backend_cuda_kernels.cu) embedded in the library (backend_cuda_fatbin.c)
 * and loaded with cuModuleLoadData: no libcudart, no C++ runtime. */
#ifndef STYLIZE_BACKEND_CUDA_IMPL_H
#define STYLIZE_BACKEND_CUDA_IMPL_H

#include <stddef.h>

#include <cuda.h>
#include <cudnn.h>

/* The names go through the preprocessor once more (STY_CU_STR), so that
 * cuda.h's versioned aliases (cuMemAlloc -> cuMemAlloc_v2, ...) name the
 * symbol the driver exports. */
#define STY_CU_FUNCS(X)                                                                                         \
    X(cuInit) X(cuDriverGetVersion) X(cuDeviceGetCount) X(cuDeviceGet) X(cuDeviceGetName)                       \
    X(cuDeviceGetAttribute) X(cuDevicePrimaryCtxRetain) X(cuDevicePrimaryCtxRelease) X(cuCtxPushCurrent)        \
    X(cuCtxPopCurrent) X(cuModuleLoadData) X(cuModuleUnload) X(cuModuleGetFunction) X(cuLaunchKernel)           \
    X(cuMemAlloc) X(cuMemFree) X(cuMemAllocHost) X(cuMemFreeHost) X(cuMemcpyHtoDAsync) X(cuMemcpyDtoHAsync)     \
    X(cuMemGetInfo) X(cuStreamCreate) X(cuStreamDestroy) X(cuStreamSynchronize) X(cuGetErrorString)

#define STY_CUDNN_FUNCS(X)                                                                                      \
    X(cudnnGetVersion) X(cudnnGetErrorString) X(cudnnCreate) X(cudnnDestroy) X(cudnnSetStream)                   \
    X(cudnnCreateTensorDescriptor) X(cudnnSetTensor4dDescriptor) X(cudnnDestroyTensorDescriptor)                \
    X(cudnnCreateFilterDescriptor) X(cudnnSetFilter4dDescriptor) X(cudnnDestroyFilterDescriptor)                \
    X(cudnnCreateConvolutionDescriptor) X(cudnnSetConvolution2dDescriptor) X(cudnnSetConvolutionMathType)       \
    X(cudnnDestroyConvolutionDescriptor) X(cudnnGetConvolution2dForwardOutputDim)                               \
    X(cudnnGetConvolutionForwardAlgorithmMaxCount) X(cudnnGetConvolutionForwardAlgorithm_v7)                    \
    X(cudnnFindConvolutionForwardAlgorithm) X(cudnnGetConvolutionForwardWorkspaceSize)                          \
    X(cudnnConvolutionForward)

typedef struct sty_cuda_api {
#define STY_CU_DECL(f) __typeof__(&f) f;
    STY_CU_FUNCS(STY_CU_DECL)
    STY_CUDNN_FUNCS(STY_CU_DECL)
#undef STY_CU_DECL
    int device_count;
    CUdevice device;   /* the device this library uses (STYLIZE_CUDA_DEVICE, default 0) */
    int cc_major, cc_minor;
    char device_name[128];
    size_t cudnn_version;
} sty_cuda_api;

/* Load the driver and cuDNN once (thread-safe) and look for a usable
 * device (compute capability >= 8.0: the kernels are built for sm_80 and
 * sm_90, with sm_80 PTX for newer GPUs). Returns the table or NULL, then
 * *why (when non-NULL) says why in a few words ("no CUDA device", ...). */
const sty_cuda_api *sty_cuda_load(const char **why);

/* The embedded fatbinary of backend_cuda_kernels.cu. */
extern const unsigned char sty_cuda_fatbin[];

#endif
