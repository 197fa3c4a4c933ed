"""``DemoConfig``: the demo's sizes (light to import: the CLI takes its help defaults from here)."""

from __future__ import annotations

from dataclasses import dataclass

from covidct.errors import ConfigError

#: Two small models that learn from scratch within the demo's budget. MobileNetV3-small and EfficientNet-B0
#: were tried first: from scratch on ~50 training slices in 12 epochs they stayed at chance (0.33 accuracy).
DEMO_MODELS = ("resnet10t", "resnet14t")
#: Fine-tuned from ImageNet beside them when the weights are here (a weight package needs no hub access).
DEMO_PRETRAINED = ("EfficientNetLite0",)


@dataclass(frozen=True, kw_only=True)
class DemoConfig:
    """Sizes chosen so the demo takes a few minutes on 2 CPU cores."""

    out: str = "demo_out"
    models: tuple[str, ...] = DEMO_MODELS  # from scratch
    pretrained_models: tuple[str, ...] = DEMO_PRETRAINED  # fine-tuned, when their weights are here
    folds: int = 3
    repeats: int = 1
    epochs: int = 15
    image_size: int = 96  # ground glass is a few pixels at 64 px: too little to learn from scratch
    batch_size: int = 16
    lr: float = 2e-3  # from scratch on tiny data: faster than the paper's fine-tuning rate
    pretrained_lr: float = 1e-3  # fine-tuning: ImageNet features need smaller steps than random ones
    pretrained_epochs: int = 6  # Lite0 from ImageNet reached 0.90 slice accuracy in 4 epochs (~2 s each)
    patients_per_class: int = 12
    slices_per_patient: int = 4
    phantom_size: int = 96
    explain_slices: int = 6
    executor: str = "local"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.explain_slices < 0:
            raise ConfigError(f"explain_slices must be >= 0, got {self.explain_slices}")
        if self.patients_per_class < self.folds:
            raise ConfigError(f"need at least {self.folds} patients per class for {self.folds} folds")
