"""Model registry: paper names mapped onto timm architectures, as data (like timm's ``pretrained_cfg``).

:func:`create_model` is the only caller of ``timm.create_model`` in covidct. The head is timm's: global average
pooling, optional dropout, a linear layer for the dataset's classes. Grayscale slices are fed as 3 channels.
Specs with ``pre_logits=False`` (VGG16/19) drop timm's pre-logits MLP (fc6/fc7 as 4096-wide convolutions,
~120M parameters): the model is the paper's Keras ``include_top=False`` base -> GlobalAveragePooling -> Dense.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from covidct.errors import CheckpointError, ConfigError, UnknownModelError

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """One backbone: its paper name, timm architecture and the settings the paper used."""

    name: str  # paper name, e.g. "EfficientNetB5"
    timm_name: str  # timm "arch.tag", e.g. "tf_efficientnet_b5.ns_jft_in1k"
    input_size: int  # the Keras default input size the paper used
    cam_layer: str  # Grad-CAM target, resolved with model.get_submodule()
    family: str = "other"
    pretrained_weights: str = "ImageNet"  # description of the pretrained tag
    note: str = ""
    pre_logits: bool = True  # False: no pre-logits MLP before the pooled head (Keras include_top=False + GAP)

    @property
    def arch(self) -> str:
        """The timm architecture without its pretrained tag."""
        return self.timm_name.split(".", 1)[0]


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add a spec; registering a name twice is a bug (timm only warns)."""
    key = spec.name.lower()
    if key in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is already registered")
    _REGISTRY[key] = spec
    return spec


def list_models() -> list[ModelSpec]:
    """The registered (paper) models, in registration order."""
    _ensure_zoo()
    return list(_REGISTRY.values())


def _ensure_zoo() -> None:
    from covidct.models import zoo  # noqa: F401  (registers the paper's 20 on import)


def get_spec(name: str) -> ModelSpec:
    """The spec of a paper name (case-insensitive) or of any timm model name (automatic spec)."""
    _ensure_zoo()
    spec = _REGISTRY.get(name.lower())
    if spec is not None:
        return spec
    for candidate in _REGISTRY.values():  # a registered timm name maps back to its paper spec
        if name in (candidate.timm_name, candidate.arch):
            return candidate
    return _auto_spec(name)


