"""Class activation maps: the only caller of pytorch-grad-cam in covidct (issue 4).

:func:`cam_session` wraps a pytorch-grad-cam object and fixes its sharp edges: it restores every module's
train/eval mode (``BaseCAM`` calls ``model.eval()`` and never undoes it), computes gradients even under an
outer ``torch.no_grad()`` (and refuses ``torch.inference_mode()``, where no gradient can exist), keeps the
caller's parameter ``.grad`` untouched, and always removes its hooks (not ``with cam:``, whose ``__exit__``
swallows ``IndexError``).

Targets are ``ClassifierOutputTarget(class_idx)`` on the raw logits. The seed paper back-propagated the *sum
of the softmax*, which is constant (1), so its gradient, and hence its Grad-CAM, is zero.

:func:`compute_cams` takes an in-memory model and a list of 2-D slices (any size, values in [0, 1]) and
returns a :class:`CamBatch`: maps upsampled back to each slice's own size, predictions, probabilities,
provenance.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from PIL import Image

from covidct.data.preprocess import Preprocess
from covidct.errors import ConfigError, DataError
from covidct.explain.methods import DEFAULT_METHOD, check_method, get_method
from covidct.models.spec import ModelSpec
from covidct.utils import atomic_path, package_versions, write_json_atomic, write_text_atomic

if TYPE_CHECKING:
    from pytorch_grad_cam.base_cam import BaseCAM
    from torch import nn

SCHEMA_VERSION = 1
TargetSpec = str  # "predicted" | "all" | a class name


# --------------------------------------------------------------------------------------------- target layer
def stage_names(model: nn.Module) -> list[str]:
    """Module names of the feature stages timm reports in ``model.feature_info`` (shallow to deep)."""
    info = getattr(model, "feature_info", None) or []
    names = []
    for entry in info:
        name = entry.get("module") if isinstance(entry, dict) else None
        if name:
            names.append(name)
    return names


def resolve_layer(model: nn.Module, spec_or_layer: ModelSpec | str | None = None) -> str:
    """The target layer's module name: a ``ModelSpec``'s ``cam_layer``, a name given by the user, or (``None``
    or ``""``) the deepest stage in timm's ``feature_info``. Unknown names raise :class:`ConfigError` listing
    the valid stage names and close matches."""
    if isinstance(spec_or_layer, ModelSpec):
        name = spec_or_layer.cam_layer
    else:
        name = spec_or_layer or ""
    stages = stage_names(model)
    if not name:
        if not stages:
            raise ConfigError("this model has no timm feature_info; name the Grad-CAM layer with --layer")
        name = stages[-1]
    try:
        model.get_submodule(name)
    except AttributeError:
        modules = [n for n, _ in model.named_modules() if n]
        close = difflib.get_close_matches(name, modules, n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"unknown layer {name!r}; valid stage layers: {', '.join(stages) or '(none)'}{hint} "
            f"(any of the model's {len(modules)} module names works, e.g. from print(model))"
        ) from None
    return name


# --------------------------------------------------------------------------------------------- session
@contextlib.contextmanager
def cam_session(
    model: nn.Module, spec_or_layer: ModelSpec | str | None = None, method: str = DEFAULT_METHOD
) -> Iterator[BaseCAM]:
    """A pytorch-grad-cam object hooked on the target layer (see :func:`resolve_layer`); hooks, train/eval
    modes and parameter gradients are restored on exit, even after an error."""
    import torch

    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            "CAMs need gradients, which torch.inference_mode() forbids; call compute_cams outside "
            "inference_mode (torch.no_grad() is fine)"
        )
    cam_cls = get_method(method)
    modes = {module: module.training for module in model.modules()}
    grads = {param: param.grad for param in model.parameters()}
    cam = None
    try:
        cam = cam_cls(model, [model.get_submodule(resolve_layer(model, spec_or_layer))])
        with torch.enable_grad():
            yield cam
    finally:
        if cam is not None:
            cam.activations_and_grads.release()
            cam.outputs = None  # holds the last graph (backward ran with retain_graph=True)
        for module, training in modes.items():
            module.training = training
        for param, grad in grads.items():
            param.grad = grad


# --------------------------------------------------------------------------------------------- results
@dataclass(frozen=True, eq=False)
class CamBatch:
    """CAMs for N slices. ``maps[i]`` is ``(T, H_i, W_i)`` float32 in [0, 1] at slice i's own size, one map
    per target class (T = 1 unless targets="all"); ``net_maps`` is ``(N, T, S, S)`` at network resolution."""

    maps: tuple[np.ndarray, ...]
    net_maps: np.ndarray
    target_indices: np.ndarray  # (N, T) class index each map explains
    predicted: np.ndarray  # (N,) argmax of the logits
    probabilities: np.ndarray  # (N, C) softmax of the logits
    classes: tuple[str, ...]
    method: str
    layer: str
    images: tuple[np.ndarray, ...]
    sources: tuple[str, ...]
    groups: tuple[str, ...]
    versions: dict[str, str | None] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.maps)

    def heatmap(self, i: int, class_name: str | None = None) -> np.ndarray:
        """The ``(H, W)`` map of input ``i`` for ``class_name`` (default: its first/only target)."""
        if class_name is None:
            return self.maps[i][0]
        idx = _class_index(class_name, self.classes)
        hits = np.flatnonzero(self.target_indices[i] == idx)
        if hits.size == 0:
            raise ConfigError(f"no map for class {class_name!r}; computed: {self.target_names(i)}")
        return self.maps[i][hits[0]]

    def target_names(self, i: int) -> list[str]:
        return [self.classes[j] for j in self.target_indices[i]]

    def save(self, out: str | Path) -> Path:
        """Write per input a PNG panel and one ``.npy`` per map, then ``index.json`` + ``index.csv``; returns
        the index path. On failure, everything written by this call is removed again."""
        out = Path(out)
        created = not out.exists()
        written: list[Path] = []
        try:
            items = self.write_files(out, written=written)
            return write_index(out, items, self, written=written)
        except BaseException:
            remove_written(out, written, created)
            raise

    def write_files(
        self,
        out: Path,
        *,
        start: int = 0,
        written: list[Path],
        flags: Sequence[str] = (),
        contours: Sequence[np.ndarray | None] = (),
    ) -> list[dict[str, Any]]:
        """The per-input files (numbered from ``start``), appending each path to ``written``; returns the
        index items. :meth:`save` is the one-call version; ``explain()`` uses this to stream many chunks.
        ``flags[i]`` (a warning shown in red on the panel) and ``contours[i]`` (a mask outlined on the
        overlays, e.g. the lungs) are optional per input."""
        from covidct.explain import render

        out.mkdir(parents=True, exist_ok=True)
        items = []
        for i in range(len(self)):
            stem = f"{start + i:04d}_{_safe_name(self.sources[i])}"
            panel = out / f"{stem}.png"
            pred = int(self.predicted[i])
            overlays, map_rows = [], []
            for t, cls_idx in enumerate(self.target_indices[i]):
                cls_name = self.classes[int(cls_idx)]
                npy = out / f"{stem}.{_safe_name(cls_name)}.npy"
                written.append(npy)
                _save_npy(npy, self.maps[i][t])
                overlays.append((f"{cls_name} (p={self.probabilities[i, cls_idx]:.2f})", self.maps[i][t]))
                map_rows.append({"class": cls_name, "npy": npy.name})
            title = (
                f"predicted {self.classes[pred]} (p={self.probabilities[i, pred]:.2f}) · "
                f"{self.method} @ {self.layer}"
            )
            written.append(panel)
            render.save_cam_panel(
                panel,
                self.images[i],
                overlays,
                title=title,
                caption=self.sources[i],
                flag=flags[i] if i < len(flags) else "",
                contour=contours[i] if i < len(contours) else None,
            )
            items.append(
                {
                    "index": start + i,
                    "source": self.sources[i],
                    "group": self.groups[i],
                    "panel": panel.name,
                    "height": int(self.images[i].shape[0]),
                    "width": int(self.images[i].shape[1]),
                    "predicted": self.classes[pred],
                    "probability": float(self.probabilities[i, pred]),
                    "probabilities": {
                        c: float(p) for c, p in zip(self.classes, self.probabilities[i], strict=True)
                    },
                    "maps": map_rows,
                }
            )
        return items


def write_index(
    out: Path,
    items: list[dict[str, Any]],
    batch: CamBatch,
    *,
    written: list[Path],
    extra: dict[str, Any] | None = None,
) -> Path:
    """``index.json`` (``schema_version``, method, layer, classes, versions, items) and ``index.csv``."""
    index = out / "index.json"
    written.append(index)
    write_json_atomic(
        index,
        {
            "schema_version": SCHEMA_VERSION,
            "method": batch.method,
            "layer": batch.layer,
            "classes": list(batch.classes),
            "versions": batch.versions,
            **(extra or {}),
            "items": items,
        },
    )
    csv_path = out / "index.csv"
    written.append(csv_path)
    write_text_atomic(csv_path, _index_csv(items))
    return index


def remove_written(out: Path, written: list[Path], created: bool) -> None:
    """Undo a partial save: delete the files written, and ``out`` itself if this save created it."""
    for path in written:
        path.unlink(missing_ok=True)
    if created:
        with contextlib.suppress(OSError):
            out.rmdir()


def _index_csv(items: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["schema_version", "index", "source", "group", "predicted", "probability", "target", "npy", "panel"]
    )
    for item in items:
        for row in item["maps"]:
            writer.writerow(
                [
                    SCHEMA_VERSION,
                    item["index"],
                    item["source"],
                    item["group"],
                    item["predicted"],
                    f"{item['probability']:.6f}",
                    row["class"],
                    row["npy"],
                    item["panel"],
                ]
            )
    return buffer.getvalue()


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array.astype(np.float32, copy=False))


def _safe_name(source: str) -> str:
    stem = Path(source.split("#", 1)[0]).name
    for suffix in (".gz", ".nii", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm"):
        stem = stem[: -len(suffix)] if stem.lower().endswith(suffix) else stem
    if "#" in source:
        stem += "_" + source.rsplit("#", 1)[1]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)[:80] or "slice"


# --------------------------------------------------------------------------------------------- compute
def _class_index(name: str, classes: Sequence[str]) -> int:
    lowered = [c.lower() for c in classes]
    if name.lower() in lowered:
        return lowered.index(name.lower())
    raise ConfigError(f"unknown target class {name!r}; use predicted, all, or one of {', '.join(classes)}")


def _as_images(batch: Any) -> list[np.ndarray]:
    """2-D float32 slices from a list of arrays / InputSlice-like objects (``.image``) or (N, H, W)."""
    items = list(batch)
    images = []
    for k, item in enumerate(items):
        image = np.asarray(getattr(item, "image", item))
        if image.ndim != 2:
            raise ConfigError(f"input {k}: expected a 2-D slice, got shape {image.shape}")
        if image.dtype == np.uint8:
            image = image.astype(np.float32) / 255.0
        images.append(image.astype(np.float32, copy=False))
    if not images:
        raise ConfigError("no slices to explain")
    return images


def _upsample(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if cam.shape == shape:
        return cam.astype(np.float32, copy=False)
    pil = Image.fromarray(np.ascontiguousarray(cam, dtype=np.float32), mode="F")
    return np.clip(
        np.asarray(pil.resize((shape[1], shape[0]), Image.Resampling.BILINEAR), dtype=np.float32), 0.0, 1.0
    )


def _to_slice(maps: np.ndarray, image: np.ndarray, preprocess: Preprocess) -> list[np.ndarray]:
    """Network-size maps back onto the slice: upsampled to the region the network saw (the lung crop's box,
    else the whole slice), zero outside it."""
    r0, r1, c0, c1 = preprocess.box(image)
    if (r0, c0, r1, c1) == (0, 0, *image.shape):
        return [_upsample(m, image.shape) for m in maps]
    out = []
    for m in maps:
        full = np.zeros(image.shape, dtype=np.float32)
        full[r0:r1, c0:c1] = _upsample(m, (r1 - r0, c1 - c0))
        out.append(full)
    return out


def _num_classes(model: nn.Module) -> int | None:
    value = getattr(model, "num_classes", None)
    return int(value) if isinstance(value, int) and value > 0 else None


def compute_cams(
    model: nn.Module,
    spec_or_layer: ModelSpec | str | None,
    batch: Sequence[Any] | np.ndarray,
    targets: TargetSpec = "predicted",
    *,
    method: str = DEFAULT_METHOD,
    classes: Sequence[str] | None = None,
    preprocess: Preprocess | None = None,
    batch_size: int = 16,
    sources: Sequence[str] | None = None,
    groups: Sequence[str] | None = None,
) -> CamBatch:
    """CAMs of ``batch`` (2-D slices in [0, 1], any sizes; or InputSlice objects) for ``targets``:
    ``"predicted"`` (each slice's argmax), a class name, or ``"all"`` (one map per class).

    ``preprocess`` defaults to ``spec.input_size`` (224 without a spec) and the model's normalisation. Maps
    are computed ``batch_size`` slices at a time and upsampled back to each slice's own size.
    """
    import torch
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from covidct.models.normalization import model_normalization

    method = check_method(method)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    items = list(batch)
    images = _as_images(items)
    sources = (
        list(sources)
        if sources is not None
        else [str(getattr(item, "source", f"slice{k}")) for k, item in enumerate(items)]
    )
    groups = (
        list(groups)
        if groups is not None
        else [str(getattr(item, "group", src)) for item, src in zip(items, sources, strict=True)]
    )
    layer = resolve_layer(model, spec_or_layer)
    if preprocess is None:
        mean, std = model_normalization(model)
        size = spec_or_layer.input_size if isinstance(spec_or_layer, ModelSpec) else 224
        preprocess = Preprocess(
            image_size=size,
            mean=cast("tuple[float, float, float]", mean),
            std=cast("tuple[float, float, float]", std),
        )
    n_classes = len(classes) if classes is not None else _num_classes(model)
    names = tuple(classes) if classes is not None else tuple(str(k) for k in range(n_classes or 0))
    if targets not in ("predicted", "all"):
        if classes is None:
            raise ConfigError(f"target class {targets!r} needs the class names (classes=...)")
        fixed: list[int] | None = [_class_index(targets, names)]
    elif targets == "all":
        if not n_classes:
            raise ConfigError("targets='all' needs the class names (classes=...)")
        fixed = list(range(n_classes))
    else:
        fixed = None
    device = next(model.parameters()).device

    net_maps, target_rows, logits_all = [], [], []
    with cam_session(model, layer, method) as cam:
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            x = torch.from_numpy(preprocess.batch(chunk)).to(device)
            x.requires_grad_(True)  # gradients reach the target layer even if the weights are frozen
            try:
                if fixed is None:  # grad-cam's default: ClassifierOutputTarget(argmax of the logits)
                    per_target = [cam(input_tensor=x, targets=None)]
                    logits = cam.outputs.detach().float().cpu()
                    rows = logits.argmax(dim=1).numpy()[:, None]
                else:
                    per_target = []
                    for idx in fixed:
                        per_target.append(
                            cam(input_tensor=x, targets=[ClassifierOutputTarget(idx)] * len(chunk))
                        )
                    logits = cam.outputs.detach().float().cpu()
                    rows = np.tile(np.asarray(fixed), (len(chunk), 1))
            except ValueError as exc:
                if "shape" in str(exc):  # grad-cam: "Invalid activation shape" / "Invalid grads shape"
                    raise ConfigError(
                        f"layer {layer!r} does not output a 2-D feature map; pick a conv stage "
                        f"({', '.join(stage_names(model))})"
                    ) from None
                raise
            except IndexError:
                raise ConfigError(
                    f"layer {layer!r} is not used in the forward pass (no activations)"
                ) from None
            net_maps.append(np.stack(per_target, axis=1).astype(np.float32))
            target_rows.append(rows)
            logits_all.append(logits)
    logits = torch.cat(logits_all)
    if len(names) != logits.shape[1]:
        if classes is not None:
            raise ConfigError(f"{len(names)} class names for a model with {logits.shape[1]} outputs")
        names = tuple(str(k) for k in range(logits.shape[1]))
    probs = torch.softmax(logits, dim=1).numpy()
    bad = np.flatnonzero(~np.isfinite(probs).all(axis=1))
    if bad.size:  # argmax of NaN is class 0: never label a panel with a class the model did not give
        raise DataError(
            sources[int(bad[0])],
            f"the model gave non-finite probabilities (NaN/Inf) for {bad.size} slice(s); no class or map is "
            "written. The model file may be corrupted, or its weights diverged in training",
        )
    stacked = np.concatenate(net_maps)
    maps = tuple(np.stack(_to_slice(stacked[i], image, preprocess)) for i, image in enumerate(images))
    return CamBatch(
        maps=maps,
        net_maps=stacked,
        target_indices=np.concatenate(target_rows).astype(np.int64),
        predicted=probs.argmax(axis=1),
        probabilities=probs,
        classes=names,
        method=method,
        layer=layer,
        images=tuple(images),
        sources=tuple(sources),
        groups=tuple(groups),
        versions=package_versions(("covidct", "torch", "timm", "grad-cam")),
    )
