#!/usr/bin/python3
"""Style quality of style models, measured on what libstylize outputs.

Style mode (default): for each model (-m, repeatable), the 8 Kodak images of
../shared/media/kodak are scaled to --long-side (384) and stylized by
build/bin/stylize-image in `full` mode, fp32, and measured with VGG19
(../shared/vgg19, blocks 1-3, tools/vgg19_tfjs.py):

  style distance   to the painting: the relative Gram-matrix error
                   |G(out) - G(painting)|_F / |G(painting)|_F of relu1_1,
                   relu2_1 and relu3_1 at scales 1, 2 and 4 (the image
                   downscaled by 2 and 4 with a box filter), averaged over the
                   9 layer x scale pairs and the 8 images. Grams are
                   normalized by the pixel count (tools/train.py's gram), so
                   images of different sizes compare. The painting is
                   ../shared/styles/<training style_image> for models trained
                   by tools/train.py (the file name is in their metadata), at
                   the style size they were trained with (their `style_size`);
                   --style-image STYLE=PATH gives or overrides it (the painting
                   at its own size unless --style-size). Without a painting
                   (mosaic, candy: ../shared has no copy) the column is empty.
  style loss       the same errors squared and averaged: tools/train.py's
                   normalized style loss term (issue 14's figures are on
                   this scale).
  Gram spread      the same relative error between each output and the
                   model's own mean Gram over the 8 outputs: how much the
                   style statistics move with the photo (0 = the same texture
                   whatever the photo). Needs no painting.
  content distance to the photo: |F(out) - F(photo)|_F / |F(photo)|_F of
                   relu2_2 and relu3_1, averaged over the 2 layers and the 8
                   images.
  warping error    flicker on the cockatoo clip: tools/eval_temporal.py's
                   warping error (Lai et al. 2018) with its defaults (40 frames,
                   320 px wide, `tin` with thumb 128), x 1e-3.
  border           a line along the frame borders: tools/border_line.py's
                   statistic (the one tests/test_models.py asserts on) on 4
                   Kodak photos cropped by 8 px at 384 px: the side whose
                   outermost row-mean step is largest against the rows inside,
                   in levels and x that interior; "line" where it is one.

and a contact sheet (tools/contact_sheet.py's layout) of the Kodak images x
models. Output: a Markdown table (stdout and OUT/style_quality.md),
OUT/style_quality.json, OUT/style_quality_sheet.jpg.

Teacher mode (--teacher T --model S): the student S's fidelity to the
teacher T on the 8 Kodak images at --long-side (default 512 here), both in
`full` mode, fp32: pixel PSNR, PSNR of the 8x8 block means, SSIM (scikit-
image, Gaussian window sigma 1.5, Wang et al. 2004 constants, on RGB), and
the relative Gram distance of the student's output to the teacher's (same
layers and scales as above); plus the teacher's own consistency: the PSNR
between its output for a photo and its output for the photo shifted right by
one pixel, shifted back (the overlapping columns compared), in pixels and in
8x8 block means (how far the teacher's own tones move on such a shift, the
block-mean column's counterpart as the first is the PSNR's). PSNRs average
the per-image MSE (RGB, peak 255). Output: OUT/teacher.md, OUT/teacher.json.

--phase-mean adds the teacher's phase mean: the mean of its outputs for the
photo shifted by every (dx, dy) in [0, S)^2 (S: its total stride, the grid its
strided convolutions lay on the photo), each shifted back, against its output
for the photo itself, in pixels and block means (the region every shift
covers). A twin that drew the same picture whatever a photo's alignment to
that grid could at best hope for about this; a twin with the teacher's stride
can do better by learning how the teacher's output depends on the alignment.
It also measures whether the student has learnt that dependence: its own
outputs for the same S*S shifts, and from both models' 8x8 block means, the
share of the teacher's alignment dependence (its block means at each shift
less their mean over the shifts) that the student's reproduces (1: all of
it; 0: none, as a twin that paints the same whatever the alignment), their
correlation, and the student's output against the teacher's phase mean (how
near a steady twin's best it is). It costs S*S - 2 more teacher runs and
S*S - 1 more student runs per image.

    tools/style_quality.py -m models/starry_night.safetensors -m models/mosaic.safetensors
    tools/style_quality.py --teacher models/starry_night.safetensors \\
        --model models/starry_night_live.safetensors

Run with /usr/bin/python3 (torch, OpenCV, scikit-image). Exit status 0, or 1
with a message on any error.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
SHARED = Path(os.environ.get("STYLIZE_SHARED", REPO.parent / "shared"))
BUILD = Path(os.environ.get("STYLIZE_BUILD", REPO / "build"))
sys.path.insert(0, str(TOOLS))
import border_line  # noqa: E402
PROG = "style_quality"

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1")
SCALES = (1, 2, 4)
CONTENT_LAYERS = ("relu2_2", "relu3_1")


class QualityError(Exception):
    pass


# ===========================================================================
# images and the engine

def kodak_images():
    paths = sorted((SHARED / "media" / "kodak").glob("kodim*.png"))
    if len(paths) != 8:
        raise QualityError("expected the 8 Kodak images in %s, found %d"
                           % (SHARED / "media" / "kodak", len(paths)))
    return paths


def load_photo(path, long_side):
    """RGB uint8 array, scaled (Lanczos) so that its longer side is long_side."""
    from PIL import Image
    with Image.open(path) as im:
        im = im.convert("RGB")
        s = long_side / max(im.size)
        if s != 1:
            im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))),
                           Image.LANCZOS)
        return np.asarray(im)


def read_png(path):
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


class Engine:
    """build/bin/stylize-image: libstylize as users run it."""

    def __init__(self, threads, precision):
        self.exe = BUILD / "bin" / "stylize-image"
        if not self.exe.is_file():
            raise QualityError("%s is not built (make)" % self.exe)
        self.threads, self.precision = threads, precision

    def info(self, model):
        r = subprocess.run([str(self.exe), "-m", str(model), "--info"], capture_output=True,
                           text=True)
        if r.returncode != 0:
            raise QualityError("model %s: %s" % (model, r.stderr.strip()))
        return json.loads(r.stdout)

    def stylize(self, model, img, work, mode="full"):
        """uint8 (H, W, 3) -> the model's output for it."""
        from PIL import Image
        src, out = work / "in.png", work / "out.png"
        Image.fromarray(img).save(src)
        r = subprocess.run([str(self.exe), "-m", str(model), "--mode", mode, "--threads",
                            str(self.threads), "--precision", self.precision, str(src), str(out)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise QualityError("stylize-image -m %s: %s" % (model, r.stderr.strip()))
        return read_png(out)


# ===========================================================================
# VGG19 statistics

class Vgg:
    def __init__(self, threads):
        import torch
        import train  # its gram() and downscale() define the training loss
        import vgg19_tfjs
        torch.set_num_threads(max(1, threads))
        self.torch, self.train = torch, train
        folder = SHARED / "vgg19"
        if not (folder / "model.json").is_file():
            raise QualityError("VGG19 weights not found in %s" % folder)
        self.net = vgg19_tfjs.VGG19Features(folder, upto="relu3_1")

    def _tensor(self, img):
        t = self.torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))[None])
        return t.float()

    def grams(self, img):
        """{(layer, scale): Gram (C, C) float64} of relu1_1/2_1/3_1 at scales 1, 2, 4."""
        out = {}
        with self.torch.no_grad():
            x = self._tensor(img)
            for s in SCALES:
                feats = self.net(self.train.downscale(x, s), STYLE_LAYERS)
                for name in STYLE_LAYERS:
                    out[(name, s)] = self.train.gram(feats[name])[0].double().numpy()
        return out

    def content(self, img):
        with self.torch.no_grad():
            feats = self.net(self._tensor(img), CONTENT_LAYERS)
        return {k: v[0].double().numpy() for k, v in feats.items()}


