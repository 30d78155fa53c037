# stylize: libstylize (core/), its command-line tool, and FFmpeg with the
# `stylize` filter. Run ./configure first (make runs it with defaults if not).

-include config.mk
BUILD ?= build
PREFIX ?= /usr/local
CC ?= cc
ENABLE_FFMPEG ?= yes
PYTHON := /usr/bin/python3
TOP := $(CURDIR)

.PHONY: all lib tools check check-core deps install uninstall clean distclean demo help
all: lib tools $(if $(filter yes,$(ENABLE_FFMPEG)),ffmpeg player)

config.mk:
	./configure

help:
	@echo "make            build libstylize, stylize-image, stylize-bench and ffmpeg/ffprobe/ffplay with the filter"
	@echo "make deps       install the build and test dependencies (Debian/Ubuntu, needs root)"
	@echo "make demo       stylize a sample video and image with a model (see README)"
	@echo "make check      run every test (reference vs PyTorch, TIN, sanitizers, ffmpeg)"
	@echo "make install    install ffmpeg-stylize/ffprobe-stylize/ffplay-stylize, stylize-image, -player,"
	@echo "                -batch, -convert, libstylize, the models and man pages (PREFIX, DESTDIR,"
	@echo "                PROGRAM_SUFFIX); make uninstall removes them"
	@echo "make player     build/bin/stylize-player, the SDL2 live preview"
	@echo "make ffmpeg-doc FFmpeg's man pages, ffmpeg-filters.1 documents stylize"
	@echo "make check-ffmpeg-all   build FFmpeg 7.1 and 8.1 too and run the filter tests on each"
	@echo "make fate-stylize       FFmpeg's own sample-free filter tests on the patched tree"

deps:
	sh tools/install_deps.sh

# Everything from a fresh Debian machine: dependencies, build, a stylized video.
demo:
	sh tools/install_deps.sh
	[ -f config.mk ] || ./configure
	$(MAKE) all
	BUILD=$(TOP)/$(BUILD) sh tools/demo.sh

include core/core.mk
-include $(filter-out mk/install.mk,$(wildcard mk/*.mk))
include mk/install.mk

# Tests: one pytest run covers the core (release and ASan/UBSan builds),
# the converter and the ffmpeg integration.
PYTEST_ARGS ?=
check: lib tools sanitize $(if $(filter yes,$(ENABLE_FFMPEG)),ffmpeg player)
	STYLIZE_BUILD=$(TOP)/$(BUILD) $(PYTHON) -m pytest -q -ra tests $(PYTEST_ARGS)

check-core: lib tools sanitize
	STYLIZE_BUILD=$(TOP)/$(BUILD) STYLIZE_NO_FFMPEG=1 $(PYTHON) -m pytest -q -ra tests $(PYTEST_ARGS)

clean:
	rm -rf $(BUILD)/lib $(BUILD)/obj $(BUILD)/bin/stylize-* $(BUILD)/asan $(BUILD)/tests $(BUILD)/inst

distclean:
	rm -rf $(BUILD) config.mk
