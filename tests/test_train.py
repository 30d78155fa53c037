"""tools/train.py and tools/vgg19_tfjs.py: the VGG19 loader, the Gram
matrices, the batched TIN forward, and a tiny end-to-end training run that
checkpoints, resumes (bit-exactly) and exports a model the C library loads.

Runs in well under a minute on 2 cores (tiny network, 64x64 crops)."""
import json
import hashlib
import subprocess

import numpy as np
import pytest
import torch

from conftest import BUILD, SHARED

import stylize_safetensors
import torch_reference as tr
import train
import vgg19_tfjs


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is fastest (and train.main sets torch's
    thread count process-wide: restore it for the other test modules)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def vgg_dir():
    d = SHARED / "vgg19"
    if not (d / "model.json").is_file():
        pytest.skip("../shared/vgg19 not found")
    return d


# ---------------------------------------------------------------------------
# VGG19 loader

def test_vgg_loads_blocks_1_to_3(vgg_dir):
    w = vgg19_tfjs.load_tfjs_weights(vgg_dir)
    assert list(w) == ["block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2",
                       "block3_conv1", "block3_conv2", "block3_conv3", "block3_conv4"]
    assert w["block1_conv1"][0].shape == (3, 3, 3, 64) and w["block1_conv1"][1].shape == (64,)
    assert w["block3_conv4"][0].shape == (3, 3, 256, 256)
    # raw bytes of the first shard: kernel then bias
    raw = np.fromfile(vgg_dir / "group1-shard1of1", dtype="<f4")
    assert np.array_equal(raw[:3 * 3 * 3 * 64], w["block1_conv1"][0].ravel())
    assert np.array_equal(raw[3 * 3 * 3 * 64:], w["block1_conv1"][1])


def test_vgg_first_layer_matches_numpy(vgg_dir):
    """relu1_1 on a tiny RGB image == a hand-written 'same' zero-padded
    conv on the BGR mean-subtracted input (Keras' convention)."""
    k, b = vgg19_tfjs.load_tfjs_weights(vgg_dir)["block1_conv1"]  # HWIO
    rng = np.random.default_rng(5)
    img = rng.uniform(0, 255, (5, 4, 3))  # H, W, RGB
    x = img[:, :, ::-1] - np.array(vgg19_tfjs.BGR_MEANS)  # BGR - means
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    ref = np.zeros((5, 4, 64))
    for i in range(5):
        for j in range(4):
            ref[i, j] = np.einsum("hwc,hwco->o", xp[i:i + 3, j:j + 3], k.astype(np.float64)) + b
    ref = np.maximum(ref, 0)
    vgg = vgg19_tfjs.VGG19Features(vgg_dir, upto="relu1_1").double()
    t = torch.from_numpy(img.transpose(2, 0, 1)[None].copy())
    out = vgg(t, ["relu1_1"])["relu1_1"][0].numpy().transpose(1, 2, 0)
    assert np.abs(out - ref).max() < 1e-9 * max(1.0, np.abs(ref).max())
    assert (ref > 0).any()