def gram_distance(g, ref):
    """Relative Frobenius error of Gram sets: ({key: |g-ref|/|ref|}, mean)."""
    d = {k: float(np.linalg.norm(g[k] - ref[k]) / np.linalg.norm(ref[k])) for k in ref}
    return d, float(np.mean(list(d.values())))


def squared_mean(per_key):
    """Mean of the squared relative errors: tools/train.py's normalized style
    loss term (|G-ref|^2/|ref|^2), averaged over the layers and scales."""
    return float(np.mean([v ** 2 for v in per_key.values()]))


def key_name(key):
    return "%s@%d" % key


# ===========================================================================
# style mode

def model_facts(path):
    import stylize_safetensors
    meta = stylize_safetensors.read(path)[1]
    try:
        training = json.loads(meta.get("training", "{}"))
    except ValueError:
        training = {}
    return meta, training


def find_painting(path, meta, training, given):
    """(painting path or None, style size or None) for a model. A painting
    named with --style-image is still scaled to the model's training style
    size where the model records one: at another size its Gram matrices
    differ (great_wave v2 measured 0.311 against the painting as it is, 0.260
    against it at its training size, 512)."""
    style = meta.get("style", path.stem)
    for key in (style, path.stem):
        if key in given:
            return Path(given[key]), training.get("style_size")
    name = training.get("style_image")
    if name and (SHARED / "styles" / name).is_file():
        return SHARED / "styles" / name, training.get("style_size")
    return None, None


