#!/usr/bin/python3
"""Seed corpus for tests/fuzz/fuzz_model.c: small valid TransformerNet models
(several widths, kernels, residual-block counts, decoder widths, dtypes, with
and without metadata) and near-valid damage of them (truncations, bad
offsets, shapes, dtypes, JSON, non-finite weights); small compact models
(docs/COMPACT.md) and damaged network descriptions.

    /usr/bin/python3 tests/fuzz/make_corpus.py build/fuzz/seeds

Numpy only; deterministic; every file is under 64 KiB (the fuzzer's -max_len).
"""
import json
import struct
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import stylize_safetensors as st  # noqa: E402

MAX_LEN = 65536


def model(widths, res_blocks, k_in, k_out, dec=None, seed=0):
    rng = np.random.default_rng(seed)
    c1, c2, c3 = widths
    d2, d1 = dec or (c2, c1)
    t = {}

    def conv(name, cout, cin, k):
        t[f"{name}.conv.weight"] = rng.normal(0, 0.3, (cout, cin, k, k)).astype(np.float32)
        t[f"{name}.conv.bias"] = rng.normal(0, 0.1, cout).astype(np.float32)

    def norm(name, c):
        t[f"{name}.weight"] = rng.normal(1, 0.1, c).astype(np.float32)
        t[f"{name}.bias"] = rng.normal(0, 0.1, c).astype(np.float32)

    conv("conv1", c1, 3, k_in); norm("in1", c1)
    conv("conv2", c2, c1, 3); norm("in2", c2)
    conv("conv3", c3, c2, 3); norm("in3", c3)
    for i in range(1, res_blocks + 1):
        conv(f"res{i}.conv1", c3, c3, 3); norm(f"res{i}.in1", c3)
        conv(f"res{i}.conv2", c3, c3, 3); norm(f"res{i}.in2", c3)
    conv("deconv1", d2, c3, 3); norm("in4", d2)
    conv("deconv2", d1, d2, 3); norm("in5", d1)
    conv("deconv3", 3, d1, k_out)
    return t


def compact_model(seed=0, s2d=2, shuffle=2):
    """A small compact network (depthwise-separable residual block, one
    upsampling stage): (tensors, network description)."""
    rng = np.random.default_rng(seed)
    t, layers = {}, []

    def conv(name, cout, cin_g, k, norm=None, **flags):
        t[f"{name}.weight"] = rng.normal(0, 0.3, (cout, cin_g, k, k)).astype(np.float32)
        t[f"{name}.bias"] = rng.normal(0, 0.1, cout).astype(np.float32)
        if norm:
            t[f"{norm}.weight"] = rng.normal(1, 0.1, cout).astype(np.float32)
            t[f"{norm}.bias"] = rng.normal(0, 0.1, cout).astype(np.float32)
            flags["norm"] = norm
        layers.append(dict(conv=name, **flags))

    conv("stem", 4, 3 * s2d * s2d, 3, "stem.in", relu=True)
    conv("down1", 8, 4, 3, "down1.in", stride=2, relu=True)
    conv("res1.dw1", 8, 1, 3, groups=8, save_skip=True)
    conv("res1.pw1", 8, 8, 1, "res1.in1", relu=True)
    conv("res1.dw2", 8, 1, 3, groups=8)
    conv("res1.pw2", 8, 8, 1, "res1.in2", add_skip=True)
    ups = 0
    while s2d * 2 > shuffle * 2 ** ups:
        ups += 1
        conv(f"up{ups}.dw", 8, 1, 3, groups=8, upsample=2)
        conv(f"up{ups}.pw", 8, 8, 1, f"up{ups}.in", relu=True)
    conv("head", 3 * shuffle * shuffle, 8, 3)
    return t, {"version": 1, "space_to_depth": s2d, "pixel_shuffle": shuffle, "layers": layers}


def compact_meta(net):
    return {"format_version": "1", "architecture": "compact", "network": json.dumps(net), "style": "fuzz"}


def encode(t, meta=None, dtype="F32", order=None):
    """safetensors bytes (header padded to 8 like the real writer)."""
    np_dtype = {"F32": "<f4", "F16": "<f2"}.get(dtype)
    header, chunks, off = {}, [], 0
    for name in order or sorted(t):
        a = t[name]
        if dtype == "BF16":
            raw = st._f32_to_bf16_bits(a).astype("<u2").tobytes()
        else:
            raw = a.astype(np_dtype).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    if meta:
        header["__metadata__"] = meta
    return pack(header, b"".join(chunks))


