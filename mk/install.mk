# `make install` / `make uninstall` (PREFIX, DESTDIR, PROGRAM_SUFFIX): the
# library, its header and stylize.pc, the models, ffmpeg/ffprobe/ffplay with
# the filter, stylize-image, stylize-player, stylize-batch, stylize-convert
# and the man pages. Included by the top-level Makefile after every other
# mk/*.mk (it uses their variables).
#
# Installed programs must not depend on this tree: the build tree's library
# falls back to the source tree's models/ (handy when running build/bin/*),
# the installed one must not. So the installed programs are linked here,
# under $(BUILD)/inst, against a second libstylize whose model_path.o is
# compiled for PREFIX and without that fallback; every other object (the
# core's, the player's, FFmpeg's) is the one already built. FFmpeg's own make
# relinks its programs under another name (PROGSSUF=-inst), with the install
# library first on the linker's path.
#
# Layout under DESTDIR/PREFIX (S = PROGRAM_SUFFIX, -stylize by default):
#   bin/ffmpegS ffprobeS ffplayS stylize-image stylize-player
#   bin/stylize-batch stylize-convert          launchers (python3) of
#   share/stylize/python/                      the scripts from tools/
#   libexec/stylize/ffmpeg, ffprobe            links to bin/ffmpegS, ffprobeS
#                                              (what stylize-batch runs)
#   lib/libstylize.a .so .so.0, lib/pkgconfig/stylize.pc, include/stylize.h
#   share/stylize/models/*.safetensors
#   share/man/man1/ffmpegS.1 ffprobeS.1 ffplayS.1 ffmpeg-filtersS.1 ffmpeg-allS.1

