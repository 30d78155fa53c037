#!/usr/bin/python3
"""Distil a compact _live network (docs/COMPACT.md) from a teacher model.

The student (tools/stylize_nets/compact.py) learns to reproduce the
teacher's output on random crops of the training photographs
(../shared/content/photos; never the Kodak images, the evaluation set).
Losses (tools/stylize_nets/losses.py):

  pixel      L1 distance to the teacher's output (/255);
  feature    VGG19 relu2_2 and relu3_1 features of student and teacher
             output (relative squared error);
  gram       Gram matrices of relu1_1, relu2_1, relu3_1 at scales 1 and 2
             (relative squared error, per image): a pixel loss alone makes a
             blur; this keeps the strokes;
  stability  the student's output for the crop shifted by a few pixels and
             noised must equal its output for the crop, shifted: stability
             without optical flow (the idea of Gupta et al. 2017 and
             ReCoNet, with a synthetic motion).
  block      (--block-weight, off by default) L1 (or --block-loss rms: root
             mean square) between the 8x8 block means of student and teacher
             output: tones and colours, for a teacher whose strokes the
             student cannot all redraw.

Checkpoints are resumable (--resume), the loss log is a CSV, and the export
is fp16 safetensors whose metadata names the teacher (file and sha256), the
architecture, the data, the settings and the licence (the teacher's).

  tools/distill.py --teacher models/mosaic.safetensors -o models/mosaic_live.safetensors \\
      --time-budget 600
"""

import argparse
import csv
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
sys.path.insert(0, str(TOOLS))
import stylize_safetensors  # noqa: E402
import torch_reference as tr  # noqa: E402
import vgg19_tfjs  # noqa: E402
from stylize_nets import compact, device as nets_device  # noqa: E402
from stylize_nets.classic import run_net  # noqa: E402
from stylize_nets.data import read_image  # noqa: E402
from stylize_nets.losses import DistillLoss, block_loss, stability_loss  # noqa: E402

SHARED = Path(os.environ.get("STYLIZE_SHARED", REPO.parent / "shared"))
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
PROG = "distill.py"


class DistillError(Exception):
    pass


def log(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------------------
# data: every photo on the training device, crops cut there

class DeviceCrops:
    """Random crops (random photo, random rescale, random position, random
    flip) of photographs kept as uint8 tensors on the device."""

    def __init__(self, paths, device, max_side, gen):
        self.images = []
        for p in paths:
            img = read_image(p)
            h, w = img.shape[:2]
            if max(h, w) > max_side:
                s = max_side / max(h, w)
                import cv2
                img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
            self.images.append(torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
                               .to(device))
        self.device, self.gen = device, gen

    def batch(self, n, size, scale_range):
        out = []
        for _ in range(n):
            img = self.images[int(torch.randint(len(self.images), (1,), generator=self.gen))]
            _, h, w = img.shape
            smin = size / min(h, w)
            lo, hi = max(smin, scale_range[0]), max(smin, scale_range[1])
            s = math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * float(torch.rand(1, generator=self.gen)))
            r = min(min(h, w), max(1, int(round(size / s))))
            y0 = int(torch.randint(h - r + 1, (1,), generator=self.gen))
            x0 = int(torch.randint(w - r + 1, (1,), generator=self.gen))
            reg = img[None, :, y0:y0 + r, x0:x0 + r].float()
            crop = F.interpolate(reg, size=(size, size), mode="bilinear", antialias=True,
                                 align_corners=False) if r != size else reg
            if float(torch.rand(1, generator=self.gen)) < 0.5:
                crop = crop.flip(-1)
            out.append(crop)
        return torch.cat(out).clamp_(0, 255)


def photo_paths(specs):
    paths = []
    for spec in specs:
        p = SHARED / "content" / "photos" if spec == "auto" else Path(spec)
        if p.is_dir():
            paths += sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_EXTS)
        elif p.is_file():
            paths.append(p)
        else:
            raise DistillError("--content %s: no such file or directory" % p)
    if not paths:
        raise DistillError("no content photographs found")
    return paths


# ---------------------------------------------------------------------------

