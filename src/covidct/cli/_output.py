"""Result output: Rich tables that survive a pipe, and ``--format csv|json`` for machines.

Rich cuts a table to the console width, which is 80 columns when stdout is not a terminal (``covidct models
| cat`` showed "EfficientNe…"). Off a terminal, tables are rendered at their natural width instead; on a
terminal the name columns do not wrap and the other columns fold. ``csv`` and ``json`` write plain records to
stdout (no Rich markup); everything else (progress, notes, warnings) then goes to stderr.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from typing import Annotated, Any

import typer
from rich.console import Console, RenderableType
from rich.table import Table

from covidct.cli._common import console, err_console

#: Off a terminal, tables get this many columns at most (they are as wide as their content, never padded).
PIPE_WIDTH = 1000


class OutputFormat(str, Enum):
    """How a command prints its result table."""

    table = "table"
    csv = "csv"
    json = "json"


FormatOption = Annotated[
    OutputFormat,
    typer.Option(
        "--format",
        case_sensitive=False,
        help="table (for people), csv or json (machine-readable records on stdout; messages go to stderr).",
    ),
]


def info_console(fmt: OutputFormat) -> Console:
    """Where notes and progress go: stdout beside a table, stderr when stdout carries csv/json."""
    return console if fmt is OutputFormat.table else err_console


def print_renderable(renderable: RenderableType, *, to: Console | None = None) -> None:
    """Print one Rich renderable; a table off a terminal is printed at its natural width, never cut."""
    target = to or console
    if isinstance(renderable, Table) and not target.is_terminal and target.width < PIPE_WIDTH:
        target = Console(
            file=target.file,
            width=PIPE_WIDTH,
            color_system=target.color_system,  # type: ignore[arg-type]
            no_color=target.no_color,
            highlight=False,
        )
    target.print(renderable)


def _plain(value: Any) -> Any:
    """JSON-safe scalars: NaN and infinities become null, numpy scalars plain Python."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_records(
    records: Sequence[Mapping[str, Any]], fmt: OutputFormat, *, columns: Iterable[str] | None = None
) -> None:
    """Write records to stdout as CSV (header row; empty cell for a missing value) or as a JSON array."""
    fields = list(columns) if columns is not None else list(dict.fromkeys(k for r in records for k in r))
    rows = [{k: _plain(r.get(k)) for k in fields} for r in records]
    if fmt is OutputFormat.json:
        sys.stdout.write(json.dumps(rows, indent=2, allow_nan=False) + "\n")
    elif fmt is OutputFormat.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    else:
        raise ValueError(f"write_records writes csv or json, not {fmt.value}")
    sys.stdout.flush()
