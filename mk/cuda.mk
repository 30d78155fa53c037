# CUDA backend (core/src/backend_cuda*): the kernels are compiled by nvcc
# into a fatbinary that backend_cuda_fatbin.c embeds (.incbin); the C files
# need only the CUDA and cuDNN headers. Built when ./configure found nvcc
# and cuDNN (HAVE_CUDA=yes in config.mk). Included after core/core.mk.
#
#   make check-cuda-build   the CUDA backend compiles (no GPU needed)
#   make check-cuda         the CUDA tests (tests/test_cuda.py); the GPU ones skip without a GPU
#   make check-cuda-ref     the reference tests of the core on the cuda backend (needs a GPU)

# sm_80 (A100, and 8.6 / 8.9 parts), sm_90 (H100 / H200) binaries, and
# compute_80 PTX that the driver compiles for newer GPUs.
CUDA_ARCH ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
	-gencode arch=compute_80,code=compute_80
NVCC_FLAGS ?= -O3 -std=c++17 --fatbin $(CUDA_ARCH) -Xptxas -warn-spills

CUDA_FATBIN := $(BUILD)/obj/backend_cuda_kernels.fatbin

.PHONY: check-cuda-build check-cuda check-cuda-ref

ifeq ($(HAVE_CUDA),yes)
$(CUDA_FATBIN): core/src/backend_cuda_kernels.cu config.mk | $(BUILD)/obj
	$(NVCC) $(NVCC_FLAGS) -o $@ $<

# the embedding objects depend on the fatbinary's bytes
$(BUILD)/obj/backend_cuda_fatbin.o $(BUILD)/asan/obj/backend_cuda_fatbin.o: $(CUDA_FATBIN)

check-cuda-build: $(CUDA_FATBIN) $(BUILD)/obj/backend_cuda.o $(BUILD)/obj/backend_cuda_load.o \
		$(BUILD)/obj/backend_cuda_fatbin.o lib tools
	nm $(LIBSTYLIZE_A) | grep -q ' sty_backend_cuda$$'
	nm $(LIBSTYLIZE_A) | grep -q ' sty_cuda_fatbin$$'
	@echo "check-cuda-build: the CUDA backend compiles and is in $(LIBSTYLIZE_A)"
else
check-cuda-build:
	@echo "check-cuda-build: HAVE_CUDA is not yes (./configure did not find nvcc and cuDNN)"; exit 1
endif

check-cuda: lib tools
	STYLIZE_BUILD=$(TOP)/$(BUILD) $(PYTHON) -m pytest -q -ra tests/test_cuda.py $(PYTEST_ARGS)

# The full-mode reference tests of the core (vs PyTorch) with the cuda backend in fp32.
check-cuda-ref: lib tools
	STYLIZE_BUILD=$(TOP)/$(BUILD) STYLIZE_TEST_BACKEND=cuda STYLIZE_TEST_PRECISION=fp32 \
		$(PYTHON) -m pytest -q -ra tests/test_reference.py -k 'matches_pytorch or untiled' $(PYTEST_ARGS)
