"""The filter on the formats people have, in the full FFmpeg build
($STYLIZE_BUILD/bin/ffmpeg, ./configure --ffmpeg-profile=full).

    STYLIZE_BUILD=$PWD/build /usr/bin/python3 -m pytest -q tests/test_formats.py

First, the build has what users chain with the filter and the codecs of
the files they have (vp8/vp9/opus/AV1/ProRes/DNxHD/MPEG-2/FLAC/Vorbis/AC-3
decoders, x264/x265/vpx/aom/SVT-AV1/opus/lame encoders, eq/drawtext/blend/
xfade/zscale/subtitles filters, https). Each source file is made by the
built ffmpeg itself (testsrc2 + sine), then
decoded, stylized and re-encoded with its usual encoder:
  * WebM: VP9 (libvpx-vp9) + Opus (libopus)
  * AV1 in MP4: SVT-AV1 (libsvtav1), decoded by libdav1d
  * ProRes 422 HQ (prores_ks, 10-bit) + PCM in MOV
  * MPEG-2 video + MP2 audio in an MPEG program stream (a DVD's .mpg)
Checked: the output's codecs, size, frame count and audio, and its frames
against the filter's own output on the decoded source (equal within the
codec's loss, and far from the unstylized source). Then a chain with eq,
drawtext (Debian's DejaVu font) and blend, each part checked against the
composition computed in steps, and ffplay (SDL's dummy video driver) showing
exactly the frames ffmpeg decodes.

Frames are 64x64 (SVT-AV1's minimum) and few; the shipped
starry_night_live model keeps it to seconds. Skipped, with the reason, on a
minimal FFmpeg build (--ffmpeg-profile=minimal), which has none of these
codecs; on a full build a missing codec is a failure.
"""
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("STYLIZE_BUILD", REPO / "build"))
FFMPEG = Path(os.environ.get("STYLIZE_FFMPEG", BUILD / "bin" / "ffmpeg"))
FFPROBE = FFMPEG.with_name("ffprobe")
FFPLAY = FFMPEG.with_name("ffplay")
MODEL = REPO / "models" / "starry_night_live.safetensors"
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")   # fonts-dejavu-core
W = H = 64
FRAMES = 5
RATE = 10
STYLIZE = f"stylize=model={MODEL}:threads=2"

if os.environ.get("STYLIZE_NO_FFMPEG"):
    pytest.skip("STYLIZE_NO_FFMPEG is set", allow_module_level=True)


def run(cmd, env=None, timeout=300):
    cmd = [str(c) for c in cmd]
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        pytest.fail("%s\nexited %d:\n%s" % (" ".join(cmd), proc.returncode,
                                            proc.stderr.decode(errors="replace")[-3000:]))
    return proc


def ffmpeg(*args, loglevel="error"):
    return run([FFMPEG, "-nostdin", "-hide_banner", "-loglevel", loglevel, "-y", *args])


def frames_rgb(*input_args, vf=None):
    """Decode to rgb24 frames (n, H, W, 3)."""
    out = ffmpeg(*input_args, *(["-vf", vf] if vf else []), "-f", "rawvideo", "-pix_fmt", "rgb24", "-").stdout
    return np.frombuffer(out, np.uint8).reshape(-1, H, W, 3)


def probe(path):
    out = run([FFPROBE, "-v", "error", "-count_frames", "-show_entries",
               "stream=codec_type,codec_name,width,height,nb_read_frames,sample_rate,duration:format=format_name",
               "-of", "json", path]).stdout
    return json.loads(out)


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


