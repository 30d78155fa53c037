#!/usr/bin/python3
"""How close tin comes to the model's true output at large sizes, with
mode=exact as the ground truth (docs/tin_measurement.md, "tin against exact").

For each model and frame size: C `--mode exact` (== full, tests/test_exact.py),
then `--mode tin` with each statistics estimator: the thumbnail (thumb 512 and
exact_layers 0: the first default; thumb 0 = auto, as many pixels as one tile's
crop, and exact_layers 1, the first norm layer's statistics exact: the previous
default) and the sample (tin_stats=sample, the new default: full-resolution
tiles pooled layer by layer, as many pixels as the auto thumbnail), each change
alone, and any --thumbs; for each: PSNR over 8-bit RGB and 8x8 block-mean PSNR
(the PSNR of the images' 8x8 block means, which ignores where single strokes
fall and keeps brightness, colour and contrast) against exact, and the wall
time of stylize-image (dnnl fp32; the same machine state for all rows of a
model).

The content is frame 0 of ../shared/media/cockatoo.mp4 when an ffmpeg can
decode it ($FFMPEG, the build tree), else a 3:2 Kodak image (kodim23), resized
with PIL bicubic to the size.

    tools/measure_exact_tin.py [-m MODEL ...] [--size 3840x2160] [--thumbs 1024,2048] [--threads 2]
                               [--quick] [--keep DIR] [--exact-from DIR]
"""
import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
SHARED = Path(os.environ.get("STYLIZE_SHARED", REPO.parent / "shared"))


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def block_means(img, n=8):
    h, w = img.shape[0] // n * n, img.shape[1] // n * n
    return img[:h, :w].astype(np.float64).reshape(h // n, n, w // n, n, 3).mean(axis=(1, 3))


def content(size, build, tmp):
    w, h = size
    ffmpeg = os.environ.get("FFMPEG") or (str(build / "bin" / "ffmpeg") if (build / "bin" / "ffmpeg").exists()
                                          else shutil.which("ffmpeg"))
    video = SHARED / "media" / "cockatoo.mp4"
    if ffmpeg and video.exists():
        out = tmp / "frame0.png"
        proc = subprocess.run([ffmpeg, "-v", "error", "-y", "-i", str(video), "-frames:v", "1", str(out)],
                              capture_output=True, text=True)
        if proc.returncode == 0:
            src, what = Image.open(out).convert("RGB"), "frame 0 of cockatoo.mp4"
            return src.resize((w, h), Image.BICUBIC), what
    src = Image.open(SHARED / "media" / "kodak" / "kodim23.png").convert("RGB")
    return src.resize((w, h), Image.BICUBIC), "kodim23"


def run(build, model, src, dst, threads, *opts):
    t0 = time.time()
    subprocess.run([str(build / "bin" / "stylize-image"), "-m", str(model), "--backend", "dnnl",
                    "--precision", "fp32", "--threads", str(threads), *map(str, opts), str(src), str(dst)],
                   check=True, capture_output=True, text=True)
    return time.time() - t0, np.asarray(Image.open(dst).convert("RGB"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", action="append", help="model file or style (repeatable)")
    ap.add_argument("--size", default="3840x2160")
    ap.add_argument("--thumbs", default="", help="more thumbnail sizes, comma separated")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-memory", default="0", help="for exact (its activation cache), e.g. 4G")
    ap.add_argument("--build", default=str(REPO / "build"))
    ap.add_argument("--keep", help="folder to keep the input and every model's exact output in")
    ap.add_argument("--quick", action="store_true", help="only the old and the new defaults (and the new "
                    "default at each of --thumbs)")
    ap.add_argument("--exact-from", help="a --keep folder of an earlier run on the same input: reuse its exact "
                    "outputs (exact_MODEL.png) instead of computing them")
    args = ap.parse_args()
    build = Path(args.build)
    size = tuple(int(x) for x in args.size.split("x"))
    models = args.model or ["starry_night", "great_wave", "the_scream", "mosaic"]
    # (label, thumb, exact_layers, tin_stats)
    variants = [("thumbnail 512, exact_layers 0 (the first default)", 512, 0, "thumbnail"),
                ("thumbnail auto, exact_layers 0", 0, 0, "thumbnail"),
                ("thumbnail 512, exact_layers 1", 512, 1, "thumbnail"),
                ("thumbnail auto, exact_layers 1 (the previous default)", 0, 1, "thumbnail"),
                ("sample auto, exact_layers 0", 0, 0, "sample"),
                ("sample auto, exact_layers 1 (the new default)", 0, 1, "sample")] + \
               [("%s %s, exact_layers %d" % (e, t, k), int(t), k, e) for t in args.thumbs.split(",") if t
                for k in (0, 1) for e in ("thumbnail", "sample")]
    if args.quick:  # and of --thumbs only the default estimator (sample, exact_layers 1)
        variants = [variants[0], variants[3], variants[4], variants[5]] + \
                   [v for v in variants[6:] if v[2] == 1 and v[3] == "sample"]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        img, what = content(size, build, tmp)
        src = tmp / "in.png"
        img.save(src)
        if args.exact_from:
            old_in = np.asarray(Image.open(Path(args.exact_from) / "in.png").convert("RGB"))
            if not np.array_equal(old_in, np.asarray(img)):
                sys.exit("--exact-from %s: its in.png is not this input" % args.exact_from)
        print("| model | %dx%d (%s) | PSNR vs exact | 8x8 block-mean PSNR | time (s) |" % (size + (what,)))
        print("| --- | --- | ---: | ---: | ---: |")
        for model in models:
            if model == "mosaic":
                model = tmp / "mosaic.safetensors"
                subprocess.run([sys.executable, str(TOOLS / "convert_model.py"), str(SHARED / "models" / "mosaic.pth"),
                                "-o", str(model)], check=True, capture_output=True)
            name = Path(str(model)).stem
            reuse = Path(args.exact_from) / ("exact_%s.png" % name) if args.exact_from else None
            if reuse and reuse.exists():  # the same input (--keep's in.png) is checked below
                t_ex, exact = math.nan, np.asarray(Image.open(reuse).convert("RGB"))
            else:
                t_ex, exact = run(build, model, src, tmp / "exact.png", args.threads, "--mode", "exact",
                                  "--max-memory", args.max_memory)
            if args.keep and not math.isnan(t_ex):
                Path(args.keep).mkdir(parents=True, exist_ok=True)
                shutil.copy(src, Path(args.keep) / "in.png")
                shutil.copy(tmp / "exact.png", Path(args.keep) / ("exact_%s.png" % name))
            bm = block_means(exact)
            print("| %s | exact | ∞ | ∞ | %s |" % (name, "(reused)" if math.isnan(t_ex) else "%.1f" % t_ex),
                  flush=True)
            for label, thumb, layers, estimator in variants:
                t, out = run(build, model, src, tmp / "tin.png", args.threads, "--mode", "tin", "--thumb", thumb,
                             "--exact-layers", layers, "--tin-stats", estimator)
                print("| %s | tin, %s | %.2f | %.2f | %.1f |" % (name, label, psnr(out, exact),
                                                               psnr(block_means(out), bm), t), flush=True)


if __name__ == "__main__":
    main()
