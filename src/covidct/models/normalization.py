"""A backbone's input normalisation (mean, std), from timm's pretrained config (ImageNet's by default)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from covidct.data.preprocess import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:
    from torch import nn


def model_normalization(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The backbone's input mean and std (from timm's pretrained config)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean = tuple(float(v) for v in cfg.get("mean", IMAGENET_MEAN))
    std = tuple(float(v) for v in cfg.get("std", IMAGENET_STD))
    return mean, std
