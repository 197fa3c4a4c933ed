"""The explanation API behind ``covidct explain`` and ``covidct activations``.

``explain()`` loads a checkpoint, expands the inputs (images, folders, DICOM series) with ``data.inputs``,
computes CAMs chunk by chunk, writes panels, heatmaps and an index, and scores the maps: with a masks folder
(mirroring the inputs' relative paths, like the phantoms' ``masks_dir``) the pointing game and mask energy
against random maps; without, the confidence drop when the most relevant pixels are removed, against random
maps.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from covidct.errors import ConfigError, DataError, UnknownModelError
from covidct.explain.methods import DEFAULT_METHOD, check_method
from covidct.explain.scores import AuditSummary, FaithfulnessScores, LocalizationScores
from covidct.utils import write_text_atomic

if TYPE_CHECKING:
    from torch import nn

    from covidct.evaluation.slice_labels import SliceLabelScores
    from covidct.models.checkpoint import CheckpointMeta

PathLike = str | os.PathLike[str]
CHUNK = 64  # slices held in memory at once (maps are kept at each slice's full size)


@dataclass(frozen=True, kw_only=True)
class ExplainConfig:
    method: str = DEFAULT_METHOD
    target: str = "predicted"  # "predicted" | "all" | a class name
    layer: str | None = None  # None: chosen by feature-map size (explain.layers.choose_cam_layer)
    batch_size: int = 16
    window: str = "lung"
    fraction: float = 0.2  # share of pixels removed for the faithfulness score
    seed: int = 0
    tolerance: int = (
        0  # pointing game: a hit within this many pixels of the lesion counts (Zhang et al. 2016)
    )
    audit: bool = False  # shortcut audit: map energy inside the lungs vs the lungs' share of the slice

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", check_method(self.method))
        if self.tolerance < 0:
            raise ConfigError(f"tolerance must be >= 0 pixels, got {self.tolerance}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 < self.fraction < 1.0:
            raise ConfigError(f"fraction must be in (0, 1), got {self.fraction}")


@dataclass(frozen=True)
class ExplainResult:
    out: Path
    index: Path
    n_slices: int
    method: str
    layer: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    layer_note: str = ""  # why this layer (map size at the input size), or "given with --layer"
    localization: LocalizationScores | None = None
    faithfulness: FaithfulnessScores | None = None
    masks_missing: int = 0
    audit: list[AuditSummary] | None = None  # per explained class, then "all"
    audit_table: Path | None = None
    slice_labels: SliceLabelScores | None = None  # radiologists' slice labels (--slice-labels)


def default_layer(meta: CheckpointMeta) -> str | None:
    """The checkpoint's recorded CAM layer, else its registry spec's, else None (timm feature_info): the
    preferred layer, kept only if its map is large enough at the checkpoint's input size."""
    if meta.cam_layer:
        return meta.cam_layer
    from covidct.models.registry import get_spec

    try:
        return get_spec(meta.model_name).cam_layer or None
    except UnknownModelError:
        return None


