"""Find the labelled images of a dataset and record them as a manifest (issue #2).

``scan_dataset(root)`` recognises three layouts:

1. ``class_folders``: ``root/<class>/<image>`` (e.g. sarscov2-ct): no patient ids, splits are slice-level;
2. ``class_patient``: ``root/<class>/<patient>/<slices or DICOM series>``, patient id ``"<class>/<patient>"``;
3. ``csv``: a CSV file ``path,label[,patient_id]``; relative paths are resolved against the CSV's folder.

A ``covidct data synth OUT`` folder (``OUT/images`` beside ``OUT/masks`` and/or ``OUT/lungs``) is scanned as
``OUT/images``: its masks are not a class (it once trained an "images vs masks" model).

Every file is hashed (sha256) and validated by decoding it; unreadable files are listed in ``skipped`` (never
fatal), exact duplicates in ``duplicates``. Labels pass through aliases (``Covid`` -> ``COVID-19``, ...) and
the class order is fixed: canonical classes first, then the others sorted.

Class names claim no more than the data says (issue 10): ``non-COVID`` (SARS-CoV-2 CT-scan set: "not
infected by SARS-CoV-2", many with other lung disease) stays ``non-COVID``; only ``Normal``/``Healthy`` become
``Healthy``. One-vs-rest metrics count ``non-COVID`` as "rest" against ``COVID-19`` like any other class.
"""

from __future__ import annotations

import csv
import os
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from covidct.data.readers import ImageInfo, detect_format, order_dicom_files, probe_image, split_source
from covidct.errors import ConfigError, DataError
from covidct.utils import atomic_path, sha256_file

CANONICAL_CLASSES = ("COVID-19", "non-COVID", "Healthy", "Pneumonia")
DEFAULT_ALIASES: dict[str, str] = {
    "Covid": "COVID-19",
    "COVID": "COVID-19",
    "COVID-19": "COVID-19",
    "covid": "COVID-19",
    "non-COVID": "non-COVID",  # not verified healthy: its own class, never "Healthy" (issue 10)
    "Non-COVID": "non-COVID",
    "non-covid": "non-COVID",
    "Non-Covid": "non-COVID",
    "nonCOVID": "non-COVID",
    "non_COVID": "non-COVID",
    "Healthy": "Healthy",
    "Normal": "Healthy",
    "Others": "Pneumonia",
    "CAP": "Pneumonia",
    "Pneumonia": "Pneumonia",
}
MANIFEST_COLUMNS = ("path", "label", "patient_id", "sha256", "height", "width", "format", "readable")
NO_PATIENTS_WARNING = (
    "no patient ids: splits on this data are slice-level, so slices of one patient can sit in both train and "
    "test and the measured accuracy is optimistic"
)
LAYOUTS = ("class_folders", "class_patient", "csv")


@dataclass(frozen=True)
class Sample:
    """One labelled slice: a file path (or ``"volume#k"``), its class and its patient (None when unknown).

    ``sha256`` is the file's content hash where known: byte-identical images are grouped in splits.
    """

    path: str
    label: str
    patient_id: str | None
    sha256: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ManifestRow:
    """One manifest line; unreadable files have ``readable=False`` and no size."""

    path: str
    label: str
    patient_id: str | None
    sha256: str
    height: int | None
    width: int | None
    format: str
    readable: bool


@dataclass(frozen=True)
class DatasetScan:
    """The result of :func:`scan_dataset` (or :func:`load_manifest`)."""

    root: str
    layout: str
    classes: tuple[str, ...]
    samples: list[Sample]
    rows: list[ManifestRow]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    duplicates: list[tuple[str, ...]] = field(default_factory=list)
    has_patients: bool = False
    warnings: tuple[str, ...] = ()

    @property
    def warning(self) -> str | None:
        """The loud warning for data without patient ids (None when every sample has one)."""
        return None if self.has_patients else NO_PATIENTS_WARNING

    def class_counts(self) -> dict[str, tuple[int, int]]:
        """class -> (images, patients); patients is 0 where ids are unknown."""
        images: dict[str, int] = defaultdict(int)
        patients: dict[str, set[str]] = defaultdict(set)
        for s in self.samples:
            images[s.label] += 1
            if s.patient_id is not None:
                patients[s.label].add(s.patient_id)
        return {c: (images[c], len(patients[c])) for c in self.classes}

    def size_range(self) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """((min height, max height), (min width, max width)) over readable rows."""
        sizes = [(r.height, r.width) for r in self.rows if r.readable and r.height and r.width]
        if not sizes:
            return None
        hs, ws = zip(*sizes, strict=True)
        return (min(hs), max(hs)), (min(ws), max(ws))


