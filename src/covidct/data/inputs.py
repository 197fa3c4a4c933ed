"""Expand what a user points at (files, folders, DICOM series, NIfTI volumes) into slices to predict on.

``iter_inputs(paths)`` yields :class:`InputSlice` (source id, image float32 [0, 1], group) one at a time, so a
big folder is never held in memory unless the caller collects it (``collect_inputs``). Groups say which slices
belong to one patient / series / volume, for patient-level aggregation:

- the single-frame DICOM files of one series in a folder form one group (the folder), in anatomical order;
- a NIfTI volume or multi-frame DICOM is one group (the file), with sources ``"file#k"``;
- any other image is its own group, unless it sits in a patient folder: a folder strictly below the folder you
  passed whose name is not a class name (``data/p01/1.png`` -> group ``data/p01``; ``data/COVID/1.png`` and
  ``data/1.png`` -> their own paths).

Unreadable files are recorded in ``skipped`` as ``(path, reason)``; only "nothing readable" is an error.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np

from covidct.data.manifest import DEFAULT_ALIASES, natural_key
from covidct.data.readers import (
    Normalization,
    TagError,
    detect_format,
    load_series,
    load_slice,
    n_frames,
    read_dicom_header,
    slice_positions,
)
from covidct.data.window import Window
from covidct.errors import DataError

PathLike = str | os.PathLike[str]
_CLASS_NAMES = {name.lower() for name in (*DEFAULT_ALIASES, *DEFAULT_ALIASES.values())}


@dataclass(frozen=True)
class InputSlice:
    """One 2-D slice to predict on."""

    source: str  # file path, or "volume#k"
    image: np.ndarray  # (H, W) float32 in [0, 1]
    group: str  # series / patient / volume id (the file's own path for a lone image)


class InputCollection(NamedTuple):
    """``collect_inputs`` result; unpacks as ``slices, skipped = collect_inputs(paths)``."""

    slices: list[InputSlice]
    skipped: list[tuple[str, str]]


@dataclass(frozen=True)
class _Item:
    kind: str  # "image" | "volume" | "series"
    files: tuple[Path, ...]
    group: str


def _hidden(name: str) -> bool:
    return name.startswith(".") or name in ("Thumbs.db", "desktop.ini", "__MACOSX", "DICOMDIR")


def _plan_folder(root: Path, skipped: list[tuple[str, str]]) -> Iterator[_Item]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted((d for d in dirnames if not _hidden(d)), key=natural_key)
        folder = Path(dirpath)
        patient_folder = folder != root and folder.name.lower() not in _CLASS_NAMES
        headers: dict[str, list[tuple[Path, object]]] = defaultdict(list)
        for name in sorted((f for f in filenames if not _hidden(f)), key=natural_key):
            path = folder / name
            fmt = detect_format(path)
            if fmt is None:
                skipped.append((str(path), f"unknown file type {path.suffix or '(no extension)'!r}"))
            elif fmt == "nifti":
                yield _Item("volume", (path,), str(path))
            elif fmt == "dicom":
                try:
                    header = read_dicom_header(path)
                except DataError as exc:
                    skipped.append((str(path), exc.reason))
                    continue
                if n_frames(header) > 1:
                    yield _Item("volume", (path,), str(path))
                else:
                    headers[str(header.get("SeriesInstanceUID", ""))].append((path, header))
            else:
                yield _Item("image", (path,), str(folder) if patient_folder else str(path))
        for uid, members in headers.items():
            group = str(folder) if len(headers) == 1 else f"{folder}#{uid}"
            try:
                order, _ = slice_positions([h for _, h in members], folder)
            except TagError as exc:  # a malformed position tag: the series is skipped, like a bad file
                skipped.append((exc.path, f"{exc.reason}; its series ({len(members)} files) skipped"))
                continue
            except DataError:  # no ordering tags: keep the natural file order rather than drop the series
                order = list(range(len(members)))
            yield _Item("series", tuple(members[i][0] for i in order), group)


def _plan(paths: Iterable[PathLike], skipped: list[tuple[str, str]]) -> Iterator[_Item]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from _plan_folder(path, skipped)
        elif path.exists():
            kind = "volume" if detect_format(path) in ("nifti", "dicom") else "image"
            yield _Item(kind, (path,), str(path))
        else:
            skipped.append((str(path), "not found"))


@dataclass(frozen=True)
class Skipped:
    """A file that could not be read, and why (what ``skipped`` lists hold, as ``(path, reason)``)."""

    path: str
    reason: str


LoadJob = Callable[[], "list[InputSlice | Skipped]"]


def _skipped_job(entry: Skipped) -> LoadJob:
    """A job that only reports ``entry`` (a file planning already found unreadable)."""
    return lambda: [entry]


def _load_volume(path: Path, group: str, window: str | Window) -> list[InputSlice | Skipped]:
    try:
        series = load_series(path, window=window)
    except DataError as exc:
        return [Skipped(str(path), exc.reason)]
    pairs = zip(series.sources, series.images, strict=True)
    return [InputSlice(source, image, group) for source, image in pairs]


def _load_file(
    path: Path, group: str, window: str | Window, normalization: Normalization
) -> list[InputSlice | Skipped]:
    try:
        return [InputSlice(str(path), load_slice(path, window=window, normalization=normalization), group)]
    except DataError as exc:
        return [Skipped(str(path), exc.reason)]


def input_jobs(
    paths: Iterable[PathLike] | PathLike,
    *,
    window: str | Window = "lung",
    normalization: Normalization = "minmax",
) -> Iterator[LoadJob]:
    """The work of :func:`iter_inputs` as independent jobs, in its order, for a thread pool
    (:func:`covidct.data.pipeline.ordered_prefetch`): one job per image file or series slice, one per volume.

    Each job returns the slices it decoded and/or :class:`Skipped` entries (files that failed when planning,
    e.g. an unknown type or a bad DICOM header, come as jobs returning only ``[Skipped]``, where the planner
    met them). Planning itself (walking folders, reading headers to order a series) happens while iterating.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    planned: list[tuple[str, str]] = []

    def flush() -> Iterator[LoadJob]:
        while planned:
            yield _skipped_job(Skipped(*planned.pop(0)))

    for item in _plan(list(paths), planned):
        yield from flush()
        if item.kind == "volume":
            yield partial(_load_volume, item.files[0], item.group, window)
        else:
            for file in item.files:
                yield partial(_load_file, file, item.group, window, normalization)
    yield from flush()


