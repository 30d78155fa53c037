"""Hostile input through the real ffmpeg ($STYLIZE_BUILD/bin/ffmpeg): sizes
from 1x1 to 16385x8 and 8x16385, frame size and pixel format changing
mid-stream, every pixel format FFmpeg can read, truncated and corrupt video
files, model files deleted, replaced or turned into a FIFO between runtime
switches, absurd option values and a max_memory too small for the frame.

Each case either works (the output has the right size and frame count) or
fails with a message naming the problem; no case may crash ffmpeg (a signal)
or hang (every run has a timeout). Models are tiny random TransformerNets
(widths 4/8/8, one residual block), so the whole module takes well under a
minute. docs/RELIABILITY.md lists what is covered.
"""
import os
import select
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import BUILD, REPO

FFMPEG = Path(os.environ.get("STYLIZE_FFMPEG", BUILD / "bin" / "ffmpeg"))
TIMEOUT = 60

if os.environ.get("STYLIZE_NO_FFMPEG"):
    pytest.skip("STYLIZE_NO_FFMPEG is set", allow_module_level=True)

sys.path.insert(0, str(REPO / "tests" / "fuzz"))
from make_corpus import encode, model  # noqa: E402


def ffmpeg(*args, input=None, timeout=TIMEOUT):
    cmd = [str(FFMPEG), *(["-nostdin"] if input is None else []), "-hide_banner",
           "-loglevel", "error", *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, input=input, timeout=timeout)
    proc.err = proc.stderr.decode(errors="replace")
    # A negative status is a signal: a crash (SIGSEGV, SIGABRT) is never acceptable.
    assert proc.returncode >= 0, f"ffmpeg died of signal {-proc.returncode}: {' '.join(cmd)}\n{proc.err[-2000:]}"
    return proc


def ok(proc):
    assert proc.returncode == 0, proc.err[-3000:]
    return proc.stdout


def fails(proc, *needles):
    assert proc.returncode != 0, "ffmpeg should have failed"
    for n in needles:
        assert n in proc.err, f"{n!r} not in:\n{proc.err[-3000:]}"
    return proc.err


def sty(model_path, **opts):
    opts.setdefault("threads", 1)
    return "stylize=" + ":".join([f"model={model_path}"] + [f"{k}={v}" for k, v in opts.items()])


RAW_OUT = ("-f", "rawvideo", "-pix_fmt", "rgb24", "-")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    if not FFMPEG.exists():
        pytest.fail(f"{FFMPEG} is missing: run `make ffmpeg` (or set STYLIZE_NO_FFMPEG=1)")
    d = tmp_path_factory.mktemp("hostile")
    a, b = d / "a.safetensors", d / "b.safetensors"
    a.write_bytes(encode(model((4, 8, 8), 1, 3, 3), {"style": "a"}))
    b.write_bytes(encode(model((2, 4, 4), 1, 5, 3, seed=5), {"style": "b"}))
    return {"a": a, "b": b, "dir": d}


@pytest.fixture(scope="module")
def noise(tiny):
    """Random bytes: raw frames of any size and format."""
    p = tiny["dir"] / "noise.bin"
    p.write_bytes(np.random.default_rng(1).integers(0, 256, 1 << 20, np.uint8).tobytes())
    return p


# ---------------------------------------------------------------------------
# frame sizes

@pytest.mark.parametrize("w,h", [(1, 1), (2, 2), (3, 5), (5, 3), (17, 13), (33, 1), (1, 33),
                                 (16385, 8), (8, 16385)])
def test_frame_sizes(tiny, noise, w, h):
    frames = 1 if max(w, h) > 1000 else 2
    out = ok(ffmpeg("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-i", noise,
                    "-frames:v", frames, "-vf", sty(tiny["a"]), *RAW_OUT))
    assert len(out) == frames * w * h * 3


def test_huge_frame_refused_cleanly(tiny):
    """Beyond what FFmpeg itself accepts: its own error, no crash."""
    proc = ffmpeg("-f", "lavfi", "-i", "color=s=70000x70000:d=0.1", "-vf", sty(tiny["a"]), "-f", "null", "-")
    assert proc.returncode != 0 and proc.err


# ---------------------------------------------------------------------------
# size and pixel-format changes mid-stream

