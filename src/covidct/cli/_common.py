"""Helpers shared by the CLI modules: consoles and option parsing."""

from __future__ import annotations

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


# Backend/precision options shared by predict, serve, bench and evaluate (see covidct.inference.backends).
BACKEND_HELP = "torch, onnx or openvino (default: by the model's suffix: .onnx -> onnx, else torch)."
PRECISION_HELP = (
    "auto (openvino: bf16 where the CPU has BF16 and the model's parity record allows it; else fp32), fp32, "
    "bf16 (openvino)."
)


def backend_option(default: str | None = None):  # type: ignore[no-untyped-def]
    """The ``--backend`` option (typer)."""
    import typer

    return typer.Option(default, "--backend", help=BACKEND_HELP)


def precision_option(default: str = "auto"):  # type: ignore[no-untyped-def]
    """The ``--precision`` option (typer)."""
    import typer

    return typer.Option(default, "--precision", help=PRECISION_HELP)


def report_precision(predictor: object) -> None:
    """Tell the user (on stderr) when ``auto`` had to refuse a reduced precision, or emulates one."""
    note = getattr(predictor, "precision_note", "")
    if note:
        err_console.print(f"note: {note}", style="yellow", markup=False, highlight=False)
