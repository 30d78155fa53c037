"""Thumbnail instance normalization (tin mode) and the per-pixel options of
stylize-image, checked against the PyTorch reference (tools/torch_reference.py).

Run with -s to see the measured differences.

(a) tiled tin == untiled tin (--tile 0) at every pixel, for tiles smaller and
    larger than the overlap, on a 203x157 frame (not a multiple of 4);
(b) patch mode (each tile normalized by itself) differs from the untiled
    result: on statistically uniform content and without overlap the
    differences concentrate along tile borders, on natural content the
    per-tile statistics change everything and the borders show as seams;
(c) --stats-out equals the reference's thumbnail statistics, and the C tin
    output equals PyTorch run with those statistics;
(d) strength 0 returns the input, strength 0.5 the average of input and
    stylized frame;
(e) preserve-color keeps the input's chroma and the stylized luma;
(f) every --format gives the same output;
(g) --stats-in with the statistics of --stats-out reproduces the output;
and the model's receptive radius (what makes tiling seamless) is right.
"""
import json
import os

import numpy as np
import pytest
import torch

from conftest import SHARED

import torch_reference as tr

torch.set_num_threads(int(os.environ.get("STYLIZE_TORCH_THREADS", "1")))
C_THREADS = os.environ.get("STYLIZE_TEST_THREADS", "2")
# The portable fp32 backend is the one held to PyTorch's numbers; set
# STYLIZE_TEST_BACKEND=dnnl (or auto) to run these checks on another one.
C_BACKEND = os.environ.get("STYLIZE_TEST_BACKEND", "ref")

FRAME_W, FRAME_H = 203, 157  # neither a multiple of 4
THUMB = 64                    # the frame's thumbnail is 64x49 (area downscale)


# ---------------------------------------------------------------------------
# fixtures and helpers

@pytest.fixture(scope="session")
def half_model(tmp_path_factory):
    """A random half-width model (16/32/64, 3 residual blocks, 9x9 outer
    kernels): (.safetensors path, float64 torch model)."""
    path = tmp_path_factory.mktemp("tin_models") / "half.safetensors"
    model = tr.random_model((16, 32, 64), 3, 9, seed=21)
    tr.save_safetensors_model(model, path, {"format": "stylize", "format_version": "1",
                                            "architecture": "transformer_net", "style": "half"})
    return path, tr.load_safetensors_model(path).double()


@pytest.fixture(scope="session")
def odd_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("tin_models") / "odd.safetensors"
    model = tr.random_model((8, 16, 24), 1, 5, seed=22)
    tr.save_safetensors_model(model, path, {"format": "stylize", "format_version": "1",
                                            "architecture": "transformer_net", "style": "odd"})
    return path, tr.load_safetensors_model(path).double()


def content_image(w, h, index=0):
    """A W x H natural image: a Kodak crop when ../shared is there, else a
    synthetic image with gradients, edges and grain."""
    files = sorted((SHARED / "media" / "kodak").glob("kodim*.png"))
    if files:
        img = tr.read_png(files[index % len(files)])
        if img.shape[0] > img.shape[1]:
            img = img.transpose(1, 0, 2)
        y0, x0 = (img.shape[0] - h) // 3, (img.shape[1] - w) // 2
        return np.ascontiguousarray(img[y0:y0 + h, x0:x0 + w])
    return tr._calibration_image(h, w).round().astype(np.uint8)


@pytest.fixture(scope="session")
def frame():
    return content_image(FRAME_W, FRAME_H, 7)


