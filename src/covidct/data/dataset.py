"""Samples -> tensors for training and evaluation, with a decode-once cache.

:class:`SliceCache` decodes and resizes every slice once into one float16 numpy array (a thread pool, since
PIL and pydicom release the GIL); DataLoader workers started with ``fork`` share it copy-on-write, and epoch
2+ never touches the files again. Files that cannot be read are reported (:attr:`SliceCache.skipped`, a
:class:`CovidCTWarning`) and left out, never fatal. Without a cache, an unreadable file yields ``None`` and
:func:`collate_skip_none` drops it from the batch.

Augmentation runs on the resized ``(1, S, S)`` image in [0, 1] (before normalisation, so the fill value 0 is
the black CT background); normalisation and 3-channel replication match
:class:`~covidct.data.preprocess.Preprocess`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from covidct.data.preprocess import Preprocess
from covidct.data.readers import load_slice
from covidct.data.splits import SampleLike, label_indices
from covidct.errors import CovidCTError, CovidCTWarning

Loader = Callable[[str], np.ndarray]
#: ``progress(done, total)`` callback while a cache is being filled.
ProgressCallback = Callable[[int, int], None]


def default_loader(window: str = "lung") -> Loader:
    """``path -> 2-D float32 [0, 1]`` via :func:`covidct.data.readers.load_slice`."""

    def load(path: str) -> np.ndarray:
        return load_slice(path, window=window)

    return load


class SliceCache:
    """Decoded + resized slices (``(N, S, S)`` float16 in [0, 1]) for a list of paths, filled once.

    Attributes:
        images: the array; rows of unreadable files stay zero.
        ok: boolean mask of readable rows.
        skipped: ``(path, reason)`` for every unreadable file.
    """

    def __init__(
        self,
        paths: Sequence[str],
        image_size: int,
        *,
        loader: Loader | None = None,
        workers: int = 2,
        progress: ProgressCallback | None = None,
        preprocess: Preprocess | None = None,
    ) -> None:
        self.paths = [str(p) for p in paths]
        self.image_size = int(image_size)
        prep = preprocess or Preprocess(image_size=self.image_size)
        if prep.image_size != self.image_size:
            raise ValueError(f"preprocess size {prep.image_size} != cache size {self.image_size}")
        self.lung_options = prep.record()
        self.no_lungs: list[str] = []  # lung options on, no lungs found: the whole slice was used
        self.index = {p: i for i, p in enumerate(self.paths)}
        self.images = np.zeros((len(self.paths), self.image_size, self.image_size), dtype=np.float16)
        self.ok = np.zeros(len(self.paths), dtype=bool)
        self.skipped: list[tuple[str, str]] = []
        load = loader or default_loader()

        def work(i: int) -> tuple[int, str | None]:
            try:
                self.images[i], found = prep.prepare_flagged(load(self.paths[i]))
                if not found:
                    self.no_lungs.append(self.paths[i])
            except CovidCTError as exc:  # DataError: "path: reason"
                return i, getattr(exc, "reason", str(exc))
            except (OSError, ValueError) as exc:
                return i, f"{type(exc).__name__}: {exc}"
            return i, None

        done = 0
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for i, reason in pool.map(work, range(len(self.paths))):
                if reason is None:
                    self.ok[i] = True
                else:
                    self.skipped.append((self.paths[i], reason))
                done += 1
                if progress is not None:
                    progress(done, len(self.paths))
        for path, reason in self.skipped:
            warnings.warn(f"{path}: unreadable, skipped ({reason})", CovidCTWarning, stacklevel=2)
        if self.no_lungs:
            warnings.warn(
                f"{len(self.no_lungs)} of {len(self.paths)} slice(s): no lungs found, whole slice used "
                f"(first: {self.no_lungs[0]})",
                CovidCTWarning,
                stacklevel=2,
            )

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, path: str) -> np.ndarray | None:
        """The cached ``(S, S)`` float32 image, or ``None`` if the file was unreadable or not cached."""
        i = self.index.get(str(path))
        if i is None or not self.ok[i]:
            return None
        return self.images[i].astype(np.float32)


class SliceDataset(Dataset):
    """``samples -> (tensor (3, S, S) float32, label index)``.

    Args:
        samples: objects with ``path``, ``label``, ``patient_id``.
        classes: the class order (label index = position).
        preprocess: size and normalisation (from the model).
        augment: a callable on a ``(1, S, S)`` tensor in [0, 1] (see :mod:`covidct.training.augment`).
        cache: a :class:`SliceCache` holding these paths (unreadable ones are dropped from the dataset),
            ``True`` to build one now, or ``None``/``False`` to decode on every access.
        loader: ``path -> 2-D array in [0, 1]`` (default: :func:`covidct.data.readers.load_slice`).
        with_index: items are ``(tensor, label, index into samples)`` so a training loop can name the files of
            a batch that went wrong (a non-finite loss).
    """

    def __init__(
        self,
        samples: Sequence[SampleLike],
        classes: Sequence[str],
        preprocess: Preprocess,
        *,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        cache: SliceCache | bool | None = None,
        loader: Loader | None = None,
        with_index: bool = False,
    ) -> None:
        self.classes = tuple(classes)
        self.with_index = with_index
        self.preprocess = preprocess
        self.augment = augment
        self.loader = loader
        labels = label_indices(samples, self.classes)
        if cache is True:
            cache = SliceCache(
                [s.path for s in samples], preprocess.image_size, loader=loader, preprocess=preprocess
            )
        self.cache: SliceCache | None = cache or None
        self.skipped: list[tuple[str, str]] = []
        keep = list(range(len(samples)))
        if self.cache is not None:
            if self.cache.image_size != preprocess.image_size:
                raise ValueError(f"cache size {self.cache.image_size} != image size {preprocess.image_size}")
            if self.cache.lung_options != preprocess.record():
                raise ValueError(f"cache lung options {self.cache.lung_options} != {preprocess.record()}")
            bad = {p: r for p, r in self.cache.skipped}
            self.skipped = [(s.path, bad[s.path]) for s in samples if s.path in bad]
            keep = [i for i, s in enumerate(samples) if s.path not in bad]
        self.samples = [samples[i] for i in keep]
        self.labels = labels[keep]
        self._mean = torch.tensor(preprocess.mean, dtype=torch.float32).view(3, 1, 1)
        self._std = torch.tensor(preprocess.std, dtype=torch.float32).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.samples)

    def _image(self, index: int) -> np.ndarray | None:
        path = self.samples[index].path
        if self.cache is not None:
            image = self.cache.get(path)
            if image is not None:
                return image
        load = self.loader or default_loader()
        try:
            return self.preprocess.prepare(load(path))
        except CovidCTError as exc:
            warnings.warn(f"{path}: unreadable, skipped ({exc})", CovidCTWarning, stacklevel=2)
            return None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | tuple[torch.Tensor, int, int] | None:
        image = self._image(index)
        if image is None:
            return None
        x = torch.from_numpy(np.array(image, dtype=np.float32)).unsqueeze(0)  # a writable copy
        if self.augment is not None:
            x = self.augment(x)
        x = (x.expand(3, -1, -1) - self._mean) / self._std
        if self.with_index:
            return x, int(self.labels[index]), index
        return x, int(self.labels[index])


def collate_skip_none(batch: list[Any]) -> Any:
    """``default_collate`` without the ``None`` items (unreadable files); an all-``None`` batch gives
    ``None``."""
    kept = [item for item in batch if item is not None]
    return default_collate(kept) if kept else None
