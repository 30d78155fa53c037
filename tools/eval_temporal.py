#!/usr/bin/python3
"""Flicker of stylized video: the warping error of Lai et al. (ECCV 2018).

For every frame t >= 1 of a clip, the stylized frame t-1 is warped to frame t
with the optical flow computed on the ORIGINAL frames (t -> t-1, OpenCV DIS
or Farneback), and

    E_t = mean over non-occluded pixels and the 3 channels of (O_t - warp(O_{t-1}))^2

with frames as RGB in [0, 1]; E is the mean of E_t over the clip. Occluded
pixels are found as in Lai et al. (after Ruder et al. 2016): the
forward-backward flow check |w_b + w_f(x + w_b)|^2 > 0.01 (|w_b|^2 +
|w_f(x + w_b)|^2) + 0.5, plus motion boundaries |grad w_b|^2 > 0.01 |w_b|^2 +
0.002. (Lai et al.'s script divides the squared error summed over the
channels by the pixel count, i.e. reports 3x this mean.) The same error of
the input frames themselves is printed as a floor: what flow errors and
lighting changes alone cost.

Clips are stylized through libstylize with its state, as users run it:

  * ffmpeg (preferred): build/bin/ffmpeg -i clip/%04d.png -vf
    stylize=model=M:mode=tin:smooth=S:thumb=T out/%04d.png, one process for
    the whole clip, so smoothing sees consecutive frames;
  * stylize-image (when ffmpeg is not built): one run per frame; smoothing
    is reproduced exactly outside the library: every frame's own thumbnail
    statistics (--stats-out of a smooth=0 run) go through the library's EMA
    and scene-cut rule (core/src/smoothing.c, in float32) and are passed back
    with --stats-in.

Configurations: tin (per-frame thumbnail statistics), tin with smooth 0.5
and 0.9, full (exact per-frame instance norm). Frames are downscaled (default
320 px wide) to keep it cheap, and the thumbnail with them (default 128 =
cockatoo's 1280 px with the library's 512), so that tin differs from full as
it does at full resolution.

Clips: 'cockatoo' (../shared/media/cockatoo.mp4), 'pan' (a camera pan, 2 px per
frame, with a slow zoom across a Kodak image, made here with cv2, sub-pixel), or any video
file. Prints a Markdown table.

    tools/eval_temporal.py -m models/mosaic.safetensors                # full run
    tools/eval_temporal.py -m mosaic.safetensors --frames 6 --clips pan  # quick check
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
SHARED = Path(os.environ.get("STYLIZE_SHARED", REPO.parent / "shared"))
BUILD = Path(os.environ.get("STYLIZE_BUILD", REPO / "build"))
PROG = "eval_temporal"

DEFAULT_CONFIGS = "tin,tin:smooth=0.5,tin:smooth=0.9,full"


class EvalError(Exception):
    pass


# ===========================================================================
# clips

def _even(n):
    return max(2, int(n) // 2 * 2)


def extract_video(path, out_dir, width, frames, start=0):
    """`frames` consecutive frames from `start`, resized to `width` (even
    height), as out_dir/0001.png ... Returns the frame count."""
    import cv2
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise EvalError("%s: cannot open the video" % path)
    n = 0
    i = 0
    try:
        while n < frames:
            ok, f = cap.read()
            if not ok:
                break
            if i >= start:
                h, w = f.shape[:2]
                size = (_even(width), _even(h * width / w))
                f = cv2.resize(f, size, interpolation=cv2.INTER_AREA if width < w else cv2.INTER_CUBIC)
                n += 1
                cv2.imwrite(str(out_dir / ("%04d.png" % n)), f)
            i += 1
    finally:
        cap.release()
    if n < 2:
        raise EvalError("%s: fewer than 2 frames decoded" % path)
    return n


def make_pan(image, out_dir, width, frames, aspect=9 / 16, speed=2.0, zoom=0.003):
    """A synthetic camera move over a still: a window of 60% of the image
    width pans right by `speed` output pixels per frame (and down by a
    quarter of that) while zooming in by `zoom` per frame, rendered with
    sub-pixel bilinear warps (the motion does not depend on the frame count)."""
    import cv2
    img = cv2.imread(str(image), cv2.IMREAD_COLOR)
    if img is None:
        raise EvalError("%s: cannot read" % image)
    h, w = img.shape[:2]
    ow, oh = _even(width), _even(width * aspect)
    cx, cy = 0.35 * w, 0.45 * h
    for t in range(frames):
        win_w = 0.6 * w / (1.0 + zoom) ** t
        s = ow / win_w  # output pixels per source pixel
        x, y = cx + t * speed / s, cy + t * 0.25 * speed / s
        m = np.array([[s, 0, ow / 2 - s * x], [0, s, oh / 2 - s * y]], dtype=np.float64)
        f = cv2.warpAffine(img, m, (ow, oh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        cv2.imwrite(str(out_dir / ("%04d.png" % (t + 1))), f)
    return frames


def prepare_clip(spec, work, width, frames, start):
    """clip name or video path -> (name, folder of 0001.png ...)."""
    if spec == "cockatoo":
        name, src = "cockatoo", SHARED / "media" / "cockatoo.mp4"
    elif spec == "pan":
        name, src = "pan", SHARED / "media" / "kodak" / "kodim23.png"
    else:
        name, src = Path(spec).stem, Path(spec)
    if not src.is_file():
        raise EvalError("clip %s: %s not found" % (spec, src))
    d = work / "clips" / ("%s_w%d_n%d_s%d_v2" % (name, width, frames, start))
    if not (d / "done").is_file():
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        n = make_pan(src, d, width, frames) if spec == "pan" else \
            extract_video(src, d, width, frames, start)
        (d / "done").write_text("%d\n" % n)
    return name, d


def frame_paths(d):
    return sorted(p for p in d.glob("[0-9][0-9][0-9][0-9].png"))


# ===========================================================================
# stylizing

def parse_config(text):
    """'tin', 'tin:smooth=0.5', 'full' -> (label, mode, smooth)."""
    parts = text.split(":")
    mode, smooth = parts[0], 0.0
    if mode not in ("tin", "full", "patch"):
        raise EvalError("config %r: mode must be tin, full or patch" % text)
    for p in parts[1:]:
        k, _, v = p.partition("=")
        if k != "smooth":
            raise EvalError("config %r: only smooth=S is understood" % text)
        smooth = float(v)
        if not 0 <= smooth < 1:
            raise EvalError("config %r: smooth must be in 0..1 (1 excluded)" % text)
    label = mode if smooth == 0 else "%s smooth=%g" % (mode, smooth)
    return label, mode, smooth


def stylize_ffmpeg(ffmpeg, model, clip_dir, out_dir, mode, smooth, thumb, threads):
    vf = "stylize=model=%s:mode=%s:thumb=%d:smooth=%g:threads=%d" % (
        str(model).replace(":", "\\:"), mode, thumb, smooth, threads)
    cmd = [str(ffmpeg), "-nostdin", "-v", "error", "-y", "-framerate", "20", "-start_number", "1",
           "-i", str(clip_dir / "%04d.png"), "-vf", vf, "-pix_fmt", "rgb24",
           "-start_number", "1", str(out_dir / "%04d.png")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise EvalError("%s failed:\n%s" % (" ".join(cmd), r.stderr.strip()))


def _stats_distance(first_c, state, cur):
    """core/src/smoothing.c sty_stats_distance on the first layer."""
    c = first_c
    mean_s, var_s, mean_c = state[:c], state[c:2 * c], cur[:c]
    d = np.abs(mean_c.astype(np.float64) - mean_s) / np.sqrt(var_s.astype(np.float64) + 1e-5)
    return float(d.sum() / c)


def smooth_stats(raw, smooth, scene_cut, first_c):
    """The library's EMA of TIN statistics (float32, like smoothing.c)."""
    out, state = [], None
    s = np.float32(smooth)
    for cur in raw:
        if state is None or smooth <= 0 or (scene_cut > 0 and
                                            _stats_distance(first_c, state, cur) > scene_cut):
            state = cur.copy()
        else:
            state = (s * state + (np.float32(1) - s) * cur).astype(np.float32)
        out.append(state.copy())
    return out