def load_painting(path, size):
    if not path.is_file():
        raise QualityError("painting %s not found" % path)
    return load_photo(path, size) if size else read_png(path)


def warping_error(model, engine, work, args):
    """Flicker on the cockatoo clip through tools/eval_temporal.py."""
    import eval_temporal as et
    _, clip = et.prepare_clip("cockatoo", work, args.flicker_width, args.flicker_frames, 0)
    if not hasattr(warping_error, "flows"):
        warping_error.flows = et.FlowCache(et.frame_paths(clip), "dis")
    backend, exe = et.find_backend("auto")
    out = work / "flicker" / Path(model).stem
    out.mkdir(parents=True, exist_ok=True)
    e, _, _ = et.stylized_warping_error(backend, exe, Path(model), clip, warping_error.flows, out,
                                        "tin", 0.0, args.flicker_thumb, engine.threads, out)
    return e


def style_mode(args):
    engine = Engine(args.threads, args.precision)
    vgg = Vgg(args.threads)
    given = {}
    for item in args.style_image:
        k, eq, v = item.partition("=")
        if not eq or not k or not v:
            raise QualityError("--style-image %r: expected STYLE=PATH" % item)
        given[k] = v
    labels = {}
    for item in args.label:
        k, eq, v = item.partition("=")
        if not eq or not k:
            raise QualityError("--label %r: expected MODEL=TEXT" % item)
        labels[k] = v
    photos = [(p.stem, load_photo(p, args.long_side)) for p in kodak_images()]
    border_imgs = [np.asarray(border_line.border_photo(SHARED / "media" / "kodak" / (n + ".png")))
                   for n in border_line.BORDER_IMAGES]
    contents = [vgg.content(img) for _, img in photos]
    work = Path(args.output)
    work.mkdir(parents=True, exist_ok=True)
    results, sheet_cols = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for m in args.model:
            path = Path(m)
            if not path.is_file():
                raise QualityError("model %s not found" % path)
            engine.info(path)  # validates it with the engine's loader
            meta, training = model_facts(path)
            painting, size = find_painting(path, meta, training, given)
            if args.style_size:
                size = args.style_size
            target = vgg.grams(load_painting(painting, size)) if painting else None
            t0 = time.time()
            outs = [engine.stylize(path, img, tmp) for _, img in photos]
            grams = [vgg.grams(o) for o in outs]
            mean_gram = {k: np.mean([g[k] for g in grams], axis=0) for k in grams[0]}
            per_image = {}
            for (name, _), o, g, c in zip(photos, outs, grams, contents):
                f = vgg.content(o)
                cd = {k: float(np.linalg.norm(f[k] - c[k]) / np.linalg.norm(c[k]))
                      for k in CONTENT_LAYERS}
                row = {"content_distance": float(np.mean(list(cd.values()))),
                       "content_per_layer": cd,
                       "gram_spread": gram_distance(g, mean_gram)[1]}
                if target is not None:
                    per_key, row["style_distance"] = gram_distance(g, target)
                    row["style_loss"] = squared_mean(per_key)
                    row["style_per_layer"] = {key_name(k): v for k, v in per_key.items()}
                per_image[name] = row
            res = {"model": path.stem, "path": str(path), "style": meta.get("style", path.stem),
                   "label": labels.get(path.stem, labels.get(meta.get("style"), "")),
                   "license": meta.get("license", ""),
                   "painting": str(painting) if painting else None,
                   "style_size": size,
                   "content_distance": float(np.mean([r["content_distance"]
                                                      for r in per_image.values()])),
                   "gram_spread": float(np.mean([r["gram_spread"] for r in per_image.values()])),
                   "style_distance": None, "per_image": per_image}
            if target is not None:
                for key in ("style_distance", "style_loss"):
                    res[key] = float(np.mean([r[key] for r in per_image.values()]))
                res["style_per_layer"] = {
                    key_name(k): float(np.mean([r["style_per_layer"][key_name(k)]
                                                for r in per_image.values()])) for k in target}
            border_outs = [engine.stylize(path, b, tmp) for b in border_imgs]
            res["border"] = [{"side": side, "step": step, "interior": inner}
                             for side, step, inner in border_line.border_report(border_outs)]
            res["border_lines"] = [side for side, _, _ in border_line.border_lines(border_outs)]
            if not args.no_flicker:
                res["warping_error"] = warping_error(path, engine, work, args)
            results.append(res)
            sheet_cols.append((res["model"], outs))
            print("%s: %s (%.0f s)" % (PROG, path.stem, time.time() - t0), file=sys.stderr,
                  flush=True)
    from PIL import Image
    import contact_sheet
    rows = [(name, [Image.fromarray(img)] + [Image.fromarray(outs[i]) for _, outs in sheet_cols])
            for i, (name, img) in enumerate(photos)]
    sheet = contact_sheet.compose(["original"] + [n for n, _ in sheet_cols], rows, args.cell)
    sheet.save(work / "style_quality_sheet.jpg", quality=88)
    settings = {"images": [n for n, _ in photos], "long_side": args.long_side, "mode": "full",
                "precision": args.precision, "style_layers": list(STYLE_LAYERS),
                "scales": list(SCALES), "content_layers": list(CONTENT_LAYERS),
                "flicker": None if args.no_flicker else {
                    "clip": "cockatoo", "frames": args.flicker_frames,
                    "width": args.flicker_width, "mode": "tin", "thumb": args.flicker_thumb}}
    (work / "style_quality.json").write_text(json.dumps({"settings": settings, "models": results},
                                                        indent=1) + "\n")
    table = style_table(results, args)
    (work / "style_quality.md").write_text(table)
    print(table, end="")
    print("%s: wrote %s, %s, %s" % (PROG, work / "style_quality.md", work / "style_quality.json",
                                    work / "style_quality_sheet.jpg"), file=sys.stderr)