def build_parser():
    d = "(default: %(default)s)"
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--teacher", required=True, help="the model to reproduce (.safetensors or .pth)")
    p.add_argument("-o", "--output", required=True, help="the student .safetensors")
    p.add_argument("--style-name", help="style name stored in the model (default: the output's stem)")
    g = p.add_argument_group("student network (docs/COMPACT.md)")
    g.add_argument("--s2d", type=int, default=2, help="space-to-depth factor of the input " + d)
    g.add_argument("--stem", type=int, default=32, help="stem width " + d)
    g.add_argument("--body", type=int, default=64, help="width of the residual body " + d)
    g.add_argument("--blocks", type=int, default=5, help="residual blocks " + d)
    g.add_argument("--block", choices=("ds", "full"), default="ds",
                   help="residual block: depthwise-separable or two full 3x3 convs " + d)
    g.add_argument("--up", choices=("ds", "full"), default="ds", help="upsampling stage convs " + d)
    g.add_argument("--up-widths", default="32", help="widths of the upsampling stages " + d)
    g.add_argument("--shuffle", type=int, default=2, help="pixel-shuffle factor of the output " + d)
    g = p.add_argument_group("losses")
    g.add_argument("--pixel-weight", type=float, default=10.0, help=d)
    g.add_argument("--feature-weight", type=float, default=1.0, help=d)
    g.add_argument("--gram-weight", type=float, default=5.0, help=d)
    g.add_argument("--stability-weight", type=float, default=20.0, help=d)
    g.add_argument("--block-weight", type=float, default=0.0, help="weight of the 8x8 block-mean term "
                   "(tones and colours: the distance, --block-loss, between the block means of student and teacher) " + d)
    g.add_argument("--block-loss", choices=("l1", "rms"), default="l1",
                   help="distance of the block-mean term: l1, or rms (root mean square, the same units; it "
                   "aims at the block-mean PSNR itself) " + d)
    g.add_argument("--max-shift", type=int, default=7, help="largest shift (px) of the stability "
                   "view " + d)
    g.add_argument("--noise", type=float, default=3.0, help="largest noise std (0..255) added to the "
                   "stability view " + d)
    g.add_argument("--teacher-context", type=int, default=0, metavar="PX",
                   help="the teacher sees PX more pixels on every side of the student's crop, so "
                   "the target's edges are the teacher's interior: a line the teacher draws along "
                   "its frame borders is not taught to the student " + d)
    g.add_argument("--vgg", default=str(SHARED / "vgg19"), help=d)
    g = p.add_argument_group("optimization")
    g.add_argument("--content", action="append", help="photographs (folder or files); 'auto' = "
                   "../shared/content/photos (default)")
    g.add_argument("--max-side", type=int, default=512, help=d)
    g.add_argument("--size", type=int, default=256, help="crop side " + d)
    # the targets and video frames show a twin whole photos at 512 px or larger: crops from photos
    # shrunk to half size spend a small network on a scale it never runs at (docs/TRAINING.md)
    g.add_argument("--scale", default="0.85,1.0", help="random rescale range of the photos "
                   "(1 = --max-side) " + d)
    g.add_argument("--batch", type=int, default=16, help=d)
    g.add_argument("--iterations", type=int, default=20000, help=d)
    g.add_argument("--time-budget", type=float, default=0.0, help="stop after S seconds of training "
                   "(the learning-rate schedule then follows time) " + d)
    g.add_argument("--lr", type=float, default=2e-3, help=d)
    g.add_argument("--lr-min", type=float, default=5e-5, help=d)
    g.add_argument("--seed", type=int, default=1, help=d)
    g.add_argument("--level-phases", type=int, default=32, metavar="N",
                   help="on export, give the pixel-shuffle's sub-pixel phases the same mean colour over N "
                        "training photos (removes a checker of a few levels the student may learn); 0 = off "
                        + d)
    g = p.add_argument_group("running")
    g.add_argument("--device", default="auto", help=d)
    g.add_argument("--amp", choices=("auto", "off", "bf16", "fp16"), default="auto", help=d)
    g.add_argument("--threads", type=int, default=0, help=d)
    g.add_argument("--checkpoint-dir", help="(default: build/distill/<name>)")
    g.add_argument("--checkpoint-every", type=int, default=500, help=d)
    g.add_argument("--log-every", type=int, default=25, help=d)
    g.add_argument("--keep-exports", action="store_true",
                   help="also keep every checkpoint's export, as CHECKPOINT_DIR/exports/"
                        "<output stem>.it<N>.safetensors (to compare steps or average the last few "
                        "with tools/average_models.py)")
    g.add_argument("--resume", action="store_true", help="continue from CHECKPOINT_DIR/latest.pt")
    g.add_argument("--init", metavar="MODEL", help="start from the weights of a compact model file with "
                   "the same layout (e.g. a twin distilled from another teacher of the same style)")
    return p