def stylize_image_tool(exe, model, clip_dir, out_dir, mode, smooth, thumb, threads, work,
                       scene_cut=0.5):
    frames = frame_paths(clip_dir)
    base = ["-m", str(model), "--threads", str(threads)]

    def run(args):
        r = subprocess.run([str(exe)] + base + [str(a) for a in args], capture_output=True,
                           text=True)
        if r.returncode != 0:
            raise EvalError("stylize-image %s failed: %s" % (" ".join(map(str, args)),
                                                             r.stderr.strip()))

    if mode != "tin":
        for f in frames:
            run(["--mode", mode, f, out_dir / f.name])
        return
    # per-frame thumbnail statistics, from (cached) smooth=0 runs
    raw_dir = work / "raw_stats"
    raw_dir.mkdir(parents=True, exist_ok=True)
    raw = []
    for f in frames:
        st = raw_dir / (f.stem + ".f32")
        if smooth == 0:
            run(["--mode", "tin", "--thumb", thumb, "--stats-out", st, f, out_dir / f.name])
        elif not st.is_file():
            run(["--mode", "tin", "--thumb", thumb, "--stats-out", st, f, raw_dir / f.name])
        raw.append(np.fromfile(st, dtype="<f4"))
    if smooth == 0:
        return
    info = subprocess.run([str(exe), "-m", str(model), "--info"], capture_output=True, text=True)
    import json
    first_c = int(json.loads(info.stdout)["width1"])
    for f, st in zip(frames, smooth_stats(raw, smooth, scene_cut, first_c)):
        p = work / "ema.f32"
        st.astype("<f4").tofile(p)
        run(["--mode", "tin", "--thumb", thumb, "--stats-in", p, f, out_dir / f.name])