def border_cell(r):
    """'top 2.8 (1.0x)': the side with the largest outermost step relative
    to its interior; where border_line finds lines, '**line**' and the
    worst of those sides (a side can have a high ratio of few levels)."""
    def ratio(e):
        return e["step"] / max(e["interior"], 1e-9)
    sides = [e for e in r["border"] if e["side"] in r["border_lines"]] or r["border"]
    b = max(sides, key=ratio)
    return "%s%s %.1f (%.1f×)" % ("**line** " if r["border_lines"] else "", b["side"], b["step"], ratio(b))


def style_table(results, args):
    lines = ["| model | version | style distance | style loss | Gram spread | content distance | "
             "warping error (x 1e-3) | border (worst side) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in results:
        sd, sl = (("%.3f" % r["style_distance"], "%.3f" % r["style_loss"])
                  if r["style_distance"] is not None else ("—", "—"))
        we = "%.2f" % (r["warping_error"] * 1e3) if "warping_error" in r else "—"
        lines.append("| %s | %s | %s | %s | %.3f | %.2f | %s | %s |" % (
            r["model"], r["label"], sd, sl, r["gram_spread"], r["content_distance"], we,
            border_cell(r)))
    return "\n".join(lines) + "\n"


# ===========================================================================
# teacher mode

def psnr_of_mse(mse):
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def mse(a, b):
    return float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))


