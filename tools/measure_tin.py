#!/usr/bin/python3
"""How close thumbnail instance normalization (tin mode) comes to exact
full-frame instance norm, and how seamless its tiling is: the README table.

For each of the 8 Kodak images (768x512) and one 1920x1080 frame, with the
mosaic model (converted from ../shared/models/mosaic.pth unless -m is given):

  * PSNR of C `--mode tin --thumb N` (N = 256, 512, 1024; default tile 768)
    against C `--mode full` (exact instance norm over the whole frame, which
    tests/test_reference.py checks against PyTorch);
  * PSNR of the naive `--mode patch --tile 256` (each tile normalized by
    itself) against full, for contrast;
  * the largest per-value difference between tin with tiles (the default 768,
    and 256) and tin untiled (--tile 0).

The 1080p frame is frame 0 of ../shared/media/cockatoo.mp4 (decoded with an
ffmpeg found in $FFMPEG, the build tree or PATH), scaled to exactly 1920x1080
with PIL bicubic when it is not that size (and then also measured at its
native size, as its own row); without any ffmpeg it is a 16:9
crop of kodim23 upscaled 2.5x with PIL bicubic (the table says which).

    tools/measure_tin.py [-m MODEL] [--build BUILD] [--threads N] [-o docs/tin_measurement.md]
"""
import argparse
import datetime
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
sys.path.insert(0, str(TOOLS))

from PIL import Image  # noqa: E402

THUMBS = (256, 512, 1024)
SMALL_TILE = 256
DEFAULT_TILE = 768  # stylize_options_default()


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def fmt_psnr(p):
    return "∞ (identical)" if math.isinf(p) else "%.2f" % p


