#!/usr/bin/python3
"""Train a fast-neural-style TransformerNet for libstylize.

The network is tools/torch_reference.py's TransformerNet (any widths, any
number of residual blocks); the loss is the perceptual loss of Johnson et
al. 2016 on VGG19 blocks 1-3 (../shared/vgg19, TF.js format, read by
tools/vgg19_tfjs.py):

  style    Gram-matrix loss on relu1_1, relu2_1, relu3_1 (default), evaluated
           on the output and the style image at full scale AND on 2x
           downscaled copies of both (--style-scales 1,2): block 4/5 are not
           available, so the 2x copy is what teaches strokes larger than
           relu3_1's 24-pixel receptive field;
  content  feature reconstruction on relu2_2 (default);
  tv       optional total variation.

Each term is normalized (relative squared error: a style term is
|G(out) - G(style)|^2 / |G(style)|^2, the content term |F(out) -
F(in)|^2 / |F(in)|^2), so the weights are ratios that do not depend on the
feature scale of the VGG variant; see docs/TRAINING.md for the defaults.

--tin trains for thumbnail instance normalization (URST, Chen et al. 2022):
a fraction of the iterations runs the network on a downscaled copy of each
crop's whole (rescaled) image first, records every instance-norm layer's
statistics, and normalizes the crop with those, as libstylize does in
mode=tin.

Typical use (see docs/TRAINING.md):

  tools/train.py --style ../shared/styles/starry_night.jpg --iterations 4000 \\
      --tin --threads 2 -o models/starry_night.safetensors
  tools/plot_loss.py build/train/starry_night/loss.csv
"""

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
sys.path.insert(0, str(TOOLS))
import torch_reference as tr  # noqa: E402
import vgg19_tfjs  # noqa: E402
import stylize_safetensors  # noqa: E402

SHARED = Path(os.environ.get("STYLIZE_SHARED", REPO.parent / "shared"))
PROG = "train.py"

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm"}
VIDEO_EXTS = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".y4m"}

# Known style images: (description, licence).
STYLES = {
    "starry_night": ("Vincent van Gogh, The Starry Night (1889)", "public domain"),
    "the_scream": ("Edvard Munch, The Scream (1893)", "public domain"),
    "great_wave": ("Katsushika Hokusai, The Great Wave off Kanagawa (c. 1831)", "public domain"),
    "shipwreck": ("J. M. W. Turner, The Shipwreck (1805)", "public domain"),
}

# A painting's own loss settings, used by a new run unless given on the command
# line (a resumed run keeps what it started with). With the recipe's content
# weight 1 shipwreck's ochre foam covered the photos, lighthouses, faces and
# riders gone by 750 iterations, from random and from warm weights alike;
# 3 keeps them (models/README.md).
STYLE_SETTINGS = {
    "shipwreck": {"content_weight": 3.0},
}

# Permissively licensed colour photographs shipped by Debian's python3-skimage
# (scikit-image's sample data; licences as stated in skimage/data/_fetchers.py).
SKIMAGE_PHOTOS = {
    "astronaut.png": "public domain (NASA, Eileen Collins)",
    "chelsea.png": "CC0 (Stefan van der Walt)",
    "coffee.png": "CC0 (Rachel Michetti)",
    "rocket.jpg": "public domain (SpaceX)",
}  # (hubble_deep_field.jpg, also public domain, is left out: mostly black sky)
SKIMAGE_DIRS = [Path("/usr/lib/python3/dist-packages/skimage/data")]
PHOTOS_DIR = REPO / "build" / "train-data" / "photos"

# Options a resumed run takes from the checkpoint unless given again.
NOT_RESUMED = {"resume", "export_only", "benchmark", "threads", "device", "fetch_photos",
               "checkpoint_dir", "log", "preview"}
ARCH = ("widths", "res_blocks", "kernel")


class TrainError(Exception):
    """A user-facing error: printed as 'train.py: ...', exit 1."""


def log(msg):
    print(msg, flush=True)


# ===========================================================================
# the network, batched with per-sample TIN statistics

# The network, the losses and the crops live in tools/stylize_nets (shared
# with tools/distill.py); their names stay importable from here.
from stylize_nets.classic import _conv, run_net, thumbnail_stats_batch  # noqa: E402,F401
from stylize_nets.losses import _GramCPU, gram, downscale, PerceptualLoss, tv_loss  # noqa: E402,F401
from stylize_nets.data import read_image, fit_long_side, Sampler, to_tensor, load_style  # noqa: E402,F401
from stylize_nets import device as nets_device  # noqa: E402


def video_frames(path, count):
    """`count` frames evenly spaced over a video (RGB uint8), read with cv2."""
    import cv2
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise TrainError("%s: cannot open the video" % path)
    frames = []
    try:
        while True:
            ok, f = cap.read()
            if not ok:
                break
            frames.append(f)
    finally:
        cap.release()
    if not frames:
        raise TrainError("%s: no frames decoded" % path)
    idx = np.unique(np.linspace(0, len(frames) - 1, max(1, count)).round().astype(int))
    return [(i, cv2.cvtColor(frames[i], cv2.COLOR_BGR2RGB)) for i in idx]


