"""The CAM methods covidct offers: one table over pytorch-grad-cam; CLI choices and docs derive from it.

``CAM_METHODS`` (name -> pytorch-grad-cam class) is built on first access so that importing this module (the
CLI does, for its ``--method`` choices) does not import torch. ``METHOD_NAMES`` holds the same names,
torch-free.

Notes: ``eigencam`` is class-agnostic (first principal component of the activations), so its map ignores the
target class; ``scorecam`` runs one forward pass per channel of the target layer (slow on CPU).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from covidct.errors import ConfigError

if TYPE_CHECKING:
    from pytorch_grad_cam.base_cam import BaseCAM

DEFAULT_METHOD = "gradcam"

# name -> class name in pytorch_grad_cam (the paper used Grad-CAM; the others are standard alternatives)
_CLASS_NAMES: dict[str, str] = {
    "gradcam": "GradCAM",  # Selvaraju et al. 2017: weights = spatial mean of d logit / d activation
    "gradcam++": "GradCAMPlusPlus",  # Chattopadhay et al. 2018: higher-order positive-gradient weights
    "hirescam": "HiResCAM",  # Draelos & Carin 2020: element-wise gradient x activation (faithful)
    "xgradcam": "XGradCAM",  # Fu et al. 2020: activation-normalised gradient weights
    "layercam": "LayerCAM",  # Jiang et al. 2021: element-wise positive gradients
    "eigencam": "EigenCAM",  # Muhammad & Yeasin 2020: first principal component (class-agnostic)
    "scorecam": "ScoreCAM",  # Wang et al. 2020: gradient-free, one forward pass per channel
}

METHOD_NAMES: tuple[str, ...] = tuple(_CLASS_NAMES)
CLASS_AGNOSTIC: frozenset[str] = frozenset({"eigencam"})


def check_method(name: str) -> str:
    """The canonical (lower-case) method name; unknown: :class:`ConfigError` listing the choices."""
    key = name.lower()
    if key not in _CLASS_NAMES:
        raise ConfigError(f"unknown CAM method {name!r}; choose one of {', '.join(METHOD_NAMES)}")
    return key


def get_method(name: str) -> type[BaseCAM]:
    """The pytorch-grad-cam class for ``name`` (case-insensitive)."""
    return _cam_methods()[check_method(name)]


def _cam_methods() -> dict[str, type[BaseCAM]]:
    import pytorch_grad_cam

    table = {name: getattr(pytorch_grad_cam, cls) for name, cls in _CLASS_NAMES.items()}
    globals()["CAM_METHODS"] = table  # later lookups skip __getattr__
    return table


def __getattr__(attr: str) -> Any:
    if attr == "CAM_METHODS":
        return _cam_methods()
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