def block_means(img, n=8):
    h, w = img.shape[0] // n * n, img.shape[1] // n * n
    a = np.asarray(img[:h, :w], np.float64)
    return a.reshape(h // n, n, w // n, n, -1).mean(axis=(1, 3))


def ssim(a, b):
    from skimage.metrics import structural_similarity
    return float(structural_similarity(a, b, channel_axis=2, data_range=255,
                                       gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))


def shift_by(img, dx, dy):
    """The photo moved dx pixels right and dy down (its first column and row repeated)."""
    h, w = img.shape[:2]
    return np.pad(img, ((dy, 0), (dx, 0), (0, 0)), mode="edge")[:h, :w]


def aligned_outputs(stylize, img, stride, known):
    """{(dx, dy): stylize(img shifted by (dx, dy)), shifted back} for every (dx, dy) in
    [0, stride)^2, each on the region every shift covers: the photo less stride - 1 columns and
    rows at its right and bottom (float64). known: the outputs already at hand,
    {(dx, dy): stylize(shift_by(img, dx, dy))}; they are not drawn again."""
    h, w = img.shape[0] - (stride - 1), img.shape[1] - (stride - 1)
    outs = {}
    for dy in range(stride):
        for dx in range(stride):
            out = known[(dx, dy)] if (dx, dy) in known else stylize(shift_by(img, dx, dy))
            # output pixel (y + dy, x + dx) of the shifted photo is pixel (y, x) of the photo's
            outs[(dx, dy)] = np.asarray(out[dy:dy + h, dx:dx + w], np.float64)
    return outs


def phase_mean_mse(outs):
    """(pixel MSE, block-mean MSE) between the mean of aligned_outputs() and the output for the
    photo itself, outs[(0, 0)], on the region every shift covers."""
    mean, ref = sum(outs.values()) / len(outs), outs[(0, 0)]
    return mse(mean, ref), mse(block_means(mean), block_means(ref))


def alignment_tracking(teacher_outs, student_outs):
    """How much of the teacher's alignment dependence a student reproduces, in 8x8 block means.
    Both: aligned_outputs() of one photo. The dependence of a model is its block means at each
    alignment less their mean over the alignments; returns sums over the photo's blocks (add
    them up over photos): "miss" |teacher's - student's|^2, "teacher" |teacher's|^2, "student"
    |student's|^2, "cross" teacher's . student's, and "to_mean", the MSE between the student's
    output for the photo itself and the teacher's phase mean (a steady twin's best target)."""
    keys = sorted(teacher_outs)
    bt = np.array([block_means(teacher_outs[k]) for k in keys])
    bs = np.array([block_means(student_outs[k]) for k in keys])
    dt, ds = bt - bt.mean(axis=0), bs - bs.mean(axis=0)
    return {"miss": float(((dt - ds) ** 2).sum()), "teacher": float((dt ** 2).sum()),
            "student": float((ds ** 2).sum()), "cross": float((dt * ds).sum()),
            "to_mean": mse(bs[keys.index((0, 0))], bt.mean(axis=0))}


def tracking_summary(sums):
    """The summed alignment_tracking() dicts as ratios: "explained", 1 - miss / teacher (1: the
    student moves its tones with the alignment as the teacher does, 0: not at all or no better
    than a steady twin, < 0: it moves them otherwise); "correlation" of the two dependences;
    "energy", the student's dependence against the teacher's."""
    t, s = sums["teacher"], sums["student"]
    return {"explained": 1 - sums["miss"] / t if t else None,
            "correlation": sums["cross"] / np.sqrt(t * s) if t and s else None,
            "energy": s / t if t else None}


def teacher_mode(args):
    if len(args.model) != 1:
        raise QualityError("--teacher takes exactly one --model (the student)")
    teacher, student = Path(args.teacher), Path(args.model[0])
    for p in (teacher, student):
        if not p.is_file():
            raise QualityError("model %s not found" % p)
    engine = Engine(args.threads, args.precision)
    stride = int(engine.info(teacher)["total_stride"])
    engine.info(student)
    vgg = Vgg(args.threads)
    long_side = args.long_side or 512
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for path in kodak_images():
            img = load_photo(path, long_side)
            t = engine.stylize(teacher, img, tmp)
            s = engine.stylize(student, img, tmp)
            ts = engine.stylize(teacher, shift_by(img, 1, 0), tmp)
            per_key, gd = gram_distance(vgg.grams(s), vgg.grams(t))
            rows[path.stem] = {
                "mse": mse(s, t), "block_mse": mse(block_means(s), block_means(t)),
                "ssim": ssim(s, t), "gram_distance": gd, "gram_loss": squared_mean(per_key),
                # output column x of the shifted photo is column x-1 of the original's
                "teacher_shift_mse": mse(ts[:, 1:], t[:, :-1]),
                "teacher_shift_block_mse": mse(block_means(ts[:, 1:]), block_means(t[:, :-1]))}
            if args.phase_mean:
                t_outs = aligned_outputs(lambda x: engine.stylize(teacher, x, tmp), img, stride,
                                         {(0, 0): t, (1, 0): ts})
                pm, pbm = phase_mean_mse(t_outs)
                s_outs = aligned_outputs(lambda x: engine.stylize(student, x, tmp), img, stride,
                                         {(0, 0): s})
                track = alignment_tracking(t_outs, s_outs)
                rows[path.stem].update(teacher_phase_mean_mse=pm, teacher_phase_mean_block_mse=pbm,
                                       student_to_phase_mean_block_mse=track.pop("to_mean"),
                                       alignment=track)
            print("%s: %s done" % (PROG, path.stem), file=sys.stderr, flush=True)
    mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in next(iter(rows.values()))
            if k != "alignment"}
    res = {"teacher": str(teacher), "student": str(student), "long_side": long_side,
           "mode": "full", "precision": args.precision,
           "psnr": psnr_of_mse(mean["mse"]), "block_psnr": psnr_of_mse(mean["block_mse"]),
           "ssim": mean["ssim"], "gram_distance": mean["gram_distance"],
           "gram_loss": mean["gram_loss"],
           "teacher_consistency_psnr": psnr_of_mse(mean["teacher_shift_mse"]),
           "teacher_block_consistency_psnr": psnr_of_mse(mean["teacher_shift_block_mse"]),
           "per_image": rows}
    if args.phase_mean:
        res.update(teacher_stride=stride,
                   teacher_phase_mean_psnr=psnr_of_mse(mean["teacher_phase_mean_mse"]),
                   teacher_phase_mean_block_psnr=psnr_of_mse(mean["teacher_phase_mean_block_mse"]),
                   student_to_phase_mean_block_psnr=psnr_of_mse(
                       mean["student_to_phase_mean_block_mse"]),
                   alignment_tracking=tracking_summary(
                       {k: sum(r["alignment"][k] for r in rows.values())
                        for k in ("miss", "teacher", "student", "cross")}))
    work = Path(args.output)
    work.mkdir(parents=True, exist_ok=True)
    # identical outputs have an infinite PSNR: null in the JSON, "inf" in the table
    finite = {k: (None if isinstance(v, float) and np.isinf(v) else v) for k, v in res.items()}
    (work / "teacher.json").write_text(json.dumps(finite, indent=1) + "\n")
    table = ("| teacher | student | PSNR (dB) | 8×8 block-mean PSNR (dB) | SSIM | Gram distance | "
             "Gram loss | teacher shift consistency (dB) | its 8×8 block-mean (dB) |\n"
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
             "| %s | %s | %.2f | %.2f | %.3f | %.3f | %.3f | %.2f | %.2f |\n" % (
                 teacher.stem, student.stem, res["psnr"], res["block_psnr"], res["ssim"],
                 res["gram_distance"], res["gram_loss"], res["teacher_consistency_psnr"],
                 res["teacher_block_consistency_psnr"]))
    if args.phase_mean:
        table += ("\nthe teacher's phase mean (%d x %d shifts) against its output: %.2f dB, "
                  "block means %.2f dB\n" % (stride, stride, res["teacher_phase_mean_psnr"],
                                             res["teacher_phase_mean_block_psnr"]))
        tr = res["alignment_tracking"]
        fmt = lambda v: "-" if v is None else "%.3f" % v  # noqa: E731
        table += ("the student against the teacher's phase mean: block means %.2f dB; of the "
                  "teacher's alignment dependence (block means) the student reproduces %s "
                  "(correlation %s, its own dependence %s of the teacher's)\n" % (
                      res["student_to_phase_mean_block_psnr"], fmt(tr["explained"]),
                      fmt(tr["correlation"]), fmt(tr["energy"])))
    (work / "teacher.md").write_text(table)
    print(table, end="")


