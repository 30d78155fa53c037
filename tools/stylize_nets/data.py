"""Content images and random training crops."""

import math

import numpy as np
import torch

from . import _tr as tr


def read_image(path):
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def fit_long_side(img, max_side):
    import cv2
    h, w = img.shape[:2]
    if max(h, w) <= max_side:
        return img
    s = max_side / max(h, w)
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


class Sampler:
    """Random training crops: random image, random rescale, random crop,
    random horizontal flip; for TIN also the thumbnail of the rescaled whole
    image the crop is cut from."""

    def __init__(self, images, size, scale_range, tin_thumb, tin_ratio, rng, quantum=1):
        """quantum > 1 rounds thumbnail sides to its multiples: on a GPU with
        cudnn.benchmark every new shape is timed again, and free thumbnail
        shapes made TIN iterations 50x slower there."""
        self.images = [img for _, img in images]
        self.size, self.scale_range = size, scale_range
        self.tin_thumb, self.tin_ratio = tin_thumb, tin_ratio
        self.rng = rng
        self.quantum = quantum

    def _loguniform(self, lo, hi):
        if hi <= lo:
            return lo
        return math.exp(self.rng.uniform(math.log(lo), math.log(hi)))

    def _crop(self, img, s):
        """A size x size crop of img rescaled by s (random position)."""
        import cv2
        h, w = img.shape[:2]
        r = self.size / s  # region side in source pixels
        rh, rw = min(h, max(1, int(round(r)))), min(w, max(1, int(round(r))))
        y0 = int(self.rng.integers(0, h - rh + 1))
        x0 = int(self.rng.integers(0, w - rw + 1))
        reg = img[y0:y0 + rh, x0:x0 + rw]
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
        return cv2.resize(reg, (self.size, self.size), interpolation=interp)

    def sample(self, tin=False):
        import cv2
        img = self.images[int(self.rng.integers(len(self.images)))]
        h, w = img.shape[:2]
        smin = self.size / min(h, w)  # the crop must fit
        thumb = None
        if tin:
            # The rescaled whole image is `ratio` times its thumbnail (1..tin_ratio),
            # like a video frame is to the library's 512-px thumbnail.
            ratio = self._loguniform(1.0, self.tin_ratio)
            s = max(smin, min(max(smin, 2.0), self.tin_thumb * ratio / max(h, w)))
            fh, fw = max(1, round(h * s)), max(1, round(w * s))
            th, tw = tr.thumbnail_size(fh, fw, self.tin_thumb)
            if self.quantum > 1:
                q = self.quantum
                th, tw = max(q, round(th / q) * q), max(q, round(tw / q) * q)
            interp = cv2.INTER_AREA if th <= h else cv2.INTER_CUBIC
            thumb = cv2.resize(img, (tw, th), interpolation=interp)
        else:
            lo, hi = self.scale_range
            s = self._loguniform(max(smin, lo), max(smin, hi))
        crop = self._crop(img, s)
        if self.rng.random() < 0.5:
            crop = crop[:, ::-1]
            if thumb is not None:
                thumb = thumb[:, ::-1]
        return crop, thumb

    def batch(self, n, tin, device):
        crops, thumbs = [], []
        for _ in range(n):
            c, t = self.sample(tin)
            crops.append(c)
            if t is not None:
                thumbs.append(to_tensor(t, device))
        x = torch.from_numpy(np.ascontiguousarray(np.stack(crops).transpose(0, 3, 1, 2)))
        return x.to(device=device, dtype=torch.float32), thumbs


def to_tensor(img, device):
    """HxWx3 uint8 -> (1, 3, H, W) float32 0..255."""
    t = torch.from_numpy(np.ascontiguousarray(np.asarray(img).transpose(2, 0, 1))[None])
    return t.to(device=device, dtype=torch.float32)


def load_style(path, size, device):
    import cv2
    img = read_image(path)
    if size:
        h, w = img.shape[:2]
        s = size / max(h, w)
        img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))),
                         interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    return to_tensor(img, device)
