"""Malformed and hostile model files: each is refused by the C loader with its
own message naming the problem (and the tensor), never a crash. Runs the
release and the ASan/UBSan builds of stylize-image."""
import json
import struct

import numpy as np
import pytest

import stylize_safetensors as st


def tiny_model(widths=(4, 8, 8), res_blocks=1, k=3):
    """A valid TransformerNet state dict with random weights."""
    rng = np.random.default_rng(0)
    c1, c2, c3 = widths
    t = {}

    def conv(name, cout, cin, kk):
        t[f"{name}.conv.weight"] = rng.normal(0, 0.1, (cout, cin, kk, kk)).astype(np.float32)
        t[f"{name}.conv.bias"] = rng.normal(0, 0.1, cout).astype(np.float32)

    def norm(name, c):
        t[f"{name}.weight"] = np.ones(c, np.float32)
        t[f"{name}.bias"] = np.zeros(c, np.float32)

    conv("conv1", c1, 3, k); norm("in1", c1)
    conv("conv2", c2, c1, 3); norm("in2", c2)
    conv("conv3", c3, c2, 3); norm("in3", c3)
    for i in range(1, res_blocks + 1):
        conv(f"res{i}.conv1", c3, c3, 3); norm(f"res{i}.in1", c3)
        conv(f"res{i}.conv2", c3, c3, 3); norm(f"res{i}.in2", c3)
    conv("deconv1", c2, c3, 3); norm("in4", c2)
    conv("deconv2", c1, c2, 3); norm("in5", c1)
    conv("deconv3", 3, c1, k)
    return t


def header_and_data(tensors, metadata=None):
    """The safetensors header object and data bytes, for hand-made damage."""
    header, chunks, off = {}, [], 0
    for name in sorted(tensors):
        raw = tensors[name].astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    return header, b"".join(chunks)


def write_header_bytes(path, header_bytes, data):
    path.write_bytes(struct.pack("<Q", len(header_bytes)) + header_bytes + data)


def damaged(kind, path):
    """Write a model file damaged in one way; return the message expected."""
    t = tiny_model()
    header, data = header_and_data(t)
    if kind == "valid":
        st.write(path, t, {"style": "tiny"})
        return None
    if kind == "empty":
        path.write_bytes(b"")
        return "too short"
    if kind == "truncated":
        st.write(path, t)
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
        return "data section"
    if kind == "truncated_header":
        st.write(path, t)
        path.write_bytes(path.read_bytes()[:100])
        return "exceeds the file size"
    if kind == "huge_header_length":
        path.write_bytes(struct.pack("<Q", 2 * 1024**3) + b"{}" + b"\0" * 64)
        return "header length 2147483648 is larger than the 100 MB"
    if kind == "bad_json":
        write_header_bytes(path, b'{"conv1.conv.weight": {"dtype": "F32", "shape": [4,3,3,3], ', data)
        return "not valid JSON"
    if kind == "json_not_object":
        write_header_bytes(path, b"[1, 2, 3]", data)
        return "not a JSON object"
    if kind == "offsets_past_end":
        header["deconv3.conv.bias"]["data_offsets"] = [len(data) - 12, len(data) + 100]
        st.write_raw(path, header, data)
        return "'deconv3.conv.bias': data_offsets"
    if kind == "overlap":
        a, b = header["in1.bias"], header["in1.weight"]
        b["data_offsets"] = list(a["data_offsets"])
        st.write_raw(path, header, data)
        return "overlap"
    if kind == "hole":
        header2, data2 = header_and_data(t)
        names = sorted(t)
        for name in names[5:]:
            header2[name]["data_offsets"] = [o + 16 for o in header2[name]["data_offsets"]]
        first = sum(t[n].size * 4 for n in names[:5])
        st.write_raw(path, header2, data2[:first] + b"\0" * 16 + data2[first:])
        return "unused bytes"
    if kind == "wrong_shape":
        t["conv2.conv.weight"] = np.zeros((8, 5, 3, 3), np.float32)
        header, data = header_and_data(t)
        st.write_raw(path, header, data)
        return "'conv2.conv.weight' has shape [8,5,3,3], expected [8,4,3,3]"
    if kind == "size_mismatch":
        header["in2.weight"]["shape"] = [9]
        st.write_raw(path, header, data)
        return "'in2.weight': data_offsets span 32 bytes"
    if kind == "wrong_dtype":
        header["in3.bias"]["dtype"] = "I64"
        st.write_raw(path, header, data)
        return "'in3.bias': dtype 'I64' is not supported"
    if kind == "missing_tensor":
        del t["in4.weight"]
        header, data = header_and_data(t)
        st.write_raw(path, header, data)
        return "'in4.weight' is missing"
    if kind == "extra_tensor":
        t["evil.weight"] = np.zeros(4, np.float32)
        header, data = header_and_data(t)
        st.write_raw(path, header, data)
        return "unexpected tensor 'evil.weight'"
    if kind == "nan_weight":
        t["res1.conv2.conv.weight"][0, 0, 1, 1] = np.nan
        header, data = header_and_data(t)
        st.write_raw(path, header, data)
        return "'res1.conv2.conv.weight' contains a non-finite value"
    if kind == "wrong_architecture":
        header, data = header_and_data(t, {"architecture": "resnet50"})
        st.write_raw(path, header, data)
        return "architecture 'resnet50'"
    if kind == "future_version":
        header, data = header_and_data(t, {"format_version": "7"})
        st.write_raw(path, header, data)
        return "format_version '7'"
    if kind == "even_kernel":
        t["conv1.conv.weight"] = np.zeros((4, 3, 4, 4), np.float32)
        header, data = header_and_data(t)
        st.write_raw(path, header, data)
        return "'conv1.conv.weight' must have shape [out, in, k, k] with an odd k"
    if kind == "negative_offset":
        header["in1.bias"]["data_offsets"] = [-4, 12]
        st.write_raw(path, header, data)
        return "'in1.bias': data_offsets must be two non-negative integers"
    if kind == "deep_json":
        write_header_bytes(path, b"[" * 5000 + b"]" * 5000, data)
        return "not valid JSON"
    raise AssertionError(kind)


