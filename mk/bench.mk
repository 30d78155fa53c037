# Benchmark: build/bin/stylize-bench (one configuration per run, JSON out)
# and `make bench`, which runs tools/bench.py: every backend x precision x
# mode x threads at 720p/1080p/4K, the half-width model, 8K/16K tin scaling,
# and PyTorch on the same frames, into docs/BENCHMARK.md.
# Included by the top-level Makefile (after core/core.mk).

STYLIZE_BENCH := $(BUILD)/bin/stylize-bench
BENCH_ARGS ?=

.PHONY: bench-tools bench bench-live
bench-tools: $(STYLIZE_BENCH)

# built by `make` too, so a stylize-bench run by hand is never older than the library
all: bench-tools

$(STYLIZE_BENCH): core/cli/stylize_bench.c $(LIBSTYLIZE_A) | $(BUILD)/bin
	$(CC) $(CORE_CFLAGS) $< -o $@ $(LIBSTYLIZE_A) $(CORE_LIBS)

bench: bench-tools
	$(PYTHON) tools/bench.py --build $(BUILD) --output docs/BENCHMARK.md $(BENCH_ARGS)
	$(PYTHON) tools/bench_live.py --build $(BUILD) --output docs/BENCHMARK_LIVE.md

# The _live styles against their teachers only (640x480 and 720p, ffmpeg at 640x480).
bench-live: bench-tools
	$(PYTHON) tools/bench_live.py --build $(BUILD) --output docs/BENCHMARK_LIVE.md