def iter_inputs(
    paths: Iterable[PathLike] | PathLike,
    *,
    window: str | Window = "lung",
    normalization: Normalization = "minmax",
    skipped: list[tuple[str, str]] | None = None,
) -> Iterator[InputSlice]:
    """Yield the readable slices under ``paths``; unreadable files are appended to ``skipped``.

    Raises DataError at the end if nothing at all was readable.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths)
    skipped = [] if skipped is None else skipped
    found = 0
    for job in input_jobs(paths, window=window, normalization=normalization):
        for out in job():
            if isinstance(out, Skipped):
                skipped.append((out.path, out.reason))
            else:
                found += 1
                yield out
    if not found:
        raise nothing_readable(paths, skipped)


def nothing_readable(paths: list[PathLike], skipped: list[tuple[str, str]]) -> DataError:
    """The error for inputs under which no slice could be read."""
    where = os.fspath(paths[0]) if len(paths) == 1 else f"{len(paths)} inputs"
    detail = f"; first problem: {skipped[0][0]}: {skipped[0][1]}" if skipped else ""
    return DataError(where, f"no readable images ({len(skipped)} skipped{detail})")


def collect_inputs(
    paths: Iterable[PathLike] | PathLike,
    *,
    window: str | Window = "lung",
    normalization: Normalization = "minmax",
) -> InputCollection:
    """All readable slices under ``paths`` and the ``(path, reason)`` of every skipped file."""
    skipped: list[tuple[str, str]] = []
    slices = list(iter_inputs(paths, window=window, normalization=normalization, skipped=skipped))
    return InputCollection(slices, skipped)
