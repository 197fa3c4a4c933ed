"""The paper's intermediate activation maps: what each backbone stage responds to in one slice.

Forward hooks on the stages that timm names in ``model.feature_info`` (removed in ``finally``) capture each
stage's output; per stage we keep the ``top`` channels with the highest mean activation and the channel mean.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from covidct.data.preprocess import Preprocess
from covidct.errors import ConfigError
from covidct.explain.cam import stage_names

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True, eq=False)
class StageActivation:
    name: str  # module name, e.g. "layer3"
    channels: tuple[int, ...]  # the most active channels, most active first
    maps: np.ndarray  # (top, h, w) activations of those channels
    mean_map: np.ndarray  # (h, w) mean over all channels
    num_channels: int


@dataclass(frozen=True, eq=False)
class ActivationMaps:
    image: np.ndarray
    source: str
    stages: tuple[StageActivation, ...]

    def save(self, out: str | Path) -> list[Path]:
        """One grid PNG per stage (``stage<k>_<name>.png``) and ``overview.png``; returns the paths."""
        from covidct.explain import render

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for k, stage in enumerate(self.stages):
            path = out / f"stage{k}_{stage.name.replace('.', '_')}.png"
            title = f"{stage.name}: top {len(stage.channels)} of {stage.num_channels} channels"
            written.append(render.save_activation_grid(path, stage.maps, stage.channels, title=title))
        overview = [(s.name, s.mean_map, s.maps[0]) for s in self.stages]
        written.append(
            render.save_activation_overview(
                out / "overview.png", self.image, overview, title=f"activations: {Path(self.source).name}"
            )
        )
        return written


def compute_activations(
    model: nn.Module,
    image: np.ndarray,
    preprocess: Preprocess,
    *,
    top: int = 8,
    stages: list[str] | None = None,
    source: str = "",
) -> ActivationMaps:
    """Activations of one 2-D slice at each stage (default: timm's ``feature_info`` stages)."""
    import torch

    if top < 1:
        raise ConfigError(f"top must be >= 1, got {top}")
    names = stages or stage_names(model)
    if not names:
        raise ConfigError("this model has no timm feature_info stages; name the stages explicitly")
    captured: dict[str, torch.Tensor] = {}
    handles = []
    modes = {module: module.training for module in model.modules()}
    try:
        for name in names:
            try:
                module = model.get_submodule(name)
            except AttributeError:
                raise ConfigError(f"unknown stage {name!r}; valid: {', '.join(stage_names(model))}") from None
            handles.append(module.register_forward_hook(_capture(captured, name)))
        model.eval()
        device = next(model.parameters()).device
        x = torch.from_numpy(preprocess(np.asarray(image, dtype=np.float32))[None]).to(device)
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    results = []
    for name in names:
        act = captured[name][0].float().cpu().numpy()  # (C, h, w)
        if act.ndim != 3:
            raise ConfigError(f"stage {name!r} does not output a 2-D feature map (shape {act.shape})")
        order = np.argsort(-act.mean(axis=(1, 2)), kind="stable")[: min(top, act.shape[0])]
        results.append(
            StageActivation(
                name=name,
                channels=tuple(int(c) for c in order),
                maps=act[order],
                mean_map=act.mean(axis=0),
                num_channels=act.shape[0],
            )
        )
    return ActivationMaps(image=np.asarray(image), source=source, stages=tuple(results))


def _capture(store: dict, name: str):
    def hook(module, inputs, output):
        tensor = output[0] if isinstance(output, (tuple, list)) else output
        with contextlib.suppress(AttributeError):
            store[name] = tensor.detach()

    return hook
