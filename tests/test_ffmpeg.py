"""The `stylize` filter inside a real ffmpeg ($STYLIZE_BUILD/bin/ffmpeg).

    make check-ffmpeg                       # builds ffmpeg first
    STYLIZE_BUILD=$PWD/build /usr/bin/python3 -m pytest -q tests/test_ffmpeg.py
    STYLIZE_FFMPEG=build/ffmpeg-7.1/bin/ffmpeg ... (another ffmpeg; make check-ffmpeg-all)
    STYLIZE_NO_FFMPEG=1 ...                 # skip this module

The filter is a thin adapter, so with the same options its output must be
bit-exact with libstylize's own (stylize-image on a PNG of the frame that
reaches the filter). Covered: lavfi testsrc2 and a real H.264 clip (scaled
in the graph), several option sets, rgb24/gbrp/rgba/bgr24 and yuv420p inputs
(yuv420p converted by ffmpeg), negative linesizes (vflip), a frame-size
change mid-stream, timestamps, frame count and metadata kept, the option
list of `ffmpeg -h filter=stylize`, switching the model with sendcmd (from
that frame on, not before; a failed switch keeps the old model), runtime
options, timeline `enable`, the model loaded once, and errors
(missing/corrupt model, bad option values) making ffmpeg fail with a
message naming the problem.

Frames are small (the portable C backend needs about 0.3 s per 100k pixels
on 2 threads) and few; the whole module takes well under a minute.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STYLIZE_SHARED", REPO.parent / "shared"))
BUILD = Path(os.environ.get("STYLIZE_BUILD", REPO / "build"))
FFMPEG = Path(os.environ.get("STYLIZE_FFMPEG", BUILD / "bin" / "ffmpeg"))
FFPROBE = FFMPEG.with_name("ffprobe")
STYLIZE_IMAGE = BUILD / "bin" / "stylize-image"
THREADS = os.environ.get("STYLIZE_TEST_THREADS", "2")

if os.environ.get("STYLIZE_NO_FFMPEG"):
    pytest.skip("STYLIZE_NO_FFMPEG is set", allow_module_level=True)

W, H = 128, 96          # testsrc2 frames
TESTSRC = f"testsrc2=s={W}x{H}:r=10"


# ---------------------------------------------------------------------------
# helpers

def run(cmd, check=True, timeout=300):
    cmd = [str(c) for c in cmd]
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail("%s\nexited %d:\n%s" % (" ".join(cmd), proc.returncode,
                                            proc.stderr.decode(errors="replace")[-3000:]))
    return proc


def ffmpeg(*args, check=True, loglevel="error"):
    return run([FFMPEG, "-nostdin", "-hide_banner", "-loglevel", loglevel, *args], check=check)


def lavfi_rgb(graph, w, h, extra=()):
    """Run a lavfi source graph, return its frames as uint8 (n, h, w, 3) rgb24."""
    out = ffmpeg("-f", "lavfi", "-i", graph, *extra, "-f", "rawvideo", "-pix_fmt", "rgb24", "-").stdout
    return np.frombuffer(out, np.uint8).reshape(-1, h, w, 3)


def file_rgb(path, vf, w, h, frames):
    out = ffmpeg("-i", path, "-vf", vf, "-frames:v", str(frames),
                 "-f", "rawvideo", "-pix_fmt", "rgb24", "-").stdout
    return np.frombuffer(out, np.uint8).reshape(-1, h, w, 3)


def read_png(path, w, h):
    out = ffmpeg("-i", path, "-f", "rawvideo", "-pix_fmt", "rgb24", "-").stdout
    return np.frombuffer(out, np.uint8).reshape(h, w, 3)


def write_png(frame, path):
    h, w, _ = frame.shape
    proc = subprocess.run([str(FFMPEG), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
                           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-i", "-",
                           "-frames:v", "1", str(path)], input=frame.tobytes(), capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")


# filter option -> stylize-image option
CLI_OPTS = {"mode": "--mode", "thumb": "--thumb", "tile": "--tile", "overlap": "--overlap",
            "strength": "--strength", "smooth": "--smooth", "threads": "--threads", "max_memory": "--max-memory"}


def libstylize(model, frame, tmp, opts=None, fmt=None):
    """libstylize's own output for one rgb24 frame (stylize-image on a PNG of it)."""
    opts = dict(opts or {})
    h, w, _ = frame.shape
    tmp.mkdir(parents=True, exist_ok=True)
    n = len(list(tmp.glob("in*.png")))
    src, dst = tmp / f"in{n}.png", tmp / f"out{n}.png"
    write_png(frame, src)
    cmd = [STYLIZE_IMAGE, "-m", model, "--threads", opts.pop("threads", THREADS)]
    if opts.pop("preserve_color", "0") in ("1", "true"):
        cmd.append("--preserve-color")
    for k, v in opts.items():
        cmd += [CLI_OPTS[k], v]
    if fmt:
        cmd += ["--format", fmt]
    run(cmd + [src, dst])
    return read_png(dst, w, h)


