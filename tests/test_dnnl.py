"""The oneDNN backend (`--backend dnnl`) against PyTorch and the ref backend.

Run with -s to see the measured differences and PSNRs, e.g.
    STYLIZE_BUILD=$PWD/build /usr/bin/python3 -m pytest -s tests/test_dnnl.py

The module is skipped when stylize-image has no dnnl backend (configure found
no oneDNN, or --disable-dnnl) or oneDNN cannot run on this machine.

* fp32 full mode vs PyTorch float64 (tools/torch_reference.py, the same
  weights): random models (32/64/128 x 5 blocks, 16/32/64 x 3, 8/16/24 x 1
  with 5x5 outer kernels) and the converted mosaic.pth, at 1x1, 7x5, 203x151
  and 517x333 (one model): every 8-bit value within 1 level, few off by 1.
* fp32 dnnl vs fp32 ref, full / tin / patch: within 1 level.
* tiled tin == untiled tin: within 1 level in fp32; bf16: within
  BF16_TILE_LEVELS levels (where the CPU has bf16).
* bf16 vs fp32: PSNR >= 40 dB on Kodak crops with mosaic (printed per image;
  where the CPU has AVX512-BF16 or AMX).
* precision=bf16 on a CPU without bf16: a clear error; precision=auto picks
  bf16 exactly where it is faster than fp32 (AMX, or AVX512-BF16 on AMD).
* uniform frames (black, one colour) give PyTorch's flat output (the
  rounding-noise floor of backend_dnnl.c).
"""
import json
import os
import subprocess

import numpy as np
import pytest
import torch

from conftest import CPU_HAS_BF16, CPU_WORDS, RELEASE, SHARED

import torch_reference as tr
from test_reference import Models

torch.set_num_threads(int(os.environ.get("STYLIZE_TORCH_THREADS", "1")))
C_THREADS = os.environ.get("STYLIZE_TEST_THREADS", "2")

MAX_FRAC_OFF_BY_ONE = 0.005  # fraction of values allowed to differ by 1 level
BF16_TILE_LEVELS = 2         # tiled vs untiled tin in bf16
BF16_MIN_PSNR = 40.0

RANDOM_MODELS = {  # name -> (widths, res_blocks, kernel, seed)
    "rand-full": ((32, 64, 128), 5, 9, 31),
    "rand-half": ((16, 32, 64), 3, 9, 32),
    "rand-odd": ((8, 16, 24), 1, 5, 33),
}


def _dnnl_info():
    exe = RELEASE.root / "bin" / "stylize-image"
    if not exe.exists():
        return None, "%s is missing: run `make lib tools` first" % exe
    import tempfile
    with tempfile.TemporaryDirectory() as d:  # --info needs a model: a tiny random one
        path = os.path.join(d, "m.safetensors")
        tr.save_safetensors_model(tr.random_model((8, 16, 24), 1, 5, seed=1), path,
                                  {"format": "stylize", "format_version": "1",
                                   "architecture": "transformer_net"})
        p = subprocess.run([str(exe), "-m", path, "--backend", "dnnl", "--info"],
                           capture_output=True, text=True)
    if p.returncode:
        return None, p.stderr.strip()
    return json.loads(p.stdout), ""


INFO, WHY = _dnnl_info()
if INFO is None:
    pytest.skip("dnnl backend not usable: " + WHY, allow_module_level=True)


HAS_BF16 = CPU_HAS_BF16
# where bf16 beats fp32, so precision=auto picks it: AMX, or AVX512-BF16 on AMD
BF16_IS_FASTER = "amx_bf16" in CPU_WORDS or ("avx512_bf16" in CPU_WORDS and "AuthenticAMD" in CPU_WORDS)
needs_bf16 = pytest.mark.skipif(not HAS_BF16, reason="the CPU has neither AVX512-BF16 nor AMX-BF16")


# ---------------------------------------------------------------------------
# models, images, running the CLI

@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return Models(tmp_path_factory.mktemp("dnnl_models"), RANDOM_MODELS)


def kodak_files():
    return sorted((SHARED / "media" / "kodak").glob("kodim*.png"))


def image(w, h, index=0):
    """A W x H crop of a Kodak image (landscape), or seeded noise without ../shared."""
    files = kodak_files()
    if not files:
        return np.random.default_rng(1000 * w + h).integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = tr.read_png(files[index % len(files)])
    if img.shape[0] > img.shape[1]:
        img = img.transpose(1, 0, 2)
    y0, x0 = (img.shape[0] - h) * 2 // 5, (img.shape[1] - w) * 3 // 5
    return np.ascontiguousarray(img[y0:y0 + h, x0:x0 + w])


class Runner:
    def __init__(self, tmp):
        self.tmp, self.n = tmp, 0

    def __call__(self, model_path, img, *opts, expect_fail=False):
        self.n += 1
        src, dst = self.tmp / ("in%d.png" % self.n), self.tmp / ("out%d.png" % self.n)
        tr.write_png(src, img)
        proc = RELEASE.run("stylize-image", "-m", model_path, "--threads", C_THREADS, *opts, src, dst)
        if expect_fail:
            return proc
        if proc.returncode:
            pytest.fail("stylize-image %s exited %d:\n%s" % (" ".join(map(str, opts)), proc.returncode,
                                                             proc.stderr))
        out = tr.read_png(dst)
        assert out.shape == img.shape
        return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return Runner(tmp_path_factory.mktemp("dnnl_run"))


def diff(a, b):
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return int(d.max()), float((d == 1).mean())


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


FP32 = ("--backend", "dnnl", "--precision", "fp32")


# ---------------------------------------------------------------------------
# fp32 against PyTorch (full mode)

