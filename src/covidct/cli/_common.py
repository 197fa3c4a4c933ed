"""Helpers shared by the CLI modules: the consoles (results on stdout, messages on stderr), option parsing."""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from covidct.errors import ConfigError

console = Console()
err_console = Console(stderr=True)


def split_csv(value: str | None) -> list[str] | None:
    """``"a,b , c"`` -> ``["a", "b", "c"]``; ``None`` stays ``None``."""
    if value is None:
        return None
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items:
        raise ConfigError(f"expected a comma-separated list, got {value!r}")
    return items


def check_out(path: Path | str | None, *, folder: bool, option: str = "--out") -> None:
    """Fail before any work when an output location cannot be written: a file where a folder must be (or the
    reverse), a read-only or virtual file system (/proc), no permission. Missing parent folders are fine (the
    command creates them); nothing is created here: writing is tried in the nearest existing folder.

    ``folder``: the option names a folder (a run folder, an explain output) rather than a file.
    """
    if path is None:
        return
    target = Path(path)
    if target.exists() and target.is_dir() != folder:
        kind = "a folder" if target.is_dir() else "a file"
        raise ConfigError(f"{option} {target}: is {kind}; expected {'a folder' if folder else 'a file path'}")
    where = target if folder else target.parent
    for parent in (where, *where.parents):
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{option} {target}: {parent} is a file, not a folder")
            where = parent
            break
    probe = where / f".covidct-write-test-{secrets.token_hex(4)}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            reason = f"{reason}: choose a folder you can write to"
        elif exc.errno == errno.ENOENT:
            reason = "files cannot be created there (a virtual file system such as /proc?)"
        raise ConfigError(f"{option} {target}: cannot write there ({reason})") from None


# Backend/precision options shared by predict, serve, bench and evaluate (see covidct.inference.backends).
BACKEND_HELP = "torch, onnx or openvino (default: by the model's suffix: .onnx -> onnx, else torch)."
PRECISION_HELP = (
    "auto (openvino: bf16 where the CPU has BF16 and the model's parity record allows it; else fp32), fp32, "
    "bf16 (openvino)."
)
Backend = Annotated[str | None, typer.Option("--backend", help=BACKEND_HELP)]
Precision = Annotated[str, typer.Option("--precision", help=PRECISION_HELP)]


def report_precision(predictor: object) -> None:
    """Tell the user (on stderr) when ``auto`` had to refuse a reduced precision, or emulates one."""
    note = getattr(predictor, "precision_note", "")
    if note:
        err_console.print(f"note: {note}", style="yellow", markup=False, highlight=False)