def stylize_args(model, **opts):
    opts.setdefault("threads", THREADS)
    return "stylize=" + ":".join([f"model={model}"] + [f"{k}={v}" for k, v in opts.items()])


def assert_same(got, want, what):
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    if not np.array_equal(got, want):
        diff = np.abs(got.astype(int) - want.astype(int))
        pytest.fail(f"{what}: differs from libstylize's output in {np.count_nonzero(diff)} values "
                    f"(max {diff.max()})")


def framecrc_rows(text):
    """framecrc lines as (stream, dts, pts, duration, size) tuples, and the crcs."""
    rows, crcs = [], []
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        f = [x.strip() for x in line.split(",")]
        rows.append(tuple(f[:5]))
        crcs.append(f[5])
    return rows, crcs


# ---------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="module")
def tools():
    if not FFMPEG.exists():
        pytest.fail(f"{FFMPEG} is missing: run `make ffmpeg` (or set STYLIZE_NO_FFMPEG=1)")
    if not STYLIZE_IMAGE.exists():
        pytest.fail(f"{STYLIZE_IMAGE} is missing: run `make tools`")
    return FFMPEG


@pytest.fixture(scope="module")
def models(tools, tmp_path_factory):
    """mosaic and candy converted from ../shared/models/*.pth."""
    if not (SHARED / "models").is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    out = tmp_path_factory.mktemp("ffmodels")
    paths = {}
    for name in ("mosaic", "candy"):
        pth = SHARED / "models" / f"{name}.pth"
        if not pth.exists():
            pytest.skip(f"{pth} not found")
        dst = out / f"{name}.safetensors"
        run([sys.executable, REPO / "tools" / "convert_model.py", pth, "-o", dst])
        paths[name] = str(dst)
    return paths


@pytest.fixture(scope="module")
def src_frames(tools):
    """The first 8 testsrc2 frames as rgb24 (what reaches the filter)."""
    return lavfi_rgb(f"{TESTSRC}:d=0.8,format=rgb24", W, H)


# ---------------------------------------------------------------------------
# output equals libstylize's

@pytest.mark.parametrize("opts", [
    {},
    {"mode": "full"},
    {"tile": "64", "overlap": "16", "thumb": "48"},
    {"mode": "patch", "tile": "64"},
    {"strength": "0.6", "preserve_color": "1"},
], ids=["default", "full", "tiled", "patch", "strength-preserve"])
def test_testsrc2_matches_libstylize(models, src_frames, tmp_path, opts):
    frames = 3 if not opts else 1
    got = lavfi_rgb(f"{TESTSRC}:d={frames / 10},format=rgb24,{stylize_args(models['mosaic'], **opts)}", W, H)
    assert len(got) == frames
    for i in range(frames):
        want = libstylize(models["mosaic"], src_frames[i], tmp_path, opts)
        assert_same(got[i], want, f"frame {i} with {opts}")


def test_video_file_matches_libstylize(models, tmp_path):
    """A real H.264 clip, scaled in the graph, first 5 frames."""
    clip = SHARED / "media" / "cockatoo.mp4"
    if not clip.exists():
        pytest.skip(f"{clip} not found")
    pre = "scale=160:90,format=rgb24"
    src = file_rgb(clip, pre, 160, 90, 5)
    got = file_rgb(clip, f"{pre},{stylize_args(models['candy'])}", 160, 90, 5)
    assert len(src) == len(got) == 5
    for i in range(5):
        assert_same(got[i], libstylize(models["candy"], src[i], tmp_path), f"cockatoo frame {i}")


