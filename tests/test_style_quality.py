"""tools/style_quality.py: its measures on known inputs, and both modes end
to end on small images (the real measurements are in models/README.md)."""
import json
import subprocess

import numpy as np
import pytest

from conftest import BUILD, REPO, SHARED

import style_quality as sq

PYTHON = "/usr/bin/python3"
STYLE = REPO / "models" / "starry_night.safetensors"


def run_tool(*args):
    return subprocess.run([PYTHON, str(REPO / "tools" / "style_quality.py")] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=600,
                          env={"STYLIZE_BUILD": str(BUILD), "STYLIZE_SHARED": str(SHARED),
                               "PATH": "/usr/bin:/bin"})


def test_gram_distance_is_relative_frobenius():
    rng = np.random.default_rng(0)
    ref = {("relu1_1", 1): rng.normal(size=(4, 4)), ("relu2_1", 2): rng.normal(size=(8, 8))}
    per, mean = sq.gram_distance(ref, ref)
    assert mean == 0 and set(per.values()) == {0.0}
    per, mean = sq.gram_distance({k: 3 * v for k, v in ref.items()}, ref)
    assert mean == pytest.approx(2.0)  # |3G - G| / |G|
    assert sq.squared_mean(per) == pytest.approx(4.0)


def test_pixel_measures():
    a = np.zeros((16, 24, 3), np.uint8)
    b = a.copy()
    b[:8, :8] = 64  # one 8x8 block, +64: block means differ by 64 there only
    assert sq.mse(a, b) == pytest.approx(64 ** 2 / 6)
    assert sq.mse(sq.block_means(a), sq.block_means(b)) == pytest.approx(64 ** 2 / 6)
    assert sq.block_means(b).shape == (2, 3, 3)
    assert sq.psnr_of_mse(255.0 ** 2) == 0 and sq.psnr_of_mse(0) == float("inf")
    # a checkerboard has the mean of a flat grey: different pixels, same blocks
    c = np.full((16, 16, 3), 128, np.uint8)
    d = np.where((np.indices((16, 16)).sum(0) % 2)[..., None] == 1, 255, 1).astype(np.uint8)
    assert sq.mse(c, d) > 10000 and sq.mse(sq.block_means(c), sq.block_means(d)) == 0


def test_border_cell_names_the_line_side():
    """A side with a high ratio of few levels is not the line: the cell
    names the side border_line calls a line."""
    r = {"border": [{"side": "top", "step": 1.5, "interior": 0.3},
                    {"side": "left", "step": 9.0, "interior": 2.0}], "border_lines": ["left"]}
    assert sq.border_cell(r) == "**line** left 9.0 (4.5×)"
    r["border_lines"] = []
    assert sq.border_cell(r) == "top 1.5 (5.0×)"


def test_ssim():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)
    assert sq.ssim(a, a) == pytest.approx(1.0)
    noisy = [np.clip(a + rng.normal(0, s, a.shape), 0, 255).astype(np.uint8) for s in (5, 20, 60)]
    values = [sq.ssim(a, n) for n in noisy]
    assert 1 > values[0] > values[1] > values[2] > 0


def test_shift_by():
    img = np.arange(3 * 4 * 3, dtype=np.uint8).reshape(3, 4, 3)
    s = sq.shift_by(img, 1, 0)
    assert np.array_equal(s[:, 1:], img[:, :-1]) and np.array_equal(s[:, 0], img[:, 0])
    s = sq.shift_by(img, 1, 2)
    assert np.array_equal(s[2:, 1:], img[:-2, :-1]) and np.array_equal(s[0], s[2])


@pytest.fixture(scope="module")
def style_run(tmp_path_factory, shared):
    out = tmp_path_factory.mktemp("sq")
    r = run_tool("-m", STYLE, "--long-side", 64, "--no-flicker", "--threads", 1, "--cell", 64,
                 "--label", "starry_night=v1", "-o", out)
    assert r.returncode == 0, r.stderr
    return out, r.stdout


