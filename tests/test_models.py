"""The styles shipped in models/: metadata, loading, and that they stylize.

Each model must carry what a user (and a packager) needs to know: for the
project's own styles the style image and its licence, the model's licence,
the training settings; for the two pretrained pytorch/examples models
(mosaic, candy; BSD-3-Clause) the source, copyright holder, licence, origin
and the licence text beside them. Every model must load in libstylize,
repaint a photograph (not return it, not flatten it) and draw no line along
the frame borders.
"""
import json
import subprocess

import numpy as np
import pytest
from PIL import Image

from conftest import BUILD, REPO, SHARED

import stylize_safetensors

MODELS = sorted((REPO / "models").glob("*.safetensors"))
OWN = {"starry_night", "great_wave", "the_scream", "starry_night_fast"}
# pytorch/examples' pretrained models (ONNX model zoo fp16 copy), BSD-3-Clause
REFERENCE = {"mosaic", "candy"}
BSD_LICENSE = REPO / "models" / "LICENSE-pytorch-examples.txt"
COPYRIGHT = "Copyright (c) 2017, Pytorch contributors"


def test_the_promised_styles_are_shipped():
    assert OWN | REFERENCE <= {p.stem for p in MODELS}


def test_every_shipped_model_has_a_known_licence():
    assert {p.stem for p in MODELS} <= OWN | REFERENCE, "a new model: add its licence checks here"


@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_metadata(path):
    m = stylize_safetensors.read(path)[1]  # validates the file too
    assert m["format"] == "stylize" and m["architecture"] == "transformer_net"
    assert m["style"] == path.stem
    assert m["dtype"] == "fp16"
    if path.stem in REFERENCE:
        assert m["license"] == "BSD-3-Clause"
        assert m["copyright"] == COPYRIGHT
        assert "pytorch/examples" in m["source"] and path.stem in m["source"]
        assert "ONNX model zoo" in m["origin"] and "fp16" in m["origin"]
        assert m["license_file"].startswith(BSD_LICENSE.name)
        return
    assert m["style_license"] == "public domain" and m["style_image"]
    assert m["license"] == "MIT"
    training = json.loads(m["training"])
    assert training["iterations"] > 0 and training["widths"]


def test_bsd_licence_text_travels_with_the_pretrained_models():
    text = BSD_LICENSE.read_text()
    for name in REFERENCE:  # the note says which files it covers
        assert "models/%s.safetensors" % name in text
    # BSD-3: the copyright notice, the three conditions and the disclaimer
    assert COPYRIGHT in text and "BSD 3-Clause License" in text
    assert text.count("* Redistributions") == 2 and "* Neither the name" in text
    assert 'PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"' in text
    original = SHARED / "models" / BSD_LICENSE.name
    if original.is_file():  # the licence text is copied verbatim
        assert text.endswith(original.read_text())


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_pretrained_weights_are_shipped_unchanged(name, shared):
    """mosaic/candy are pytorch/examples' weights, only rounded to fp16 (the
    source is an fp16 copy already: its conv weights are exact in fp16)."""
    import convert_model
    src = shared / "models" / (name + ".pth")
    want = convert_model.prepare_tensors(convert_model.load_model(src)[0])
    got = stylize_safetensors.read(REPO / "models" / (name + ".safetensors"))[0]
    assert sorted(got) == sorted(want)
    for key, val in want.items():
        assert np.array_equal(got[key], val.astype(np.float16).astype(np.float32)), key


@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_stylizes_a_photograph(release, path, tmp_path):
    info = json.loads(release.run("stylize-image", "-m", path, "--info", check=True).stdout)
    assert info["width1"] == (16 if path.stem.endswith("_fast") else 32)
    src = tmp_path / "in.png"
    Image.open(SHARED / "media" / "kodak" / "kodim23.png").convert("RGB").resize((192, 128)).save(src)
    out = tmp_path / "out.png"
    release.run("stylize-image", "-m", path, "--threads", "1", src, out, check=True)
    a = np.asarray(Image.open(src), dtype=np.float64)
    b = np.asarray(Image.open(out), dtype=np.float64)
    assert b.shape == a.shape
    assert np.abs(a - b).mean() > 20, "the output is too close to the photograph: not a style"
    assert b.std() > 20, "the output is flat"
    # the picture survives: stylized and original luminance still correlate
    ya, yb = a.mean(axis=2).ravel(), b.mean(axis=2).ravel()
    assert np.corrcoef(ya, yb)[0, 1] > 0.2


def test_filter_finds_a_shipped_style_by_name(tmp_path):
    ffmpeg = BUILD / "bin" / "ffmpeg"
    if not ffmpeg.exists():
        pytest.skip("ffmpeg not built")
    p = subprocess.run([str(ffmpeg), "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=64x48", "-frames:v", "1",
                        "-vf", "stylize=model=starry_night:threads=1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                       capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    assert len(p.stdout) == 64 * 48 * 3