def test_vgg_loader_multi_shard_and_missing_groups(tmp_path):
    """A synthetic TF.js folder: a group split over two shards loads; a group
    whose shard is missing ends the network there."""
    rng = np.random.default_rng(0)
    k1, b1 = rng.standard_normal((3, 3, 3, 4)).astype("<f4"), rng.standard_normal(4).astype("<f4")
    k2, b2 = rng.standard_normal((3, 3, 4, 4)).astype("<f4"), rng.standard_normal(4).astype("<f4")
    blob = k2.tobytes() + b2.tobytes()
    (tmp_path / "g1").write_bytes(k1.tobytes() + b1.tobytes())
    (tmp_path / "g2a").write_bytes(blob[:100])
    (tmp_path / "g2b").write_bytes(blob[100:])

    def spec(name, shape):
        return {"name": name, "shape": list(shape), "dtype": "float32"}
    manifest = {"modelTopology": {}, "weightsManifest": [
        {"paths": ["g1"], "weights": [spec("block1_conv1/kernel", k1.shape),
                                      spec("block1_conv1/bias", b1.shape)]},
        {"paths": ["g2a", "g2b"], "weights": [spec("block1_conv2/kernel", k2.shape),
                                              spec("block1_conv2/bias", b2.shape)]},
        {"paths": ["absent"], "weights": [spec("block2_conv1/kernel", (3, 3, 4, 8)),
                                          spec("block2_conv1/bias", (8,))]}]}
    (tmp_path / "model.json").write_text(json.dumps(manifest))
    w = vgg19_tfjs.load_tfjs_weights(tmp_path)
    assert list(w) == ["block1_conv1", "block1_conv2"]
    assert np.array_equal(w["block1_conv2"][0], k2) and np.array_equal(w["block1_conv2"][1], b2)
    (tmp_path / "g2b").write_bytes(blob[100:-4])  # truncated shard
    with pytest.raises(ValueError):
        vgg19_tfjs.load_tfjs_weights(tmp_path)
    vgg_feats = vgg19_tfjs.VGG19Features
    with pytest.raises(ValueError):
        vgg_feats(tmp_path, upto="relu2_1")


# ---------------------------------------------------------------------------
# Gram matrices, the batched network

def test_gram_matrices():
    rng = np.random.default_rng(1)
    f = rng.standard_normal((2, 5, 4, 3))
    ref = np.einsum("ncp,ndp->ncd", f.reshape(2, 5, 12), f.reshape(2, 5, 12)) / 12
    t = torch.tensor(f, requires_grad=True)
    g = train.gram(t)
    assert np.abs(g.detach().numpy() - ref).max() < 1e-5
    # the hand-written backward (CPU path) == autograd of the plain formula
    wts = torch.from_numpy(rng.standard_normal((5, 5)))
    (g * wts).sum().backward()
    t2 = torch.tensor(f, requires_grad=True)
    f2 = t2.reshape(2, 5, 12)
    ((torch.bmm(f2, f2.transpose(1, 2)) / 12) * wts).sum().backward()
    assert (t.grad - t2.grad).abs().max().item() < 1e-5
    f64 = torch.tensor(rng.standard_normal((2, 3, 3, 2)), requires_grad=True)
    assert torch.autograd.gradcheck(train._GramCPU.apply, (f64,))


def test_run_net_matches_reference():
    """train.run_net == torch_reference's TransformerNet.forward: own
    statistics, recorded statistics, and per-sample TIN statistics."""
    model = tr.random_model((8, 16, 24), 2, 5, seed=1).double()
    x = torch.rand(2, 3, 20, 28, dtype=torch.float64) * 255
    with torch.no_grad():
        assert (train.run_net(model, x) - model(x)).abs().max().item() < 1e-9
        rec, rec2 = [], []
        model(x[:1], record=rec)
        train.run_net(model, x[:1], record=rec2)
        assert all(torch.equal(a[0], b[0][0]) and torch.equal(a[1], b[1][0])
                   for a, b in zip(rec, rec2))
        st = [(m + 1.0, v * 2.0) for m, v in rec]  # stats not of this image
        batched = [(torch.stack([m, m + 1.0]), torch.stack([v, v * 2.0])) for m, v in rec]
        y = train.run_net(model, x, stats=batched)
        assert (y[0:1] - model(x[:1], stats=rec)).abs().max().item() < 1e-9
        assert (y[1:2] - model(x[1:], stats=st)).abs().max().item() < 1e-9