def test_style_mode_end_to_end(style_run):
    out, stdout = style_run
    res = json.loads((out / "style_quality.json").read_text())
    assert res["settings"]["long_side"] == 64 and len(res["settings"]["images"]) == 8
    (m,) = res["models"]
    # the painting comes from the training metadata, at the training style size
    assert m["painting"].endswith("starry_night.jpg") and m["style_size"] == 512
    assert 0 < m["style_distance"] < 1 and m["style_loss"] == pytest.approx(
        np.mean([np.mean([v ** 2 for v in r["style_per_layer"].values()])
                 for r in m["per_image"].values()]))
    assert len(m["per_image"]) == 8 and len(m["style_per_layer"]) == 9
    assert 0.3 < m["content_distance"] < 3 and 0 < m["gram_spread"] < 1
    row = "| starry_night | v1 | %.3f |" % m["style_distance"]
    assert row in stdout and (out / "style_quality.md").read_text() in stdout
    # the border statistic of test_models (v1 starry_night has no line: models/README.md)
    assert [b["side"] for b in m["border"]] == ["top", "bottom", "left", "right"]
    assert m["border_lines"] == [] and all(0 < b["step"] < 4 * b["interior"] for b in m["border"])
    assert sq.border_cell(m) in stdout and "line" not in sq.border_cell(m)
    from PIL import Image
    with Image.open(out / "style_quality_sheet.jpg") as sheet:
        assert sheet.width == 2 * 64 and sheet.height > 8 * 40


def test_stylized_is_closer_to_the_painting_than_the_photo(style_run):
    """The style distance means something: the photos themselves are further
    from the painting than the model's outputs of them."""
    import torch
    out, _ = style_run
    m = json.loads((out / "style_quality.json").read_text())["models"][0]
    threads = torch.get_num_threads()
    try:
        vgg = sq.Vgg(1)  # sets torch's thread count process-wide
        target = vgg.grams(sq.load_painting(sq.Path(m["painting"]), m["style_size"]))
        photos = [sq.load_photo(p, 64) for p in sq.kodak_images()]
        d = np.mean([sq.gram_distance(vgg.grams(p), target)[1] for p in photos])
    finally:
        torch.set_num_threads(threads)
    assert d > 1.2 * m["style_distance"]  # 0.95 vs 0.68 at 64 px


def test_phase_mean_lines_the_shifts_up():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 200, (35, 35, 3)).astype(np.uint8)
    # a network that draws what it sees: every shift, shifted back, is the photo again
    calls = []

    def same(x):
        calls.append(1)
        return x.astype(np.float64)
    assert sq.phase_mean_mse(sq.aligned_outputs(same, img, 4,
                                                {(0, 0): img.astype(np.float64)})) == (0, 0)
    assert len(calls) == 15  # the reference is not drawn again
    # an output at hand (the one-pixel shift's) is not drawn again either
    assert sq.phase_mean_mse(sq.aligned_outputs(same, img, 4, {
        (0, 0): img.astype(np.float64), (1, 0): same(sq.shift_by(img, 1, 0))})) == (0, 0)
    assert len(calls) == 15 + 1 + 14

    # one that also dots its stride grid (16 levels at every 4th pixel of every 4th row): the
    # phase mean spreads the dots to 1 level everywhere, a pixel MSE of (15^2 + 15 * 1^2) / 16
    # = 15 on the 32 x 32 region every shift covers, and the same 8x8 block means
    def dotted(x):
        out = x.astype(np.float64)
        out[::4, ::4] += 16
        return out
    pixel, block = sq.phase_mean_mse(sq.aligned_outputs(dotted, img, 4, {(0, 0): dotted(img)}))
    assert pixel == pytest.approx(15) and block == pytest.approx(0)


