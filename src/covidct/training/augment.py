"""The paper's augmentation (Keras ImageDataGenerator style) as torchvision.transforms.v2 on tensors.

Horizontal and vertical flips, rotation up to 15 degrees, and zoom, shift and shear up to 0.15. Applied to a
``(1, S, S)`` slice in [0, 1] before normalisation; the fill value 0 is the black background around the body.
"""

from __future__ import annotations

import math

from torchvision.transforms import v2

AUG_RANGE = 0.15
ROTATION_DEGREES = 15.0


def build_augment(strength: float = AUG_RANGE, rotation: float = ROTATION_DEGREES) -> v2.Compose:
    """Random flips + affine (rotation, zoom, shift, shear) for ``(C, S, S)`` float tensors."""
    shear_degrees = math.degrees(math.atan(strength))  # Keras shear is an intensity; as an angle ~8.5 deg
    return v2.Compose(
        [
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            v2.RandomAffine(
                degrees=rotation,
                translate=(strength, strength),
                scale=(1.0 - strength, 1.0 + strength),
                shear=shear_degrees,
                interpolation=v2.InterpolationMode.BILINEAR,
                fill=0.0,
            ),
        ]
    )
