"""`make install` / `make uninstall` (PREFIX, DESTDIR, PROGRAM_SUFFIX).

1. The library: a program builds against the installed libstylize through
   pkg-config (static and shared) and runs.
2. Everything: installed into a temporary DESTDIR (nothing of the system is
   touched), the staged tree moved to its PREFIX as a package manager would,
   then each installed program run with the source and build trees out of
   reach (an empty tmpfs mounted over each in a private mount namespace; where
   namespaces are not allowed, the build tree and models/ are renamed aside
   and put back afterwards): ffmpeg-stylize, ffprobe-stylize, ffplay-stylize,
   stylize-image, stylize-player, stylize-batch, stylize-convert, finding the
   models by name in PREFIX. Their outputs equal the build tree's programs'.
   Then `make uninstall` leaves no file behind.
"""
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, BUILD

PROGRAM = r"""
#include <stdio.h>
#include <stylize.h>
int main(int argc, char **argv) {
    char err[512];
    stylize_ctx *ctx;
    printf("%s\n", stylize_version());
    if (stylize_create(argv[1], NULL, &ctx, err, sizeof(err)) == 0) return 1;
    printf("%s\n", err);
    return 0;
}
"""
SUFFIX = "-stylize"
FF_PROGS = ["ffmpeg", "ffprobe", "ffplay"]
STYLE = "starry_night"               # a shipped classic model (stylize-convert converts those), found by name
W, H = 64, 48


def config_value(key):
    cfg = REPO / "config.mk"
    for line in cfg.read_text().splitlines() if cfg.exists() else []:
        if line.startswith(key + " :="):
            return line.split(":=", 1)[1].strip()
    return ""


WITH_FFMPEG = config_value("ENABLE_FFMPEG") != "no" and not os.environ.get("STYLIZE_NO_FFMPEG")


