"""tools/distill.py and the shared training package tools/stylize_nets:
the compact network's facts (receptive field, stride, layout checks), the
distillation losses, and a tiny end-to-end distillation (export, metadata,
resume) on CPU."""
import hashlib
import json

import numpy as np
import pytest
import torch

from conftest import CPU_HAS_BF16, SHARED

import distill
import stylize_safetensors
import torch_reference as tr
from stylize_nets import compact
from stylize_nets.losses import block_loss, stability_loss, vgg_features


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


LAYOUTS = {
    "live": compact.live_spec(),
    "full-blocks": compact.live_spec(stem=8, body=16, blocks=2, block="full", up="full", up_widths=(8,)),
    "s2d4": compact.live_spec(s2d=4, stem=8, body=16, blocks=1, up_widths=(8,), shuffle=4),
    "s2d1": compact.live_spec(s2d=1, stem=8, body=16, blocks=1, up_widths=(8,), shuffle=1, stem_kernel=5),
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_receptive_radius_is_the_measured_dependence(name):
    """Perturb one input pixel: exactly the outputs within the computed
    radius may change (checked along a row, at every phase of the stride)."""
    net = compact.random_compact(LAYOUTS[name], seed=3).double()
    r, t = net.receptive_radius(), net.total_stride()
    w = 2 * r + 8 * t + 2
    x = torch.rand(1, 3, 8, w, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 255
    with torch.no_grad():
        rec = []
        base = net(x, record=rec)  # then fixed statistics, as in tin tiles: no global coupling
        stats = [(m, v) for m, v in rec]
        reach = 0
        for c in range(w // 2 - t, w // 2 + t):
            y = x.clone()
            y[0, :, 4, c] += 50
            d = (net(y, stats=stats) - base).abs().amax(dim=(0, 1, 2))
            cols = torch.nonzero(d > 1e-9).flatten()
            reach = max(reach, int((cols - c).abs().max()))
    assert reach <= r
    assert reach >= r - t  # the bound is tight up to the phase


def test_total_stride_and_cost_of_the_live_layout():
    net = compact.CompactNet(*LAYOUTS["live"])
    assert net.total_stride() == 4
    assert net.macs_per_pixel() == pytest.approx(6456)
    y = net(torch.zeros(1, 3, 7, 5))
    assert tuple(y.shape) == (1, 3, 8, 8)


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s["layers"][2].update(groups=3), "groups"),
    (lambda s: s["layers"][2].pop("save_skip"), "skip"),
    (lambda s: s.update(pixel_shuffle=4), "channels"),
    (lambda s: s["layers"][1].update(stride=1), "stride"),
    (lambda s: s["layers"][-1].update(relu=True), "last layer"),
    (lambda s: s.update(version=2), "version"),
    (lambda s: s.update(extra=1), "unknown"),
])
def test_layout_errors_are_named(mutate, message):
    spec, shapes = compact.live_spec()
    spec = json.loads(json.dumps(spec))
    mutate(spec)
    with pytest.raises(compact.SpecError, match=message):
        compact.check_spec(spec, shapes)


def test_level_shuffle_phases_removes_a_checker():
    """A head whose sub-pixel phases differ by a few levels draws a fixed
    checker; leveling its biases gives every phase the same mean colour on the
    calibration photos and changes nothing else (the phases' average stays).
    By default the target lies halfway to a flat frame's phase means, so that
    neither the photos nor a flat frame keep more than half the difference."""
    import copy
    net = compact.random_compact(seed=5).float()
    pp = net.shuffle * net.shuffle
    with torch.no_grad():  # a checker: phase k of every colour offset by 2k levels
        net._convs[-1].bias += torch.arange(pp, dtype=torch.float32).repeat(3) * 2.0
    photos = [torch.from_numpy(np.ascontiguousarray(tr._calibration_image(64 + 8 * i, 96).transpose(2, 0, 1)))
              for i in range(3)]
    flat = [torch.full((3, 32, 32), 128.0)]
    halfway = copy.deepcopy(net)
    before = compact.shuffle_phase_means(net, photos)
    spread_before, spread_after, _, _ = compact.level_shuffle_phases(net, photos, flat_weight=0.0)
    after = compact.shuffle_phase_means(net, photos)
    assert spread_before >= 5.9 and spread_after < 1e-3
    assert torch.allclose(after.mean(dim=1), before.mean(dim=1), atol=1e-3)

    d = before - compact.shuffle_phase_means(halfway, flat)
    half = float((d.max(dim=1).values - d.min(dim=1).values).max()) / 2
    p_before, p_after, f_before, f_after = compact.level_shuffle_phases(halfway, photos)
    assert p_before >= 5.9 and f_before >= 5.9 and half > 0.1  # the random net's flat checker differs
    assert p_after <= half + 1e-3 and f_after <= half + 1e-3


