/* The CUDA kernels (backend_cuda_kernels.cu, compiled by nvcc --fatbin in
 * mk/cuda.mk) embedded as read-only data: STYLIZE_CUDA_FATBIN is the
 * absolute path of the fatbinary, set by the build. */
#include "backend_cuda_impl.h"

#ifndef STYLIZE_CUDA_FATBIN
#error "STYLIZE_CUDA_FATBIN (the path of the kernels' fatbinary) must be defined by the build"
#endif

__asm__(".section .rodata\n"
        ".balign 64\n"
        ".globl sty_cuda_fatbin\n"
        ".type sty_cuda_fatbin, @object\n"
        "sty_cuda_fatbin:\n"
        ".incbin \"" STYLIZE_CUDA_FATBIN "\"\n"
        ".byte 0\n"
        ".size sty_cuda_fatbin, . - sty_cuda_fatbin\n"
        ".previous\n");
