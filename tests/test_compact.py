"""The compact network family (docs/COMPACT.md): the C engine against the
PyTorch module it shares with training (tools/stylize_nets/compact.py).

* `full` mode, ref and dnnl fp32, vs PyTorch float64 on random-weight models
  (live_spec() defaults; full residual blocks and full upsampling; no
  space-to-depth; pixel shuffle 4 with a 5x5 stem; an odd layer list, see
  odd_spec(); two depthwise upsampling stages, see dw_upsampling_spec()) at
  1x1, 7x5 and 333x517:
  every 8-bit value within 1 level, few off by one.
* tiled == untiled in `tin` mode (ref and dnnl fp32: within 1 level; dnnl
  bf16: within 2), with tiles that start on multiples of the model's total
  stride.
* the receptive radius and total stride come from the model (and agree with
  the PyTorch module); an overlap below the radius changes tiled output.
* bad descriptions are refused with a message naming the problem.
"""
import copy
import json
import os

import numpy as np
import pytest
import torch

from conftest import CPU_HAS_BF16, RELEASE

import stylize_safetensors
import torch_reference as tr
from stylize_nets.compact import live_spec, random_compact, spec_to_json

torch.set_num_threads(int(os.environ.get("STYLIZE_TORCH_THREADS", "1")))
C_THREADS = os.environ.get("STYLIZE_TEST_THREADS", "2")
MAX_FRAC_OFF_BY_ONE = 0.005

SPECS = {  # name -> (live_spec kwargs, seed)
    "live": ({}, 1),
    "full-blocks": (dict(block="full", up="full", blocks=2), 2),
    "s2d1": (dict(s2d=1, shuffle=1, stem=16, body=32, blocks=2, up_widths=(16,)), 3),
    "shuffle4": (dict(s2d=2, shuffle=4, up_widths=(), blocks=2, stem_kernel=5), 4),
}

def odd_spec():
    """Paths live_spec() does not take: ReLU and residual adds without a norm,
    1x1 convs in a row, a grouped 5x5, a grouped 1x1 upsampling conv, a skip
    whose border differs from the add's output (dnnl adds it in a pass)."""
    layers = [dict(conv="stem", norm="stem.in", relu=True), dict(conv="down1", stride=2, norm="down1.in", relu=True),
              dict(conv="a", save_skip=True, relu=True), dict(conv="b", groups=4, norm="b.in"),
              dict(conv="c", add_skip=True, relu=True), dict(conv="up", upsample=2, groups=8),
              dict(conv="d", relu=True, save_skip=True), dict(conv="e", norm="e.in", add_skip=True),
              dict(conv="head")]
    shapes = {"stem": (8, 12, 5), "down1": (16, 8, 3), "a": (16, 16, 1), "b": (16, 4, 5), "c": (16, 16, 1),
              "up": (8, 2, 1), "d": (8, 8, 3), "e": (8, 8, 1), "head": (12, 8, 3)}
    return {"version": 1, "space_to_depth": 2, "pixel_shuffle": 2, "layers": layers}, shapes


def dw_upsampling_spec():
    """Two depthwise upsampling stages (dnnl runs each as four 2x2 convs,
    one per output phase): the first with a ReLU, so its depth-to-space
    comes before its 1x1 conv, the second without, so its 1x1 conv runs on
    the four phases and the depth-to-space follows it."""
    spec, shapes = live_spec(blocks=1, up_widths=(16, 8), shuffle=1)
    spec = copy.deepcopy(spec)
    for layer in spec["layers"]:
        if layer["conv"] == "up1.dw":
            layer["relu"] = True
    return spec, shapes


SPECS["odd"] = (odd_spec, 9)
SPECS["dw-upsampling"] = (dw_upsampling_spec, 10)
SIZES = [(1, 1), (7, 5), (333, 517)]  # W x H


def save_compact(net, path, spec=None, tensors=None):
    sd = {k: v.detach().float().numpy() for k, v in net.state_dict().items()}
    if tensors is not None:
        sd = tensors
    meta = {"format": "stylize", "format_version": "1", "architecture": "compact",
            "network": spec_to_json(net.spec if spec is None else spec), "style": "compact-test"}
    stylize_safetensors.write(path, sd, meta)


class CompactModels:
    def __init__(self, root):
        self.root, self.cache = root, {}

    def get(self, name):
        """(path, float64 torch model loaded back from the file)."""
        if name not in self.cache:
            kwargs, seed = SPECS[name]
            path = self.root / (name + ".safetensors")
            spec = kwargs() if callable(kwargs) else live_spec(**kwargs)
            save_compact(random_compact(spec, seed=seed), path)
            self.cache[name] = (path, tr.load_model(path).double())
        return self.cache[name]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return CompactModels(tmp_path_factory.mktemp("compact_models"))