FULL_CASES = [(m, s) for m in ("rand-full", "rand-half", "rand-odd", "mosaic")
              for s in ((1, 1), (7, 5), (203, 151))] + [("mosaic", (517, 333))]


@pytest.mark.parametrize("model_name,size", FULL_CASES, ids=lambda v: "%dx%d" % v if isinstance(v, tuple) else v)
def test_full_fp32_matches_pytorch(run, models, model_name, size):
    w, h = size
    path, model = models.get(model_name)
    img = image(w, h, index=w + h)
    ref = tr.to_uint8(tr.stylize_float(model, img))
    out = run(path, img, *FP32, "--mode", "full")
    dmax, frac = diff(out, ref)
    print("\n  %-10s %4dx%-4d dnnl fp32 full vs PyTorch float64: max %d, off by 1 %.4f%%"
          % (model_name, w, h, dmax, 100 * frac))
    assert dmax <= 1
    assert frac <= MAX_FRAC_OFF_BY_ONE


# ---------------------------------------------------------------------------
# fp32 against the ref backend

@pytest.mark.parametrize("mode", ["full", "tin", "patch"])
@pytest.mark.parametrize("model_name", ["rand-half", "mosaic"])
def test_fp32_matches_ref_backend(run, models, model_name, mode):
    path, _ = models.get(model_name)
    img = image(259, 190, index=3)
    opts = ("--mode", mode, "--tile", "96", "--thumb", "128")
    a = run(path, img, "--backend", "ref", *opts)
    b = run(path, img, *FP32, *opts)
    dmax, frac = diff(a, b)
    print("\n  %-10s %-5s dnnl fp32 vs ref: max %d, off by 1 %.4f%%" % (model_name, mode, dmax, 100 * frac))
    assert dmax <= 1
    assert frac <= MAX_FRAC_OFF_BY_ONE


# ---------------------------------------------------------------------------
# tiled tin == untiled tin

@pytest.mark.parametrize("precision", ["fp32", pytest.param("bf16", marks=needs_bf16)])
@pytest.mark.parametrize("tile", [40, 100, 256])
def test_tiled_tin_equals_untiled(run, models, precision, tile):
    path, _ = models.get("mosaic")
    img = image(301, 203, index=5)
    opts = ("--backend", "dnnl", "--precision", precision, "--mode", "tin", "--thumb", "128")
    untiled = run(path, img, *opts, "--tile", "0")
    tiled = run(path, img, *opts, "--tile", str(tile))
    dmax, frac = diff(tiled, untiled)
    bound = 1 if precision == "fp32" else BF16_TILE_LEVELS
    print("\n  %s tin tile %d vs untiled: max %d (bound %d), off by 1 %.4f%%"
          % (precision, tile, dmax, bound, 100 * frac))
    assert dmax <= bound


# ---------------------------------------------------------------------------
# bf16

@needs_bf16
def test_bf16_psnr_on_kodak(run, models):
    files = kodak_files()
    if not files:
        pytest.skip("no Kodak images in %s" % SHARED)
    path, _ = models.get("mosaic")
    worst = float("inf")
    for i, f in enumerate(files):
        img = tr.read_png(f)
        h, w = img.shape[:2]
        crop = np.ascontiguousarray(img[(h - 256) // 2:(h - 256) // 2 + 256, (w - 384) // 2:(w - 384) // 2 + 384])
        a = run(path, crop, *FP32, "--mode", "tin")
        b = run(path, crop, "--backend", "dnnl", "--precision", "bf16", "--mode", "tin")
        p = psnr(a, b)
        worst = min(worst, p)
        print("\n  %s 384x256: bf16 vs fp32 PSNR %.2f dB" % (f.name, p))
    assert worst >= BF16_MIN_PSNR


def test_precision_auto(models):
    path, _ = models.get("rand-odd")
    p = RELEASE.run("stylize-image", "-m", path, "--backend", "dnnl", "--precision", "auto", "--info", check=True)
    got = json.loads(p.stdout)["precision"]
    print("\n  precision auto -> %s (CPU bf16: %s, faster than fp32: %s)" % (got, HAS_BF16, BF16_IS_FASTER))
    assert got == ("bf16" if BF16_IS_FASTER else "fp32")


def test_bf16_unsupported_is_a_clear_error(models, run):
    if HAS_BF16:
        pytest.skip("this CPU has bf16: the error path cannot be reached")
    path, _ = models.get("rand-odd")
    proc = run(path, image(16, 16), "--backend", "dnnl", "--precision", "bf16", expect_fail=True)
    print("\n  " + proc.stderr.strip())
    assert proc.returncode != 0
    assert "bf16" in proc.stderr and ("AVX512-BF16" in proc.stderr or "AMX" in proc.stderr)


# ---------------------------------------------------------------------------
# uniform frames: instance norm on a constant map must give beta, not noise

@pytest.mark.parametrize("colour", [(0, 0, 0), (90, 140, 200), (255, 255, 255)])
@pytest.mark.parametrize("mode", ["full", "tin"])
def test_uniform_frame_stays_flat(run, models, colour, mode):
    path, model = models.get("mosaic")
    img = np.empty((72, 100, 3), np.uint8)
    img[:] = colour
    ref = tr.to_uint8(tr.stylize_float(model, img))
    out = run(path, img, *FP32, "--mode", mode, "--tile", "48")
    dmax, _ = diff(out, ref)
    print("\n  uniform %s %s: max |dnnl - PyTorch| %d, output std %.3f"
          % (colour, mode, dmax, out.reshape(-1, 3).std(axis=0).max()))
    assert dmax <= 1
