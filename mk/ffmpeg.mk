# FFmpeg with the `stylize` filter: fetch a pinned release, patch it, build
# ffmpeg/ffprobe/ffplay (full or minimal profile) against the in-tree
# libstylize. Included by the top-level Makefile (after core/core.mk). See
# docs/FFMPEG.md.
#
# Layout, per FFmpeg version V (7.1, 8.1, 9.0):
#   $(BUILD)/ffmpeg-dl/ffmpeg-X.Y.Z.tar.xz  verified release tarballs (kept by clean)
#   $(BUILD)/ffmpeg-V/src                   pristine tree + patches/V + a symlink
#                                           libavfilter/vf_stylize.c -> filter/vf_stylize.c
#                                           (FFMPEG_SOURCE instead, patched in place,
#                                           for V = FFMPEG_VERSION)
#   $(BUILD)/ffmpeg-V/obj                   out-of-tree FFmpeg build (configure + objects)
#   $(BUILD)/ffmpeg-V/bin                   ffmpeg, ffprobe, ffplay
# and $(BUILD)/bin/{ffmpeg,ffprobe,ffplay} are copies of the FFMPEG_VERSION ones.
#
# Targets:
#   ffmpeg               build FFMPEG_VERSION into $(BUILD)/bin
#   ffmpeg-7.1 ...       build one version into $(BUILD)/ffmpeg-V/bin
#   ffmpeg-doc           man pages (ffmpeg.1, ffmpeg-filters.1, ...) in $(BUILD)/share/man
#   check-ffmpeg         tests/test_ffmpeg.py against $(BUILD)/bin/ffmpeg
#   check-ffmpeg-all     build 7.1, 8.1 and 9.0 and run tests/test_ffmpeg.py on each
#   fate-stylize         FFmpeg's own sample-free FATE filter tests on the patched tree
#                        (about 30 s; a prerequisite of `make check`)
#   ffmpeg-clean         remove FFmpeg builds (not the downloaded tarballs)
#
# Rebuilds: editing filter/vf_stylize.c (a symlink in the tree) or stylize.h
# recompiles one object; a new libstylize.a relinks the programs. Neither
# refetches nor reconfigures FFmpeg; that happens only when the patch, the
# configure flags or the source tree change.

FFMPEG_VERSION ?= 9.0
FFMPEG_SOURCE ?=
FFMPEG_TARBALL ?=
FFMPEG_ALL_VERSIONS ?= 7.1 8.1 9.0

FF_ABS_BUILD := $(abspath $(BUILD))

# The libstylize FFmpeg links, and the folder of the stylize.pc that FFmpeg's
# configure finds it with. By default the in-tree static library, described
# by a .pc written here: FFmpeg's configure treats a bare "path/libstylize.a"
# in Libs as a compiler flag (it only moves -l* and *.so after the objects),
# so the library is named "-L<dir> -l:libstylize.a". To build against an
# installed libstylize instead: make FF_STYLIZE_PC_DIR=<prefix>/lib/pkgconfig
# FF_LIBSTYLIZE=<prefix>/lib/libstylize.a ffmpeg
FF_LIBSTYLIZE ?= $(LIBSTYLIZE_A)
FF_DEFAULT_PC_DIR := $(FF_ABS_BUILD)/ffmpeg-pkgconfig
FF_STYLIZE_PC_DIR ?= $(FF_DEFAULT_PC_DIR)
FF_STYLIZE_PC := $(FF_STYLIZE_PC_DIR)/stylize.pc
FF_DL := $(FF_ABS_BUILD)/ffmpeg-dl
FF_TOP := $(abspath .)
FF_PROGS := ffmpeg ffprobe ffplay
FF_PATCH = $(FF_TOP)/patches/$(1)/0001-avfilter-add-stylize-filter.patch

