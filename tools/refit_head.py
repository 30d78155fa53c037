#!/usr/bin/env python3
"""Refit the output conv of a distilled _live model to its teacher by least
squares, on whole photographs.

A compact twin's head (docs/COMPACT.md) is a plain conv followed by the
pixel shuffle: no norm, no activation. With the body frozen, the output is
linear in the head's weights, and so are the 8x8 block means of the output.
Distillation trains the head on 192-px crops, under a mix of terms (VGG
features, Gram matrices, stability) that pull it away from the teacher's
pixels and tones; this tool solves, exactly, for the head that minimizes

    pixel-weight * mean over pixels of (student - teacher)^2
  + block-weight * mean over 8x8 blocks of (block mean difference)^2
  + ridge        * mean diagonal of the pixel term * |W - W_trained|^2

over whole photographs of ../shared/content/photos scaled to a long side of
--long-side (the size the fidelity targets are measured at, and whole frames
as users run them, where instance norm sees the frame and not a crop). The
ridge keeps the head near the trained one, whose texture the quadratic terms
do not see. Photographs are never the Kodak evaluation images.

    tools/refit_head.py --teacher models/mosaic.safetensors -m models/mosaic_live.safetensors \\
        -o OUT.safetensors [--photos 320] [--check 64] [--block-weight 1] [--ridge 0.01]

The photos are split in two disjoint sets: --photos to fit, --check to
report the fit on photos it did not see (PSNR and block-mean PSNR, before
and after, in the same way tools/style_quality.py measures them on Kodak).
Each photo's statistics are cached in --work, so trying other weights
costs seconds. Every sub-pixel phase is then levelled as tools/distill.py
does at export (stylize_nets.compact.level_shuffle_phases). The output keeps
the input's metadata, with `source` and `training` saying what was refitted.
"""
import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
import style_quality  # noqa: E402
import stylize_safetensors  # noqa: E402
import torch_reference as tr  # noqa: E402
from stylize_nets import compact  # noqa: E402

SHARED = Path(os.environ.get("STYLIZE_SHARED", TOOLS.parent.parent / "shared"))
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
PROG = "refit_head.py"
BLOCK = 8


