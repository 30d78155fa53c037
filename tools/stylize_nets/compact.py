"""The compact network family: a layer list described in the model file
(docs/COMPACT.md), shared by training, distillation and the PyTorch
reference the tests compare the C engine with.

    spec = live_spec()                       # the shipped _live layout
    net = CompactNet(spec)                   # random init (PyTorch defaults)
    y = net(x)                               # (N,3,H,W) 0..255 -> (N,3,T*ceil(H/T),...)
    meta = {"architecture": "compact", "network": spec_to_json(spec)}
    net2 = CompactNet.from_metadata(tensors, meta)
"""

import json
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import _tr as tr

SPEC_VERSION = 1
LAYER_KEYS = {"conv", "stride", "upsample", "groups", "norm", "relu", "save_skip", "add_skip"}
SPEC_KEYS = {"version", "space_to_depth", "pixel_shuffle", "layers"}


class SpecError(ValueError):
    pass


# ---------------------------------------------------------------------------
# building and checking descriptions

def _ds_pair(prefix, c_in, c_out, norm, relu, stride=1, upsample=1, save=False, add=False):
    """Depthwise kxk conv (no norm) then pointwise 1x1 conv with the norm."""
    return [
        {"conv": prefix + "dw", "groups": c_in, "stride": stride, "upsample": upsample,
         "save_skip": save, "_k": 3, "_cin": c_in, "_cout": c_in},
        {"conv": prefix + "pw", "norm": norm, "relu": relu, "add_skip": add,
         "_k": 1, "_cin": c_in, "_cout": c_out},
    ]