def test_thumbnail_statistics_batched_by_size_match_one_pass_each():
    """thumbnail_stats_batch runs thumbnails of one size as one batch: its
    rows must be each thumbnail's own statistics, in the order given, with
    their gradients."""
    model = tr.random_model((8, 16, 24), 2, 5, seed=2).double()
    g = torch.Generator().manual_seed(3)
    shapes = [(20, 28), (16, 28), (20, 28), (24, 12), (16, 28), (20, 28)]
    thumbs = [torch.rand(1, 3, h, w, generator=g, dtype=torch.float64) * 255 for h, w in shapes]
    got = train.thumbnail_stats_batch(model, thumbs)
    for n, t in enumerate(thumbs):
        rec = []
        train.run_net(model, t, record=rec)
        for (m, v), (m1, v1) in zip(got, rec):
            assert (m[n] - m1[0]).abs().max().item() < 1e-9 and (v[n] - v1[0]).abs().max().item() < 1e-9
    # the gradient reaches the weights through the statistics
    sum(m.sum() + v.sum() for m, v in got).backward()
    assert model.conv1.conv.weight.grad is not None and model.conv1.conv.weight.grad.abs().sum() > 0
    detached = train.thumbnail_stats_batch(model, thumbs, detach=True)
    assert not detached[0][0].requires_grad
    assert torch.equal(detached[3][1], got[3][1].detach())


# ---------------------------------------------------------------------------
# end to end

def _photos(n=2):
    """The first n training photographs (never the Kodak images: the evaluation set)."""
    found = sorted((SHARED / "content" / "photos").glob("*"))[:n]
    if len(found) < n:
        pytest.skip("training photographs not found in %s" % (SHARED / "content" / "photos"))
    return found


def _args(tmp, iters, extra=()):
    a, b = _photos()
    return ["--style", str(SHARED / "styles" / "starry_night.jpg"), "--style-size", "96",
            "--content", str(a), "--content", str(b), "--max-side", "160",
            "--widths", "8,16,16", "--res-blocks", "1", "--size", "64", "--batch", "2",
            "--iterations", str(iters), "--checkpoint-every", "2", "--log-every", "1",
            "--tin", "--tin-prob", "0.5", "--tin-thumb", "48", "--lr-schedule", "constant",
            "--threads", "1", "--preview", "none", "--vgg", str(SHARED / "vgg19"),
            "--checkpoint-dir", str(tmp)] + list(extra)