class Runner:
    """Runs stylize-image of one build on a frame; caches results per options."""

    def __init__(self, build, tmp):
        self.build, self.tmp, self.cache, self.n = build, tmp, {}, 0

    def __call__(self, model_path, img, *opts, stats_out=False):
        key = (str(model_path), img.shape, img.tobytes()[:4096], hash(img.tobytes()), opts,
               stats_out)
        if key in self.cache:
            return self.cache[key]
        self.n += 1
        src, dst = self.tmp / ("in%d.png" % self.n), self.tmp / ("out%d.png" % self.n)
        st = self.tmp / ("stats%d.bin" % self.n)
        tr.write_png(src, img)
        extra = ["--stats-out", st] if stats_out else []
        self.build.run("stylize-image", "-m", model_path, "--threads", C_THREADS,
                       "--backend", C_BACKEND, *opts, *extra, src, dst, check=True)
        out = tr.read_png(dst)
        assert out.shape == img.shape
        res = (out, tr.read_stats(st)) if stats_out else out
        self.cache[key] = res
        return res


@pytest.fixture(scope="session")
def runners(tmp_path_factory):
    return {}


@pytest.fixture
def run(any_build, runners, tmp_path_factory):
    if any_build.name not in runners:
        runners[any_build.name] = Runner(any_build, tmp_path_factory.mktemp("tin_" + any_build.name))
    return runners[any_build.name]


@pytest.fixture
def run_release(release, runners, tmp_path_factory):
    if release.name not in runners:
        runners[release.name] = Runner(release, tmp_path_factory.mktemp("tin_" + release.name))
    return runners[release.name]


def absdiff(a, b):
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


# ---------------------------------------------------------------------------
# (a) tiled == untiled

@pytest.mark.parametrize("tile", [16, 40, 64, 100])
def test_tiled_tin_equals_untiled(run_release, half_model, frame, tile):
    path, model = half_model
    untiled = run_release(path, frame, "--mode", "tin", "--thumb", THUMB, "--tile", 0)
    tiled = run_release(path, frame, "--mode", "tin", "--thumb", THUMB, "--tile", tile)
    d = absdiff(tiled, untiled)
    print("\n  tin %dx%d, tile %d (overlap auto = %d -> multiple of 4) vs --tile 0: "
          "max |diff| %d, %d values differ" % (FRAME_W, FRAME_H, tile, model.receptive_radius(),
                                               d.max(), (d > 0).sum()))
    assert d.max() <= 1
    assert (d > 0).mean() < 1e-3


def test_tiled_tin_equals_untiled_sanitized(run, odd_model):
    # every build (ASan/UBSan too), a smaller frame and model
    path, _ = odd_model
    img = content_image(61, 45, 3)
    untiled = run(path, img, "--mode", "tin", "--thumb", 32, "--tile", 0)
    tiled = run(path, img, "--mode", "tin", "--thumb", 32, "--tile", 16)
    d = absdiff(tiled, untiled)
    print("\n  %s: tin 61x45 tile 16 vs untiled: max |diff| %d" % (run.build.name, d.max()))
    assert d.max() <= 1 and (d > 0).mean() < 1e-3


def test_tiled_tin_explicit_overlap(run_release, half_model, frame):
    # an explicit overlap at least the receptive radius is as good as auto
    path, model = half_model
    untiled = run_release(path, frame, "--mode", "tin", "--thumb", THUMB, "--tile", 0)
    tiled = run_release(path, frame, "--mode", "tin", "--thumb", THUMB, "--tile", 48,
                        "--overlap", model.receptive_radius() + 8)
    assert absdiff(tiled, untiled).max() <= 1


# ---------------------------------------------------------------------------
# (b) patch mode shows seams

PATCH_W, PATCH_H, PATCH_TILE = 384, 256, 128  # multiples of the tile: 3x2 tiles


def _border_distance(w, h, tile):
    """Distance of every pixel centre to the nearest interior tile border."""
    bx, by = np.arange(tile, w, tile), np.arange(tile, h, tile)
    dx = np.min(np.abs(np.arange(w)[:, None] + 0.5 - bx[None, :]), axis=1)
    dy = np.min(np.abs(np.arange(h)[:, None] + 0.5 - by[None, :]), axis=1)
    return np.minimum(dy[:, None], dx[None, :]), bx, by