# ----------------------------------------------------------------------------------------------- labels
def natural_key(text: str) -> list[int | str]:
    """``"Covid (10)"`` sorts after ``"Covid (9)"``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def resolve_aliases(aliases: Mapping[str, str] | None = None) -> dict[str, str]:
    """Default aliases updated with the user's (``{"Other": "Pneumonia"}``)."""
    merged = dict(DEFAULT_ALIASES)
    merged.update(aliases or {})
    return merged


def canonical_label(name: str, aliases: Mapping[str, str]) -> str:
    """Exact alias first, then a case-insensitive one; unknown names stay as they are."""
    name = name.strip()
    if name in aliases:
        return aliases[name]
    lowered = {k.lower(): v for k, v in aliases.items()}
    return lowered.get(name.lower(), name)


def class_order(labels: Sequence[str], classes: Sequence[str] | None = None) -> tuple[str, ...]:
    """The fixed class order: ``classes`` if given, else canonical classes present, then the others sorted."""
    present = set(labels)
    if classes is not None:
        missing = sorted(present - set(classes))
        if missing:
            raise ConfigError(f"labels {missing} are not among the given classes {list(classes)}")
        return tuple(classes)
    canonical = [c for c in CANONICAL_CLASSES if c in present]
    return tuple(canonical + sorted(present - set(CANONICAL_CLASSES)))


# ----------------------------------------------------------------------------------------------- discovery
def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".") or path.name in ("Thumbs.db", "desktop.ini", "__MACOSX")


def _walk_files(folder: Path) -> list[Path]:
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted((d for d in dirnames if not _is_hidden(Path(d))), key=natural_key)
        out.extend(Path(dirpath) / f for f in sorted(filenames, key=natural_key) if not _is_hidden(Path(f)))
    return out


SYNTH_MASK_FOLDERS = frozenset({"masks", "lungs"})


def synth_images_folder(root: Path) -> Path | None:
    """``root/images`` when ``root`` is laid out as ``covidct data synth`` writes it (``images/`` beside
    ``masks/`` and/or ``lungs/``, no other folder), else None."""
    names = {d.name for d in root.iterdir() if d.is_dir() and not _is_hidden(d)}
    others = names - {"images"}
    return root / "images" if "images" in names and others and others <= SYNTH_MASK_FOLDERS else None


def _folder_candidates(
    root: Path, aliases: Mapping[str, str]
) -> tuple[list[tuple[Path, str, str | None]], str]:
    class_dirs = sorted(
        (d for d in root.iterdir() if d.is_dir() and not _is_hidden(d)), key=lambda d: natural_key(d.name)
    )
    if not class_dirs:
        raise DataError(
            root,
            "no class folders: expected DATA/<class>/<images> (or <class>/<patient>/...) "
            "or a CSV manifest with columns path,label[,patient_id]",
        )
    candidates: list[tuple[Path, str, str | None]] = []
    nested = False
    for class_dir in class_dirs:
        label = canonical_label(class_dir.name, aliases)
        for f in _walk_files(class_dir):
            parts = f.relative_to(class_dir).parts
            patient = f"{class_dir.name}/{parts[0]}" if len(parts) > 1 else None
            nested = nested or patient is not None
            candidates.append((f, label, patient))
    return candidates, ("class_patient" if nested else "class_folders")


def dedupe_rows(
    source: Path, rows: Sequence[tuple[int, str, str, str | None]]
) -> tuple[list[int], list[str]]:
    """Positions of the rows to keep and notes, for ``(line, path, label, patient_id)`` rows of one CSV.

    The same path again with the same label and patient is dropped (one sample, a note); the same path with
    another label or patient id is a :class:`DataError` naming both lines.
    """
    first: dict[str, int] = {}
    keep: list[int] = []
    repeats: list[tuple[int, int, str]] = []
    for pos, (line, file, label, patient) in enumerate(rows):
        if file not in first:
            first[file] = pos
            keep.append(pos)
            continue
        line0, _, label0, patient0 = rows[first[file]]
        if label != label0:
            raise DataError(
                source, f"lines {line0} and {line} give {file} two labels ({label0!r} and {label!r})"
            )
        if patient != patient0:
            raise DataError(
                source, f"lines {line0} and {line} give {file} two patient ids ({patient0!r} and {patient!r})"
            )
        repeats.append((line0, line, file))
    notes = []
    if repeats:
        line0, line, file = repeats[0]
        notes.append(
            f"{source.name}: {len(repeats)} duplicate row(s) (the same path and label again; e.g. line "
            f"{line} repeats line {line0}: {file}); each file is one sample"
        )
    return keep, notes