KINDS = ["empty", "truncated", "truncated_header", "huge_header_length", "bad_json", "json_not_object",
         "offsets_past_end", "overlap", "hole", "wrong_shape", "size_mismatch", "wrong_dtype", "missing_tensor",
         "extra_tensor", "nan_weight", "wrong_architecture", "future_version", "even_kernel", "negative_offset",
         "deep_json"]


def test_valid_tiny_model_loads(any_build, tmp_path):
    path = tmp_path / "tiny.safetensors"
    damaged("valid", path)
    proc = any_build.run("stylize-image", "-m", path, "--info", check=True)
    info = json.loads(proc.stdout)
    assert (info["width1"], info["width2"], info["width3"], info["res_blocks"]) == (4, 8, 8, 1)
    assert info["style"] == "tiny"


@pytest.mark.parametrize("kind", KINDS)
def test_malformed_model_is_refused(any_build, tmp_path, kind):
    path = tmp_path / f"{kind}.safetensors"
    expected = damaged(kind, path)
    proc = any_build.run("stylize-image", "-m", path, "--info")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.startswith("stylize-image: model '"), proc.stderr
    assert expected in proc.stderr, proc.stderr
    assert "AddressSanitizer" not in proc.stderr and "runtime error" not in proc.stderr


def test_missing_model_and_directory(any_build, tmp_path):
    proc = any_build.run("stylize-image", "-m", tmp_path / "nope.safetensors", "--info")
    assert proc.returncode == 1 and "No such file" in proc.stderr, proc.stderr
    proc = any_build.run("stylize-image", "-m", tmp_path, "--info")
    assert proc.returncode == 1 and "not a regular file" in proc.stderr, proc.stderr
    proc = any_build.run("stylize-image", "-m", "no_such_style", "--info")
    assert proc.returncode == 1 and "no style named 'no_such_style'" in proc.stderr, proc.stderr


def test_style_name_lookup(release, tmp_path):
    path = tmp_path / "mystyle.safetensors"
    damaged("valid", path)
    proc = release.run("stylize-image", "-m", "mystyle", "--info", env={"STYLIZE_MODEL_PATH": f"/nonexistent:{tmp_path}"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["style"] == "tiny"