# Two profiles (./configure --ffmpeg-profile=...):
#   full     every component FFmpeg builds by default, plus the external
#            libraries configure found (FFMPEG_LIB_FLAGS: x264, x265, vpx,
#            dav1d, aom, svt-av1, opus, ...): the ffmpeg users know.
#   minimal  what the filter, its tests, webcams, common files and FATE's
#            filter tests need; a few minutes on 2 cores, for development.
FFMPEG_PROFILE ?= full
FFMPEG_LIB_FLAGS ?=
FFMPEG_CCACHE ?=

FF_DECODERS := h264 hevc mpeg4 vp9 png mjpeg bmp rawvideo wrapped_avframe \
	aac mp3 mp3float pcm_s16le pcm_f32le pgmyuv
FF_ENCODERS := libx264 mpeg4 png mjpeg bmp rawvideo wrapped_avframe aac pcm_s16le pcm_f32le
FF_MUXERS := mov mp4 matroska webm image2 image2pipe rawvideo nut framecrc framemd5 \
	crc md5 null h264 wav adts
FF_DEMUXERS := mov matroska image2 image2pipe image_png_pipe image_jpeg_pipe image_bmp_pipe \
	rawvideo nut h264 hevc aac mp3 wav concat
FF_PARSERS := h264 hevc mpeg4video vp9 png mjpeg bmp aac mpegaudio
FF_BSFS := h264_mp4toannexb hevc_mp4toannexb aac_adtstoasc vp9_superframe extract_extradata
FF_PROTOCOLS := file pipe fd md5
FF_INDEVS := lavfi v4l2
FF_FILTERS := stylize buffer buffersink abuffer abuffersink \
	scale format noformat aformat split asplit hstack vstack xstack overlay \
	sendcmd asendcmd testsrc testsrc2 nullsrc color anullsrc sine \
	null anull nullsink anullsink copy aresample setpts asetpts fps crop pad \
	showinfo ashowinfo trim atrim concat select aselect setsar setdar setparams \
	hflip vflip transpose rotate psnr ssim metadata movie amovie
FF_COMPONENTS := $(addprefix --enable-decoder=,$(FF_DECODERS)) \
	$(addprefix --enable-encoder=,$(FF_ENCODERS)) \
	$(addprefix --enable-muxer=,$(FF_MUXERS)) \
	$(addprefix --enable-demuxer=,$(FF_DEMUXERS)) \
	$(addprefix --enable-parser=,$(FF_PARSERS)) \
	$(addprefix --enable-bsf=,$(FF_BSFS)) \
	$(addprefix --enable-protocol=,$(FF_PROTOCOLS)) \
	$(addprefix --enable-indev=,$(FF_INDEVS)) \
	$(addprefix --enable-filter=,$(FF_FILTERS))

ifeq ($(FFMPEG_PROFILE),minimal)
FF_PROFILE_FLAGS := --disable-everything --disable-autodetect \
	--enable-zlib --enable-sdl2 --enable-libx264 $(FF_COMPONENTS)
else
# FFmpeg's defaults (autodetected system libraries included: zlib, sdl2,
# xcb, alsa, v4l2, ...), the external libraries, and no debug symbols: -g
# only slows the compile and bloats the unstripped *_g programs (the
# programs people run are stripped either way).
FF_PROFILE_FLAGS := --disable-debug $(FFMPEG_LIB_FLAGS)
endif

FF_CONFIGURE_FLAGS := $(if $(FFMPEG_CCACHE),--cc='$(FFMPEG_CCACHE) $(CC)') \
	--enable-gpl --enable-pthreads --enable-libstylize \
	--disable-htmlpages --disable-podpages --disable-txtpages \
	$(FF_PROFILE_FLAGS) $(FFMPEG_EXTRA_CONFIGURE)

# Write $(2) to file $(1) only when it differs (a stamp that changes with a value).
ff_write_if_changed = mkdir -p $(dir $(1)) && printf '%s\n' "$(2)" >$(1).tmp && \
	{ cmp -s $(1).tmp $(1) && rm -f $(1).tmp || mv $(1).tmp $(1); }

.PHONY: ffmpeg ffmpeg-doc check-ffmpeg check-ffmpeg-all fate-stylize ffmpeg-clean FORCE
FORCE:

ifeq ($(FF_STYLIZE_PC_DIR),$(FF_DEFAULT_PC_DIR))
FF_STYLIZE_VERSION := $(shell sed -n 's/^\#define STYLIZE_VERSION_\(MAJOR\|MINOR\|PATCH\) *\([0-9]*\).*/\2/p' core/include/stylize.h | paste -sd. -)
# Rewritten only when its content changes (a change reconfigures FFmpeg).
$(FF_STYLIZE_PC): FORCE
	@mkdir -p $(dir $@) && printf '%s\n' 'Name: stylize' \
		'Description: neural style transfer with thumbnail instance normalization (build tree, static)' \
		'Version: $(FF_STYLIZE_VERSION)' \
		'Cflags: -I$(FF_TOP)/core/include' \
		'Libs: -L$(abspath $(dir $(FF_LIBSTYLIZE))) -l:$(notdir $(FF_LIBSTYLIZE)) $(CORE_LIBS)' >$@.tmp && \
	{ cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@; }
endif

# ---- per-version rules ------------------------------------------------------
# $(1) = version. The user's tree (FFMPEG_SOURCE) and tarball (FFMPEG_TARBALL)
# apply to FFMPEG_VERSION only; other versions are always fetched.
define ff_rules
FFD_$(1) := $(FF_ABS_BUILD)/ffmpeg-$(1)
FFUSER_$(1) := $(if $(filter $(1),$(FFMPEG_VERSION)),$(FFMPEG_SOURCE))
FFSRC_$(1) := $$(if $$(FFUSER_$(1)),$$(FFUSER_$(1)),$$(FFD_$(1))/src)
FFTAR_$(1) := $(if $(filter $(1),$(FFMPEG_VERSION)),$(FFMPEG_TARBALL))

# Which tree and tarball this version uses; a change re-prepares the source.
$$(FFD_$(1))/source-id: FORCE
	@$$(call ff_write_if_changed,$$@,src=$$(FFSRC_$(1)) tarball=$$(FFTAR_$(1)))

# The FFmpeg configure line; a change reconfigures.
$$(FFD_$(1))/configure-flags: FORCE
	@$$(call ff_write_if_changed,$$@,$$(FF_CONFIGURE_FLAGS) PKG_CONFIG_PATH=$$(FF_STYLIZE_PC_DIR))

# Source tree: extracted from the verified tarball (or the user's tree),
# patched, and the filter source symlinked in.
$$(FFD_$(1))/src.stamp: $$(FFD_$(1))/source-id $(call FF_PATCH,$(1))
ifeq ($(if $(filter $(1),$(FFMPEG_VERSION)),$(FFMPEG_SOURCE)),)
	rm -rf $$(FFD_$(1))/src $$(FFD_$(1))/src.tmp
	tarball=$$$$($(FF_TOP)/tools/fetch_ffmpeg.sh $$(if $$(FFTAR_$(1)),--tarball "$$(FFTAR_$(1))") $(1) $(FF_DL)) && \
	mkdir -p $$(FFD_$(1))/src.tmp && tar -xJf "$$$$tarball" -C $$(FFD_$(1))/src.tmp --strip-components=1
	cd $$(FFD_$(1))/src.tmp && patch -p1 -s --forward <$(call FF_PATCH,$(1))
	mv $$(FFD_$(1))/src.tmp $$(FFD_$(1))/src
else
	@test -f "$$(FFSRC_$(1))/libavfilter/allfilters.c" || { echo "FFMPEG_SOURCE=$$(FFSRC_$(1)) is not an FFmpeg source tree" >&2; exit 1; }
	@if [ -f "$$(FFSRC_$(1))/config.h" ] || [ -f "$$(FFSRC_$(1))/ffbuild/config.mak" ]; then \
		echo "$$(FFSRC_$(1)) was configured in place; FFmpeg is built out of tree here: run 'make distclean' in it first" >&2; exit 1; fi
	@if grep -q ff_vf_stylize "$$(FFSRC_$(1))/libavfilter/allfilters.c"; then \
		echo "$$(FFSRC_$(1)): already patched for stylize"; \
	else \
		echo "patching $$(FFSRC_$(1)) with patches/$(1)"; \
		cd "$$(FFSRC_$(1))" && patch -p1 --forward <$(call FF_PATCH,$(1)) || { \
		echo "patches/$(1) does not apply to $$(FFSRC_$(1)): is it FFmpeg $(1)? (./configure --ffmpeg-version=...)" >&2; exit 1; }; \
	fi