def _jumps(img, bx, by):
    """Mean |difference| between neighbouring pixels across the tile borders,
    and elsewhere."""
    f = img.astype(np.float64)
    jx = np.abs(np.diff(f, axis=1)).mean(axis=(0, 2))  # jx[i]: columns i and i+1
    jy = np.abs(np.diff(f, axis=0)).mean(axis=(1, 2))
    at = np.concatenate([jx[bx - 1], jy[by - 1]]).mean()
    elsewhere = np.concatenate([np.delete(jx, bx - 1), np.delete(jy, by - 1)]).mean()
    return at, elsewhere


def test_patch_mode_differences_at_tile_borders(run_release, half_model):
    """Statistically uniform content (noise), so per-tile statistics are close
    to the frame's: without overlap, patch mode's differences from the
    untiled result concentrate along the tile borders (missing context)."""
    path, model = half_model
    w, h, tile = PATCH_W, PATCH_H, PATCH_TILE
    img = np.random.default_rng(3).integers(0, 256, (h, w, 3), dtype=np.uint8)
    full = run_release(path, img, "--mode", "full")
    patch = run_release(path, img, "--mode", "patch", "--tile", tile, "--overlap", 0)
    d = absdiff(patch, full).mean(axis=2)
    dist, _, _ = _border_distance(w, h, tile)
    far = model.receptive_radius() + 4
    band, centre = d[dist <= 4].mean(), d[dist >= far].mean()
    print("\n  patch tile %d overlap 0 vs untiled, noise %dx%d: mean |diff| %.2f within 4 px of "
          "a tile border, %.2f farther than %d px (ratio %.1f)"
          % (tile, w, h, band, centre, far, band / max(centre, 1e-9)))
    assert band > 10
    assert band > 5 * centre


def test_patch_mode_seams(run_release, half_model):
    """Natural content: patch mode's per-tile statistics change every tile,
    and the tile borders show as jumps; tin tiles do not."""
    path, _ = half_model
    w, h, tile = PATCH_W, PATCH_H, PATCH_TILE
    img = content_image(w, h, 0)
    _, bx, by = _border_distance(w, h, tile)
    full = run_release(path, img, "--mode", "full")
    rows = {}
    for label, opts in (("full", ()), ("patch, overlap 0", ("--overlap", 0)),
                        ("patch, auto overlap", ())):
        out = full if label == "full" else run_release(
            path, img, "--mode", "patch", "--tile", tile, *opts)
        rows[label] = (absdiff(out, full).mean(),) + _jumps(out, bx, by)
    tin_tiled = run_release(path, img, "--mode", "tin", "--tile", tile)
    tin_untiled = run_release(path, img, "--mode", "tin", "--tile", 0)
    rows["tin"] = (absdiff(tin_tiled, tin_untiled).mean(),) + _jumps(tin_tiled, bx, by)
    print()
    for label, (dm, at, el) in rows.items():
        print("  %-20s tile %d, %dx%d image: mean |diff| from untiled %5.2f; mean jump "
              "across tile borders %5.1f, elsewhere %5.1f" % (label, tile, w, h, dm, at, el))
    f_at = rows["full"][1]
    assert rows["patch, overlap 0"][0] > 5 and rows["patch, auto overlap"][0] > 2
    assert rows["patch, overlap 0"][1] > 1.5 * rows["patch, overlap 0"][2]
    assert rows["patch, overlap 0"][1] > 1.5 * f_at
    assert rows["patch, auto overlap"][1] > f_at
    assert rows["tin"][0] < 0.01 and abs(rows["tin"][1] - f_at) < 0.2 * f_at


# ---------------------------------------------------------------------------
# (c) TIN statistics and output vs PyTorch

def _layer_slices(model):
    pos = 0
    for name, c in zip(model.norm_names(), model.norm_widths()):
        yield name, slice(pos, pos + c), slice(pos + c, pos + 2 * c)
        pos += 2 * c


