#!/usr/bin/python3
"""Tests of tools/convert_model.py and tools/stylize_safetensors.py.

Run: /usr/bin/python3 -m pytest tests/test_convert.py

torch is used here as the reference (torch.load, torch.save, torch.onnx.export);
the converter itself must work without it.
"""

import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# ../shared beside the checkout (STYLIZE_SHARED overrides, as in conftest.py)
SHARED = Path(os.environ.get("STYLIZE_SHARED", REPO.parent / "shared"))
MODELS = SHARED / "models"
CONVERTER = REPO / "tools" / "convert_model.py"
PYTHON = "/usr/bin/python3"

sys.path.insert(0, str(REPO / "tools"))
import stylize_safetensors as st  # noqa: E402

torch = pytest.importorskip("torch")


def need_model(name):
    path = MODELS / (name + ".pth")
    if not path.is_file():
        pytest.skip("%s not found (the shared data folder ../shared beside the "
                    "checkout is absent)" % path)
    return path


def convert(*args):
    """Run the converter CLI; return the CompletedProcess."""
    return subprocess.run([PYTHON, str(CONVERTER)] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=60)


def assert_fails(result, *words):
    """The converter exited 1 with 'convert_model: ...' naming all `words`."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "convert_model: " in result.stderr, result.stderr
    for w in words:
        assert w in result.stderr, (w, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr


def stylize_names(state_dict):
    """pytorch/examples names -> the converter's output names (and values)."""
    out = {}
    for k, v in state_dict.items():
        if k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue
        out[k.replace(".conv2d.", ".conv.")] = v.detach().float().numpy()
    return out


def read_header(path):
    blob = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    return n, json.loads(blob[8:8 + n])


def tensor_dtypes(path):
    return {v["dtype"] for k, v in read_header(path)[1].items() if k != "__metadata__"}


def assert_same_tensors(got, want):
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].dtype == np.float32, k
        assert got[k].shape == want[k].shape, k
        assert np.array_equal(got[k], want[k]), k


# ---------------------------------------------------------------------------
# The pytorch/examples TransformerNet (fast_neural_style/neural_style/
# transformer_net.py), with configurable widths and number of residual blocks.
# Upstream's ConvLayer names its conv `conv2d`, so its state_dict keys are
# conv1.conv2d.weight etc.; stylize's files (and ../shared's .pth) use conv1.conv.

class ConvLayer(torch.nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride):
        super().__init__()
        self.reflection_pad = torch.nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = torch.nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x):
        return self.conv2d(self.reflection_pad(x))


class ResidualBlock(torch.nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in1 = torch.nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in2 = torch.nn.InstanceNorm2d(channels, affine=True)
        self.relu = torch.nn.ReLU()

    def forward(self, x):
        residual = x
        out = self.relu(self.in1(self.conv1(x)))
        out = self.in2(self.conv2(out))
        return out + residual


class UpsampleConvLayer(torch.nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride, upsample=None):
        super().__init__()
        self.upsample = upsample
        self.reflection_pad = torch.nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = torch.nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x):
        if self.upsample:
            x = torch.nn.functional.interpolate(x, mode="nearest", scale_factor=self.upsample)
        return self.conv2d(self.reflection_pad(x))


class TransformerNet(torch.nn.Module):
    def __init__(self, widths=(32, 64, 128), blocks=5):
        super().__init__()
        c1, c2, c3 = widths
        self.conv1 = ConvLayer(3, c1, kernel_size=9, stride=1)
        self.in1 = torch.nn.InstanceNorm2d(c1, affine=True)
        self.conv2 = ConvLayer(c1, c2, kernel_size=3, stride=2)
        self.in2 = torch.nn.InstanceNorm2d(c2, affine=True)
        self.conv3 = ConvLayer(c2, c3, kernel_size=3, stride=2)
        self.in3 = torch.nn.InstanceNorm2d(c3, affine=True)
        self.blocks = blocks
        for i in range(1, blocks + 1):
            setattr(self, "res%d" % i, ResidualBlock(c3))
        self.deconv1 = UpsampleConvLayer(c3, c2, kernel_size=3, stride=1, upsample=2)
        self.in4 = torch.nn.InstanceNorm2d(c2, affine=True)
        self.deconv2 = UpsampleConvLayer(c2, c1, kernel_size=3, stride=1, upsample=2)
        self.in5 = torch.nn.InstanceNorm2d(c1, affine=True)
        self.deconv3 = ConvLayer(c1, 3, kernel_size=9, stride=1)
        self.relu = torch.nn.ReLU()

    def forward(self, x):
        y = self.relu(self.in1(self.conv1(x)))
        y = self.relu(self.in2(self.conv2(y)))
        y = self.relu(self.in3(self.conv3(y)))
        for i in range(1, self.blocks + 1):
            y = getattr(self, "res%d" % i)(y)
        y = self.relu(self.in4(self.deconv1(y)))
        y = self.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)


