"""The training device and its mixed precision, for tools/train.py and
tools/distill.py alike."""
import torch


def cpu_flags_and_vendor():
    """(set of /proc/cpuinfo flags, vendor_id) of the first CPU; empty on
    a system without /proc/cpuinfo."""
    flags, vendor = set(), ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id") and not vendor:
                    vendor = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return flags, vendor


def cpu_has_native_bf16():
    """AVX512-BF16 or AMX-BF16 (Linux /proc/cpuinfo flags): where bf16
    autocast runs in hardware rather than emulated."""
    return bool(cpu_flags_and_vendor()[0] & {"avx512_bf16", "amx_bf16"})


def cpu_bf16_beats_fp32():
    """Where bf16 autocast trains the classic network faster than fp32 on
    a CPU (train.py, 2 threads, batch 4 at 256 px, docs/TRAINING.md): AMX,
    or AVX512-BF16 on an AMD CPU (Zen 4: 3.9 s/it against 6.5 fp32), not
    AVX512-BF16 on an Intel CPU without AMX (2.6 against 1.7). The engine's
    precision=auto draws the same line."""
    flags, vendor = cpu_flags_and_vendor()
    return "amx_bf16" in flags or ("avx512_bf16" in flags and vendor == "AuthenticAMD")


def pick_device(name):
    """torch.device for --device NAME ('auto': CUDA when present). Raises
    ValueError when CUDA is asked for and missing."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device %s: CUDA is not available" % name)
    return torch.device(name)


def pick_amp(name, device, bf16_pays_on_cpu=False):
    """'off', 'bf16' or 'fp16' for --amp NAME on `device`. 'auto': bf16 (or
    fp16 where bf16 is missing) on CUDA; on a CPU bf16 only where the caller
    measured it faster (bf16_pays_on_cpu) and the CPU has native bf16, never
    on AVX2 alone, where it is emulated and 10-13x slower. Measured on an
    AVX512-BF16 Xeon without AMX (docs/TRAINING.md): distill.py 3.4-3.7 s/it
    in bf16 against 3.9-4.0 fp32, train.py 2.6 against 1.7. Raises
    ValueError for fp16 on a CPU."""
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if bf16_pays_on_cpu and cpu_has_native_bf16() else "off"
    if name == "fp16" and device.type != "cuda":
        raise ValueError("--amp fp16 needs CUDA (use bf16 on a CPU)")
    return name


def autocast_factory(amp, device):
    """A zero-argument callable returning the autocast context for `amp`."""
    if amp == "off":
        return lambda: torch.autocast(device.type, enabled=False)
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return lambda: torch.autocast(device.type, dtype=dtype)
