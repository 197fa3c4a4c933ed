"""Building models: :func:`create_model` is the only caller of ``timm.create_model`` in covidct.

The head is timm's: global average pooling, optional dropout, a linear layer for the dataset's classes.
Grayscale slices are fed as 3 channels. Specs with ``pre_logits=False`` (VGG16/19) drop timm's pre-logits MLP
(fc6/fc7 as 4096-wide convolutions, ~120M parameters): the model is the paper's Keras ``include_top=False``
base -> GlobalAveragePooling -> Dense. Where pretrained weights come from: :mod:`covidct.models.weights`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import timm
import torch
from timm.layers import ClassifierHead
from torch import nn

from covidct.errors import CheckpointError, ConfigError
from covidct.models import _hub
from covidct.models import weights as ws
from covidct.models.registry import get_spec
from covidct.models.spec import ModelSpec


def count_parameters(name: str, num_classes: int = 3) -> int:
    """Parameter count with a ``num_classes`` head (built on the meta device: no memory, no weights)."""
    spec = get_spec(name)
    with torch.device("meta"):
        model = _paper_head(timm.create_model(spec.arch, pretrained=False, num_classes=num_classes), spec)
    return sum(p.numel() for p in model.parameters())


def _paper_head(model: nn.Module, spec: ModelSpec, dropout: float = 0.0) -> nn.Module:
    """Apply ``spec.pre_logits=False``: conv features -> global average pooling -> (dropout) -> linear, as the
    paper's Keras models (timm's VGG keeps fc6/fc7 as a 4096-wide conv MLP before the pooling)."""
    if spec.pre_logits:
        return model
    if not isinstance(getattr(model, "pre_logits", None), nn.Module):
        raise ValueError(f"{spec.name}: pre_logits=False, but {spec.arch} has no pre_logits module")
    features, classes = cast(int, model.num_features), cast(int, model.num_classes)
    model.pre_logits = nn.Identity()
    model.head = ClassifierHead(features, classes, pool_type="avg", drop_rate=dropout)
    model.head_hidden_size = features  # type: ignore[assignment]  # timm's plain int attribute
    return model


def create_model(
    name: str,
    num_classes: int,
    *,
    pretrained: bool = True,
    weights: str | os.PathLike[str] | None = None,
    weights_dir: str | os.PathLike[str] | None = None,
    dropout: float = 0.0,
) -> nn.Module:
    """Build a backbone with a fresh ``num_classes`` head (see :func:`create_model_with_report`)."""
    return create_model_with_report(
        name, num_classes, pretrained=pretrained, weights=weights, weights_dir=weights_dir, dropout=dropout
    )[0]


def create_model_with_report(
    name: str,
    num_classes: int,
    *,
    pretrained: bool = True,
    weights: str | os.PathLike[str] | None = None,
    weights_dir: str | os.PathLike[str] | None = None,
    dropout: float = 0.0,
) -> tuple[nn.Module, ws.WeightsReport]:
    """Build a backbone with a fresh ``num_classes`` head, and say where its weights came from.

    Pretrained weights come from, in order (:mod:`covidct.models.weights`): ``weights`` (a state-dict file),
    ``weights_dir`` (``<timm_name|arch|paper name>.<safetensors|pth|pt|bin>``), an installed weight package,
    or the model hub (timm's cache first; cache-only when the hub is unreachable). ``pretrained=False`` trains
    from scratch. Every backbone tensor must be matched, else :class:`CheckpointError`.
    """
    if num_classes < 2:
        raise ConfigError(f"need at least 2 classes, got {num_classes}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
    spec = get_spec(name)
    kwargs: dict[str, Any] = dict(num_classes=num_classes, drop_rate=dropout)
    source = "file"
    if weights is None and weights_dir is not None and pretrained:
        weights = ws.find_in_dir(spec, weights_dir)
        if weights is None:
            raise CheckpointError(
                f"{weights_dir}: no weights file for {spec.name} "
                f"(looked for {spec.timm_name}.safetensors/.pth)"
            )
        source = "dir"
    if weights is not None:
        path = Path(weights)
        state = ws.read_state_dict(path)  # errors name the file before any model is built
        model = timm.create_model(spec.timm_name, pretrained=False, **kwargs)
        report = ws.load_state_into(model, state, source=source, location=str(path))
        return _paper_head(model, spec, dropout), report
    if not pretrained:
        model = _paper_head(timm.create_model(spec.timm_name, pretrained=False, **kwargs), spec, dropout)
        count = ws.backbone_tensor_count(model)
        return model, ws.WeightsReport(source="none", location="", matched=0, total=count)
    package = ws.package_for(spec.arch)
    package_file = package.path() if package is not None else None
    if package is not None and package_file is not None:
        model = timm.create_model(spec.timm_name, pretrained=False, **kwargs)
        report = ws.load_state_into(
            model,
            ws.read_state_dict(package_file),
            source="package",
            location=f"{package.package}=={package.version()}",
            key_map=package.key_map,
            licence=package.licence,
        )
        cfg = cast(dict[str, Any], model.pretrained_cfg)
        model.pretrained_cfg = {**cfg, "mean": package.mean, "std": package.std}  # type: ignore[assignment]
        return _paper_head(model, spec, dropout), report
    cached = _hub.hub_status(spec.timm_name) == "cached"
    try:
        with _hub.hub_offline_if_unreachable():
            model = timm.create_model(spec.timm_name, pretrained=True, **kwargs)
    except Exception as exc:  # hub errors come in many types (OSError, requests, huggingface_hub)
        hint = f"; pip install {package.package}" if package is not None else ""
        raise CheckpointError(
            f"{spec.name}: could not get pretrained weights {spec.timm_name} from the model hub "
            f"({type(exc).__name__}); offline? Use --weights FILE, --weights-dir DIR, or --no-pretrained"
            + hint
        ) from None
    model = _paper_head(model, spec, dropout)
    count = ws.backbone_tensor_count(model)  # timm loads the backbone strictly
    return model, ws.WeightsReport(
        source="cache" if cached else "hub", location=spec.timm_name, matched=count, total=count
    )


def init_head(model: nn.Module) -> None:
    """Zero the classifier: every class starts equally likely, so the first loss is log(K) however large the
    (pretrained) features are (timm's default init over ImageNet features started Lite0 at 2.1 for K=2)."""
    head = model.get_classifier()  # type: ignore[operator]
    with torch.no_grad():
        for p in head.parameters():
            p.zero_()