# ===========================================================================
# the warping error

def read_rgb01(path):
    import cv2
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise EvalError("cannot read %s" % path)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def compute_flow(a, b, method):
    """Flow from frame a to frame b (H, W, 2): a(x) ~ b(x + flow(x))."""
    import cv2
    ga = cv2.cvtColor((a * 255).round().astype(np.uint8), cv2.COLOR_RGB2GRAY)
    gb = cv2.cvtColor((b * 255).round().astype(np.uint8), cv2.COLOR_RGB2GRAY)
    if method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return dis.calc(ga, gb, None)
    return cv2.calcOpticalFlowFarneback(ga, gb, None, pyr_scale=0.5, levels=5, winsize=15,
                                        iterations=3, poly_n=5, poly_sigma=1.2, flags=0)


def warp(img, flow):
    """Sample img at x + flow(x) (bilinear, border replicate)."""
    import cv2
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img, gx + flow[..., 0], gy + flow[..., 1], interpolation=cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def non_occluded(flow_b, flow_f):
    """Mask (H, W) of pixels of frame t that are visible in t-1: flow_b is
    t -> t-1, flow_f is t-1 -> t (Lai et al.'s detect_occlusion)."""
    h, w = flow_b.shape[:2]
    f_w = warp(flow_f, flow_b)  # forward flow at the matched point
    fb = f_w + flow_b
    fb_mag = (fb ** 2).sum(-1)
    mag = (f_w ** 2).sum(-1) + (flow_b ** 2).sum(-1)
    occ = fb_mag > 0.01 * mag + 0.5
    du_y, du_x = np.gradient(flow_b[..., 0])
    dv_y, dv_x = np.gradient(flow_b[..., 1])
    motion_boundary = (du_x ** 2 + dv_x ** 2 + du_y ** 2 + dv_y ** 2) > \
        0.01 * (flow_b ** 2).sum(-1) + 0.002
    # pixels whose match falls outside frame t-1 are occluded too
    gx, gy = np.meshgrid(np.arange(w), np.arange(h))
    x1, y1 = gx + flow_b[..., 0], gy + flow_b[..., 1]
    outside = (x1 < 0) | (x1 > w - 1) | (y1 < 0) | (y1 > h - 1)
    return ~(occ | motion_boundary | outside)