@pytest.mark.parametrize("thumb", [THUMB, 512])
def test_tin_stats_and_output_match_pytorch(run_release, half_model, frame, thumb):
    # the thumbnail's statistics alone (--exact-layers 0)
    path, model = half_model
    out, c_stats = run_release(path, frame, "--mode", "tin", "--thumb", thumb, "--exact-layers", 0,
                               "--tin-stats", "thumbnail", stats_out=True)
    ref_stats = tr.thumbnail_stats(model, frame, thumb)
    assert c_stats.shape == ref_stats.shape == (model.stats_size(),)
    worst = 0.0
    for name, ms, vs in _layer_slices(model):
        for what, sl in (("mean", ms), ("var", vs)):
            c, r = c_stats[sl].astype(np.float64), ref_stats[sl].astype(np.float64)
            scale = max(np.abs(r).max(), 1e-6)
            err = np.abs(c - r) / (np.abs(r) + 1e-3 * scale)  # relative, floored per layer
            worst = max(worst, err.max())
            assert err.max() < 1e-3, "%s %s: C %s vs PyTorch %s" % (name, what, c, r)
    for _, _, vs in _layer_slices(model):
        assert (c_stats[vs] >= 0).all()
    # C's tin output vs PyTorch run with C's statistics
    ref = tr.stylize_float(model, frame, stats=c_stats)
    d = absdiff(out, tr.to_uint8(ref))
    th, tw = tr.thumbnail_size(FRAME_H, FRAME_W, thumb)
    print("\n  thumb %d (%dx%d): stats max relative error %.2g; tin output vs PyTorch with "
          "those stats: max |diff| %d, off by 1: %.3f%%"
          % (thumb, tw, th, worst, d.max(), 100 * (d == 1).mean()))
    assert d.max() <= 1 and (d == 1).mean() < 0.005
    # and PyTorch's own statistics give the same picture
    d2 = absdiff(out, tr.stylize(model, frame, stats=ref_stats))
    assert d2.max() <= 1


@pytest.mark.parametrize("estimator", ["thumbnail", "sample"])
@pytest.mark.parametrize("layers", [1, 2])
def test_tin_exact_layers(run_release, half_model, frame, layers, estimator):
    """--exact-layers N (default 1): the first N norm layers' statistics are
    the frame's own (full's, which tests/test_reference.py holds to PyTorch),
    the others the thumbnail's as with --exact-layers 0; tiled = untiled.
    (With the sample estimator the later layers depend on the first ones:
    test_tin_sample_stats_match_pytorch checks them.)"""
    path, model = half_model
    est = ("--tin-stats", estimator)
    _, full_stats = run_release(path, frame, "--mode", "full", stats_out=True)
    _, thumb_stats = run_release(path, frame, "--mode", "tin", "--thumb", THUMB, "--exact-layers", 0, *est,
                                 stats_out=True)
    out, st = run_release(path, frame, "--mode", "tin", "--thumb", THUMB, "--exact-layers", layers, "--tile", 40,
                          *est, stats_out=True)
    for i, (name, ms, vs) in enumerate(_layer_slices(model)):
        if i >= layers and estimator == "sample":
            break
        want = full_stats if i < layers else thumb_stats
        for sl in (ms, vs):
            err = np.abs(st[sl].astype(np.float64) - want[sl]) / (np.abs(want[sl]) + 1e-3 * np.abs(want[sl]).max())
            assert err.max() < 1e-4, (name, layers, err.max())
    untiled = run_release(path, frame, "--mode", "tin", "--thumb", THUMB, "--exact-layers", layers, "--tile", 0,
                          *est)
    assert absdiff(out, untiled).max() <= 1


SAMPLE_W, SAMPLE_H, SAMPLE_THUMB = 768, 512, 760  # a 3 x 2 grid of 256-pixel sample tiles (a whole Kodak image)