endif
	ln -sfn $(FF_TOP)/filter/vf_stylize.c $$(FFSRC_$(1))/libavfilter/vf_stylize.c
	touch $$@

# Configure (out of tree), against the in-tree libstylize.
# New configure flags start from an empty tree: FFmpeg's make does not
# rebuild every object a configuration change affects (switching the
# minimal build to the full one left x86 objects without the RV40 routines).
$$(FFD_$(1))/obj/config.stamp: $$(FFD_$(1))/src.stamp $$(FFD_$(1))/configure-flags $$(FF_STYLIZE_PC) | $$(FF_LIBSTYLIZE)
	@if [ -d $$(FFD_$(1))/obj ] && ! cmp -s $$(FFD_$(1))/configure-flags $$(FFD_$(1))/obj/configure-flags.used; then \
		echo "FFmpeg $(1): new configure flags: building in a clean tree"; rm -rf $$(FFD_$(1))/obj; fi
	mkdir -p $$(FFD_$(1))/obj
	@echo "configuring FFmpeg $(1) in $$(FFD_$(1))/obj (log: configure.log)"
	@cd $$(FFD_$(1))/obj && PKG_CONFIG_PATH="$$(FF_STYLIZE_PC_DIR)$$$${PKG_CONFIG_PATH:+:$$$$PKG_CONFIG_PATH}" \
		$$(FFSRC_$(1))/configure $$(FF_CONFIGURE_FLAGS) >configure.log 2>&1 || { \
		tail -n 20 configure.log; echo "--- end of ffbuild/config.log:"; tail -n 30 ffbuild/config.log; \
		echo "FFmpeg $(1) configure failed (full logs in $$(FFD_$(1))/obj)" >&2; exit 1; }
	cp $$(FFD_$(1))/configure-flags $$(FFD_$(1))/obj/configure-flags.used
	touch $$@

# A new libstylize.a: drop the linked programs so FFmpeg's make relinks them
# (FFmpeg does not track external libraries).
$$(FFD_$(1))/obj/libstylize.stamp: $$(FF_LIBSTYLIZE) | $$(FFD_$(1))/obj/config.stamp
	rm -f $$(foreach p,$(FF_PROGS),$$(FFD_$(1))/obj/$$(p) $$(FFD_$(1))/obj/$$(p)_g)
	touch $$@

.PHONY: ffmpeg-$(1) ffmpeg-doc-$(1) check-ffmpeg-$(1)
ffmpeg-$(1): $$(FFD_$(1))/obj/config.stamp $$(FFD_$(1))/obj/libstylize.stamp
	+MAKEFLAGS="$$$${MAKEFLAGS%% -- *}" $$(MAKE) -C $$(FFD_$(1))/obj $(FF_PROGS)
	@mkdir -p $$(FFD_$(1))/bin && for p in $(FF_PROGS); do \
		cmp -s $$(FFD_$(1))/obj/$$$$p $$(FFD_$(1))/bin/$$$$p || cp -f $$(FFD_$(1))/obj/$$$$p $$(FFD_$(1))/bin/$$$$p; done