def test_alignment_tracking_measures_the_share_a_student_copies():
    rng = np.random.default_rng(4)
    img = rng.integers(0, 200, (35, 35, 3)).astype(np.uint8)

    # a teacher whose tones follow the photo's alignment to its stride-4 grid: it brightens
    # everything by a tenth of the mean of the pixels on the grid, which differs at each shift
    def teacher(x, a=0.1):
        return x.astype(np.float64) + a * x[::4, ::4].mean()
    t = sq.aligned_outputs(teacher, img, 4, {})
    assert len(t) == 16 and t[(0, 0)].shape == (32, 32, 3)

    def summary(student):
        return sq.tracking_summary(sq.alignment_tracking(t, sq.aligned_outputs(student, img, 4, {})))
    same = summary(teacher)
    assert same["explained"] == pytest.approx(1) and same["correlation"] == pytest.approx(1)
    assert same["energy"] == pytest.approx(1)
    # a steady student (the photo brightened by the same amount at every alignment) copies none
    steady = summary(lambda x: x.astype(np.float64) + 10)
    assert steady["explained"] == pytest.approx(0) and steady["correlation"] is None
    assert steady["energy"] == 0
    # half the teacher's dependence: a quarter of its energy is missed
    half = summary(lambda x: teacher(x, 0.05))
    assert half["explained"] == pytest.approx(0.75) and half["correlation"] == pytest.approx(1)
    assert half["energy"] == pytest.approx(0.25)
    # the opposite dependence is worse than none
    assert summary(lambda x: teacher(x, -0.1))["explained"] == pytest.approx(-3)
    # a steady student that draws the teacher's phase mean exactly is at distance 0 from it
    mean = sum(t.values()) / 16
    tr = sq.alignment_tracking(t, {k: mean for k in t})
    assert tr["to_mean"] == pytest.approx(0) and tr["student"] == pytest.approx(0, abs=1e-9)


def test_teacher_mode_against_itself(tmp_path, shared):
    r = run_tool("--teacher", STYLE, "-m", STYLE, "--long-side", 48, "--threads", 1, "--phase-mean",
                 "-o", tmp_path)
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "teacher.json").read_text())
    assert res["psnr"] is None and res["block_psnr"] is None  # identical: infinite PSNR
    assert res["ssim"] == pytest.approx(1.0) and res["gram_distance"] == 0
    assert 5 < res["teacher_consistency_psnr"] < 60
    # block means move less than pixels on a one-pixel shift
    assert res["teacher_consistency_psnr"] < res["teacher_block_consistency_psnr"] < 80
    assert "| starry_night | starry_night | inf | inf | 1.000 | 0.000 |" in r.stdout
    # the mean over the 16 alignments to its stride-4 grid: not its output (the shifts redraw
    # strokes, and at 48 px a 3-pixel shift moves the frame's edges far into it), tones nearer
    assert res["teacher_stride"] == 4
    assert 5 < res["teacher_phase_mean_psnr"] < 60
    assert res["teacher_phase_mean_psnr"] < res["teacher_phase_mean_block_psnr"]
    assert "the teacher's phase mean (4 x 4 shifts)" in r.stdout
    # a student that is its teacher follows every alignment as the teacher does
    tr = res["alignment_tracking"]
    assert tr["explained"] == pytest.approx(1) and tr["correlation"] == pytest.approx(1)
    assert res["student_to_phase_mean_block_psnr"] == pytest.approx(
        res["teacher_phase_mean_block_psnr"])
    assert "the student reproduces 1.000" in r.stdout


@pytest.mark.parametrize("args,msg", [
    (["-m", "nope.safetensors", "--no-flicker"], "nope.safetensors not found"),
    (["--teacher", STYLE, "-m", STYLE, "-m", STYLE], "exactly one --model"),
    (["-m", STYLE, "--phase-mean"], "--phase-mean is the teacher's"),
    (["-m", STYLE, "--style-image", "starry_night"], "expected STYLE=PATH"),
    ([], "no model"),
])
def test_errors(args, msg, tmp_path):
    r = run_tool(*args, "-o", tmp_path)
    assert r.returncode == 1 and msg in r.stderr


def test_a_named_painting_keeps_the_training_style_size(tmp_path):
    """--style-image names the painting, not its size: a model that records
    its training style size is measured against the painting at that size."""
    path = tmp_path / "great_wave_it50.safetensors"
    meta = {"style": "great_wave"}
    got = sq.find_painting(path, meta, {"style_size": 512}, {"great_wave": "/p/great_wave.jpg"})
    assert got == (sq.Path("/p/great_wave.jpg"), 512)
    assert sq.find_painting(path, meta, {}, {"great_wave_it50": "/p/x.jpg"}) == (sq.Path("/p/x.jpg"), None)