@pytest.fixture(scope="session")
def sample_frame():
    return content_image(SAMPLE_W, SAMPLE_H, 3)


def test_sample_plan_covers_the_frame():
    """The sample's tiles: inside the frame, on the tile alignment, disjoint,
    one per cell of a grid (so spread over the whole frame), about as many
    pixels as the thumbnail."""
    for (w, h, thumb) in ((SAMPLE_W, SAMPLE_H, SAMPLE_THUMB), (3840, 2160, 1184), (7680, 4320, 1184),
                          (2160, 3840, 1184), (1000, 300, 900), (4000, 40, 512)):
        th, tw = tr.thumbnail_size(h, w, thumb)
        side, origins = tr.sample_plan(h, w, th, tw)
        assert origins and side <= min(w, h)
        boxes = [(y, x, y + side, x + side) for y, x in origins]
        for y0, x0, y1, x1 in boxes:
            assert 0 <= x0 and x1 <= w and 0 <= y0 and y1 <= h and x0 % 4 == 0 and y0 % 4 == 0
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (w, h, a, b)
        area = len(origins) * side * side
        assert area <= 1.6 * th * tw or len(origins) == 1, (w, h, len(origins), side)
    side, origins = tr.sample_plan(SAMPLE_H, SAMPLE_W, *tr.thumbnail_size(SAMPLE_H, SAMPLE_W, SAMPLE_THUMB))
    assert side == 256 and len(origins) == 6


@pytest.mark.parametrize("layers", [0, 1])
def test_tin_sample_stats_match_pytorch(run_release, half_model, sample_frame, layers):
    """--tin-stats sample (the default): C's statistics equal the PyTorch
    reference of the estimator (tools/torch_reference.py sample_stats: no
    activation cache, every tile rerun from its pixels for every layer), and
    the tin output is PyTorch's run with them."""
    path, model = half_model
    out, c_stats = run_release(path, sample_frame, "--mode", "tin", "--thumb", SAMPLE_THUMB, "--exact-layers",
                               layers, "--tin-stats", "sample", stats_out=True)
    assert_stats_close(model, c_stats, tr.sample_stats(model, sample_frame, SAMPLE_THUMB, exact_layers=layers))
    d = absdiff(out, tr.stylize(model, sample_frame, stats=c_stats))
    assert d.max() <= 1 and (d == 1).mean() < 0.005


def assert_stats_close(model, c_stats, ref_stats):
    for name, ms, vs in _layer_slices(model):
        for what, sl in (("mean", ms), ("var", vs)):
            c, r = c_stats[sl].astype(np.float64), ref_stats[sl].astype(np.float64)
            err = np.abs(c - r) / (np.abs(r) + 1e-3 * max(np.abs(r).max(), 1e-6))
            assert err.max() < 1e-3, "%s %s: C %s vs PyTorch %s" % (name, what, c, r)


def test_auto_sample_grows_with_the_frame(run_release, odd_model):
    """With thumb auto, a frame with more than ten times the thumbnail's
    pixels is sampled by a tenth of them (at most 5x the thumbnail's): a
    thumbnail's worth of tiles covers less and less of a larger frame (2.4 %
    at 8K). Small tiles make the auto thumbnail 512 wide, so a 2304x512 frame
    already crosses the line: 2 sample tiles instead of the 1 of an explicit
    thumb=512, and C's statistics are PyTorch's for each plan."""
    path, model = odd_model
    frame = np.ascontiguousarray(np.concatenate([content_image(768, 512, i) for i in range(3)], axis=1))
    h, w = frame.shape[:2]
    th, tw = tr.thumbnail_size(h, w, 512)
    assert len(tr.sample_plan(h, w, th, tw)[1]) == 1
    assert len(tr.sample_plan(h, w, th, tw, thumb_auto=True)[1]) == 2
    base = ("--mode", "tin", "--tile", 128, "--exact-layers", 0, "--tin-stats", "sample")
    _, auto = run_release(path, frame, *base, "--thumb", 0, stats_out=True)
    _, fixed = run_release(path, frame, *base, "--thumb", 512, stats_out=True)
    assert_stats_close(model, auto, tr.sample_stats(model, frame, 512, thumb_auto=True))
    assert_stats_close(model, fixed, tr.sample_stats(model, frame, 512))
    assert np.abs(auto.astype(np.float64) - fixed).max() > 1e-3 * np.abs(fixed).max()


