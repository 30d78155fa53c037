# stylize-player: live SDL2 preview (player/, docs/PLAYER.md). Included by the
# top-level Makefile after core/core.mk; uses the static FFmpeg that
# mk/ffmpeg.mk builds (libraries and headers of FFMPEG_VERSION) and libstylize.
#
# Targets:
#   player         $(BUILD)/bin/stylize-player and its ASan/UBSan build
#                  $(BUILD)/asan/bin/stylize-player (used by the leak test);
#                  builds FFmpeg first when needed
#   check-player   tests/test_player.py (headless: SDL_VIDEODRIVER=offscreen)
#
# Needs libsdl2-dev (SDL2 and its libSDL2_test font) and libpng-dev.

PLAYER := $(BUILD)/bin/stylize-player
PLAYER_ASAN := $(BUILD)/asan/bin/stylize-player
PLAYER_SRC := $(sort $(wildcard player/*.c))
PLAYER_HDR := $(wildcard player/*.h) core/include/stylize.h
PLAYER_OBJ := $(patsubst player/%.c,$(OBJ)/player/%.o,$(PLAYER_SRC))
PLAYER_ASAN_OBJ := $(patsubst player/%.c,$(BUILD)/asan/obj/player/%.o,$(PLAYER_SRC))

# FFmpeg's build of FFMPEG_VERSION (see mk/ffmpeg.mk for the layout).
PLAYER_FFD = $(or $(FFD_$(FFMPEG_VERSION)),$(abspath $(BUILD))/ffmpeg-$(FFMPEG_VERSION))
PLAYER_FFSRC = $(or $(FFSRC_$(FFMPEG_VERSION)),$(PLAYER_FFD)/src)
PLAYER_FFOBJ = $(PLAYER_FFD)/obj
PLAYER_FF_LIBNAMES := avdevice avfilter avformat avcodec swscale swresample avutil
PLAYER_FF_LIBS = $(foreach l,$(PLAYER_FF_LIBNAMES),$(PLAYER_FFOBJ)/lib$(l)/lib$(l).a)
# The system libraries FFmpeg's configure found (x264, zlib, ...), read when
# linking: libstylize itself is left out (linked here, release or ASan).
PLAYER_FF_EXTRALIBS = $$(sed -n 's/^EXTRALIBS-\(avdevice\|avfilter\|avformat\|avcodec\|swscale\|swresample\|avutil\)=//p' \
	$(PLAYER_FFOBJ)/ffbuild/config.mak | tr '\n' ' ' | sed 's/-l:libstylize[^ ]*//g')

PLAYER_PKGS := sdl2 libpng
# FFmpeg's and SDL's headers as system headers: our warnings only.
PLAYER_CFLAGS = -std=c11 -D_GNU_SOURCE -O2 -g $(WARN) -pthread -Icore/include -Iplayer \
	-isystem $(PLAYER_FFOBJ) -isystem $(PLAYER_FFSRC) \
	$(patsubst -I%,-isystem %,$(shell pkg-config --cflags $(PLAYER_PKGS)))
PLAYER_LIBS = -lSDL2_test $(shell pkg-config --libs $(PLAYER_PKGS)) $(CORE_LIBS)

.PHONY: player check-player
player: $(PLAYER) $(PLAYER_ASAN)

ifneq ($(ENABLE_FFMPEG),yes)
$(PLAYER) $(PLAYER_ASAN):
	@echo "stylize-player needs the project's FFmpeg: ./configure without --disable-ffmpeg (ENABLE_FFMPEG=yes)" >&2; exit 1
else
# The FFmpeg libraries come from mk/ffmpeg.mk's `ffmpeg` target (a no-op when
# up to date); the recipe makes make look at them again afterwards, so the
# player relinks when they change.
$(PLAYER_FF_LIBS): ffmpeg
	@test -f $@ || { echo "$@ is missing after building FFmpeg (see mk/ffmpeg.mk)" >&2; exit 1; }

# Objects need FFmpeg configured (its generated headers); a reconfigure recompiles them.
$(OBJ)/player/%.o: player/%.c $(PLAYER_HDR) $(PLAYER_FFOBJ)/config.stamp | $(OBJ)/player
	$(CC) $(PLAYER_CFLAGS) -c $< -o $@
$(BUILD)/asan/obj/player/%.o: player/%.c $(PLAYER_HDR) $(PLAYER_FFOBJ)/config.stamp | $(BUILD)/asan/obj/player
	$(CC) $(PLAYER_CFLAGS) -O1 $(SAN_FLAGS) -c $< -o $@

$(PLAYER): $(PLAYER_OBJ) $(PLAYER_FF_LIBS) $(LIBSTYLIZE_A) | $(BUILD)/bin
	$(CC) -pthread -o $@ $(PLAYER_OBJ) $(PLAYER_FF_LIBS) $(PLAYER_FF_EXTRALIBS) $(LIBSTYLIZE_A) $(PLAYER_LIBS)
$(PLAYER_ASAN): $(PLAYER_ASAN_OBJ) $(ASAN_OBJ) $(PLAYER_FF_LIBS) | $(BUILD)/asan/bin
	$(CC) -pthread $(SAN_FLAGS) -o $@ $(PLAYER_ASAN_OBJ) $(ASAN_OBJ) $(PLAYER_FF_LIBS) $(PLAYER_FF_EXTRALIBS) $(PLAYER_LIBS)
endif

$(OBJ)/player $(BUILD)/asan/obj/player:
	mkdir -p $@

check-player: player
	STYLIZE_BUILD=$(TOP)/$(BUILD) $(PYTHON) -m pytest -q -ra tests/test_player.py $(PYTEST_ARGS)
