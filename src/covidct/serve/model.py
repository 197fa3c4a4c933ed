"""The served model: loaded once (:func:`load_model`), shared by all requests (:class:`ServedModel`).

A torch model is used by one thread at a time (Grad-CAM hooks and module modes are per-model state), light
(urgent) requests before heavy ones; an onnxruntime session is thread-safe. Which backend runs the file:
:func:`covidct.inference.load.load_predictor`; what ``GET /model`` reports: the predictor's
:class:`~covidct.models.metadata.ModelMeta`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from covidct.errors import CheckpointError
from covidct.inference.backends import check_backend
from covidct.inference.load import load_predictor
from covidct.inference.predictor import Predictor, aggregate_groups
from covidct.serve.images import jet_lut
from covidct.serve.uploads import UploadError
from covidct.utils import sha256_file

SERIES_BATCH = 8  # slices per forward pass for a light request
HEAVY_BATCH = 2  # slices per model turn for a heavy request (light requests get the model in between)


class _ModelTurns:
    """A lock on the model that light (urgent) requests get before heavy ones waiting at the same time."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = False
        self._urgent = 0

    @contextlib.contextmanager
    def hold(self, urgent: bool) -> Any:
        with self._cond:
            self._urgent += urgent
            try:
                while self._busy or (not urgent and self._urgent):
                    self._cond.wait()
            finally:
                self._urgent -= urgent
            self._busy = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()


@dataclass(frozen=True)
class LoadedModel:
    """A predictor plus the version the service reports for it."""

    predictor: Predictor
    version: str  # short SHA-256 of the model file


def load_model(
    path: str | os.PathLike[str],
    *,
    threads: int | None = None,
    backend: str | None = None,
    precision: str = "auto",
) -> LoadedModel:
    """A ``.pt`` checkpoint or an ``.onnx`` model for the service; the backend by suffix unless given (see
    :func:`covidct.inference.load.load_predictor`)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: model file not found")
    check_backend(backend, precision)
    predictor = load_predictor(path, backend=backend, precision=precision, threads=threads)
    return LoadedModel(predictor, sha256_file(path)[:12])


class ServedModel:
    """The shared model: thread-safe prediction and Grad-CAM, plus what ``GET /model`` reports."""

    def __init__(self, predictor: Predictor, *, version: str | None = None) -> None:
        self.predictor = predictor
        self.meta = predictor.meta
        self.classes = tuple(predictor.classes)
        self.runtime = predictor.backend
        self.torch_model = getattr(predictor, "model", None) if self.runtime == "torch" else None
        self.precision = predictor.precision
        self.backbone = self.meta.timm_name
        self.cam_layer = self.meta.cam_layer
        if self.torch_model is not None:  # the default CAM layer at the served input size (issue 14)
            from covidct.explain.layers import choose_cam_layer

            chosen = choose_cam_layer(self.torch_model, self.meta.image_size, self.cam_layer or None)
            self.cam_layer = chosen.layer
        self.created = self.meta.created
        self.version = version or self.created or "unknown"
        # one torch forward/CAM at a time: hooks and module modes are per-model state; ORT sessions are
        # thread-safe
        self._turns = _ModelTurns() if self.runtime == "torch" else None

    @property
    def name(self) -> str:
        return self.meta.model_name

    @property
    def can_explain(self) -> bool:
        return self.torch_model is not None

    def _turn(self, urgent: bool) -> contextlib.AbstractContextManager[Any]:
        return self._turns.hold(urgent) if self._turns is not None else contextlib.nullcontext()

    def predict(
        self,
        images: Sequence[np.ndarray],
        sources: Sequence[str],
        *,
        urgent: bool = True,
        check: Callable[[], None] = lambda: None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-slice ``(N, C)`` probabilities and the series' aggregated ``(C,)`` (the predictor's group
        mean). The model is taken a few slices at a time (``HEAVY_BATCH`` unless ``urgent``), ``check`` in
        between."""
        step = SERIES_BATCH if urgent else HEAVY_BATCH
        tables = []
        for start in range(0, len(images), step):
            check()
            slices = [
                (src, image, "upload")
                for src, image in zip(
                    sources[start : start + step], images[start : start + step], strict=True
                )
            ]
            with self._turn(urgent):
                result = self.predictor.predict_slices(slices, batch_size=step)
            tables.append(result.slices)
        table = pd.concat(tables, ignore_index=True)
        probs = table[[f"prob_{c}" for c in self.classes]].to_numpy(dtype=np.float64)
        group = aggregate_groups(table, self.classes).iloc[0]
        return probs, np.asarray([group[f"prob_{c}"] for c in self.classes], dtype=np.float64)

    def cams(
        self,
        images: Sequence[np.ndarray],
        target: str,
        *,
        urgent: bool = True,
        check: Callable[[], None] = lambda: None,
    ) -> list[np.ndarray]:
        """One ``(H, W)`` map in [0, 1] per slice, for class ``target`` (one slice per model turn)."""
        preload_explain()  # the first import takes seconds: never while holding the model
        from covidct.explain.cam import compute_cams

        model = self.torch_model
        if model is None:  # routes check can_explain first
            raise UploadError("this model cannot explain: Grad-CAM needs a torch checkpoint", 409)
        maps = []
        for image in images:
            check()
            with self._turn(urgent):
                batch = compute_cams(
                    model,
                    self.cam_layer or None,
                    [image],
                    target,
                    classes=self.classes,
                    preprocess=self.predictor.preprocess,
                    batch_size=1,
                )
            maps.append(batch.maps[0][0])
        return maps


def preload_explain() -> None:
    """Import Grad-CAM (pytorch-grad-cam pulls in scikit-learn and scipy: seconds) and build the colour table;
    ``serve`` calls it at start so the first /explain does not pay for it."""
    import pytorch_grad_cam  # noqa: F401
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: F401

    import covidct.explain.cam  # noqa: F401

    jet_lut()
