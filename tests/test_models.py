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

from conftest import BUILD, CPU_HAS_BF16, REPO, SHARED

import stylize_safetensors
from border_line import BORDER_IMAGES, border_lines, border_photo

MODELS = sorted((REPO / "models").glob("*.safetensors"))
OWN = {"starry_night", "great_wave", "the_scream", "shipwreck"}
# pytorch/examples' pretrained models (ONNX model zoo fp16 copy), BSD-3-Clause
REFERENCE = {"mosaic", "candy"}
# compact networks distilled from a shipped model (tools/distill.py), named <teacher>_live
LIVE = {name + "_live" for name in OWN | REFERENCE}
BSD_LICENSE = REPO / "models" / "LICENSE-pytorch-examples.txt"
COPYRIGHT = "Copyright (c) 2017, Pytorch contributors"


def test_the_promised_styles_are_shipped():
    assert OWN | REFERENCE | LIVE <= {p.stem for p in MODELS}


def test_every_shipped_model_has_a_known_licence():
    assert {p.stem for p in MODELS} <= OWN | REFERENCE | LIVE, "a new model: add its licence checks here"


@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_metadata(path):
    m = stylize_safetensors.read(path)[1]  # validates the file too
    assert m["format"] == "stylize"
    assert m["architecture"] == ("compact" if path.stem in LIVE else "transformer_net")
    assert m["style"] == path.stem
    assert m["dtype"] == "fp16"
    if path.stem in LIVE:  # names its teacher, which is shipped, byte for byte
        import hashlib
        teacher = REPO / "models" / m["teacher"]
        assert m["teacher"] == path.stem[:-len("_live")] + ".safetensors" and teacher.is_file()
        assert m["teacher_sha256"] == hashlib.sha256(teacher.read_bytes()).hexdigest()
        tm = stylize_safetensors.read(teacher)[1]
        assert m["license"] == tm["license"] and m.get("copyright") == tm.get("copyright")
        assert m["trained_by"] == "tools/distill.py" and "content/photos" in m["data"]
        assert json.loads(m["training"])["iterations"] > 0 and json.loads(m["network"])["layers"]
        return
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
    for name in REFERENCE | {n + "_live" for n in REFERENCE}:  # the note says which files it covers
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
    assert info["width1"] == 32
    if path.stem in LIVE:  # a fraction of its teacher's cost
        assert info["architecture"] == "compact" and info["macs_per_pixel"] < 154000 / 12
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


@pytest.mark.parametrize("name", sorted(LIVE))
def test_live_twin_keeps_its_teachers_tones(release, name, shared, tmp_path):
    """A floor under the twin's fidelity (8x8 block means: tones and colours,
    not stroke positions) to its teacher on two Kodak photographs (never
    trained on), so that a broken export or engine change shows. Measured
    with tools/style_quality.py --teacher over all 8 at 512 px: mosaic_live
    25.02 dB, candy_live 21.14 (the issue's target, 25 dB, is not reached by
    candy_live: models/README.md)."""
    vals = []
    for img in ("kodim05", "kodim23"):
        src = tmp_path / (img + ".png")
        Image.open(shared / "media" / "kodak" / (img + ".png")).convert("RGB").resize((384, 256)).save(src)
        outs = []
        for m in (name, name[:-len("_live")]):
            out = tmp_path / ("%s_%s.png" % (img, m))
            release.run("stylize-image", "-m", REPO / "models" / (m + ".safetensors"), "--mode", "full",
                        "--precision", "fp32", "--threads", "2", src, out, check=True)
            outs.append(np.asarray(Image.open(out), dtype=np.float64))
        a, b = (o.reshape(32, 8, 48, 8, 3).mean(axis=(1, 3)) for o in outs)
        vals.append(10 * np.log10(255.0 ** 2 / ((a - b) ** 2).mean()))
    print("\n  %s: 8x8 block-mean PSNR to its teacher %.1f dB" % (name, np.mean(vals)))
    assert np.mean(vals) > 18