class RefitError(Exception):
    """A user-facing error: printed as 'refit_head.py: ...', exit 1."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def load_photo(path, long_side):
    """float32 (1, 3, H, W) 0..255, scaled as tools/style_quality.py scales
    Kodak and cropped to multiples of 8, so blocks and the twin's stride
    line up without extension."""
    a = style_quality.load_photo(path, long_side)
    h, w = a.shape[0] // BLOCK * BLOCK, a.shape[1] // BLOCK * BLOCK
    if h == 0 or w == 0:
        raise RefitError("%s: smaller than %d pixels at long side %d" % (path, BLOCK, long_side))
    return torch.from_numpy(np.ascontiguousarray(a[:h, :w].transpose(2, 0, 1)))[None].float()


def head_inputs(net, x):
    """The head conv's input for x, as the columns the conv multiplies:
    (9*Cin + 1, H/p * W/p), the last row ones (the bias)."""
    head = net._convs[-1]
    got = {}
    hook = head.register_forward_hook(lambda m, inp, out: got.update(x=inp[0]))
    try:
        with torch.no_grad():
            net(x)
    finally:
        hook.remove()
    k = head.kernel_size[0]
    cols = F.unfold(got["x"].double(), k)[0]  # the input is already reflect-padded
    return torch.cat([cols, torch.ones(1, cols.shape[1], dtype=torch.float64)])


def photo_stats(net, t, x):
    """Sufficient statistics of one photo x for the quadratic fit (float64):
    pixel Gram A and cross terms B; block-mean Gram Ab, cross terms Bb;
    sums of squares of the targets; counts. t: the teacher's output for x
    (1, 3, H, W), 0..255."""
    p = net.shuffle
    X = head_inputs(net, x)  # (D, n), n = H/p * W/p
    T = F.pixel_unshuffle(t.double(), p)[0].reshape(3 * p * p, -1)  # head channel order c*p*p + phase
    h2, w2 = x.shape[-2] // p, x.shape[-1] // p
    q = BLOCK // p
    Xb = F.avg_pool2d(X.view(1, -1, h2, w2), q)[0].reshape(X.shape[0], -1)
    tb = F.avg_pool2d(t.double(), BLOCK)[0].reshape(3, -1)
    return {"A": X @ X.T, "B": X @ T.T, "tt": (T * T).sum(dim=1), "n": X.shape[1],
            "Ab": Xb @ Xb.T, "Bb": Xb @ tb.T, "tbtb": (tb * tb).sum(dim=1), "nb": Xb.shape[1]}


class TorchTeacher:
    """The teacher in PyTorch (tools/torch_reference.py), fp32."""

    def __init__(self, path):
        try:
            self.net = tr.load_model(path).float().eval()
        except (OSError, ValueError) as e:
            raise RefitError("%s: %s" % (path, e)) from None

    def __call__(self, x):
        with torch.no_grad():
            return self.net(x)[:, :, :x.shape[-2], :x.shape[-1]].float().clamp(0, 255)


class EngineTeacher:
    """The teacher as users run it and as tools/style_quality.py measures
    it (its Engine: build/bin/stylize-image, `full`, fp32, 8-bit output);
    some 20x faster than PyTorch on the CPU."""

    def __init__(self, path, threads, work):
        try:
            self.engine = style_quality.Engine(max(1, threads), "fp32")
        except style_quality.QualityError as e:
            raise RefitError("%s, or use --teacher-runner torch" % e) from None
        self.path, self.work = str(path), Path(work)

    def __call__(self, x):
        img = x[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()
        try:
            a = self.engine.stylize(self.path, img, self.work)
        except style_quality.QualityError as e:
            raise RefitError(str(e)) from None
        return torch.from_numpy(a.transpose(2, 0, 1).copy())[None].float()


def add_stats(total, s):
    if total is None:
        return {k: (v.clone() if torch.is_tensor(v) else v) for k, v in s.items()}
    for k, v in s.items():
        total[k] = total[k] + v
    return total


def head_matrix(net):
    """The head as (3*p*p, D): row = head channel, columns = unfolded input + bias."""
    head = net._convs[-1]
    w = head.weight.detach().double().reshape(head.weight.shape[0], -1)
    return torch.cat([w, head.bias.detach().double()[:, None]], dim=1)


def set_head(net, W):
    head = net._convs[-1]
    with torch.no_grad():
        head.weight.copy_(W[:, :-1].reshape(head.weight.shape).to(head.weight.dtype))
        head.bias.copy_(W[:, -1].to(head.bias.dtype))


def losses(W, s, pp):
    """(pixel MSE, block-mean MSE) of head W on the statistics s (colours
    and phases pooled, as style_quality.py's mse() pools channels)."""
    A, B = s["A"], s["B"]
    sse = (torch.einsum("kd,de,ke->k", W, A, W) - 2 * torch.einsum("kd,dk->k", W, B) + s["tt"]).sum()
    Wm = W.view(3, pp, -1).mean(dim=1)  # block mean of a colour = mean of its phases' block means
    sseb = (torch.einsum("cd,de,ce->c", Wm, s["Ab"], Wm) - 2 * torch.einsum("cd,dc->c", Wm, s["Bb"])
            + s["tbtb"]).sum()
    return float(sse / (s["n"] * 3 * pp)), float(sseb / (s["nb"] * 3))


def solve(W0, s, pp, pixel_weight, block_weight, ridge, stay=0.0):
    """The head minimizing the weighted sum (module docstring); per colour
    one linear system over its pp phases' weights together (the block term
    couples them through their mean)."""
    D = W0.shape[1]
    A = s["A"] / (s["n"] * 3 * pp)
    Ab = s["Ab"] / (s["nb"] * 3)
    lam = ridge * float(torch.diagonal(A).mean())
    W = W0.clone()
    for c in range(3):
        M = torch.zeros(pp * D, pp * D, dtype=torch.float64)
        r = torch.zeros(pp * D, dtype=torch.float64)
        for i in range(pp):
            k = c * pp + i
            sl = slice(i * D, (i + 1) * D)
            M[sl, sl] += (pixel_weight + stay) * A + lam * torch.eye(D, dtype=torch.float64)
            r[sl] += pixel_weight * s["B"][:, k] / (s["n"] * 3 * pp) + lam * W0[k] + stay * (A @ W0[k])
            r[sl] += block_weight * s["Bb"][:, c] / (s["nb"] * 3) / pp
            for j in range(pp):
                M[sl, j * D:(j + 1) * D] += block_weight * Ab / (pp * pp)
        W[c * pp:(c + 1) * pp] = torch.linalg.solve(M, r).view(pp, D)
    return W


def psnr(m):
    return float("inf") if m <= 0 else 10 * np.log10(255.0 ** 2 / m)


def photo_paths(content):
    p = SHARED / "content" / "photos" if content == "auto" else Path(content)
    if not p.is_dir():
        raise RefitError("--content %s: not a folder" % p)
    paths = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_EXTS)
    if "kodak" in str(p).lower():
        raise RefitError("--content %s: the Kodak images are the evaluation set" % p)
    return paths


