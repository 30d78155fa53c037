#!/usr/bin/python3
"""Contact sheet of styles: every content image next to its stylizations.

    tools/contact_sheet.py [-m MODEL ...] [-o docs/images/contact_sheet.jpg]

Rows: Kodak images from ../shared/media/kodak and one frame of
../shared/media/cockatoo.mp4; columns: the original, then one column per
model (default: every models/*.safetensors, the project's shipped styles).
Each image is stylized at its own size by build/bin/stylize-image (the
library's default tin mode, thumb 512) and the sheet is scaled down to
--cell pixels per column. The frame comes from build/bin/ffmpeg.
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DEFAULT_IMAGES = ["kodim23.png", "kodim15.png", "kodim05.png", "kodim13.png"]


def model_name(build, model):
    info = subprocess.run([str(build / "bin" / "stylize-image"), "-m", str(model), "--info"],
                          capture_output=True, text=True, check=True)
    facts = json.loads(info.stdout)
    name = facts.get("style") or model.stem
    return name + (" (half width)" if facts.get("width1", 32) < 32 and "fast" not in name else "")


def compose(titles, rows, cell):
    """The sheet: a title row, then one row per (label, [PIL images]), each
    image scaled to `cell` pixels wide (the row's height follows its first
    image), 2 px between rows, the label written on the first cell."""
    cw, head = cell, 22  # column width, title row height
    heights = [round(cells[0].height * cw / cells[0].width) for _, cells in rows]
    sheet = Image.new("RGB", (cw * len(titles), head + sum(heights) + 2 * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for i, title in enumerate(titles):
        draw.text((i * cw + 6, 5), title, fill="black", font=font)
    y = head
    for (label, cells), h in zip(rows, heights):
        for i, c in enumerate(cells):
            sheet.paste(c.resize((cw, h), Image.LANCZOS), (i * cw, y))
        draw.text((6, y + 4), label, fill="white", font=font, stroke_width=1, stroke_fill="black")
        y += h + 2
    return sheet


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", action="append", help="model (repeatable; default: models/*.safetensors)")
    ap.add_argument("-o", "--output", default=str(REPO / "docs" / "images" / "contact_sheet.jpg"))
    ap.add_argument("--images", default=",".join(DEFAULT_IMAGES), help="Kodak file names (comma-separated)")
    ap.add_argument("--video", default=str(SHARED / "media" / "cockatoo.mp4"), help="video for the frame row")
    ap.add_argument("--video-time", default="2", help="time of the video frame in seconds [2]")
    ap.add_argument("--video-width", type=int, default=1280, help="the frame is scaled to this width [1280]")
    ap.add_argument("--cell", type=int, default=256, help="column width of the sheet in pixels [256]")
    ap.add_argument("--build", default=str(REPO / "build"))
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    build = Path(args.build)
    models = [Path(m) for m in (args.model or sorted(str(p) for p in (REPO / "models").glob("*.safetensors")))]
    if not models:
        sys.exit("contact_sheet.py: no models (give -m or put .safetensors files in models/)")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        inputs = [(n.replace(".png", ""), SHARED / "media" / "kodak" / n) for n in args.images.split(",") if n]
        if args.video:
            frame = tmp / "frame.png"
            subprocess.run([str(build / "bin" / "ffmpeg"), "-v", "error", "-ss", args.video_time, "-i", args.video,
                            "-frames:v", "1", "-vf", "scale=%d:-2" % args.video_width, "-y", str(frame)], check=True)
            inputs.append((Path(args.video).stem + " @%ss" % args.video_time, frame))
        names = [model_name(build, m) for m in models]
        rows = []
        for label, src in inputs:
            cells = [Image.open(src).convert("RGB")]
            for m in models:
                out = tmp / ("%s_%s.png" % (Path(src).stem, m.stem))
                subprocess.run([str(build / "bin" / "stylize-image"), "-m", str(m), "--threads", str(args.threads),
                                str(src), str(out)], check=True)
                cells.append(Image.open(out).convert("RGB"))
            rows.append((label, cells))
            print("contact_sheet: %s done" % label, file=sys.stderr)

    sheet = compose(["original"] + names, rows, args.cell)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.output, quality=88)
    print("contact_sheet: wrote %s (%dx%d)" % (args.output, sheet.width, sheet.height))


if __name__ == "__main__":
    main()