def photo_files():
    """The permissively licensed photos that are present: skimage's data
    folder (Debian's python3-skimage) or what --fetch-photos extracted."""
    out = []
    for d in SKIMAGE_DIRS + [PHOTOS_DIR]:
        for name in SKIMAGE_PHOTOS:
            p = d / name
            if p.is_file() and not any(q.name == name for q in out):
                out.append(p)
    return out


def expand_content(specs):
    """--content values -> list of paths (directories expanded). 'auto' =
    the Kodak images, cockatoo.mp4 and the photos of photo_files()."""
    paths = []
    for spec in specs:
        if spec == "auto":
            # The training photographs of ../shared/content; never the Kodak
            # images or the cockatoo clip, which are the evaluation set.
            photos = SHARED / "content" / "photos"
            found = sorted(q for q in photos.iterdir() if q.suffix.lower() in IMAGE_EXTS) \
                if photos.is_dir() else []
            if not found:
                raise TrainError("--content auto: no photographs in %s (set STYLIZE_SHARED or "
                                 "give --content)" % photos)
            paths += found
            continue
        p = Path(spec)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_EXTS | VIDEO_EXTS)
            if not found:
                raise TrainError("--content %s: no images or videos in it" % p)
            paths += found
        elif p.is_file():
            paths.append(p)
        else:
            raise TrainError("--content %s: no such file or directory" % p)
    return paths


def load_content(specs, frames_per_video, max_side):
    """[(name, HxWx3 uint8)] for every content image / video frame."""
    images = []
    for p in expand_content(specs):
        if p.suffix.lower() in VIDEO_EXTS:
            for i, f in video_frames(p, frames_per_video):
                images.append(("%s#%d" % (p.name, i), fit_long_side(f, max_side)))
        else:
            images.append((p.name, fit_long_side(read_image(p), max_side)))
    if not images:
        raise TrainError("no content images")
    return images


