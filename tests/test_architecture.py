"""docs/ARCHITECTURE.md stays true to the tree: every module is named there, every named module exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "covidct"
DOC = ROOT / "docs" / "ARCHITECTURE.md"


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")


def test_every_module_is_named_in_architecture() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [str(p.relative_to(PACKAGE)) for p in _modules() if f"`{p.name}`" not in text]
    assert not missing, f"modules not described in docs/ARCHITECTURE.md: {missing}"


def test_every_module_named_in_architecture_exists() -> None:
    text = DOC.read_text(encoding="utf-8")
    named = set(re.findall(r"`([a-z_]+\.py)`", text))
    existing = {p.name for p in _modules()} | {"__init__.py"}
    tests = {p.name for p in (ROOT / "tests").rglob("*.py")}
    assert not named - existing - tests, (
        f"ARCHITECTURE.md names missing modules: {sorted(named - existing - tests)}"
    )
