# libstylize: static and shared library, stylize-image, C tests, and an
# AddressSanitizer/UBSan build of the same for `make check`.

# Optional backends live in files named backend_<name>*.c and build only when configured.
CORE_SRC := $(sort $(wildcard core/src/*.c))
ifneq ($(HAVE_DNNL),yes)
CORE_SRC := $(filter-out core/src/backend_dnnl%,$(CORE_SRC))
endif
ifneq ($(HAVE_CUDA),yes)
CORE_SRC := $(filter-out core/src/backend_cuda%,$(CORE_SRC))
endif
CORE_HDR := core/include/stylize.h $(wildcard core/src/*.h)
CORE_PKGS := json-c
CLI_PKGS := libpng

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
# Where a bare style name is looked up (core/src/model_path.c): the build
# tree's library also falls back to the source tree's models/; the installed
# one (mk/install.mk) is compiled without that fallback.
TREE_MODEL_FLAGS := -DSTYLIZE_MODEL_DIR='"$(PREFIX)/share/stylize/models"' -DSTYLIZE_SOURCE_MODEL_DIR='"$(TOP)/models"'
CORE_CFLAGS := -std=c11 -D_GNU_SOURCE -O2 -g $(WARN) -fPIC -pthread -Icore/include -Icore/src \
	$(shell pkg-config --cflags $(CORE_PKGS)) $(TREE_MODEL_FLAGS)
# The convolution kernels: full optimization, and FMA where the clone has it.
KERNEL_CFLAGS := -O3 -ffp-contract=fast -fno-tree-slp-vectorize -Wno-psabi
CORE_LIBS := $(shell pkg-config --libs $(CORE_PKGS)) -lpthread -lm
ifeq ($(HAVE_DNNL),yes)
CORE_CFLAGS += -DSTYLIZE_HAVE_DNNL
CORE_LIBS += -ldnnl
endif
# CUDA (mk/cuda.mk): headers only; the driver and cuDNN are loaded at run time.
ifeq ($(HAVE_CUDA),yes)
CORE_CFLAGS += -DSTYLIZE_HAVE_CUDA -isystem $(CUDA_HOME)/include $(if $(CUDNN_INCLUDE),-isystem $(CUDNN_INCLUDE)) \
	-DSTYLIZE_CUDA_FATBIN='"$(abspath $(BUILD))/obj/backend_cuda_kernels.fatbin"'
CORE_LIBS += -ldl
endif
CLI_CFLAGS := $(shell pkg-config --cflags $(CLI_PKGS))
CLI_LIBS := $(shell pkg-config --libs $(CLI_PKGS))
# float-cast-overflow: gcc leaves it out of -fsanitize=undefined (a NaN pixel cast to uint8_t).
SAN_FLAGS := -fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer -fno-sanitize-recover=all

OBJ := $(BUILD)/obj
CORE_OBJ := $(patsubst core/src/%.c,$(OBJ)/%.o,$(CORE_SRC))
ASAN_OBJ := $(patsubst core/src/%.c,$(BUILD)/asan/obj/%.o,$(CORE_SRC))

LIBSTYLIZE_A := $(BUILD)/lib/libstylize.a
LIBSTYLIZE_SO := $(BUILD)/lib/libstylize.so
STYLIZE_IMAGE := $(BUILD)/bin/stylize-image
TEST_API := $(BUILD)/tests/test_api

lib: $(LIBSTYLIZE_A) $(LIBSTYLIZE_SO)
tools: $(STYLIZE_IMAGE) $(TEST_API)
.PHONY: sanitize
sanitize: $(BUILD)/asan/bin/stylize-image $(BUILD)/asan/tests/test_api

$(OBJ)/%.o: core/src/%.c $(CORE_HDR) config.mk | $(OBJ)
	$(CC) $(CORE_CFLAGS) $(if $(filter conv_%,$*),$(KERNEL_CFLAGS)) -c $< -o $@
$(BUILD)/asan/obj/%.o: core/src/%.c $(CORE_HDR) config.mk | $(BUILD)/asan/obj
	$(CC) $(CORE_CFLAGS) -O1 $(SAN_FLAGS) $(if $(filter conv_%,$*),-O2 -ffp-contract=fast -Wno-psabi) -c $< -o $@

$(OBJ) $(BUILD)/asan/obj $(BUILD)/lib $(BUILD)/bin $(BUILD)/tests $(BUILD)/asan/bin $(BUILD)/asan/tests:
	mkdir -p $@

$(LIBSTYLIZE_A): $(CORE_OBJ) | $(BUILD)/lib
	rm -f $@ && ar rcs $@ $^
$(LIBSTYLIZE_SO): $(CORE_OBJ) | $(BUILD)/lib
	$(CC) -shared -Wl,-soname,libstylize.so.0 -o $@ $^ $(CORE_LIBS)

# Tools and tests link the static library so they run from the tree.
$(STYLIZE_IMAGE): core/cli/stylize_image.c $(LIBSTYLIZE_A) | $(BUILD)/bin
	$(CC) $(CORE_CFLAGS) $(CLI_CFLAGS) $< -o $@ $(LIBSTYLIZE_A) $(CLI_LIBS) $(CORE_LIBS)
$(TEST_API): tests/test_api.c tests/check.h $(LIBSTYLIZE_A) | $(BUILD)/tests
	$(CC) $(CORE_CFLAGS) $< -o $@ $(LIBSTYLIZE_A) $(CORE_LIBS)
$(BUILD)/asan/bin/stylize-image: core/cli/stylize_image.c $(ASAN_OBJ) | $(BUILD)/asan/bin
	$(CC) $(CORE_CFLAGS) -O1 $(SAN_FLAGS) $(CLI_CFLAGS) $< -o $@ $(ASAN_OBJ) $(CLI_LIBS) $(CORE_LIBS)
$(BUILD)/asan/tests/test_api: tests/test_api.c tests/check.h $(ASAN_OBJ) | $(BUILD)/asan/tests
	$(CC) $(CORE_CFLAGS) -O1 $(SAN_FLAGS) $< -o $@ $(ASAN_OBJ) $(CORE_LIBS)
# The statistics-file API (tests/test_stats_file.py runs both builds).
tools: $(BUILD)/tests/test_stats_file
sanitize: $(BUILD)/asan/tests/test_stats_file
$(BUILD)/tests/test_stats_file: tests/test_stats_file.c tests/check.h $(LIBSTYLIZE_A) | $(BUILD)/tests
	$(CC) $(CORE_CFLAGS) $< -o $@ $(LIBSTYLIZE_A) $(CORE_LIBS)
$(BUILD)/asan/tests/test_stats_file: tests/test_stats_file.c tests/check.h $(ASAN_OBJ) | $(BUILD)/asan/tests
	$(CC) $(CORE_CFLAGS) -O1 $(SAN_FLAGS) $< -o $@ $(ASAN_OBJ) $(CORE_LIBS)