def cached_stats(net, teacher, paths, args, key, teacher_key):
    """Statistics of each photo, cached under --work by photo, long side and
    the hashes of both models; the teacher's outputs are cached apart (by
    the teacher's hash), so that refitting another twin of the same teacher
    does not run the teacher again."""
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    total = None
    for i, path in enumerate(paths):
        f = work / ("%s_%s_%d.pt" % (key, path.stem, args.long_side))
        if f.is_file():
            s = torch.load(f)
        else:
            x = load_photo(path, args.long_side)
            tf = work / ("teacher_%s_%s_%d.pt" % (teacher_key, path.stem, args.long_side))
            if tf.is_file():
                t = torch.load(tf).float()
            else:
                t = teacher(x)
                torch.save(t.to(torch.uint8) if args.teacher_runner == "engine" else t, tf)
            s = photo_stats(net, t, x)
            torch.save(s, f)
        total = add_stats(total, s)
        if (i + 1) % 50 == 0:
            log("  %d / %d photographs" % (i + 1, len(paths)))
    return total


def build_parser():
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--teacher", required=True, help="the model the twin reproduces")
    p.add_argument("-m", "--model", required=True, help="the _live model (compact architecture)")
    p.add_argument("-o", "--output", help="the refitted model (omit to only report)")
    p.add_argument("--content", default="auto", help="folder of photographs; auto = ../shared/content/photos")
    p.add_argument("--photos", type=int, default=320, help="photographs to fit on")
    p.add_argument("--check", type=int, default=64, help="other photographs to report the fit on")
    p.add_argument("--seed", type=int, default=0, help="which photographs (a random permutation)")
    p.add_argument("--long-side", type=int, default=512)
    p.add_argument("--pixel-weight", type=float, default=1.0)
    p.add_argument("--block-weight", type=float, default=1.0)
    p.add_argument("--ridge", type=float, default=0.01,
                   help="pull towards the trained head, relative to the pixel term's mean diagonal")
    p.add_argument("--stay", type=float, default=0.0,
                   help="weight of the mean square change of the output (a pull towards the trained "
                   "head measured where it matters: in pixels, on the photographs)")
    p.add_argument("--level-phases", type=int, default=32,
                   help="fit photographs used to level the sub-pixel phases afterwards (0: none)")
    p.add_argument("--teacher-runner", choices=("engine", "torch"), default="engine",
                   help="run the teacher with build/bin/stylize-image (fp32, 8-bit output, as the fidelity "
                   "targets are measured) or in PyTorch (fp32, unrounded)")
    p.add_argument("--work", default="build/refit_head", help="cache of per-photo statistics")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    return p


