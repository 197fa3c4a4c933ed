"""Model registry: look up a :class:`~covidct.models.spec.ModelSpec` by paper name or timm name.

The paper's 20 and the extras (:mod:`covidct.models.zoo`) are registered on import; any other timm name gets
an automatic spec (:mod:`covidct.models.auto`). Building models: :mod:`covidct.models.factory`. No torch
import unless an automatic spec is needed.
"""

from __future__ import annotations

from covidct.models.spec import ModelSpec
from covidct.models.zoo import EXTRA_MODELS, PAPER_MODELS

_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add a spec; registering a name twice is a bug (timm only warns)."""
    key = spec.name.lower()
    if key in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is already registered")
    _REGISTRY[key] = spec
    return spec


def list_models() -> list[ModelSpec]:
    """The registered models (the paper's 20, then the extras), in registration order."""
    return list(_REGISTRY.values())


def get_spec(name: str) -> ModelSpec:
    """The spec of a paper name (case-insensitive) or of any timm model name (automatic spec)."""
    spec = _REGISTRY.get(name.lower())
    if spec is not None:
        return spec
    for candidate in _REGISTRY.values():  # a registered timm name maps back to its paper spec
        if name in (candidate.timm_name, candidate.arch):
            return candidate
    from covidct.models.auto import auto_spec  # imports timm and torch: only for names outside the zoo

    return auto_spec(name, [s.name for s in _REGISTRY.values()])


for _spec in (*PAPER_MODELS, *EXTRA_MODELS):
    register(_spec)
