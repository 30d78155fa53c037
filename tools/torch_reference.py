#!/usr/bin/python3
"""PyTorch reference for libstylize: the pytorch/examples fast_neural_style
TransformerNet, with thumbnail instance normalization (TIN).

The network is the one of pytorch/examples (any widths, any number of residual
blocks, any odd first/last kernel), with two generalizations that the C
library implements and that stock PyTorch refuses:

  * reflection padding is the mirrored-periodic extension of the frame, so a
    pad may be as large as (or larger than) the frame: index i of an axis of
    size n maps to 0 if n == 1, else with p = 2(n-1): i = i mod p, and
    i = p - i when i >= n. Where nn.ReflectionPad2d accepts the pad
    (pad < n) this is exactly what it computes.
  * instance norm is the plain biased mean/variance over H x W, so a 1 x 1
    map is accepted (variance 0: the output is the affine bias). Where
    nn.InstanceNorm2d accepts the input this is exactly what it computes.

`ExamplesTransformerNet` is a faithful copy of the pytorch/examples network
built from the stock modules, to show the two agree where both are defined
(`self_check()` / tests/test_reference.py).

Statistics ("stats") follow the layout of core/include/stylize.h: for each
instance-norm layer in network order (in1, in2, in3, res1.in1, res1.in2, ...,
resN.in2, in4, in5) its C means then its C biased variances of the layer's
input (the conv output), as float32.

Library use (tests, tools/measure_tin.py):

    import torch_reference as tr
    model = tr.load_model("mosaic.safetensors")          # or .pth
    out = tr.stylize(model, img)                          # HxWx3 uint8 -> uint8
    stats = tr.thumbnail_stats(model, img, 512)           # flat float32
    out_tin = tr.stylize(model, img, stats=stats)

Command line:

    tools/torch_reference.py -m MODEL [--mode full|tin] [--thumb N]
                             [--stats-in F] [--stats-out F] IN.png OUT.png
"""

import argparse
import math
import re
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "TransformerNet", "ExamplesTransformerNet", "load_model", "load_safetensors_model",
    "load_pth_model", "save_safetensors_model", "random_model", "stylize",
    "stylize_float", "thumbnail_stats", "thumbnail_size", "area_downscale",
    "mirror_index", "reflect_pad", "instance_norm", "read_stats", "write_stats",
    "read_png", "write_png", "self_check", "EPS",
]

EPS = 1e-5  # nn.InstanceNorm2d's default, used by pytorch/examples


# ---------------------------------------------------------------------------
# generalized reflection padding and instance norm

def mirror_index(i, n):
    """Map (possibly out-of-range) indices i of an axis of size n into 0..n-1
    by mirrored-periodic extension (reflection without repeating the edge)."""
    i = np.asarray(i, dtype=np.int64)
    if n == 1:
        return np.zeros_like(i)
    p = 2 * (n - 1)
    i = np.mod(i, p)  # numpy's mod is non-negative for p > 0
    return np.where(i >= n, p - i, i)


def reflect_pad(x, pad):
    """Reflection-pad the last two dims of x (N, C, H, W) by `pad` on every
    side, generalized to any pad (gather with mirror_index)."""
    if pad == 0:
        return x
    h, w = x.shape[-2:]
    iy = torch.from_numpy(mirror_index(np.arange(-pad, h + pad), h)).to(x.device)
    ix = torch.from_numpy(mirror_index(np.arange(-pad, w + pad), w)).to(x.device)
    return x.index_select(-2, iy).index_select(-1, ix)


