"""Markdown building blocks shared by the run and study writers."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pandas as pd


def md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A GitHub-flavoured Markdown table as lines (header, rule, one line per row)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def records(table: pd.DataFrame) -> Iterator[Any]:
    """The rows of ``table`` as named tuples (``row.model``, ``row.accuracy``, ...)."""
    return iter(table.itertuples())
