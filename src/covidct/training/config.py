"""Training and cross-validation configuration: frozen, validated dataclasses (``load_config`` fills them).

Defaults follow the paper (Adam, lr 1e-4, label smoothing 0.1, flips/rotation/zoom/shift/shear augmentation,
ReduceLROnPlateau, best checkpoint on a validation split of the training patients). ``None`` fields are resolved
by :meth:`TrainConfig.resolve` (image size from the model spec, AMP/channels-last/device from the hardware).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from covidct.data.crop import CROPS, STANDARDIZE
from covidct.errors import ConfigError

if TYPE_CHECKING:
    from covidct.models.registry import ModelSpec

CLASS_WEIGHTING = ("none", "balanced")
SAMPLERS = ("random", "balanced")
DEVICES = ("auto", "cpu", "cuda")
MONITORS = ("val_loss", "val_accuracy")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How one model is trained."""

    epochs: int = 30
    batch_size: int = 32
    image_size: int | None = None  # None -> ModelSpec.input_size
    lr: float = 1e-4  # Adam
    weight_decay: float = 0.0
    label_smoothing: float = 0.1
    augment: bool = True  # flips, rotation 15 deg, zoom/shift/shear up to 0.15
    pretrained: bool = True
    weights: str | None = None  # a state-dict file (safetensors/.pth)
    weights_dir: str | None = None  # a folder of <timm_name>.safetensors files
    seed: int = 0
    dropout: float = 0.0
    freeze_backbone: bool = False  # transfer learning: train only the classifier head
    class_weighting: str = "none"  # "none" | "balanced" (loss weights)
    sampler: str = "random"  # "random" | "balanced" (WeightedRandomSampler)
    patience: int | None = None  # early stopping after this many epochs without improvement; None = off
    lr_patience: int = 3  # ReduceLROnPlateau
    lr_factor: float = 0.5
    monitor: str = "val_loss"  # best checkpoint / early stopping / LR schedule
    val_fraction: float = 0.2  # validation patients taken from the training patients
    amp: bool | None = None  # None -> on with CUDA only
    channels_last: bool | None = None  # None -> on with CUDA only
    workers: int = 0  # DataLoader worker processes
    cache: bool = True  # decode + resize every image once
    device: str = "auto"
    window: str = "lung"  # DICOM window (ignored for PNG/JPEG)
    recalibrate_bn: bool = True  # precise BN: re-estimate BatchNorm statistics before each validation
    crop: str = "none"  # "lungs": crop each slice to its lungs' bounding box before resizing
    standardize: str = "none"  # "lungs": rescale by the 1st/99th percentiles inside the lung mask

    def __post_init__(self) -> None:
        for name in ("weights", "weights_dir"):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                object.__setattr__(self, name, str(value))
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.image_size is not None and self.image_size < 16:
            raise ConfigError(f"image_size must be >= 16, got {self.image_size}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"patience must be >= 1 (or unset), got {self.patience}")
        if self.lr_patience < 0 or not 0.0 < self.lr_factor < 1.0:
            raise ConfigError(
                f"lr_patience must be >= 0 and lr_factor in (0, 1), got {self.lr_patience}, {self.lr_factor}"
            )
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}")
        _choice("class_weighting", self.class_weighting, CLASS_WEIGHTING)
        _choice("sampler", self.sampler, SAMPLERS)
        _choice("device", self.device, DEVICES)
        _choice("monitor", self.monitor, MONITORS)
        _choice("crop", self.crop, CROPS)
        _choice("standardize", self.standardize, STANDARDIZE)
        if self.class_weighting == "balanced" and self.sampler == "balanced":
            raise ConfigError(
                "use class_weighting=balanced or sampler=balanced, not both (it would double-correct)"
            )
        if self.weights is not None and not self.pretrained:
            raise ConfigError(
                "--weights loads pretrained weights; it cannot be combined with --no-pretrained"
            )

    def resolve(self, spec: ModelSpec) -> TrainConfig:
        """A copy with no ``None`` left: image size from ``spec``, device/AMP/channels-last from the hardware."""
        import torch

        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device cuda requested but CUDA is not available (use --device cpu or auto)")
        cuda = device == "cuda"
        amp = cuda if self.amp is None else self.amp and cuda
        channels_last = cuda if self.channels_last is None else self.channels_last
        return replace(
            self,
            image_size=self.image_size or spec.input_size,
            device=device,
            amp=amp,
            channels_last=channels_last,
        )


def _check_run_paths_and_model(cfg: TrainRunConfig | CVConfig) -> None:
    """``data``/``out`` stored as strings (JSON-ready); a model name is required."""
    for name in ("data", "out"):
        value = getattr(cfg, name)
        if isinstance(value, Path):
            object.__setattr__(cfg, name, str(value))
    if not cfg.model:
        raise ConfigError("--model is required")


@dataclass(frozen=True, kw_only=True)
class TrainRunConfig:
    """``covidct train DATA --model NAME --out RUN``: one model on all data (validation from its patients)."""

    data: str
    model: str
    out: str
    resume: bool = False
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        _check_run_paths_and_model(self)


@dataclass(frozen=True, kw_only=True)
class CVConfig:
    """``covidct cv DATA --model NAME --folds 5 --repeats 5 --seed 0 --out RUN``."""

    data: str
    model: str
    out: str
    folds: int = 5
    repeats: int = 5
    seed: int = 0  # fold assignment (training uses train.seed)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        _check_run_paths_and_model(self)
        if self.folds < 2:
            raise ConfigError(f"folds must be >= 2, got {self.folds}")
        if self.repeats < 1:
            raise ConfigError(f"repeats must be >= 1, got {self.repeats}")