def read_rgb(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def find_ffmpeg(build):
    cands = [os.environ.get("FFMPEG"), build / "bin" / "ffmpeg", build / "ffmpeg" / "ffmpeg",
             shutil.which("ffmpeg")]
    for c in cands:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return str(c)
    return None


def hd_frame(shared, build, tmp):
    """(1920x1080 RGB array, description of where it comes from, and
    (name, array) of the frame at its native size when it was upscaled)."""
    video = shared / "media" / "cockatoo.mp4"
    ffmpeg = find_ffmpeg(build)
    if ffmpeg and video.exists():
        png = tmp / "cockatoo0.png"
        proc = subprocess.run([ffmpeg, "-v", "error", "-y", "-i", str(video), "-frames:v", "1",
                               str(png)], capture_output=True, text=True)
        if proc.returncode == 0 and png.exists():
            with Image.open(png) as im:
                im = im.convert("RGB")
                w, h = im.size
                if (w, h) == (1920, 1080):
                    return np.asarray(im), "cockatoo.mp4 frame 0 (native 1920x1080)", None
                return (np.asarray(im.resize((1920, 1080), Image.BICUBIC)),
                        "cockatoo.mp4 frame 0 (%dx%d, upscaled to 1920x1080 with PIL bicubic); "
                        "the row `%dp` is the same frame at its native size" % (w, h, h),
                        ("%dp" % h, np.asarray(im)))
        print("measure_tin: %s could not decode %s: %s" % (ffmpeg, video, proc.stderr.strip()),
              file=sys.stderr)
    # No decoder: a 16:9 crop of a Kodak image, upscaled.
    src = shared / "media" / "kodak" / "kodim23.png"
    with Image.open(src) as im:
        im = im.convert("RGB").crop((0, 40, 768, 472))  # 768x432
        return (np.asarray(im.resize((1920, 1080), Image.BICUBIC)),
                "kodim23 768x432 crop upscaled 2.5x to 1920x1080 with PIL bicubic "
                "(no ffmpeg to decode cockatoo.mp4)", None)


class C:
    def __init__(self, exe, model, threads, tmp):
        self.exe, self.model, self.threads, self.tmp = exe, model, threads, tmp
        self.seconds = 0.0

    def __call__(self, src, *opts):
        dst = self.tmp / "out.png"
        cmd = [str(self.exe), "-m", str(self.model), "--threads", str(self.threads)]
        cmd += [str(o) for o in opts] + [str(src), str(dst)]
        t = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        self.seconds += time.time() - t
        if proc.returncode != 0:
            sys.exit("measure_tin: %s failed:\n%s" % (" ".join(cmd), proc.stderr))
        return read_rgb(dst)


def measure(c, name, img, tmp):
    src = tmp / "in.png"
    Image.fromarray(img).save(src)
    h, w = img.shape[:2]
    t0 = time.time()
    full = c(src, "--mode", "full")
    t_full = time.time() - t0
    row = {"name": name, "size": "%dx%d" % (w, h), "t_full": t_full}
    for thumb in THUMBS:
        t0 = time.time()
        out = c(src, "--mode", "tin", "--thumb", thumb)
        row["t_tin%d" % thumb] = time.time() - t0
        row["tin%d" % thumb] = psnr(out, full)
        if thumb == 512:
            tin_default = out
    row["patch"] = psnr(c(src, "--mode", "patch", "--tile", SMALL_TILE), full)
    untiled = c(src, "--mode", "tin", "--thumb", 512, "--tile", 0)
    tiled_small = c(src, "--mode", "tin", "--thumb", 512, "--tile", SMALL_TILE)
    row["tile_default"] = int(np.abs(tin_default.astype(int) - untiled).max())
    row["tile_small"] = int(np.abs(tiled_small.astype(int) - untiled).max())
    row["tiles_default"] = tile_grid(w, h, DEFAULT_TILE)
    row["tiles_small"] = tile_grid(w, h, SMALL_TILE)
    print("  %-8s %s  full %.1fs  tin512 %.1fs  PSNR tin %s  patch %.2f  tiled-untiled %d / %d"
          % (name, row["size"], t_full, row["t_tin512"],
             " / ".join(fmt_psnr(row["tin%d" % t]) for t in THUMBS), row["patch"],
             row["tile_default"], row["tile_small"]), file=sys.stderr)
    return row


def tile_grid(w, h, tile):
    """Tiles per axis, as core/src/process.c lays them out."""
    def count(n):
        return 1 if tile >= n else -(-n // tile)
    return "%dx%d" % (count(w), count(h))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", help="model (.safetensors); default: mosaic.pth converted")
    ap.add_argument("--build", default=os.environ.get("STYLIZE_BUILD", str(REPO / "build")))
    ap.add_argument("--shared", default=os.environ.get("STYLIZE_SHARED", str(REPO.parent / "shared")))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=8, help="how many Kodak images (8)")
    ap.add_argument("--no-hd", action="store_true", help="skip the 1920x1080 frame")
    ap.add_argument("-o", "--output", help="also write the Markdown to this file")
    a = ap.parse_args(argv)
    build, shared = Path(a.build), Path(a.shared)
    exe = build / "bin" / "stylize-image"
    if not exe.exists():
        sys.exit("measure_tin: %s is missing (make lib tools)" % exe)

    with tempfile.TemporaryDirectory(prefix="measure_tin.") as tmpd:
        tmp = Path(tmpd)
        model = a.model
        if not model:
            model = tmp / "mosaic.safetensors"
            subprocess.run([sys.executable, str(TOOLS / "convert_model.py"),
                            str(shared / "models" / "mosaic.pth"), "-o", str(model)],
                           check=True, capture_output=True)
            model_desc = "mosaic (../shared/models/mosaic.pth via tools/convert_model.py, fp32)"
        else:
            model_desc = str(model)
        info = subprocess.run([str(exe), "--info", "-m", str(model)], capture_output=True,
                              text=True, check=True).stdout.strip()
        usage = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
        m = re.search(r"\((libstylize [^()]*(\([^()]*\))?)\)", usage.stdout + usage.stderr)
        version = m.group(1) if m else ""
        facts = json.loads(info)
        c = C(exe, model, a.threads, tmp)
        rows = []
        started = time.time()
        for path in sorted((shared / "media" / "kodak").glob("kodim*.png"))[:a.images]:
            rows.append(measure(c, path.stem, read_rgb(path), tmp))
        hd_desc = None
        if not a.no_hd:
            img, hd_desc, native = hd_frame(shared, build, tmp)
            rows.append(measure(c, "1080p", img, tmp))
            if native is not None:
                rows.append(measure(c, native[0], native[1], tmp))
        elapsed = time.time() - started

    lines = []
    lines.append("| image | size | PSNR tin thumb 256 (dB) | thumb 512 | thumb 1024 "
                 "| PSNR patch, tile %d | max tiled − untiled, tile %d (tiles) "
                 "| tile %d (tiles) |" % (SMALL_TILE, DEFAULT_TILE, SMALL_TILE))
    lines.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        lines.append("| %s | %s | %s | %s | %s | %.2f | %d (%s) | %d (%s) |" % (
            r["name"], r["size"], fmt_psnr(r["tin256"]), fmt_psnr(r["tin512"]),
            fmt_psnr(r["tin1024"]), r["patch"], r["tile_default"], r["tiles_default"],
            r["tile_small"], r["tiles_small"]))
    kodak = [r for r in rows if r["name"].startswith("kodim")]
    if kodak:
        def mean(key):
            vals = [r[key] for r in kodak]
            return math.inf if any(math.isinf(v) for v in vals) else sum(vals) / len(vals)
        lines.append("| Kodak mean | 768x512 | %s | %s | %s | %.2f | %d | %d |" % (
            fmt_psnr(mean("tin256")), fmt_psnr(mean("tin512")), fmt_psnr(mean("tin1024")),
            mean("patch"), max(r["tile_default"] for r in kodak),
            max(r["tile_small"] for r in kodak)))
    table = "\n".join(lines)
    notes = [
        "Model: %s. C `stylize-image` (%s; backend %s, %s), `--threads %d`, %d CPUs, "
        "on %s; %.0f s for the whole table."
        % (model_desc, version or "stylize-image", facts.get("backend", "?"),
           facts.get("precision", "?"), a.threads, os.cpu_count(),
           datetime.date.today().isoformat(), elapsed),
        "PSNR is over all 8-bit RGB values against `--mode full` (exact full-frame instance "
        "norm, equal to PyTorch within 1 level: tests/test_reference.py). "
        "`--thumb 1024` on a 768x512 image uses the frame itself as thumbnail, so only "
        "tiling could make it differ.",
        "Tiled − untiled: tin with `--thumb 512` and the default tile (%d) or tile %d, against "
        "`--tile 0`; the tiles column gives the grid (columns x rows)." % (DEFAULT_TILE, SMALL_TILE),
    ]
    if hd_desc:
        notes.append("1080p frame: %s." % hd_desc)
    notes.append("Model info: `%s`" % info.replace("\n", " "))
    text = table + "\n\n" + "\n\n".join(notes) + "\n"
    print(text)
    if a.output:
        out = Path(a.output)
        header = ("# TIN measurement\n\nProduced by `tools/measure_tin.py -o %s`.\n\n" % a.output)
        out.write_text(header + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