def test_stability_loss_is_zero_for_a_shift_equivariant_map():
    x = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(2)) * 255
    a, b = x[:, :, :32, :32], x[:, :, 3:35, 5:37]
    assert stability_loss(a, b, 3, 5, border=4).item() == 0
    assert stability_loss(a, b, 2, 5, border=4).item() > 0


def test_block_loss_sees_tones_not_strokes():
    """A texture that keeps every 8x8 block's mean costs nothing; a colour
    cast costs its size."""
    t = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(3)) * 200
    stroke = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).repeat(16, 24)[None, None] * 20  # zero mean per block
    assert block_loss(t + stroke, t).item() < 1e-6
    assert abs(block_loss(t + 25.5, t).item() - 0.1) < 1e-6
    # the root-mean-square form: the same units, weighs a large miss more than many small ones
    assert block_loss(t + stroke, t, norm="rms").item() < 1e-6
    assert abs(block_loss(t + 25.5, t, norm="rms").item() - 0.1) < 1e-6
    miss = torch.zeros_like(t)
    miss[:, :, :8, :8] = 255.0  # one block of 24 wrong by 255
    assert block_loss(t + miss, t, norm="rms").item() > 3 * block_loss(t + miss, t).item()


def test_vgg_margin_keeps_the_feature_shapes(vgg_dir):
    import vgg19_tfjs
    vgg = vgg19_tfjs.VGG19Features(str(vgg_dir), upto="relu3_1")
    x = torch.rand(1, 3, 48, 64) * 255
    layers = ["relu1_1", "relu2_2", "relu3_1"]
    plain = vgg_features(vgg, x, layers)
    padded = vgg_features(vgg, x, layers, margin=16)
    for name in layers:
        assert plain[name].shape == padded[name].shape
        # inside, away from the border, the features agree (zero padding reaches in
        # one pixel per conv: at most 3 at these layers' own resolution)
        c = 4
        a, b = plain[name][..., c:-c, c:-c], padded[name][..., c:-c, c:-c]
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-3)


@pytest.fixture(scope="module")
def vgg_dir():
    d = SHARED / "vgg19"
    if not (d / "model.json").is_file():
        pytest.skip("VGG19 weights not found in %s" % d)
    return d


def _photos(n=2):
    found = sorted((SHARED / "content" / "photos").glob("*"))[:n]
    if len(found) < n:
        pytest.skip("training photographs not found")
    return found