def test_tin_sample_without_cache_and_tiled(run_release, half_model, sample_frame):
    """The sample's statistics do not depend on the tiles, nor on whether its
    activation cache fits the memory budget (a small max_memory turns the
    cache off: every pass reruns the tiles from their pixels)."""
    path, model = half_model
    base = ("--mode", "tin", "--thumb", SAMPLE_THUMB, "--tin-stats", "sample")
    out, st = run_release(path, sample_frame, *base, "--tile", 0, stats_out=True)
    out2, st2 = run_release(path, sample_frame, *base, "--tile", 200, "--max-memory", "40M", stats_out=True)
    np.testing.assert_allclose(st2, st, rtol=1e-5, atol=1e-6)
    assert absdiff(out, out2).max() <= 1


def test_tin_sample_closer_to_full_than_thumbnail(run_release, half_model, sample_frame):
    """On a natural image the sample's statistics are closer to the frame's
    own (full's) than the thumbnail's are (the reason it is the default)."""
    path, model = half_model
    _, full = run_release(path, sample_frame, "--mode", "full", stats_out=True)
    errs = {}
    for est in ("sample", "thumbnail"):
        _, st = run_release(path, sample_frame, "--mode", "tin", "--thumb", SAMPLE_THUMB, "--exact-layers", 0,
                            "--tin-stats", est, stats_out=True)
        errs[est] = np.mean([np.abs(np.log((st[vs] + 1e-5) / (full[vs] + 1e-5))).mean()
                             for _, _, vs in _layer_slices(model)])
    assert errs["sample"] < errs["thumbnail"], errs


def test_tin_without_downscale_is_full(run_release, half_model, frame):
    # a frame no larger than the thumbnail: tin statistics = the frame's own;
    # in one tile it is drawn in full's one pass (bit for bit), in several
    # with the statistics of a separate pass (within rounding)
    path, model = half_model
    tin = run_release(path, frame, "--mode", "tin", "--thumb", 512, "--tile", 0)
    full = run_release(path, frame, "--mode", "full")
    assert absdiff(tin, full).max() == 0
    tiled = run_release(path, frame, "--mode", "tin", "--thumb", 512, "--tile", 64)
    assert absdiff(tiled, full).max() <= 1


# ---------------------------------------------------------------------------
# (d) strength

def test_strength(run, odd_model):
    path, _ = odd_model
    img = content_image(64, 48, 2)
    s0 = run(path, img, "--strength", 0)
    assert np.array_equal(s0, img)
    s1 = run(path, img, "--strength", 1)
    half = run(path, img, "--strength", 0.5)
    want = np.floor((img.astype(np.float64) + s1) / 2 + 0.5)
    d = np.abs(half - want)
    print("\n  %s: strength 0.5 vs rounded mean of input and strength 1: max |diff| %d"
          % (run.build.name, d.max()))
    assert d.max() <= 1
    assert absdiff(s1, img).mean() > 10  # the style did something


# ---------------------------------------------------------------------------
# (e) preserve color

def ycbcr(img):
    """BT.601 full-range (JPEG) YCbCr of an RGB image, float64."""
    f = img.astype(np.float64)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return y, cb, cr


