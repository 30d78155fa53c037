"""mode=exact: full mode's picture, computed in tiles with tile-bounded memory.

exact == full within 1 level (fp32; 0 in practice) for the ref and dnnl
backends, at frame sizes that are and are not multiples of 4 and at tile
sizes that are (after rounding up to 4) smaller than the receptive radius,
larger, odd, or the whole frame; the statistics exact writes equal full's;
mode=auto gives full for an image within the budget and exact (the same
picture) above it; the cuda backend refuses exact with a clear message.

Run with -s to see the measured differences.
"""
import os
import re

import numpy as np
import pytest

import torch_reference as tr
from test_tin import content_image

C_THREADS = os.environ.get("STYLIZE_TEST_THREADS", "2")


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("exact_models")
    out = {}
    for name, widths, blocks, k, seed in [("half", (16, 32, 64), 3, 9, 31), ("odd", (8, 16, 24), 1, 5, 32)]:
        path = d / (name + ".safetensors")
        tr.save_safetensors_model(tr.random_model(widths, blocks, k, seed=seed), path,
                                  {"format": "stylize", "format_version": "1",
                                   "architecture": "transformer_net", "style": name})
        out[name] = path
    return out


def stylize(build, tmp, model, img, *opts, stats=False):
    src, dst, st = tmp / "in.png", tmp / "out.png", tmp / "stats.bin"
    tr.write_png(src, img)
    extra = ["--stats-out", st] if stats else []
    build.run("stylize-image", "-m", model, "--threads", C_THREADS, *opts, *extra, src, dst, check=True)
    out = tr.read_png(dst).astype(np.int16)
    return (out, tr.read_stats(st)) if stats else out


BACKENDS = [("ref", "fp32"), ("dnnl", "fp32")]


def memory_kib(build, tmp, model, *opts):
    """(working memory in KiB, mode) that stylize-image --verbose reports for tmp/in.png."""
    r = build.run("stylize-image", "-m", model, "--verbose", *opts, tmp / "in.png", tmp / "mem.png", check=True)
    m = re.search(r"mode (\w+).*, (\d+) KiB of working memory", r.stderr)
    return int(m.group(2)), m.group(1)


def tiles_only_budget(build, tmp, model, *opts):
    """A max_memory just above what exact mode's tiles need: too small for
    any activation cache, so every pass starts from the frame."""
    r = build.run("stylize-image", "-m", model, "--max-memory", 1, *opts, tmp / "in.png", tmp / "mem.png")
    need = int(re.search(r"needs (\d+) MiB", r.stderr).group(1))
    return "%dK" % ((need + 1) * 1024 + 256)


@pytest.mark.parametrize("backend,precision", BACKENDS, ids=[b for b, _ in BACKENDS])
@pytest.mark.parametrize("w,h", [(203, 157), (96, 64), (61, 133)])
def test_exact_equals_full(release, models, tmp_path, backend, precision, w, h):
    img = content_image(w, h, 5)
    be = ["--backend", backend, "--precision", precision]
    full, s_full = stylize(release, tmp_path, models["half"], img, "--mode", "full", *be, stats=True)
    for tile in [13, 40, 0]:
        ex_opts = ["--mode", "exact", "--tile", tile, *be]
        # the default budget keeps the residual trunk's activations (fewer
        # layers per pass); a tight one recomputes everything from the frame
        budgets = {"cached": "0", "recomputed": tiles_only_budget(release, tmp_path, models["half"], *ex_opts)}
        mem = {k: memory_kib(release, tmp_path, models["half"], *ex_opts, "--max-memory", v)[0]
               for k, v in budgets.items()}
        assert mem["cached"] > mem["recomputed"]
        for kind, budget in budgets.items():
            ex, s_ex = stylize(release, tmp_path, models["half"], img, *ex_opts, "--max-memory", budget, stats=True)
            d = np.abs(ex - full)
            rel = np.max(np.abs(s_ex - s_full) / (np.abs(s_full) + 1e-3))
            print("\n  %s %dx%d tile %d %s (%d KiB): exact vs full max |diff| %d (%d values differ), "
                  "statistics max rel. diff %.2g" % (backend, w, h, tile, kind, mem[kind], d.max(), (d > 0).sum(), rel))
            assert d.max() <= 1
            assert rel < 1e-4


def test_exact_equals_full_sanitized(any_build, models, tmp_path):
    # every build (ASan/UBSan too): a small frame, the 5x5 one-block model
    img = content_image(45, 37, 2)
    full = stylize(any_build, tmp_path, models["odd"], img, "--mode", "full", "--backend", "ref")
    for budget in ["0", "300K"]:  # with and without the activation cache
        ex = stylize(any_build, tmp_path, models["odd"], img, "--mode", "exact", "--tile", 12, "--backend", "ref",
                     "--max-memory", budget)
        assert np.abs(ex - full).max() <= 1


def test_auto_picks_full_then_exact(release, models, tmp_path):
    img = content_image(203, 157, 4)
    full = stylize(release, tmp_path, models["half"], img, "--mode", "full", "--backend", "ref")
    auto = stylize(release, tmp_path, models["half"], img, "--backend", "ref")  # default: auto, 1 GiB
    assert np.array_equal(auto, full)
    # a budget below full's need: an image is a still, so auto takes exact
    squeezed = stylize(release, tmp_path, models["half"], img, "--backend", "ref", "--max-memory", "3M",
                       "--tile", 48)
    assert np.abs(squeezed - full).max() <= 1
    tin = stylize(release, tmp_path, models["half"], img, "--backend", "ref", "--mode", "tin", "--thumb", 64)
    assert np.abs(tin - full).max() > 8  # so the comparison above does tell exact from tin
    r = release.run("stylize-image", "-m", models["half"], "--backend", "ref", "--mode", "full",
                    "--max-memory", "3M", tmp_path / "in.png", tmp_path / "o.png")
    assert r.returncode != 0 and "mode=exact" in r.stderr


def test_cuda_refuses_exact(release, models, tmp_path):
    r = release.run("stylize-image", "-m", models["odd"], "--backend", "cuda", "--mode", "exact", "--info")
    if "not built" in r.stderr or "cannot run" in r.stderr:
        pytest.skip("cuda backend unavailable here: " + r.stderr.strip())
    assert r.returncode != 0 and "mode=exact is not implemented by the cuda backend" in r.stderr
