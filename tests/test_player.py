"""stylize-player ($STYLIZE_BUILD/bin/stylize-player), headless.

    make check-player                        # builds the player (and FFmpeg) first
    STYLIZE_BUILD=$PWD/build /usr/bin/python3 -m pytest -q tests/test_player.py

The player runs with SDL's dummy video driver (software rendering, nothing
on screen; one case uses the offscreen driver) in its scripted mode:
--exit-after N frames, --keys "FRAME:KEY,...", --screenshot PATH. That mode
is lockstep (every frame stylized and shown, in order), so the screenshot
after N frames shows source frame N-1 and can be compared with what
`ffmpeg -f lavfi -i testsrc2=... [-vf stylize=...]` makes of the same frame:
in split view the left half must be the original frame and the right half
the stylized one. Covered: split, stylized and side-by-side views, a model
switch with a number key (from the next frame on, not before), a failed
switch keeping the current style, a setting the memory limit refuses
keeping the previous one, strength keys, pause, still images, end of a
video file, --max-size, the overlay, clean exits without leaks (the ASan
build, or valgrind), and errors (missing/corrupt model, unreadable input,
missing camera, no display) exiting 1 with a clear message.

Models are two small random TransformerNets (tools/torch_reference.py), so
every run takes well under a second; the module takes about 20 s.
"""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("STYLIZE_BUILD", REPO / "build"))
PLAYER = BUILD / "bin" / "stylize-player"
PLAYER_ASAN = BUILD / "asan" / "bin" / "stylize-player"
FFMPEG = Path(os.environ.get("STYLIZE_FFMPEG", BUILD / "bin" / "ffmpeg"))

if not PLAYER.exists():
    pytest.skip(f"{PLAYER} is not built (make player)", allow_module_level=True)

sys.path.insert(0, str(REPO / "tools"))

W, H = 160, 120
TESTSRC = f"testsrc2=size={W}x{H}:rate=10"
MARGIN = 4              # columns either side of the split divider left out
SAN_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1:halt_on_error=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
}


# ---------------------------------------------------------------------------
# helpers

def player_env(driver="dummy", extra=None):
    env = dict(os.environ)
    env["SDL_VIDEODRIVER"] = driver
    env.pop("DISPLAY", None)
    env.update(SAN_ENV)
    env.update(extra or {})
    return env


def run_player(*args, prog=PLAYER, driver="dummy", timeout=60, env=None, wrapper=(), cwd=None):
    cmd = [*wrapper, str(prog), *[str(a) for a in args]]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=player_env(driver, env), cwd=cwd)


def play(tmp_path, models, *args, frames=4, name="shot.png", src=("-f", "lavfi", TESTSRC), **kw):
    """Run the player in scripted mode; return the screenshot as an array."""
    shot = tmp_path / name
    margs = [a for m in models for a in ("-m", m)]
    proc = run_player(*margs, *src, "--exit-after", frames, "--no-overlay", "--threads", 2,
                      "--screenshot", shot, *args, **kw)
    assert proc.returncode == 0, proc.stderr
    return read_png(shot), proc


def read_png(path):
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(np.int16)


_ref_cache = {}


def ffmpeg_frames(*vf, src=("-f", "lavfi", "-i", TESTSRC), frames=6, size=(W, H)):
    """RGB24 frames of ffmpeg's output for the source [and filter]."""
    if not FFMPEG.exists():
        pytest.skip(f"{FFMPEG} is not built (make ffmpeg)")
    key = (tuple(vf), tuple(src), frames, size)
    if key not in _ref_cache:
        cmd = [str(FFMPEG), "-nostdin", "-hide_banner", "-loglevel", "error", *src,
               "-frames:v", str(frames)]
        if vf:
            cmd += ["-vf", ",".join(vf)]
        cmd += ["-pix_fmt", "rgb24", "-f", "rawvideo", "-"]
        proc = subprocess.run(cmd, capture_output=True, timeout=120)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        _ref_cache[key] = np.frombuffer(proc.stdout, np.uint8).reshape(-1, size[1], size[0], 3).astype(np.int16)
    return _ref_cache[key]


