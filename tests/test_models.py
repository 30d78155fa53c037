"""The styles shipped in models/: metadata, loading, and that they stylize.

Each model must carry what a user (and a packager) needs to know: the style
image and its licence, the model's licence, the training settings; it must
load in libstylize and repaint a photograph (not return it, not flatten it).
"""
import json
import subprocess

import numpy as np
import pytest
from PIL import Image

from conftest import BUILD, REPO, SHARED

import stylize_safetensors

MODELS = sorted((REPO / "models").glob("*.safetensors"))
EXPECTED = {"starry_night", "great_wave", "the_scream", "starry_night_fast"}


def test_the_promised_styles_are_shipped():
    assert EXPECTED <= {p.stem for p in MODELS}


@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_metadata(path):
    m = stylize_safetensors.read(path)[1]  # validates the file too
    assert m["format"] == "stylize" and m["architecture"] == "transformer_net"
    assert m["style"] == path.stem
    assert m["style_license"] == "public domain" and m["style_image"]
    assert m["license"] == "MIT"
    assert m["dtype"] == "fp16"
    training = json.loads(m["training"])
    assert training["iterations"] > 0 and training["widths"]


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