def explain(
    checkpoint: PathLike,
    inputs: Sequence[PathLike],
    out: PathLike,
    *,
    masks: PathLike | None = None,
    lungs: PathLike | None = None,
    slice_labels: PathLike | None = None,
    config: ExplainConfig | None = None,
    **options: Any,
) -> ExplainResult:
    """Explain every slice in ``inputs`` with the model in ``checkpoint``; write everything under ``out``.

    ``options`` are :class:`ExplainConfig` fields (``method``, ``target``, ``layer``, ``batch_size``,
    ``window``, ``audit``). With ``audit``, lung masks come from ``lungs`` (a folder mirroring the inputs,
    like ``masks``; e.g. ``covidct data lungs`` output or the phantoms' ``lungs/``) or are computed per slice
    (:func:`covidct.data.lungs.lung_mask_for`); ``audit.csv`` and the index's ``audit`` section are written
    and flagged slices say so on their panel. ``slice_labels`` (a radiologists' slice-label CSV, see
    :mod:`covidct.evaluation.slice_labels`) adds the disease-probability AUC against ``infection_visible``.
    """
    from covidct.data.inputs import collect_inputs
    from covidct.data.preprocess import Preprocess
    from covidct.explain.cam import compute_cams, remove_written, resolve_layer, write_index
    from covidct.explain.layers import choose_cam_layer
    from covidct.models.checkpoint import load_checkpoint

    cfg = config or ExplainConfig(**options)
    loaded = load_checkpoint(checkpoint)
    model, meta = loaded.model, loaded.meta
    if cfg.layer:
        layer, layer_note = resolve_layer(model, cfg.layer), "given with --layer"
    else:
        choice = choose_cam_layer(model, meta.image_size, default_layer(meta))
        layer, layer_note = choice.layer, choice.describe()
    preprocess = Preprocess.from_meta(meta)
    slices, skipped = collect_inputs([Path(p) for p in inputs], window=cfg.window)
    if not slices:
        raise DataError(", ".join(str(p) for p in inputs), "no readable slices")
    masks_dir = Path(masks) if masks is not None else None
    if masks_dir is not None and not masks_dir.is_dir():
        raise DataError(masks_dir, "masks folder not found")
    labels = None
    if slice_labels is not None:
        from covidct.evaluation.slice_labels import read_slice_labels

        labels = read_slice_labels(slice_labels)
    lungs_dir = Path(lungs) if lungs is not None else None
    if lungs_dir is not None and not lungs_dir.is_dir():
        raise DataError(lungs_dir, "lung masks folder not found")

    out = Path(out)
    created = not out.exists()
    written: list[Path] = []
    items: list[dict[str, Any]] = []
    cams_for_scores, masks_for_scores, faith = [], [], []
    masks_missing = 0
    audit_rows: list[dict[str, Any]] = []
    try:
        for start in range(0, len(slices), CHUNK):
            chunk = slices[start : start + CHUNK]
            batch = compute_cams(
                model,
                layer,
                chunk,
                cfg.target,
                method=cfg.method,
                classes=meta.classes,
                preprocess=preprocess,
                batch_size=cfg.batch_size,
            )
            shown = [_scored_map_index(batch, i) for i in range(len(batch))]
            flags: list[str] = []
            contours: list[np.ndarray | None] = []
            if cfg.audit:
                rows, contours = _audit_chunk(batch, shown, start, lungs_dir, inputs, cfg, meta.model_name)
                audit_rows += rows
                flags = [
                    f"most of the map is outside the lungs ({r['lung_share']:.0%} inside; random "
                    f"{r['lung_fraction']:.0%})"
                    if r["outside"]
                    else ""
                    for r in rows
                ]
            new_items = batch.write_files(out, start=start, written=written, flags=flags, contours=contours)
            if cfg.audit:
                for item, row in zip(new_items, rows, strict=True):
                    item["audit"] = {k: row[k] for k in ("lung_share", "lung_fraction", "outside", "lungs")}
            items += new_items
            if masks_dir is not None:
                for i, t in enumerate(shown):
                    mask = _find_mask(masks_dir, inputs, batch.sources[i], batch.images[i].shape)
                    if mask is None:
                        masks_missing += 1
                        continue
                    cams_for_scores.append(_downsample(batch.maps[i][t]))
                    masks_for_scores.append(_downsample(mask.astype(np.float32)) > 0.5)
            else:
                faith.append(_faithfulness(model, preprocess, batch, shown, cfg))
        localization = None
        if masks_dir is not None:
            from covidct.explain.scores import localization_scores

            localization = localization_scores(
                cams_for_scores, masks_for_scores, seed=cfg.seed, tolerance=cfg.tolerance
            )
        faithfulness = _combine(faith) if faith else None
        audit, audit_table = None, None
        if cfg.audit:
            audit, audit_table = _write_audit(out, audit_rows, written)
        label_scores = _slice_label_scores(labels, items, audit_rows) if labels is not None else None
        extra: dict[str, Any] = {
            "checkpoint": str(checkpoint),
            "target": cfg.target,
            "layer_note": layer_note,
            "skipped": [list(s) for s in skipped],
            "scores": _scores_dict(localization, faithfulness),
        }
        if audit is not None:
            extra["audit"] = [asdict(a) for a in audit]
        if label_scores is not None:
            extra["slice_labels"] = asdict(label_scores)
        index = write_index(out, items, batch, written=written, extra=extra)
    except BaseException:
        remove_written(out, written, created)
        raise
    return ExplainResult(
        out=out,
        index=index,
        n_slices=len(items),
        method=cfg.method,
        layer=layer,
        layer_note=layer_note,
        skipped=list(skipped),
        localization=localization,
        faithfulness=faithfulness,
        masks_missing=masks_missing,
        audit=audit,
        audit_table=audit_table,
        slice_labels=label_scores,
    )


