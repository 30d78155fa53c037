"""Losses on VGG19 blocks 1-3 (../shared/vgg19, read by tools/vgg19_tfjs.py):
Gram matrices, the multi-scale perceptual loss of style training, and the
terms of distillation (teacher pixels, features, textures, stability)."""

import torch
import torch.nn.functional as F


class _GramCPU(torch.autograd.Function):
    """Gram matrices through oneDNN convolutions: Debian's torch links the
    reference BLAS, whose bmm made the Gram matrices 60% of an iteration.
    Forward: G[i, j] = sum_p f[i, p] f[j, p] / HW as a convolution of the C
    one-channel maps by the same C maps as full-size kernels. Backward:
    dF = (dG + dG^T) F / HW as a convolution whose kernel runs over the
    channels (a 1x1 convolution is 3x slower here)."""

    @staticmethod
    def forward(ctx, f):
        ctx.save_for_backward(f)
        n, c, h, w = f.shape
        with torch.autocast("cpu", enabled=False):
            g = [F.conv2d(f[i:i + 1].transpose(0, 1), f[i:i + 1].transpose(0, 1)).view(c, c)
                 for i in range(n)]
        return torch.stack(g) / (h * w)

    @staticmethod
    def backward(ctx, grad):
        (f,) = ctx.saved_tensors
        n, c, h, w = f.shape
        s = (grad + grad.transpose(1, 2)) / (h * w)
        out = []
        with torch.autocast("cpu", enabled=False):
            for i in range(n):
                ft = f[i].reshape(c, h * w).t().contiguous().view(h * w, 1, 1, c)
                out.append(F.conv2d(ft, s[i].reshape(c, 1, 1, c)).view(h * w, c).t()
                           .reshape(c, h, w))
        return torch.stack(out)