def instance_norm(x, weight, bias, mean=None, var=None, eps=EPS):
    """Affine instance norm of x (N, C, H, W). With mean/var (shape (C,))
    given, those statistics are used instead of the map's own (TIN). Returns
    (y, mean, var) where mean/var are the statistics used, shape (N, C)."""
    if mean is None:
        mean = x.mean(dim=(-2, -1))
        var = ((x - mean[..., None, None]) ** 2).mean(dim=(-2, -1))  # biased
    else:
        mean = torch.as_tensor(mean, dtype=x.dtype).reshape(1, -1).expand(x.shape[0], -1)
        var = torch.as_tensor(var, dtype=x.dtype).reshape(1, -1).expand(x.shape[0], -1)
    inv = torch.rsqrt(var + eps)
    y = (x - mean[..., None, None]) * (inv * weight)[..., None, None] + bias[:, None, None]
    return y, mean, var


# ---------------------------------------------------------------------------
# the network (parameter names as the converted pytorch/examples models)

class ConvLayer(nn.Module):
    """[nearest x2 upsample] + reflection pad k//2 + conv (no padding)."""

    def __init__(self, cin, cout, kernel, stride=1, upsample=False):
        super().__init__()
        self.kernel, self.stride, self.upsample = kernel, stride, upsample
        self.conv = nn.Conv2d(cin, cout, kernel, stride)

    def forward(self, x):
        if self.upsample:
            x = F.interpolate(x, mode="nearest", scale_factor=2)
        return self.conv(reflect_pad(x, self.kernel // 2))


class InstanceNorm(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))


class ResidualBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = ConvLayer(c, c, 3)
        self.in1 = InstanceNorm(c)
        self.conv2 = ConvLayer(c, c, 3)
        self.in2 = InstanceNorm(c)


class TransformerNet(nn.Module):
    """pytorch/examples TransformerNet with any widths (c1, c2, c3), decoder
    widths (c2d, c1d) (default c2, c1), res_blocks residual blocks and odd
    first/last kernels."""

    def __init__(self, widths=(32, 64, 128), res_blocks=5, kernel_in=9, kernel_out=None,
                 dec_widths=None):
        super().__init__()
        c1, c2, c3 = widths
        c2d, c1d = dec_widths if dec_widths is not None else (c2, c1)
        kernel_out = kernel_in if kernel_out is None else kernel_out
        self.widths, self.dec_widths = (c1, c2, c3), (c2d, c1d)
        self.res_blocks, self.kernel_in, self.kernel_out = res_blocks, kernel_in, kernel_out
        self.conv1 = ConvLayer(3, c1, kernel_in)
        self.in1 = InstanceNorm(c1)
        self.conv2 = ConvLayer(c1, c2, 3, stride=2)
        self.in2 = InstanceNorm(c2)
        self.conv3 = ConvLayer(c2, c3, 3, stride=2)
        self.in3 = InstanceNorm(c3)
        for i in range(1, res_blocks + 1):
            setattr(self, "res%d" % i, ResidualBlock(c3))
        self.deconv1 = ConvLayer(c3, c2d, 3, upsample=True)
        self.in4 = InstanceNorm(c2d)
        self.deconv2 = ConvLayer(c2d, c1d, 3, upsample=True)
        self.in5 = InstanceNorm(c1d)
        self.deconv3 = ConvLayer(c1d, 3, kernel_out)

    # -- facts --------------------------------------------------------------
    def norm_names(self):
        """Instance-norm layer names in network (= stats) order."""
        names = ["in1", "in2", "in3"]
        for i in range(1, self.res_blocks + 1):
            names += ["res%d.in1" % i, "res%d.in2" % i]
        return names + ["in4", "in5"]

    def norm_widths(self):
        return [self.get_submodule(n).weight.numel() for n in self.norm_names()]

    def stats_size(self):
        return 2 * sum(self.norm_widths())

    def receptive_radius(self):
        """Input pixels an output pixel depends on in each direction (the
        largest over the pixel's phases modulo 4): the dependency interval
        of one output pixel followed back through every conv, stride and
        nearest upsampling."""
        convs = [(self.kernel_in, 1, False), (3, 2, False), (3, 2, False)]
        convs += [(3, 1, False)] * (2 * self.res_blocks)
        convs += [(3, 1, True), (3, 1, True), (self.kernel_out, 1, False)]
        radius = 0
        for phase in range(8):
            pos = 1024 + phase
            lo = hi = pos
            for k, stride, up in reversed(convs):
                lo, hi = lo * stride - k // 2, hi * stride - k // 2 + k - 1
                if up:
                    lo, hi = lo // 2, hi // 2
            radius = max(radius, pos - lo, hi - pos)
        return radius

    # -- forward ------------------------------------------------------------
    def forward(self, x, stats=None, record=None):
        """x: (N, 3, H, W) RGB 0..255. stats: None (each map's own statistics)
        or a list of (mean, var) per norm layer (TIN). record: None or a list
        to which (mean, var) of every norm layer is appended (first image of
        the batch). Returns the un-clamped network output, whose size is the
        4*ceil(ceil(n/2)/2) of the input's (not cropped)."""
        layer = [0]

        def norm(y, mod):
            k = layer[0]
            layer[0] += 1
            m, v = (None, None) if stats is None else stats[k]
            y, m, v = instance_norm(y, mod.weight, mod.bias, m, v)
            if record is not None:
                record.append((m[0].detach(), v[0].detach()))
            return y

        y = F.relu(norm(self.conv1(x), self.in1))
        y = F.relu(norm(self.conv2(y), self.in2))
        y = F.relu(norm(self.conv3(y), self.in3))
        for i in range(1, self.res_blocks + 1):
            rb = getattr(self, "res%d" % i)
            r = F.relu(norm(rb.conv1(y), rb.in1))
            y = y + norm(rb.conv2(r), rb.in2)
        y = F.relu(norm(self.deconv1(y), self.in4))
        y = F.relu(norm(self.deconv2(y), self.in5))
        return self.deconv3(y)


# ---------------------------------------------------------------------------
# pytorch/examples' own network (stock modules), for checking the above

class _ExConvLayer(nn.Module):
    def __init__(self, cin, cout, kernel, stride, upsample=None):
        super().__init__()
        self.upsample = upsample
        self.reflection_pad = nn.ReflectionPad2d(kernel // 2)
        self.conv = nn.Conv2d(cin, cout, kernel, stride)

    def forward(self, x):
        if self.upsample:
            x = F.interpolate(x, mode="nearest", scale_factor=self.upsample)
        return self.conv(self.reflection_pad(x))


class _ExResidualBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = _ExConvLayer(c, c, 3, 1)
        self.in1 = nn.InstanceNorm2d(c, affine=True)
        self.conv2 = _ExConvLayer(c, c, 3, 1)
        self.in2 = nn.InstanceNorm2d(c, affine=True)
        self.relu = nn.ReLU()

    def forward(self, x):
        residual = x
        out = self.relu(self.in1(self.conv1(x)))
        out = self.in2(self.conv2(out))
        return out + residual


class ExamplesTransformerNet(nn.Module):
    """pytorch/examples fast_neural_style/neural_style/transformer_net.py,
    generalized only in widths / block count / kernels (stock modules)."""

    def __init__(self, widths=(32, 64, 128), res_blocks=5, kernel_in=9, kernel_out=None,
                 dec_widths=None):
        super().__init__()
        c1, c2, c3 = widths
        c2d, c1d = dec_widths if dec_widths is not None else (c2, c1)
        kernel_out = kernel_in if kernel_out is None else kernel_out
        self.res_blocks = res_blocks
        self.conv1 = _ExConvLayer(3, c1, kernel_in, 1)
        self.in1 = nn.InstanceNorm2d(c1, affine=True)
        self.conv2 = _ExConvLayer(c1, c2, 3, 2)
        self.in2 = nn.InstanceNorm2d(c2, affine=True)
        self.conv3 = _ExConvLayer(c2, c3, 3, 2)
        self.in3 = nn.InstanceNorm2d(c3, affine=True)
        for i in range(1, res_blocks + 1):
            setattr(self, "res%d" % i, _ExResidualBlock(c3))
        self.deconv1 = _ExConvLayer(c3, c2d, 3, 1, upsample=2)
        self.in4 = nn.InstanceNorm2d(c2d, affine=True)
        self.deconv2 = _ExConvLayer(c2d, c1d, 3, 1, upsample=2)
        self.in5 = nn.InstanceNorm2d(c1d, affine=True)
        self.deconv3 = _ExConvLayer(c1d, 3, kernel_out, 1)
        self.relu = nn.ReLU()

    def forward(self, x):
        y = self.relu(self.in1(self.conv1(x)))
        y = self.relu(self.in2(self.conv2(y)))
        y = self.relu(self.in3(self.conv3(y)))
        for i in range(1, self.res_blocks + 1):
            y = getattr(self, "res%d" % i)(y)
        y = self.relu(self.in4(self.deconv1(y)))
        y = self.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)

    @classmethod
    def like(cls, model):
        """A stock-module copy of a TransformerNet with the same weights."""
        ex = cls(model.widths, model.res_blocks, model.kernel_in, model.kernel_out,
                 model.dec_widths)
        ex.load_state_dict(model.state_dict())
        return ex.to(next(model.parameters()).dtype)


# ---------------------------------------------------------------------------
# models: load, save, random

_RUNNING = re.compile(r"\.(running_mean|running_var|num_batches_tracked)$")


def model_from_state_dict(sd):
    """Build a TransformerNet from a state dict (name -> array/tensor) in the
    pytorch/examples layout (conv1.conv.weight, in1.weight, ...). Old pickles'
    running_mean/running_var keys are ignored."""
    sd = {k: torch.as_tensor(np.asarray(v, dtype=np.float32))
          for k, v in sd.items() if not _RUNNING.search(k)}
    # Some pytorch/examples checkpoints name the conv `conv2d`.
    sd = {re.sub(r"\.conv2d\.", ".conv.", k): v for k, v in sd.items()}
    w1, w2, w3 = (sd["conv%d.conv.weight" % i] for i in (1, 2, 3))
    n_res = 0
    while "res%d.conv1.conv.weight" % (n_res + 1) in sd:
        n_res += 1
    model = TransformerNet(
        widths=(w1.shape[0], w2.shape[0], w3.shape[0]), res_blocks=n_res,
        kernel_in=w1.shape[2], kernel_out=sd["deconv3.conv.weight"].shape[2],
        dec_widths=(sd["deconv1.conv.weight"].shape[0], sd["deconv2.conv.weight"].shape[0]))
    model.load_state_dict(sd, strict=True)
    return model.eval()


def load_safetensors_model(path):
    """A TransformerNet, or a compact network (stylize_nets.compact.CompactNet)
    when the metadata says architecture=compact (float32, eval), from a
    .safetensors model file."""
    import json
    import stylize_safetensors
    tensors, metadata = stylize_safetensors.read(path)
    if metadata.get("architecture") == "compact":
        from stylize_nets.compact import CompactNet
        model = CompactNet.from_state_dict(tensors, json.loads(metadata["network"]))
    else:
        model = model_from_state_dict(tensors)
    model.metadata = metadata
    return model


def load_pth_model(path):
    """A TransformerNet from a pytorch/examples .pth state dict."""
    sd = torch.load(str(path), map_location="cpu")
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    model = model_from_state_dict({k: v.float().numpy() for k, v in sd.items()})
    model.metadata = {}
    return model


def load_model(path):
    """Load a .safetensors or a .pth model by extension."""
    path = Path(path)
    if path.suffix in (".pth", ".pt", ".model"):
        return load_pth_model(path)
    return load_safetensors_model(path)


def save_safetensors_model(model, path, metadata=None, dtype="F32"):
    """Write a TransformerNet's weights to a .safetensors file (same tensor
    names as tools/convert_model.py writes)."""
    import stylize_safetensors
    tensors = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    meta = dict(getattr(model, "metadata", {}) or {})
    meta.update(metadata or {})
    stylize_safetensors.write(path, tensors, meta, dtype=dtype)


def random_model(widths=(32, 64, 128), res_blocks=5, kernel=9, kernel_out=None, seed=0,
                 dec_widths=None, target_mean=128.0, target_std=55.0):
    """A TransformerNet with random weights of realistic scale, deterministic
    in `seed`.

    The distributions copy those of the trained mosaic/candy models (conv
    weights N(0, 0.17) for 3x3 convs, i.e. ~5.8/sqrt(fan_in); conv biases
    N(0, 0.2); instance-norm gains ~0.5 (in5 ~1.2) and biases N(0, 0.2)).
    The last conv is then calibrated on a fixed synthetic image so that the
    output channels have mean `target_mean` and standard deviation
    `target_std` (pre-clamp): outputs spread over 0..255 with few clamped.
    """
    g = torch.Generator().manual_seed(int(seed))
    model = TransformerNet(widths, res_blocks, kernel, kernel_out, dec_widths)

    def normal(shape, mean, std):
        return torch.randn(shape, generator=g, dtype=torch.float64) * std + mean

    with torch.no_grad():
        for name, mod in model.named_modules():
            if isinstance(mod, nn.Conv2d):
                cout, cin, k, _ = mod.weight.shape
                fan_in = cin * k * k
                gain = 5.8  # trained 3x3/128: std 0.17 * sqrt(1152)
                mod.weight.copy_(normal(mod.weight.shape, 0.0, gain / math.sqrt(fan_in)))
                mod.bias.copy_(normal(mod.bias.shape, 0.0, 0.2))
            elif isinstance(mod, InstanceNorm):
                c = mod.weight.numel()
                if name == "in5":
                    mod.weight.copy_(normal(c, 1.2, 0.5).abs())
                    mod.bias.copy_(normal(c, 0.4, 0.5))
                else:
                    mod.weight.copy_(normal(c, 0.5, 0.2).abs() + 0.05)
                    mod.bias.copy_(normal(c, 0.0, 0.2))

        # Calibrate the last conv on a fixed smooth synthetic image.
        img = _calibration_image(96, 128)
        model.double()
        x = torch.from_numpy(img.transpose(2, 0, 1)[None].astype(np.float64))
        y = model(x)[0]
        m = y.mean(dim=(1, 2))
        s = y.std(dim=(1, 2)).clamp_min(1e-6)
        scale = target_std / s
        model.deconv3.conv.weight.mul_(scale[:, None, None, None])
        model.deconv3.conv.bias.copy_((model.deconv3.conv.bias - m) * scale + target_mean)
        model.float()
    model.metadata = {"style": "random-seed%d" % seed, "source": "tools/torch_reference.py "
                      "random_model(widths=%s, res_blocks=%d, kernel=%d)"
                      % (tuple(widths), res_blocks, kernel)}
    return model.eval()


def _calibration_image(h, w):
    """A deterministic natural-ish RGB test image: smooth gradients, edges and
    some texture (float64, 0..255)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127 + 100 * np.sin(xx / 11.0) * np.cos(yy / 17.0)
    gch = 255 * (xx / w) * 0.7 + 40 * (((xx // 16) + (yy // 16)) % 2)
    b = 255 * (yy / h) * 0.6 + 30 * np.sin((xx + yy) / 3.0) + 40
    rng = np.random.default_rng(1234)
    img = np.stack([r, gch, b], axis=-1) + rng.normal(0, 6, (h, w, 3))
    return np.clip(img, 0, 255)


# ---------------------------------------------------------------------------
# running it

def _to_tensor(img, dtype):
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(img[:, :, :3].transpose(2, 0, 1))[None]
                            .astype(np.float64)).to(dtype)


def _model_dtype(model):
    return next(model.parameters()).dtype


def flat_stats(record):
    """[(mean, var), ...] -> flat float32 array in stylize.h's layout."""
    parts = []
    for m, v in record:
        parts += [np.asarray(m, dtype=np.float64).ravel(), np.asarray(v, dtype=np.float64).ravel()]
    return np.concatenate(parts).astype(np.float32)


def unflat_stats(model, flat):
    """Flat stats (stylize.h layout) -> [(mean, var), ...] float64 tensors."""
    flat = np.asarray(flat, dtype=np.float64).ravel()
    if flat.size != model.stats_size():
        raise ValueError("stats have %d floats, the model needs %d" % (flat.size, model.stats_size()))
    out, pos = [], 0
    for c in model.norm_widths():
        out.append((torch.from_numpy(flat[pos:pos + c].copy()),
                    torch.from_numpy(flat[pos + c:pos + 2 * c].copy())))
        pos += 2 * c
    return out


def stylize_float(model, img, stats=None, record_stats=False):
    """Run the network on an HxWx3 image (uint8 or float 0..255). Returns the
    un-clamped float64 output cropped to HxW (HxWx3), and with record_stats
    also the flat statistics (float32, stylize.h layout) that were used."""
    dtype = _model_dtype(model)
    x = _to_tensor(img, dtype)
    h, w = x.shape[-2:]
    st = None if stats is None else unflat_stats(model, stats)
    rec = [] if record_stats else None
    with torch.no_grad():
        y = model(x, stats=st, record=rec)
    out = y[0, :, :h, :w].double().numpy().transpose(1, 2, 0)
    if record_stats:
        return out, flat_stats(rec)
    return out


def to_uint8(out):
    """Clamp to 0..255 and round to nearest (the library's conversion)."""
    return np.floor(np.clip(out, 0.0, 255.0) + 0.5).astype(np.uint8)


def stylize(model, img, stats=None, record_stats=False):
    """Stylize an HxWx3 uint8 image -> HxWx3 uint8 (clamped, rounded to
    nearest). stats: None (full-frame instance norm, = PyTorch) or flat TIN
    statistics. With record_stats, returns (image, flat stats used)."""
    res = stylize_float(model, img, stats, record_stats)
    if record_stats:
        return to_uint8(res[0]), res[1]
    return to_uint8(res)


# ---------------------------------------------------------------------------
# TIN: thumbnail and its statistics

def thumbnail_size(h, w, thumb):
    """(th, tw): longer side `thumb`, shorter side round(short*thumb/long)
    (halves round up), at least 1; frames no larger than thumb are kept."""
    if max(h, w) <= thumb:
        return h, w
    if w >= h:
        return max(1, (2 * h * thumb + w) // (2 * w)), thumb
    return thumb, max(1, (2 * w * thumb + h) // (2 * h))


def _area_matrix(n, m):
    """(m, n) matrix: output sample j averages input [j*n/m, (j+1)*n/m) with
    fractional coverage of the end pixels. Exact in rational arithmetic
    (coordinates are scaled by m so everything is an integer)."""
    a = np.zeros((m, n), dtype=np.float64)
    for j in range(m):
        lo, hi = j * n, (j + 1) * n  # in units of 1/m input pixels
        for i in range(lo // m, min(n, -(-hi // m))):
            cover = min(hi, (i + 1) * m) - max(lo, i * m)
            if cover > 0:
                a[j, i] = cover
    return a / n  # each row sums to n/m pixels * m units -> divide by n


def area_downscale(img, th, tw):
    """Area (box) downscale of an HxWxC image to th x tw: every output pixel
    is the exact average of the input area it covers, partially covered
    pixels weighted by their coverage (like cv2.INTER_AREA). Returns float64."""
    img = np.asarray(img, dtype=np.float64)
    h, w = img.shape[:2]
    if th > h or tw > w:
        raise ValueError("area_downscale only shrinks (%dx%d -> %dx%d)" % (w, h, tw, th))
    ay, ax = _area_matrix(h, th), _area_matrix(w, tw)
    return np.einsum("yh,hwc,xw->yxc", ay, img, ax, optimize=True)


def thumbnail(img, thumb):
    """The TIN thumbnail of an image (float64 HxWx3)."""
    h, w = img.shape[:2]
    th, tw = thumbnail_size(h, w, thumb)
    if (th, tw) == (h, w):
        return np.asarray(img, dtype=np.float64)
    return area_downscale(img, th, tw)


def thumbnail_stats(model, img, thumb):
    """TIN statistics of a frame: the network run on its thumbnail, recording
    every instance-norm layer's input mean/var. Flat float32 (stylize.h)."""
    _, st = stylize_float(model, thumbnail(img, thumb), record_stats=True)
    return st


def sample_plan(h, w, th, tw, align=4, side=256, thumb_auto=False):
    """The sample estimator's tiles (core/src/process.c, plan_sample): the
    side and the (y0, x0) origins of tiles of side x side at the frame's own
    resolution, one centred in each cell of a kx x ky grid, with about as
    many pixels in all as a th x tw thumbnail (and each no more). With
    thumb_auto (the thumb option left to auto), a frame with more than ten
    times the thumbnail's pixels is sampled by a tenth of them instead, at
    most five times the thumbnail's."""
    side = -(-side // align) * align
    small = min(w, h, int(math.sqrt(float(tw * th))))
    if side > small:
        side = small // align * align if small >= align else small
    pixels = float(th * tw)
    if thumb_auto and w * h / 10.0 > pixels:
        pixels = min(w * h / 10.0, 5 * pixels)
    n = pixels / float(side * side)
    if w >= h:  # the shorter axis first
        ky = min(max(int(math.sqrt(n * h / w) + 0.5), 1), h // side)
        kx = min(max(int(n / ky + 0.5), 1), w // side)
    else:
        kx = min(max(int(math.sqrt(n * w / h) + 0.5), 1), w // side)
        ky = min(max(int(n / kx + 0.5), 1), h // side)
    origins = []
    for i in range(kx * ky):
        cx, cy = i % kx, i // kx
        x = min(int((2.0 * cx + 1) * w / (2.0 * kx)) - side // 2, w - side)
        y = min(int((2.0 * cy + 1) * h / (2.0 * ky)) - side // 2, h - side)
        origins.append((0 if y < 0 else y // align * align, 0 if x < 0 else x // align * align))
    return side, origins


def sample_stats(model, img, thumb, exact_layers=0, thumb_auto=False):
    """TIN statistics from the sample estimator (tin_stats=sample): every
    sample tile runs alone; norm layer k's statistics are pooled over all
    tiles, each tile run with the pooled statistics of the layers before k.
    The first exact_layers layers are the whole frame's own. thumb_auto: the
    thumbnail of `thumb` is what thumb auto chose (sample_plan). Flat float32."""
    img = np.asarray(img)
    h, w = img.shape[:2]
    th, tw = thumbnail_size(h, w, thumb)
    if (th, tw) == (h, w):
        return stylize_float(model, img, record_stats=True)[1]
    dtype = _model_dtype(model)
    n_norms = len(model.norm_names())
    known = []
    if exact_layers:
        rec = []
        with torch.no_grad():
            model(_to_tensor(img, dtype), record=rec)
        known = [(m.to(dtype), v.to(dtype)) for m, v in rec[:exact_layers]]
    side, origins = sample_plan(h, w, th, tw, thumb_auto=thumb_auto)
    tiles = [_to_tensor(img[y:y + side, x:x + side], dtype) for y, x in origins]
    for k in range(len(known), n_norms):
        means, variances = [], []
        for t in tiles:
            rec = []
            with torch.no_grad():
                model(t, stats=known + [(None, None)] * (n_norms - len(known)), record=rec)
            means.append(rec[k][0])
            variances.append(rec[k][1])
        m = torch.stack(means)
        mean = m.mean(0)
        var = (torch.stack(variances) + (m - mean) ** 2).mean(0)  # equal-sized tiles
        known.append((mean, var))
    return flat_stats([(m.double().numpy(), v.double().numpy()) for m, v in known])


# ---------------------------------------------------------------------------
# files

def read_png(path):
    """Any image file -> HxWx3 uint8 RGB."""
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def write_png(path, img):
    from PIL import Image
    Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8), "RGB").save(path)


def read_stats(path):
    return np.fromfile(path, dtype="<f4")


def write_stats(path, stats):
    np.asarray(stats, dtype="<f4").tofile(path)


# ---------------------------------------------------------------------------
# self check: generalized pad/IN == stock modules; downscale == brute force

def _brute_area(img, th, tw):
    """Area downscale by exact supersampling: repeat every pixel th times
    vertically and tw times horizontally, then average blocks of h x w."""
    img = np.asarray(img, dtype=np.float64)
    h, w = img.shape[:2]
    big = np.repeat(np.repeat(img, th, axis=0), tw, axis=1)
    return big.reshape(th, h, tw, w, -1).mean(axis=(1, 3))


def self_check(verbose=True):
    """Quick consistency checks of this module (also run by the tests)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    # mirrored-periodic index == ReflectionPad2d where that is defined
    for n in range(2, 9):
        for pad in range(0, n):
            x = torch.arange(n, dtype=torch.float64)[None, None, None, :].expand(1, 1, 1, n)
            ref = nn.ReflectionPad2d((pad, pad, 0, 0))(x)[0, 0, 0].numpy()
            ours = mirror_index(np.arange(-pad, n + pad), n)
            assert np.array_equal(ref, ours), (n, pad, ref, ours)
    # generalized net == stock net on valid sizes
    model = random_model((8, 16, 24), 2, 5, seed=3).double()
    ex = ExamplesTransformerNet.like(model)
    for h, w in ((16, 20), (21, 13), (9, 12)):
        x = torch.from_numpy(rng.uniform(0, 255, (1, 3, h, w)))
        with torch.no_grad():
            d = (model(x) - ex(x)).abs().max().item()
        assert d < 1e-9, d
        if verbose:
            print("generalized vs stock modules %dx%d: max |diff| %.3g" % (w, h, d))
    # area downscale == brute force
    for (h, w, th, tw) in ((7, 5, 3, 2), (13, 17, 5, 11), (20, 30, 20, 7), (9, 9, 1, 1)):
        img = rng.uniform(0, 255, (h, w, 3))
        d = np.abs(area_downscale(img, th, tw) - _brute_area(img, th, tw)).max()
        assert d < 1e-9, d
    if verbose:
        print("self check ok")


# ---------------------------------------------------------------------------
# command line

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", help=".safetensors or pytorch/examples .pth (required)")
    ap.add_argument("--mode", choices=("full", "tin"), default="full")
    ap.add_argument("--thumb", type=int, default=512, help="TIN thumbnail longer side (512)")
    ap.add_argument("--stats-in", help="raw float32 statistics to use (tin mode)")
    ap.add_argument("--stats-out", help="write the statistics used (raw float32)")
    ap.add_argument("--double", action="store_true", help="compute in float64")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    ap.add_argument("--self-check", action="store_true", help="run the self check and exit")
    ap.add_argument("input", nargs="?")
    ap.add_argument("output", nargs="?")
    a = ap.parse_args(argv)
    torch.set_num_threads(max(1, a.threads))
    if a.self_check:
        self_check()
        return 0
    if not a.model or not a.input or not a.output:
        ap.error("-m MODEL, IN.png and OUT.png are required")
    try:
        model = load_model(a.model)
        if a.double:
            model = model.double()
        img = read_png(a.input)
        if a.mode == "tin":
            stats = read_stats(a.stats_in) if a.stats_in else thumbnail_stats(model, img, a.thumb)
            out = stylize(model, img, stats=stats)
        else:
            if a.stats_in:
                ap.error("--stats-in needs --mode tin")
            out, stats = stylize(model, img, record_stats=True)
        write_png(a.output, out)
        if a.stats_out:
            write_stats(a.stats_out, stats)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        print("torch_reference: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