@pytest.fixture(scope="module")
def components():
    """What this ffmpeg has; skips the module on a minimal build."""
    if not FFMPEG.exists():
        pytest.fail(f"{FFMPEG} is missing: run `make ffmpeg` (or set STYLIZE_NO_FFMPEG=1)")
    if not MODEL.exists():
        pytest.fail(f"{MODEL} is missing (shipped in models/)")
    conf = run([FFMPEG, "-hide_banner", "-buildconf"]).stdout.decode()
    if "--disable-everything" in conf:
        pytest.skip("FFmpeg was built with ./configure --ffmpeg-profile=minimal: it has none of "
                    "these codecs (rebuild with the default --ffmpeg-profile=full)")
    have = set()
    for kind in ("encoders", "decoders", "filters", "muxers"):
        text = run([FFMPEG, "-hide_banner", f"-{kind}"]).stdout.decode()
        have |= {f"{kind[:-1]}:{m.group(1)}" for m in re.finditer(r"^ +[A-Z.|]+ +(\S+)", text, re.M)}
    # -protocols: "Input:" then "Output:", one name per line.
    text = run([FFMPEG, "-hide_banner", "-protocols"]).stdout.decode()
    have |= {f"protocol:{name.strip()}" for name in text.splitlines()[1:] if name.startswith("  ")}
    return have


def need(components, *names):
    missing = [n for n in names if n not in components]
    assert not missing, f"this full FFmpeg build lacks {missing} (see ./configure's library list)"


# What users chain with stylize and the files they have (the issue that made
# the full profile the default): each must be in a full build.
EXPECTED = (["decoder:" + d for d in ("vp8", "vp9", "opus", "libdav1d", "prores", "dnxhd", "mpeg2video",
                                      "flac", "vorbis", "ac3", "h264", "hevc")] +
            ["encoder:" + e for e in ("libx264", "libx265", "libvpx", "libvpx-vp9", "libaom-av1", "libsvtav1",
                                      "libopus", "libvorbis", "libmp3lame", "libwebp", "aac", "prores_ks")] +
            ["filter:" + f for f in ("blend", "eq", "drawtext", "unsharp", "fade", "xfade", "tmix",
                                     "minterpolate", "zscale", "subtitles", "stylize")] +
            ["protocol:" + p for p in ("https", "tls", "file", "pipe")])


def test_full_build_has_what_users_expect(components):
    need(components, *EXPECTED)


# name: (extension, source encoding args, re-encoding args, decoder, expected video/audio codec, min PSNR)
FORMATS = {
    "webm-vp9-opus": (".webm",
                      ["-c:v", "libvpx-vp9", "-crf", "20", "-b:v", "0", "-deadline", "realtime", "-cpu-used", "8",
                       "-c:a", "libopus"],
                      ["-c:v", "libvpx-vp9", "-crf", "20", "-b:v", "0", "-deadline", "realtime", "-cpu-used", "8",
                       "-c:a", "libopus"],
                      None, ("vp9", "opus"), 26),
    "av1-mp4": (".mp4",
                ["-c:v", "libsvtav1", "-preset", "12", "-crf", "20", "-an"],
                ["-c:v", "libsvtav1", "-preset", "12", "-crf", "20", "-an"],
                "libdav1d", ("av1", None), 26),
    "prores-mov": (".mov",
                   ["-c:v", "prores_ks", "-profile:v", "hq", "-c:a", "pcm_s16le"],
                   ["-c:v", "prores_ks", "-profile:v", "hq", "-c:a", "pcm_s16le"],
                   None, ("prores", "pcm_s16le"), 38),
    "mpeg2-mpg": (".mpg",
                  ["-c:v", "mpeg2video", "-q:v", "2", "-c:a", "mp2"],
                  ["-c:v", "mpeg2video", "-q:v", "2", "-c:a", "mp2"],
                  None, ("mpeg2video", "mp2"), 28),
}
NEEDS = {
    "webm-vp9-opus": ["encoder:libvpx-vp9", "decoder:vp9", "encoder:libopus", "decoder:opus", "muxer:webm"],
    "av1-mp4": ["encoder:libsvtav1", "decoder:libdav1d", "muxer:mp4"],
    "prores-mov": ["encoder:prores_ks", "decoder:prores", "muxer:mov"],
    "mpeg2-mpg": ["encoder:mpeg2video", "decoder:mpeg2video", "encoder:mp2", "decoder:mp2", "muxer:mpeg"],
}


