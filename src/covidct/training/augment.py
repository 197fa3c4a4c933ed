"""Training augmentation (Keras ``ImageDataGenerator`` semantics) as torchvision.transforms.v2 on tensors.

:func:`build_augment` turns resolved :class:`~covidct.training.config.AugmentSettings` into random flips + one
random affine (rotation, zoom, shift, shear), applied to a ``(1, S, S)`` slice in [0, 1] before normalisation.
The presets live in :data:`covidct.training.config.AUGMENT_PRESETS`: ``paper`` (the authors' settings, the
default) and ``light`` (covidct's settings before issue 10).

How the Keras parameters map (keras-preprocessing ``ImageDataGenerator``, which tf.keras used in the authors'
TF 2 code):

- ``rotation_range=r``: angle uniform in [-r, r] degrees -> ``RandomAffine(degrees=r)``, same (360: any
  angle).
- ``horizontal_flip`` / ``vertical_flip``: p = 0.5 each -> ``RandomHorizontalFlip`` / ``RandomVerticalFlip``.
- ``width_shift_range=height_shift_range=s`` (< 1: a fraction of the size, uniform) -> ``translate=(s, s)``,
  same.
- ``shear_range=g``: keras-preprocessing draws uniform in [-g, g] and converts with ``np.deg2rad``: degrees
  (Keras <= 2.1 used radians, where 0.15 meant ~8.6 deg) -> ``shear=g`` degrees along x, same.
- ``zoom_range=z``: Keras draws the x and y zoom independently in [1 - z, 1 + z]; ``RandomAffine`` has one
  isotropic ``scale`` in [1 - z, 1 + z]: an approximation (no anisotropic stretch).
- Fill: Keras' default ``fill_mode="nearest"`` repeats edge pixels; here the fill is 0, the black air around
  the body, which is what the edge of a CT slice holds anyway.
"""

from __future__ import annotations

from torchvision.transforms import v2

from covidct.training.config import AUGMENT_PRESETS, AugmentSettings


def build_augment(settings: AugmentSettings | None = None) -> v2.Compose:
    """Random flips + affine for ``(C, S, S)`` float tensors; ``None`` = the ``paper`` preset."""
    s = settings or AUGMENT_PRESETS["paper"]
    steps: list[v2.Transform] = []
    if s.horizontal_flip:
        steps.append(v2.RandomHorizontalFlip())
    if s.vertical_flip:
        steps.append(v2.RandomVerticalFlip())
    steps.append(
        v2.RandomAffine(
            degrees=s.rotation,
            translate=(s.shift, s.shift),
            scale=(1.0 - s.zoom, 1.0 + s.zoom),
            shear=s.shear,
            interpolation=v2.InterpolationMode.BILINEAR,
            fill=0.0,
        )
    )
    return v2.Compose(steps)