@pytest.fixture(scope="module")
def changing_stream(tiny):
    """A concat list of three PNG-coded clips (each frame carries its size
    and format): 32x24 rgb24, 48x36 gray, 20x30 rgba64be."""
    parts = []
    for i, (w, h, fmt) in enumerate([(32, 24, "rgb24"), (48, 36, "gray"), (20, 30, "rgba64be")]):
        p = tiny["dir"] / f"part{i}.nut"
        ok(ffmpeg("-y", "-f", "lavfi", "-i", f"testsrc2=s={w}x{h}:r=10:d=0.3,format={fmt}",
                  "-c:v", "png", p))
        parts.append((p, w, h))
    lst = tiny["dir"] / "list.txt"
    lst.write_text("".join(f"file '{p}'\n" for p, _, _ in parts))
    return lst, parts


def test_size_and_format_change(tiny, changing_stream):
    """By default ffmpeg rebuilds the graph at each change (a new filter
    instance, which loads the model again) and scales to the first size for
    its one output stream: all 9 frames come out."""
    lst, parts = changing_stream
    out = ok(ffmpeg("-f", "concat", "-safe", "0", "-i", lst, "-vf", sty(tiny["a"]),
                    "-fps_mode", "passthrough", *RAW_OUT))
    w, h = parts[0][1:]
    assert len(out) == 9 * w * h * 3


def test_format_change_without_reinit(tiny, changing_stream):
    """-reinit_filter 0: frames reach the filter in whatever format the
    decoder gives; a format libstylize does not take (gray, after rgb24)
    stops ffmpeg with a message naming it, after the frames before it."""
    lst, parts = changing_stream
    proc = ffmpeg("-reinit_filter", "0", "-f", "concat", "-safe", "0", "-i", lst, "-vf", sty(tiny["a"]),
                  "-fps_mode", "passthrough", *RAW_OUT)
    fails(proc, "pixel format gray is not supported")
    w, h = parts[0][1:]
    assert len(proc.stdout) == 3 * w * h * 3


def test_size_change_without_reinit(tiny, tmp_path):
    """-reinit_filter 0 and three sizes in one rgb24 stream: the same filter
    instance stylizes each frame at its own size."""
    sizes = [(32, 24), (48, 36), (21, 31)]
    lst = tmp_path / "list.txt"
    lines = []
    for i, (w, h) in enumerate(sizes):
        p = tmp_path / f"s{i}.nut"
        ok(ffmpeg("-y", "-f", "lavfi", "-i", f"testsrc2=s={w}x{h}:r=10:d=0.2,format=rgb24", "-c:v", "png", p))
        lines.append(f"file '{p}'\n")
    lst.write_text("".join(lines))
    out = ok(ffmpeg("-reinit_filter", "0", "-f", "concat", "-safe", "0", "-i", lst, "-vf", sty(tiny["a"]),
                    "-fps_mode", "passthrough", *RAW_OUT))
    assert len(out) == sum(2 * w * h * 3 for w, h in sizes)


def test_size_change_every_frame(tiny):
    """scale with eval=frame inside the graph: a new size on every frame."""
    out = ok(ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=10:d=0.6",
                    "-vf", f"scale=w='32+4*n':h='24+2*n':eval=frame,{sty(tiny['a'])},scale=40:30",
                    *RAW_OUT))
    assert len(out) == 6 * 40 * 30 * 3


# ---------------------------------------------------------------------------
# every pixel format

def pixel_formats():
    proc = subprocess.run([str(FFMPEG), "-hide_banner", "-pix_fmts"], capture_output=True, text=True,
                          timeout=TIMEOUT)
    rows = proc.stdout.split("-----")[-1].split("\n")
    return [(r.split()[0], r.split()[1]) for r in rows if len(r.split()) >= 2]