@pytest.mark.parametrize("name", list(FORMATS))
def test_format_through_filter(components, tmp_path, name):
    ext, src_args, out_args, decoder, (vcodec, acodec), min_psnr = FORMATS[name]
    need(components, *NEEDS[name])
    src, out = tmp_path / f"src{ext}", tmp_path / f"out{ext}"
    audio = ["-f", "lavfi", "-i", f"sine=f=440:r=48000:d={FRAMES / RATE}"] if acodec else []
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=s={W}x{H}:r={RATE}:d={FRAMES / RATE}", *audio,
           "-pix_fmt", "yuv422p10le" if vcodec == "prores" else "yuv420p", *src_args, src)
    dec = ["-c:v", decoder] if decoder else []

    # The source is what it claims to be.
    streams = {s["codec_type"]: s for s in probe(src)["streams"]}
    assert streams["video"]["codec_name"] == vcodec
    if acodec:
        assert streams["audio"]["codec_name"] == acodec

    ffmpeg(*dec, "-i", src, "-vf", STYLIZE, *out_args, out)

    info = probe(out)
    streams = {s["codec_type"]: s for s in info["streams"]}
    v = streams["video"]
    assert (v["codec_name"], v["width"], v["height"]) == (vcodec, W, H)
    assert int(v["nb_read_frames"]) == FRAMES
    if acodec:
        assert streams["audio"]["codec_name"] == acodec, "audio re-encoded with its usual encoder"

    # The frames: the filter's output on the decoded source, within the codec's loss.
    source = frames_rgb(*dec, "-i", src)
    want = frames_rgb(*dec, "-i", src, vf=f"{STYLIZE},format=rgb24")
    got = frames_rgb(*(["-c:v", decoder] if decoder else []), "-i", out)
    assert len(source) == len(want) == len(got) == FRAMES
    for i in range(FRAMES):
        near, far = psnr(got[i], want[i]), psnr(got[i], source[i])
        assert near >= min_psnr, f"{name} frame {i}: {near:.1f} dB from the filter's output"
        assert far < 20 and near > far + 8, f"{name} frame {i}: not stylized ({far:.1f} dB from the source)"


def test_chain_eq_drawtext_blend(components, tmp_path):
    """eq before the filter, drawtext after it, blend with the original:
    each stage equals the composition computed in separate runs."""
    need(components, "filter:eq", "filter:drawtext", "filter:blend")
    assert FONT.exists(), f"{FONT} is missing: apt-get install fonts-dejavu-core"
    src = tmp_path / "src.nut"
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=s={W}x{H}:r={RATE}:d={2 / RATE},format=rgb24",
           "-c:v", "rawvideo", src)
    eq = "eq=saturation=0.4"   # testsrc2's colours are saturated already: take saturation away
    # drawtext's box: white text at (4, 4), 16 px high at most (fontsize 14).
    text = f"drawtext=fontfile={FONT}:text=Sty:x=4:y=4:fontsize=14:fontcolor=white"

    orig = frames_rgb("-i", src)
    eq_only = frames_rgb("-i", src, vf=f"{eq},format=rgb24")
    styl = frames_rgb("-i", src, vf=f"{STYLIZE},format=rgb24")
    eq_styl = frames_rgb("-i", src, vf=f"{eq},format=rgb24,{STYLIZE},format=rgb24")
    eq_styl_direct = frames_rgb("-i", eq_only_path(tmp_path, eq_only), vf=f"{STYLIZE},format=rgb24")
    with_text = frames_rgb("-i", src, vf=f"{eq},format=rgb24,{STYLIZE},format=rgb24,{text},format=rgb24")
    blended = frames_rgb("-i", src, "-filter_complex",
                         f"[0:v]format=rgb24,split[o][x];[x]{eq},format=rgb24,{STYLIZE},format=rgb24,"
                         f"{text},format=rgb24[t];[t][o]blend=all_mode=average,format=rgb24[v]", "-map", "[v]")
    assert len(orig) == len(blended) == 2

    # eq: less saturated (channels closer together), and the filter sees eq's frames.
    assert np.std(eq_only.astype(int), axis=3).mean() < np.std(orig.astype(int), axis=3).mean() * 0.6
    assert np.array_equal(eq_styl, eq_styl_direct)
    assert psnr(eq_styl[0], styl[0]) < 40, "eq changed what the filter stylized"
    # drawtext: pixels change only inside the text's box, and enough of them.
    diff = np.any(with_text != eq_styl, axis=3)
    ys, xs = np.nonzero(diff[0])
    assert len(ys) > 30, "drawtext drew nothing"
    assert ys.min() >= 4 and ys.max() < 4 + 20 and xs.min() >= 4 and xs.max() < 4 + 40, \
        f"drawtext outside its box: rows {ys.min()}-{ys.max()}, columns {xs.min()}-{xs.max()}"
    # blend average: (text + original) / 2, rounded, per channel.
    mean = (with_text.astype(int) + orig.astype(int) + 1) // 2
    assert np.abs(blended.astype(int) - mean).max() <= 1