def student_spec(args):
    widths = tuple(int(v) for v in args.up_widths.split(",") if v.strip())
    try:
        return compact.live_spec(s2d=args.s2d, stem=args.stem, body=args.body, blocks=args.blocks,
                                 block=args.block, up_widths=widths, up=args.up,
                                 shuffle=args.shuffle)
    except compact.SpecError as e:
        raise DistillError("student layout: %s" % e) from None


def lr_at(args, it, elapsed):
    t = min(1.0, elapsed / args.time_budget) if args.time_budget else \
        min(1.0, it / max(1, args.iterations - 1))
    return args.lr_min + 0.5 * (args.lr - args.lr_min) * (1 + math.cos(math.pi * t))


def init_note(args):
    """The warm start a run began from (--init), for the exported source line."""
    if not args.init_from:
        return ""
    return ", warm-started (--init) from %s (%s)" % (args.init_from["file"],
                                                     args.init_from["source"] or "no source recorded")


def export(student, args, it, n_photos, teacher_meta, amp, calibration):
    net = compact.CompactNet(student.spec, {l["conv"]: tuple(student.get_submodule(l["conv"]).weight.shape[:3][:2])
                                            + (student.get_submodule(l["conv"]).weight.shape[2],)
                                            for l in student.layers})
    net.load_state_dict({k: v.detach().float().cpu() for k, v in student.state_dict().items()})
    phases = compact.level_shuffle_phases(net.eval(), calibration) if calibration else None
    tensors = {k: v.numpy() for k, v in net.state_dict().items()}
    name = args.style_name or Path(args.output).stem
    settings = {k: getattr(args, k) for k in ("s2d", "stem", "body", "blocks", "block", "up",
                                               "up_widths", "shuffle", "pixel_weight",
                                               "feature_weight", "gram_weight", "stability_weight", "block_weight",
                                               "block_loss",
                                               "max_shift", "noise", "teacher_context", "size", "scale", "batch", "lr",
                                               "lr_min", "seed", "time_budget")}
    # the precision this run used (--amp auto resolves per machine; a resumed run may have used another)
    settings.update(iterations=it, torch=torch.__version__, macs_per_pixel=net.macs_per_pixel(), amp=amp,
                    amp_requested=args.amp, level_phases=len(calibration))
    if args.init_from:
        settings.update(init=args.init_from["file"])
    if phases:
        settings.update(phase_spread_before=round(phases[0], 3), phase_spread_after=round(phases[1], 3),
                        flat_phase_spread_before=round(phases[2], 3), flat_phase_spread_after=round(phases[3], 3))
    meta = {
        "format": "stylize", "format_version": "1", "architecture": "compact",
        "network": compact.spec_to_json(net.spec),
        "style": name,
        "style_image": teacher_meta.get("style_image", teacher_meta.get("style", "")),
        "style_license": teacher_meta.get("style_license", ""),
        "teacher": Path(args.teacher).name,
        "teacher_sha256": stylize_safetensors.file_sha256(args.teacher),
        "source": "distilled with libstylize tools/distill.py from %s, %d iterations"
                  % (Path(args.teacher).name, it) + init_note(args),
        "license": teacher_meta.get("license", "see the teacher model"),
        "trained_by": "tools/distill.py",
        "data": "%d photographs of ../shared/content/photos (inputs only; not shipped)" % n_photos,
        "training": json.dumps(settings, sort_keys=True, separators=(",", ":")),
        "dtype": "fp16",
    }
    for k in ("copyright", "attribution"):
        if k in teacher_meta:
            meta[k] = teacher_meta[k]
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output + ".tmp"
    stylize_safetensors.write(tmp, tensors, meta, dtype="F16")
    os.replace(tmp, args.output)
    log("exported %s (iteration %d)" % (args.output, it))


