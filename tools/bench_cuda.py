#!/usr/bin/env python3
"""Benchmark the cuda backend against PyTorch on the same GPU, in one run.

For each frame size (1080p, 4K, 8K, 16384x16384 by default):
  * libstylize, backend=cuda (build/bin/stylize-bench, one process per
    configuration): ms/frame (median of --frames after --warmup), frames/s,
    peak GPU memory of the process (nvidia-smi, polled), and the share of the
    GPU's dense fp16 tensor-core peak that the network's FLOPs represent;
  * PyTorch, the same weights, the stock pytorch/examples modules
    (ReflectionPad2d, InstanceNorm2d), fp16, channels_last, cudnn.benchmark,
    whole frame: ms/frame (CUDA events), torch.cuda.max_memory_allocated;
  * the ratio PyTorch ms / libstylize ms.
Writes a Markdown table (docs/BENCHMARK_CUDA.md by default) naming the GPU.

    make lib tools bench-tools            # HAVE_CUDA=yes (./configure found nvcc + cuDNN)
    python3 tools/bench_cuda.py --build build --output docs/BENCHMARK_CUDA.md

Needs: an NVIDIA GPU with driver and cuDNN 9 (libcudnn.so.9 on the loader
path), nvidia-smi, and for the PyTorch column a CUDA build of torch (the
column says n/a without one). The libstylize timing is stylize_process end
to end: it includes the host-side pixel conversion and the uploads and
downloads of every tile (see docs/CUDA.md).

Written without a GPU at hand: it has not been run yet.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

SIZES = {"1080p": (1920, 1080), "4k": (3840, 2160), "8k": (7680, 4320), "16k": (16384, 16384)}

# Dense (no sparsity) fp16 tensor-core peak, TFLOP/s, by a substring of the GPU name.
TC_PEAK_FP16 = [
    ("H200", 989.4), ("H100 SXM", 989.4), ("H100 80GB HBM3", 989.4), ("H100 NVL", 835.0),
    ("H100 PCIe", 756.0), ("H100", 756.0), ("GH200", 989.4), ("B200", 2250.0),
    ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0), ("A10", 125.0), ("RTX 4090", 165.2),
]


def gpu_name():
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, check=True).stdout
        return out.strip().splitlines()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "unknown GPU"


def tc_peak(name):
    for key, tflops in TC_PEAK_FP16:
        if key.lower() in name.lower():
            return tflops
    return None


class GpuMemPoller:
    """Peak used GPU memory (MiB) of one process, polled with nvidia-smi."""

    def __init__(self, pid, period=0.05):
        self.pid, self.period, self.peak = pid, period, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                                      "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5).stdout
                for line in out.splitlines():
                    parts = [p.strip() for p in line.split(",")]
                    if len(parts) == 2 and parts[0] == str(self.pid) and parts[1].isdigit():
                        self.peak = max(self.peak, int(parts[1]))
            except (OSError, subprocess.TimeoutExpired):
                pass
            time.sleep(self.period)

    def finish(self):
        self.stop.set()
        self.thread.join()
        return self.peak


def run_stylize(bench, model, size, args, mode, tile, precision):
    w, h = size
    cmd = [str(bench), "-m", str(model), "--backend", "cuda", "--precision", precision, "--mode", mode,
           "--size", "%dx%d" % (w, h), "--frames", str(args.frames), "--warmup", str(args.warmup),
           "--tile", str(tile), "--threads", str(args.threads)]
    env = dict(os.environ)
    if args.find:
        env["STYLIZE_CUDA_FIND"] = "1"
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    poller = GpuMemPoller(proc.pid)
    out, err = proc.communicate()
    peak = poller.finish()
    if proc.returncode != 0:
        return {"error": (err.strip().splitlines() or ["exit %d" % proc.returncode])[-1], "cmd": " ".join(cmd)}
    res = json.loads(out.strip().splitlines()[-1])
    res["gpu_mem_mb"] = peak
    res["cmd"] = " ".join(cmd)
    return res


def run_torch(model_path, size, args):
    try:
        import torch
    except ImportError:
        return {"error": "no torch"}
    if not torch.cuda.is_available():
        return {"error": "torch without CUDA"}
    import torch_reference as tr
    w, h = size
    torch.backends.cudnn.benchmark = True
    net = tr.ExamplesTransformerNet.like(tr.load_safetensors_model(model_path))
    net = net.to(device="cuda", dtype=torch.float16, memory_format=torch.channels_last).eval()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    try:
        with torch.inference_mode():
            x = (torch.rand(1, 3, h, w, device="cuda") * 255).to(torch.float16)
            x = x.contiguous(memory_format=torch.channels_last)
            for _ in range(args.warmup):
                net(x)
            torch.cuda.synchronize()
            times = []
            for _ in range(args.frames):
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                net(x)
                b.record()
                b.synchronize()
                times.append(a.elapsed_time(b))
    except torch.cuda.OutOfMemoryError:
        del net
        torch.cuda.empty_cache()
        return {"error": "out of GPU memory"}
    times.sort()
    res = {"ms_median": times[len(times) // 2], "ms_best": times[0],
           "gpu_mem_mb": torch.cuda.max_memory_allocated() / 2 ** 20}
    del net, x
    torch.cuda.empty_cache()
    return res


def fmt(v, spec):
    return spec % v if isinstance(v, (int, float)) else "n/a"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=str(REPO / "build"))
    ap.add_argument("--model", help="a .safetensors model (default: models/mosaic.safetensors if present, "
                    "else a random full-width 32/64/128 x 5 blocks, 9x9 model)")
    ap.add_argument("--sizes", default="1080p,4k,8k,16k")
    ap.add_argument("--precision", default="fp16", help="libstylize precision (fp16, bf16, fp32)")
    ap.add_argument("--mode", default="tin")
    ap.add_argument("--tile", type=int, default=0,
                    help="tile for the sizes up to 8K (0 = whole frame; tin statistics still come from "
                         "the thumbnail)")
    ap.add_argument("--tile-16k", type=int, default=2048, help="tile at 16384x16384 (GPU memory bound)")
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for the host-side pixel passes")
    ap.add_argument("--find", action="store_true", help="STYLIZE_CUDA_FIND=1: benchmark cuDNN's algorithms")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--output", default=str(REPO / "docs" / "BENCHMARK_CUDA.md"))
    args = ap.parse_args()

    bench = Path(args.build) / "bin" / "stylize-bench"
    if not bench.exists():
        sys.exit("%s missing: make bench-tools (with HAVE_CUDA=yes)" % bench)
    model = Path(args.model) if args.model else REPO / "models" / "mosaic.safetensors"
    tmp = None
    if not model.exists():
        import torch_reference as tr
        tmp = tempfile.TemporaryDirectory()
        model = Path(tmp.name) / "random-full.safetensors"
        tr.save_safetensors_model(tr.random_model((32, 64, 128), 5, 9, seed=1), model,
                                  {"format": "stylize", "format_version": "1",
                                   "architecture": "transformer_net", "style": "random-full"})
    name = gpu_name()
    peak = tc_peak(name)
    rows = []
    for key in args.sizes.split(","):
        size = SIZES[key.strip().lower()]
        tile = args.tile_16k if size[0] * size[1] > 8192 * 8192 else args.tile
        ours = run_stylize(bench, model, size, args, args.mode, tile, args.precision)
        theirs = {"error": "skipped"} if args.no_torch else run_torch(model, size, args)
        row = {"size": key, "w": size[0], "h": size[1], "tile": tile, "ours": ours, "torch": theirs}
        if "ms_median" in ours:
            tflops = ours["gflop"] / ours["ms_median"]  # GFLOP / ms = TFLOP/s
            row["tflops"] = tflops
            row["peak_pct"] = 100 * tflops / peak if peak else None
            if "ms_median" in theirs:
                row["ratio"] = theirs["ms_median"] / ours["ms_median"]
        rows.append(row)
        print(json.dumps(row), flush=True)

    lines = [
        "# CUDA backend benchmark",
        "",
        "GPU: **%s** (dense fp16 tensor-core peak used for the %% column: %s TFLOP/s). "
        "Model: `%s`. libstylize: backend cuda, precision %s, mode %s; "
        "`stylize_process` end to end (host pixel conversion, uploads and downloads included), "
        "median of %d frames after %d warm-up frames. PyTorch %s: the same weights, stock modules, "
        "fp16, channels_last, cudnn.benchmark, whole frame, GPU time of the forward pass (CUDA events)."
        % (name, fmt(peak, "%.0f"), model.name, args.precision, args.mode, args.frames, args.warmup,
           _torch_version()),
        "",
        "| frame | tile | ms/frame | frames/s | GPU memory (MiB) | TFLOP/s | % of TC peak "
        "| PyTorch ms/frame | PyTorch GPU memory (MiB) | PyTorch / libstylize |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        o, t = r["ours"], r["torch"]
        lines.append("| %s %dx%d | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["size"], r["w"], r["h"], r["tile"] or "whole frame",
            fmt(o.get("ms_median"), "%.2f") if "error" not in o else "failed: " + o["error"],
            fmt(o.get("fps"), "%.1f"), fmt(o.get("gpu_mem_mb"), "%d"), fmt(r.get("tflops"), "%.1f"),
            fmt(r.get("peak_pct"), "%.1f"),
            fmt(t.get("ms_median"), "%.2f") if "error" not in t else t["error"],
            fmt(t.get("gpu_mem_mb"), "%.0f"), fmt(r.get("ratio"), "%.2fx")))
    lines += ["", "Commands: `%s`." % "`, `".join(r["ours"].get("cmd", "") for r in rows), ""]
    Path(args.output).write_text("\n".join(lines))
    print("wrote", args.output)
    if tmp:
        tmp.cleanup()


def _torch_version():
    try:
        import torch
        return torch.__version__
    except ImportError:
        return "(not installed)"


if __name__ == "__main__":
    main()