def test_every_pixel_format(tiny, noise):
    """Random bytes read as each pixel format FFmpeg knows, through the
    filter. Every input-capable format (flag I) must work; the others
    (hardware surfaces, output-only formats) must fail with a message."""
    fmts = pixel_formats()
    assert len(fmts) > 200
    failed = []
    for flags, name in fmts:
        proc = ffmpeg("-f", "rawvideo", "-pix_fmt", name, "-s", "8x6", "-i", noise, "-frames:v", "1",
                      "-vf", sty(tiny["a"]), *RAW_OUT)
        if flags[0] == "I":
            if proc.returncode != 0 or len(proc.stdout) != 8 * 6 * 3:
                failed.append(f"{name}: {proc.err[-300:]}")
        else:
            assert proc.returncode != 0 and proc.err.strip(), name
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize("fmt", ["rgb24", "bgr24", "rgba", "bgra", "argb", "abgr", "gbrp", "gbrap"])
def test_native_formats_odd_size(tiny, noise, fmt):
    """The formats handed to libstylize as they are, at an odd size."""
    out = ok(ffmpeg("-f", "rawvideo", "-pix_fmt", fmt, "-s", "13x7", "-i", noise, "-frames:v", "2",
                    "-vf", f"{sty(tiny['a'])},format={fmt}", "-f", "rawvideo", "-"))
    bpp = 3 if fmt in ("rgb24", "bgr24", "gbrp") else 4
    assert len(out) == 2 * 13 * 7 * bpp


# ---------------------------------------------------------------------------
# damaged video files

@pytest.fixture(scope="module")
def clip(tiny):
    p = tiny["dir"] / "clip.mp4"
    ok(ffmpeg("-y", "-f", "lavfi", "-i", "testsrc2=s=64x48:r=10:d=1.2", "-c:v", "libx264", "-g", "4",
              "-pix_fmt", "yuv420p", p))
    return p


