"""What a trained model says about itself: the one metadata record of covidct (no torch).

:class:`ModelMeta` is stored in checkpoints (the ``meta`` dict of :mod:`covidct.models.checkpoint`), written
into ONNX ``metadata_props`` (:mod:`covidct.inference.onnx_meta`), held by every predictor and reported by the
service (``GET /model``). Its serialised keys are the field names below (``to_dict``/``from_dict``); ONNX
metadata stores ``image_size`` as ``input_size``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from covidct import __version__
from covidct.data.window import parse_window

FORMAT_VERSION = 1  # of the checkpoint payload (see covidct.models.checkpoint)


def window_record(window: str = "lung") -> dict[str, Any]:
    """``{"name", "width", "level"}`` of a window preset or ``"W,L"`` (how metadata stores a window)."""
    w = parse_window(window)
    return {"name": window, "width": float(w.width), "level": float(w.level)}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True, kw_only=True)
class ModelMeta:
    """What prediction, explanation, export and the service need to know about a trained model."""

    model_name: str  # paper name or timm name, resolvable with get_spec()
    timm_name: str
    classes: tuple[str, ...]
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    window: dict[str, Any] = field(default_factory=window_record)
    cam_layer: str = ""
    dropout: float = 0.0
    preprocess: dict[str, Any] = field(default_factory=dict)  # lung options (Preprocess.record)
    config: dict[str, Any] = field(default_factory=dict)
    covidct_version: str = __version__
    format_version: int = FORMAT_VERSION
    created: str = field(default_factory=_now)

    @property
    def window_spec(self) -> str:
        """The window as ``"W,L"`` for :func:`covidct.data.window.parse_window`."""
        return f"{float(self.window['width']):g},{float(self.window['level']):g}"

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (a checkpoint is loaded with ``weights_only=True``)."""
        data = dataclasses.asdict(self)
        data["classes"] = list(self.classes)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMeta:
        """From :meth:`to_dict` output; unknown keys are ignored, a missing required key is a TypeError."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("classes", "mean", "std"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)