def test_filter_finds_a_shipped_style_by_name(tmp_path):
    ffmpeg = BUILD / "bin" / "ffmpeg"
    if not ffmpeg.exists():
        pytest.skip("ffmpeg not built")
    p = subprocess.run([str(ffmpeg), "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=64x48", "-frames:v", "1",
                        "-vf", "stylize=model=starry_night:threads=1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                       capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    assert len(p.stdout) == 64 * 48 * 3


def test_a_renamed_style_is_found_by_its_old_name(release):
    """starry_night_fast was replaced by starry_night_live: the old name still
    loads the new model (library name lookup, for every program)."""
    for name in ("starry_night_fast", "starry_night_fast.safetensors"):
        info = json.loads(release.run("stylize-image", "-m", name, "--info", check=True).stdout)
        assert info["style"] == "starry_night_live", info
    assert not (REPO / "models" / "starry_night_fast.safetensors").exists()


# ---------------------------------------------------------------------------
# No line along the frame borders (issue 14): the statistic and its
# calibration are in tools/border_line.py (style_quality.py reports it too).
BORDER_XFAIL = {
    "mosaic": "pytorch/examples' mosaic draws a dark line along the top row (PyTorch too)",
    "candy": "pytorch/examples' candy draws a faint tinted line along the top and left rows",
}


@pytest.fixture(scope="module")
def border_photos(tmp_path_factory, shared):
    """The Kodak photos of border_line.BORDER_IMAGES, cropped and scaled."""
    d = tmp_path_factory.mktemp("border")
    paths = []
    for name in BORDER_IMAGES:
        paths.append(d / (name + ".png"))
        border_photo(shared / "media" / "kodak" / (name + ".png")).save(paths[-1])
    assert border_lines([np.asarray(Image.open(p)) for p in paths]) == []  # the inputs are clean
    return paths


def test_border_statistic_sees_a_faint_line():
    rng = np.random.default_rng(1)
    # a textured picture (diagonal strokes + noise) and the same with a line
    # 8 levels darker along the left border, and 2 px lighter at the bottom
    yy, xx = np.mgrid[0:128, 0:192]
    base = 120 + 20 * np.sin((xx + 2 * yy) * 0.7)[..., None] + rng.normal(0, 6, (128, 192, 3))
    assert border_lines([base]) == []
    lined = base.copy()
    lined[:, 0] -= 8
    lined[-2:] += 8
    assert [side for side, _, _ in border_lines([lined])] == ["bottom", "left"]


def border_params():
    return [pytest.param(p, id=p.stem, marks=[pytest.mark.xfail(reason=BORDER_XFAIL[p.stem], strict=True)]
                         if p.stem in BORDER_XFAIL else []) for p in MODELS]


@pytest.mark.parametrize("path", border_params())
def test_no_line_at_the_borders_of_a_photo(release, path, border_photos, tmp_path):
    outs = []
    for src in border_photos:
        out = tmp_path / src.name
        release.run("stylize-image", "-m", path, "--threads", "2", "--precision", "fp32", src, out,
                    check=True)
        outs.append(np.asarray(Image.open(out).convert("RGB")))
    assert border_lines(outs) == [], "(side, step in levels, interior RMS)"


def flat_spread(b, live):
    """The largest spread (max - min, levels) of a channel of an output of a
    flat frame. A twin's pixel-shuffle output draws each of its 2x2 sub-pixel
    phases from channels of its own, so a flat input gives a faint uniform 2x2
    pattern from their biases (measured: up to 2 levels between the phases,
    starry_night_live; 0 within each, in fp32 and bf16, tiled or not): for a
    twin the spread within each phase, and the pattern at most 3 levels."""
    if not live:
        return (b.max(axis=(0, 1)) - b.min(axis=(0, 1))).max()
    phases = [b[i::2, j::2] for i in range(2) for j in range(2)]
    means = np.array([q.mean(axis=(0, 1)) for q in phases])
    assert (means.max(axis=0) - means.min(axis=0)).max() <= 3, "a 2x2 pattern stronger than the biases make"
    return max((q.max(axis=(0, 1)) - q.min(axis=(0, 1))).max() for q in phases)


@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
@pytest.mark.parametrize("opts", [[], ["--thumb", "64", "--tile", "64"]], ids=["default", "tiles"])
def test_flat_grey_frame_stays_flat_to_the_borders(release, path, opts, tmp_path):
    """Reflection padding of a flat frame is flat, so every pixel must come out
    alike: a border that differs would be the engine's doing (padding, tiles)."""
    src, out = tmp_path / "grey.png", tmp_path / "out.png"
    Image.fromarray(np.full((150, 202, 3), 128, np.uint8)).save(src)
    release.run("stylize-image", "-m", path, "--threads", "1", "--precision", "fp32", *opts, src, out, check=True)
    b = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert flat_spread(b, path.stem in LIVE) <= 1
    # bf16 (where the CPU has it): the same, but for rounding. Measured: candy in `full` mode
    # (the default for this size) differs by up to 3 levels between the 2x2 phases of its
    # sub-pixel decoder, uniformly over the frame (not at the borders): the flat frame's
    # channels are not quite constant after bf16 convolutions. Other models: <= 1.
    if CPU_HAS_BF16:
        release.run("stylize-image", "-m", path, "--threads", "1", "--precision", "bf16", *opts, src, out, check=True)
        b = np.asarray(Image.open(out).convert("RGB")).astype(int)
        spread = flat_spread(b, path.stem in LIVE)
        assert spread <= (3 if path.stem == "candy" else 1), spread