def gram(f):
    """Gram matrices of (N, C, H, W) features, normalized by H*W: (N, C, C),
    float32."""
    f = f.float()
    if f.device.type == "cpu":
        return _GramCPU.apply(f.contiguous())
    n, c, h, w = f.shape
    f = f.reshape(n, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (h * w)


def downscale(x, s):
    """Area downscale by an integer factor (avg pooling; exact for 2x)."""
    return x if s == 1 else F.avg_pool2d(x, s)


def layer_stride(name):
    """Downsampling of a VGG19 layer ('relu3_1' -> 4)."""
    return 2 ** (int(name[4]) - 1)


def vgg_features(vgg, x, layers, margin=0):
    """VGG features of x; with margin > 0 the image is first extended by
    `margin` pixels of reflection on every side and the features are cropped
    back to the image. VGG pads its convolutions with zeros: without the
    margin the loss at the image's border sees that padding, and a network
    trained on crops learns to draw a line along its border to please it
    (the faint frame line of the v1 styles). With the margin, border pixels
    are judged like interior ones (their mirror image lies next to them)."""
    if margin <= 0:
        return vgg(x, layers)
    m = min(margin, x.shape[-1] - 1, x.shape[-2] - 1)
    m -= m % 4
    if m <= 0:
        return vgg(x, layers)
    feats = vgg(F.pad(x, (m, m, m, m), mode="reflect"), layers)
    out = {}
    for name in layers:
        c = m // layer_stride(name)
        f = feats[name]
        out[name] = f[..., c:f.shape[-2] - c, c:f.shape[-1] - c]
    return out


class PerceptualLoss:
    """Johnson et al.'s perceptual loss on the VGG19 features available,
    with multi-scale style and normalized (relative) terms."""

    def __init__(self, vgg, style_img, style_layers, content_layer, scales, scale_weights,
                 autocast, margin=0):
        self.vgg, self.style_layers, self.content_layer = vgg, list(style_layers), content_layer
        self.scales, self.scale_weights = list(scales), list(scale_weights)
        self.autocast = autocast
        self.margin = margin
        self.targets = {}  # scale -> layer -> (Gram (1,C,C), |G|^2)
        with torch.no_grad():
            for s in self.scales:
                feats = self.vgg(downscale(style_img, s), self.style_layers)
                self.targets[s] = {}
                for name in self.style_layers:
                    g = gram(feats[name])
                    self.targets[s][name] = (g, g.pow(2).sum(dim=(1, 2)).clamp_min(1e-12))

    def features(self, x, layers):
        with self.autocast():
            return vgg_features(self.vgg, x, layers, self.margin)

    def content_target(self, x):
        with torch.no_grad():
            return self.features(x, [self.content_layer])[self.content_layer].float()

    def __call__(self, y, content_feat):
        """y: network output (N,3,H,W) 0..255; content_feat: content_target of
        the input. Returns (content, style, [style per scale])."""
        per_scale = []
        content = None
        for s in self.scales:
            layers = list(self.style_layers)
            if s == 1:
                layers.append(self.content_layer)
            feats = self.features(downscale(y, s), layers)
            terms = []
            for name in self.style_layers:
                g, norm = self.targets[s][name]
                terms.append(((gram(feats[name]) - g).pow(2).sum(dim=(1, 2)) / norm).mean())
            per_scale.append(torch.stack(terms).mean())
            if s == 1:
                f = feats[self.content_layer].float()
                content = (f - content_feat).pow(2).mean() / content_feat.pow(2).mean().clamp_min(1e-12)
        style = sum(w * v for w, v in zip(self.scale_weights, per_scale))
        return content, style, per_scale


def tv_loss(y):
    """Total variation (squared differences) of y/255."""
    y = y.float() / 255.0
    return ((y[:, :, 1:, :] - y[:, :, :-1, :]).pow(2).mean()
            + (y[:, :, :, 1:] - y[:, :, :, :-1]).pow(2).mean())


def relative_gram_distance(fa, fb):
    """Per-sample |G(a) - G(b)|_F / |G(b)|_F of two feature maps (N,)."""
    ga, gb = gram(fa), gram(fb)
    return (ga - gb).flatten(1).norm(dim=1) / gb.flatten(1).norm(dim=1).clamp_min(1e-12)


class DistillLoss:
    """What a student must reproduce of its teacher's output t for the same
    input: the pixels (L1, /255), VGG features (relative squared error on
    `feature_layers`) and textures (relative squared Gram error on
    `gram_layers` at `scales`, per sample: a pixel loss alone blurs the
    strokes away)."""

    def __init__(self, vgg, autocast, feature_layers=("relu2_2", "relu3_1"),
                 gram_layers=("relu1_1", "relu2_1", "relu3_1"), scales=(1, 2), margin=16):
        self.vgg, self.autocast = vgg, autocast
        self.feature_layers, self.gram_layers = list(feature_layers), list(gram_layers)
        self.scales, self.margin = list(scales), margin

    def _feats(self, x, layers):
        with self.autocast():
            return vgg_features(self.vgg, x, layers, self.margin)

    def __call__(self, y, t):
        """y: student output, t: teacher output (N,3,H,W), 0..255.
        Returns dict of scalar terms: pixel, feature, gram."""
        pixel = (y - t).abs().mean() / 255.0
        feature = y.new_zeros(())
        grams = []
        for s in self.scales:
            layers = list(self.gram_layers)
            if s == 1:
                layers += [l for l in self.feature_layers if l not in layers]
            fy = self._feats(downscale(y, s), layers)
            with torch.no_grad():
                ft = self._feats(downscale(t, s), layers)
            for name in self.gram_layers:
                gy, gt = gram(fy[name]), gram(ft[name])
                grams.append(((gy - gt).pow(2).sum(dim=(1, 2))
                              / gt.pow(2).sum(dim=(1, 2)).clamp_min(1e-12)).mean())
            if s == 1:
                for name in self.feature_layers:
                    a, b = fy[name].float(), ft[name].float()
                    feature = feature + (a - b).pow(2).mean() / b.pow(2).mean().clamp_min(1e-12)
        return {"pixel": pixel, "feature": feature / len(self.feature_layers),
                "gram": torch.stack(grams).mean()}


def block_loss(y, t, block=8, norm="l1"):
    """Tones and colours: the distance /255 between the `block`x`block` means
    of the student's and the teacher's outputs, the scale of the fidelity
    measure's block-mean PSNR. A student too small to redraw every stroke of
    its teacher should still put its colours where the teacher does; the
    pixel term weighs that no more than any stroke. `norm` "l1" is the mean
    absolute difference; "rms" the root of the mean squared one, in the same
    units, whose minimum is the block-mean PSNR's (L1 settles for medians)."""
    d = F.avg_pool2d(y, block) - F.avg_pool2d(t, block)
    if norm == "rms":
        return d.pow(2).mean().add(1e-12).sqrt() / 255.0
    if norm != "l1":
        raise ValueError("block_loss: norm must be l1 or rms, not %r" % (norm,))
    return d.abs().mean() / 255.0


def stability_loss(y_a, y_b, dy, dx, border=8):
    """Temporal stability without optical flow: y_a is the output for a crop,
    y_b the output for the crop shifted by (dy, dx) pixels (and noised); where
    the two views overlap, the output must have moved with the content and
    nothing else. L1 /255 over the overlap, `border` pixels away from the
    crops' edges (whose padding legitimately differs)."""
    h, w = y_a.shape[-2:]
    a = y_a[..., dy:, dx:]
    b = y_b[..., :h - dy, :w - dx]
    if border:
        a = a[..., border:-border, border:-border]
        b = b[..., border:-border, border:-border]
    return (a - b).abs().mean() / 255.0