def fetch_photos(dest=PHOTOS_DIR):
    """Extract SKIMAGE_PHOTOS from Debian's python3-skimage package into
    `dest` (apt-get download + dpkg-deb -x; no root, nothing installed)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run(["apt-get", "download", "python3-skimage"], cwd=tmp,
                           capture_output=True, text=True)
        debs = list(Path(tmp).glob("python3-skimage_*.deb"))
        if r.returncode != 0 or not debs:
            raise TrainError("apt-get download python3-skimage failed: %s"
                             % (r.stderr.strip() or r.stdout.strip()))
        ex = Path(tmp) / "x"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(ex)], check=True)
        src = ex / "usr/lib/python3/dist-packages/skimage/data"
        lines = ["Photographs from Debian's %s (scikit-image sample data)." % debs[0].name, ""]
        for name, lic in SKIMAGE_PHOTOS.items():
            if (src / name).is_file():
                shutil.copy2(src / name, dest / name)
                lines.append("%s: %s" % (name, lic))
        (dest / "LICENSES.txt").write_text("\n".join(lines) + "\n")
    log("photos extracted to %s" % dest)


def pick_device(name):
    try:
        return nets_device.pick_device(name)
    except ValueError as e:
        raise TrainError(str(e)) from None


def pick_amp(name, device):
    try:  # bf16: 1.7x faster on an AMD Zen 4, 1.5x slower on an Intel AVX512-BF16 CPU without AMX
        return nets_device.pick_amp(name, device, bf16_pays_on_cpu=nets_device.cpu_bf16_beats_fp32())
    except ValueError as e:
        raise TrainError(str(e)) from None


autocast_factory = nets_device.autocast_factory


def grad_scaler(amp, device):
    if amp != "fp16":
        return None
    if hasattr(torch, "amp") and hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler(device.type)
    return torch.cuda.amp.GradScaler()


# ===========================================================================
# weight average

class WeightAverage:
    """An exponential moving average of a model's weights (--ema). Its decay
    is min(DECAY, n/(n+1)) at its n-th update: the plain mean of the weights
    seen until 1/(1-DECAY) updates, then exponential with that horizon, so
    that an average started late (a resumed run) or a short run does not
    hold on to its first weights."""

    def __init__(self, model, decay, state=None, updates=0):
        self.model = tr.TransformerNet(model.widths, model.res_blocks, model.kernel_in).to(
            next(model.parameters()).device)
        self.model.load_state_dict(state if state is not None else model.state_dict())
        self.model.requires_grad_(False)
        self.decay, self.updates = decay, int(updates)

    @torch.no_grad()
    def update(self, model):
        d = min(self.decay, self.updates / (self.updates + 1.0))
        for a, w in zip(self.model.state_dict().values(), model.state_dict().values()):
            a.mul_(d).add_(w.detach(), alpha=1.0 - d)
        self.updates += 1


# ===========================================================================
# checkpoints, export

def save_checkpoint(path, model, opt, iteration, args, rng, elapsed, scaler=None, ema=None):
    """Tensors as tensors, everything else as one JSON string, so that
    torch.load(weights_only=True) reads it on torch 1.13 (whose safe
    unpickler rejects Python floats) and 2.x alike."""
    osd = opt.state_dict()
    meta = {
        "iteration": iteration,
        "args": vars(args),
        "np_rng": rng.bit_generator.state,
        "elapsed": float(elapsed),
        "param_groups": osd["param_groups"],
        "scaler": {k: (v.item() if torch.is_tensor(v) else v)
                   for k, v in scaler.state_dict().items()} if scaler is not None else {},
        "ema_updates": ema.updates if ema is not None else 0,
    }
    ck = {
        "model": model.state_dict(),
        "optimizer_state": osd["state"],
        "torch_rng": torch.get_rng_state(),
        "meta": json.dumps(meta),
    }
    if ema is not None:
        ck["ema"] = ema.model.state_dict()
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ck, str(tmp))
    os.replace(tmp, path)


def load_checkpoint(path):
    """A checkpoint of save_checkpoint: dict with model, optimizer (a
    state_dict), torch_rng, iteration, args (dict), np_rng, elapsed, scaler."""
    try:
        ck = torch.load(str(path), map_location="cpu", weights_only=True)
    except TypeError:  # a torch without weights_only
        ck = torch.load(str(path), map_location="cpu")
    except Exception as e:  # pickle errors of a file that is not ours
        raise TrainError("%s: not a train.py checkpoint (%s)" % (path, str(e)[-200:])) from None
    if not isinstance(ck, dict) or "meta" not in ck:
        raise TrainError("%s: not a train.py checkpoint" % path)
    meta = json.loads(ck.pop("meta"))
    ck.update(meta)
    ck["optimizer"] = {"state": ck.pop("optimizer_state"), "param_groups": meta["param_groups"]}
    return ck


def init_weights(model, path):
    """Copy a classic model file's weights into `model` (--init); the
    layouts must agree exactly."""
    try:
        src = tr.load_model(path)
    except Exception as e:  # a damaged or foreign file: say which and why
        raise TrainError("--init %s: cannot read it as a model (%s)" % (path, e))
    theirs, ours = src.state_dict(), model.state_dict()
    if not isinstance(src, tr.TransformerNet) or theirs.keys() != ours.keys() or \
            any(theirs[k].shape != ours[k].shape for k in ours):
        raise TrainError("--init %s: its layout differs from the network trained here (widths %s, "
                         "%d res blocks, kernel %d)" % (path, ",".join(map(str, model.widths)),
                                                       model.res_blocks, model.kernel_in))
    with torch.no_grad():
        for k, v in ours.items():
            v.copy_(theirs[k].to(v.dtype))
    log("network initialised from %s" % path)


def apply_style_settings(args, explicit):
    """Give a new run its painting's settings from STYLE_SETTINGS, except the
    ones on the command line, and say so."""
    for k, v in STYLE_SETTINGS.get(Path(args.style).stem, {}).items():
        if k not in explicit:
            setattr(args, k, v)
            log("%s: --%s %g, the painting's own setting (give the option to override it)"
                % (Path(args.style).stem, k.replace("_", "-"), v))


def own_settings(key):
    """'shipwreck: 3'-style list of the paintings whose STYLE_SETTINGS set `key` (for --help)."""
    return ", ".join("%s: %g" % (stem, v[key]) for stem, v in sorted(STYLE_SETTINGS.items()) if key in v)


def style_facts(args):
    stem = Path(args.style).stem
    desc, lic = STYLES.get(stem, (Path(args.style).name, "unknown"))
    return (args.style_title or desc), (args.style_license or lic)


def training_settings(args, iteration, content_names):
    keys = ["widths", "res_blocks", "kernel", "size", "batch", "lr", "lr_min", "lr_schedule",
            "loss_margin", "time_budget",
            "style_weight", "content_weight", "tv_weight", "style_layers", "content_layer",
            "style_scales", "style_scale_weights", "style_size", "scale", "tin", "tin_prob",
            "tin_thumb", "tin_ratio", "tin_detach", "amp", "seed", "frames_per_video", "ema"]
    d = {k: getattr(args, k) for k in keys}
    d.update(iterations=iteration, style_image=Path(args.style).name, vgg="VGG19 blocks 1-3 "
             "(Keras/TF.js weights)", content=content_names, torch=torch.__version__)
    if args.init:
        d.update(init=Path(args.init).name, init_sha256=args.init_sha256)
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def export_model(model, path, args, iteration, content_names):
    title, style_lic = style_facts(args)
    meta = {
        "format": "stylize",
        "format_version": "1",
        "architecture": "transformer_net",
        "style": args.style_name,
        "style_image": title,
        "style_license": style_lic,
        "source": "trained with libstylize tools/train.py, %d iterations" % iteration
                  + (", warm-started (--init) from %s (sha256 %s)" % (Path(args.init).name,
                                                                     args.init_sha256)
                     if args.init else ""),
        "license": args.license,
        "trained_by": "tools/train.py",
        "training": training_settings(args, iteration, content_names),
        "dtype": args.dtype,
    }
    cpu = tr.TransformerNet(model.widths, model.res_blocks, model.kernel_in)
    cpu.load_state_dict({k: v.detach().float().cpu() for k, v in model.state_dict().items()})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tr.save_safetensors_model(cpu, path, meta, dtype={"fp16": "F16", "fp32": "F32",
                                                      "bf16": "BF16"}[args.dtype])
    log("exported %s (%s, iteration %d)" % (path, args.dtype, iteration))


def write_preview(model, img, path, autocast):
    with torch.no_grad(), autocast():
        y = run_net(model, img)
    out = y[0, :, :img.shape[2], :img.shape[3]].float().clamp(0, 255).round().byte()
    tr.write_png(path, out.permute(1, 2, 0).cpu().numpy())


# ===========================================================================
# command line

def parse_list(text, typ, name, n=None):
    try:
        vals = [typ(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise TrainError("--%s %s: expected a comma-separated list" % (name, text)) from None
    if not vals or (n is not None and len(vals) != n):
        raise TrainError("--%s %s: expected %s values" % (name, text, n or "some"))
    return vals


def build_parser():
    d = "(default: %(default)s)"
    p = argparse.ArgumentParser(
        prog="train.py", allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1] + """
