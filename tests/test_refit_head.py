"""tools/refit_head.py: the least-squares refit of a _live model's head.

The teacher here is the student itself with another head, so the exact
solution is known: the pixel fit must find the teacher's head, and the
block term must move the block means towards the teacher's."""
import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image

import refit_head
import stylize_safetensors
import torch_reference as tr
from stylize_nets import compact

SMALL = compact.live_spec(stem=8, body=16, blocks=1, up_widths=(8,))  # pixel shuffle 2


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def save(net, path, **extra):
    meta = {"format": "stylize", "format_version": "1", "style": "x_live", "license": "MIT",
            "source": "test", "dtype": "fp16", "training": json.dumps({"iterations": 7}),
            **net.metadata(), **extra}
    stylize_safetensors.write(path, {k: v.detach().numpy() for k, v in net.state_dict().items()}, meta, "F16")
    return path


def fp16_net(net):
    """The net as its fp16 file holds it."""
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(p.half().float())
    return net


@pytest.fixture
def setup(tmp_path):
    student = fp16_net(compact.random_compact(SMALL, seed=1, target_std=15.0))
    teacher = copy.deepcopy(student)
    g = torch.Generator().manual_seed(5)
    head = teacher._convs[-1]
    with torch.no_grad():
        head.weight.add_(0.05 * head.weight.std() * torch.randn(head.weight.shape, generator=g))
        head.bias.add_(1.0 * torch.randn(head.bias.shape, generator=g))
    fp16_net(teacher)
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(7):
        small = rng.integers(0, 256, (6, 8, 3)).astype(np.uint8)
        Image.fromarray(small).resize((64, 48), Image.BICUBIC).save(photos / ("p%d.png" % i))
    return (save(student, tmp_path / "student.safetensors"), save(teacher, tmp_path / "teacher.safetensors"),
            photos, teacher, tmp_path)


def run(setup, *extra, out="out.safetensors"):
    s, t, photos, _, tmp = setup
    args = ["--teacher", str(t), "-m", str(s), "--content", str(photos), "--photos", "5", "--check", "2",
            "--long-side", "64", "--work", str(tmp / "cache"), "--level-phases", "0", "--teacher-runner",
            "torch"] + list(extra)
    if out:
        args += ["-o", str(tmp / out)]
    return refit_head.main(args), tmp / out if out else None


def test_pixel_fit_finds_the_teachers_head(setup):
    rc, out = run(setup, "--block-weight", "0", "--ridge", "0")
    assert rc == 0
    tensors, meta = stylize_safetensors.read(out)
    want = setup[3]._convs[-1]
    np.testing.assert_allclose(tensors["head.weight"], want.weight.detach().numpy(), atol=2e-3, rtol=2e-3)
    np.testing.assert_allclose(tensors["head.bias"], want.bias.detach().numpy(), atol=0.1, rtol=2e-3)
    # the rest of the model is untouched, and the file says what was done
    before = stylize_safetensors.read(setup[0])[0]
    assert all(np.array_equal(tensors[k], before[k]) for k in before if not k.startswith("head."))
    training = json.loads(meta["training"])
    assert training["iterations"] == 7 and training["refit_head"]["photos"] == 5
    assert training["refit_head"]["report"]["check"]["psnr"][1] > 60
    assert "refitted by least squares" in meta["source"] and meta["network"] == stylize_safetensors.read(setup[0])[1]["network"]


def test_block_term_brings_the_block_means_closer(setup):
    rc, _ = run(setup, "--pixel-weight", "0", "--block-weight", "1", "--ridge", "0.001", out=None)
    assert rc == 0
    report = refit_head.refit(refit_head.build_parser().parse_args(
        ["--teacher", str(setup[1]), "-m", str(setup[0]), "--content", str(setup[2]), "--photos", "5",
         "--check", "2", "--long-side", "64", "--work", str(setup[4] / "cache"), "--pixel-weight", "0",
         "--teacher-runner", "torch",
         "--block-weight", "1", "--ridge", "0.001"]))
    before, after = report["fit"]["block_psnr"]
    assert after > before + 3


def test_levelling_keeps_the_phases_even(setup):
    rc, out = run(setup, "--level-phases", "3")
    assert rc == 0
    training = json.loads(stylize_safetensors.read(out)[1]["training"])["refit_head"]
    # as tools/distill.py's export levels them: half way between photos and a flat frame
    assert training["phase_spread_after"] < training["phase_spread_before"]
    assert training["flat_phase_spread_after"] < training["flat_phase_spread_before"]


def test_engine_teacher_is_the_torch_teacher_in_8_bits(setup):
    """--teacher-runner engine (the default) runs the teacher through
    build/bin/stylize-image: the fit then finds the teacher's head up to
    the 8-bit rounding of its output."""
    rc, out = run(setup, "--block-weight", "0", "--ridge", "0", "--teacher-runner", "engine")
    assert rc == 0
    report = json.loads(stylize_safetensors.read(out)[1]["training"])["refit_head"]["report"]
    assert report["check"]["psnr"][1] > 55  # rounding alone: 59 dB


def test_bad_inputs_fail_cleanly(setup):
    s, t, photos, _, tmp = setup
    dest = tmp / "bad.safetensors"
    kodak = tmp / "kodak"
    kodak.mkdir()
    classic = tmp / "classic.safetensors"
    tr.save_safetensors_model(tr.random_model(widths=(4, 8, 8), res_blocks=1, seed=1), classic)
    cases = [
        ["--teacher", str(t), "-m", str(tmp / "missing.safetensors")],
        ["--teacher", str(t), "-m", str(s), "--content", str(kodak)],
        ["--teacher", str(t), "-m", str(s), "--photos", "6", "--check", "2"],  # only 7 photos
        ["--teacher", str(t), "-m", str(classic)],  # not a _live model
    ]
    for args in cases:
        full = args + ["--work", str(tmp / "cache"), "-o", str(dest), "--long-side", "64"]
        if "--content" not in args:
            full += ["--content", str(photos)]
        assert refit_head.main(full) == 1 and not dest.exists()
    other = save(compact.random_compact(SMALL, seed=2), tmp / "other.safetensors", teacher_sha256="0" * 64)
    assert refit_head.main(["--teacher", str(t), "-m", str(other), "--content", str(photos), "--work",
                            str(tmp / "cache"), "--photos", "2", "--check", "1", "-o", str(dest)]) == 1
    assert not dest.exists()
