"""Predict COVID-19 / healthy / pneumonia probabilities for CT slices, per slice and per patient/series (issue #5).

``Predictor.from_path(path)`` picks the backend by suffix: ``.onnx`` -> :class:`OnnxPredictor` (onnxruntime, no
torch import), anything else -> :class:`TorchPredictor` (a covidct checkpoint). ``predict(inputs)`` takes files,
folders, DICOM series, NIfTI volumes (expanded by :mod:`covidct.data.inputs`) or 2-D arrays in [0, 1], and returns
a :class:`PredictionResult`: one row per slice (``path, patient_id, prob_<class>..., predicted, model``) and one
per group (mean slice probability, predicted class, slice votes per class).

Speed: slices are preprocessed (resize + normalise, numpy/PIL, GIL released) by a background thread one batch
ahead of the model, so the network never waits for image work after the first batch. The torch backend tunes
glibc malloc (see :mod:`covidct.inference.runtime`) and runs channels-last under ``inference_mode``.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from covidct.data.preprocess import Preprocess
from covidct.errors import ConfigError, DataError
from covidct.utils import atomic_path, write_json_atomic

if TYPE_CHECKING:
    from covidct.inference.torch_backend import TorchPredictor

PathLike = str | os.PathLike[str]
InputLike = PathLike | np.ndarray
ProgressFn = Callable[[int], None]
SliceImage = np.ndarray | Callable[[], np.ndarray]

ONNX_SUFFIXES = (".onnx",)


@dataclass(frozen=True)
class ModelInfo:
    """What prediction needs to know about a model: from a checkpoint's meta or an ONNX file's metadata."""

    model_name: str
    classes: tuple[str, ...]
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    window: dict[str, Any] = field(default_factory=lambda: {"name": "lung", "width": 1500.0, "level": -600.0})
    covidct_version: str = ""
    preprocess: dict[str, Any] = field(default_factory=dict)  # lung crop / standardisation (none when empty)

    @classmethod
    def from_meta(cls, meta: Any) -> ModelInfo:
        """From a :class:`~covidct.models.checkpoint.CheckpointMeta` (or a mapping with the same keys)."""
        get = meta.get if isinstance(meta, dict) else lambda k, d=None: getattr(meta, k, d)
        return cls(
            model_name=str(get("model_name")), classes=tuple(get("classes")), image_size=int(get("image_size")),
            mean=tuple(float(v) for v in get("mean")), std=tuple(float(v) for v in get("std")),
            window=dict(get("window") or {"name": "lung", "width": 1500.0, "level": -600.0}),
            covidct_version=str(get("covidct_version", "") or ""),
            preprocess=dict(get("preprocess", None) or {}),
        )

    @property
    def window_spec(self) -> str:
        """The window as ``"W,L"`` for :func:`covidct.data.window.parse_window`."""
        return f"{float(self.window['width']):g},{float(self.window['level']):g}"


@dataclass(frozen=True)
class Batch:
    """Preprocessed slices ready for the network."""

    sources: list[str]
    groups: list[str]
    pixels: np.ndarray  # (N, 3, S, S) float32
    lungs_found: list[bool] = field(default_factory=list)  # per slice (lung options on; else all True)


@dataclass(frozen=True)
class PredictionResult:
    """Per-slice and per-group predictions, plus the inputs that could not be read."""

    classes: tuple[str, ...]
    slices: pd.DataFrame  # path, patient_id, prob_<class>..., predicted, model
    groups: pd.DataFrame  # patient_id, n_slices, prob_<class>... (mean), predicted, votes_<class>...
    skipped: list[tuple[str, str]] = field(default_factory=list)
    model: str = ""

    @property
    def probabilities(self) -> np.ndarray:
        """(n_slices, n_classes) slice probabilities."""
        return self.slices[[f"prob_{c}" for c in self.classes]].to_numpy(dtype=np.float64)

    def save(self, out: PathLike) -> list[Path]:
        """Write by suffix: ``.json`` (one file: slices, patients, skipped) or ``.csv`` (slices in ``out`` and
        patients in ``<stem>.patients.csv`` beside it). Atomic; returns the written paths."""
        out = Path(out)
        suffix = out.suffix.lower()
        if suffix == ".json":
            write_json_atomic(out, {
                "model": self.model, "classes": list(self.classes),
                "slices": json.loads(self.slices.to_json(orient="records")),
                "patients": json.loads(self.groups.to_json(orient="records")),
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            })
            return [out]
        if suffix == ".csv":
            groups_out = out.with_name(f"{out.stem}.patients.csv")
            for frame, path in ((self.slices, out), (self.groups, groups_out)):
                with atomic_path(path) as tmp:
                    frame.to_csv(tmp, index=False)
            return [out, groups_out]
        raise ConfigError(f"{out}: output must end in .csv or .json")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _as_unit_image(array: np.ndarray, name: str) -> np.ndarray:
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        array = array[..., :3].mean(axis=-1)
    if array.ndim != 2 or min(array.shape) < 2:
        raise DataError(name, f"expected a 2-D slice (H, W), got shape {tuple(array.shape)}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    out = np.asarray(array, dtype=np.float32)
    if not np.isfinite(out).all():
        raise DataError(name, "array contains NaN or infinite values")
    return out


def expand_inputs(
    inputs: InputLike | Sequence[InputLike], window: str, skipped: list[tuple[str, str]]
) -> Iterator[tuple[str, np.ndarray, str]]:
    """Inputs -> a lazy stream of ``(source, image (H, W) in [0, 1], group)``; unreadable files go to ``skipped``.

    Paths (files, folders, series, volumes) are expanded and decoded one slice at a time by
    :func:`covidct.data.inputs.iter_inputs` (so decoding happens in the prefetch thread); arrays are used as they
    are (``array[i]`` for the i-th, each its own group; a 3-D ``(N, H, W)`` stack is one group). A path that does
    not exist is an error straight away (a typo), not a skipped file.
    """
    items: list[InputLike] = [inputs] if isinstance(inputs, (str, os.PathLike, np.ndarray)) else list(inputs)
    if not items:
        raise ConfigError("no inputs given")
    for item in items:
        if isinstance(item, (str, os.PathLike)) and not Path(item).exists():
            raise DataError(item, "no such file or folder")
        if not isinstance(item, (str, os.PathLike, np.ndarray)):
            raise ConfigError(f"cannot predict on a {type(item).__name__}; give paths or 2-D arrays")
    return _stream(items, window, skipped)


def _stream(
    items: list[InputLike], window: str, skipped: list[tuple[str, str]]
) -> Iterator[tuple[str, np.ndarray, str]]:
    for i, item in enumerate(items):
        if isinstance(item, np.ndarray):
            name = f"array[{i}]"
            if item.ndim == 3 and item.shape[-1] not in (3, 4):
                yield from ((f"{name}#{k}", _as_unit_image(s, name), name) for k, s in enumerate(item))
            else:
                yield name, _as_unit_image(item, name), name
            continue
        from covidct.data.inputs import iter_inputs

        before = len(skipped)
        try:
            for s in iter_inputs([Path(item)], window=window, skipped=skipped):
                yield str(s.source), s.image, str(s.group)
        except DataError as exc:  # nothing readable under this path: skip it, fail only if nothing at all
            if len(skipped) == before:
                skipped.append((exc.path, exc.reason))


def iter_batches(
    slices: Iterable[tuple[str, SliceImage, str]], preprocess: Preprocess, batch_size: int, *, prefetch: bool = True
) -> Iterator[Batch]:
    """Decode (if lazy) and preprocess ``slices`` in batches; with ``prefetch``, one background thread prepares
    batch k+1 (pulling from ``slices``, which may decode files) while the caller runs the network on batch k.

    An image may also be a callable returning the array (e.g. ``partial(load_slice, path)``)."""
    stream = iter(slices)

    def make() -> Batch | None:
        chunk = list(itertools.islice(stream, batch_size))
        if not chunk:
            return None
        images = [c[1]() if callable(c[1]) else c[1] for c in chunk]
        pixels, found = preprocess.batch_flagged(images)
        return Batch([c[0] for c in chunk], [c[2] for c in chunk], pixels, found)

    if not prefetch:
        while (batch := make()) is not None:
            yield batch
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="covidct-prefetch") as pool:
        pending = pool.submit(make)
        while (batch := pending.result()) is not None:
            pending = pool.submit(make)
            yield batch


def aggregate_groups(slices: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """One row per ``patient_id``: slice count, mean probability per class, predicted class, votes per class."""
    prob_cols = [f"prob_{c}" for c in classes]
    grouped = slices.groupby("patient_id", sort=False)
    means = grouped[prob_cols].mean()
    out = pd.DataFrame({"patient_id": means.index, "n_slices": grouped.size().loc[means.index].to_numpy()})
    for col in prob_cols:
        out[col] = means[col].to_numpy()
    out["predicted"] = [classes[i] for i in means.to_numpy().argmax(axis=1)]
    votes = pd.crosstab(slices["patient_id"], slices["predicted"]).reindex(
        index=means.index, columns=list(classes), fill_value=0
    )
    for c in classes:
        out[f"votes_{c}"] = votes[c].to_numpy().astype(int)
    return out.reset_index(drop=True)


class Predictor:
    """Base predictor: preprocessing, batching, aggregation. Subclasses implement :meth:`logits`."""

    backend = "base"

    def __init__(self, info: ModelInfo, *, batch_size: int = 1, prefetch: bool = True) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {batch_size}")
        self.info = info
        self.classes = info.classes
        self.preprocess = Preprocess.from_meta(info)
        self.batch_size = batch_size
        self.prefetch = prefetch

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: PathLike, **kwargs: Any) -> TorchPredictor:
        """A torch predictor for a covidct checkpoint (``device``, ``threads``, ``batch_size``, ...)."""
        from covidct.inference.torch_backend import TorchPredictor

        return TorchPredictor.load(path, **kwargs)

    @classmethod
    def from_path(cls, path: PathLike, *, backend: str | None = None, **kwargs: Any) -> Predictor:
        """By suffix: ``.onnx`` -> onnxruntime, else a torch checkpoint. ``backend="onnx"`` on a checkpoint
        exports it to a temporary ONNX file first; ``backend="torch"`` on an ONNX file is an error."""
        path = Path(path)
        is_onnx = path.suffix.lower() in ONNX_SUFFIXES
        if backend not in (None, "torch", "onnx"):
            raise ConfigError(f"unknown backend {backend!r}: use torch or onnx")
        if is_onnx:
            if backend == "torch":
                raise ConfigError(f"{path}: an ONNX model runs with --backend onnx, not torch")
            return OnnxPredictor(path, **kwargs)
        if backend == "onnx":
            from covidct.inference.export import export_to_temp

            return OnnxPredictor(export_to_temp(path), **kwargs)
        return cls.from_checkpoint(path, **kwargs)

    # -- running ------------------------------------------------------------------------------------------------
    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """``(N, 3, S, S)`` float32 -> ``(N, n_classes)`` logits."""
        raise NotImplementedError

    def predict_proba(self, pixels: np.ndarray) -> np.ndarray:
        """Preprocessed batch -> probabilities."""
        return softmax(self.logits(pixels))

    def predict(
        self, inputs: InputLike | Sequence[InputLike], *, batch_size: int | None = None,
        progress: ProgressFn | None = None, window: str | None = None,
    ) -> PredictionResult:
        """Probabilities per slice and per group for paths or arrays (see :func:`expand_inputs`).

        ``window`` overrides the model's CT window for DICOM/NIfTI inputs (``"lung"``, ``"1500,-600"``)."""
        skipped: list[tuple[str, str]] = []
        slices = expand_inputs(inputs, window or self.info.window_spec, skipped)
        return self.predict_slices(slices, skipped=skipped, batch_size=batch_size, progress=progress)

    def predict_slices(
        self, slices: Iterable[tuple[str, SliceImage, str]], *, skipped: Sequence[tuple[str, str]] = (),
        batch_size: int | None = None, progress: ProgressFn | None = None,
    ) -> PredictionResult:
        """Predict ``(source, image or loader, group)`` slices (see :func:`iter_batches`)."""
        size = batch_size or self.batch_size
        if size < 1:
            raise ConfigError(f"batch size must be >= 1, got {size}")
        sources: list[str] = []
        groups: list[str] = []
        probs: list[np.ndarray] = []
        found: list[bool] = []
        for batch in iter_batches(slices, self.preprocess, size, prefetch=self.prefetch):
            probs.append(self.predict_proba(batch.pixels))
            sources.extend(batch.sources)
            groups.extend(batch.groups)
            found.extend(batch.lungs_found)
            if progress is not None:
                progress(len(batch.sources))
        if not probs:  # ``skipped`` is filled while streaming: read it only now
            if len(skipped) == 1:
                raise DataError(*skipped[0])
            detail = f" ({len(skipped)} skipped; first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
            raise DataError("inputs", f"no readable image found{detail}")
        prob = np.concatenate(probs)
        table = pd.DataFrame({"path": sources, "patient_id": groups})
        for j, c in enumerate(self.classes):
            table[f"prob_{c}"] = prob[:, j]
        table["predicted"] = [self.classes[i] for i in prob.argmax(axis=1)] if len(prob) else []
        table["model"] = self.info.model_name
        if self.preprocess.uses_lungs:  # flag the slices that fell back to the whole slice
            table["lungs_found"] = found
        return PredictionResult(
            classes=self.classes, slices=table, groups=aggregate_groups(table, self.classes),
            skipped=list(skipped), model=self.info.model_name,
        )