def _slice_label_scores(labels: Any, items: list[dict[str, Any]], audit_rows: list[dict[str, Any]]) -> Any:
    """Join the explained slices to the labels table by path suffix and score them."""
    import pandas as pd

    from covidct.evaluation.slice_labels import disease_probability, match_labels, slice_label_scores

    matches = match_labels([item["source"] for item in items], labels)
    shares = {row["index"]: row["lung_share"] for row in audit_rows}
    rows = []
    for item, k in zip(items, matches, strict=True):
        if k is None:
            continue
        label = labels.iloc[k]
        rows.append(
            {
                "patient": label["patient"],
                "diagnosis": label["diagnosis"],
                "infection_visible": int(label["infection_visible"]),
                "disease_probability": disease_probability(item["probabilities"]),
                "lung_share": shares.get(item["index"], float("nan")),
            }
        )
    if not rows:
        raise DataError("slice labels", "none of the explained slices is in the slice-labels table")
    return slice_label_scores(pd.DataFrame(rows))


def _audit_chunk(
    batch: Any,
    shown: list[int],
    start: int,
    lungs_dir: Path | None,
    inputs: Sequence[PathLike],
    cfg: ExplainConfig,
    model_name: str,
) -> tuple[list[dict[str, Any]], list[np.ndarray | None]]:
    """One audit row per slice of a CAM chunk (the scored map vs the slice's lung mask) and the masks."""
    from covidct.data.lungs import lung_mask_for
    from covidct.explain.scores import lung_audit

    rows: list[dict[str, Any]] = []
    masks: list[np.ndarray | None] = []
    for i, t in enumerate(shown):
        lungs = None
        if lungs_dir is not None:
            lungs = _find_mask(lungs_dir, inputs, batch.sources[i], batch.images[i].shape)
            how = "given"
        if lungs is None:
            lungs, how = lung_mask_for(batch.images[i], batch.sources[i], cfg.window)
        result = lung_audit(_downsample(batch.maps[i][t]), _downsample(lungs.astype(np.float32)) > 0.5)
        cls = int(batch.target_indices[i][t])
        rows.append(
            {
                "model": model_name,
                "index": start + i,
                "source": batch.sources[i],
                "group": batch.groups[i],
                "class": batch.classes[cls],
                "predicted": batch.classes[int(batch.predicted[i])],
                "probability": float(batch.probabilities[i, cls]),
                "lung_share": result.lung_share,
                "lung_fraction": result.lung_fraction,
                "ratio": result.ratio,
                "outside": bool(result.outside) if not np.isnan(result.lung_share) else False,
                "lungs": how,
            }
        )
        masks.append(lungs)
    return rows, masks


def _write_audit(
    out: Path, rows: list[dict[str, Any]], written: list[Path]
) -> tuple[list[AuditSummary], Path]:
    """``audit.csv`` (one row per slice) and the per-class summary (class of the explained map, then all)."""
    from covidct.explain.scores import LungAudit, summarize_audit

    audits = [LungAudit(r["lung_share"], r["lung_fraction"]) for r in rows]
    summary = summarize_audit(audits, [r["class"] for r in rows])
    buffer = io.StringIO()
    fields = list(rows[0]) if rows else ["model", "index", "source", "lung_share", "lung_fraction"]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    table = out / "audit.csv"
    written.append(table)
    write_text_atomic(table, buffer.getvalue())
    return summary, table


def _scored_map_index(batch: Any, i: int) -> int:
    """Which of input i's maps is scored: its only one, or (targets="all") the predicted class's."""
    hits = np.flatnonzero(batch.target_indices[i] == batch.predicted[i])
    return int(hits[0]) if len(batch.target_indices[i]) > 1 and hits.size else 0


def _downsample(array: np.ndarray, size: int = 256) -> np.ndarray:
    """Keep score inputs small (scores are computed once all chunks are done)."""
    h, w = array.shape
    step = max(1, int(np.ceil(max(h, w) / size)))
    return array[::step, ::step]