@pytest.mark.parametrize("fmt", ["gbrp", "rgba", "bgr24"])
def test_native_formats(models, src_frames, tmp_path, fmt):
    """Packed and planar RGB reach libstylize as they are (no conversion)."""
    proc = ffmpeg("-f", "lavfi", "-i", f"{TESTSRC}:d=0.1,format={fmt},{stylize_args(models['mosaic'])}",
                  "-f", "rawvideo", "-pix_fmt", "rgb24", "-", loglevel="verbose")
    err = proc.stderr.decode(errors="replace")
    assert f"{W}x{H} {fmt}" in err, "the filter should see the frame as %s:\n%s" % (fmt, err[-2000:])
    got = np.frombuffer(proc.stdout, np.uint8).reshape(-1, H, W, 3)
    assert_same(got[0], libstylize(models["mosaic"], src_frames[0], tmp_path), fmt)


def test_negative_linesizes(models, src_frames, tmp_path):
    """vflip hands over frames with negative linesizes (both as the input and,
    via its get_buffer, as the output buffer); the filter copes."""
    got = lavfi_rgb(f"{TESTSRC}:d=0.1,format=rgb24,vflip,{stylize_args(models['mosaic'])},vflip", W, H)
    want = libstylize(models["mosaic"], np.ascontiguousarray(src_frames[0][::-1]), tmp_path)[::-1]
    assert_same(got[0], want, "vflip,stylize,vflip")


def test_yuv420p_is_converted(models, tmp_path):
    """A yuv420p input is converted by ffmpeg's auto-inserted scale to one of
    the filter's formats; the result equals libstylize on that converted frame."""
    proc = ffmpeg("-f", "lavfi", "-i", f"{TESTSRC}:d=0.1,format=yuv420p,{stylize_args(models['mosaic'])}",
                  "-f", "rawvideo", "-pix_fmt", "rgb24", "-", loglevel="verbose")
    err = proc.stderr.decode(errors="replace")
    m = re.search(r"\[Parsed_stylize_\d+ @ [^]]*\] %dx%d (\w+)" % (W, H), err)
    assert m, err[-2000:]
    fmt = m.group(1)
    assert fmt in ("rgb24", "bgr24", "rgba", "bgra", "argb", "abgr", "gbrp", "gbrap")
    got = np.frombuffer(proc.stdout, np.uint8).reshape(-1, H, W, 3)
    src = lavfi_rgb(f"{TESTSRC}:d=0.1,format=yuv420p,format={fmt},format=rgb24", W, H)
    assert_same(got[0], libstylize(models["mosaic"], src[0], tmp_path), f"yuv420p via {fmt}")


