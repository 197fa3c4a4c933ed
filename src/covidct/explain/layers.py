"""The default CAM layer, chosen from the feature-map sizes at the input size the model is used at (issue 14).

A CAM is as coarse as its layer's feature map: layer4 of a ResNet is 7 x 7 at 224 px but 3 x 3 at 96 px, and
an upsampled 3 x 3 map cannot point at a lesion. :func:`choose_cam_layer` keeps the registry's layer (the
paper's, e.g. ``layer4`` or ``bn2``) when its map is at least ``MIN_MAP_SIZE`` pixels on the short side, and
otherwise steps back to the deepest timm ``feature_info`` stage whose map is that large. Sizes come from one
shape probe (a forward pass of zeros with hooks; on a meta-device model it costs nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from covidct.explain.cam import resolve_layer, stage_names

if TYPE_CHECKING:
    from torch import nn

MIN_MAP_SIZE = 7  # the paper's models at their native sizes: 7 x 7 (224 px / 32) to 8 x 8 (Inception, 299 px)


@dataclass(frozen=True)
class LayerChoice:
    """The CAM layer, its feature-map size at ``image_size`` and why it was chosen."""

    layer: str
    map_size: tuple[int, int]
    image_size: int
    reason: str

    def describe(self) -> str:
        h, w = self.map_size
        return f"{self.layer} ({h}x{w} map at {self.image_size} px; {self.reason})"


def feature_map_sizes(model: nn.Module, image_size: int, layers: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Spatial output size of each module in ``layers`` for one ``image_size`` x ``image_size`` input.

    Runs one forward pass of zeros in eval mode (modes restored after) on the model's device; on a meta-device
    model (``with torch.device("meta"): timm.create_model(...)``) no memory or compute is spent.
    """
    import torch

    sizes: dict[str, tuple[int, int]] = {}

    def hook(name: str):
        def record(_module, _inputs, output) -> None:
            out = output[0] if isinstance(output, (tuple, list)) else output
            if isinstance(out, torch.Tensor) and out.ndim == 4:
                sizes[name] = (int(out.shape[-2]), int(out.shape[-1]))

        return record

    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    modes = {module: module.training for module in model.modules()}
    handles = [model.get_submodule(name).register_forward_hook(hook(name)) for name in dict.fromkeys(layers)]
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    return sizes


def choose_from_sizes(
    stages: Sequence[tuple[str, tuple[int, int]]],
    preferred: tuple[str, tuple[int, int]] | None,
    image_size: int,
    *,
    min_size: int = MIN_MAP_SIZE,
) -> LayerChoice:
    """The pure rule: ``preferred`` (the registry layer, the deepest) if its map is >= ``min_size``, else the
    deepest of ``stages`` (shallow to deep) whose map is, else the stage with the largest map."""
    if preferred is not None and min(preferred[1]) >= min_size:
        return LayerChoice(preferred[0], preferred[1], image_size, "the model's CAM layer")
    big = [(name, size) for name, size in stages if min(size) >= min_size]
    if big:
        name, size = big[-1]
        why = f"deepest stage with a map of at least {min_size}x{min_size}"
    elif stages or preferred is not None:
        candidates = [*stages, *([preferred] if preferred is not None else [])]
        name, size = max(candidates, key=lambda item: min(item[1]))
        why = f"no stage reaches {min_size}x{min_size}: the largest map"
    else:
        raise ValueError("no layers to choose from")
    if preferred is not None and name != preferred[0]:
        ph, pw = preferred[1]
        why += f"; {preferred[0]} would be {ph}x{pw}"
    return LayerChoice(name, size, image_size, why)


def choose_cam_layer(
    model: nn.Module, image_size: int, preferred: str | None = None, *, min_size: int = MIN_MAP_SIZE
) -> LayerChoice:
    """The default CAM layer of ``model`` at ``image_size`` (see the module docstring). ``preferred`` is the
    checkpoint's or registry's layer (``None``: the deepest ``feature_info`` stage)."""
    stages = stage_names(model)
    preferred = resolve_layer(model, preferred) if preferred or stages else None
    sizes = feature_map_sizes(model, image_size, [*stages, *([preferred] if preferred else [])])
    staged = [(name, sizes[name]) for name in stages if name in sizes and name != preferred]
    pref = (preferred, sizes[preferred]) if preferred and preferred in sizes else None
    if pref is None and not staged:
        raise ValueError(f"no 2-D feature maps found in {preferred or 'feature_info stages'}")
    return choose_from_sizes(staged, pref, image_size, min_size=min_size)