ffmpeg-doc-$(1): $$(FFD_$(1))/obj/config.stamp
	+MAKEFLAGS="$$$${MAKEFLAGS%% -- *}" $$(MAKE) -C $$(FFD_$(1))/obj doc/ffmpeg.1 doc/ffprobe.1 doc/ffplay.1 doc/ffmpeg-filters.1 doc/ffmpeg-all.1
	mkdir -p $$(FFD_$(1))/share/man/man1
	cp -f $$(FFD_$(1))/obj/doc/*.1 $$(FFD_$(1))/share/man/man1/

check-ffmpeg-$(1): ffmpeg-$(1) $$(if $$(filter $(1),$(FFMPEG_VERSION)),ffmpeg)
	STYLIZE_BUILD=$(FF_ABS_BUILD) STYLIZE_FFMPEG=$$(FFD_$(1))/bin/ffmpeg \
		$(PYTHON) -m pytest -q -ra tests/test_ffmpeg.py $(PYTEST_ARGS)
endef

$(foreach v,$(sort $(FFMPEG_ALL_VERSIONS) $(FFMPEG_VERSION)),$(eval $(call ff_rules,$(v))))

# ---- the configured version -------------------------------------------------
FFD := $(FFD_$(FFMPEG_VERSION))

ffmpeg: ffmpeg-$(FFMPEG_VERSION)
	@mkdir -p $(BUILD)/bin && for p in $(FF_PROGS); do \
		cmp -s $(FFD)/bin/$$p $(BUILD)/bin/$$p || cp -f $(FFD)/bin/$$p $(BUILD)/bin/$$p; done
	@echo "FFmpeg $(FFMPEG_VERSION) with the stylize filter: $(BUILD)/bin/ffmpeg, ffprobe, ffplay"

ffmpeg-doc: ffmpeg-doc-$(FFMPEG_VERSION)
	mkdir -p $(BUILD)/share/man/man1
	cp -f $(FFD)/share/man/man1/*.1 $(BUILD)/share/man/man1/
	@echo "man pages in $(BUILD)/share/man: man -M $(BUILD)/share/man ffmpeg-filters (see the stylize section)"

check-ffmpeg: ffmpeg lib tools
	STYLIZE_BUILD=$(FF_ABS_BUILD) $(PYTHON) -m pytest -q -ra tests/test_ffmpeg.py $(PYTEST_ARGS)

# Every supported FFmpeg release, each in its own build folder. Run the
# builds one after another (each already uses the make -j jobs).
check-ffmpeg-all: lib tools
	@set -e; for v in $(FFMPEG_ALL_VERSIONS); do \
		echo "=== FFmpeg $$v"; $(MAKE) --no-print-directory check-ffmpeg-$$v; done

# FFmpeg's own FATE tests that need no sample files, restricted to the
# filter tests this small configuration enables (fate-filter-*: pixfmts,
# formats, fps, scale, concat, trim, testsrc2, ...) and fate-source, on the
# patched tree: shows that adding the filter breaks nothing (65 tests, about
# 30 s). FATE_VERSION picks the tree, FATE_PATTERN the tests.
FATE_VERSION ?= $(FFMPEG_VERSION)
FATE_PATTERN ?= ^fate-(filter-|vfilter|afilter|lavfi|source$$)
# fate-source asks git which files belong to FFmpeg: the tree lives inside
# this project's checkout, so git must not look above it.
fate-stylize: ffmpeg-$(FATE_VERSION)
	@cd $(FFD_$(FATE_VERSION))/obj && \
	export MAKEFLAGS="$${MAKEFLAGS%% -- *}" GIT_CEILING_DIRECTORIES=$(FFD_$(FATE_VERSION)) && \
	tests=$$($(MAKE) -s --no-print-directory fate-list SAMPLES= 2>/dev/null | grep -E '$(FATE_PATTERN)') && \
	echo "FATE on FFmpeg $(FATE_VERSION): $$(echo $$tests | wc -w) tests" && \
	$(MAKE) --no-print-directory -k SAMPLES= $$tests

# It is cheap, so `make check` runs it too (FFmpeg builds only).
ifeq ($(ENABLE_FFMPEG),yes)
check: fate-stylize
endif

ffmpeg-clean:
	rm -rf $(foreach v,$(sort $(FFMPEG_ALL_VERSIONS) $(FFMPEG_VERSION)),$(FFD_$(v))) $(addprefix $(BUILD)/bin/,$(FF_PROGS)) $(BUILD)/share/man
