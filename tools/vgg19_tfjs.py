#!/usr/bin/python3
"""VGG19 feature extractor from TensorFlow.js layers-format weights.

Reads `model.json` (its `weightsManifest`) and the raw little-endian float32
shards beside it, as in ../shared/vgg19: group N holds `blockB_convI/kernel`
(HWIO) then `blockB_convI/bias`, concatenated and split over the group's
shard files. Only the groups whose shard files are all present are loaded
(../shared/vgg19 ships blocks 1-3; block 4/5 and the classifier are listed in
the manifest but absent).

The network is Keras' VGG19 (weights converted from the Caffe original):
input BGR 0..255 minus the ImageNet means (103.939, 116.779, 123.68),
3x3 convolutions with zero 'same' padding, ReLU, 2x2 max pooling (stride 2,
floor) between blocks. `VGG19Features` takes RGB 0..255 and does the
conversion itself.

    import vgg19_tfjs
    vgg = vgg19_tfjs.VGG19Features("../shared/vgg19")            # nn.Module, frozen
    feats = vgg(x_rgb255, ["relu1_1", "relu2_2", "relu3_1"])      # dict name -> tensor

Layer names: reluB_I is the ReLU output of blockB_convI (relu1_1, relu1_2,
relu2_1, relu2_2, relu3_1 ... relu3_4 with the shared weights).
"""

import json
import os
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["load_tfjs_weights", "VGG19Features", "BGR_MEANS", "layer_order"]

BGR_MEANS = (103.939, 116.779, 123.68)
# VGG19's convolutions per block
_BLOCK_CONVS = {1: 2, 2: 2, 3: 4, 4: 4, 5: 4}
_DTYPE_BYTES = {"float32": 4}


def layer_order():
    """All VGG19 ReLU names in network order (relu1_1 ... relu5_4)."""
    return ["relu%d_%d" % (b, i) for b in range(1, 6) for i in range(1, _BLOCK_CONVS[b] + 1)]


def load_tfjs_weights(folder):
    """Read the weights of a TF.js layers model whose shard files exist.

    Returns an OrderedDict "blockB_convI" -> (kernel HWIO float32 ndarray,
    bias float32 ndarray), in manifest order, stopping at the first group
    that has a missing shard file. Raises ValueError on a malformed manifest
    or a shard whose size does not match it, FileNotFoundError when even
    the first group is missing.
    """
    folder = Path(folder)
    with open(folder / "model.json", "r", encoding="utf-8") as f:
        manifest = json.load(f)
    groups = manifest.get("weightsManifest")
    if not isinstance(groups, list):
        raise ValueError("%s: no weightsManifest list" % (folder / "model.json"))
    arrays = OrderedDict()
    for g, group in enumerate(groups):
        paths = [folder / p for p in group["paths"]]
        if not all(p.is_file() for p in paths):
            if g == 0:
                raise FileNotFoundError("%s: the first weight group's shards are missing"
                                        % folder)
            break  # the rest of the network is not shipped
        blob = b"".join(p.read_bytes() for p in paths)
        pos = 0
        for spec in group["weights"]:
            dtype = spec.get("dtype", "float32")
            if dtype not in _DTYPE_BYTES or "quantization" in spec:
                raise ValueError("weight %s: unsupported dtype %s" % (spec["name"], dtype))
            shape = [int(d) for d in spec["shape"]]
            n = int(np.prod(shape)) * _DTYPE_BYTES[dtype]
            if pos + n > len(blob):
                raise ValueError("group %d (%s): shards hold %d bytes, the manifest needs more"
                                 % (g + 1, group["paths"][0], len(blob)))
            arrays[spec["name"]] = np.frombuffer(blob, dtype="<f4", count=n // 4,
                                                 offset=pos).reshape(shape).astype(np.float32)
            pos += n
        if pos != len(blob):
            raise ValueError("group %d (%s): shards hold %d bytes, the manifest %d"
                             % (g + 1, group["paths"][0], len(blob), pos))
    convs = OrderedDict()
    for name in arrays:
        m = re.fullmatch(r"(block\d+_conv\d+)/kernel", name)
        if m:
            bias = arrays.get(m.group(1) + "/bias")
            if bias is None:
                raise ValueError("%s has no bias" % name)
            convs[m.group(1)] = (arrays[name], bias)
    return convs


class VGG19Features(nn.Module):
    """Frozen VGG19 convolutions (blocks that exist in `folder`), computing
    requested ReLU outputs from an RGB 0..255 input (N, 3, H, W)."""

    def __init__(self, folder, upto=None):
        super().__init__()
        weights = load_tfjs_weights(folder)
        self.names = []  # reluB_I in order
        self.convs = nn.ModuleList()
        for conv_name, (k, b) in weights.items():
            blk, idx = map(int, re.fullmatch(r"block(\d+)_conv(\d+)", conv_name).groups())
            relu = "relu%d_%d" % (blk, idx)
            conv = nn.Conv2d(k.shape[2], k.shape[3], k.shape[0], padding=k.shape[0] // 2)
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1))))
                conv.bias.copy_(torch.from_numpy(b))
            self.names.append(relu)
            self.convs.append(conv)
            if relu == upto:
                break
        if upto is not None and upto not in self.names:
            raise ValueError("layer %s is not available (have %s)" % (upto, ", ".join(self.names)))
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode=True):  # always frozen
        return super().train(False)

    def preprocess(self, x):
        """RGB 0..255 -> Keras VGG input (BGR, mean-subtracted)."""
        mean = torch.tensor(BGR_MEANS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return x.flip(1) - mean

    def forward(self, x, layers):
        """x: (N, 3, H, W) RGB 0..255. layers: iterable of relu names.
        Returns {name: feature map}; stops after the deepest one asked."""
        want = set(layers)
        unknown = want - set(self.names)
        if unknown:
            raise ValueError("VGG layers not available: %s (have %s)"
                             % (", ".join(sorted(unknown)), ", ".join(self.names)))
        out = {}
        y = self.preprocess(x)
        block = 1
        for name, conv in zip(self.names, self.convs):
            b = int(name[4:name.index("_")])
            if b != block:
                y = F.max_pool2d(y, 2)
                block = b
            y = F.relu(conv(y))
            if name in want:
                out[name] = y
                if len(out) == len(want):
                    break
        return out


if __name__ == "__main__":
    import sys
    folder = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "vgg19")
    for name, (k, b) in load_tfjs_weights(folder).items():
        print("%-14s kernel %-18s bias %s  |k| mean %.4f" % (name, k.shape, b.shape,
                                                            float(np.abs(k).mean())))