def noise(w, h, seed=0):
    return np.random.default_rng(1000 * w + h + seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def smooth_image(w, h):
    """Structured content (gradients and edges): TIN statistics of a
    thumbnail are close to the frame's, unlike for noise."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / 17.0) * np.cos(y / 23.0)
    g = 255.0 * x / max(w - 1, 1)
    b = np.where((x // 40 + y // 40) % 2 == 0, 40.0, 210.0)
    return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


class Runner:
    def __init__(self, tmp):
        self.tmp, self.n = tmp, 0

    def __call__(self, model, img, *opts, expect_fail=False):
        self.n += 1
        src, dst = self.tmp / ("in%d.png" % self.n), self.tmp / ("out%d.png" % self.n)
        tr.write_png(src, img)
        proc = RELEASE.run("stylize-image", "-m", model, "--threads", C_THREADS, *opts, src, dst)
        if expect_fail:
            assert proc.returncode != 0, "stylize-image accepted it"
            return proc.stderr
        if proc.returncode:
            pytest.fail("stylize-image %s exited %d:\n%s" % (" ".join(map(str, opts)), proc.returncode,
                                                             proc.stderr))
        out = tr.read_png(dst)
        assert out.shape == img.shape
        return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return Runner(tmp_path_factory.mktemp("compact_run"))


def info(model, *opts):
    proc = RELEASE.run("stylize-image", "-m", model, *opts, "--info")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def have_dnnl(model):
    return RELEASE.run("stylize-image", "-m", model, "--backend", "dnnl", "--info").returncode == 0


def diff(a, b):
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return int(d.max()), float((d == 1).mean())


# ---------------------------------------------------------------------------
# full mode vs PyTorch

@pytest.mark.parametrize("backend", ["ref", "dnnl"])
@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "%dx%d" % s)
def test_full_matches_pytorch(run, models, backend, name, size):
    path, model = models.get(name)
    if backend == "dnnl" and not have_dnnl(path):
        pytest.skip("dnnl backend not usable")
    img = noise(*size)
    want = tr.to_uint8(tr.stylize_float(model, img))
    got = run(path, img, "--mode", "full", "--backend", backend, "--precision", "fp32")
    worst, frac = diff(got, want)
    print("\n  %s %s %dx%d: max |C - PyTorch64| %d, off by 1: %.4f%%" % (backend, name, *size, worst, 100 * frac))
    assert worst <= 1 and frac <= MAX_FRAC_OFF_BY_ONE
    assert want.std() > 10 or size == (1, 1), "the random model's output should spread"


def test_stats_match_pytorch(run, models, tmp_path):
    """The recorded TIN statistics (one pass on the frame) match PyTorch's
    norm-input means and variances, in layer-list order."""
    path, model = models.get("live")
    img = smooth_image(96, 64)
    stats_file = tmp_path / "stats.f32"
    run(path, img, "--mode", "tin", "--thumb", "96", "--backend", "ref", "--stats-out", stats_file)
    got = np.fromfile(stats_file, dtype=np.float32)
    _, want = tr.stylize_float(model, img, record_stats=True)
    assert got.size == model.stats_size() == want.size
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-3)


# ---------------------------------------------------------------------------
# tiling

TILE_CASES = [("ref", "fp32", 1), ("dnnl", "fp32", 1), ("dnnl", "bf16", 2)]


@pytest.mark.parametrize("backend,precision,levels", TILE_CASES, ids=lambda v: str(v))
@pytest.mark.parametrize("name", ["live", "shuffle4", "s2d1", "odd"])
def test_tiled_tin_equals_untiled(run, models, backend, precision, levels, name):
    path, _ = models.get(name)
    if backend == "dnnl" and not have_dnnl(path):
        pytest.skip("dnnl backend not usable")
    if precision == "bf16" and not CPU_HAS_BF16:
        pytest.skip("the CPU has no bf16")
    img = smooth_image(333, 517)
    # a fixed thumbnail: the default (thumb=0) takes as many pixels as a tile's crop,
    # so it would differ between the two runs
    opts = ("--mode", "tin", "--thumb", "128", "--backend", backend, "--precision", precision)
    whole = run(path, img, *opts, "--tile", "0")
    tiled = run(path, img, *opts, "--tile", "150")
    worst, frac = diff(whole, tiled)
    print("\n  %s %s %s: tiled vs untiled max %d, off by 1 %.4f%%" % (backend, precision, name, worst, 100 * frac))
    assert worst <= levels


@pytest.mark.parametrize("name", sorted(SPECS))
def test_radius_and_stride_come_from_the_model(models, name):
    path, model = models.get(name)
    got = info(path, "--backend", "ref")
    assert got["architecture"] == "compact"
    assert got["total_stride"] == model.total_stride()
    assert got["receptive_radius"] == model.receptive_radius()
    assert got["macs_per_pixel"] == pytest.approx(model.macs_per_pixel(), abs=1)
    assert got["stats_size"] == model.stats_size()
    assert got["parameters"] == sum(p.numel() for p in model.parameters())


def tile_auto(model):
    """stylize_model_info.tile_auto: 768 scaled by the classic network's 96
    floats per pixel (its largest layer's input + output) over the model's,
    square-rooted, down to the total stride, at least 256."""
    scale, most = 1.0 / model.s2d, 0.0
    for l, conv in zip(model.layers, model._convs):
        if l.get("upsample", 1) == 2:
            scale *= 2
        cout, cin_g, _, _ = conv.weight.shape
        pair = cin_g * conv.groups * scale * scale
        if l.get("stride", 1) == 2:
            scale /= 2
        most = max(most, pair + cout * scale * scale)
    side = min(max((96.0 * 768 * 768 / most) ** 0.5, 256), 65536)
    return int(side) // model.total_stride() * model.total_stride()


@pytest.mark.parametrize("name", sorted(SPECS))
def test_auto_tile_follows_the_model(models, name):
    path, model = models.get(name)
    assert info(path, "--backend", "ref")["tile_auto"] == tile_auto(model)


def test_auto_tile_classic_is_768(tmp_path):
    path = tmp_path / "classic.safetensors"
    tr.save_safetensors_model(tr.random_model((32, 64, 128), 1, 9, seed=3), path,
                              {"format": "stylize", "format_version": "1", "architecture": "transformer_net"})
    assert info(path, "--backend", "ref")["tile_auto"] == 768


def test_live_layout_draws_720p_tin_in_one_pass(run, tmp_path):
    """The shipped twins' layout gets a tile that holds a 1280x720 frame
    (about a classic 768 tile's memory), so default tin is full's one pass,
    bit for bit; an explicit 768 tile still tiles (and differs)."""
    net = random_compact(live_spec(), seed=11)
    path = tmp_path / "live.safetensors"
    save_compact(net, path)
    assert info(path, "--backend", "ref")["tile_auto"] >= 1280
    img = smooth_image(1280, 720)
    opts = ("--backend", "dnnl" if have_dnnl(path) else "ref", "--precision", "fp32")
    full = run(path, img, *opts, "--mode", "full")
    assert np.array_equal(run(path, img, *opts, "--mode", "tin"), full)
    assert not np.array_equal(run(path, img, *opts, "--mode", "tin", "--tile", "768"), full)


def test_overlap_below_radius_shows_in_tiles(run, models):
    """With fixed statistics, tiles with the model's own overlap equal one
    pass exactly (ref); an overlap well below the radius does not."""
    path, model = models.get("live")
    img = smooth_image(200, 160)
    opts = ("--mode", "tin", "--backend", "ref", "--tile", "64")
    whole = run(path, img, "--mode", "tin", "--backend", "ref", "--tile", "0")
    auto = run(path, img, *opts)
    assert diff(whole, auto)[0] == 0
    radius = model.receptive_radius()
    short = run(path, img, *opts, "--overlap", str(radius // 4))
    assert diff(whole, short)[0] > 1


def test_classic_info_reports_its_architecture(tmp_path):
    path = tmp_path / "classic.safetensors"
    tr.save_safetensors_model(tr.random_model((8, 16, 24), 1, 5, seed=1), path,
                              {"format": "stylize", "format_version": "1", "architecture": "transformer_net"})
    got = info(path, "--backend", "ref")
    assert got["architecture"] == "transformer_net" and got["total_stride"] == 4
    model = tr.load_model(path)
    assert got["receptive_radius"] == model.receptive_radius()


def test_auto_backend_runs_compact(run, models):
    """auto never settles on a backend that refuses compact models (cuda)."""
    path, _ = models.get("live")
    assert info(path)["backend"] in ("dnnl", "ref")


# ---------------------------------------------------------------------------
# bad descriptions

def _tiny():
    """A small valid compact model: (net, spec, tensors)."""
    net = random_compact(live_spec(stem=8, body=8, blocks=1, up_widths=(8,)), seed=5)
    spec = copy.deepcopy(net.spec)
    tensors = {k: v.detach().float().numpy() for k, v in net.state_dict().items()}
    return net, spec, tensors


def _layer(spec, conv):
    return next(l for l in spec["layers"] if l["conv"] == conv)


def bad_unknown_top_key(spec, t):
    spec["colour"] = 1
    return "unknown key 'colour'"


def bad_unknown_layer_key(spec, t):
    spec["layers"][2]["dilation"] = 2
    return "network layer 2: unknown key 'dilation'"


def bad_channel_mismatch(spec, t):
    t["down1.weight"] = t["down1.weight"][:, :4]
    return "network layer 1: tensor 'down1.weight' has shape [8,4,3,3], but the layer receives 8 channels"


def bad_save_without_add(spec, t):
    _layer(spec, "res1.pw2").pop("add_skip")
    return "saves a residual skip that no later layer adds"


def bad_add_without_save(spec, t):
    _layer(spec, "res1.dw1").pop("save_skip")
    return "adds a residual skip that no layer saved"


def bad_nested_skip(spec, t):
    _layer(spec, "res1.pw1")["save_skip"] = True
    return "skips do not nest"


def bad_skip_resolution(spec, t):
    _layer(spec, "res1.dw1").pop("save_skip")
    _layer(spec, "down1")["save_skip"] = True
    return "does not match the residual skip saved at layer 1"


def bad_stride_scale(spec, t):
    spec["pixel_shuffle"] = 4
    t["head.weight"] = np.concatenate([t["head.weight"]] * 4)
    t["head.bias"] = np.concatenate([t["head.bias"]] * 4)
    return "total stride 4"


def bad_missing_tensor(spec, t):
    del t["res1.in1.bias"]
    return "tensor 'res1.in1.bias' is missing"


def bad_extra_tensor(spec, t):
    t["spare.weight"] = np.zeros(3, np.float32)
    return "unexpected tensor 'spare.weight'"


def bad_json(spec, t):
    return "not valid JSON"


def bad_groups(spec, t):
    _layer(spec, "res1.dw1")["groups"] = 3
    return "groups 3 does not divide its 8 input and 8 output channels"


def bad_last_relu(spec, t):
    spec["layers"][-1]["relu"] = True
    return "must have no norm, residual add or ReLU"


def bad_version(spec, t):
    spec["version"] = 2
    return "version 2 is not supported"


def bad_s2d(spec, t):
    spec["space_to_depth"] = 3
    return "'space_to_depth' must be 1, 2 or 4"


def bad_reused_tensor(spec, t):
    _layer(spec, "res1.pw2")["norm"] = "res1.in1"
    del t["res1.in2.weight"], t["res1.in2.bias"]
    return "tensor 'res1.in1.weight' is used by two layers"


def bad_no_layers(spec, t):
    spec["layers"] = []
    return "'layers' must be a list of 1 to 256 layers"


BAD = {f.__name__[4:]: f for f in (
    bad_unknown_top_key, bad_unknown_layer_key, bad_channel_mismatch, bad_save_without_add,
    bad_add_without_save, bad_nested_skip, bad_skip_resolution, bad_stride_scale, bad_missing_tensor,
    bad_extra_tensor, bad_json, bad_groups, bad_last_relu, bad_version, bad_s2d, bad_reused_tensor,
    bad_no_layers)}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_description_is_refused(any_build, tmp_path, kind):
    net, spec, tensors = _tiny()
    want = BAD[kind](spec, tensors)
    path = tmp_path / (kind + ".safetensors")
    meta = {"architecture": "compact", "network": spec_to_json(spec)}
    if kind == "json":
        meta["network"] = spec_to_json(spec)[:-3]
    stylize_safetensors.write(path, tensors, meta)
    proc = any_build.run("stylize-image", "-m", path, "--backend", "ref", "--info")
    assert proc.returncode != 0
    assert want in proc.stderr, proc.stderr


def test_tiny_valid_model_loads(any_build, tmp_path):
    """The base of the bad cases is valid (so each case fails for its own reason)."""
    net, spec, tensors = _tiny()
    path = tmp_path / "ok.safetensors"
    stylize_safetensors.write(path, tensors, {"architecture": "compact", "network": spec_to_json(spec)})
    proc = any_build.run("stylize-image", "-m", path, "--backend", "ref", "--info")
    assert proc.returncode == 0, proc.stderr


def test_network_needs_compact_architecture(any_build, tmp_path):
    net, spec, tensors = _tiny()
    path = tmp_path / "m.safetensors"
    stylize_safetensors.write(path, tensors, {"architecture": "transformer_net", "network": spec_to_json(spec)})
    proc = any_build.run("stylize-image", "-m", path, "--info")
    assert proc.returncode != 0 and "architecture is not 'compact'" in proc.stderr, proc.stderr
    stylize_safetensors.write(path, tensors, {"architecture": "compact"})
    proc = any_build.run("stylize-image", "-m", path, "--info")
    assert proc.returncode != 0 and "needs a 'network' description" in proc.stderr, proc.stderr