def _csv_candidates(
    path: Path, aliases: Mapping[str, str]
) -> tuple[list[tuple[Path, str, str | None]], list[str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            fields = {(name or "").strip().lower(): name for name in reader.fieldnames or []}
            if "path" not in fields or "label" not in fields:
                raise DataError(
                    path, f"a dataset CSV needs columns path,label[,patient_id]; found {reader.fieldnames}"
                )
            pid = fields.get("patient_id") or fields.get("patient")
            out = []
            lines = []
            for line, row in enumerate(reader, start=2):
                raw_path, raw_label = (
                    (row.get(fields["path"]) or "").strip(),
                    (row.get(fields["label"]) or "").strip(),
                )
                if not raw_path or not raw_label:
                    raise DataError(path, f"line {line}: empty path or label")
                file = Path(raw_path)
                file = file if file.is_absolute() else path.parent / file
                patient = (row.get(pid) or "").strip() or None if pid else None
                out.append((Path(os.path.abspath(file)), canonical_label(raw_label, aliases), patient))
                lines.append(line)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(path, f"cannot read the CSV ({exc})") from None
    keep, notes = dedupe_rows(path, [(n, str(f), lab, p) for n, (f, lab, p) in zip(lines, out, strict=True)])
    return [out[i] for i in keep], notes


def _probe(path: Path) -> tuple[str, ImageInfo | None, str | None]:
    """(sha256, info, reason): info None and a reason when the file does not decode."""
    try:
        digest = sha256_file(path)
    except OSError as exc:
        return "", None, f"cannot read ({exc.strerror or exc})"
    try:
        return digest, probe_image(path), None
    except DataError as exc:
        return digest, None, exc.reason


def _anatomical_ranks(files: list[Path]) -> dict[Path, int]:
    """Rank of each single-frame DICOM slice within its folder (by position), where it can be ordered."""
    by_dir: dict[Path, list[Path]] = defaultdict(list)
    for f in files:
        by_dir[f.parent].append(f)
    ranks: dict[Path, int] = {}
    for folder, group in by_dir.items():
        if len(group) < 2:
            continue
        try:
            ordered, _, _ = order_dicom_files(group, folder)
        except DataError:  # several series or no ordering tags: keep the natural file order
            continue
        ranks.update({f: i for i, f in enumerate(ordered)})
    return ranks


# ----------------------------------------------------------------------------------------------- API
def scan_dataset(
    root: str | os.PathLike[str],
    *,
    aliases: Mapping[str, str] | None = None,
    classes: Sequence[str] | None = None,
    workers: int = 4,
) -> DatasetScan:
    """Find, hash and validate every image under ``root`` (a folder or a CSV file); see the module doc."""
    base = Path(os.path.abspath(root))
    merged = resolve_aliases(aliases)
    notes: list[str] = []
    if not base.exists():
        raise DataError(base, "not found")
    if base.is_file():
        if base.suffix.lower() != ".csv":
            raise DataError(base, "expected a dataset folder or a CSV file (path,label[,patient_id])")
        (candidates, notes), layout = _csv_candidates(base, merged), "csv"
    else:
        synth_images = synth_images_folder(base)
        if synth_images is not None:
            notes.append(f"{base}: a 'covidct data synth' folder: scanning its images/ (masks are no class)")
            base = synth_images
        candidates, layout = _folder_candidates(base, merged)
    if classes is not None:
        classes = [canonical_label(c, merged) for c in classes]

    skipped: list[tuple[str, str]] = []
    images = []
    for cand in candidates:
        if not cand[0].is_file():
            skipped.append((str(cand[0]), "file not found"))
        elif detect_format(cand[0]) is None:
            skipped.append((str(cand[0]), f"unknown file type {cand[0].suffix or '(no extension)'!r}"))
        else:
            images.append(cand)
    with ThreadPoolExecutor(max_workers=max(1, min(workers, 8))) as pool:
        probes = list(pool.map(lambda c: _probe(c[0]), images))

    rows: list[ManifestRow] = []
    readable: list[tuple[Path, str, str | None, ImageInfo]] = []
    for (path, label, patient), (digest, info, reason) in zip(images, probes, strict=True):
        fmt = detect_format(path) or ""
        if info is None:
            skipped.append((str(path), reason or "unreadable"))
            rows.append(ManifestRow(str(path), label, patient, digest, None, None, fmt, False))
        else:
            readable.append((path, label, patient, info))
            names = [str(path)] if info.n_slices == 1 else [f"{path}#{k}" for k in range(info.n_slices)]
            rows.extend(
                ManifestRow(n, label, patient, digest, info.height, info.width, fmt, True) for n in names
            )

    order = class_order([label for _, label, _, _ in readable], classes)
    ranks = _anatomical_ranks(
        [p for p, _, _, info in readable if info.format == "dicom" and info.n_slices == 1]
    )
    index = {c: i for i, c in enumerate(order)}

    def sort_key(row: ManifestRow) -> tuple:
        file = split_source(row.path)[0]
        return (
            index.get(row.label, len(index)),
            natural_key(row.patient_id or ""),
            natural_key(str(file.parent)),
            ranks.get(file, 0),
            natural_key(row.path),
        )

    rows.sort(key=sort_key)
    samples = [Sample(r.path, r.label, r.patient_id, r.sha256 or None) for r in rows if r.readable]
    return _finish(str(base), layout, order, samples, rows, skipped, notes)


def _finish(
    root: str,
    layout: str,
    classes: tuple[str, ...],
    samples: list[Sample],
    rows: list[ManifestRow],
    skipped: list[tuple[str, str]],
    notes: Sequence[str] = (),
) -> DatasetScan:
    by_hash: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        if r.readable and r.sha256:
            by_hash[r.sha256].add(str(split_source(r.path)[0]))
    duplicates = sorted(
        (tuple(sorted(paths, key=natural_key)) for paths in by_hash.values() if len(paths) > 1),
        key=lambda group: natural_key(group[0]),
    )
    with_ids = [s.patient_id is not None for s in samples]
    has_patients = bool(samples) and all(with_ids)
    warnings = [] if has_patients else [NO_PATIENTS_WARNING]
    if any(with_ids) and not all(with_ids):
        warnings.append("some images sit directly in a class folder and have no patient id")
    warnings.extend(notes)
    if not samples:
        raise DataError(root, f"no readable images found ({len(skipped)} unreadable or unknown files)")
    return DatasetScan(
        root, layout, classes, samples, rows, skipped, duplicates, has_patients, tuple(warnings)
    )


def save_manifest(scan: DatasetScan, path: str | os.PathLike[str]) -> Path:
    """Write the manifest CSV (path,label,patient_id,sha256,height,width,format,readable) atomically."""
    target = Path(path)
    with atomic_path(target) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(MANIFEST_COLUMNS)
        for r in scan.rows:
            writer.writerow(
                [
                    r.path,
                    r.label,
                    r.patient_id or "",
                    r.sha256,
                    r.height or "",
                    r.width or "",
                    r.format,
                    "true" if r.readable else "false",
                ]
            )
    return target


def load_manifest(path: str | os.PathLike[str], *, classes: Sequence[str] | None = None) -> DatasetScan:
    """Read a manifest from :func:`save_manifest` (no re-validation; relative paths -> the CSV's folder)."""
    source = Path(os.path.abspath(path))
    rows: list[ManifestRow] = []
    lines: list[int] = []
    try:
        with open(source, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in MANIFEST_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(source, f"not a covidct manifest: missing columns {missing}")
            for line, raw in enumerate(reader, start=2):
                try:
                    file = (
                        raw["path"] if Path(raw["path"]).is_absolute() else str(source.parent / raw["path"])
                    )
                    rows.append(
                        ManifestRow(
                            file,
                            raw["label"],
                            raw["patient_id"] or None,
                            raw["sha256"],
                            int(raw["height"]) if raw["height"] else None,
                            int(raw["width"]) if raw["width"] else None,
                            raw["format"],
                            raw["readable"].strip().lower() in ("true", "1", "yes"),
                        )
                    )
                    lines.append(line)
                except (TypeError, ValueError) as exc:
                    raise DataError(source, f"line {line}: {exc}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(source, f"cannot read the manifest ({exc})") from None
    keep, notes = dedupe_rows(
        source, [(n, r.path, r.label, r.patient_id) for n, r in zip(lines, rows, strict=True)]
    )
    rows = [rows[i] for i in keep]
    samples = [Sample(r.path, r.label, r.patient_id, r.sha256 or None) for r in rows if r.readable]
    skipped = [(r.path, "marked unreadable in the manifest") for r in rows if not r.readable]
    order = class_order([s.label for s in samples], classes)
    return _finish(str(source), "csv", order, samples, rows, skipped, notes)