def small_net(seed=0, random_norms=True):
    """A small random TransformerNet: widths 8/16/32, 2 residual blocks."""
    torch.manual_seed(seed)
    net = TransformerNet(widths=(8, 16, 32), blocks=2).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.split(".")[-2].startswith("in") and not random_norms:
                continue  # keep InstanceNorm2d's default ones/zeros
            p.copy_(torch.randn_like(p) * 0.1)
    return net


# ---------------------------------------------------------------------------
# stylize_safetensors

def test_safetensors_roundtrip_and_layout(tmp_path):
    rng = np.random.default_rng(1)
    tensors = {"b": rng.standard_normal((3, 5)).astype(np.float32),
               "a.weight": rng.standard_normal((2, 3, 3, 3)).astype(np.float32),
               "empty": np.zeros((0, 4), np.float32),
               "scalar": np.float32(3.5)}
    path = tmp_path / "t.safetensors"
    st.write(path, tensors, {"style": "ünï", "x": "y"})
    got, meta = st.read(path)
    assert meta == {"style": "ünï", "x": "y"}
    assert_same_tensors(got, {k: np.asarray(v) for k, v in tensors.items()})

    n, header = read_header(path)
    assert n % 8 == 0 and header["__metadata__"]["style"] == "ünï"
    names = sorted(k for k in header if k != "__metadata__")
    pos = 0
    for k in names:  # contiguous, in sorted name order, no holes
        begin, end = header[k]["data_offsets"]
        assert begin == pos
        pos = end
    assert 8 + n + pos == path.stat().st_size
    assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]  # no temp file left


@pytest.mark.parametrize("dtype,torch_dtype", [("F16", "float16"), ("BF16", "bfloat16")])
def test_safetensors_half_dtypes_round_like_torch(tmp_path, dtype, torch_dtype):
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.standard_normal(10000).astype(np.float32) * 10,
                        # ties of bf16 (1 + 2^-8, 1 + 3*2^-8) and of fp16 (1 + 2^-11)
                        np.array([1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -11, 0.0, -0.0,
                                  1e-9, -65504.0], np.float32)])
    path = tmp_path / "h.safetensors"
    st.write(path, {"x": x}, dtype=dtype)
    got, _ = st.read(path)
    want = torch.from_numpy(x).to(getattr(torch, torch_dtype)).float().numpy()
    assert np.array_equal(got["x"], want)
    assert tensor_dtypes(path) == {dtype}


def test_safetensors_bf16_special_values(tmp_path):
    x = np.array([np.nan, np.inf, -np.inf, 3.0e38], np.float32)
    path = tmp_path / "s.safetensors"
    st.write(path, {"x": x}, dtype="BF16")
    got, _ = st.read(path)
    assert np.isnan(got["x"][0]) and got["x"][1] == np.inf and got["x"][2] == -np.inf
    assert np.isfinite(got["x"][3])


