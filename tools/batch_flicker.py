#!/usr/bin/python3
"""Flicker of two-pass (bidirectional) smoothing against the causal moving average.

    /usr/bin/python3 tools/batch_flicker.py -m build/bench/mosaic.safetensors \
        --clip cockatoo --width 320 --frames 30 --windows 2,4,8 --smooths 0.5,0.9

Uses tools/eval_temporal.py (the warping error of Lai et al. 2018 with OpenCV
flow, same frames and thumbnail scaling) on configurations it does not know:
the filter's pass 1 (stats_mode=write) over the clip, then pass 2
(stats_mode=read:stats_window=W) for each window. Prints a Markdown table.
"""
import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eval_temporal as et  # noqa: E402


def ffmpeg_run(ffmpeg, clip_dir, out, vf):
    cmd = [str(ffmpeg), "-nostdin", "-v", "error", "-y", "-framerate", "20", "-start_number", "1",
           "-i", str(clip_dir / "%04d.png"), "-vf", vf]
    cmd += ["-f", "null", "-"] if out is None else ["-pix_fmt", "rgb24", "-start_number", "1", str(out / "%04d.png")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise et.EvalError("%s failed:\n%s" % (" ".join(cmd), r.stderr.strip()))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--clip", default="cockatoo")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--thumb", type=int, default=128)
    ap.add_argument("--scene-cut", type=float, default=0.5)
    ap.add_argument("--smooths", default="0.5,0.9", help="causal EMA settings to compare")
    ap.add_argument("--windows", default="2,4,8", help="two-pass window radii (frames each side)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default=str(et.BUILD / "batch_flicker"))
    a = ap.parse_args(argv)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    ffmpeg = et.BUILD / "bin" / "ffmpeg"
    model = et.ensure_model(a.model, work)
    name, clip_dir = et.prepare_clip(a.clip, work, a.width, a.frames, a.start)
    frames = et.frame_paths(clip_dir)
    flows = et.FlowCache(frames, "dis")
    rows = [("input frames", et.warping_error(frames, flows)[0])]
    base = "stylize=model=%s:thumb=%d:threads=%d:scene_cut=%g" % (
        str(model).replace(":", "\\:"), a.thumb, a.threads, a.scene_cut)
    stats = work / "pass1.stats"
    t0 = time.time()
    ffmpeg_run(ffmpeg, clip_dir, None, base + ":stats_mode=write:stats_file=%s" % stats)
    t_pass1 = time.time() - t0
    configs = [("one pass, per-frame statistics", "")]
    configs += [("one pass, causal EMA smooth=%s" % s, ":smooth=%s" % s) for s in a.smooths.split(",") if s]
    configs += [("two-pass, centred window ±%s" % w, ":stats_mode=read:stats_file=%s:stats_window=%s" % (stats, w))
                for w in a.windows.split(",") if w]
    for label, opts in configs:
        out = work / "out"
        if out.exists():
            shutil.rmtree(out)
        out.mkdir()
        ffmpeg_run(ffmpeg, clip_dir, out, base + opts)
        e = et.warping_error(et.frame_paths(out), flows)[0]
        rows.append((label, e))
        print("  %s: E = %.3e" % (label, e), file=sys.stderr, flush=True)
    print("Warping error (Lai et al. 2018), %s, %d frames from %d, %d px wide, thumb %d, model %s, "
          "scene_cut %g; lower = less flicker. Pass 1 took %.1f s.\n"
          % (name, a.frames, a.start, a.width, a.thumb, model.stem, a.scene_cut, t_pass1))
    print("| configuration | E (x 1e-3) | vs per-frame |")
    print("| --- | ---: | ---: |")
    ref = rows[1][1]
    for label, e in rows:
        print("| %s | %.3f | %s |" % (label, e * 1e3, "" if label == "input frames" else "%.2f" % (e / ref)))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except et.EvalError as e:
        print("batch_flicker.py: %s" % e, file=sys.stderr)
        sys.exit(1)