def test_size_change_mid_stream(models, tmp_path):
    """Two frame sizes in one stream (concat of two PNG-coded files).
    -reinit_filter 0: the same filter instance gets both sizes; every frame
    equals libstylize's. Default: ffmpeg rebuilds the graph, the new
    instance loads the model again (ffmpeg then scales to the encoder's size)."""
    parts = []
    for i, (w, h) in enumerate([(96, 64), (64, 80)]):
        p = tmp_path / f"part{i}.nut"
        ffmpeg("-f", "lavfi", "-i", f"testsrc2=s={w}x{h}:r=10:d=0.2,format=rgb24", "-c:v", "png", p)
        parts.append((p, w, h))
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"file '{p}'\n" for p, _, _ in parts))
    args = ["-f", "concat", "-safe", "0", "-i", lst, "-vf", stylize_args(models["mosaic"]),
            "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]

    proc = ffmpeg("-reinit_filter", "0", *args, loglevel="verbose")
    data = proc.stdout
    assert len(re.findall(r"libstylize .*: model ", proc.stderr.decode(errors="replace"))) == 1
    off = 0
    for p, w, h in parts:
        src = file_rgb(p, "null", w, h, 2)
        for j in range(2):
            n = w * h * 3
            got = np.frombuffer(data[off:off + n], np.uint8).reshape(h, w, 3)
            off += n
            assert_same(got, libstylize(models["mosaic"], src[j], tmp_path), f"{w}x{h} frame {j}")
    assert off == len(data), "unexpected extra output"

    proc = ffmpeg(*args, loglevel="verbose")
    w, h = parts[0][1:]
    got = np.frombuffer(proc.stdout, np.uint8).reshape(-1, h, w, 3)
    assert len(got) == 4
    err = proc.stderr.decode(errors="replace")
    assert len(re.findall(r"libstylize .*: model ", err)) == 2, err[-3000:]
    src = file_rgb(parts[0][0], "null", w, h, 2)
    for j in range(2):
        assert_same(got[j], libstylize(models["mosaic"], src[j], tmp_path), f"{w}x{h} frame {j}")


def _full_kib(model, w, h, tmp):
    """full mode's working memory for a w x h frame, as stylize-image --verbose reports it."""
    src = tmp / f"blank{w}x{h}.png"
    write_png(np.zeros((h, w, 3), np.uint8), src)
    r = run([STYLIZE_IMAGE, "-m", model, "--mode", "full", "--verbose", "--tile", "48", "--thumb", "32",
             src, tmp / "blank_out.png"])
    return int(re.search(r"(\d+) KiB of working memory", r.stderr.decode()).group(1))


@pytest.mark.parametrize("still", [0, 1])
def test_auto_mode_size_change_crosses_budget(models, tmp_path, still):
    """mode=auto with a max_memory between full's need at two sizes: the
    small frames are full, the large ones tin (video) or exact (still=1).
    Each size's mode is logged once at the verbose level; a switch between
    full and tin (the look changes) is a warning naming both sizes; exact
    gives full's picture, so no warning. Every frame equals libstylize's
    output in the mode named."""
    small, large = (64, 48), (480, 360)  # tiles of 48 + context are much smaller than the large frame
    budget_kib = (_full_kib(models["mosaic"], *small, tmp_path) + _full_kib(models["mosaic"], *large, tmp_path)) // 2
    parts = []
    for i, (w, h) in enumerate([small, large, small]):
        p = tmp_path / f"part{i}.nut"
        ffmpeg("-f", "lavfi", "-i", f"testsrc2=s={w}x{h}:r=10:d=0.1,format=rgb24", "-c:v", "png", p)
        parts.append((p, w, h))
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"file '{p}'\n" for p, _, _ in parts))
    vf = stylize_args(models["mosaic"], tile=48, thumb=32, max_memory=f"{budget_kib}K", still=still)
    proc = ffmpeg("-reinit_filter", "0", "-f", "concat", "-safe", "0", "-i", lst, "-vf", vf,
                  "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-", loglevel="verbose")
    err = proc.stderr.decode(errors="replace")
    big_mode = "exact" if still else "tin"
    assert re.search(r"64x48: mode full \(auto\)", err), err[-3000:]
    assert re.search(r"480x360: mode %s \(auto\)" % big_mode, err), err[-3000:]
    warnings = re.findall(r"frame size changed from (\d+x\d+) to (\d+x\d+) and mode=auto switches from (\w+) "
                          r"to (\w+).*the look changes", err)
    if still:
        assert warnings == [], warnings
    else:
        assert warnings == [("64x48", "480x360", "full", "tin"), ("480x360", "64x48", "tin", "full")], err[-3000:]
    data, off = proc.stdout, 0
    for p, w, h in parts:
        src = file_rgb(p, "null", w, h, 1)
        n = w * h * 3
        got = np.frombuffer(data[off:off + n], np.uint8).reshape(h, w, 3)
        off += n
        mode = "full" if (w, h) == small else big_mode
        # the same budget: exact's activation cache (and so its rounding in bf16) depends on it
        assert_same(got, libstylize(models["mosaic"], src[0], tmp_path, {"mode": mode, "tile": "48", "thumb": "32",
                                                                         "max_memory": f"{budget_kib}K"}),
                    f"{w}x{h} in {mode} mode")
    assert off == len(data)


# ---------------------------------------------------------------------------
# timestamps, frame count, metadata