class FlowCache:
    """Flows and masks of a clip's original frames, computed once."""

    def __init__(self, frames, method):
        self.items = []
        orig = [read_rgb01(p) for p in frames]
        for t in range(1, len(orig)):
            fb = compute_flow(orig[t], orig[t - 1], method)
            ff = compute_flow(orig[t - 1], orig[t], method)
            self.items.append((fb, non_occluded(fb, ff)))
        self.orig = orig


def warping_error(frames, flows):
    """(E, per-frame list, fraction of non-occluded pixels)."""
    imgs = [read_rgb01(p) for p in frames]
    if len(imgs) != len(flows.items) + 1:
        raise EvalError("%d stylized frames for %d originals" % (len(imgs), len(flows.items) + 1))
    errs, cover = [], []
    for t in range(1, len(imgs)):
        fb, mask = flows.items[t - 1]
        d = (imgs[t] - warp(imgs[t - 1], fb)) ** 2
        n = mask.sum()
        errs.append(float(d[mask].mean()) if n else float("nan"))
        cover.append(n / mask.size)
    return float(np.nanmean(errs)), errs, float(np.mean(cover))


def stylized_warping_error(backend, exe, model, clip_dir, flows, out, mode, smooth, thumb,
                           threads, work):
    """Stylize a clip's frames into `out` (backend 'ffmpeg' or 'stylize-image',
    as find_backend returns) and return warping_error() of the result."""
    if backend == "ffmpeg":
        stylize_ffmpeg(exe, model, clip_dir, out, mode, smooth, thumb, threads)
    else:
        stylize_image_tool(exe, model, clip_dir, out, mode, smooth, thumb, threads, work)
    return warping_error(frame_paths(out), flows)


# ===========================================================================
# main

def find_backend(name):
    ffmpeg, tool = BUILD / "bin" / "ffmpeg", BUILD / "bin" / "stylize-image"
    if name in ("auto", "ffmpeg") and ffmpeg.is_file():
        r = subprocess.run([str(ffmpeg), "-hide_banner", "-h", "filter=stylize"],
                           capture_output=True, text=True)
        if r.returncode == 0 and "smooth" in r.stdout:
            return "ffmpeg", ffmpeg
        if name == "ffmpeg":
            raise EvalError("%s has no stylize filter" % ffmpeg)
    if name == "ffmpeg":
        raise EvalError("%s is not built (make)" % ffmpeg)
    if not tool.is_file():
        raise EvalError("neither %s nor %s is built (make)" % (ffmpeg, tool))
    return "stylize-image", tool


