"""A line along the frame borders: the statistic tests/test_models.py asserts
on and tools/style_quality.py reports (issue 14).

A style network that learned something wrong at its padded borders draws the
outermost row or column in a colour of its own. Such a line is coherent
along the whole border, so it shows in the row-mean step between the
outermost row and the next (and between rows 1 and 2, for a 2-pixel line),
while textures and edges of the content, being incoherent along the row,
average out. The statistic: the RMS over images and channels of that step,
in 8-bit levels, against the same for the rows deeper inside (2..25). A line
is a step more than LINE_RATIO times the interior RMS and more than
LINE_LEVELS levels.

Measured (384 px, the 4 images below, table in models/README.md): the v1
own models 0.5-2.1x (at most 8.3 levels, at the bottom of great_wave, whose
interior is 7.4); candy's top and left rows 3.7x (17-18 levels, a faint
tinted line); mosaic's top row 9.6x (62 levels, a dark line, which PyTorch
draws too: ../shared/reference) and bottom 3.1x. Lines of 8-12 levels added
to the own models' outputs measure 2-5x. The mean absolute row difference
(unsigned) is much less sensitive: candy's line is 1.3x its interior by it,
a 24-level line added to candy 1.6-2.0x.
"""
import numpy as np

BORDER_IMAGES = ["kodim03", "kodim05", "kodim13", "kodim23"]
BORDER_LONG_SIDE = 384
LINE_RATIO = 3.0
LINE_LEVELS = 4.0
SIDES = ("top", "bottom", "left", "right")


def border_photo(path):
    """A Kodak photo without its own border defects (the files have a black
    bottom row and a duplicated column: 8 px are cropped), as a PIL image
    whose longer side is BORDER_LONG_SIDE."""
    from PIL import Image
    with Image.open(path) as im:
        im = im.convert("RGB")
        im = im.crop((8, 8, im.width - 8, im.height - 8))
        s = BORDER_LONG_SIDE / max(im.size)
        return im.resize((round(im.width * s), round(im.height * s)), Image.LANCZOS)


def border_views(img):
    """The image seen from each side: row 0 is that side's outermost line."""
    t = img.transpose(1, 0, 2)
    return dict(zip(SIDES, (img, img[::-1], t, t[::-1])))


def border_steps(images, depth=26):
    """side -> RMS (over images and channels) of the row-mean step between
    rows k and k+1 counted from that side, k = 0 .. depth-1."""
    out = {}
    for side in SIDES:
        steps = []
        for img in images:
            v = border_views(np.asarray(img, dtype=np.float64))[side]
            steps.append((v[:depth] - v[1:depth + 1]).mean(axis=1))  # (depth, channels)
        out[side] = np.sqrt((np.asarray(steps) ** 2).mean(axis=(0, 2)))
    return out


def border_report(images):
    """[(side, outermost step, interior RMS)] for every side, in SIDES order;
    the outermost step is the larger of rows 0-1 and 1-2 (a 2-pixel line)."""
    rows = []
    for side, s in border_steps(images).items():
        interior = float(np.sqrt((s[2:] ** 2).mean()))
        rows.append((side, float(max(s[0], s[1])), interior))
    return rows


def border_lines(images):
    """[(side, outermost step, interior RMS)] of the sides that have a line."""
    return [(side, round(step, 1), round(interior, 1)) for side, step, interior in border_report(images)
            if step > LINE_LEVELS and step > LINE_RATIO * interior]