def test_distill_exports_resumes_and_names_its_teacher(tmp_path, vgg_dir):
    teacher = tr.random_model((8, 16, 16), 1, 3, seed=5)
    tpath = tmp_path / "teacher.safetensors"
    tr.save_safetensors_model(teacher, tpath, {"format": "stylize", "format_version": "1",
                                                "architecture": "transformer_net", "style": "t",
                                                "license": "CC0-1.0"})
    out = tmp_path / "t_live.safetensors"
    a, b = _photos()
    common = ["--teacher", str(tpath), "-o", str(out), "--content", str(a), "--content", str(b),
              "--stem", "8", "--body", "8", "--blocks", "1", "--up-widths", "8", "--size", "32",
              "--batch", "2", "--max-side", "96", "--log-every", "1", "--checkpoint-every", "2",
              "--threads", "1", "--vgg", str(vgg_dir), "--checkpoint-dir", str(tmp_path / "ck")]
    assert distill.main(common + ["--iterations", "2", "--block-weight", "4"]) == 0
    assert distill.main(common + ["--iterations", "3", "--resume", "--block-weight", "4"]) == 0
    tensors, meta = stylize_safetensors.read(out)
    assert meta["architecture"] == "compact" and meta["teacher"] == "teacher.safetensors"
    assert meta["teacher_sha256"] == hashlib.sha256(tpath.read_bytes()).hexdigest()
    assert meta["license"] == "CC0-1.0" and meta["style"] == "t_live"
    training = json.loads(meta["training"])
    assert training["iterations"] == 3 and training["block_weight"] == 4
    assert training["amp"] in ("off", "bf16") and training["amp_requested"] == "auto"  # what ran, resolved
    # levelled halfway between the photos' phase means and a flat frame's: each keeps at most half
    # of the larger difference between the two
    assert training["level_phases"] > 0
    after = max(training["phase_spread_after"], training["flat_phase_spread_after"])
    assert after <= (training["phase_spread_before"] + training["flat_phase_spread_before"]) / 2 + 0.01
    rows = (tmp_path / "ck" / "loss.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["iteration", "1", "2", "3"]
    assert "block" in rows[0].split(",") and all(len(r.split(",")) == len(rows[0].split(",")) for r in rows)
    net = compact.CompactNet.from_state_dict(tensors, json.loads(meta["network"]))
    ck = torch.load(str(tmp_path / "ck" / "latest.pt"), weights_only=True)
    assert json.loads(ck["meta"])["iteration"] == 3
    for k, v in net.state_dict().items():
        ref = ck["model"][k].numpy().astype(np.float16).astype(np.float32)
        if k == "head.bias":  # leveled: each phase moved by at most the spread it had
            bound = max(training["phase_spread_before"], training["flat_phase_spread_before"])
            assert np.abs(v.numpy() - ref).max() <= bound + 0.1, k
        else:
            assert np.array_equal(v.numpy(), ref), k
    # a log begun before the block column: a resumed run writes rows in its columns
    old = rows[0].replace(",block", "")
    (tmp_path / "ck" / "loss.csv").write_text(old + "\n")
    assert distill.main(common + ["--iterations", "4", "--resume"]) == 0
    rows = (tmp_path / "ck" / "loss.csv").read_text().splitlines()
    assert rows[0] == old and len(rows[1].split(",")) == len(old.split(",")) and rows[1].startswith("4,")


def test_warm_start_is_recorded_through_resumes(tmp_path, vgg_dir):
    """--init's file and its source line travel into the export, also after
    --resume (via the checkpoint), so a twin's file tells its whole history."""
    teacher = tr.random_model((8, 16, 16), 1, 3, seed=6)
    tpath = tmp_path / "teacher.safetensors"
    tr.save_safetensors_model(teacher, tpath, {"format": "stylize", "format_version": "1",
                                                "architecture": "transformer_net", "style": "t"})
    a, b = _photos()

    def args(out, ck):
        return ["--teacher", str(tpath), "-o", str(out), "--content", str(a), "--content", str(b),
                "--stem", "8", "--body", "8", "--blocks", "1", "--up-widths", "8", "--size", "32",
                "--batch", "2", "--max-side", "96", "--checkpoint-every", "1", "--threads", "1",
                "--vgg", str(vgg_dir), "--checkpoint-dir", str(tmp_path / ck)]
    first = tmp_path / "first.safetensors"
    assert distill.main(args(first, "ck1") + ["--iterations", "1"]) == 0
    second = tmp_path / "second.safetensors"
    assert distill.main(args(second, "ck2") + ["--iterations", "1", "--init", str(first), "--keep-exports"]) == 0
    assert distill.main(args(second, "ck2") + ["--iterations", "2", "--resume", "--keep-exports"]) == 0
    _, meta = stylize_safetensors.read(second)
    # --keep-exports: every checkpoint's export stays, the last one the output itself
    kept = sorted(p.name for p in (tmp_path / "ck2" / "exports").iterdir())
    assert kept == ["second.it1.safetensors", "second.it2.safetensors"]
    assert (tmp_path / "ck2" / "exports" / kept[1]).read_bytes() == second.read_bytes()
    assert json.loads(stylize_safetensors.read(tmp_path / "ck2" / "exports" / kept[0])[1]["training"])[
        "iterations"] == 1
    _, first_meta = stylize_safetensors.read(first)
    assert json.loads(meta["training"])["init"] == "first.safetensors"
    assert meta["source"].endswith("2 iterations, warm-started (--init) from first.safetensors (%s)"
                                   % first_meta["source"])
    assert "init" not in json.loads(first_meta["training"]) and "warm-started" not in first_meta["source"]


def test_distill_refuses_a_compact_teacher(tmp_path, vgg_dir, capsys):
    net = compact.random_compact(LAYOUTS["s2d1"], seed=1)
    path = tmp_path / "c.safetensors"
    stylize_safetensors.write(path, {k: v.numpy() for k, v in net.state_dict().items()},
                              {"format": "stylize", "format_version": "1", **net.metadata()})
    a, _ = _photos()
    rc = distill.main(["--teacher", str(path), "-o", str(tmp_path / "x.safetensors"),
                       "--content", str(a), "--vgg", str(vgg_dir), "--iterations", "1"])
    assert rc == 1
    assert "teacher" in capsys.readouterr().err


def test_amp_choice(monkeypatch):
    """--amp auto: bf16 on a CPU only where the caller measured it faster and
    the CPU has native bf16 (distill.py yes, train.py no); fp16 is CUDA's."""
    from stylize_nets import device as nd
    cpu = torch.device("cpu")
    for native in (False, True):
        monkeypatch.setattr(nd, "cpu_has_native_bf16", lambda native=native: native)
        assert nd.pick_amp("auto", cpu, bf16_pays_on_cpu=True) == ("bf16" if native else "off")
        assert nd.pick_amp("auto", cpu, bf16_pays_on_cpu=False) == "off"
    assert nd.pick_amp("bf16", cpu) == "bf16" and nd.pick_amp("off", cpu) == "off"
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        nd.pick_amp("fp16", cpu)
    assert nd.cpu_has_native_bf16() == CPU_HAS_BF16


@pytest.mark.parametrize("flags,vendor,beats", [
    ({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}, "GenuineIntel", True),   # AMX
    ({"avx2", "avx512f", "avx512_bf16"}, "GenuineIntel", False),              # measured 1.5x slower
    ({"avx2", "avx512f", "avx512_bf16"}, "AuthenticAMD", True),               # Zen 4: 1.7x faster
    ({"avx2", "fma"}, "AuthenticAMD", False),                                 # emulated
    (set(), "", False)])                                                      # no /proc/cpuinfo
def test_train_bf16_rule(monkeypatch, flags, vendor, beats):
    """train.py's --amp auto on a CPU: bf16 where it measured faster than fp32."""
    from stylize_nets import device as nd
    monkeypatch.setattr(nd, "cpu_flags_and_vendor", lambda: (flags, vendor))
    assert nd.cpu_bf16_beats_fp32() == beats
    assert nd.pick_amp("auto", torch.device("cpu"), bf16_pays_on_cpu=nd.cpu_bf16_beats_fp32()) == \
        ("bf16" if beats else "off")


def test_teacher_context_widens_only_the_teachers_view(tmp_path, vgg_dir, monkeypatch, capsys):
    """--teacher-context PX: the teacher runs on the student's crop plus PX
    pixels on every side and its output is cut back to the crop, so the
    target's edges come from the teacher's interior (a line the teacher
    draws at its borders is not taught); the setting is recorded."""
    teacher = tr.random_model((8, 16, 16), 1, 3, seed=7)
    tpath = tmp_path / "teacher.safetensors"
    tr.save_safetensors_model(teacher, tpath, {"format": "stylize", "format_version": "1",
                                                "architecture": "transformer_net", "style": "t"})
    a, b = _photos()
    seen = []
    real = distill.run_net

    def spy(net, x):
        seen.append(tuple(x.shape[-2:]))
        return real(net, x)
    monkeypatch.setattr(distill, "run_net", spy)
    out = tmp_path / "t_live.safetensors"
    common = ["--teacher", str(tpath), "-o", str(out), "--content", str(a), "--content", str(b),
              "--stem", "8", "--body", "8", "--blocks", "1", "--up-widths", "8", "--size", "32",
              "--batch", "2", "--max-side", "96", "--threads", "1", "--level-phases", "0",
              "--vgg", str(vgg_dir), "--checkpoint-dir", str(tmp_path / "ck"), "--iterations", "2"]
    assert distill.main(common + ["--teacher-context", "5"]) == 0
    assert seen == [(42, 42), (42, 42)]
    _, meta = stylize_safetensors.read(out)
    assert json.loads(meta["training"])["teacher_context"] == 5
    assert distill.main(common + ["--teacher-context", "-1"]) == 1
    assert "--teacher-context" in capsys.readouterr().err


def test_average_models_writes_a_shared_warm_start_once():
    """Exports of one run share their warm start's whole history: the soup's
    source names it once, so a soup of soups does not grow fivefold a
    generation; sources with nothing shared are kept whole."""
    import average_models
    start = ", warm-started (--init) from s.safetensors (weight average of x (run 1), y (run 2))"
    heads, tail = average_models.shared_warm_start(["distilled, 3400 iterations" + start,
                                                    "distilled, 3500 iterations" + start])
    assert heads == ["distilled, 3400 iterations", "distilled, 3500 iterations"] and tail == start
    assert average_models.shared_warm_start(["run a", "run b"]) == (["run a", "run b"], "")
    assert average_models.shared_warm_start(["only" + start]) == (["only" + start], "")
    # the common end of different warm starts is not mistaken for a shared one
    heads, tail = average_models.shared_warm_start(["a, warm-started (--init) from p (q)",
                                                    "b, warm-started (--init) from r (q)"])
    assert tail == "" and heads[1].startswith("b, warm")
    heads, tail = average_models.shared_warm_start(["a, warm-started (--init) from p (z" + start + ")",
                                                    "b, warm-started (--init) from r (z" + start + ")"])
    assert tail == "" and heads[0].endswith(start + ")")  # never a tail that splits a parenthesis


def test_average_models_is_the_weighted_mean_and_refuses_other_layouts(tmp_path):
    """tools/average_models.py: the weighted mean of each tensor (stored in
    fp16 like its inputs), metadata naming every member with its weight and
    sha256; members of another layout or another teacher are refused and
    nothing is written."""
    import average_models

    def save(net, name, teacher_sha="t" * 64):
        path = tmp_path / name
        meta = {"format": "stylize", "format_version": "1", "style": "x_live", "license": "MIT",
                "teacher_sha256": teacher_sha, "source": "run " + name, "dtype": "fp16",
                "training": json.dumps({"iterations": len(name)}), **net.metadata()}
        stylize_safetensors.write(path, {k: v.numpy() for k, v in net.state_dict().items()}, meta, "F16")
        return path

    a = save(compact.random_compact(LAYOUTS["s2d1"], seed=1), "a.safetensors")
    b = save(compact.random_compact(LAYOUTS["s2d1"], seed=2), "bb.safetensors")
    out = tmp_path / "avg.safetensors"
    assert average_models.main([str(a), str(b), "--weights", "0.75,0.25", "-o", str(out)]) == 0
    ta, tb = stylize_safetensors.read(a)[0], stylize_safetensors.read(b)[0]
    t, meta = stylize_safetensors.read(out)
    for k in ta:
        want = (0.75 * ta[k] + 0.25 * tb[k]).astype(np.float16).astype(np.float32)
        assert np.array_equal(t[k], want), k
    assert "a.safetensors (weight 0.75: run a.safetensors)" in meta["source"]
    assert "bb.safetensors (weight 0.25" in meta["source"] and meta["averaged_by"].endswith("average_models.py")
    runs = json.loads(meta["training"])
    assert runs["iterations"] == len("bb.safetensors")
    assert [r["sha256"] for r in runs["average_of"]] == \
        [hashlib.sha256(p.read_bytes()).hexdigest() for p in (a, b)]
    assert meta["network"] == stylize_safetensors.read(a)[1]["network"]

    other = save(compact.random_compact(LAYOUTS["s2d1"], seed=3), "c.safetensors", teacher_sha="u" * 64)
    wider = save(compact.random_compact(LAYOUTS["live"], seed=3), "d.safetensors")
    for bad in ([str(a), str(other)], [str(a), str(wider)], [str(a)], [str(a), str(b), "--weights", "0.5,0.6"],
                [str(a), str(tmp_path / "missing.safetensors")]):
        dest = tmp_path / "bad.safetensors"
        assert average_models.main(bad + ["-o", str(dest)]) == 1 and not dest.exists()
    assert average_models.main([str(a), str(b), "-o", str(a)]) == 1  # never overwrites an input
    assert stylize_safetensors.read(a)[0].keys() == ta.keys()