def distill(args):
    if args.teacher_context < 0:
        raise DistillError("--teacher-context must be 0 or more pixels")
    try:
        device = nets_device.pick_device(args.device)
        amp = nets_device.pick_amp(args.amp, device, bf16_pays_on_cpu=True)
    except ValueError as e:
        raise DistillError(str(e)) from None
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    autocast = nets_device.autocast_factory(amp, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    scale_range = [float(v) for v in args.scale.split(",")]
    name = args.style_name or Path(args.output).stem
    ckdir = Path(args.checkpoint_dir or REPO / "build" / "distill" / name)
    ckdir.mkdir(parents=True, exist_ok=True)

    try:
        teacher = tr.load_model(args.teacher)
    except Exception as e:  # the reference loader's own messages (shapes, names)
        raise DistillError("%s: cannot load the teacher (%s); it must be a classic TransformerNet"
                           % (args.teacher, str(e) or type(e).__name__)) from None
    if not isinstance(teacher, tr.TransformerNet):
        raise DistillError("%s: the teacher must be a classic TransformerNet" % args.teacher)
    teacher_meta = dict(getattr(teacher, "metadata", {}) or {})
    teacher = teacher.to(device).eval()
    for p_ in teacher.parameters():
        p_.requires_grad_(False)

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    spec, shapes = student_spec(args)
    student = compact.CompactNet(spec, shapes)
    with torch.no_grad():  # start at mid-grey, the middle of the teacher's range
        student._convs[-1].bias.fill_(127.5)
    args.init_from = None  # the warm start's file and source line, set by --init or a resumed checkpoint
    if args.init and not args.resume:
        tensors, meta = stylize_safetensors.read(args.init)
        if json.loads(meta.get("network", "null")) != spec:
            raise DistillError("--init %s: its layout differs from the student's" % args.init)
        student.load_state_dict({k: torch.as_tensor(np.asarray(v, dtype=np.float32))
                                 for k, v in tensors.items()})
        log("student initialised from %s" % args.init)
        # kept through resumes (checkpoint meta) and in the export: the twin's history
        args.init_from = {"file": Path(args.init).name, "source": meta.get("source", "")}
    student = student.to(device)
    opt = torch.optim.Adam(student.parameters(), lr=args.lr)
    start, elapsed0 = 0, 0.0
    if args.resume:
        path = ckdir / "latest.pt"
        if not path.is_file():
            raise DistillError("--resume: %s does not exist" % path)
        ck = torch.load(str(path), map_location="cpu", weights_only=True)
        meta = json.loads(ck["meta"])
        student.load_state_dict(ck["model"])
        opt.load_state_dict({"state": ck["optimizer_state"], "param_groups": meta["param_groups"]})
        start, elapsed0 = int(meta["iteration"]), float(meta["elapsed"])
        args.init_from = meta.get("init_from")
        gen.set_state(ck["gen"])
        log("resuming at iteration %d (%.0f s spent)" % (start, elapsed0))

    paths = photo_paths(args.content or ["auto"])
    data = DeviceCrops(paths, device, args.max_side, gen)
    # photos (training ones, evenly spaced) on which the export levels the sub-pixel phases
    calibration = [img.cpu() for img in data.images[::max(1, len(data.images) // args.level_phases)]
                   ][:args.level_phases] if args.level_phases > 0 else []
    vgg = vgg19_tfjs.VGG19Features(args.vgg, upto="relu3_1").to(device)
    loss_fn = DistillLoss(vgg, autocast)
    log("%d photographs; student %.0f MAC/px (%d parameters), teacher %s; %s, amp %s"
        % (len(paths), student.macs_per_pixel(), sum(p.numel() for p in student.parameters()),
           Path(args.teacher).name, device, amp))

    logpath = ckdir / "loss.csv"
    fields = ["iteration", "seconds", "lr", "loss", "pixel", "feature", "gram", "stability", "block",
              "s_per_iter"]
    if start and logpath.is_file():  # a resumed run keeps its log's columns (older logs have no block)
        with open(logpath) as f:
            header = f.readline().strip().split(",")
        if header[0] == "iteration":
            fields = header
    logf = open(logpath, "a" if start else "w", newline="")
    writer = csv.DictWriter(logf, fieldnames=fields, extrasaction="ignore")
    if not start:
        writer.writeheader()

    def checkpoint(it, elapsed):
        # tensors as tensors, the rest as one JSON string: torch.load(weights_only=True)
        # of torch 1.13 refuses Python floats (as tools/train.py's checkpoints)
        osd = opt.state_dict()
        tmp = ckdir / "latest.pt.tmp"
        torch.save({"model": student.state_dict(), "optimizer_state": osd["state"],
                    "gen": gen.get_state(),
                    "meta": json.dumps({"iteration": it, "elapsed": float(elapsed),
                                        "param_groups": osd["param_groups"],
                                        "init_from": args.init_from})}, str(tmp))
        os.replace(tmp, ckdir / "latest.pt")
        export(student, args, it, len(paths), teacher_meta, amp, calibration)
        if args.keep_exports:
            (ckdir / "exports").mkdir(exist_ok=True)
            shutil.copyfile(args.output, ckdir / "exports" / ("%s.it%d.safetensors" % (Path(args.output).stem, it)))

    t_start = time.time()
    t_int = t_start
    acc, n_acc = {}, 0
    it = start
    student.train()
    size, pad, ctx = args.size, args.max_shift, args.teacher_context
    while it < args.iterations:
        elapsed = elapsed0 + time.time() - t_start
        if args.time_budget and elapsed >= args.time_budget:
            break
        lr = lr_at(args, it, elapsed)
        for gr in opt.param_groups:
            gr["lr"] = lr
        big = data.batch(args.batch, size + pad + 2 * ctx, scale_range)
        x = big[:, :, ctx:ctx + size, ctx:ctx + size]
        dy = int(torch.randint(0, pad + 1, (1,), generator=gen))
        dx = int(torch.randint(1 if dy == 0 else 0, pad + 1, (1,), generator=gen))
        x2 = big[:, :, ctx + dy:ctx + dy + size, ctx + dx:ctx + dx + size]
        sigma = args.noise * float(torch.rand(1, generator=gen))
        x2 = (x2 + sigma * torch.randn_like(x2)).clamp(0, 255)
        with torch.no_grad(), autocast():
            xt = big[:, :, :size + 2 * ctx, :size + 2 * ctx]
            t = run_net(teacher, xt)[:, :, ctx:ctx + size, ctx:ctx + size].float().clamp(0, 255)
        with autocast():
            y = student(x)[:, :, :size, :size].float()
            y2 = student(x2)[:, :, :size, :size].float()
        terms = loss_fn(y, t)
        terms["stability"] = stability_loss(y, y2, dy, dx)
        terms["block"] = block_loss(y, t, norm=args.block_loss)
        loss = (args.pixel_weight * terms["pixel"] + args.feature_weight * terms["feature"]
                + args.gram_weight * terms["gram"] + args.stability_weight * terms["stability"]
                + args.block_weight * terms["block"])
        if not torch.isfinite(loss):
            raise DistillError("loss is not finite at iteration %d (lower --lr?)" % (it + 1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        it += 1
        terms["loss"] = loss
        for k, v in terms.items():
            acc[k] = acc.get(k, 0.0) + float(v.detach())
        n_acc += 1
        if it % args.log_every == 0:
            now = time.time()
            row = {k: "%.5g" % (v / n_acc) for k, v in acc.items()}
            row.update(iteration=it, seconds="%.1f" % (elapsed0 + now - t_start), lr="%.3g" % lr,
                       s_per_iter="%.4f" % ((now - t_int) / n_acc))
            writer.writerow(row)
            logf.flush()
            log("it %6d  loss %.4f  pixel %.4f  feature %.4f  gram %.4f  stability %.4f  block %.4f  "
                "%.3f s/it" % (it, acc["loss"] / n_acc, acc["pixel"] / n_acc, acc["feature"] / n_acc,
                               acc["gram"] / n_acc, acc["stability"] / n_acc, acc["block"] / n_acc,
                               (now - t_int) / n_acc))
            acc, n_acc, t_int = {}, 0, now
        if it % args.checkpoint_every == 0:
            checkpoint(it, elapsed0 + time.time() - t_start)
    checkpoint(it, elapsed0 + time.time() - t_start)
    logf.close()
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return distill(args)
    except DistillError as e:
        print("%s: %s" % (PROG, e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