def _find_mask(
    masks_dir: Path, inputs: Sequence[PathLike], source: str, shape: tuple[int, ...]
) -> np.ndarray | None:
    """The mask mirroring ``source``'s path (PNG, 255 = lesion): its path relative to the input it came from,
    else the longest trailing part of its path that exists under ``masks_dir``
    (``<class>/<patient>/<k>.png``)."""
    from PIL import Image

    src = Path(source.split("#", 1)[0])
    candidates = []
    for root in map(Path, inputs):
        if src == root:
            candidates.append(Path(src.name))
        elif root.is_dir() and src.is_relative_to(root):
            candidates.append(src.relative_to(root))
    parts = src.parts[1:] if src.is_absolute() else src.parts
    candidates += [Path(*parts[-k:]) for k in range(len(parts), 0, -1)]  # longest path suffix first
    for rel in candidates:
        for path in (masks_dir / rel, (masks_dir / rel).with_suffix(".png")):
            if path.is_file():
                try:
                    with Image.open(path) as img:
                        mask = img.convert("L")
                        if mask.size != (shape[1], shape[0]):
                            mask = mask.resize((shape[1], shape[0]), Image.Resampling.NEAREST)
                        return np.asarray(mask) > 127
                except OSError as exc:
                    raise DataError(path, f"cannot read mask ({exc})") from None
    return None


def _faithfulness(
    model: nn.Module, preprocess: Any, batch: Any, shown: list[int], cfg: ExplainConfig
) -> FaithfulnessScores:
    import torch

    from covidct.explain.scores import confidence_drop

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            outs = [
                torch.softmax(model(torch.from_numpy(x[k : k + cfg.batch_size]).to(device)).float(), 1).cpu()
                for k in range(0, len(x), cfg.batch_size)
            ]
        return torch.cat(outs).numpy()

    try:
        x = preprocess.batch(list(batch.images))
        idx = np.arange(len(batch))
        cams = batch.net_maps[idx, shown]
        targets = batch.target_indices[idx, shown]
        return confidence_drop(predict, x, cams, targets, fraction=cfg.fraction, seed=cfg.seed)
    finally:
        model.train(was_training)


def _combine(parts: list[FaithfulnessScores]) -> FaithfulnessScores:
    n = sum(p.n for p in parts)
    return FaithfulnessScores(
        n=n,
        fraction=parts[0].fraction,
        drop=sum(p.drop * p.n for p in parts) / n,
        random_drop=sum(p.random_drop * p.n for p in parts) / n,
    )


def _scores_dict(loc: LocalizationScores | None, faith: FaithfulnessScores | None) -> dict[str, Any]:
    scores: dict[str, Any] = {}
    if loc is not None:
        scores["localization"] = asdict(loc)
    if faith is not None:
        scores["faithfulness"] = {**asdict(faith), "gap": faith.gap}
    return scores


# ------------------------------------------------------------------------------------------- activations
@dataclass(frozen=True)
class ActivationsResult:
    out: Path
    source: str
    stages: tuple[str, ...]
    files: tuple[Path, ...]
    n_slices_in_input: int = 1


def activations(
    checkpoint: PathLike,
    image: PathLike,
    out: PathLike,
    *,
    top: int = 8,
    window: str = "lung",
) -> ActivationsResult:
    """Per-stage grids of the ``top`` most active channels for one slice (the middle one of a series)."""
    from covidct.data.inputs import collect_inputs
    from covidct.data.preprocess import Preprocess
    from covidct.explain.activations import compute_activations
    from covidct.models.checkpoint import load_checkpoint

    loaded = load_checkpoint(checkpoint)
    slices, _ = collect_inputs([Path(image)], window=window)
    if not slices:
        raise DataError(image, "no readable slice")
    chosen = slices[len(slices) // 2]
    maps = compute_activations(
        loaded.model, chosen.image, Preprocess.from_meta(loaded.meta), top=top, source=chosen.source
    )
    files = maps.save(Path(out))
    return ActivationsResult(
        out=Path(out),
        source=chosen.source,
        stages=tuple(s.name for s in maps.stages),
        files=tuple(files),
        n_slices_in_input=len(slices),
    )