def test_preserve_color(run_release, half_model, frame):
    path, _ = half_model
    styl = run_release(path, frame, "--thumb", THUMB)
    pc = run_release(path, frame, "--thumb", THUMB, "--preserve-color")
    y_in, cb_in, cr_in = ycbcr(frame)
    y_st, _, _ = ycbcr(styl)
    y_pc, cb_pc, cr_pc = ycbcr(pc)
    ok = ((pc > 0) & (pc < 255)).all(axis=2) & ((styl > 0) & (styl < 255)).all(axis=2)
    dcb, dcr = np.abs(cb_pc - cb_in)[ok], np.abs(cr_pc - cr_in)[ok]
    dy = np.abs(y_pc - y_st)[ok]
    print("\n  preserve-color on %.1f%% unclamped pixels: max |dCb| %.2f, |dCr| %.2f vs input, "
          "max |dY| %.2f vs stylized; chroma of the stylized frame differs by %.1f on average"
          % (100 * ok.mean(), dcb.max(), dcr.max(), dy.max(),
             np.abs(ycbcr(styl)[1] - cb_in).mean()))
    assert ok.mean() > 0.5
    assert dcb.max() <= 1.5 and dcr.max() <= 1.5 and dy.max() <= 1.5
    assert np.abs(y_pc - y_st).mean() < 1.0  # also on clamped pixels, luma is mostly kept


# ---------------------------------------------------------------------------
# (f) pixel formats

FORMATS = ["rgb24", "bgr24", "rgba", "gbrp", "gbrap"]


def test_pixel_formats_equivalent(run, odd_model):
    path, _ = odd_model
    img = content_image(45, 31, 4)
    outs = {f: run(path, img, "--thumb", 32, "--tile", 16, "--format", f) for f in FORMATS}
    for f in FORMATS[1:]:
        assert np.array_equal(outs[f], outs["rgb24"]), f


# ---------------------------------------------------------------------------
# (g) --stats-in

def test_stats_in_reproduces_output(run, odd_model):
    path, model = odd_model
    img = content_image(70, 50, 5)
    out, stats = run(path, img, "--thumb", 32, stats_out=True)
    assert stats.size == model.stats_size()
    st_path = run.tmp / "odd_stats.bin"
    tr.write_stats(st_path, stats)
    again = run(path, img, "--thumb", 32, "--stats-in", st_path)
    assert np.array_equal(again, out)
    # the statistics of another frame give another picture
    other = content_image(70, 50, 6)
    _, stats2 = run(path, other, "--thumb", 32, stats_out=True)
    tr.write_stats(run.tmp / "odd_stats2.bin", stats2)
    mixed = run(path, img, "--thumb", 32, "--stats-in", run.tmp / "odd_stats2.bin")
    assert not np.array_equal(mixed, out)
    ref = tr.stylize(model, img, stats=stats2)
    assert absdiff(mixed, ref).max() <= 1


# ---------------------------------------------------------------------------
# the receptive radius behind the overlap

def test_receptive_radius(release, half_model, odd_model):
    for path, model in (half_model, odd_model):
        proc = release.run("stylize-image", "--info", "-m", path, check=True)
        info = json.loads(proc.stdout)
        assert info["receptive_radius"] == model.receptive_radius()
        assert info["norm_layers"] == len(model.norm_names())
        assert info["res_blocks"] == model.res_blocks
    # empirical: support of an output pixel's gradient under fixed statistics
    _, model = odd_model
    img = np.random.default_rng(0).uniform(0, 255, (96, 96, 3))
    _, st = tr.stylize_float(model, img, record_stats=True)
    stats = tr.unflat_stats(model, st)
    radius = 0
    for phase in range(4):
        x = tr._to_tensor(img, torch.float64).requires_grad_(True)
        y = model(x, stats=stats)
        c = 48 + phase
        y[0, :, c, c].sum().backward()
        ys, xs = np.nonzero(x.grad[0].abs().sum(0).numpy())
        radius = max(radius, c - ys.min(), ys.max() - c, c - xs.min(), xs.max() - c)
    assert radius == model.receptive_radius()
