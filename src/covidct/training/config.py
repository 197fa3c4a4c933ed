"""Training and cross-validation configuration: frozen, validated dataclasses (``load_config`` fills them).

Defaults follow the paper (Adam, lr 1e-4, label smoothing 0.1, the authors' augmentation preset ``paper``,
ReduceLROnPlateau, best checkpoint on a validation split of the training patients). ``None`` fields are
resolved by :meth:`TrainConfig.resolve` (image size from the model spec, AMP/channels-last/device from the
hardware, the augmentation preset into :class:`AugmentSettings`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from covidct.data.crop import CROPS, STANDARDIZE
from covidct.data.preprocess import check_image_size
from covidct.errors import ConfigError

if TYPE_CHECKING:
    from covidct.models.spec import ModelSpec

CLASS_WEIGHTING = ("none", "balanced")
SAMPLERS = ("random", "balanced")
DEVICES = ("auto", "cpu", "cuda")
MONITORS = ("val_loss", "val_accuracy")


@dataclass(frozen=True, kw_only=True)
class AugmentSettings:
    """Resolved training augmentation in Keras ``ImageDataGenerator`` units (recorded in ``config.json``).

    ``rotation``: degrees, uniform in [-rotation, rotation]; flips with p = 0.5; ``zoom``: scale in
    [1 - zoom, 1 + zoom]; ``shift``: fraction of width/height; ``shear``: degrees (tf.keras /
    keras-preprocessing convert ``shear_range`` with ``np.deg2rad``; Keras <= 2.1 took radians). See
    :mod:`covidct.training.augment`.
    """

    rotation: float
    horizontal_flip: bool
    vertical_flip: bool
    zoom: float
    shift: float
    shear: float


#: ``paper``: the authors' ``ImageDataGenerator(rotation_range=360, horizontal_flip=True, zoom_range=0.15,
#: width_shift_range=0.15, height_shift_range=0.15, shear_range=0.15)`` (COV-AID code release, tf.keras, so
#: the shear is 0.15 degrees). ``light``: covidct's settings before issue 10 (±15 deg, both flips, ~8.5 deg
#: shear).
AUGMENT_PRESETS: dict[str, AugmentSettings] = {
    "paper": AugmentSettings(
        rotation=360.0, horizontal_flip=True, vertical_flip=False, zoom=0.15, shift=0.15, shear=0.15
    ),
    "light": AugmentSettings(
        rotation=15.0,
        horizontal_flip=True,
        vertical_flip=True,
        zoom=0.15,
        shift=0.15,
        shear=round(math.degrees(math.atan(0.15)), 4),
    ),
}
AUGMENT_CHOICES = (*AUGMENT_PRESETS, "none")


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
    augment: str = "paper"  # a preset of AUGMENT_PRESETS, or "none"
    rotation: float | None = None  # degrees; None -> the preset's (paper 360, light 15)
    augmentation: AugmentSettings | None = None  # derived by resolve() from augment + rotation; input ignored
    pretrained: bool = True
    weights: str | None = None  # a state-dict file (safetensors/.pth)
    weights_dir: str | None = None  # a folder of <timm_name>.safetensors files
    seed: int = 0
    dropout: float = 0.0
    freeze_backbone: bool = False  # transfer learning: train only the classifier head
    feature_cache: bool = True  # with freeze_backbone: backbone features once per image, cached on disk
    feature_cache_dir: str | None = None  # None -> $COVIDCT_FEATURE_CACHE or ~/.cache/covidct/features
    backbone_lr_scale: float = 1.0  # discriminative LR: backbone lr = lr * scale (head: lr)
    head_warmup: int = 0  # first N epochs train the head only (backbone and its BatchNorm statistics frozen)
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
        for name in ("weights", "weights_dir", "feature_cache_dir"):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                object.__setattr__(self, name, str(value))
        if isinstance(self.augment, bool):  # config.json before issue 10: true ran today's "light" settings
            object.__setattr__(self, "augment", "light" if self.augment else "none")
        _choice("augment", self.augment, AUGMENT_CHOICES)
        if self.rotation is not None:
            if not 0.0 <= self.rotation <= 360.0:
                raise ConfigError(f"rotation must be in [0, 360] degrees, got {self.rotation}")
            if self.augment == "none":
                raise ConfigError("rotation needs augmentation; it cannot go with augment none")
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.image_size is not None:
            check_image_size(self.image_size, minimum=16)
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
        if not self.backbone_lr_scale > 0:
            raise ConfigError(
                f"backbone_lr_scale must be > 0, got {self.backbone_lr_scale} (use --freeze-backbone for 0)"
            )
        if self.head_warmup < 0:
            raise ConfigError(f"head_warmup must be >= 0, got {self.head_warmup}")
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

    def augment_settings(self) -> AugmentSettings | None:
        """The augmentation this config trains with (None for ``augment="none"``)."""
        if self.augment == "none":
            return None
        preset = AUGMENT_PRESETS[self.augment]
        return preset if self.rotation is None else replace(preset, rotation=float(self.rotation))

    def resolve(self, spec: ModelSpec) -> TrainConfig:
        """A copy with image size from ``spec``, device/AMP/channels-last from the hardware and the
        augmentation preset resolved into ``augmentation`` (``rotation`` stays None = "the preset's", so a
        replay with another ``--augment`` gets that preset's rotation)."""
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
            augmentation=self.augment_settings(),
        )


def check_near_duplicate_threshold(value: int) -> None:
    """The near-duplicate Hamming threshold: an integer in 0..255 (bits of the 256-bit phash)."""
    if isinstance(value, bool) or int(value) != value or not 0 <= value < 256:
        raise ConfigError(f"near_duplicate_threshold must be an integer in 0..255, got {value!r}")


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
    group_near_duplicates: bool = False  # merge perceptual-hash near-duplicates into one group
    near_duplicate_threshold: int = 32  # Hamming distance of the 256-bit phash (covidct.data.audit)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        _check_run_paths_and_model(self)
        check_near_duplicate_threshold(self.near_duplicate_threshold)
        if self.folds < 2:
            raise ConfigError(f"folds must be >= 2, got {self.folds}")
        if self.repeats < 1:
            raise ConfigError(f"repeats must be >= 1, got {self.repeats}")
