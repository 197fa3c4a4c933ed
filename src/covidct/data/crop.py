"""Optional lung preprocessing (issue 14): crop a slice to its lungs' bounding box, and/or rescale its
intensities by percentiles inside the lung mask. Numpy + :mod:`covidct.data.lungs` (scipy / scikit-image),
no torch: :class:`~covidct.data.preprocess.Preprocess` runs it for training, predictor, ONNX and serve alike.

The mask is :func:`~covidct.data.lungs.lung_mask_intensity` on the windowed [0, 1] slice for every format, so
a PNG screenshot and a DICOM slice go through one rule and inference repeats training exactly. A slice where
no lungs are found keeps its whole extent (and, for standardisation, the whole slice's percentiles); the
caller is told (``lungs_found``) so it can count and flag it.
"""

from __future__ import annotations

import math

import numpy as np

CROPS = ("none", "lungs")
STANDARDIZE = ("none", "lungs")
DEFAULT_MARGIN = 0.05  # share of the slice's short side added around the lungs' box on each side
PERCENTILES = (1.0, 99.0)

Box = tuple[int, int, int, int]  # row0, row1, col0, col1 (half-open)


def crop_box(mask: np.ndarray, margin: float = DEFAULT_MARGIN) -> Box | None:
    """The bounding box of ``mask`` grown by ``margin`` x the short side (clipped to the slice), or ``None``
    when the mask is empty."""
    mask = np.asarray(mask, dtype=bool)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    pad = math.ceil(margin * min(mask.shape))
    h, w = mask.shape
    return (
        max(0, int(rows[0]) - pad),
        min(h, int(rows[-1]) + 1 + pad),
        max(0, int(cols[0]) - pad),
        min(w, int(cols[-1]) + 1 + pad),
    )


def standardize_in_mask(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``image`` rescaled so the 1st/99th percentiles inside ``mask`` (the whole slice when ``None`` or empty)
    map to 0/1, clipped to [0, 1]; a flat region leaves the image unchanged."""
    image = np.asarray(image, dtype=np.float32)
    values = image[mask] if mask is not None and mask.any() else image.ravel()
    lo, hi = (float(v) for v in np.nanpercentile(values, PERCENTILES))
    if not hi - lo > 1e-6:
        return image
    return np.clip((image - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0).astype(np.float32)


def lung_preprocess(
    image: np.ndarray, *, crop: str = "none", standardize: str = "none", margin: float = DEFAULT_MARGIN
) -> tuple[np.ndarray, Box, bool]:
    """``(image', box, lungs_found)``: the slice cropped to ``box`` (the whole slice unless ``crop="lungs"``
    and lungs were found) and, with ``standardize="lungs"``, rescaled by in-lung percentiles."""
    image = np.asarray(image, dtype=np.float32)
    h, w = image.shape
    whole: Box = (0, h, 0, w)
    if crop == "none" and standardize == "none":
        return image, whole, True
    from covidct.data.lungs import lung_mask_intensity

    mask = lung_mask_intensity(image)
    box = crop_box(mask, margin)
    found = box is not None
    if crop != "lungs" or box is None:
        box = whole
    r0, r1, c0, c1 = box
    image, mask = image[r0:r1, c0:c1], mask[r0:r1, c0:c1]
    if standardize == "lungs":
        image = standardize_in_mask(image, mask if found else None)
    return image, box, found