def test_train_checkpoint_resume_export(tmp_path, vgg_dir):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train.main(_args(straight, 4)) == 0
    assert train.main(_args(split, 2)) == 0
    assert (split / "ckpt_000002.pt").is_file() and (split / "latest.pt").is_file()
    ck = train.load_checkpoint(split / "latest.pt")
    assert ck["iteration"] == 2
    # resume: options come from the checkpoint, --iterations extends the run
    assert train.main(["--resume", "--checkpoint-dir", str(split), "--iterations", "4"]) == 0
    a = train.load_checkpoint(straight / "latest.pt")
    b = train.load_checkpoint(split / "latest.pt")
    assert a["iteration"] == b["iteration"] == 4
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k  # resuming is exact

    rows = (split / "loss.csv").read_text().splitlines()
    assert rows[0].startswith("iteration,") and [r.split(",")[0] for r in rows[1:]] == \
        ["1", "2", "3", "4"]
    import plot_loss
    assert plot_loss.main([str(split / "loss.csv"), "-o", str(tmp_path / "loss.png")]) == 0
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    model_path = split / "starry_night.safetensors"
    tensors, meta = stylize_safetensors.read(model_path)
    assert meta["format"] == "stylize" and meta["format_version"] == "1"
    assert meta["architecture"] == "transformer_net" and meta["style"] == "starry_night"
    assert meta["license"] == "MIT" and meta["style_license"] == "public domain"
    assert "Starry Night" in meta["style_image"] and meta["dtype"] == "fp16"
    settings = json.loads(meta["training"])
    assert settings["iterations"] == 4 and settings["widths"] == "8,16,16" and settings["tin"]
    raw = model_path.read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    assert header["conv1.conv.weight"]["dtype"] == "F16"
    # the export is the checkpoint's model, rounded to fp16
    model = tr.load_safetensors_model(model_path)
    for k, v in model.state_dict().items():
        ref = b["model"][k].numpy().astype(np.float16).astype(np.float32)
        assert np.array_equal(v.numpy(), ref), k

    exe = BUILD / "bin" / "stylize-image"
    if not exe.exists():
        pytest.skip("build/bin/stylize-image not built")
    r = subprocess.run([str(exe), "-m", str(model_path), "--info"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert (info["width1"], info["width2"], info["width3"], info["res_blocks"]) == (8, 16, 16, 1)
    assert info["style"] == "starry_night" and info["license"] == "MIT"


def test_weight_average_resumes_exactly_and_is_what_is_exported(tmp_path, vgg_dir):
    """--ema: the average is checkpointed (a resumed run continues it bit for
    bit), warms up over its first updates, and the export is the average,
    not the raw weights."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train.main(_args(straight, 4, ["--ema", "0.9"])) == 0
    assert train.main(_args(split, 2, ["--ema", "0.9"])) == 0
    assert train.main(["--resume", "--checkpoint-dir", str(split), "--iterations", "4"]) == 0
    a = train.load_checkpoint(straight / "latest.pt")
    b = train.load_checkpoint(split / "latest.pt")
    assert a["ema_updates"] == b["ema_updates"] == 4
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
        assert torch.equal(a["ema"][k], b["ema"][k]), k
    # 4 updates with the decays 0, 1/2, 2/3, 3/4: the mean of the last 4 weights, not the last
    assert any(not torch.equal(b["ema"][k], b["model"][k]) for k in b["model"])
    model = tr.load_safetensors_model(split / "starry_night.safetensors")
    for k, v in model.state_dict().items():
        ref = b["ema"][k].numpy().astype(np.float16).astype(np.float32)
        assert np.array_equal(v.numpy(), ref), k
    meta = stylize_safetensors.read(split / "starry_night.safetensors")[1]
    assert json.loads(meta["training"])["ema"] == 0.9
    assert train.main(_args(tmp_path / "bad", 1, ["--ema", "1"])) == 1


def test_init_starts_from_a_trained_model_and_says_so(tmp_path, vgg_dir):
    """--init: the run starts from another model file's weights (with 0
    iterations the export is those weights), the export names the file and
    its sha256, a resumed run keeps that record, and a file of another
    layout, a missing file or --init with --resume are refused."""
    first = tmp_path / "first"
    assert train.main(_args(first, 2)) == 0
    src = first / "starry_night.safetensors"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()

    warm = tmp_path / "warm"
    assert train.main(_args(warm, 0, ["--init", str(src)])) == 0
    a = tr.load_safetensors_model(src).state_dict()
    b = tr.load_safetensors_model(warm / "starry_night.safetensors").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    meta = stylize_safetensors.read(warm / "starry_night.safetensors")[1]
    assert "warm-started (--init) from starry_night.safetensors (sha256 %s)" % digest in meta["source"]
    settings = json.loads(meta["training"])
    assert settings["init"] == "starry_night.safetensors" and settings["init_sha256"] == digest

    # training goes on from there; a resumed run keeps the record of its start
    assert train.main(_args(warm, 2, ["--init", str(src)])) == 0
    assert train.main(["--resume", "--checkpoint-dir", str(warm), "--iterations", "3"]) == 0
    meta = stylize_safetensors.read(warm / "starry_night.safetensors")[1]
    assert json.loads(meta["training"])["init_sha256"] == digest and digest in meta["source"]

    assert train.main(["--resume", "--checkpoint-dir", str(warm), "--init", str(src)]) == 1
    assert train.main(_args(tmp_path / "w2", 0, ["--init", str(src), "--widths", "8,16,24"])) == 1
    assert train.main(_args(tmp_path / "w3", 0, ["--init", str(tmp_path / "none.safetensors")])) == 1
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    assert train.main(_args(tmp_path / "w4", 0, ["--init", str(bad)])) == 1


def test_resume_refuses_other_architecture(tmp_path, vgg_dir):
    assert train.main(_args(tmp_path, 1, ["--checkpoint-every", "1", "--tin-prob", "0"])) == 0
    assert train.main(["--resume", "--checkpoint-dir", str(tmp_path), "--widths",
                       "8,16,24"]) == 1


def test_help_documents_every_option():
    text = train.build_parser().format_help()
    for action in train.build_parser()._actions:
        for opt in action.option_strings:
            assert opt in text
        if action.option_strings and action.dest != "help":
            assert action.help, action.dest


# ---------------------------------------------------------------------------
# tools/eval_temporal.py's building blocks (cheap, synthetic)

def test_warping_error_of_a_pan_is_small():
    pytest.importorskip("cv2")
    import eval_temporal as et
    rng = np.random.default_rng(3)
    import cv2
    base = cv2.GaussianBlur(rng.uniform(0, 1, (120, 160, 3)).astype(np.float32), (0, 0), 3)
    base = (base - base.min()) / (base.max() - base.min())
    a, b = base[:, 10:138], base[:, 12:140]  # the camera moves 2 px right
    fb = et.compute_flow(b, a, "dis")       # b(x) = a(x + 2): flow b -> a is +2 in x
    ff = et.compute_flow(a, b, "dis")
    mask = et.non_occluded(fb, ff)
    assert mask.mean() > 0.8
    assert abs(np.median(fb[..., 0][mask]) - 2.0) < 0.3
    err_warped = ((b - et.warp(a, fb)) ** 2)[mask].mean()
    err_plain = ((b - a) ** 2).mean()
    assert err_warped < 0.1 * err_plain


def test_smoothing_replica_matches_the_library_rule():
    import eval_temporal as et
    c = 2
    s0 = np.array([0, 0, 1, 1, 5, 5], dtype=np.float32)       # means, vars of layer 1, layer 2
    s1 = np.array([0.1, 0.1, 1, 1, 7, 7], dtype=np.float32)   # small move: averaged
    s2 = np.array([9, 9, 1, 1, 0, 0], dtype=np.float32)       # a scene cut: restart
    out = et.smooth_stats([s0, s1, s2], 0.9, 0.5, c)
    assert np.array_equal(out[0], s0)
    assert np.allclose(out[1], np.float32(0.9) * s0 + np.float32(0.1) * s1)
    assert np.array_equal(out[2], s2)
    assert all(np.array_equal(o, s) for o, s in zip(et.smooth_stats([s0, s1], 0.0, 0.5, c),
                                                     [s0, s1]))


def test_a_painting_brings_its_own_loss_settings(tmp_path, vgg_dir):
    """STYLE_SETTINGS: a new shipwreck run trains with content weight 3 unless
    --content-weight is given; a resumed run keeps the weight it started
    with; other paintings keep the default."""
    shipwreck = SHARED / "styles" / "shipwreck.jpg"
    if not shipwreck.is_file():
        pytest.skip("no shipwreck.jpg in ../shared/styles")
    shipwreck = str(shipwreck)

    def weight(d, style="shipwreck"):
        meta = stylize_safetensors.read(d / (style + ".safetensors"))[1]
        return json.loads(meta["training"])["content_weight"]

    own = tmp_path / "own"
    assert train.main(_args(own, 1, ["--style", shipwreck])) == 0
    assert weight(own) == 3.0
    given = tmp_path / "given"
    assert train.main(_args(given, 1, ["--style", shipwreck, "--content-weight", "1"])) == 0
    assert weight(given) == 1.0
    assert train.main(["--resume", "--checkpoint-dir", str(given), "--iterations", "2"]) == 0
    assert weight(given) == 1.0  # the checkpoint's weight, not the painting's
    assert train.main(["--resume", "--checkpoint-dir", str(own), "--iterations", "2"]) == 0
    assert weight(own) == 3.0
    other = tmp_path / "other"
    assert train.main(_args(other, 0)) == 0
    assert weight(other, "starry_night") == 1.0