files: in --checkpoint-dir (default build/train/STYLE_NAME): latest.pt and
ckpt_NNNNNN.pt (model, optimizer, iteration, options, RNG state), loss.csv,
preview_NNNNNN.png; the model goes to --output (default
CHECKPOINT_DIR/STYLE_NAME.safetensors) at the end and at every checkpoint.

exit status: 0 on success, 1 on an error (message 'train.py: ...').""")
    g = p.add_argument_group("data")
    g.add_argument("--style", metavar="IMAGE", help="style image (required, except with "
                   "--fetch-photos or --resume)")
    g.add_argument("--style-name", metavar="NAME", help="style name stored in the model (default: the style "
                   "image's file name without extension)")
    g.add_argument("--style-title", metavar="TEXT", help="description of the style image stored in the model "
                   "(default: known for the four paintings in ../shared/styles)")
    g.add_argument("--style-license", metavar="TEXT", help="licence of the style image (default: 'public "
                   "domain' for the four paintings in ../shared/styles, else 'unknown')")
    g.add_argument("--style-size", metavar="PX", type=int, default=512, help="the style image is resized to "
                   "this longer side before its Gram matrices are taken; smaller = larger "
                   "strokes in the result; 0 = as is " + d)
    g.add_argument("--content", action="append", metavar="PATH",
                   help="content images: a folder (its images and videos), an image or a "
                   "video; repeatable. 'auto' = the training photographs in "
                   "../shared/content/photos (never the Kodak images or the cockatoo clip: they are "
                   "the evaluation set) (default: auto)")
    g.add_argument("--frames-per-video", metavar="N", type=int, default=8, help="frames taken from each "
                   "video, evenly spaced " + d)
    g.add_argument("--max-side", metavar="PX", type=int, default=1600, help="content images are shrunk to "
                   "this longer side when loaded " + d)
    g.add_argument("--fetch-photos", action="store_true", help="extract the CC0/public-domain "
                   "photos of Debian's python3-skimage into build/train-data/photos "
                   "(apt-get download, no root, nothing installed) and exit")
    g = p.add_argument_group("network")
    g.add_argument("--widths", metavar="C1,C2,C3", default="32,64,128", help="channel widths c1,c2,c3 (encoder; "
                   "the decoder mirrors them); 16,32,64 is the half-width 'fast' model " + d)
    g.add_argument("--res-blocks", metavar="N", type=int, default=5, help="residual blocks " + d)
    g.add_argument("--kernel", metavar="K", type=int, default=9, help="first and last kernel size (odd) " + d)
    g = p.add_argument_group("loss")
    g.add_argument("--style-weight", metavar="W", type=float, default=10.0, help="weight of the style term "
                   "(relative Gram error, averaged over layers, summed over scales) " + d)
    g.add_argument("--content-weight", metavar="W", type=float, default=1.0, help="weight of the content "
                   "term (relative feature error); a painting may have its own, used unless this is given "
                   "(%s) " % own_settings("content_weight") + d)
    g.add_argument("--tv-weight", metavar="W", type=float, default=0.0, help="weight of total variation "
                   "(mean squared neighbour difference of the output / 255); 0 = off " + d)
    g.add_argument("--style-layers", metavar="LAYERS", default="relu1_1,relu2_1,relu3_1",
                   help="VGG19 layers of the style term (relu1_1 .. relu3_4) " + d)
    g.add_argument("--content-layer", metavar="LAYER", default="relu2_2", help="VGG19 layer of the content "
                   "term " + d)
    g.add_argument("--style-scales", metavar="S,S", default="1,2", help="downscale factors at which the style "
                   "term is evaluated (output and style image avg-pooled by each) " + d)
    g.add_argument("--style-scale-weights", metavar="W,W", default=None, help="weight per style scale "
                   "(default: 1 for each)")
    g.add_argument("--vgg", metavar="DIR", default=str(SHARED / "vgg19"), help="folder of the TF.js VGG19 "
                   "(model.json + shards) " + d)
    g.add_argument("--loss-margin", metavar="PX", type=int, default=16, help="reflection margin "
                   "around the output before VGG (features cropped back), so that the loss judges "
                   "border pixels like interior ones: 0 brings back the frame line of the v1 "
                   "styles " + d)
    g = p.add_argument_group("optimization")
    g.add_argument("--iterations", metavar="N", type=int, default=4000, help="training iterations (one "
                   "batch each) " + d)
    g.add_argument("--batch", metavar="N", type=int, default=4, help="crops per iteration " + d)
    g.add_argument("--size", metavar="PX", type=int, default=256, help="crop side in pixels (multiple of 4) "
                   + d)
    g.add_argument("--scale", metavar="LO,HI", default="0.5,1.0", help="range of the random rescale of a "
                   "content image before cropping (log-uniform; raised where the crop would "
                   "not fit) " + d)
    g.add_argument("--lr", metavar="LR", type=float, default=1e-3, help="Adam learning rate " + d)
    g.add_argument("--lr-min", metavar="LR", type=float, default=1e-4, help="final learning rate of the "
                   "cosine schedule " + d)
    g.add_argument("--lr-schedule", choices=("cosine", "constant"), default="cosine",
                   help="learning rate schedule " + d)
    g.add_argument("--time-budget", metavar="S", type=float, default=0.0, help="stop after S "
                   "seconds of training (resumes count what was spent) instead of at --iterations; "
                   "the learning-rate schedule follows the elapsed time " + d)
    g.add_argument("--ema", metavar="DECAY", type=float, default=0.0, help="keep an exponential moving "
                   "average of the weights (decay per iteration; min(DECAY, n/(n+1)) at its n-th update, "
                   "i.e. the plain mean until 1/(1-DECAY) updates) and export and preview it instead "
                   "of the raw weights, which jitter from checkpoint to checkpoint while the step size "
                   "is large; 0 = off " + d)
    g.add_argument("--seed", metavar="N", type=int, default=1, help="random seed " + d)
    g.add_argument("--init", metavar="MODEL", help="start from the weights of this classic model "
                   "file (.safetensors or .pth) instead of random ones: a trained style of the same "
                   "widths, res-blocks and kernel, whose encoder and decoder already reproduce "
                   "photographs, so a new style needs far fewer iterations. The optimizer starts "
                   "afresh; the file and its sha256 are recorded in the export")
    g = p.add_argument_group("thumbnail instance normalization")
    g.add_argument("--tin", action="store_true", help="TIN-aware training: a fraction "
                   "(--tin-prob) of the iterations normalizes each crop with the statistics "
                   "of its rescaled whole image's thumbnail")
    g.add_argument("--tin-prob", metavar="P", type=float, default=0.5, help="fraction of TIN iterations "
                   "with --tin " + d)
    g.add_argument("--tin-thumb", metavar="PX", type=int, default=256, help="thumbnail longer side in "
                   "training " + d)
    g.add_argument("--tin-ratio", metavar="R", type=float, default=4.0, help="the rescaled whole image is "
                   "1..this many times the thumbnail (log-uniform; 1080p / 512 = 3.75) " + d)
    g.add_argument("--tin-detach", action="store_true", help="no gradient through the "
                   "thumbnail statistics (cheaper; default: gradient flows)")
    g = p.add_argument_group("running")
    g.add_argument("--device", metavar="DEV", default="auto", help="auto (cuda if available), cpu, cuda, "
                   "cuda:N " + d)
    g.add_argument("--amp", choices=("auto", "off", "bf16", "fp16"), default="auto",
                   help="autocast: auto = bf16 on CUDA GPUs that support it, else fp16 with "
                   "a grad scaler; on a CPU bf16 where it measured faster (AMX, or AVX512-BF16 "
                   "on an AMD CPU), else off " + d)
    g.add_argument("--threads", metavar="N", type=int, default=0, help="CPU threads for torch, 0 = torch's "
                   "default " + d)
    g.add_argument("--checkpoint-dir", metavar="DIR", help="checkpoints, loss log, previews (default: "
                   "build/train/STYLE_NAME)")
    g.add_argument("--checkpoint-every", metavar="N", type=int, default=250, help="iterations between "
                   "checkpoints (and exports, previews) " + d)
    g.add_argument("--keep", metavar="N", type=int, default=3, help="numbered checkpoints kept " + d)
    g.add_argument("--log-every", metavar="N", type=int, default=10, help="iterations per loss-log row " + d)
    g.add_argument("--log", metavar="CSV", help="loss log CSV (default: CHECKPOINT_DIR/loss.csv)")
    g.add_argument("--preview", metavar="IMAGE", default=str(SHARED / "media" / "kodak" / "kodim23.png"),
                   help="image stylized at each checkpoint ('none' = off) " + d)
    g.add_argument("--resume", nargs="?", const="latest", metavar="CKPT",
                   help="continue from a checkpoint (default: CHECKPOINT_DIR/latest.pt); "
                   "options not given again are taken from it")
    g.add_argument("--export-only", action="store_true", help="with --resume: just export the "
                   "checkpoint's model to --output")
    g.add_argument("--benchmark", type=int, metavar="N", help="time N iterations (after a "
                   "warm-up one), print seconds per iteration, write nothing")
    g = p.add_argument_group("export")
    g.add_argument("-o", "--output", help="the .safetensors model (default: "
                   "CHECKPOINT_DIR/STYLE_NAME.safetensors)")
    g.add_argument("--dtype", choices=("fp16", "fp32", "bf16"), default="fp16",
                   help="storage type of the exported weights " + d)
    g.add_argument("--license", metavar="TEXT", default="MIT", help="licence of the trained model " + d)
    p.set_defaults(init_sha256=None)  # set with --init; kept in checkpoints
    return p


def explicit_options(parser, argv):
    """dests of the options given on the command line."""
    out = set()
    for tok in argv:
        if tok == "--":
            break
        if tok.startswith("-") and len(tok) > 1:
            a = parser._option_string_actions.get(tok.split("=", 1)[0])
            if a is not None:
                out.add(a.dest)
    return out


def finish_args(args):
    """Validate and derive (lists from strings etc.); raises TrainError."""
    args.widths_l = parse_list(args.widths, int, "widths", 3)
    args.style_layers_l = parse_list(args.style_layers, str, "style-layers")
    args.scales_l = parse_list(args.style_scales, int, "style-scales")
    args.scale_weights_l = (parse_list(args.style_scale_weights, float, "style-scale-weights",
                                       len(args.scales_l))
                            if args.style_scale_weights else [1.0] * len(args.scales_l))
    args.scale_l = parse_list(args.scale, float, "scale", 2)
    if min(args.widths_l) < 1 or args.res_blocks < 1 or args.kernel < 1 or args.kernel % 2 == 0:
        raise TrainError("bad network shape (widths >= 1, res-blocks >= 1, odd kernel)")
    if args.size < 16 or args.size % 4:
        raise TrainError("--size must be a multiple of 4, at least 16")
    if args.batch < 1 or args.iterations < 0:
        raise TrainError("--batch must be >= 1 and --iterations >= 0")
    if min(args.scales_l) < 1 or args.size // max(args.scales_l) < 8:
        raise TrainError("--style-scales: factors >= 1 leaving crops of at least 8 px")
    if not 0 < args.scale_l[0] <= args.scale_l[1]:
        raise TrainError("--scale LO,HI with 0 < LO <= HI")
    if not 0 <= args.ema < 1:
        raise TrainError("--ema %g: a decay in [0, 1)" % args.ema)
    if not 0 <= args.tin_prob <= 1 or args.tin_thumb < 16 or args.tin_ratio < 1:
        raise TrainError("bad --tin-prob (0..1), --tin-thumb (>= 16) or --tin-ratio (>= 1)")
    if args.checkpoint_every < 1 or args.log_every < 1:
        raise TrainError("--checkpoint-every and --log-every must be >= 1")
    if args.init and not args.init_sha256:  # (a resumed run has it already)
        if not Path(args.init).is_file():
            raise TrainError("--init %s: no such file" % args.init)
        args.init = str(Path(args.init).resolve())
        args.init_sha256 = stylize_safetensors.file_sha256(args.init)
    args.style = str(Path(args.style).resolve())  # a checkpoint may be resumed elsewhere
    if args.content:
        args.content = [c if c == "auto" else str(Path(c).resolve()) for c in args.content]
    if not args.style_name:
        args.style_name = Path(args.style).stem
    ck = Path(args.checkpoint_dir or REPO / "build" / "train" / args.style_name)
    args.checkpoint_dir = str(ck)
    args.output = str(Path(args.output).resolve()) if args.output else \
        str(ck / (args.style_name + ".safetensors"))
    args.log = args.log or str(ck / "loss.csv")
    return args


CSV_FIELDS = ["iteration", "seconds", "lr", "loss", "content", "style", "tv", "tin_fraction",
              "s_per_iter", "cpu_s_per_iter"]


def open_log(path, scales, start):
    """The CSV loss log, appended to on resume (rows past `start` dropped)."""
    fields = CSV_FIELDS[:6] + ["style_x%d" % s for s in scales] + CSV_FIELDS[6:]
    rows = []
    if start > 0 and Path(path).is_file():
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r.get("iteration", 0) or 0) <= start]
    f = open(path, "w", newline="")
    w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    f.flush()
    return f, w


def lr_at(args, it, elapsed=0.0):
    """The learning rate at iteration `it`; with --time-budget the schedule
    follows the elapsed fraction of the budget instead of iterations."""
    if args.lr_schedule == "constant":
        return args.lr
    if args.time_budget:
        t = min(1.0, elapsed / args.time_budget)
    elif args.iterations <= 1:
        return args.lr
    else:
        t = min(1.0, it / (args.iterations - 1))
    return args.lr_min + 0.5 * (args.lr - args.lr_min) * (1 + math.cos(math.pi * t))


def train(args, argv_explicit):
    device = pick_device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    ckdir = Path(args.checkpoint_dir)
    ck = None
    if args.resume:
        path = ckdir / "latest.pt" if args.resume == "latest" else Path(args.resume)
        if not path.is_file():
            raise TrainError("--resume: %s does not exist" % path)
        ck = load_checkpoint(path)
        saved = ck["args"]
        for k in ARCH:
            if k in argv_explicit and str(getattr(args, k)) != str(saved[k]):
                raise TrainError("--%s %s differs from the checkpoint's %s"
                                 % (k.replace("_", "-"), getattr(args, k), saved[k]))
        for k, v in saved.items():
            if k not in argv_explicit and k not in NOT_RESUMED and hasattr(args, k) \
                    and not k.endswith("_l"):
                setattr(args, k, v)
        args.style_name = args.style_name or saved.get("style_name")
        finish_args(args)
        log("resuming %s at iteration %d" % (path, ck["iteration"]))
    amp = pick_amp(args.amp, device)
    autocast = autocast_factory(amp, device)
    scaler = grad_scaler(amp, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = tr.TransformerNet(tuple(args.widths_l), args.res_blocks, args.kernel).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    start, elapsed0 = 0, 0.0
    if ck is not None:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        start, elapsed0 = int(ck["iteration"]), float(ck.get("elapsed", 0.0))
        rng.bit_generator.state = ck["np_rng"]
        torch.set_rng_state(ck["torch_rng"])
        if scaler is not None and ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
    elif args.init:
        init_weights(model, args.init)

    ema = None
    if args.ema > 0:  # from the checkpoint's average, or started here from its weights
        have = ck is not None and "ema" in ck
        ema = WeightAverage(model, args.ema, ck["ema"] if have else None,
                            ck.get("ema_updates", 0) if have else 0)
    shown = ema.model if ema is not None else model  # what is exported and previewed

    images = load_content(args.content or ["auto"], args.frames_per_video, args.max_side)
    content_names = sorted({n.split("#")[0] for n, _ in images})
    if args.export_only:
        if ck is None:
            raise TrainError("--export-only needs --resume")
        export_model(shown, args.output, args, start, content_names)
        return 0

    need = args.style_layers_l + [args.content_layer]
    deepest = max(need, key=vgg19_tfjs.layer_order().index)
    vgg = vgg19_tfjs.VGG19Features(args.vgg, upto=deepest).to(device)
    if not Path(args.style).is_file():
        raise TrainError("--style %s: no such file" % args.style)
    style_img = load_style(args.style, args.style_size, device)
    loss_fn = PerceptualLoss(vgg, style_img, args.style_layers_l, args.content_layer,
                             args.scales_l, args.scale_weights_l, autocast, margin=args.loss_margin)
    sampler = Sampler(images, args.size, args.scale_l, args.tin_thumb, args.tin_ratio, rng,
                      quantum=16 if device.type == "cuda" else 1)
    log("%d content images (%s); network widths %s, %d res blocks; %s, amp %s, %d threads"
        % (len(images), ", ".join(content_names[:6]) + (", ..." if len(content_names) > 6 else ""),
           args.widths, args.res_blocks, device, amp, torch.get_num_threads()))

    bench = args.benchmark
    writer = logf = None
    preview = None
    if not bench:
        ckdir.mkdir(parents=True, exist_ok=True)
        logf, writer = open_log(args.log, args.scales_l, start)
        if args.preview and args.preview != "none":
            pv = fit_long_side(read_image(args.preview), 512)
            preview = to_tensor(pv, device)
    end = start + (bench + 1) if bench else args.iterations

    acc, n_acc = {}, 0
    t_start = time.time()
    t_int = time.time()
    times, cpu_times = [], []
    c_int = time.process_time()
    model.train()
    for it in range(start, end):
        t0, c0 = time.time(), time.process_time()
        elapsed = elapsed0 + t0 - t_start
        if args.time_budget and elapsed >= args.time_budget and not bench:
            end = it  # the budget is spent: checkpoint and export below
            break
        lr = lr_at(args, it, elapsed)
        for gr in opt.param_groups:
            gr["lr"] = lr
        tin = args.tin and rng.random() < args.tin_prob
        x, thumbs = sampler.batch(args.batch, tin, device)
        target = loss_fn.content_target(x)
        with autocast():
            stats = thumbnail_stats_batch(model, thumbs, args.tin_detach) if tin else None
            y = run_net(model, x, stats=stats)
        y = y.float()
        content, style, per_scale = loss_fn(y, target)
        loss = args.content_weight * content + args.style_weight * style
        tv = tv_loss(y) if args.tv_weight > 0 else torch.zeros((), device=device)
        loss = loss + args.tv_weight * tv
        if not torch.isfinite(loss):
            raise TrainError("loss is %s at iteration %d (lower --lr?)" % (loss.item(), it + 1))
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        if ema is not None:
            ema.update(model)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.time() - t0)
        cpu_times.append(time.process_time() - c0)
        vals = {"loss": loss.item(), "content": content.item(), "style": style.item(),
                "tv": tv.item(), "tin_fraction": float(tin)}
        for s, v in zip(args.scales_l, per_scale):
            vals["style_x%d" % s] = v.item()
        for k, v in vals.items():
            acc[k] = acc.get(k, 0.0) + v
        n_acc += 1
        done = it + 1
        if bench:
            continue
        if done % args.log_every == 0 or done == end:
            row = {k: "%.6g" % (v / n_acc) for k, v in acc.items()}
            now = time.time()
            cnow = time.process_time()
            row.update(iteration=done, seconds="%.1f" % (elapsed0 + now - t_start), lr="%.3g" % lr,
                       s_per_iter="%.3f" % ((now - t_int) / n_acc),
                       cpu_s_per_iter="%.3f" % ((cnow - c_int) / n_acc))
            writer.writerow(row)
            logf.flush()
            log("it %6d  loss %.4f  content %.4f  style %.4f%s  %.2f s/it"
                % (done, acc["loss"] / n_acc, acc["content"] / n_acc, acc["style"] / n_acc,
                   "  tv %.5f" % (acc["tv"] / n_acc) if args.tv_weight > 0 else "",
                   (now - t_int) / n_acc))
            acc, n_acc, t_int, c_int = {}, 0, now, cnow
        if done % args.checkpoint_every == 0 or done == end:
            elapsed = elapsed0 + time.time() - t_start
            path = ckdir / ("ckpt_%06d.pt" % done)
            save_checkpoint(path, model, opt, done, args, rng, elapsed, scaler, ema)
            shutil.copyfile(path, ckdir / "latest.pt.tmp")
            os.replace(ckdir / "latest.pt.tmp", ckdir / "latest.pt")
            old = sorted(ckdir.glob("ckpt_*.pt"))[:-args.keep] if args.keep > 0 else []
            for o in old:
                o.unlink()
            export_model(shown, args.output, args, done, content_names)
            if preview is not None:
                model.eval()
                write_preview(shown, preview, ckdir / ("preview_%06d.png" % done), autocast)
                model.train()
    if bench:
        t, c = times[1:], cpu_times[1:]
        log("benchmark: %.3f s/iteration (mean of %d; min %.3f; process CPU time %.3f s/it) at "
            "%dx%d, batch %d, widths %s, amp %s, %d threads, tin %s"
            % (float(np.mean(t)), len(t), float(np.min(t)), float(np.mean(c)),
                                            args.size, args.size, args.batch, args.widths, amp,
                                            torch.get_num_threads(),
                                            "%.2f" % args.tin_prob if args.tin else "off"))
        return 0
    if logf is not None:
        logf.close()
    if args.time_budget and end > start and end % args.checkpoint_every:
        # stopped by the budget between checkpoints: keep and export the last step
        save_checkpoint(ckdir / ("ckpt_%06d.pt" % end), model, opt, end, args, rng,
                        elapsed0 + time.time() - t_start, scaler, ema)
        shutil.copyfile(ckdir / ("ckpt_%06d.pt" % end), ckdir / "latest.pt")
        export_model(shown, args.output, args, end, content_names)
        log("time budget of %.0f s spent after %d iterations" % (args.time_budget, end))
    elif start >= end:
        export_model(shown, args.output, args, start, content_names)
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.fetch_photos:
            fetch_photos()
            return 0
        if not args.style and not args.resume:
            parser.error("--style is required")
        if args.resume and not args.style:
            # everything but the paths comes from the checkpoint
            ckdir = args.checkpoint_dir
            path = Path(args.resume) if args.resume != "latest" else (
                Path(ckdir) / "latest.pt" if ckdir else None)
            if path is None or not path.is_file():
                raise TrainError("--resume without --style needs the checkpoint path or "
                                 "--checkpoint-dir")
            saved = load_checkpoint(path)["args"]
            args.style = saved["style"]
            args.style_name = args.style_name or saved.get("style_name")
        if args.resume and args.init:
            raise TrainError("--init starts a new run; --resume goes on from the checkpoint's weights")
        if args.resume and args.resume != "latest" and not args.checkpoint_dir:
            args.checkpoint_dir = str(Path(args.resume).resolve().parent)
        explicit = explicit_options(parser, argv)
        if not args.resume:
            apply_style_settings(args, explicit)
        finish_args(args)
        return train(args, explicit)
    except TrainError as e:
        sys.stderr.write("%s: %s\n" % (PROG, e))
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("%s: interrupted (resume with --resume)\n" % PROG)
        return 1


if __name__ == "__main__":
    sys.exit(main())