def pack(header, data, pad=True):
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def split(raw):
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def main(out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = {}
    valid = {
        "w2-r0-k1": model((2, 2, 2), 0, 1, 1),
        "w4-r1-k3": model((4, 8, 8), 1, 3, 3),
        "w3-r2-k5x3": model((3, 4, 4), 2, 5, 3, seed=1),
        "w2-r1-k9": model((2, 4, 4), 1, 9, 9, seed=2),
        "w4-r1-dec": model((4, 4, 8), 1, 3, 5, dec=(6, 2), seed=3),
        "w2-r3-k7": model((2, 2, 4), 3, 7, 1, seed=4),
    }
    meta = {"format": "stylize-1", "style": "fuzz", "source": "make_corpus.py", "license": "CC0"}
    for name, t in valid.items():
        for dtype in ("F32", "F16", "BF16"):
            seeds[f"valid-{name}-{dtype}"] = encode(t, meta if dtype != "F16" else None, dtype)

    base_t = valid["w4-r1-k3"]
    base = encode(base_t, meta)
    header, data = split(base)

    def damaged(fn):
        h = json.loads(json.dumps(header))
        d = fn(h)
        return pack(h, data if d is None else d)

    seeds["trunc-half"] = base[: len(base) // 2]
    seeds["trunc-header"] = base[:100]
    seeds["trunc-7"] = base[:7]
    seeds["empty"] = b""
    seeds["huge-header-len"] = struct.pack("<Q", 1 << 40) + base[8:]
    seeds["header-len-off-by-one"] = struct.pack("<Q", struct.unpack("<Q", base[:8])[0] + 1) + base[8:]
    seeds["json-array"] = pack([1, 2, 3], data)
    seeds["json-unterminated"] = base[:8] + base[8:40] + b" " * (len(base) - 40 - len(data)) + data
    seeds["trailing-garbage"] = pack(header, data) + b"\x00" * 16
    seeds["offsets-past-end"] = damaged(lambda h: h["deconv3.conv.bias"].update(data_offsets=[0, len(data) + 4]))
    seeds["offsets-reversed"] = damaged(lambda h: h["in1.bias"].update(data_offsets=h["in1.bias"]["data_offsets"][::-1]))
    seeds["overlap"] = damaged(lambda h: h["in1.weight"].update(data_offsets=list(h["in1.bias"]["data_offsets"])))
    seeds["wrong-shape"] = damaged(lambda h: h["conv2.conv.weight"].update(shape=[8, 5, 3, 3]))
    seeds["shape-5d"] = damaged(lambda h: h["conv2.conv.weight"].update(shape=[8, 4, 3, 3, 1]))
    seeds["shape-negative"] = damaged(lambda h: h["in2.weight"].update(shape=[-8]))
    seeds["shape-huge"] = damaged(lambda h: h["conv1.conv.weight"].update(shape=[4, 3, 4294967296, 3]))
    seeds["dtype-i64"] = damaged(lambda h: h["in3.bias"].update(dtype="I64"))
    seeds["dtype-number"] = damaged(lambda h: h["in3.bias"].update(dtype=4))
    seeds["missing-tensor"] = damaged(lambda h: h.pop("in4.weight") and None)
    seeds["extra-tensor"] = damaged(lambda h: h.update({"evil.weight": dict(h["in1.bias"])}))
    seeds["metadata-not-strings"] = damaged(lambda h: h.update({"__metadata__": {"style": 5}}))
    seeds["kernel-even"] = encode(model((2, 2, 2), 0, 2, 4), meta)
    seeds["res-gap"] = encode({k.replace("res1.", "res2."): v for k, v in model((2, 2, 2), 1, 3, 3).items()}, meta)
    nan_t = {k: v.copy() for k, v in base_t.items()}
    nan_t["in5.weight"][0] = np.nan
    seeds["nan-weight"] = encode(nan_t, meta)
    inf_t = {k: v.copy() for k, v in base_t.items()}
    inf_t["conv3.conv.bias"][1] = np.inf
    seeds["inf-bias-f16"] = encode(inf_t, None, "F16")
    seeds["unsorted-offsets"] = encode(base_t, meta, order=sorted(base_t, reverse=True))
    seeds["nul-in-header"] = base[:20] + b"\x00" + base[21:]
    for name, (s2d, shuffle) in {"s2-p2": (2, 2), "s4-p2": (4, 2), "s1-p1": (1, 1), "s2-p4": (2, 4)}.items():
        t, net = compact_model(len(seeds), s2d, shuffle)
        seeds[f"compact-valid-{name}"] = encode(t, compact_meta(net))
    ct, cnet = compact_model(7)

    def compact_damaged(fn):
        t = {k: v.copy() for k, v in ct.items()}
        net = json.loads(json.dumps(cnet))
        meta = fn(t, net)
        return encode(t, meta or compact_meta(net))

    seeds["compact-bad-json"] = compact_damaged(
        lambda t, n: dict(compact_meta(n), network=json.dumps(n)[:-2]))
    seeds["compact-network-not-object"] = compact_damaged(lambda t, n: dict(compact_meta(n), network="[1,2]"))
    seeds["compact-no-network"] = compact_damaged(lambda t, n: {"architecture": "compact"})
    seeds["compact-unknown-key"] = compact_damaged(lambda t, n: n.update(dilation=2))
    seeds["compact-layer-unknown-key"] = compact_damaged(lambda t, n: n["layers"][1].update(pad=0))
    seeds["compact-groups-not-dividing"] = compact_damaged(lambda t, n: n["layers"][2].update(groups=3))
    seeds["compact-channel-mismatch"] = compact_damaged(
        lambda t, n: t.update({"down1.weight": t["down1.weight"][:, :3].copy()}))
    seeds["compact-unpaired-skip"] = compact_damaged(lambda t, n: n["layers"][5].pop("add_skip") and None)
    seeds["compact-add-without-save"] = compact_damaged(lambda t, n: n["layers"][2].pop("save_skip") and None)
    seeds["compact-stride-mismatch"] = compact_damaged(lambda t, n: n["layers"][1].update(stride=1))
    seeds["compact-missing-norm"] = compact_damaged(lambda t, n: t.pop("res1.in1.bias") is None or None)
    seeds["compact-extra-tensor"] = compact_damaged(lambda t, n: t.update({"spare.weight": t["head.bias"]}))
    seeds["compact-version-2"] = compact_damaged(lambda t, n: n.update(version=2))
    seeds["compact-s2d-3"] = compact_damaged(lambda t, n: n.update(space_to_depth=3))
    seeds["compact-flag-not-bool"] = compact_damaged(lambda t, n: n["layers"][0].update(relu=1))
    seeds["compact-no-layers"] = compact_damaged(lambda t, n: n.update(layers=[]))
    for name, raw in seeds.items():
        assert len(raw) <= MAX_LEN, (name, len(raw))
        (out / f"{name}.safetensors").write_bytes(raw)
    print(f"{len(seeds)} seeds in {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build/fuzz/seeds")
