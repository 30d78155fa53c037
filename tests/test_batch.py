"""Offline batch processing: tools/stylize-batch and the filter's two-pass statistics.

    STYLIZE_BUILD=$PWD/build /usr/bin/python3 -m pytest -q tests/test_batch.py
    make check-batch-remote     # the chunks over ssh with GNU parallel (tests/test_batch_remote.py)

Tiny videos (96x64, a few seconds at 10-25 fps) and a random half-width model
keep the module to seconds. Covered: two-pass output with window 0 equals the
one-pass output; stats-file errors (wrong model, truncated, incomplete,
missing frames) fail with a message; a chunked run (keyframe split, chunks in
parallel, stream-copy concatenation) gives the same frames, frame count and
timestamps as the single run; resuming skips finished outputs and redoes
partial ones, inputs stay untouched; a corrupt input fails the batch with its
log kept.
"""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("STYLIZE_BUILD", REPO / "build"))
FFMPEG = Path(os.environ.get("STYLIZE_FFMPEG", BUILD / "bin" / "ffmpeg"))
FFPROBE = FFMPEG.with_name("ffprobe")
BATCH = REPO / "tools" / "stylize-batch"
LOSSLESS = ["--", "-c:v", "libx264", "-qp", "0", "-preset", "ultrafast", "-c:a", "copy"]

if os.environ.get("STYLIZE_NO_FFMPEG"):
    pytest.skip("STYLIZE_NO_FFMPEG is set", allow_module_level=True)


def run(cmd, check=True, **kw):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kw)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc


