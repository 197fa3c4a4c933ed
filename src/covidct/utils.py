"""Small shared helpers: atomic writes, hashing, seeding, environment capture."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import random
import secrets
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

TRACKED_PACKAGES = (
    "covidct",
    "torch",
    "torchvision",
    "timm",
    "numpy",
    "scikit-learn",
    "pydicom",
    "nibabel",
    "grad-cam",
    "onnxruntime",
    "pillow",
)


def _new_temp(target: Path) -> Path:
    """Create an empty ``.<name>.<random>.tmp`` beside ``target`` with the normal umask-derived mode.

    (``tempfile.mkstemp`` creates 0600 files, and ``os.replace`` keeps that mode: results a lab group or a web
    server could not read.)"""
    for _ in range(100):
        tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name beside {target}")


def stale_temps(folder: str | os.PathLike[str], names: tuple[str, ...]) -> list[Path]:
    """Leftover :func:`atomic_path` temp files (``.<name>.*.tmp``) of ``names`` in ``folder``."""
    base = Path(folder)
    if not base.is_dir():
        return []
    return sorted(p for name in names for p in base.glob(f".{name}.*.tmp") if p.is_file())


def remove_stale_temps(folder: str | os.PathLike[str], names: tuple[str, ...]) -> list[Path]:
    """Delete the temp files a killed process (``kill -9``) left behind; returns what was removed."""
    removed = []
    for path in stale_temps(folder, names):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically (``os.replace``).

    The file gets the mode a plain ``open(path, "w")`` would (``0666 & ~umask``)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _new_temp(target)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def seed_everything(seed: int) -> None:
    """Seed python, numpy and (if imported) torch."""
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    import numpy as np

    np.random.seed(seed % (2**32))
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_sha(cwd: str | os.PathLike[str] | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd or Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment_record(seed: int | None = None, **extra: Any) -> dict[str, Any]:
    """What a run folder's ``env.json`` holds: versions, platform, seed, git SHA, anything extra."""
    record: dict[str, Any] = {
        "seed": seed,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "git_sha": git_sha(),
        "argv": sys.argv,
    }
    record.update(extra)
    return record