def refit(args):
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        net = tr.load_model(args.model)
    except (OSError, ValueError) as e:
        raise RefitError("%s: %s" % (args.model, e)) from None
    if not isinstance(net, compact.CompactNet):
        raise RefitError("%s: not a compact (_live) model" % args.model)
    if any(net.layers[-1].get(k) for k in ("norm", "relu", "add_skip")):
        raise RefitError("%s: the last layer is not a plain conv; nothing to fit linearly" % args.model)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    teacher = TorchTeacher(args.teacher) if args.teacher_runner == "torch" else \
        EngineTeacher(args.teacher, args.threads, args.work)
    net = net.float().eval()
    tensors, meta = stylize_safetensors.read(args.model)
    if meta.get("teacher_sha256") and meta["teacher_sha256"] != stylize_safetensors.file_sha256(args.teacher):
        raise RefitError("%s was distilled from another file than %s (teacher_sha256 differs)"
                         % (args.model, args.teacher))
    paths = photo_paths(args.content)
    if args.photos + args.check > len(paths) or args.photos < 1:
        raise RefitError("--photos %d + --check %d: only %d photographs" % (args.photos, args.check, len(paths)))
    order = np.random.default_rng(args.seed).permutation(len(paths))
    fit_paths = [paths[i] for i in order[:args.photos]]
    check_paths = [paths[i] for i in order[args.photos:args.photos + args.check]]
    teacher_key = hashlib.sha256((stylize_safetensors.file_sha256(args.teacher) + args.teacher_runner)
                                 .encode()).hexdigest()[:16]
    key = hashlib.sha256((stylize_safetensors.file_sha256(args.model) + teacher_key).encode()).hexdigest()[:16]
    log("%s: fitting the head (%s) on %d photographs at %d px, checking on %d others"
        % (Path(args.model).name, "x".join(str(d) for d in net._convs[-1].weight.shape),
           len(fit_paths), args.long_side, len(check_paths)))
    fit = cached_stats(net, teacher, fit_paths, args, key, teacher_key)
    check = cached_stats(net, teacher, check_paths, args, key, teacher_key) if check_paths else None
    pp = net.shuffle * net.shuffle
    W0 = head_matrix(net)
    W = solve(W0, fit, pp, args.pixel_weight, args.block_weight, args.ridge, args.stay)
    report = {}
    for name, s in (("fit", fit), ("check", check)):
        if s is None:
            continue
        (m0, b0), (m1, b1) = losses(W0, s, pp), losses(W, s, pp)
        report[name] = {"psnr": [round(psnr(m0), 3), round(psnr(m1), 3)],
                        "block_psnr": [round(psnr(b0), 3), round(psnr(b1), 3)]}
        log("%-5s photos  PSNR %.3f -> %.3f dB   block means %.3f -> %.3f dB   (unclamped, before levelling)"
            % (name, psnr(m0), psnr(m1), psnr(b0), psnr(b1)))
    rel = float((W - W0).norm() / W0.norm())
    log("head changed by %.1f %% (relative Frobenius norm)" % (100 * rel))
    if not args.output:
        return report
    set_head(net, W)
    spread = None
    if args.level_phases > 0 and net.shuffle > 1:
        calib = [load_photo(p, args.long_side)[0] for p in fit_paths[:args.level_phases]]
        spread = compact.level_shuffle_phases(net, calib)
        log("phases levelled: largest spread %.2f -> %.2f levels (photos), %.2f -> %.2f (flat frame)" % spread)
    tensors = dict(tensors)
    for k, v in net.state_dict().items():
        if k.startswith(net.layers[-1]["conv"] + "."):
            tensors[k] = v.detach().float().numpy()
    settings = {"refit_head": {"from_sha256": stylize_safetensors.file_sha256(args.model),
                               "photos": len(fit_paths), "check": len(check_paths), "seed": args.seed,
                               "teacher_runner": args.teacher_runner,
                               "long_side": args.long_side, "pixel_weight": args.pixel_weight,
                               "block_weight": args.block_weight, "ridge": args.ridge,
                               "level_phases": args.level_phases, "report": report,
                               "head_change": round(rel, 4)}}
    if spread:
        settings["refit_head"].update(phase_spread_before=round(spread[0], 3),
                                      phase_spread_after=round(spread[1], 3),
                                      flat_phase_spread_before=round(spread[2], 3),
                                      flat_phase_spread_after=round(spread[3], 3))
    try:
        training = json.loads(meta.get("training", "{}"))
    except ValueError:
        training = {"previous": meta.get("training", "")}
    if not isinstance(training, dict):
        training = {"previous": training}
    training.update(settings)
    meta = dict(meta)
    meta["training"] = json.dumps(training, sort_keys=True, separators=(",", ":"))
    meta["source"] = (meta.get("source", "") + "; head refitted by least squares to the teacher on %d whole "
                      "photographs at %d px (tools/refit_head.py)" % (len(fit_paths), args.long_side))
    dtype = "F16" if meta.get("dtype", "fp16") == "fp16" else "F32"
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output + ".tmp"
    stylize_safetensors.write(tmp, tensors, meta, dtype=dtype)
    os.replace(tmp, args.output)
    log("wrote %s" % args.output)
    return report


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        refit(args)
    except RefitError as e:
        print("%s: %s" % (PROG, e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
