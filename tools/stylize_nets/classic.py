"""The classic TransformerNet's training forward: batched, with
per-sample TIN statistics, norms in float32 under autocast."""

import contextlib

import torch
import torch.nn.functional as F

from . import _tr as tr


def _conv(layer, y):
    """tr.ConvLayer's computation, with the fast stock reflection pad where
    it is defined (pad < size: identical result)."""
    if layer.upsample:
        y = F.interpolate(y, scale_factor=2, mode="nearest")
    p = layer.kernel // 2
    if p:
        if p < y.shape[-1] and p < y.shape[-2]:
            y = F.pad(y, (p, p, p, p), mode="reflect")
        else:
            y = tr.reflect_pad(y, p)
    return layer.conv(y)


def run_net(model, x, stats=None, record=None, eps=tr.EPS):
    """TransformerNet.forward for training: x (N, 3, H, W) RGB 0..255.

    stats: None (every map normalized with its own statistics) or a list,
    per instance-norm layer in network order, of (mean, var) of shape
    (N, C): sample n is normalized with row n (TIN with a different
    thumbnail per sample). record: None or a list to which (mean, var) of
    shape (N, C) of every layer is appended, differentiable. Norms are
    computed in float32 (also under autocast). Equal to model(x, stats) of
    torch_reference for shared statistics (tests/test_train.py)."""
    k = [0]

    def norm(y, mod):
        if y.dtype in (torch.float16, torch.bfloat16):
            y = y.float()  # statistics in float32 under autocast
        w, b = mod.weight.to(y.dtype), mod.bias.to(y.dtype)
        if stats is None and record is None:
            return F.instance_norm(y, weight=w, bias=b, eps=eps)
        if stats is None:
            mean = y.mean(dim=(2, 3))
            var = (y - mean[:, :, None, None]).pow(2).mean(dim=(2, 3))
            record.append((mean, var))
        else:
            mean, var = stats[k[0]]
            mean, var = mean.to(y.dtype), var.to(y.dtype)
            k[0] += 1
        scale = torch.rsqrt(var + eps) * w
        return (y - mean[:, :, None, None]) * scale[:, :, None, None] + b[:, None, None]

    y = F.relu(norm(_conv(model.conv1, x), model.in1))
    y = F.relu(norm(_conv(model.conv2, y), model.in2))
    y = F.relu(norm(_conv(model.conv3, y), model.in3))
    for i in range(1, model.res_blocks + 1):
        rb = getattr(model, "res%d" % i)
        r = F.relu(norm(_conv(rb.conv1, y), rb.in1))
        y = y + norm(_conv(rb.conv2, r), rb.in2)
    y = F.relu(norm(_conv(model.deconv1, y), model.in4))
    y = F.relu(norm(_conv(model.deconv2, y), model.in5))
    return _conv(model.deconv3, y)


def thumbnail_stats_batch(model, thumbs, detach=False):
    """Run the network on each thumbnail (list of (1, 3, h, w) tensors, sizes
    may differ) and return per-layer (mean, var) stacked to (N, C), row n
    from thumbs[n]. Thumbnails of one size go through the network as one
    batch: the statistics are per sample either way, and on a GPU one pass
    per thumbnail is hundreds of tiny kernels per iteration."""
    groups = {}
    for i, t in enumerate(thumbs):
        groups.setdefault(tuple(t.shape[-2:]), []).append(i)
    order, recs = [], []
    for idx in groups.values():
        rec = []
        with torch.no_grad() if detach else contextlib.nullcontext():
            run_net(model, torch.cat([thumbs[i] for i in idx]), record=rec)
        order += idx
        recs.append(rec)
    back = torch.argsort(torch.tensor(order))  # row of thumbs[n] in the concatenation
    back = back.to(recs[0][0][0].device)
    return [(torch.cat([r[i][0] for r in recs])[back], torch.cat([r[i][1] for r in recs])[back])
            for i in range(len(recs[0]))]
