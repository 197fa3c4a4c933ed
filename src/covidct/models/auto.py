"""Automatic specs for timm models outside the zoo: input size from timm's pretrained config, Grad-CAM layer
from timm's ``feature_info`` (the model is built on the meta device: no memory, no weights)."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import timm
import torch

from covidct.errors import UnknownModelError
from covidct.models.spec import ModelSpec


def auto_spec(name: str, known: Sequence[str] = ()) -> ModelSpec:
    """A spec for any timm ``arch[.tag]``; otherwise :class:`UnknownModelError` with close matches among
    ``known`` (the registered names) and timm's models."""
    arch = name.split(".", 1)[0]
    if not timm.is_model(arch):
        choices = [*known, *timm.list_models()]
        close = difflib.get_close_matches(name, choices, n=5, cutoff=0.6)
        hint = (
            f"; did you mean {', '.join(close)}?" if close else "; `covidct models` lists the paper's models"
        )
        raise UnknownModelError(f"unknown model {name!r}{hint}")
    cfg = timm.get_pretrained_cfg(name) if "." in name else timm.get_pretrained_cfg(arch)
    input_size = int(cfg.input_size[-1]) if cfg is not None and cfg.input_size else 224
    return ModelSpec(
        name=name,
        timm_name=name,
        input_size=input_size,
        cam_layer=last_feature_module(arch),
        family="timm",
        pretrained_weights=(cfg.tag if cfg is not None and cfg.tag else "default"),
        note="any timm model; Grad-CAM layer taken from timm's feature_info",
    )


def last_feature_module(arch: str) -> str:
    """The module of the deepest feature stage, from timm's ``feature_info`` (built on the meta device)."""
    with torch.device("meta"):
        model = timm.create_model(arch, pretrained=False)
    info = getattr(model, "feature_info", None)
    if not info:
        raise UnknownModelError(f"model {arch!r} has no feature_info; name a Grad-CAM layer explicitly")
    last = info[-1]
    return str(last["module"] if isinstance(last, dict) else info.module_name()[-1])