def test_timestamps_and_count_preserved(models):
    """Same pts/dts/duration and number of frames as the unfiltered stream,
    with irregular timestamps (a gap after frame 2)."""
    src = f"{TESTSRC}:d=0.6,setpts='PTS+3*gt(N,2)'"
    common = ["-fps_mode", "passthrough", "-c:v", "rawvideo", "-pix_fmt", "rgb24", "-f", "framecrc", "-"]
    ref = ffmpeg("-f", "lavfi", "-i", f"{src},format=rgb24", *common).stdout.decode()
    got = ffmpeg("-f", "lavfi", "-i", f"{src},format=rgb24,{stylize_args(models['mosaic'])}",
                 *common).stdout.decode()
    ref_rows, ref_crc = framecrc_rows(ref)
    got_rows, got_crc = framecrc_rows(got)
    assert len(ref_rows) == 6
    assert got_rows == ref_rows
    assert all(a != b for a, b in zip(got_crc, ref_crc)), "frames should be stylized"


def test_ffprobe_sees_same_frames(models, tmp_path):
    """ffprobe on a stylized file: same frame count and pts as the source."""
    def probe(vf):
        out = tmp_path / "out.nut"
        ffmpeg("-y", "-f", "lavfi", "-i", f"{TESTSRC}:d=0.4,format=rgb24", "-vf", vf,
               "-fps_mode", "passthrough", "-c:v", "rawvideo", out)
        return run([FFPROBE, "-v", "error", "-select_streams", "v", "-show_entries",
                    "frame=pts,duration,width,height", "-of", "csv=p=0", out]).stdout.decode().split()
    ref = probe("null")
    assert len(ref) == 4
    assert probe(stylize_args(models["mosaic"])) == ref


def test_frame_metadata_kept(models):
    proc = ffmpeg("-f", "lavfi", "-i",
                  f"{TESTSRC}:d=0.2,metadata=mode=add:key=stylize_test:value=kept,"
                  f"{stylize_args(models['mosaic'])},metadata=mode=print",
                  "-f", "null", "-", loglevel="info")
    err = proc.stderr.decode(errors="replace")
    assert err.count("stylize_test=kept") == 2, err[-2000:]


# ---------------------------------------------------------------------------
# options, commands

OPTIONS = ["model", "mode", "thumb", "tile", "overlap", "strength", "preserve_color",
           "smooth", "scene_cut", "threads", "backend"]


def test_help_lists_every_option(tools):
    out = ffmpeg("-h", "filter=stylize", loglevel="info").stdout.decode()
    for opt in OPTIONS:
        assert re.search(r"^\s+%s\s" % opt, out, re.M), f"option {opt} missing:\n{out}"
    for const in ("tin", "full", "patch", "auto", "ref"):
        assert re.search(r"^\s+%s\s" % const, out, re.M), f"constant {const} missing:\n{out}"
    assert "timeline" in out
    # every option but none other can be changed at runtime ('T' flag)
    for opt in OPTIONS:
        line = re.search(r"^\s+%s\s.*$" % opt, out, re.M).group(0)
        assert re.search(r"\.\.FV\.+T", line), line


def test_model_loaded_once_and_threads_option(models):
    """ffmpeg initializes the graph twice; the model is loaded only for the
    configured one. threads= reaches the filter (not the generic option)."""
    proc = ffmpeg("-f", "lavfi", "-i", f"{TESTSRC}:d=0.3,{stylize_args(models['mosaic'], threads=2)}",
                  "-f", "null", "-", loglevel="verbose")
    err = proc.stderr.decode(errors="replace")
    loads = re.findall(r"libstylize .*: model .*", err)
    assert len(loads) == 1, err[-3000:]
    assert "threads 2" in loads[0], loads[0]


def test_sendcmd_switches_model(models):
    """At t=0.5 (frame 5 of a 10 fps stream) the model changes from mosaic to
    candy: frames 0-4 equal a mosaic-only run, frames 5-7 a candy-only run."""
    src = f"{TESTSRC}:d=0.8,format=rgb24"
    mosaic = lavfi_rgb(f"{src},{stylize_args(models['mosaic'])}", W, H)
    candy = lavfi_rgb(f"{src},{stylize_args(models['candy'])}", W, H)
    cmd = f"sendcmd=c='0.5 stylize model {models['candy']}'"
    got = lavfi_rgb(f"{src},{cmd},{stylize_args(models['mosaic'])}", W, H)
    assert len(got) == len(mosaic) == len(candy) == 8
    for i in range(8):
        assert not np.array_equal(mosaic[i], candy[i])
        want = mosaic[i] if i < 5 else candy[i]
        assert_same(got[i], want, f"frame {i} ({'mosaic' if i < 5 else 'candy'})")