def stylized(model, extra=""):
    return ffmpeg_frames(f"stylize=model={model}:threads=2{extra}")


def close(a, b, what):
    """Same picture up to conversion rounding."""
    d = np.abs(a - b)
    assert d.mean() < 1.5 and np.percentile(d, 99) <= 12, \
        f"{what}: mean |diff| {d.mean():.2f}, 99th percentile {np.percentile(d, 99)}"


def differs(a, b, what):
    d = np.abs(a - b).mean()
    assert d > 8, f"{what}: should differ, mean |diff| only {d:.2f}"


def left(img):
    return img[:, :W // 2 - MARGIN]


def right(img):
    return img[:, W // 2 + MARGIN:W]


# ---------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two small random models (different seeds), as .safetensors paths."""
    tr = pytest.importorskip("torch_reference")
    d = tmp_path_factory.mktemp("player-models")
    paths = []
    for seed in (1, 2):
        p = d / f"random{seed}.safetensors"
        tr.save_safetensors_model(tr.random_model(widths=(8, 16, 16), res_blocks=1, kernel=5, seed=seed), p)
        paths.append(str(p))
    return paths


@pytest.fixture(scope="module")
def real_models(shared, tmp_path_factory):
    """mosaic and candy from ../shared, converted."""
    d = tmp_path_factory.mktemp("player-real")
    out = []
    for name in ("mosaic", "candy"):
        pth = shared / "models" / f"{name}.pth"
        if not pth.exists():
            pytest.skip(f"{pth} not found")
        dst = d / f"{name}.safetensors"
        subprocess.run([sys.executable, str(REPO / "tools" / "convert_model.py"), str(pth), "-o", str(dst)],
                       check=True, capture_output=True)
        out.append(str(dst))
    return out


# ---------------------------------------------------------------------------
# views and keys, compared with ffmpeg's frames

def test_help_lists_options_and_keys():
    proc = run_player("--help")
    assert proc.returncode == 0
    for s in ("--exit-after", "--keys", "--screenshot", "--max-size", "--video-size", "--framerate",
              "--threads", "--mode", "--strength", "--backend", "-f, --format", "1-9", "fullscreen",
              "preserve colour", "smoothing", "screenshot", "q, Esc"):
        assert s in proc.stdout, s


@pytest.mark.parametrize("driver", ["dummy", "offscreen"])
def test_split_view_original_left_stylized_right(tmp_path, models, driver):
    img, _ = play(tmp_path, models, "--view", "split", frames=4, driver=driver)
    assert img.shape == (H, W, 3)
    orig, styl = ffmpeg_frames()[3], stylized(models[0])[3]
    close(left(img), left(orig), "left half vs the original frame 4")
    close(right(img), right(styl), "right half vs ffmpeg -vf stylize frame 4")
    differs(right(img), right(orig), "right half vs the original")
    # the divider is drawn between the halves
    assert (img[:, W // 2 - 1:W // 2 + 1] == 255).all()


@pytest.mark.parametrize("frames,model,frame", [(2, 0, 1), (4, 1, 3)],
                         ids=["before-switch", "after-switch"])
def test_number_key_switches_model(tmp_path, models, frames, model, frame):
    # '2' pressed after frame 2: frame 2 is still model 1, frames 3.. model 2
    img, _ = play(tmp_path, models, "--keys", "2:2", frames=frames)
    want, other = stylized(models[model])[frame], stylized(models[1 - model])[frame]
    close(right(img), right(want), f"right half vs model {model + 1}")
    differs(right(img), right(other), f"right half vs model {2 - model}")
    close(left(img), left(ffmpeg_frames()[frame]), "left half vs the original")


def test_real_models_switch(tmp_path, real_models):
    img, _ = play(tmp_path, real_models, "--keys", "1:2", frames=2)
    close(left(img), left(ffmpeg_frames()[1]), "left half vs the original")
    close(right(img), right(stylized(real_models[1])[1]), "right half vs candy")
    differs(right(img), right(stylized(real_models[0])[1]), "right half vs mosaic")


def test_live_twin_is_preloaded_on_the_next_key(tmp_path):
    """-m STYLE also loads STYLE_live where it exists (key 2 here), and the
    twin's picture is what the filter draws with it; --no-live leaves it out."""
    live = REPO / "models" / "mosaic_live.safetensors"
    if not live.exists():
        pytest.skip("models/mosaic_live.safetensors not shipped")
    for name in ("mosaic", "mosaic_live"):
        shutil.copy(REPO / "models" / (name + ".safetensors"), tmp_path / (name + ".safetensors"))
    teacher = tmp_path / "mosaic.safetensors"
    img, proc = play(tmp_path, [teacher], "--keys", "1:2", frames=2)
    assert "key 2: %s" % (tmp_path / "mosaic_live.safetensors") in proc.stderr, proc.stderr
    close(right(img), right(stylized(tmp_path / "mosaic_live.safetensors")[1]), "right half vs the twin")
    differs(right(img), right(stylized(teacher)[1]), "right half vs the teacher")
    proc = run_player("-m", teacher, "--no-live", "-f", "lavfi", TESTSRC, "--exit-after", 1, "--keys", "0:2")
    assert proc.returncode == 0 and "key 2" not in proc.stderr
    assert "no style 2" in proc.stderr, proc.stderr


def test_failed_switch_keeps_current_style(tmp_path, models):
    img, proc = play(tmp_path, models, "--keys", "1:2,2:7", frames=3)
    assert "no style 7" in proc.stderr and "keeping" in proc.stderr
    close(right(img), right(stylized(models[1])[2]), "right half still model 2")


def test_failed_setting_keeps_previous(tmp_path, models):
    # 't' twice: tin -> patch -> full; full needs more than --max-memory on
    # this frame (tin/patch with these tiles about 1 MiB, full about 7 MiB),
    # so the player says why and keeps patch mode
    src = ("-f", "lavfi", "testsrc2=size=320x240:rate=10")
    tiles = ("--tile", 64, "--thumb", 32)
    img, proc = play(tmp_path, models, "--view", "stylized", "--mode", "tin", *tiles, "--max-memory", 3,
                     "--keys", "1:t,2:t", frames=4, src=src)
    assert "failed" in proc.stderr and "max_memory" in proc.stderr and "keeping" in proc.stderr, proc.stderr
    ref = ffmpeg_frames(f"stylize=model={models[0]}:threads=2:mode=patch:tile=64:thumb=32",
                        src=("-f", "lavfi", "-i", src[2]), size=(320, 240))
    close(img, ref[3], "patch mode kept")


def test_view_key_and_side_by_side(tmp_path, models):
    # split -> (v) stylized: the whole window is the stylized frame
    img, _ = play(tmp_path, models, "--keys", "1:v", frames=2, name="v.png")
    close(img, stylized(models[0])[1], "stylized view")
    img, _ = play(tmp_path, models, "--view", "side", frames=2, name="side.png")
    assert img.shape == (H, 2 * W, 3)
    close(img[:, :W], ffmpeg_frames()[1], "side by side, left")
    close(img[:, W:], stylized(models[0])[1], "side by side, right")


def test_strength_keys(tmp_path, models):
    img, _ = play(tmp_path, models, "--view", "stylized", "--keys", "1:-,1:-,1:-", frames=3)
    close(img, stylized(models[0], ":strength=0.7")[2], "strength 0.7")
    differs(img, stylized(models[0])[2], "strength 0.7 vs 1")


def test_overlay_drawn(tmp_path, models):
    plain, _ = play(tmp_path, models, frames=1, name="plain.png")
    shot = tmp_path / "overlay.png"
    proc = run_player("-m", models[0], "-f", "lavfi", TESTSRC, "--exit-after", 1, "--threads", 2,
                      "--screenshot", shot)
    assert proc.returncode == 0, proc.stderr
    img = read_png(shot)
    differs(img[:40, :W // 2], plain[:40, :W // 2], "overlay area")
    close(img[-30:], plain[-30:], "below the overlay")


def test_max_size_downscales(tmp_path, models):
    img, _ = play(tmp_path, models, "--max-size", 80, frames=1)
    assert img.shape == (60, 80, 3)


# ---------------------------------------------------------------------------
# other inputs

def test_still_image_shown_continuously(tmp_path, models):
    from PIL import Image
    y, x = np.mgrid[0:H, 0:W]
    pic = np.stack([x * 255 // W, y * 255 // H, (x + y) % 64 * 4], -1).astype(np.uint8)
    png = tmp_path / "still.png"
    Image.fromarray(pic).save(png)
    img, _ = play(tmp_path, models, "--keys", "2:2", frames=4, src=(png,))
    close(left(img), left(pic.astype(np.int16)), "left half vs the image")
    ref = ffmpeg_frames(f"stylize=model={models[1]}:threads=2", src=("-i", str(png)), frames=1)
    close(right(img), right(ref[0]), "right half vs model 2 on the image")


def test_video_file_ends(tmp_path, models):
    clip = tmp_path / "clip.nut"
    if not FFMPEG.exists():
        pytest.skip(f"{FFMPEG} is not built")
    subprocess.run([str(FFMPEG), "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", TESTSRC,
                    "-frames:v", "3", "-c:v", "rawvideo", "-pix_fmt", "rgb24", str(clip)], check=True)
    # more frames asked for than the file has: the end of the input ends the run (exit 0)
    img, _ = play(tmp_path, models, frames=10, src=(clip,))
    close(left(img), left(ffmpeg_frames()[2]), "last frame, left")
    close(right(img), right(stylized(models[0])[2]), "last frame, right")
    # --loop: frames 0 1 2 0 1, the 5th shown is source frame 1
    img, _ = play(tmp_path, models, "--loop", frames=5, src=(clip,), name="loop.png")
    close(left(img), left(ffmpeg_frames()[1]), "looped, left")
    close(right(img), right(stylized(models[0])[1]), "looped, right")


def test_pause_holds_the_frame(tmp_path, models):
    # paused after frame 2: frames 3 and 4 repeat source frame 1, and a style
    # switch while paused shows on the held frame
    img, _ = play(tmp_path, models, "--keys", "2:space,3:2", frames=5)
    close(left(img), left(ffmpeg_frames()[1]), "held frame, left")
    close(right(img), right(stylized(models[1])[1]), "held frame restyled with model 2")


# ---------------------------------------------------------------------------
# clean exits, no leaks

def leak_runner():
    """(program, wrapper) for a leak check: the ASan build, else valgrind."""
    if PLAYER_ASAN.exists():
        return PLAYER_ASAN, ()
    if shutil.which("valgrind"):
        return PLAYER, ("valgrind", "--leak-check=full", "--errors-for-leak-kinds=definite",
                        "--error-exitcode=99", "--quiet")
    pytest.skip("neither the ASan build (make player) nor valgrind is available")


def test_quit_key_exits_0_without_leaks(tmp_path, models):
    prog, wrapper = leak_runner()
    # switch, pause (the held frame repeats), strength/mode/colour/smoothing
    # changes, view and overlay toggles, a screenshot key, then q
    keys = "1:2,2:space,3:+,3:t,3:c,3:s,4:space,4:v,5:o,5:p,6:q"
    proc = run_player("-m", models[0], "-m", models[1], "-f", "lavfi", TESTSRC, "--threads", 2,
                      "--keys", keys, "--screenshot", tmp_path / "q.png", prog=prog, wrapper=wrapper,
                      timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "LeakSanitizer" not in proc.stderr
    assert (tmp_path / "q.png").exists()
    assert list(tmp_path.glob("stylize-player-*.png")), "the 'p' key saved no screenshot"


def test_realtime_mode_interrupted_exits_0_without_leaks(tmp_path, models):
    """Not lockstep: paced source faster than the stylizer (frames dropped);
    SIGINT (the window's close) mid-stream shuts the threads down cleanly."""
    prog, wrapper = leak_runner()
    if wrapper:
        pytest.skip("needs the ASan build (make player): too slow under valgrind")
    proc = subprocess.Popen([*wrapper, str(prog), "-m", models[0], "-m", models[1], "-f", "lavfi",
                             f"testsrc2=size={W}x{H}:rate=50", "--threads", "2",
                             "--screenshot", str(tmp_path / "rt.png")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=player_env(extra={"ASAN_OPTIONS": SAN_ENV["ASAN_OPTIONS"] + ":handle_abort=1"}),
                            # A test run started in the background by a shell inherits SIGINT
                            # ignored, and SDL leaves an ignored SIGINT alone: the player would
                            # never see it (what hung here twice, 2026-11-30). Users' terminals
                            # deliver it; so does this.
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        # Say where each thread waits, then abort: ASan prints the main thread's stack.
        tasks = sorted(Path("/proc/%d/task" % proc.pid).glob("*"))
        where = ["%s %s" % ((t / "comm").read_text().strip(), (t / "wchan").read_text().strip())
                 for t in tasks if (t / "wchan").exists()]
        proc.send_signal(signal.SIGABRT)
        out, err = proc.communicate(timeout=60)
        pytest.fail("no exit 120 s after SIGINT; threads: %s\n%s" % (", ".join(where), err[-6000:]))
    assert proc.returncode == 0, err[-4000:]
    assert "LeakSanitizer" not in err
    assert read_png(tmp_path / "rt.png").shape == (H, W, 3)


# ---------------------------------------------------------------------------
# errors: exit 1 with a message that names the problem

def test_missing_model(models):
    proc = run_player("-m", models[0], "-m", "/nonexistent/nope.safetensors", "-f", "lavfi", TESTSRC,
                      "--exit-after", 1)
    assert proc.returncode == 1
    assert "nope.safetensors" in proc.stderr and "cannot load model 2" in proc.stderr


def test_corrupt_model(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......")
    proc = run_player("-m", bad, "-f", "lavfi", TESTSRC, "--exit-after", 1)
    assert proc.returncode == 1
    assert "cannot load model 1" in proc.stderr and "bad.safetensors" in proc.stderr


def test_unreadable_input(tmp_path, models):
    proc = run_player("-m", models[0], tmp_path / "missing.mp4", "--exit-after", 1)
    assert proc.returncode == 1
    assert "cannot open input" in proc.stderr and "missing.mp4" in proc.stderr
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(4096))
    proc = run_player("-m", models[0], junk, "--exit-after", 1)
    assert proc.returncode == 1
    assert "junk.mp4" in proc.stderr


def test_missing_camera(models):
    dev = "/dev/video99"
    assert not os.path.exists(dev)
    proc = run_player("-m", models[0], dev, "--video-size", "320x240", "--framerate", "15", "--exit-after", 1)
    assert proc.returncode == 1
    assert "cannot open camera '/dev/video99'" in proc.stderr


def test_bad_lavfi_graph(models):
    proc = run_player("-m", models[0], "-f", "lavfi", "nosuchsource=size=10x10", "--exit-after", 1)
    assert proc.returncode == 1
    assert "lavfi" in proc.stderr


def test_no_display(models):
    proc = run_player("-m", models[0], "-f", "lavfi", TESTSRC, "--exit-after", 1, driver="nosuchdriver")
    assert proc.returncode == 1
    assert "cannot open a window" in proc.stderr


def test_bad_arguments(models):
    for args, msg in [((), "no model"), (("-m", models[0]), "no input"),
                      (("-m", models[0], "x.mp4", "--keys", "3"), "--keys"),
                      (("-m", models[0], "x.mp4", "--strength", "2"), "--strength"),
                      (("-m", models[0], "x.mp4", "--view", "nope"), "--view")]:
        proc = run_player(*args)
        assert proc.returncode == 1, args
        assert msg in proc.stderr, (args, proc.stderr)