def damage(data, kind, rng):
    b = bytearray(data)
    if kind == "truncated-half":
        return bytes(b[: len(b) // 2])
    if kind == "truncated-header":
        return bytes(b[:200])
    if kind == "random-bytes":
        for i in rng.integers(len(b) // 4, len(b), 64):
            b[i] = int(rng.integers(0, 256))
        return bytes(b)
    if kind == "zeroed-middle":
        m = len(b) // 2
        b[m:m + 1024] = bytes(1024)
        return bytes(b)
    if kind == "garbage":
        return rng.integers(0, 256, 20000, np.uint8).tobytes()
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["truncated-half", "truncated-header", "random-bytes", "zeroed-middle",
                                  "garbage"])
def test_damaged_video(tiny, clip, tmp_path, kind):
    bad = tmp_path / f"{kind}.mp4"
    bad.write_bytes(damage(clip.read_bytes(), kind, np.random.default_rng(7)))
    proc = ffmpeg("-i", bad, "-vf", sty(tiny["a"]), *RAW_OUT)
    if proc.returncode == 0:
        assert len(proc.stdout) % (64 * 48 * 3) == 0 and len(proc.stdout) <= 12 * 64 * 48 * 3
    else:
        assert proc.err.strip()


# ---------------------------------------------------------------------------
# model files changing under a running ffmpeg

class Piped:
    """ffmpeg reading raw frames from stdin and writing them to stdout, so
    the test knows which frames have been through the filter before it
    touches the model files. ffmpeg's demuxer holds one frame back: output
    k comes after input k+1 has been written."""

    def __init__(self, graph, w=16, h=12):
        self.n = w * h * 3
        self.proc = subprocess.Popen(
            [str(FFMPEG), "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
             "-s", f"{w}x{h}", "-r", "10", "-i", "-", "-vf", graph, *RAW_OUT],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.timer = threading.Timer(TIMEOUT, self.proc.kill)  # never hang the test
        self.timer.start()
        self.sent = self.received = 0

    def send(self):
        self.proc.stdin.write(bytes([self.sent * 10 % 256]) * self.n)
        self.proc.stdin.flush()
        self.sent += 1

    def receive(self, upto, limit):
        """Send frames (never frame `limit` or later) until frame `upto`
        has come out of the graph; how many frames ffmpeg holds back
        varies, so send one more whenever nothing comes for a while."""
        while self.received <= upto:
            if select.select([self.proc.stdout], [], [], 0.1)[0]:
                got = self.proc.stdout.read(self.n)
                assert len(got) == self.n, "ffmpeg stopped: " + self.proc.stderr.read().decode(errors="replace")
                self.received += 1
            else:
                assert self.sent < limit, f"ffmpeg holds back more than {limit - upto} frames"
                self.send()

    def close(self):
        self.proc.stdin.close()
        rest = self.proc.stdout.read()
        err = self.proc.stderr.read().decode(errors="replace")
        rc = self.proc.wait()
        self.timer.cancel()
        assert rc >= 0, f"ffmpeg died of signal {-rc}:\n{err}"
        assert rc == 0, err
        self.received += len(rest) // self.n
        return err


def test_model_deleted_replaced_between_switches(tiny, tmp_path):
    """sendcmd switches the model at frames 5, 10, ..., 30; before each
    switch the file changes: deleted, garbage, truncated, a FIFO (the open
    must not wait for a writer), a valid model again. Failed switches keep
    the current model; every frame comes out."""
    cur = tmp_path / "cur.safetensors"
    cur.write_bytes(tiny["a"].read_bytes())
    steps = [
        lambda: cur.unlink(),
        lambda: cur.write_bytes(os.urandom(5000)),
        lambda: cur.write_bytes(tiny["b"].read_bytes()[:3000]),
        lambda: (cur.unlink(), os.mkfifo(cur)),
        lambda: (cur.unlink(), cur.write_bytes(tiny["b"].read_bytes())),
        lambda: cur.write_bytes(tiny["a"].read_bytes()),
    ]
    # Commands 0.5 s apart: the one at j/2 - 0.05 s fires on frame 5j.
    cmds = "; ".join(f"{j / 2 - 0.05:.2f} stylize model {cur}" for j in range(1, len(steps) + 1))
    p = Piped(f"sendcmd=c='{cmds}',{sty(cur)}")
    p.receive(0, limit=5)
    for j, step in enumerate(steps, 1):
        step()             # frames before 5j are through, command j has not fired
        p.receive(5 * j, limit=5 * j + 5)
    err = p.close()
    assert p.received == p.sent
    assert err.count("cannot switch to model") == 4, err
    assert "No such file" in err and "not a regular file" in err and "keeping" in err, err


def test_fifo_model_refused_at_start(tiny, tmp_path):
    fifo = tmp_path / "fifo.safetensors"
    os.mkfifo(fifo)
    err = fails(ffmpeg("-f", "lavfi", "-i", "testsrc2=s=32x24:d=0.1", "-vf", sty(fifo), "-f", "null", "-"))
    assert "fifo.safetensors" in err


def test_fifo_model_library(any_build, tmp_path):
    """The library itself (ASan build too) refuses a FIFO instead of blocking."""
    fifo = tmp_path / "m.safetensors"
    os.mkfifo(fifo)
    proc = any_build.run("stylize-image", "-m", fifo, "--info", timeout=20)
    assert proc.returncode == 1 and "not a regular file" in proc.stderr, proc.stderr


# ---------------------------------------------------------------------------
# absurd option values

@pytest.mark.parametrize("opt, needle", [
    ("thumb=1", "thumb"),
    ("thumb=100000", "thumb"),
    ("threads=10000", "threads"),
    ("threads=-1", "threads"),
    ("strength=nan", "strength"),
    ("strength=inf", "strength"),
    ("strength=-0.5", "strength"),
    ("smooth=nan", "smooth"),
    ("scene_cut=nan", "scene_cut"),
    ("tile=-4", "tile"),
    ("tile=1000000", "tile"),
    ("overlap=-2", "overlap"),
    ("overlap=99999", "overlap"),
    ("max_memory=-1", "max_memory"),
    ("mode=7", "mode"),
    ("precision=fp8", "precision"),
])
def test_absurd_options_fail_clearly(tiny, opt, needle):
    err = fails(ffmpeg("-f", "lavfi", "-i", "testsrc2=s=32x24:d=0.1", "-vf", f"{sty(tiny['a'])}:{opt}",
                       "-f", "null", "-"))
    assert needle in err, err


@pytest.mark.parametrize("opts", [
    {"tile": 0}, {"tile": 1}, {"tile": 3, "overlap": 0}, {"thumb": 16}, {"threads": 1024},
    {"overlap": 1024, "tile": 8}, {"strength": 0}, {"smooth": 0.99, "scene_cut": 0},
    {"scene_cut": 1000}, {"mode": "full", "tile": 1}, {"mode": "patch", "tile": 4, "overlap": 0},
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_extreme_but_valid_options_work(tiny, noise, opts):
    out = ok(ffmpeg("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "19x11", "-i", noise, "-frames:v", "2",
                    "-vf", sty(tiny["a"], **opts), *RAW_OUT))
    assert len(out) == 2 * 19 * 11 * 3


def test_absurd_runtime_options_keep_running(tiny):
    """Bad values sent with sendcmd are refused one by one; every frame still comes out."""
    bad = ["strength nan", "strength 7", "thumb 1", "threads 10000", "tile -3", "smooth nan",
           "mode 9", "model /nonexistent/x.safetensors", "model ."]
    cmds = "; ".join(f"{0.05 + i / 10:.2f} stylize {c}" for i, c in enumerate(bad))
    out = ok(ffmpeg("-f", "lavfi", "-i", f"testsrc2=s=24x16:r=10:d={len(bad) / 10 + 0.1:.1f}",
                    "-vf", f"sendcmd=c='{cmds}',{sty(tiny['a'])}", *RAW_OUT))
    assert len(out) == (len(bad) + 1) * 24 * 16 * 3


# ---------------------------------------------------------------------------
# max_memory

def test_max_memory_too_small_fails_with_message(tiny):
    err = fails(ffmpeg("-f", "lavfi", "-i", "testsrc2=s=640x480:d=0.1",
                       "-vf", sty(tiny["a"], mode="full", max_memory="64K"), "-f", "null", "-"))
    assert "640x480" in err and "max_memory" in err and "mode=tin" in err, err
    err = fails(ffmpeg("-f", "lavfi", "-i", "testsrc2=s=640x480:d=0.1",
                       "-vf", sty(tiny["a"], max_memory="64K"), "-f", "null", "-"))
    assert "max_memory" in err and "lower tile or thumb" in err, err


def test_max_memory_bounds_tin_regardless_of_frame_size(tiny, noise):
    """In tin mode the need depends on tile and thumb only: a limit that
    fits a small frame fits a 16385-pixel-wide one too. (The ref backend:
    oneDNN compiles kernels for every new tile shape, seconds on a busy
    2-core machine, and the limit logic is the library's own.)"""
    opts = {"tile": 64, "thumb": 64, "max_memory": "4M", "backend": "ref"}
    for w, h in [(64, 48), (16385, 8)]:
        out = ok(ffmpeg("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-i", noise,
                        "-frames:v", "1", "-vf", sty(tiny["a"], **opts), *RAW_OUT))
        assert len(out) == w * h * 3


# ---------------------------------------------------------------------------
# the filter's call sequence under the sanitizers

def test_filter_call_sequence(any_build, tmp_path):
    """tests/filter_calls.c: the calls vf_stylize.c makes (create, frames of
    changing size and format with padded linesizes, runtime options, absurd
    values, max_memory, model switches onto deleted/garbage/truncated/FIFO/
    directory files, two-pass statistics, backend rebuilds, destroy) on the
    release and the ASan/UBSan builds: FFmpeg itself is not built with
    sanitizers here. Widths of at least 8 keep oneDNN on its JIT kernels."""
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    a.write_bytes(encode(model((8, 16, 16), 1, 3, 3), {"style": "a"}))
    b.write_bytes(encode(model((8, 8, 8), 1, 5, 3, seed=5), {"style": "b"}))
    work = tmp_path / "work"
    work.mkdir()
    proc = any_build.run("test_filter_calls", a, b, work, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "ok" in proc.stdout


def test_real_ffmpeg_under_valgrind(tiny, tmp_path):
    """The real ffmpeg and filter (not instrumented at build time) under
    valgrind's memcheck: a few frames, a model switch, a failed switch and a
    backend rebuild; no invalid access, no use of uninitialised memory, no
    definite leak (tests/valgrind.supp: glibc's dlopen bookkeeping)."""
    import shutil
    if not shutil.which("valgrind"):
        pytest.skip("valgrind is not installed")
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    a.write_bytes(encode(model((8, 16, 16), 1, 3, 3), {"style": "a"}))
    b.write_bytes(encode(model((8, 8, 8), 1, 5, 3, seed=5), {"style": "b"}))
    cmds = f"0.15 stylize model {b}; 0.25 stylize model {tmp_path}/missing.safetensors; 0.35 stylize backend ref"
    proc = subprocess.run(
        ["valgrind", "-q", "--error-exitcode=99", f"--suppressions={REPO}/tests/valgrind.supp",
         "--leak-check=full", "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite",
         str(FFMPEG), "-nostdin", "-hide_banner", "-loglevel", "error",
         "-f", "lavfi", "-i", "testsrc2=s=24x16:r=10:d=0.5",
         "-vf", f"sendcmd=c='{cmds}',{sty(a, tile=8)}", "-f", "null", "-"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "cannot switch to model" in proc.stderr
