"""Fast linear probe: backbone features computed once per image, cached on disk, and a head trained on them.

With ``--freeze-backbone`` the backbone never changes, so each image's pooled feature vector (timm's
``forward_head(..., pre_logits=True)``, eval mode) is computed once and stored as
``CACHE/<identity>/<ab>/<image sha256>.npy``. ``identity`` hashes the backbone's tensors (architecture and
weights), the preprocessing (size, mean, std, DICOM window) and the feature format, so changing the model, its
weights or the input size never reuses stale features; the image key is the file's content hash, so an edited
file is recomputed and a moved one is found again. Features are of un-augmented images (augmentation is off on
this path). Training then runs the ordinary loop on a :class:`FeatureDataset` with the head as the network.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from covidct.data.dataset import Loader, SliceCache, SliceDataset, collate_skip_none
from covidct.data.preprocess import Preprocess
from covidct.data.splits import SampleLike, label_indices
from covidct.errors import CovidCTWarning
from covidct.training.loop import ProgressLike, progress_task
from covidct.utils import atomic_path

FORMAT = 1  # bump when what a feature file holds changes
ENV_DIR = "COVIDCT_FEATURE_CACHE"


def default_cache_dir() -> Path:
    """``$COVIDCT_FEATURE_CACHE``, else ``$XDG_CACHE_HOME/covidct/features`` (``~/.cache/...``)."""
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "covidct" / "features"


def model_identity(model: nn.Module, preprocess: Preprocess, window: str) -> str:
    """sha256 of the backbone tensors + preprocessing + format: what a cached feature depends on."""
    head = {id(p) for p in model.get_classifier().parameters()}  # type: ignore[operator]
    digest = hashlib.sha256()
    digest.update(
        json.dumps(
            {
                "format": FORMAT,
                "class": type(model).__name__,
                "image_size": preprocess.image_size,
                "mean": list(preprocess.mean),
                "std": list(preprocess.std),
                "window": window,
                "crop": [preprocess.crop, preprocess.crop_margin],
                "standardize": preprocess.standardize,
            },
            sort_keys=True,
        ).encode()
    )
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in head:
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def file_hash(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class FeatureStats:
    """What one extraction did (``hits`` read from disk, ``computed`` by the backbone)."""

    hits: int = 0
    computed: int = 0


class FeatureStore:
    """One folder of cached feature vectors for one model identity."""

    def __init__(self, root: str | os.PathLike[str], identity: str) -> None:
        self.root = Path(root) / identity[:32]
        self.identity = identity

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        path = self._path(key)
        try:
            value = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):  # missing, or a damaged file: recompute
            return None
        return value if value.ndim == 1 and np.isfinite(value).all() else None

    def put(self, key: str, value: np.ndarray) -> None:
        with atomic_path(self._path(key)) as tmp, open(tmp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(value, dtype=np.float32), allow_pickle=False)


class FeatureDataset(Dataset):
    """``(feature vector, label index)`` pairs; the same attributes the training loop reads from
    :class:`~covidct.data.dataset.SliceDataset` (``samples``, ``labels``, ``classes``, ``skipped``)."""

    def __init__(
        self,
        samples: Sequence[SampleLike],
        classes: Sequence[str],
        features: np.ndarray,
        skipped: list[tuple[str, str]],
    ) -> None:
        self.samples = list(samples)
        self.classes = tuple(classes)
        self.labels = label_indices(self.samples, self.classes)
        self.features = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
        self.skipped = skipped

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.features[index], int(self.labels[index])


def head_network(model: nn.Module, dropout: float = 0.0) -> nn.Module:
    """The trainable part on top of cached features: timm's dropout + classifier (shares the model's
    classifier parameters, so training it trains the model's head)."""
    return nn.Sequential(nn.Dropout(dropout), model.get_classifier())  # type: ignore[operator]


@torch.no_grad()
def pooled_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """timm's pre-logits features (global pooling, no dropout, no classifier)."""
    return model.forward_head(model.forward_features(x), pre_logits=True)  # type: ignore[operator]


def extract_features(
    model: nn.Module,
    samples: Sequence[SampleLike],
    classes: Sequence[str],
    preprocess: Preprocess,
    *,
    cache_dir: str | os.PathLike[str],
    window: str = "lung",
    image_cache: SliceCache | None = None,
    loader: Loader | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    progress: ProgressLike | None = None,
    stats: FeatureStats | None = None,
) -> FeatureDataset:
    """Features of ``samples`` (from the disk cache where present, else computed in eval mode and stored).

    Unreadable files are left out and listed in ``skipped`` (as in :class:`SliceDataset`).
    """
    stats = stats if stats is not None else FeatureStats()
    store = FeatureStore(cache_dir, model_identity(model, preprocess, window))
    keys: list[str | None] = []
    skipped: list[tuple[str, str]] = []
    for s in samples:
        try:
            keys.append(file_hash(s.path))
        except OSError as exc:
            keys.append(None)
            skipped.append((s.path, f"{type(exc).__name__}: {exc}"))
            warnings.warn(f"{s.path}: unreadable, skipped ({exc})", CovidCTWarning, stacklevel=2)
    found: dict[int, np.ndarray] = {}
    for i, key in enumerate(keys):
        if key is not None and (value := store.get(key)) is not None:
            found[i] = value
    stats.hits += len(found)
    todo = [i for i, key in enumerate(keys) if key is not None and i not in found]
    if todo:
        ds = SliceDataset([samples[i] for i in todo], classes, preprocess, cache=image_cache, loader=loader)
        skipped += ds.skipped
        kept = {id(s) for s in ds.samples}
        todo = [i for i in todo if id(samples[i]) in kept]
        index = _IndexedDataset(ds)
        was_training = model.training
        model.eval()
        model.to(device)
        try:
            with progress_task(progress, "features", len(index)) as update:
                for batch in DataLoader(index, batch_size=batch_size, collate_fn=collate_skip_none):
                    if batch is None:
                        continue
                    (x, _), where = batch
                    out = pooled_features(model, x.to(device)).float().cpu().numpy()
                    for j, vector in zip(where.tolist(), out, strict=True):
                        i = todo[j]
                        found[i] = vector
                        store.put(keys[i], vector)
                    stats.computed += len(out)
                    update(advance=len(out))
        finally:
            model.train(was_training)
    order = sorted(found)
    dim = next(iter(found.values())).shape[0] if found else 0
    features = np.stack([found[i] for i in order]) if order else np.zeros((0, dim), np.float32)
    reported = {p for p, _ in skipped}
    missing = [
        (samples[i].path, "unreadable")
        for i in range(len(samples))
        if i not in found and samples[i].path not in reported
    ]
    return FeatureDataset([samples[i] for i in order], classes, features, skipped + missing)


class _IndexedDataset(Dataset):
    """``(item, index)``: which sample a batch row came from (unreadable items are dropped by the collate)."""

    def __init__(self, ds: SliceDataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index: int) -> Any:
        item = self.ds[index]
        return None if item is None else (item, index)
