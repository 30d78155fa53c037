"""Networks, losses and data shared by tools/train.py (styles) and
tools/distill.py (compact _live students), and by the PyTorch reference the
tests compare libstylize with.

  compact   the model-described compact family (docs/COMPACT.md)
  losses    VGG19 perceptual, Gram and temporal-stability losses
  data      content photographs and random crops (on the training device)
  device    the training device and its mixed precision (--device, --amp)
"""
