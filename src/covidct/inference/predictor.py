"""Predict COVID-19 / healthy / pneumonia probabilities for CT slices, per slice and per patient/series.

:class:`Predictor` is the base of the backends (``TorchPredictor``, ``OnnxPredictor``, ``OpenVinoPredictor``);
:func:`covidct.inference.load.load_predictor` picks one for a model file. It imports nothing from
``covidct.inference``. ``predict(inputs)`` takes files, folders, DICOM series, NIfTI
volumes (expanded by :mod:`covidct.data.inputs`) or 2-D arrays in [0, 1], and returns a
:class:`PredictionResult`: one row per slice (``path, patient_id, prob_<class>..., predicted, model, backend,
precision``) and one per group (mean slice probability, predicted class, slice votes per class, the same run
columns).

Speed: slices are decoded, windowed, resized and normalised by a thread pool ahead of the model
(:func:`covidct.data.pipeline.ordered_prefetch`, bounded, order kept), so the network does not wait for image
work unless decoding is slower than it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from covidct.data.inputs import InputSlice, Skipped, input_jobs
from covidct.data.pipeline import decode_workers, ordered_prefetch
from covidct.data.preprocess import Preprocess
from covidct.errors import ConfigError, DataError
from covidct.models.metadata import ModelMeta
from covidct.utils import atomic_path, write_json_atomic

PathLike = str | os.PathLike[str]
InputLike = str | os.PathLike[str] | np.ndarray
ProgressFn = Callable[[int], None]
SliceImage = np.ndarray | Callable[[], np.ndarray]


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
    slices: pd.DataFrame  # path, patient_id, prob_<class>..., predicted, model, backend, precision
    groups: pd.DataFrame  # patient_id, n_slices, prob_<class>... (mean), predicted, votes_<class>..., model..
    skipped: list[tuple[str, str]] = field(default_factory=list)
    model: str = ""
    backend: str = ""  # torch | onnx | openvino (also a column of both tables)
    precision: str = ""  # fp32 | bf16 | fp16 (what ran, after `auto` was resolved)

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
            write_json_atomic(
                out,
                {
                    "model": self.model,
                    "backend": self.backend,
                    "precision": self.precision,
                    "classes": list(self.classes),
                    "slices": json.loads(self.slices.to_json(orient="records")),
                    "patients": json.loads(self.groups.to_json(orient="records")),
                    "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
                },
            )
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


def _check_items(inputs: InputLike | Sequence[InputLike]) -> list[InputLike]:
    items: list[InputLike] = [inputs] if isinstance(inputs, (str, os.PathLike, np.ndarray)) else list(inputs)
    if not items:
        raise ConfigError("no inputs given")
    for item in items:
        if isinstance(item, (str, os.PathLike)) and not Path(item).exists():
            raise DataError(item, "no such file or folder")
        if not isinstance(item, (str, os.PathLike, np.ndarray)):
            raise ConfigError(f"cannot predict on a {type(item).__name__}; give paths or 2-D arrays")
    return items


@dataclass(frozen=True)
class _PathEnd:
    """Marker after the last job of one input path (to report a path under which nothing was readable)."""

    path: str


SliceJob = Callable[[], Sequence["InputSlice | Skipped | _PathEnd"]]


def input_slice_jobs(inputs: InputLike | Sequence[InputLike], window: str) -> Iterator[SliceJob]:
    """Inputs -> decoding jobs in output order; validated eagerly (a path that does not exist is an error
    straight away, not a skipped file).

    Paths (files, folders, series, volumes) are expanded by :func:`covidct.data.inputs.input_jobs`; arrays
    are used as they are (``array[i]`` for the i-th, each its own group; a 3-D ``(N, H, W)`` stack is one
    group)."""
    items = _check_items(inputs)
    return _jobs(items, window)


def _jobs(items: list[InputLike], window: str) -> Iterator[SliceJob]:
    for i, item in enumerate(items):
        if isinstance(item, np.ndarray):
            name = f"array[{i}]"
            if item.ndim == 3 and item.shape[-1] not in (3, 4):
                for k, s in enumerate(item):
                    yield partial(_array_job, s, f"{name}#{k}", name)
            else:
                yield partial(_array_job, item, name, name)
            continue
        yield from input_jobs([Path(item)], window=window)
        yield partial(_path_end, str(item))


def _array_job(array: np.ndarray, source: str, name: str) -> list[InputSlice]:
    return [InputSlice(source, _as_unit_image(array, name), name)]


def _path_end(path: str) -> list[_PathEnd]:
    return [_PathEnd(path)]


def _collect(results: Iterable[Sequence[Any]], skipped: list[tuple[str, str]]) -> Iterator[Any]:
    """Flatten job results into slices, appending skips to ``skipped`` in order; a path under which nothing
    was readable (and nothing reported) is reported as skipped, as :func:`~covidct.data.inputs.iter_inputs`
    does."""
    found = reported = 0
    for outs in results:
        for out in outs:
            if isinstance(out, Skipped):
                skipped.append((out.path, out.reason))
                reported += 1
            elif isinstance(out, _PathEnd):
                if found == 0 and reported == 0:
                    skipped.append((out.path, "no readable images (0 skipped)"))
                found = reported = 0
            else:
                found += 1
                yield out


def _load_given(item: tuple[str, SliceImage, str]) -> list[InputSlice | Skipped]:
    """One ``(source, image or loader, group)``: a loader that fails with DataError/OSError is a skipped slice
    (so callers can hand lazy loaders to the decoding pool and still get unreadable files reported)."""
    source, image, group = item
    if callable(image):
        try:
            image = image()
        except DataError as exc:
            return [Skipped(source, exc.reason)]
        except OSError as exc:
            return [Skipped(source, f"cannot read ({exc})")]
    return [InputSlice(source, image, group)]


def _batches(
    jobs: Iterable[SliceJob],
    preprocess: Preprocess,
    batch_size: int,
    skipped: list[tuple[str, str]],
    *,
    prefetch: bool,
) -> Iterator[Batch]:
    """Run ``jobs`` (decode + resize + normalise per slice) ahead of the consumer; yield batches in order."""

    def ready(o: InputSlice) -> _Prepared:
        resized, found = preprocess.prepare_flagged(o.image)
        return _Prepared(o.source, preprocess.normalize(resized), o.group, found)

    def prepared(job: SliceJob) -> Callable[[], list[Any]]:
        def run() -> list[Any]:
            return [ready(o) if isinstance(o, InputSlice) else o for o in job()]

        return run

    workers = decode_workers() if prefetch else 0
    depth = max(2 * batch_size, 2 * workers, 4)  # bounded: at most this many slices decoded ahead
    chunk: list[_Prepared] = []
    for s in _collect(ordered_prefetch((prepared(j) for j in jobs), workers=workers, depth=depth), skipped):
        chunk.append(s)
        if len(chunk) == batch_size:
            yield _stack(chunk)
            chunk = []
    if chunk:
        yield _stack(chunk)


@dataclass(frozen=True)
class _Prepared:
    """A slice ready for the network, and whether its lungs were found (lung crop / standardisation)."""

    source: str
    image: np.ndarray  # (3, S, S) normalised
    group: str
    lungs_found: bool = True


def _stack(chunk: list[_Prepared]) -> Batch:
    pixels = np.stack([c.image for c in chunk]).astype(np.float32, copy=False)
    return Batch([c.source for c in chunk], [c.group for c in chunk], pixels, [c.lungs_found for c in chunk])


def aggregate_groups(slices: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """One row per ``patient_id``: slice count, mean probability per class, predicted class, votes per
    class."""
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
    precision = "fp32"  # what the network computes in (set by subclasses that can reduce it)
    precision_note = ""  # why `auto` chose this precision, when that needs saying (e.g. bf16 refused)

    def __init__(self, meta: ModelMeta, *, batch_size: int = 1, prefetch: bool = True) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {batch_size}")
        self.meta = meta
        self.classes = meta.classes
        self.preprocess = Preprocess.from_meta(meta)
        self.batch_size = batch_size
        self.prefetch = prefetch

    # -- running --------------------------------------------------------------------------------------------
    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """``(N, 3, S, S)`` float32 -> ``(N, n_classes)`` logits."""
        raise NotImplementedError

    def predict_proba(self, pixels: np.ndarray, sources: Sequence[str] | None = None) -> np.ndarray:
        """Preprocessed batch -> probabilities, all finite: a NaN/Inf output raises (argmax of NaN is class
        0, which would be reported as a confident diagnosis), naming the slice (``sources``) and the model."""
        with np.errstate(invalid="ignore", over="ignore"):
            probs = softmax(self.logits(pixels))
        bad = np.flatnonzero(~np.isfinite(probs).all(axis=1))
        if bad.size:
            where = sources[int(bad[0])] if sources is not None else f"batch item {int(bad[0])}"
            more = f" (and {bad.size - 1} more slice(s) of this batch)" if bad.size > 1 else ""
            raise DataError(
                where,
                f"model {self.meta.model_name!r} gave non-finite probabilities (NaN/Inf){more}; no class is "
                "reported. The model file may be corrupted, or its weights diverged in training",
            )
        return probs

    def predict(
        self,
        inputs: InputLike | Sequence[InputLike],
        *,
        batch_size: int | None = None,
        progress: ProgressFn | None = None,
        window: str | None = None,
    ) -> PredictionResult:
        """Probabilities per slice and per group for paths or arrays (see :func:`input_slice_jobs`).

        Slices are decoded, windowed and resized by a thread pool ahead of the network (see
        :func:`covidct.data.pipeline.ordered_prefetch`); order and skipped-file reports are as in a sequential
        read. ``window`` overrides the model's CT window for DICOM/NIfTI inputs (``"lung"``, ``"1500,-600"``).
        """
        jobs = input_slice_jobs(inputs, window or self.meta.window_spec)
        return self._run(jobs, [], batch_size, progress)

    def predict_slices(
        self,
        slices: Iterable[tuple[str, SliceImage, str]],
        *,
        skipped: Sequence[tuple[str, str]] = (),
        batch_size: int | None = None,
        progress: ProgressFn | None = None,
    ) -> PredictionResult:
        """Predict ``(source, image or loader, group)`` slices. Loaders (e.g.
        ``partial(load_slice, path)``) run in the decoding pool; one raising DataError/OSError is reported as
        skipped. ``skipped`` (read at the end, so it may be filled while ``slices`` streams) is reported
        too."""
        return self._run((partial(_load_given, s) for s in slices), skipped, batch_size, progress)

    def _run(
        self,
        jobs: Iterable[SliceJob],
        skipped: Sequence[tuple[str, str]],
        batch_size: int | None,
        progress: ProgressFn | None,
    ) -> PredictionResult:
        size = batch_size or self.batch_size
        if size < 1:
            raise ConfigError(f"batch size must be >= 1, got {size}")
        found_skipped: list[tuple[str, str]] = []
        sources: list[str] = []
        groups: list[str] = []
        probs: list[np.ndarray] = []
        found: list[bool] = []
        for batch in _batches(jobs, self.preprocess, size, found_skipped, prefetch=self.prefetch):
            probs.append(self.predict_proba(batch.pixels, batch.sources))
            sources.extend(batch.sources)
            groups.extend(batch.groups)
            found.extend(batch.lungs_found)
            if progress is not None:
                progress(len(batch.sources))
        skipped = [*skipped, *found_skipped]
        if not probs:
            if len(skipped) == 1:
                raise DataError(*skipped[0])
            detail = f" ({len(skipped)} skipped; first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
            raise DataError("inputs", f"no readable image found{detail}")
        prob = np.concatenate(probs)
        table = pd.DataFrame({"path": sources, "patient_id": groups})
        for j, c in enumerate(self.classes):
            table[f"prob_{c}"] = prob[:, j]
        table["predicted"] = [self.classes[i] for i in prob.argmax(axis=1)] if len(prob) else []
        if self.preprocess.uses_lungs:  # flag the slices that fell back to the whole slice
            table["lungs_found"] = found
        run = {"model": self.meta.model_name, "backend": self.backend, "precision": self.precision}
        table = table.assign(**run)
        return PredictionResult(
            classes=self.classes,
            slices=table,
            groups=aggregate_groups(table, self.classes).assign(**run),
            skipped=skipped,
            model=self.meta.model_name,
            backend=self.backend,
            precision=self.precision,
        )