PROGRAM_SUFFIX ?= -stylize
INST := $(BUILD)/inst
INST_LIB_A := $(INST)/lib/libstylize.a
INST_LIB_SO := $(INST)/lib/libstylize.so
INST_CORE_OBJ := $(patsubst $(OBJ)/model_path.o,$(INST)/obj/model_path.o,$(CORE_OBJ))
STYLIZE_VERSION := $(shell sed -n 's/^\#define STYLIZE_VERSION_\(MAJOR\|MINOR\|PATCH\) *\([0-9]*\).*/\2/p' core/include/stylize.h | paste -sd. -)
INST_MODELS := $(wildcard models/*.safetensors models/LICENSE-*.txt)  # BSD models need their notice beside them
INST_PYTHON := tools/stylize-batch tools/convert_model.py tools/stylize_safetensors.py
INST_MAN := ffmpeg ffprobe ffplay ffmpeg-filters ffmpeg-all
D := $(DESTDIR)$(PREFIX)
INST_CFLAGS = $(filter-out $(TREE_MODEL_FLAGS),$(CORE_CFLAGS))

.PHONY: install install-lib install-ffmpeg uninstall

# A change of PREFIX (on the command line too) recompiles model_path.o.
$(INST)/prefix: FORCE
	@mkdir -p $(dir $@) && printf '%s\n' '$(PREFIX)' >$@.tmp && { cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@; }

$(INST)/obj/model_path.o: core/src/model_path.c $(CORE_HDR) config.mk $(INST)/prefix
	@mkdir -p $(dir $@)
	$(CC) $(INST_CFLAGS) -DSTYLIZE_MODEL_DIR='"$(PREFIX)/share/stylize/models"' -c $< -o $@
$(INST_LIB_A): $(INST_CORE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^
$(INST_LIB_SO): $(INST_CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-soname,libstylize.so.0 -o $@ $^ $(CORE_LIBS)
$(INST)/bin/stylize-image: core/cli/stylize_image.c $(INST_LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(INST_CFLAGS) $(CLI_CFLAGS) $< -o $@ $(INST_LIB_A) $(CLI_LIBS) $(CORE_LIBS)

# The pkg-config file (rewritten every time: PREFIX may come from the command line).
$(INST)/stylize.pc: FORCE
	@mkdir -p $(dir $@)
	printf 'prefix=%s\nlibdir=$${prefix}/lib\nincludedir=$${prefix}/include\n\nName: stylize\nDescription: neural style transfer with thumbnail instance normalization\nVersion: %s\nRequires.private: json-c\nCflags: -I$${includedir}\nLibs: -L$${libdir} -lstylize\nLibs.private: %s\n' \
		"$(PREFIX)" "$(STYLIZE_VERSION)" "$(filter-out -ljson-c,$(CORE_LIBS))" >$@

# A launcher for a script of tools/ installed in share/stylize/python: it
# finds the prefix from its own location, so a moved prefix still works.
# $(1) = launcher name, $(2) = script, $(3) = extra Python lines.
define inst_launcher
$(INST)/bin/$(1): FORCE
	@mkdir -p $$(dir $$@)
	@printf '%s\n' '#!/usr/bin/python3' \
		'"""$(1): runs $(2) of stylize (installed by make install)."""' \
		'import os' 'import sys' \
		'prefix = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))' \
		$(3) \
		'script = os.path.join(prefix, "share", "stylize", "python", "$(2)")' \
		'os.execv("/usr/bin/python3", ["/usr/bin/python3", script] + sys.argv[1:])' >$$@.tmp
	@chmod 755 $$@.tmp && mv $$@.tmp $$@
endef
# stylize-batch runs this prefix's ffmpeg unless told otherwise.
INST_BATCH_ENV := 'os.environ.setdefault("STYLIZE_FFMPEG", os.path.join(prefix, "libexec", "stylize", "ffmpeg"))'
$(eval $(call inst_launcher,stylize-convert,convert_model.py,))
$(eval $(call inst_launcher,stylize-batch,stylize-batch,$(INST_BATCH_ENV)))

install-lib: $(INST_LIB_A) $(INST_LIB_SO) $(INST)/bin/stylize-image $(INST)/stylize.pc $(INST)/bin/stylize-convert
	install -d $(D)/lib/pkgconfig $(D)/include $(D)/bin $(D)/share/stylize/models $(D)/share/stylize/python
	install -m 644 $(INST_LIB_A) $(D)/lib/
	install -m 755 $(INST_LIB_SO) $(D)/lib/libstylize.so.0
	ln -sf libstylize.so.0 $(D)/lib/libstylize.so
	install -m 644 core/include/stylize.h $(D)/include/
	install -m 644 $(INST)/stylize.pc $(D)/lib/pkgconfig/
	install -m 755 $(INST)/bin/stylize-image $(INST)/bin/stylize-convert $(D)/bin/
	$(if $(INST_MODELS),install -m 644 $(INST_MODELS) $(D)/share/stylize/models/)
	install -m 644 tools/convert_model.py tools/stylize_safetensors.py $(D)/share/stylize/python/

ifeq ($(ENABLE_FFMPEG),yes)
INST_FF_OBJ := $(FFD)/obj

# FFmpeg's make relinks ffmpeg-inst etc. from its objects (PROGSSUF only
# names the programs); -L$(INST)/lib in LDEXEFLAGS, which comes before the
# libraries on FFmpeg's link line, makes -l:libstylize.a the installed library. Relinked every time: FFmpeg does not track libstylize.
$(INST)/ff.stamp: ffmpeg $(INST_LIB_A) FORCE
	rm -f $(foreach p,$(FF_PROGS),$(INST_FF_OBJ)/$(p)-inst $(INST_FF_OBJ)/$(p)-inst_g)
	+MAKEFLAGS="$${MAKEFLAGS%% -- *}" $(MAKE) -C $(INST_FF_OBJ) PROGSSUF=-inst \
		LDEXEFLAGS="-L$(abspath $(INST)/lib) $$(sed -n 's/^LDEXEFLAGS=//p' $(INST_FF_OBJ)/ffbuild/config.mak)" \
		$(addsuffix -inst,$(FF_PROGS))
	@mkdir -p $(INST)/bin && for p in $(FF_PROGS); do mv -f $(INST_FF_OBJ)/$$p-inst $(INST)/bin/$$p; \
		rm -f $(INST_FF_OBJ)/$$p-inst_g; done
	touch $@

$(INST)/bin/stylize-player: $(PLAYER_OBJ) $(PLAYER_FF_LIBS) $(INST_LIB_A)
	@mkdir -p $(dir $@)
	$(CC) -pthread -o $@ $(PLAYER_OBJ) $(PLAYER_FF_LIBS) $(PLAYER_FF_EXTRALIBS) $(INST_LIB_A) $(PLAYER_LIBS)

# The man pages are made after the relink: both run FFmpeg's make in its obj/.
install-ffmpeg: $(INST)/ff.stamp $(INST)/bin/stylize-player $(INST)/bin/stylize-batch install-lib
	+$(MAKE) --no-print-directory ffmpeg-doc
	install -d $(D)/bin $(D)/libexec/stylize $(D)/share/man/man1 $(D)/share/stylize/python
	for p in $(FF_PROGS); do install -m 755 $(INST)/bin/$$p $(D)/bin/$$p$(PROGRAM_SUFFIX) || exit 1; done
	ln -sfn ../../bin/ffmpeg$(PROGRAM_SUFFIX) $(D)/libexec/stylize/ffmpeg
	ln -sfn ../../bin/ffprobe$(PROGRAM_SUFFIX) $(D)/libexec/stylize/ffprobe
	install -m 755 $(INST)/bin/stylize-player $(INST)/bin/stylize-batch $(D)/bin/
	install -m 755 tools/stylize-batch $(D)/share/stylize/python/
	for m in $(INST_MAN); do install -m 644 $(BUILD)/share/man/man1/$$m.1 $(D)/share/man/man1/$$m$(PROGRAM_SUFFIX).1 || exit 1; done
install: install-ffmpeg
endif

install: install-lib
	@echo "installed in $(D)$(if $(filter yes,$(ENABLE_FFMPEG)),; the programs: ffmpeg$(PROGRAM_SUFFIX) ffprobe$(PROGRAM_SUFFIX) ffplay$(PROGRAM_SUFFIX) stylize-player stylize-batch) stylize-image stylize-convert"

# Removes exactly what install puts there (models added by hand stay), then
# the folders it made if they are left empty.
uninstall:
	rm -f $(D)/lib/libstylize.a $(D)/lib/libstylize.so $(D)/lib/libstylize.so.0 \
		$(D)/include/stylize.h $(D)/lib/pkgconfig/stylize.pc \
		$(addprefix $(D)/bin/,stylize-image stylize-convert stylize-batch stylize-player \
			$(addsuffix $(PROGRAM_SUFFIX),$(FF_PROGS))) \
		$(D)/libexec/stylize/ffmpeg $(D)/libexec/stylize/ffprobe \
		$(addprefix $(D)/share/stylize/models/,$(notdir $(INST_MODELS))) \
		$(addprefix $(D)/share/stylize/python/,$(notdir $(INST_PYTHON))) \
		$(foreach m,$(INST_MAN),$(D)/share/man/man1/$(m)$(PROGRAM_SUFFIX).1)
	-rmdir $(D)/share/stylize/models $(D)/share/stylize/python $(D)/share/stylize $(D)/libexec/stylize 2>/dev/null