def live_spec(s2d=2, stem=32, body=64, blocks=5, block="ds", up_widths=(32,), up="ds",
              shuffle=2, stem_kernel=3, head_kernel=3):
    """A compact layout: space-to-depth s2d, a stem conv to `stem` channels,
    stride-2 convs up to `body` channels so that the body runs at 1/T_body,
    `blocks` residual blocks ("ds": depthwise-separable, "full": two 3x3 convs),
    upsampling stages to `up_widths`, a head conv to 3*shuffle^2 channels.

    Returns (spec, shapes): spec is the JSON-able description; shapes maps
    each conv name to (cout, cin/groups, k) for building the module."""
    layers = []
    layers.append({"conv": "stem", "norm": "stem.in", "relu": True,
                   "_k": stem_kernel, "_cin": 3 * s2d * s2d, "_cout": stem})
    layers.append({"conv": "down1", "stride": 2, "norm": "down1.in", "relu": True,
                   "_k": 3, "_cin": stem, "_cout": body})
    downs = 1
    for i in range(1, blocks + 1):
        p = "res%d." % i
        if block == "ds":
            a = _ds_pair(p, body, body, p + "in1", True, save=True)
            a[0]["conv"], a[1]["conv"] = p + "dw1", p + "pw1"
            b = _ds_pair(p, body, body, p + "in2", False, add=True)
            b[0]["conv"], b[1]["conv"] = p + "dw2", p + "pw2"
            layers += a + b
        elif block == "full":
            layers.append({"conv": p + "conv1", "norm": p + "in1", "relu": True, "save_skip": True,
                           "_k": 3, "_cin": body, "_cout": body})
            layers.append({"conv": p + "conv2", "norm": p + "in2", "add_skip": True,
                           "_k": 3, "_cin": body, "_cout": body})
        else:
            raise SpecError("block must be 'ds' or 'full'")
    c = body
    for j, w in enumerate(up_widths, 1):
        p = "up%d." % j
        if up == "ds":
            layers += _ds_pair(p, c, w, p + "in", True, upsample=2)
        else:
            layers.append({"conv": p + "conv", "upsample": 2, "norm": p + "in", "relu": True,
                           "_k": 3, "_cin": c, "_cout": w})
        c = w
    layers.append({"conv": "head", "_k": head_kernel, "_cin": c, "_cout": 3 * shuffle * shuffle})
    ups = len(up_widths)
    if s2d * 2 ** downs != shuffle * 2 ** ups:
        raise SpecError("total stride %d != output scale %d" % (s2d * 2 ** downs, shuffle * 2 ** ups))
    shapes = {}
    clean = []
    for l in layers:
        g = l.get("groups", 1)
        shapes[l["conv"]] = (l["_cout"], l["_cin"] // g, l["_k"])
        d = {k: v for k, v in l.items() if not k.startswith("_") and v not in (False, None)}
        for k in ("stride", "upsample", "groups"):
            if d.get(k) == 1:
                del d[k]
        clean.append(d)
    spec = {"version": SPEC_VERSION, "space_to_depth": s2d, "pixel_shuffle": shuffle, "layers": clean}
    return spec, shapes


def spec_to_json(spec):
    return json.dumps(spec, separators=(",", ":"), sort_keys=False)


def check_spec(spec, shapes):
    """Validate a description against tensor shapes (name -> (cout, cin_g, k)),
    as the C loader does; raises SpecError naming the problem."""
    if not isinstance(spec, dict) or set(spec) - SPEC_KEYS:
        raise SpecError("network description has unknown keys %s" % sorted(set(spec) - SPEC_KEYS))
    if spec.get("version") != SPEC_VERSION:
        raise SpecError("network version %r is not supported" % spec.get("version"))
    s, p = spec.get("space_to_depth", 1), spec.get("pixel_shuffle", 1)
    if s not in (1, 2, 4) or p not in (1, 2, 4):
        raise SpecError("space_to_depth and pixel_shuffle must be 1, 2 or 4")
    layers = spec.get("layers")
    if not isinstance(layers, list) or not 1 <= len(layers) <= 256:
        raise SpecError("layers must be a list of 1..256 entries")
    c = 3 * s * s
    scale = 1.0 / s     # resolution relative to the input
    skip = None
    downs = ups = 0
    names = set()
    for i, l in enumerate(layers):
        if not isinstance(l, dict) or set(l) - LAYER_KEYS or "conv" not in l:
            raise SpecError("layer %d: bad keys" % i)
        name = l["conv"]
        for prefix in (name, l.get("norm")):
            if prefix and prefix in names:
                raise SpecError("layer %d: tensors of %r are used by two layers" % (i, prefix))
            names.add(prefix)
        if name not in shapes:
            raise SpecError("layer %d: no tensor %s.weight" % (i, name))
        cout, cin_g, k = shapes[name]
        g = l.get("groups", 1)
        if c % g or cout % g or cin_g != c // g:
            raise SpecError("layer %d (%s): %d input channels do not fit weight [%d,%d,%d,%d] with groups %d"
                            % (i, name, c, cout, cin_g, k, k, g))
        if l.get("save_skip"):
            if skip is not None:
                raise SpecError("layer %d: nested residual skip" % i)
            skip = (c, scale)
        if l.get("upsample", 1) == 2:
            scale *= 2
            ups += 1
        if l.get("stride", 1) == 2:
            scale /= 2
            downs += 1
        if scale > 1:
            raise SpecError("layer %d (%s) upsamples above the input's resolution" % (i, name))
        if s * 2 ** downs > 64:
            raise SpecError("layer %d (%s): the total stride exceeds 64" % (i, name))
        c = cout
        if l.get("add_skip"):
            if skip != (c, scale):
                raise SpecError("layer %d: residual add without a matching saved skip" % i)
            skip = None
    if skip is not None:
        raise SpecError("a saved skip is never added")
    if c != 3 * p * p:
        raise SpecError("the last layer has %d channels, expected %d" % (c, 3 * p * p))
    if layers[-1].get("norm") or layers[-1].get("relu") or layers[-1].get("add_skip"):
        raise SpecError("the last layer must have no norm, residual add or ReLU")
    if s * 2 ** downs != p * 2 ** ups:
        raise SpecError("total stride %d != output scale %d" % (s * 2 ** downs, p * 2 ** ups))


# ---------------------------------------------------------------------------
# the module

def _reflect_pad(x, pad):
    if pad == 0:
        return x
    h, w = x.shape[-2:]
    if pad < h and pad < w:
        return F.pad(x, (pad, pad, pad, pad), mode="reflect")
    return tr.reflect_pad(x, pad)


def _extend_to_multiple(x, t):
    """Reflect-extend the bottom/right of x to multiples of t."""
    h, w = x.shape[-2:]
    H, W = -(-h // t) * t, -(-w // t) * t
    if (H, W) == (h, w):
        return x
    iy = torch.from_numpy(tr.mirror_index(np.arange(H), h)).to(x.device)
    ix = torch.from_numpy(tr.mirror_index(np.arange(W), w)).to(x.device)
    return x.index_select(-2, iy).index_select(-1, ix)


class _Norm(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))


def _set_nested(root, dotted, module):
    parts = dotted.split(".")
    obj = root
    for part in parts[:-1]:
        if not hasattr(obj, part):
            obj.add_module(part, nn.Module())
        obj = getattr(obj, part)
    obj.add_module(parts[-1], module)


class CompactNet(nn.Module):
    """A compact network from its description (spec) and conv shapes."""

    architecture = "compact"

    def __init__(self, spec, shapes=None):
        super().__init__()
        if shapes is None:
            spec, shapes = spec
        check_spec(spec, shapes)
        self.spec = spec
        self.s2d = spec.get("space_to_depth", 1)
        self.shuffle = spec.get("pixel_shuffle", 1)
        self.layers = spec["layers"]
        for l in self.layers:
            cout, cin_g, k = shapes[l["conv"]]
            g = l.get("groups", 1)
            _set_nested(self, l["conv"], nn.Conv2d(cin_g * g, cout, k, l.get("stride", 1), groups=g))
            if l.get("norm"):
                _set_nested(self, l["norm"], _Norm(cout))
        self._convs = [self.get_submodule(l["conv"]) for l in self.layers]
        self._norms = [self.get_submodule(l["norm"]) if l.get("norm") else None for l in self.layers]

    # -- facts --------------------------------------------------------------
    @classmethod
    def from_state_dict(cls, sd, spec):
        shapes = {}
        for l in spec.get("layers", []):
            w = sd.get(l.get("conv", "") + ".weight") if isinstance(l, dict) else None
            if w is not None and len(w.shape) == 4 and w.shape[2] == w.shape[3]:
                shapes[l["conv"]] = (int(w.shape[0]), int(w.shape[1]), int(w.shape[2]))
        net = cls(spec, shapes)
        sd = {k: torch.as_tensor(np.asarray(v, dtype=np.float32)) for k, v in sd.items()}
        net.load_state_dict(sd, strict=True)
        return net.eval()

    def metadata(self):
        return {"architecture": "compact", "network": spec_to_json(self.spec)}

    def norm_names(self):
        return [l["norm"] for l in self.layers if l.get("norm")]

    def norm_widths(self):
        return [self.get_submodule(n).weight.numel() for n in self.norm_names()]

    def stats_size(self):
        return 2 * sum(self.norm_widths())

    def total_stride(self):
        downs = sum(1 for l in self.layers if l.get("stride", 1) == 2)
        return self.s2d * 2 ** downs

    def macs_per_pixel(self):
        """Multiply-adds per input pixel (pixels counted at full resolution)."""
        scale, total = 1.0 / self.s2d, 0.0
        for l, conv in zip(self.layers, self._convs):
            if l.get("upsample", 1) == 2:
                scale *= 2
            if l.get("stride", 1) == 2:
                scale /= 2
            cout, cin_g, k, _ = conv.weight.shape
            total += cout * cin_g * k * k * scale * scale
        return total

    def receptive_radius(self):
        """Input pixels an output pixel depends on in each direction, over
        all output phases modulo the total stride (docs/COMPACT.md)."""
        t = self.total_stride()
        radius = 0
        for phase in range(2 * t):
            pos = 4096 + phase
            # output pixel -> head output position(s) (pixel shuffle)
            lo, hi = pos // self.shuffle, pos // self.shuffle
            for l, conv in zip(reversed(self.layers), reversed(self._convs)):
                k = conv.weight.shape[2]
                st = l.get("stride", 1)
                lo, hi = lo * st - k // 2, hi * st - k // 2 + k - 1
                if l.get("upsample", 1) == 2:
                    lo, hi = lo // 2, hi // 2
            lo, hi = lo * self.s2d, hi * self.s2d + self.s2d - 1
            radius = max(radius, pos - lo, hi - pos)
        return radius

    # -- forward ------------------------------------------------------------
    def forward(self, x, stats=None, record=None):
        """x: (N,3,H,W) RGB 0..255. stats/record as TransformerNet.forward.
        Returns the un-clamped output of size T*ceil(H/T) x T*ceil(W/T)."""
        t = self.total_stride()
        y = _extend_to_multiple(x, t)
        if self.s2d > 1:
            y = F.pixel_unshuffle(y, self.s2d)
        skip = None
        k_norm = 0
        for l, conv, norm in zip(self.layers, self._convs, self._norms):
            if l.get("save_skip"):
                skip = y
            if l.get("upsample", 1) == 2:
                y = F.interpolate(y, scale_factor=2, mode="nearest")
            y = conv(_reflect_pad(y, conv.kernel_size[0] // 2))
            if norm is not None:
                m, v = (None, None) if stats is None else stats[k_norm]
                k_norm += 1
                y, m, v = tr.instance_norm(y, norm.weight, norm.bias, m, v)
                if record is not None:
                    record.append((m[0].detach(), v[0].detach()))
            if l.get("add_skip"):
                y = y + skip
                skip = None
            if l.get("relu"):
                y = F.relu(y)
        if self.shuffle > 1:
            y = F.pixel_shuffle(y, self.shuffle)
        return y


def shuffle_phase_means(net, images):
    """Mean colour of each sub-pixel phase of the pixel-shuffle output over
    `images` ((3,H,W) tensors, 0..255): a (3, P*P) float64 tensor whose column
    i*P + j is phase (i, j), i.e. head channel c*P*P + i*P + j."""
    p = net.shuffle
    sums = torch.zeros(3, p * p, dtype=torch.float64)
    with torch.no_grad():
        for img in images:
            h, w = img.shape[-2:]
            h, w = h // p * p, w // p * p
            y = net(img[None].float())[:, :, :h, :w]
            sums += F.pixel_unshuffle(y, p)[0].double().mean(dim=(1, 2)).view(3, p * p).cpu()
    return sums / max(1, len(images))


def level_shuffle_phases(net, images, flat_weight=0.5):
    """Give every sub-pixel phase of the pixel-shuffle output the same mean
    colour over `images`. Each phase is drawn by head channels of its own, so
    a student can learn a fixed checker of a few levels that its teacher
    does not draw (Gram losses reward its high-frequency energy):
    starry_night_live at 3059 iterations, 6 levels on the Kodak images. The
    head has no activation after it, so shifting each phase's bias by its
    distance from the phases' average removes the pattern's mean exactly.
    A flat frame (where instance norm leaves only the biases) can show a
    different checker than photographs (mosaic_live: 4 levels in bf16 with
    the photos levelled), so the target is the average of the photos' phase
    means and a flat grey frame's, weighted `flat_weight`: at 0.5 each keeps
    half the difference between the two, the least the larger can be.
    Returns the largest phase spread (levels) before and after, on the
    photos and on the flat frame: (photos before, photos after, flat before,
    flat after)."""
    if net.shuffle <= 1:
        return 0.0, 0.0, 0.0, 0.0
    flat = [torch.full((3, 16 * net.shuffle, 16 * net.shuffle), 128.0)]
    m, f = shuffle_phase_means(net, images), shuffle_phase_means(net, flat)
    target = (1.0 - flat_weight) * m + flat_weight * f
    head = net._convs[-1]
    with torch.no_grad():
        head.bias -= (target - target.mean(dim=1, keepdim=True)).reshape(-1).to(head.bias)
    m2, f2 = shuffle_phase_means(net, images), shuffle_phase_means(net, flat)
    spread = lambda t: float((t.max(dim=1).values - t.min(dim=1).values).max())  # noqa: E731
    return spread(m), spread(m2), spread(f), spread(f2)


def random_compact(spec_shapes=None, seed=0, target_mean=128.0, target_std=55.0):
    """A compact net with random weights of a realistic scale (as
    torch_reference.random_model does for the classic net): outputs spread
    over 0..255. Deterministic in `seed`."""
    spec, shapes = spec_shapes if spec_shapes is not None else live_spec()
    g = torch.Generator().manual_seed(int(seed))
    net = CompactNet(spec, shapes)

    def normal(shape, mean, std):
        return torch.randn(shape, generator=g, dtype=torch.float64) * std + mean

    with torch.no_grad():
        for l, conv, norm in zip(net.layers, net._convs, net._norms):
            cout, cin_g, k, _ = conv.weight.shape
            conv.weight.copy_(normal(conv.weight.shape, 0.0, 1.7 / math.sqrt(cin_g * k * k)))
            conv.bias.copy_(normal(conv.bias.shape, 0.0, 0.2))
            if norm is not None:
                norm.weight.copy_(normal(cout, 0.6, 0.2).abs() + 0.05)
                norm.bias.copy_(normal(cout, 0.0, 0.2))
        img = tr._calibration_image(96, 128)
        net.double()
        x = torch.from_numpy(img.transpose(2, 0, 1)[None].astype(np.float64))
        y = net(x)[0]
        m, s = y.mean(dim=(1, 2)), y.std(dim=(1, 2)).clamp_min(1e-6)
        scale = target_std / s
        head = net._convs[-1]
        # y channel c of the shuffled output is head channel c*P*P + phase
        pp = net.shuffle * net.shuffle
        scale_h = scale.repeat_interleave(pp)
        mean_h = m.repeat_interleave(pp)
        head.weight.mul_(scale_h[:, None, None, None])
        head.bias.copy_((head.bias - mean_h) * scale_h + target_mean)
        net.float()
    net.metadata_extra = {"style": "random-compact-seed%d" % seed}
    return net.eval()