class OnnxPredictor(Predictor):
    """onnxruntime on CPU (or CUDA if its provider is installed); imports no torch."""

    backend = "onnx"

    def __init__(
        self, path: PathLike, *, threads: int | None = None, device: str = "cpu", batch_size: int = 1,
        prefetch: bool = True,
    ) -> None:
        from covidct.inference.onnx_meta import open_session, session_info
        from covidct.inference.runtime import ort_session_options

        import onnxruntime as ort

        self.path = Path(path)
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ConfigError("device cuda: this onnxruntime has no CUDAExecutionProvider (pip onnxruntime-gpu)")
            providers.insert(0, "CUDAExecutionProvider")
        elif device != "cpu":
            raise ConfigError(f"unknown device {device!r}: use cpu or cuda")
        self.session = open_session(self.path, ort_session_options(threads), providers)
        super().__init__(session_info(self.session, self.path), batch_size=batch_size, prefetch=prefetch)
        self.input_name = self.session.get_inputs()[0].name

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(pixels, dtype=np.float32)})[0]


def __getattr__(name: str) -> Any:  # TorchPredictor lives in torch_backend (imports torch); re-export lazily
    if name == "TorchPredictor":
        from covidct.inference.torch_backend import TorchPredictor

        return TorchPredictor
    raise AttributeError(name)
