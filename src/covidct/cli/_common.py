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