def _auto_spec(name: str) -> ModelSpec:
    import timm

    arch = name.split(".", 1)[0]
    if not timm.is_model(arch):
        choices = [s.name for s in _REGISTRY.values()] + timm.list_models()
        close = difflib.get_close_matches(name, choices, n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `covidct models` lists the paper's models"
        raise UnknownModelError(f"unknown model {name!r}{hint}")
    cfg = timm.get_pretrained_cfg(name) if "." in name else timm.get_pretrained_cfg(arch)
    input_size = int(cfg.input_size[-1]) if cfg is not None and cfg.input_size else 224
    return ModelSpec(
        name=name, timm_name=name, input_size=input_size, cam_layer=_last_feature_module(arch),
        family="timm", pretrained_weights=(cfg.tag if cfg is not None and cfg.tag else "default"),
        note="any timm model; Grad-CAM layer taken from timm's feature_info",
    )


def _last_feature_module(arch: str) -> str:
    """The module of the deepest feature stage, from timm's ``feature_info`` (built on the meta device)."""
    import timm
    import torch

    with torch.device("meta"):
        model = timm.create_model(arch, pretrained=False)
    info = getattr(model, "feature_info", None)
    if not info:
        raise UnknownModelError(f"model {arch!r} has no feature_info; name a Grad-CAM layer explicitly")
    last = info[-1]
    return last["module"] if isinstance(last, dict) else info.module_name()[-1]


def count_parameters(name: str, num_classes: int = 3) -> int:
    """Parameter count with a ``num_classes`` head (built on the meta device: no memory, no weights)."""
    import timm
    import torch

    spec = get_spec(name)
    with torch.device("meta"):
        model = _paper_head(timm.create_model(spec.arch, pretrained=False, num_classes=num_classes), spec)
    return sum(p.numel() for p in model.parameters())


def _paper_head(model: nn.Module, spec: ModelSpec, dropout: float = 0.0) -> nn.Module:
    """Apply ``spec.pre_logits=False``: conv features -> global average pooling -> (dropout) -> linear, as the
    paper's Keras models (timm's VGG keeps fc6/fc7 as a 4096-wide conv MLP before the pooling)."""
    if spec.pre_logits:
        return model
    from timm.layers import ClassifierHead
    from torch import nn

    if not isinstance(getattr(model, "pre_logits", None), nn.Module):
        raise ValueError(f"{spec.name}: pre_logits=False, but {spec.arch} has no pre_logits module")
    model.pre_logits = nn.Identity()
    model.head = ClassifierHead(model.num_features, model.num_classes, pool_type="avg", drop_rate=dropout)
    model.head_hidden_size = model.num_features
    return model


def _find_local_weights(spec: ModelSpec, weights_dir: Path) -> Path | None:
    for stem in (spec.timm_name, spec.arch, spec.name):
        for suffix in (".safetensors", ".pth", ".pt", ".bin"):
            candidate = weights_dir / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the model hub's host accepts a TCP connection (one quick probe, no retries)."""
    from urllib.parse import urlparse

    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _hub_offline_if_unreachable() -> Iterator[None]:
    """Cache-only hub access when the hub cannot be reached: a missing download then fails at once instead of
    retrying for about a minute; weights already in the local hub cache still load."""
    from huggingface_hub import constants

    previous = constants.HF_HUB_OFFLINE
    if not previous and not hub_reachable():
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


def create_model(
    name: str,
    num_classes: int,
    *,
    pretrained: bool = True,
    weights: str | os.PathLike[str] | None = None,
    weights_dir: str | os.PathLike[str] | None = None,
    dropout: float = 0.0,
) -> nn.Module:
    """Build a backbone with a fresh ``num_classes`` head.

    Pretrained weights come from, in order: ``weights`` (a safetensors/.pth state dict file, e.g. ImageNet
    weights saved by timm), ``weights_dir`` (``<timm_name|arch|paper name>.<safetensors|pth|pt|bin>``), or the
    model hub (timm's cache first). ``pretrained=False`` trains from scratch.
    """
    import timm

    if num_classes < 2:
        raise ConfigError(f"need at least 2 classes, got {num_classes}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
    spec = get_spec(name)
    kwargs = dict(num_classes=num_classes, drop_rate=dropout)
    if weights is None and weights_dir is not None and pretrained:
        weights = _find_local_weights(spec, Path(weights_dir))
        if weights is None:
            raise CheckpointError(
                f"{weights_dir}: no weights file for {spec.name} (looked for {spec.timm_name}.safetensors/.pth)"
            )
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise CheckpointError(f"{path}: weights file not found")
        try:
            model = timm.create_model(
                spec.timm_name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs
            )
        except (RuntimeError, KeyError, ValueError, OSError) as exc:
            raise CheckpointError(f"{path}: cannot load weights for {spec.name} ({exc})") from None
        return _paper_head(model, spec, dropout)
    if not pretrained:
        return _paper_head(timm.create_model(spec.timm_name, pretrained=False, **kwargs), spec, dropout)
    try:
        with _hub_offline_if_unreachable():
            model = timm.create_model(spec.timm_name, pretrained=True, **kwargs)
        return _paper_head(model, spec, dropout)
    except Exception as exc:  # hub errors come in many types (OSError, requests, huggingface_hub)
        raise CheckpointError(
            f"{spec.name}: could not get pretrained weights {spec.timm_name} from the model hub "
            f"({type(exc).__name__}); offline? Use --weights FILE, --weights-dir DIR, or --no-pretrained"
        ) from None


def model_normalization(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The backbone's input mean and std (from timm's pretrained config)."""
    from covidct.data.preprocess import IMAGENET_MEAN, IMAGENET_STD

    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean = tuple(float(v) for v in cfg.get("mean", IMAGENET_MEAN))
    std = tuple(float(v) for v in cfg.get("std", IMAGENET_STD))
    return mean, std