def make(*args, cwd=REPO):
    proc = subprocess.run(["make", "-s", *args, f"BUILD={BUILD}"], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, f"make {' '.join(args)}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def files_under(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink())


def test_install_and_link(tmp_path):
    dest = tmp_path / "root"
    make("install", f"DESTDIR={dest}", "PREFIX=/opt/sty")
    prefix = dest / "opt/sty"
    for f in ["include/stylize.h", "lib/libstylize.a", "lib/libstylize.so.0", "lib/libstylize.so",
              "lib/pkgconfig/stylize.pc", "bin/stylize-image"]:
        assert (prefix / f).exists(), f
    # every shipped model, and the licence text the BSD-3 ones must travel with
    shipped = {p.name for p in (REPO / "models").iterdir() if p.suffix in (".safetensors", ".txt")}
    assert {p.name for p in (prefix / "share/stylize/models").iterdir()} == shipped
    pc = (prefix / "lib/pkgconfig/stylize.pc").read_text()
    assert "prefix=/opt/sty" in pc
    src = tmp_path / "prog.c"
    src.write_text(PROGRAM)
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib/pkgconfig"), PKG_CONFIG_SYSROOT_DIR=str(dest))
    for static in (False, True):
        flags = subprocess.run(["pkg-config", "--cflags", "--libs"] + (["--static"] if static else []) + ["stylize"],
                               env=env, check=True, capture_output=True, text=True).stdout.split()
        exe = tmp_path / ("prog_static" if static else "prog_shared")
        libs = [f for f in flags if not f.startswith("-I")]
        if static:  # link the archive itself
            libs = [str(prefix / "lib/libstylize.a")] + [f for f in libs if f not in ("-lstylize",) and not f.startswith("-L")]
        subprocess.run(["cc", str(src), "-o", str(exe)] + [f for f in flags if f.startswith("-I")] + libs,
                       check=True, capture_output=True, text=True)
        run_env = dict(os.environ, LD_LIBRARY_PATH=str(prefix / "lib"))
        out = subprocess.run([str(exe), str(tmp_path / "missing.safetensors")], env=run_env,
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert "missing.safetensors" in out.stdout and "No such file" in out.stdout


# ---------------------------------------------------------------------------
# everything, run with the trees out of reach

def namespace_prefix():
    """A command prefix that runs its command with empty tmpfs mounts over the
    source and build trees, or None where mount namespaces are not allowed."""
    hide = [str(REPO)] + ([str(BUILD)] if REPO not in BUILD.parents and BUILD != REPO else [])
    script = " && ".join(f"mount -t tmpfs stylize-hidden '{d}'" for d in hide) + ' && exec "$@"'
    for unshare in (["unshare", "-m"], ["unshare", "-rm"]):
        cmd = unshare + ["sh", "-c", script, "sh"]
        try:
            probe = subprocess.run(cmd + ["sh", "-c", f"test ! -e '{REPO / 'Makefile'}'"],
                                   capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return cmd
    return None


class TreesAside:
    """Fallback without namespaces: rename the build tree and models/ aside."""

    def __init__(self):
        self.moves = [(BUILD, BUILD.with_name(BUILD.name + ".moved-aside")),
                      (REPO / "models", REPO / "models.moved-aside")]

    def __enter__(self):
        for a, b in self.moves:
            assert not b.exists(), f"{b} exists: a previous test run did not finish; move it back to {a}"
        done = []
        try:
            for a, b in self.moves:
                a.rename(b)
                done.append((a, b))
        except BaseException:
            for a, b in reversed(done):
                b.rename(a)
            raise
        return self

    def __exit__(self, *exc):
        for a, b in reversed(self.moves):
            if b.exists():
                b.rename(a)


def rgb_frames(ffmpeg, path, env=None):
    out = subprocess.run([str(ffmpeg), "-nostdin", "-v", "error", "-i", str(path), "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, env=env, check=True).stdout
    return np.frombuffer(out, np.uint8).reshape(-1, H, W, 3)


@pytest.mark.skipif(not WITH_FFMPEG, reason="built with --disable-ffmpeg: no ffmpeg or player to install")
def test_install_everything_runs_without_trees(tmp_path):
    prefix = tmp_path / "prefix"
    stage = tmp_path / "stage"
    system_before = sorted(os.listdir("/usr/local/bin")) if os.path.isdir("/usr/local/bin") else []
    make("install", f"DESTDIR={stage}", f"PREFIX={prefix}", f"PROGRAM_SUFFIX={SUFFIX}")
    staged = stage / prefix.relative_to("/")
    installed = files_under(stage)
    assert all(f.startswith(str(prefix.relative_to("/")) + "/") for f in installed), installed
    expect = ([f"bin/{p}{SUFFIX}" for p in FF_PROGS] +
              [f"bin/{p}" for p in ("stylize-image", "stylize-player", "stylize-batch", "stylize-convert")] +
              ["lib/libstylize.a", "lib/libstylize.so.0", "lib/libstylize.so", "lib/pkgconfig/stylize.pc",
               "include/stylize.h", "libexec/stylize/ffmpeg", "libexec/stylize/ffprobe",
               "share/stylize/python/stylize-batch", "share/stylize/python/convert_model.py",
               "share/stylize/python/stylize_safetensors.py"] +
              [f"share/stylize/models/{m.name}" for m in (REPO / "models").glob("*.safetensors")] +
              [f"share/man/man1/{m}{SUFFIX}.1" for m in FF_PROGS + ["ffmpeg-filters", "ffmpeg-all"]])
    for f in expect:
        assert (staged / f).exists(), f"{f} was not installed"
    assert (sorted(os.listdir("/usr/local/bin")) if os.path.isdir("/usr/local/bin") else []) == system_before
    man = (staged / f"share/man/man1/ffmpeg-filters{SUFFIX}.1").read_text(errors="replace")
    assert "stylize" in man and "thumb" in man, "ffmpeg-filters.1 lacks the stylize section"
    # No build path in the installed library or programs that link it.
    for f in ["lib/libstylize.a", "lib/libstylize.so.0", "bin/stylize-image", "bin/stylize-player",
              f"bin/ffmpeg{SUFFIX}"]:
        assert str(REPO / "models").encode() not in (staged / f).read_bytes(), f"{f} has the source tree's models/"

    # What the build tree's programs make of the same inputs (reference).
    work = tmp_path / "work"
    work.mkdir()
    src_png, src_mp4 = work / "in.png", work / "in.mp4"
    tree_ff = BUILD / "bin" / "ffmpeg"
    subprocess.run([str(tree_ff), "-v", "error", "-f", "lavfi", "-i", f"testsrc2=s={W}x{H}:r=10:d=0.3",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(src_mp4)], check=True)
    subprocess.run([str(tree_ff), "-v", "error", "-i", str(src_mp4), "-frames:v", "1", str(src_png)], check=True)
    ref_png = work / "ref.png"
    subprocess.run([str(BUILD / "bin" / "stylize-image"), "-m", STYLE, "--threads", "2", str(src_png),
                    str(ref_png)], check=True)
    ref_graph = subprocess.run([str(tree_ff), "-v", "error", "-i", str(src_mp4), "-vf",
                                f"stylize=model={STYLE}:threads=2", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                               capture_output=True, check=True).stdout
    ref_shot = work / "ref_shot.png"
    player_args = ["-m", STYLE, str(src_png), "--exit-after", "2", "--no-overlay", "--threads", "2",
                   "--view", "stylized"]
    env = dict(os.environ, SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy")
    env.pop("DISPLAY", None)
    env.pop("STYLIZE_MODEL_PATH", None)
    env.pop("STYLIZE_FFMPEG", None)
    subprocess.run([str(BUILD / "bin" / "stylize-player"), *player_args, "--screenshot", str(ref_shot)],
                   env=env, check=True, capture_output=True)

    # The staged tree becomes the real prefix; the trees go out of reach.
    shutil.move(str(staged), str(prefix))
    bindir = prefix / "bin"
    env["PATH"] = f"{bindir}:/usr/bin:/bin"
    wrap = namespace_prefix()
    ctx = TreesAside() if wrap is None else None

    def run(*cmd, **kw):
        proc = subprocess.run([*(wrap or []), *[str(c) for c in cmd]], cwd=work, env=env,
                              capture_output=True, timeout=300, **kw)
        assert proc.returncode == 0, f"{' '.join(map(str, cmd))}:\n{proc.stderr.decode(errors='replace')[-3000:]}"
        return proc

    try:
        if ctx:
            ctx.__enter__()
        # ffmpeg: a style by name, from PREFIX/share/stylize/models.
        out = run(f"ffmpeg{SUFFIX}", "-nostdin", "-v", "error", "-i", src_mp4, "-vf",
                  f"stylize=model={STYLE}:threads=2", "-f", "rawvideo", "-pix_fmt", "rgb24", "-").stdout
        assert out == ref_graph, "installed ffmpeg's stylize output differs from the build tree's"
        run(f"ffmpeg{SUFFIX}", "-nostdin", "-v", "error", "-i", src_mp4, "-vf", f"stylize=model={STYLE}",
            "-c:v", "libx264", work / "styled.mp4")
        frames = run(f"ffprobe{SUFFIX}", "-v", "error", "-count_frames", "-select_streams", "v:0",
                     "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", work / "styled.mp4").stdout
        assert frames.decode().strip() == "3"
        shown = run(f"ffplay{SUFFIX}", "-hide_banner", "-loglevel", "info", "-nostats", "-autoexit", "-an",
                    "-noframedrop", "-vf", "showinfo", work / "styled.mp4").stderr.decode(errors="replace")
        assert len(re.findall(r"\] n: *\d+ pts:", shown)) == 3, shown[-2000:]
        # stylize-image, stylize-player: same pixels as the build tree's.
        run("stylize-image", "-m", STYLE, "--threads", "2", src_png, work / "img.png")
        assert (work / "img.png").read_bytes() == ref_png.read_bytes()
        run("stylize-player", *player_args, "--screenshot", work / "shot.png")
        assert (work / "shot.png").read_bytes() == ref_shot.read_bytes()
        # stylize-batch: runs this prefix's ffmpeg.
        run("stylize-batch", "-m", STYLE, "-o", work / "batch", src_mp4)
        outs = list((work / "batch").glob("[!.]*.mp4"))
        assert len(outs) == 1, outs
        got = rgb_frames(prefix / "bin" / f"ffmpeg{SUFFIX}", outs[0]).astype(float)
        want = np.frombuffer(ref_graph, np.uint8).reshape(-1, H, W, 3)
        assert got.shape == want.shape
        mse = np.mean((got - want) ** 2)       # stylized, then x264 at crf 18
        assert 10 * np.log10(255 ** 2 / max(mse, 1e-9)) > 30, f"batch output is not the stylized video (MSE {mse:.1f})"
        # stylize-convert: re-convert a model; the result stylizes like the original.
        run("stylize-convert", prefix / "share/stylize/models" / f"{STYLE}.safetensors", "-o", work / "conv.safetensors")
        run("stylize-image", "-m", work / "conv.safetensors", "--threads", "2", src_png, work / "conv.png")
        assert (work / "conv.png").read_bytes() == ref_png.read_bytes()
    finally:
        if ctx:
            ctx.__exit__(None, None, None)
        shutil.move(str(prefix), str(staged))

    make("uninstall", f"DESTDIR={stage}", f"PREFIX={prefix}", f"PROGRAM_SUFFIX={SUFFIX}")
    assert files_under(stage) == [], "left behind by make uninstall"