def test_safetensors_f16_overflow_refused(tmp_path):
    path = tmp_path / "o.safetensors"
    with pytest.raises(ValueError, match="F16"):
        st.write(path, {"big": np.array([1e6], np.float32)}, dtype="F16")
    assert not path.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("header,data,message", [
    ({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 16]}}, b"\0" * 8, "outside"),
    ({"t": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, "needs 12"),
    ({"t": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8, "dtype"),
    ({"t": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8, "hole"),
    ({"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 8, "trailing"),
    ({"t": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4, "shape"),
    ({"__metadata__": {"a": 1}}, b"", "__metadata__"),
    ([1, 2], b"", "not a JSON object"),
])
def test_safetensors_read_rejects_malformed(tmp_path, header, data, message):
    path = tmp_path / "bad.safetensors"
    st.write_raw(path, header, data)
    with pytest.raises(ValueError, match=message):
        st.read(path)


def test_safetensors_read_rejects_bad_header_length(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(ValueError, match="header length"):
        st.read(path)
    path.write_bytes(struct.pack("<Q", 64) + b'{"a":')  # truncated header
    with pytest.raises(ValueError, match="exceeds the file size"):
        st.read(path)
    path.write_bytes(b"abc")
    with pytest.raises(ValueError, match="not a safetensors file"):
        st.read(path)


# ---------------------------------------------------------------------------
# .pth (torch zip format) from ../shared

@pytest.mark.parametrize("style", ["candy", "mosaic"])
def test_convert_shared_pth_matches_torch_load(tmp_path, style):
    src = need_model(style)
    out = tmp_path / (style + ".safetensors")
    r = convert(src, "-o", out)
    assert r.returncode == 0, r.stderr
    got, meta = st.read(out)
    want = stylize_names(torch.load(src, map_location="cpu"))
    assert len(want) == 62
    assert_same_tensors(got, want)
    assert meta == {"format": "stylize", "format_version": "1",
                    "architecture": "transformer_net", "style": style,
                    "source": style + ".pth", "license": "unknown",
                    "converted_by": "tools/convert_model.py", "dtype": "fp32"}


@pytest.mark.parametrize("dtype,torch_dtype,st_dtype",
                         [("fp16", "float16", "F16"), ("bf16", "bfloat16", "BF16")])
def test_convert_half_dtypes(tmp_path, dtype, torch_dtype, st_dtype):
    src = need_model("candy")
    out = tmp_path / "candy.safetensors"
    r = convert(src, "-o", out, "--dtype", dtype, "--style", "Candy", "--source",
                "pytorch/examples", "--license", "BSD-3-Clause")
    assert r.returncode == 0, r.stderr
    got, meta = st.read(out)
    assert (meta["dtype"], meta["style"], meta["source"], meta["license"]) == (
        dtype, "Candy", "pytorch/examples", "BSD-3-Clause")
    assert tensor_dtypes(out) == {st_dtype}
    assert out.stat().st_size < 3_400_000  # half of the fp32 file
    exact = stylize_names(torch.load(src, map_location="cpu"))
    want = {k: torch.from_numpy(v).to(getattr(torch, torch_dtype)).float().numpy()
            for k, v in exact.items()}
    assert_same_tensors(got, want)  # exactly torch's round-to-nearest-even
    tol = 2.0 ** -11 if dtype == "fp16" else 2.0 ** -8  # relative half-ulp
    for k in exact:
        assert np.all(np.abs(got[k] - exact[k]) <= tol * np.abs(exact[k]) + 1e-7), k


def test_list():
    src = need_model("mosaic")
    r = convert("--list", src)
    assert r.returncode == 0, r.stderr
    assert "conv1.conv.weight" in r.stdout and "(32, 3, 9, 9)" in r.stdout
    assert "5 residual blocks" in r.stdout and "1679235 parameters" in r.stdout


def test_converter_imports_neither_torch_nor_onnx_for_pth(tmp_path):
    src = need_model("candy")
    out = tmp_path / "c.safetensors"
    code = ("import sys; sys.path.insert(0, %r); import convert_model as c; "
            "rc = c.main([%r, '-o', %r]); "
            "assert rc == 0 and 'torch' not in sys.modules and 'onnx' not in sys.modules, "
            "sorted(m for m in sys.modules if m.startswith(('torch', 'onnx')))"
            % (str(REPO / "tools"), str(src), str(out)))
    r = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_reconvert_safetensors_keeps_metadata(tmp_path):
    src = need_model("mosaic")
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    assert convert(src, "-o", a, "--license", "BSD-3-Clause").returncode == 0
    r = convert(a, "-o", b, "--dtype", "fp16")
    assert r.returncode == 0, r.stderr
    (ta, _), (tb, mb) = st.read(a), st.read(b)
    assert (mb["style"], mb["source"], mb["license"], mb["dtype"]) == (
        "mosaic", "mosaic.pth", "BSD-3-Clause", "fp16")
    assert_same_tensors(tb, {k: v.astype(np.float16).astype(np.float32)
                             for k, v in ta.items()})
    # ../shared's README says the values are fp16-rounded: true of the conv
    # weights only (biases and norm parameters have full fp32 precision).
    assert np.array_equal(tb["res3.conv1.conv.weight"], ta["res3.conv1.conv.weight"])


def test_meta_entries_are_stored_and_kept_on_reconversion(tmp_path):
    src = need_model("candy")
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    r = convert(src, "-o", a, "--meta", "copyright=Copyright (c) 2017, X", "--meta",
                "origin=a = b")
    assert r.returncode == 0, r.stderr
    ma = st.read(a)[1]
    assert (ma["copyright"], ma["origin"], ma["style"]) == ("Copyright (c) 2017, X", "a = b", "candy")
    r = convert(a, "-o", b, "--dtype", "fp16", "--meta", "origin=c")
    assert r.returncode == 0, r.stderr
    mb = st.read(b)[1]
    assert (mb["copyright"], mb["origin"], mb["dtype"]) == ("Copyright (c) 2017, X", "c", "fp16")


@pytest.mark.parametrize("meta,msg", [("copyright", "expected KEY=VALUE"),
                                      ("=x", "expected KEY=VALUE"),
                                      ("dtype=fp64", "set by the converter"),
                                      ("license=MIT", "use --license")])
def test_bad_meta_is_refused(tmp_path, meta, msg):
    out = tmp_path / "x.safetensors"
    r = convert(need_model("candy"), "-o", out, "--meta", meta)
    assert r.returncode == 1 and msg in r.stderr and not out.exists()


def test_help():
    r = convert("--help")
    assert r.returncode == 0
    for opt in ("--dtype", "--style", "--source", "--license", "--meta", "--force", "--list", "-o",
                "running_mean", ".onnx", "legacy"):
        assert opt in r.stdout, opt


# ---------------------------------------------------------------------------
# legacy (non-zip) torch pickles, with running stats

def test_convert_legacy_pickle_drops_running_stats(tmp_path):
    net = small_net(seed=3)
    sd = OrderedDict(net.state_dict())
    assert "conv1.conv2d.weight" in sd  # upstream naming
    for k in [k for k in sd if k.split(".")[-2].startswith("in")]:
        if k.endswith(".weight"):
            layer = k[:-len(".weight")]
            c = sd[k].shape[0]
            sd[layer + ".running_mean"] = torch.randn(c)
            sd[layer + ".running_var"] = torch.rand(c)
            sd[layer + ".num_batches_tracked"] = torch.tensor(7)
    # A non-contiguous tensor and one in half precision exercise strides/dtypes.
    sd["conv2.conv2d.bias"] = torch.randn(33)[1::2]  # storage offset 1, stride 2
    sd["in5.bias"] = torch.randn(8).half()
    src = tmp_path / "legacy.pth"
    torch.save(sd, src, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(src)

    out = tmp_path / "legacy.safetensors"
    r = convert(src, "-o", out)
    assert r.returncode == 0, r.stderr
    got, meta = st.read(out)
    assert not any("running" in k or "num_batches" in k for k in got)
    assert_same_tensors(got, stylize_names(sd))
    assert got["res2.conv2.conv.weight"].shape == (32, 32, 3, 3)
    assert meta["style"] == "legacy"


def test_convert_zip_pth_with_other_top_folder_and_parameters(tmp_path):
    """A zip whose top folder is 'archive' and a state_dict with Parameters."""
    net = small_net(seed=4)
    sd = OrderedDict((k, torch.nn.Parameter(v.clone())) for k, v in net.state_dict().items())
    src = tmp_path / "params.pt"
    torch.save(sd, src)
    with zipfile.ZipFile(src) as z:
        assert z.namelist()[0].startswith("params/")
    renamed = tmp_path / "archive.pth"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(renamed, "w") as zout:
        for info in zin.infolist():
            zout.writestr("archive/" + info.filename.split("/", 1)[1], zin.read(info))
    out = tmp_path / "o.safetensors"
    r = convert(renamed, "-o", out)
    assert r.returncode == 0, r.stderr
    assert_same_tensors(st.read(out)[0], stylize_names(net.state_dict()))


# ---------------------------------------------------------------------------
# ONNX

def export_onnx(net, path):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # opset 9 Upsample / instance_norm notices
        torch.onnx.export(net, torch.rand(1, 3, 32, 32), str(path), opset_version=9,
                          input_names=["input1"], output_names=["output1"])


def zoo_like(model):
    """Rename every initializer to a generated number, list them as graph
    inputs too (as opset 8 exports did) and shuffle their order."""
    import onnx
    g = model.graph
    names = {init.name: str(100 + i) for i, init in enumerate(g.initializer)}
    for init in g.initializer:
        init.name = names[init.name]
    for node in g.node:
        for i, name in enumerate(node.input):
            if name in names:
                node.input[i] = names[name]
    inits = list(g.initializer)[::-1]
    del g.initializer[:]
    g.initializer.extend(inits)
    for init in inits:
        g.input.append(onnx.helper.make_tensor_value_info(
            init.name, init.data_type, list(init.dims)))
    return model


def fp16_with_casts(model):
    """Store every initializer as fp16 followed by a Cast to float."""
    import onnx
    from onnx import numpy_helper
    g = model.graph
    casts = []
    for init in g.initializer:
        a = numpy_helper.to_array(init).astype(np.float16)
        half = numpy_helper.from_array(a, init.name + "_fp16")
        init.CopyFrom(half)
        casts.append(onnx.helper.make_node("Cast", [half.name], [half.name[:-5]],
                                           to=onnx.TensorProto.FLOAT))
    nodes = casts + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    return model


def constants_and_float_data(model):
    """Move the initializers into Constant nodes (odd ones) or store them as
    float_data instead of raw_data (even ones); put the nodes in reverse file
    order so that only a topological walk finds the layer order."""
    import onnx
    from onnx import numpy_helper
    g = model.graph
    consts, keep = [], []
    for i, init in enumerate(g.initializer):
        a = numpy_helper.to_array(init)
        t = onnx.helper.make_tensor(init.name, onnx.TensorProto.FLOAT, a.shape,
                                    a.flatten().tolist(), raw=False)
        assert not t.raw_data and len(t.float_data) == a.size
        if i % 2:
            consts.append(onnx.helper.make_node("Constant", [], [init.name], value=t))
        else:
            keep.append(t)
    del g.initializer[:]
    g.initializer.extend(keep)
    nodes = list(g.node)[::-1] + consts
    del g.node[:]
    g.node.extend(nodes)
    return model


@pytest.mark.parametrize("variant", ["export", "zoo_like", "fp16_casts", "constants"])
def test_convert_onnx(tmp_path, variant):
    onnx = pytest.importorskip("onnx")
    # Default (ones/zeros) norms in the residual blocks: torch's exporter then
    # dedups the identical initializers into Identity nodes, which we must follow.
    net = small_net(seed=5, random_norms=False)
    src = tmp_path / "tiny.onnx"
    export_onnx(net, src)
    if variant != "export":
        model = {"zoo_like": zoo_like, "fp16_casts": fp16_with_casts,
                 "constants": constants_and_float_data}[variant](onnx.load(str(src)))
        onnx.save(model, str(src))
    out = tmp_path / "tiny.safetensors"
    r = convert(src, "-o", out)
    assert r.returncode == 0, r.stderr
    got, meta = st.read(out)
    want = stylize_names(net.state_dict())
    if variant == "fp16_casts":
        want = {k: v.astype(np.float16).astype(np.float32) for k, v in want.items()}
    assert_same_tensors(got, want)
    assert meta["source"] == "tiny.onnx" and meta["style"] == "tiny"

    r = convert("--list", src)
    assert r.returncode == 0, r.stderr
    assert "res2.in2.bias" in r.stdout and "2 residual blocks" in r.stdout


def test_onnx_not_a_transformer_net(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import helper, TensorProto, numpy_helper
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])], [w])
    src = tmp_path / "conv.onnx"
    onnx.save(helper.make_model(graph), str(src))
    out = tmp_path / "conv.safetensors"
    assert_fails(convert(src, "-o", out), "1 Conv nodes", "not a TransformerNet")
    assert not out.exists()


# ---------------------------------------------------------------------------
# hostile and broken inputs

class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ("touch %s" % self.marker,))


def test_malicious_pickles_are_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Evil(marker), protocol=2)
    # sanity: the payload would create the marker if really unpickled
    assert b"system" in payload

    zip_pth = tmp_path / "evil_zip.pth"
    with zipfile.ZipFile(zip_pth, "w") as z:
        z.writestr("evil_zip/data.pkl", payload)
        z.writestr("evil_zip/version", "3\n")
    legacy = tmp_path / "evil_legacy.pth"
    legacy.write_bytes(pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2)
                       + pickle.dumps(1001, protocol=2)
                       + pickle.dumps({"little_endian": True}, protocol=2) + payload)
    bare = tmp_path / "evil_bare.pth"
    bare.write_bytes(payload)
    # the evil object nested inside an otherwise valid state_dict
    sd = OrderedDict(small_net().state_dict())
    sd["in1.weight"] = _Evil(marker)
    nested = tmp_path / "evil_nested.pth"
    with open(nested, "wb") as f:
        torch.save(sd, f)

    for src in (zip_pth, legacy, bare, nested):
        out = tmp_path / "out.safetensors"
        r = convert(src, "-o", out)
        assert_fails(r, "refusing to unpickle global", "system")
        assert not marker.exists(), src
        assert not out.exists()


