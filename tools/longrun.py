#!/usr/bin/python3
"""Long-run stability: many frames through the real ffmpeg with the stylize
filter, the resident memory (VmRSS) of the ffmpeg process sampled every N
frames from /proc, written to a CSV and plotted.

    /usr/bin/python3 tools/longrun.py --frames 10000 --tiny          # random widths 8/16/16 model
    /usr/bin/python3 tools/longrun.py --frames 200 --model mosaic.safetensors --csv full.csv

The source is lavfi testsrc2 at --size (its content moves every frame),
stylized in tin mode (tiles, thumbnail statistics, plus --filter-opts, by
default smoothing so the statistics path is exercised), discarded with
`-f null`. ffmpeg's -progress output says which frame it is at; whenever it
passes a multiple of --every, the process's VmRSS is read. Growth after
warm-up is the RSS at the end minus the RSS at the end of warm-up (the first
--warmup frames, default 10%), and the slope of a least-squares line over
the samples after warm-up.
"""
import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def tiny_model(path, widths=(8, 16, 16), res_blocks=2):
    """A random TransformerNet of realistic weight scale (tools/torch_reference.py).
    Widths of at least 8: oneDNN has no JIT kernel for 4-channel convolutions
    and its fallback is about 100x slower."""
    from torch_reference import random_model, save_safetensors_model
    save_safetensors_model(random_model(widths, res_blocks, 9, seed=7), path, {"style": "longrun-tiny"})


def run(args, model, csv_path):
    w, h = args.size.split("x")
    graph = f"stylize=model={model}:threads={args.threads}"
    if args.filter_opts:
        graph += ":" + args.filter_opts
    cmd = [args.ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-stats_period", "0.2",
           "-progress", "pipe:1", "-f", "lavfi", "-i", f"testsrc2=s={w}x{h}:r=25",
           "-vf", graph, "-frames:v", str(args.frames), "-f", "null", "-"]
    print(" ".join(cmd), flush=True)
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    samples, next_mark = [], 0
    # Written as it goes: an interrupted run still leaves its curve.
    out = open(csv_path, "w", newline="")
    wr = csv.writer(out)
    wr.writerow(["frame", "rss_kb", "seconds"])
    for line in proc.stdout:
        if not line.startswith("frame="):
            continue
        frame = int(line.split("=")[1])
        if frame >= next_mark:
            try:
                kb = rss_kb(proc.pid)
            except FileNotFoundError:
                break
            samples.append((frame, kb, round(time.time() - t0, 2)))
            wr.writerow(samples[-1])
            out.flush()
            if len(samples) % 10 == 1:
                print(f"frame {frame:6d}  RSS {kb / 1024:8.1f} MiB  {time.time() - t0:7.0f} s", flush=True)
            next_mark = (frame // args.every + 1) * args.every
    rc = proc.wait()
    out.close()
    if rc != 0:
        sys.exit(f"ffmpeg exited {rc}")
    return samples, time.time() - t0


def summarize(samples, warmup, frames):
    # The sample at the last frame is read while ffmpeg tears down (frees
    # its buffers): not part of the steady state.
    after = [(f, kb) for f, kb, _ in samples if warmup <= f < frames]
    if len(after) < 2:
        return {}
    base, end = after[0][1], after[-1][1]
    n = len(after)
    mx = sum(f for f, _ in after) / n
    my = sum(kb for _, kb in after) / n
    sxx = sum((f - mx) ** 2 for f, _ in after)
    slope = sum((f - mx) * (kb - my) for f, kb in after) / sxx if sxx else 0.0
    return {"warmup_frames": warmup, "rss_at_warmup_mib": base / 1024, "rss_end_mib": end / 1024,
            "growth_after_warmup_mib": (end - base) / 1024,
            "max_after_warmup_mib": max(kb for _, kb in after) / 1024,
            "min_after_warmup_mib": min(kb for _, kb in after) / 1024,
            "slope_kib_per_1000_frames": slope * 1000}


def plot(runs, png, title):
    """One panel per run (their frame counts differ), warm-up shaded."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 3.8), squeeze=False)
    for ax, (label, samples, warmup) in zip(axes[0], runs):
        mib = [s[1] / 1024 for s in samples]
        ax.plot([s[0] for s in samples], mib, lw=1.2, marker=".", ms=3)
        ax.axvspan(0, warmup, color="gray", alpha=0.15, label="warm-up")
        ax.set_ylim(0, max(mib) * 1.2)
        ax.set_xlabel("frame")
        ax.set_ylabel("ffmpeg VmRSS (MiB)")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=100)


def read_csv(path):
    with open(path) as f:
        return [(int(r["frame"]), int(r["rss_kb"]), float(r["seconds"])) for r in csv.DictReader(f)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ffmpeg", default=str(REPO / "build" / "bin" / "ffmpeg"))
    ap.add_argument("--model", help="model file (default: --tiny)")
    ap.add_argument("--tiny", action="store_true", help="a random model with widths 8/16/16, 9x9 outer kernels and 2 residual blocks")
    ap.add_argument("--frames", type=int, default=10000)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--every", type=int, default=100, help="sample RSS every N frames")
    ap.add_argument("--warmup", type=int, help="frames of warm-up (default 10%% of --frames)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--filter-opts", default="smooth=0.5", help="extra stylize options, a:b=c form")
    ap.add_argument("--csv", default="build/longrun/longrun.csv")
    ap.add_argument("--png", help="plot (default: next to the CSV)")
    ap.add_argument("--label", help="legend label")
    ap.add_argument("--also", action="append", default=[], metavar="CSV:LABEL",
                    help="another run's CSV to draw in the same plot (no new run)")
    ap.add_argument("--plot-only", action="store_true", help="plot --csv and --also without running")
    args = ap.parse_args()
    warmup = args.warmup if args.warmup is not None else args.frames // 10
    csv_path = Path(args.csv)
    csv_path.parent.mkdir(parents=True, exist_ok=True)

    if not args.plot_only:
        with tempfile.TemporaryDirectory() as tmp:
            model = args.model
            if not model:
                model = os.path.join(tmp, "tiny.safetensors")
                tiny_model(model)
            samples, secs = run(args, model, csv_path)
        print(f"{args.frames} frames of {args.size} in {secs:.0f} s ({args.frames / secs:.2f} fps)")
    samples = read_csv(csv_path)
    for k, v in summarize(samples, warmup, args.frames).items():
        print(f"  {k}: {v:.3f}" if isinstance(v, float) else f"  {k}: {v}")
    runs = [(args.label or csv_path.stem, samples, warmup)]
    for spec in args.also:
        path, _, label = spec.partition(":")
        other = read_csv(path)
        runs.append((label or Path(path).stem, other, other[-1][0] // 10))
    png = args.png or str(csv_path.with_suffix(".png"))
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    plot(runs, png, "stylize filter: resident memory of ffmpeg (VmRSS), sampled every N frames")
    print(f"wrote {csv_path} and {png}")


if __name__ == "__main__":
    main()