# ===========================================================================

def main(argv=None):
    ap = argparse.ArgumentParser(prog="style_quality.py", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("-m", "--model", action="append", default=[],
                    help="model .safetensors (repeatable; the student with --teacher)")
    ap.add_argument("--teacher", metavar="T.safetensors",
                    help="teacher mode: measure --model's fidelity to this model")
    ap.add_argument("--phase-mean", action="store_true",
                    help="with --teacher: also the teacher's phase mean (see below)")
    ap.add_argument("--style-image", action="append", default=[], metavar="STYLE=PATH",
                    help="the painting of a style (model file stem or metadata style name)")
    ap.add_argument("--style-size", type=int, default=0,
                    help="scale every painting to this longer side (default: the model's "
                         "training style_size, or the painting as it is)")
    ap.add_argument("--label", action="append", default=[], metavar="MODEL=TEXT",
                    help="a version label for a model in the table")
    ap.add_argument("--long-side", type=int, default=0,
                    help="longer side of the Kodak images (default: 384; 512 with --teacher)")
    ap.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="fp32",
                    help="libstylize precision (default: fp32)")
    ap.add_argument("--threads", type=int, default=2, help="threads (default: 2)")
    ap.add_argument("--no-flicker", action="store_true", help="skip the warping error")
    ap.add_argument("--flicker-frames", type=int, default=40)
    ap.add_argument("--flicker-width", type=int, default=320)
    ap.add_argument("--flicker-thumb", type=int, default=128)
    ap.add_argument("--cell", type=int, default=192, help="contact sheet column width")
    ap.add_argument("-o", "--output", default=str(BUILD / "style_quality"),
                    help="output folder (default: %(default)s)")
    args = ap.parse_args(argv)
    try:
        if not args.model:
            raise QualityError("no model: give -m MODEL")
        if args.phase_mean and not args.teacher:
            raise QualityError("--phase-mean is the teacher's: give --teacher T")
        if args.teacher:
            teacher_mode(args)
        else:
            args.long_side = args.long_side or 384
            style_mode(args)
        return 0
    except QualityError as e:
        print("%s: %s" % (PROG, e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