def ensure_model(path, work):
    """A .pth/.onnx model is converted (tools/convert_model.py) into work/."""
    path = Path(path)
    if not path.is_file():
        raise EvalError("model %s not found" % path)
    if path.suffix == ".safetensors":
        return path
    out = work / "models" / (path.stem + ".safetensors")
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        r = subprocess.run([sys.executable, str(TOOLS / "convert_model.py"), str(path), "-o",
                            str(out), "--force"], capture_output=True, text=True)
        if r.returncode != 0:
            raise EvalError("converting %s: %s" % (path, r.stderr.strip()))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="eval_temporal.py", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("-m", "--model", action="append", required=True,
                    help="model (.safetensors, or .pth/.onnx converted on the fly); repeatable")
    ap.add_argument("--clips", default="cockatoo,pan",
                    help="comma-separated: cockatoo, pan, or video files (default: %(default)s)")
    ap.add_argument("--configs", default=DEFAULT_CONFIGS,
                    help="comma-separated MODE[:smooth=S] (default: %(default)s)")
    ap.add_argument("--width", type=int, default=320, help="frame width (default: %(default)s)")
    ap.add_argument("--frames", type=int, default=40, help="frames per clip (default: %(default)s)")
    ap.add_argument("--start", type=int, default=0, help="first video frame (default: 0)")
    ap.add_argument("--thumb", type=int, default=128, help="TIN thumbnail longer side "
                    "(default: %(default)s, i.e. 512 scaled like the frames)")
    ap.add_argument("--flow", choices=("dis", "farneback"), default="dis",
                    help="optical flow of OpenCV (default: %(default)s)")
    ap.add_argument("--backend", choices=("auto", "ffmpeg", "stylize-image"), default="auto",
                    help="how to run libstylize (default: auto = ffmpeg if built)")
    ap.add_argument("--threads", type=int, default=2, help="library threads (default: 2)")
    ap.add_argument("--work", default=str(BUILD / "eval_temporal"),
                    help="folder for frames and outputs (default: %(default)s)")
    ap.add_argument("--keep", action="store_true", help="keep the stylized frames")
    a = ap.parse_args(argv)
    try:
        import cv2  # noqa: F401
    except ImportError:
        print("%s: needs OpenCV (python3-opencv); run with /usr/bin/python3" % PROG,
              file=sys.stderr)
        return 1
    try:
        work = Path(a.work)
        work.mkdir(parents=True, exist_ok=True)
        backend, exe = find_backend(a.backend)
        configs = [parse_config(c.strip()) for c in a.configs.split(",") if c.strip()]
        models = [ensure_model(m, work) for m in a.model]
        rows = []
        t0 = time.time()
        for spec in [c.strip() for c in a.clips.split(",") if c.strip()]:
            name, clip_dir = prepare_clip(spec, work, a.width, a.frames, a.start)
            frames = frame_paths(clip_dir)
            flows = FlowCache(frames, a.flow)
            e_in, _, cover = warping_error(frames, flows)
            rows.append((name, "-", "input frames", e_in, None, cover))
            for model in models:
                base = None
                mwork = work / "runs" / ("%s_%s" % (clip_dir.name, model.stem))
                if mwork.exists():
                    shutil.rmtree(mwork)
                for label, mode, smooth in configs:
                    out = mwork / label.replace(" ", "_").replace("=", "")
                    out.mkdir(parents=True)
                    e, _, cover = stylized_warping_error(backend, exe, model, clip_dir, flows,
                                                         out, mode, smooth, a.thumb, a.threads,
                                                         mwork)
                    if base is None:
                        base = e
                    rows.append((name, model.stem, label, e, e / base if base else None, cover))
                    print("  %s / %s / %s: E = %.3e" % (name, model.stem, label, e),
                          file=sys.stderr, flush=True)
                if not a.keep:
                    shutil.rmtree(mwork)
        print("Warping error (Lai et al. 2018), %d frames of %d px width, thumb %d, %s flow, "
              "libstylize via %s; lower = less flicker; 'vs first' is relative to the first "
              "configuration (%s).\n" % (a.frames, a.width, a.thumb, a.flow, backend,
                                         configs[0][0]))
        print("| clip | model | configuration | E (x 1e-3) | vs first | non-occluded |")
        print("| --- | --- | --- | ---: | ---: | ---: |")
        for name, model, label, e, rel, cover in rows:
            print("| %s | %s | %s | %.3f | %s | %.0f %% |" % (
                name, model, label, e * 1e3, "%.2f" % rel if rel is not None else "", 100 * cover))
        print("\n(%.0f s)" % (time.time() - t0), file=sys.stderr)
        return 0
    except EvalError as e:
        print("%s: %s" % (PROG, e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