def test_whole_pickled_module_refused(tmp_path):
    src = tmp_path / "model.pth"
    torch.save(small_net(), src)
    r = convert(src, "-o", tmp_path / "o.safetensors")
    assert_fails(r, "refusing to unpickle global", "TransformerNet", "state_dict()")


def test_truncated_files(tmp_path):
    src = need_model("candy")
    data = src.read_bytes()
    for name, blob in [("cut_zip.pth", data[:len(data) // 2]),
                       ("cut_zip_end.pth", data[:-30])]:
        p = tmp_path / name
        p.write_bytes(blob)
        out = tmp_path / (name + ".safetensors")
        assert_fails(convert(p, "-o", out), name)
        assert not out.exists()

    legacy = tmp_path / "legacy.pth"
    torch.save(small_net().state_dict(), legacy, _use_new_zipfile_serialization=False)
    blob = legacy.read_bytes()
    for cut, words in [(len(blob) - 100, ("holds",)), (200, ("truncated",))]:
        p = tmp_path / ("cut_legacy_%d.pth" % cut)
        p.write_bytes(blob[:cut])
        out = tmp_path / "o.safetensors"
        assert_fails(convert(p, "-o", out), *words)
        assert not out.exists()


def test_non_model_inputs(tmp_path):
    z = tmp_path / "notes.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("notes/readme.txt", "hello")
    out = tmp_path / "o.safetensors"
    assert_fails(convert(z, "-o", out), "not a PyTorch checkpoint")
    text = tmp_path / "notes.txt"
    text.write_text("just some text\n")
    assert_fails(convert(text, "-o", out), "not a recognized model file")
    # a valid checkpoint of something else: names the missing tensor
    other = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    assert_fails(convert(other, "-o", out), "conv1.conv.weight")
    assert not out.exists()


def test_wrong_shape_named(tmp_path):
    sd = OrderedDict(small_net().state_dict())
    sd["res1.conv2.conv2d.weight"] = torch.zeros(32, 16, 3, 3)
    src = tmp_path / "bad.pth"
    torch.save(sd, src)
    out = tmp_path / "o.safetensors"
    assert_fails(convert(src, "-o", out), "res1.conv2.conv.weight", "(32, 16, 3, 3)")
    assert not out.exists()
    del sd["res1.conv2.conv2d.weight"]
    torch.save(sd, src)
    assert_fails(convert(src, "-o", out), "missing tensor 'res1.conv2.conv.weight'")


def test_missing_input(tmp_path):
    out = tmp_path / "o.safetensors"
    assert_fails(convert(tmp_path / "nope.pth", "-o", out), "nope.pth", "no such file")
    assert not out.exists()
    assert_fails(convert(tmp_path / "nope.pth"), "-o")  # no output given
    src = tmp_path / "tiny.pth"
    torch.save(small_net().state_dict(), src)
    assert_fails(convert(src, "-o", tmp_path / "no" / "dir" / "o.safetensors"),
                 "output folder", "does not exist")


def test_existing_output_needs_force(tmp_path):
    src = tmp_path / "tiny.pth"
    net = small_net(seed=6)
    torch.save(net.state_dict(), src)
    out = tmp_path / "tiny.safetensors"
    out.write_bytes(b"precious")
    assert_fails(convert(src, "-o", out), "exists", "--force")
    assert out.read_bytes() == b"precious"
    r = convert(src, "-o", out, "--force", "--dtype", "bf16")
    assert r.returncode == 0, r.stderr
    got, meta = st.read(out)
    assert meta["dtype"] == "bf16" and len(got) == 2 * 10 + 2 * 9  # 10 convs, 9 norms
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.pth", "tiny.safetensors"]