def ffmpeg(*args, check=True):
    return run([FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=check)


def batch(*args, check=True):
    return run([sys.executable, BATCH, "-q", "--threads", "1", *args], check=check)


def raw_frames(path):
    """The decoded video frames (what the decoder outputs), as rgb24 bytes."""
    proc = subprocess.run([str(FFMPEG), "-nostdin", "-loglevel", "error", "-i", str(path), "-map", "0:v",
                           "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


def video_pts(path):
    out = run([FFPROBE, "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts_time",
               "-of", "json", path]).stdout
    return [f["pts_time"] for f in json.loads(out)["frames"]]


def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    if not FFMPEG.exists():
        pytest.fail(f"{FFMPEG} is missing: run `make ffmpeg` (or set STYLIZE_NO_FFMPEG=1)")
    from torch_reference import random_model, save_safetensors_model
    d = tmp_path_factory.mktemp("batch")
    models = {}
    for seed in (1, 2):
        models[seed] = d / f"m{seed}.safetensors"
        save_safetensors_model(random_model(widths=(8, 16, 32), res_blocks=1, seed=seed), models[seed])
    vids = d / "vids"
    vids.mkdir()
    # 4 s at 25 fps, a keyframe every 25 frames, B-frames, and audio to copy.
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=96x64:r=25:d=4", "-f", "lavfi", "-i", "sine=d=4",
           "-c:v", "libx264", "-g", "25", "-bf", "2", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
           vids / "long.mp4")
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=96x64:r=10:d=1.5", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           vids / "short.mp4")
    return {"dir": d, "m1": models[1], "m2": models[2], "vids": vids,
            "long": vids / "long.mp4", "short": vids / "short.mp4"}


def stylize_vf(model, **opts):
    return "stylize=" + ":".join([f"model={model}", "threads=1"] + [f"{k}={v}" for k, v in opts.items()])


# ---------------------------------------------------------------------------
# the filter's two passes

@pytest.fixture(scope="module")
def stats(env):
    s = env["dir"] / "short.stats"
    ffmpeg("-i", env["short"], "-vf", stylize_vf(env["m1"], stats_mode="write", stats_file=s), "-f", "null", "-")
    return s


def test_pass1_passes_frames_through(env, tmp_path):
    s = tmp_path / "p1.stats"
    p1 = tmp_path / "p1.nut"
    ffmpeg("-i", env["short"], "-vf", f"format=rgb24,{stylize_vf(env['m1'], stats_mode='write', stats_file=s)}",
           "-c:v", "rawvideo", p1)
    assert raw_frames(p1) == raw_frames(env["short"])
    data = s.read_bytes()
    assert data[:8] == b"STYSTATS"
    frames = int.from_bytes(data[40:48], "little")
    n = int.from_bytes(data[16:20], "little")
    assert frames == 15 and len(data) == 64 + frames * (8 + 4 * n)


@pytest.mark.parametrize("mode", ["auto", "tin"])
def test_pass2_window0_equals_one_pass(env, tmp_path, mode):
    # auto (the default) at this size: pass 1 records each frame's own (full) statistics and pass 2
    # imposes them in tiles, which is exact mode's picture: equal to full bit for bit in fp32 (in bf16
    # the fused and unfused normalizations round differently); tin: the thumbnail's statistics
    one = tmp_path / "one.nut"
    two = tmp_path / "two.nut"
    stats = tmp_path / "p.stats"
    opts = {"mode": mode, "precision": "fp32"}
    ffmpeg("-i", env["short"], "-vf", stylize_vf(env["m1"], stats_mode="write", stats_file=stats, **opts),
           "-f", "null", "-")
    ffmpeg("-i", env["short"], "-vf", stylize_vf(env["m1"], **opts), "-c:v", "rawvideo", one)
    ffmpeg("-i", env["short"], "-vf", stylize_vf(env["m1"], stats_mode="read", stats_file=stats, **opts),
           "-c:v", "rawvideo", two)
    assert raw_frames(one) == raw_frames(two)
    win = tmp_path / "win.nut"
    ffmpeg("-i", env["short"], "-vf", stylize_vf(env["m1"], stats_mode="read", stats_file=stats, stats_window=3,
                                                **opts), "-c:v", "rawvideo", win)
    assert raw_frames(win) != raw_frames(one), "a window should change the statistics"


@pytest.mark.parametrize("case", ["other-model", "truncated", "incomplete", "not-stats", "missing-frames",
                                  "no-file-option", "missing-file"])
def test_stats_errors(env, stats, tmp_path, case):
    model, path, src, extra = env["m1"], stats, env["short"], []
    data = stats.read_bytes()
    if case == "other-model":
        model, want = env["m2"], "other weights"
    elif case == "truncated":
        path = tmp_path / "t.stats"
        path.write_bytes(data[:-100])
        want = "truncated"
    elif case == "incomplete":
        path = tmp_path / "i.stats"
        path.write_bytes(data[:40] + bytes(8) + data[48:])
        want = "incomplete"
    elif case == "not-stats":
        path, want = env["m1"], "not a stylize statistics file"
    elif case == "missing-frames":
        src, want = env["long"], "no statistics for the frame"
    elif case == "missing-file":
        path, want = tmp_path / "none.stats", "cannot open stats file"
    vf = stylize_vf(model, stats_mode="read", **({} if case == "no-file-option" else {"stats_file": path}))
    if case == "no-file-option":
        want = "needs stats_file"
    proc = ffmpeg("-i", src, "-vf", vf, "-f", "null", "-", check=False)
    assert proc.returncode != 0
    assert want in proc.stderr, proc.stderr[-2000:]


# ---------------------------------------------------------------------------
# the batch driver

def test_chunked_equals_single_run(env, tmp_path):
    """Same statistics and decoder output: the chunked result's frames, count and pts equal the single run's."""
    before = sha(env["long"])
    single, chunked = tmp_path / "single", tmp_path / "chunked"
    batch("-m", env["m1"], "-o", single, env["long"], "--window", "2", *LOSSLESS)
    proc = batch("-m", env["m1"], "-o", chunked, env["long"], "--window", "2", "--chunks",
                 "--chunk-seconds", "1", "-j", "2", "--keep-work", *LOSSLESS)
    work = chunked / ".stylize-batch" / "long_m1.mp4"
    assert (work / "chunks").read_text().strip() == "4", proc.stdout
    a, b = single / "long_m1.mp4", chunked / "long_m1.mp4"
    fa, fb = raw_frames(a), raw_frames(b)
    assert len(fa) == 100 * 96 * 64 * 3 and fa == fb
    pa = video_pts(a)
    assert len(pa) == 100 and pa == video_pts(b) == video_pts(env["long"])
    astreams = run([FFPROBE, "-v", "error", "-show_entries", "stream=codec_type", "-of", "csv=p=0", b]).stdout.split()
    assert astreams.count("audio") == 1
    assert sha(env["long"]) == before


def test_resume_skip_and_redo(env, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    before = {p.name: sha(p) for p in env["vids"].iterdir()}
    # a finished output from an earlier run, and a stale partial one
    (out / "long_m1.mp4").write_bytes(b"finished earlier")
    (out / ".short_m1.part.mp4").write_bytes(b"stale partial output")
    proc = batch("-m", env["m1"], "-o", out, env["vids"])
    assert (out / "long_m1.mp4").read_bytes() == b"finished earlier"
    assert not (out / ".short_m1.part.mp4").exists()
    assert len(raw_frames(out / "short_m1.mp4")) == 15 * 96 * 64 * 3
    assert "1 done, 1 skipped, 0 failed" in proc.stdout
    assert {p.name: sha(p) for p in env["vids"].iterdir()} == before
    assert not (out / ".stylize-batch").exists(), "work folder and logs removed after success"


def test_failure_keeps_log(env, tmp_path):
    vids = tmp_path / "in"
    vids.mkdir()
    (vids / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    (vids / "good.mp4").write_bytes(env["short"].read_bytes())
    out = tmp_path / "out"
    proc = batch("-m", env["m1"], "-o", out, vids, "-j", "2", check=False)
    assert proc.returncode != 0
    assert "1 done" in proc.stdout and "1 failed" in proc.stdout, proc.stdout
    assert (out / "good_m1.mp4").exists() and not (out / "bad_m1.mp4").exists()
    assert not list(out.glob(".*.part.*"))
    log = out / ".stylize-batch" / "logs" / "bad_m1.mp4.log"
    assert log.exists() and str(log) in proc.stdout


def test_failure_during_ffmpeg_keeps_log(env, tmp_path):
    """A model that cannot stylize (missing file after the check) fails in ffmpeg: log kept."""
    out = tmp_path / "out"
    model = tmp_path / "gone.safetensors"
    model.write_bytes(env["m1"].read_bytes()[:5000])     # truncated model
    proc = batch("-m", model, "-o", out, env["short"], check=False)
    assert proc.returncode == 1
    logs = list((out / ".stylize-batch" / "logs").glob("*.log"))
    assert len(logs) == 1 and "exit status" in logs[0].read_text()
    assert str(logs[0]) in proc.stdout
    assert not (out / "short_m1.mp4").exists() and not (out / "short_gone.mp4").exists()


def test_refuses_to_overwrite_input(env, tmp_path):
    vids = tmp_path / "v"
    vids.mkdir()
    src = vids / "x_m1.mp4"
    src.write_bytes(env["short"].read_bytes())
    proc = batch("-m", env["m1"], "-o", vids, src, "--pattern", "{name}", check=False)
    assert proc.returncode == 2 and "overwrite an input" in proc.stderr
    assert sha(src) == sha(env["short"])
