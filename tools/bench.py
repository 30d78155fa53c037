#!/usr/bin/python3
"""Benchmark libstylize (build/bin/stylize-bench) and PyTorch on the same
frames, in the same run, and write a Markdown report (docs/BENCHMARK.md).

    make bench                       # = tools/bench.py --build build --output docs/BENCHMARK.md
    tools/bench.py [--quick] [--sizes 720p,1080p,4k] [--threads 1,2] [--no-torch] [--no-scale]

Measured, for the mosaic model (converted from ../shared/models/mosaic.pth)
unless -m is given:

* every backend x precision (bf16 only where the CPU has AVX512-BF16 / AMX)
  x mode (full, tin with thumb 512 and the default tile) x threads at 720p,
  1080p and 4K: ms/frame (best of several frames after a warm-up frame),
  frames/s, GFLOP/s (the network's multiply-adds on the whole frame, tiling
  overhead not counted) and % of the machine's peak (a large oneDNN matmul
  measured by stylize-bench --peak on the same threads), peak RSS;
* a half-width model (16/32/64 x 5 blocks, random weights) at 720p;
* 8K and 16384x16384 in tin mode: peak RSS beyond the two frame buffers and
  time per megapixel against 1080p;
* PyTorch 1.13 (the pytorch/examples network from stock modules, the same
  weights): fp32, and bf16 autocast with channels_last, on the same frame
  sizes and thread counts, and the speed-up of each libstylize row over
  PyTorch fp32.

The machine is shared: before every measurement the script waits (up to
--idle-wait seconds) until the CPUs are at least 90% idle over one second,
and records the load it saw; each row is the best of its frames.
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
sys.path.insert(0, str(TOOLS))

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080), "4k": (3840, 2160), "8k": (7680, 4320),
         "16k": (16384, 16384)}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def cpu_idle_fraction(interval=1.0):
    def read():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[3] + v[4], sum(v)
    i0, t0 = read()
    time.sleep(interval)
    i1, t1 = read()
    return (i1 - i0) / max(1, t1 - t0)


def wait_idle(max_wait, need=0.9):
    """Wait until the machine is idle; return the idle fraction last seen."""
    deadline = time.time() + max_wait
    while True:
        idle = cpu_idle_fraction()
        if idle >= need or time.time() >= deadline:
            return idle
        time.sleep(2)


def cpu_flags():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


class Bench:
    def __init__(self, args):
        self.args = args
        self.exe = Path(args.build) / "bin" / "stylize-bench"
        if not self.exe.exists():
            sys.exit("bench: %s is missing (make bench-tools)" % self.exe)
        self.rows = []
        self.skipped = []

    def run(self, model, size, **kw):
        w, h = SIZES.get(size, None) or tuple(map(int, size.split("x")))
        cmd = [str(self.exe), "-m", str(model), "--size", "%dx%d" % (w, h)]
        for k in ("backend", "precision", "mode", "threads", "frames", "warmup", "tile", "thumb"):
            if kw.get(k) is not None:
                cmd += ["--" + k, str(kw[k])]
        idle = wait_idle(self.args.idle_wait)
        t0 = time.time()
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode:
            log("bench: %s failed: %s" % (" ".join(cmd), p.stderr.strip()))
            return None
        r = json.loads(p.stdout)
        r.update(size=size, idle=idle, wall=time.time() - t0, model=kw.get("label", "mosaic"))
        log("  %-6s %-4s %-4s %-4s t%d: %9.1f ms/frame (first %.0f) %6.1f GFLOP/s rss %.0f MB  [idle %.0f%%]"
            % (size, r["backend"], r["precision"], r["mode"], r["threads"], r["ms_best"], r["first_ms"],
               r["gflops"], r["rss_peak_mb"], 100 * idle))
        return r

    def peak(self, threads, tries=3):
        """Best of a few runs (the machine is shared)."""
        best = {}
        for _ in range(tries):
            wait_idle(self.args.idle_wait)
            p = subprocess.run([str(self.exe), "--peak", "--threads", str(threads)], capture_output=True, text=True)
            if p.returncode:
                continue
            r = json.loads(p.stdout)
            if (r.get("peak_fp32_gflops") or 0) > (best.get("peak_fp32_gflops") or 0):
                best = r
        log("  peak %d threads: %s" % (threads, best))
        return best


def frames_for(est_ms, budget_ms, lo=1, hi=5):
    if est_ms is None:
        return 3
    return max(lo, min(hi, int(budget_ms // max(est_ms, 1))))


def torch_bench(model_path, sizes, threads_list, frames, budget_ms, bf16_sizes, idle_wait, bf16_native):
    """ms/frame of the pytorch/examples network (stock modules) on the same frames.
    Without native bf16 the autocast run is emulated and very slow: one frame,
    most threads only."""
    import numpy as np
    import torch
    import torch_reference as tr
    res = []
    base = tr.load_safetensors_model(model_path)
    net = tr.ExamplesTransformerNet.like(base).float().eval()
    for size in sizes:
        w, h = SIZES[size]
        rng = np.random.default_rng(0)
        x = torch.from_numpy(rng.integers(0, 256, (1, 3, h, w)).astype(np.float32))
        for threads in threads_list:
            torch.set_num_threads(threads)
            for kind in ("fp32", "bf16"):
                if kind == "bf16" and (size not in bf16_sizes or
                                       (not bf16_native and threads != max(threads_list))):
                    continue
                nframes = frames if kind == "fp32" or bf16_native else 1
                m = net if kind == "fp32" else net.to(memory_format=torch.channels_last)
                xi = x if kind == "fp32" else x.to(memory_format=torch.channels_last)
                idle = wait_idle(idle_wait)
                times = []
                with torch.no_grad():
                    for i in range(nframes + (1 if kind == "fp32" or bf16_native else 0)):
                        t0 = time.time()
                        if kind == "fp32":
                            m(xi)
                        else:
                            with torch.autocast("cpu", dtype=torch.bfloat16):
                                m(xi)
                        times.append((time.time() - t0) * 1e3)
                        if i >= 1 and sum(times[1:]) > budget_ms:
                            break
                timed = times[1:] if len(times) > 1 else times
                r = dict(size=size, threads=threads, kind=kind, ms_best=min(timed), first_ms=times[0],
                         frames=len(timed), idle=idle, warmup=len(times) > 1)
                log("  %-6s torch %s t%d: %9.1f ms/frame [idle %.0f%%]" % (size, kind, threads, r["ms_best"],
                                                                         100 * idle))
                res.append(r)
                net.to(memory_format=torch.contiguous_format)
    return res


def ensure_model(args, build):
    if args.model:
        return Path(args.model)
    shared = Path(os.environ.get("STYLIZE_SHARED", REPO.parent / "shared"))
    out = Path(build) / "bench" / "mosaic.safetensors"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        pth = shared / "models" / "mosaic.pth"
        if not pth.exists():
            sys.exit("bench: %s not found; pass -m MODEL" % pth)
        subprocess.run([sys.executable, str(TOOLS / "convert_model.py"), str(pth), "-o", str(out), "--force"],
                       check=True, capture_output=True)
    return out


def half_model(build):
    import torch_reference as tr
    out = Path(build) / "bench" / "half.safetensors"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tr.save_safetensors_model(tr.random_model((16, 32, 64), 5, 9, seed=7), out, {
            "format": "stylize", "format_version": "1", "architecture": "transformer_net",
            "style": "half-width (random weights)"})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=str(REPO / "build"))
    ap.add_argument("--output", "-o", help="write the Markdown report here (default: stdout)")
    ap.add_argument("-m", "--model", help="model (.safetensors); default: converted mosaic.pth")
    ap.add_argument("--sizes", default="720p,1080p,4k")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--backends", default="ref,dnnl")
    ap.add_argument("--budget", type=float, default=8.0, help="seconds of timed frames per row [8]")
    ap.add_argument("--max-frame", type=float, default=150.0,
                    help="skip a row whose single frame would take longer than this many seconds [150]")
    ap.add_argument("--idle-wait", type=float, default=60.0,
                    help="wait up to this many seconds for an idle machine before each row [60]")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-scale", action="store_true", help="skip the 8K / 16K tin rows")
    ap.add_argument("--quick", action="store_true", help="720p only, 1 frame per row, no scale rows")
    ap.add_argument("--json", help="also dump every measurement to this file")
    ap.add_argument("--from-json", help="only render the report from a --json dump of an earlier run")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.budget, args.no_scale = "720p", 0.0, True
    if args.from_json:
        d = json.loads(Path(args.from_json).read_text())
        b = argparse.Namespace(rows=d["rows"], skipped=d.get("skipped", []))
        report = render(args, b, {int(k): v for k, v in d["peaks"].items()}, d["half"], d["scale"], d["torch"],
                        datetime.datetime.fromisoformat(d.get("started", datetime.datetime.now().isoformat())),
                        d.get("load0", ["?"] * 3), d.get("has_bf16", "avx512_bf16" in cpu_flags()),
                        Path(d.get("model", "mosaic.safetensors")), d.get("cmd"))
        if args.output:
            Path(args.output).write_text(report)
        else:
            print(report)
        return
    sizes = args.sizes.split(",")
    threads_list = [int(t) for t in args.threads.split(",")]
    b = Bench(args)
    model = ensure_model(args, args.build)
    started = datetime.datetime.now()
    load0 = open("/proc/loadavg").read().split()[:3]
    flags = cpu_flags()
    has_bf16 = "avx512_bf16" in flags or "amx_bf16" in flags

    log("bench: peak throughput")
    peaks = {t: b.peak(t) for t in threads_list}

    precisions = {"ref": ["fp32"], "dnnl": ["fp32"] + (["bf16"] if has_bf16 else [])}
    est = {}  # (backend, precision, mode, threads) -> ms per megapixel
    for size in sizes:
        w, h = SIZES[size]
        mp = w * h / 1e6
        for backend in args.backends.split(","):
            for prec in precisions.get(backend, ["fp32"]):
                for mode in ("full", "tin"):
                    for threads in threads_list:
                        key = (backend, prec, mode, threads)
                        guess = est.get(key, None)
                        guess_ms = guess * mp if guess else None
                        if backend == "ref" and mode == "full" and size in ("4k", "8k", "16k"):
                            b.skipped.append("%s ref full, %d thread%s: skipped (about %.0f s/frame extrapolated "
                                             "from the smaller sizes; full mode memory grows with the frame)"
                                             % (size, threads, "s" if threads > 1 else "", (guess_ms or 0) / 1e3))
                            continue
                        if guess_ms and guess_ms > args.max_frame * 1e3:
                            b.skipped.append("%s %s %s %s %d threads: skipped (about %.0f s/frame extrapolated)"
                                             % (size, backend, prec, mode, threads, guess_ms / 1e3))
                            continue
                        frames = frames_for(guess_ms, args.budget * 1e3)
                        # ref creates nothing on its first frame: no warm-up needed for its long frames
                        warmup = 0 if backend == "ref" and guess_ms and guess_ms > 5000 else 1
                        r = b.run(model, size, backend=backend, precision=prec, mode=mode, threads=threads,
                                  frames=frames, warmup=warmup)
                        if r:
                            b.rows.append(r)
                            est[key] = r["ms_best"] / mp

    log("bench: half-width model")
    half = half_model(args.build)
    half_rows = []
    for prec in precisions["dnnl"]:
        for mode in ("full", "tin"):
            for threads in threads_list:
                r = b.run(half, "720p", backend="dnnl", precision=prec, mode=mode, threads=threads,
                          frames=frames_for(None, 0), label="half")
                if r:
                    half_rows.append(r)

    scale_rows = []
    if not args.no_scale:
        log("bench: scaling (tin)")
        t = max(threads_list)
        prec = "bf16" if has_bf16 else "fp32"
        for size in ("1080p", "8k", "16k"):
            # a large frame is minutes long; creating the primitives on its first tile is noise
            r = b.run(model, size, backend="dnnl", precision=prec, mode="tin", threads=t, frames=1,
                      warmup=1 if size == "1080p" else 0)
            if r:
                scale_rows.append(r)

    torch_rows = []
    if not args.no_torch:
        log("bench: PyTorch")
        torch_sizes = [s for s in sizes if s in ("720p", "1080p", "4k")]
        torch_rows = torch_bench(model, torch_sizes, threads_list, 3 if args.budget else 1, args.budget * 1e3,
                                 torch_sizes if has_bf16 else torch_sizes[:1], args.idle_wait, has_bf16)

    report = render(args, b, peaks, half_rows, scale_rows, torch_rows, started, load0, has_bf16, model)
    if args.json:  # first, so that a failure below still leaves the data
        Path(args.json).write_text(json.dumps(dict(
            rows=b.rows, half=half_rows, scale=scale_rows, torch=torch_rows, peaks=peaks, skipped=b.skipped,
            started=started.isoformat(), load0=load0, has_bf16=has_bf16, model=str(model),
            cmd=command_line(args)), indent=1))
    if args.output:
        Path(args.output).write_text(report)
        log("bench: wrote %s" % args.output)
    else:
        print(report)


def command_line(args):
    if args.output and Path(args.output).resolve() == (REPO / "docs" / "BENCHMARK.md").resolve() and \
            not any(a in sys.argv for a in ("--quick", "--sizes", "--threads", "-m", "--model", "--backends")):
        return "make bench"
    return "tools/bench.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def beyond_frames(r):
    """Peak RSS less the input and output frame buffers (the program, model and working memory)."""
    return r["rss_peak_mb"] - 2 * r["frame_mb"]


def render(args, b, peaks, half_rows, scale_rows, torch_rows, started, load0, has_bf16, model, cmd=None):
    import torch
    cmd = cmd or command_line(args)
    torch_ms = {(r["size"], r["threads"], r["kind"]): r["ms_best"] for r in torch_rows}
    L = []
    L.append("# libstylize benchmark\n")
    L.append("(The `_live` twins against their teachers: [BENCHMARK_LIVE.md](BENCHMARK_LIVE.md), "
             "`make bench-live`; see its first lines for when and on which CPU it was measured.)\n")
    L.append("Generated by `%s` (tools/bench.py, build/bin/stylize-bench) on %s.\n"
             % (cmd, started.strftime("%Y-%m-%d %H:%M")))
    L.append("* CPU: %s, %d online CPUs, bf16 (AVX512-BF16 / AMX): %s; load average at start %s"
             % (cpu_name(), os.cpu_count(), "yes" if has_bf16 else "no", " ".join(load0)))
    for t, p in sorted(peaks.items()):
        if p.get("peak_fp32_gflops"):
            L.append("* measured peak, %d thread%s (oneDNN matmul, ISA %s): fp32 %.0f GFLOP/s%s"
                     % (t, "s" if t > 1 else "", p.get("isa", "?"), p["peak_fp32_gflops"],
                        ", bf16 %.0f GFLOP/s" % p["peak_bf16_gflops"] if p.get("peak_bf16_gflops") else
                        ", bf16: no fast kernel on this CPU"))
    L.append("* model: %s; PyTorch %s (pytorch/examples TransformerNet from stock modules, same weights)"
             % (model.name, torch.__version__))
    L.append("* ms/frame: best of the timed frames after one warm-up frame (which creates the oneDNN "
             "primitives); tin: thumb 512, tile 768, overlap auto; GFLOP/s: the network's "
             "2 x multiply-adds on the whole frame (%.1f GFLOP at 720p for this model) per second; "
             "GFLOP/s and %% of peak count the classic architecture's work, so a backend that needs fewer "
             "operations (sub-pixel deconvolutions: 4/9 of theirs) can pass 100%%; "
             "RSS: peak resident memory of the process (frames included)"
             % (b.rows[0]["gflop"] * (1280 * 720) / (b.rows[0]["width"] * b.rows[0]["height"]) if b.rows else 0))
    L.append("")
    L.append("| size | backend | precision | mode | threads | ms/frame | frames/s | GFLOP/s | % of peak | "
             "peak RSS MB | × PyTorch fp32 |")
    L.append("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in b.rows:
        peak = peaks.get(r["threads"], {})
        pk = peak.get("peak_bf16_gflops" if r["precision"] == "bf16" else "peak_fp32_gflops")
        tm = torch_ms.get((r["size"], r["threads"], "fp32"))
        L.append("| %s | %s | %s | %s | %d | %.1f | %.2f | %.1f | %s | %.0f | %s |"
                 % (r["size"], r["backend"], r["precision"], r["mode"], r["threads"], r["ms_best"], r["fps"],
                    r["gflops"], "%.0f%%" % (100 * r["gflops"] / pk) if pk else "–", r["rss_peak_mb"],
                    "%.1f×" % (tm / r["ms_best"]) if tm else "–"))
    for r in torch_rows:
        tm = torch_ms.get((r["size"], r["threads"], "fp32"))
        gf = b.rows[0]["gflop"] * SIZES[r["size"]][0] * SIZES[r["size"]][1] / (b.rows[0]["width"] * b.rows[0]["height"]) \
            if b.rows else 0
        peak = peaks.get(r["threads"], {})
        pk = peak.get("peak_bf16_gflops" if r["kind"] == "bf16" else "peak_fp32_gflops")
        L.append("| %s | PyTorch | %s%s | full | %d | %.1f | %.2f | %.1f | %s | – | %.1f× |"
                 % (r["size"], r["kind"], " autocast, channels_last" if r["kind"] == "bf16" else "", r["threads"],
                    r["ms_best"], 1e3 / r["ms_best"], gf / (r["ms_best"] / 1e3),
                    "%.0f%%" % (100 * gf / (r["ms_best"] / 1e3) / pk) if pk else "–",
                    tm / r["ms_best"] if tm else 0))
    if b.skipped:
        L.append("")
    for s in b.skipped:
        L.append("* " + s)
    if half_rows:
        L.append("\n## Half-width model (16/32/64, 5 residual blocks), 720p\n")
        L.append("| precision | mode | threads | ms/frame | frames/s | GFLOP/s |")
        L.append("|---|---|---:|---:|---:|---:|")
        for r in half_rows:
            L.append("| %s | %s | %d | %.1f | %.2f | %.1f |" % (r["precision"], r["mode"], r["threads"], r["ms_best"],
                                                              r["fps"], r["gflops"]))
    if scale_rows:
        L.append("\n## Large frames (tin, dnnl, %d threads)\n" % scale_rows[0]["threads"])
        L.append("| size | ms/frame | ms per megapixel | vs 1080p | frame buffers MB (in + out) | peak RSS MB | "
                 "RSS beyond the frames MB |")
        L.append("|---|---:|---:|---:|---:|---:|---:|")
        # the 1080p reference: the faster of the scaling row and the matrix row (same configuration)
        same = [r for r in b.rows + scale_rows if r["size"] == "1080p" and r["backend"] == "dnnl" and
                r["mode"] == "tin" and r["threads"] == scale_rows[0]["threads"] and
                r["precision"] == scale_rows[0]["precision"]]
        ref_mp = min(r["ms_best"] for r in same) / (1920 * 1080 / 1e6) if same else None
        for r in scale_rows:
            mp = r["width"] * r["height"] / 1e6
            per = r["ms_best"] / mp
            ref_mp = ref_mp or per
            L.append("| %dx%d | %.0f | %.1f | %+.0f%% | %.0f | %.0f | %.0f |"
                     % (r["width"], r["height"], r["ms_best"], per, 100 * (per / ref_mp - 1), 2 * r["frame_mb"],
                        r["rss_peak_mb"], beyond_frames(r)))
    L.append("\n## Targets (mosaic, tin, thumb 512, 2 threads)\n")
    L.append("| target | measured | met |")
    L.append("|---|---|---|")

    def find(rows, **kw):
        for r in rows:
            if all(r.get(k) == v for k, v in kw.items()):
                return r
        return None

    def line(name, r, ok, text):
        L.append("| %s | %s | %s |" % (name, text if r else "not measurable here", ("yes" if ok else "**no**")
                                        if r else "–"))

    t = max(r["threads"] for r in b.rows) if b.rows else 2
    for prec in ("bf16", "fp32"):
        r = find(b.rows, size="720p", backend="dnnl", precision=prec, mode="tin", threads=t)
        if prec == "bf16":
            tm = torch_ms.get(("720p", t, "fp32"))
            line("720p bf16 <= 120 ms/frame", r, r and r["ms_best"] <= 120, r and "%.0f ms" % r["ms_best"])
            line("720p bf16 >= 15x PyTorch fp32 (same run)", r and tm, r and tm and tm / r["ms_best"] >= 15,
                 r and tm and "%.1fx" % (tm / r["ms_best"]))
            r2 = find(b.rows, size="1080p", backend="dnnl", precision=prec, mode="tin", threads=t)
            line("1080p bf16 <= 280 ms/frame", r2, r2 and r2["ms_best"] <= 280, r2 and "%.0f ms" % r2["ms_best"])
        else:
            line("720p fp32 <= 900 ms/frame", r, r and r["ms_best"] <= 900, r and "%.0f ms" % r["ms_best"])
    hr = sorted([r for r in half_rows if r["mode"] == "tin" and r["threads"] == t], key=lambda r: r["ms_best"])
    line("half-width 720p <= 40 ms/frame", hr[0] if hr else None, hr and hr[0]["ms_best"] <= 40,
         hr and "%.0f ms (%s)" % (hr[0]["ms_best"], hr[0]["precision"]))
    if scale_rows:
        same = [r for r in b.rows + scale_rows if r["size"] == "1080p" and r["backend"] == "dnnl" and
                r["mode"] == "tin" and r["threads"] == scale_rows[0]["threads"] and
                r["precision"] == scale_rows[0]["precision"]]
        base = min(r["ms_best"] for r in same) / (1920 * 1080)
        for r in scale_rows:
            if r["size"] == "1080p":
                continue
            per = r["ms_best"] / (r["width"] * r["height"])
            line("%dx%d: RSS beyond the frames <= 600 MB" % (r["width"], r["height"]), r,
                 beyond_frames(r) <= 600, "%.0f MB" % beyond_frames(r))
            line("%dx%d: time per megapixel within 15%% of 1080p" % (r["width"], r["height"]), r,
                 per <= 1.15 * base, "%+.0f%%" % (100 * (per / base - 1)))
    if not has_bf16:
        L.append("\nThis CPU has neither AVX512-BF16 nor AMX-BF16: oneDNN has no bf16 kernels for it, so "
                 "precision=auto runs fp32 and the bf16 targets cannot be measured here. The PyTorch bf16 "
                 "autocast row is emulated bf16 (one frame).")
    L.append("\nIdle CPU fraction seen before each row: min %.0f%%."
             % (100 * min([r["idle"] for r in b.rows + half_rows + scale_rows + torch_rows] or [1])))
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    main()