def test_sendcmd_bad_model_keeps_current(models, tmp_path):
    bad = tmp_path / "garbage.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    src = f"{TESTSRC}:d=0.4,format=rgb24"
    mosaic = lavfi_rgb(f"{src},{stylize_args(models['mosaic'])}", W, H)
    proc = ffmpeg("-f", "lavfi", "-i",
                  f"{src},sendcmd=c='0.2 stylize model {bad}',{stylize_args(models['mosaic'])}",
                  "-f", "rawvideo", "-pix_fmt", "rgb24", "-", loglevel="error")
    err = proc.stderr.decode(errors="replace")
    assert "garbage.safetensors" in err and "keeping" in err, err
    got = np.frombuffer(proc.stdout, np.uint8).reshape(-1, H, W, 3)
    assert len(got) == 4
    for i in range(4):
        assert_same(got[i], mosaic[i], f"frame {i} after a failed switch")


def test_sendcmd_options(models, src_frames, tmp_path):
    """Runtime options: strength and mode from frame 2 on; an out-of-range
    value is rejected and the previous one stays."""
    cmds = "0.2 stylize strength 0.5;0.2 stylize mode full;0.2 stylize strength 7"
    got = lavfi_rgb(f"{TESTSRC}:d=0.3,format=rgb24,sendcmd=c='{cmds}',{stylize_args(models['mosaic'])}",
                    W, H)
    assert_same(got[0], libstylize(models["mosaic"], src_frames[0], tmp_path), "frame 0")
    assert_same(got[2], libstylize(models["mosaic"], src_frames[2], tmp_path,
                                   {"strength": "0.5", "mode": "full"}), "frame 2")


def test_timeline_enable(models, src_frames):
    """enable='gte(n,2)': frames 0-1 pass through unchanged."""
    got = lavfi_rgb(f"{TESTSRC}:d=0.3,format=rgb24,"
                    f"{stylize_args(models['mosaic'])}:enable='gte(n\\,2)'", W, H)
    assert_same(got[0], src_frames[0], "disabled frame 0")
    assert_same(got[1], src_frames[1], "disabled frame 1")
    assert not np.array_equal(got[2], src_frames[2])


# ---------------------------------------------------------------------------
# errors: ffmpeg exits non-zero with a message naming the problem

def fails(graph):
    proc = ffmpeg("-f", "lavfi", "-i", f"{TESTSRC}:d=0.2,{graph}", "-f", "null", "-", check=False)
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode != 0, f"ffmpeg should fail for {graph}:\n{err}"
    return err


def test_missing_model(tools, tmp_path):
    err = fails(f"stylize=model={tmp_path}/no-such-model.safetensors")
    assert "no-such-model" in err and "not found" in err, err


def test_unknown_style_name(tools):
    err = fails("stylize=model=no_such_style_xyz")
    assert "no_such_style_xyz" in err and "not found" in err, err


def test_corrupt_model(tools, tmp_path):
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(os.urandom(3000))
    err = fails(f"stylize=model={bad}")
    assert "corrupt.safetensors" in err and "cannot load model" in err, err


def test_truncated_model(models, tmp_path):
    data = Path(models["mosaic"]).read_bytes()
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(data[: len(data) // 2])
    err = fails(f"stylize=model={bad}")
    assert "truncated.safetensors" in err, err


def test_no_model(tools):
    err = fails("stylize")
    assert "no model" in err, err


@pytest.mark.parametrize("opt, needle", [
    ("mode=bogus", "mode"),
    ("strength=2", "strength"),
    ("smooth=1", "smooth"),
    ("thumb=4", "thumb"),
    ("backend=quantum", "backend"),
    ("nosuchoption=1", "nosuchoption"),
])
def test_bad_option(models, opt, needle):
    err = fails(f"stylize=model={models['mosaic']}:{opt}")
    assert needle in err, err