def eq_only_path(tmp_path, frames):
    """eq's frames as a lossless file, to stylize them in a run of their own."""
    path = tmp_path / "eq.nut"
    proc = subprocess.run([str(FFMPEG), "-nostdin", "-loglevel", "error", "-y", "-f", "rawvideo",
                           "-pix_fmt", "rgb24", "-s", f"{W}x{H}", "-r", str(RATE), "-i", "-",
                           "-c:v", "rawvideo", str(path)], input=frames.tobytes(), capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return path


def showinfo_checksums(stderr):
    return re.findall(r"\] n:\s*\d+ .*? checksum:([0-9A-F]{8})", stderr)


def test_ffplay_shows_stylized_file(components, tmp_path):
    """ffplay (SDL dummy video driver, no audio) plays a stylized WebM to the
    end; every frame it decodes and filters equals ffmpeg's decode of the
    file, and the filter also runs inside ffplay."""
    need(components, "encoder:libvpx-vp9", "filter:showinfo")
    assert FFPLAY.exists(), f"{FFPLAY} is missing: run `make ffmpeg`"
    clip = tmp_path / "stylized.webm"
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=s={W}x{H}:r={RATE}:d={FRAMES / RATE},{STYLIZE}",
           "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-pix_fmt", "yuv420p", clip)
    want = showinfo_checksums(ffmpeg("-i", clip, "-vf", "showinfo", "-f", "null", "-",
                                     loglevel="info").stderr.decode(errors="replace"))
    want_restyled = showinfo_checksums(ffmpeg("-i", clip, "-vf", f"{STYLIZE},format=rgb24,showinfo", "-f", "null", "-",
                                              loglevel="info").stderr.decode(errors="replace"))
    assert len(want) == len(want_restyled) == FRAMES
    env = dict(os.environ, SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy")
    for vf, expect in (("showinfo", want), (f"{STYLIZE},format=rgb24,showinfo", want_restyled)):
        # -noframedrop: ffplay would otherwise drop late frames before its filters.
        proc = run([FFPLAY, "-hide_banner", "-loglevel", "info", "-nostats", "-autoexit", "-an", "-noframedrop",
                    "-x", str(W), "-y", str(H), "-vf", vf, clip], env=env, timeout=120)
        got = showinfo_checksums(proc.stderr.decode(errors="replace"))
        assert got == expect, f"ffplay -vf {vf}: frames {got} != ffmpeg's {expect}"
