"""The CLI shell: --help everywhere, --version, user errors as one line with exit 2."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from covidct import __version__
from covidct.cli.main import app

runner = CliRunner()


def _command_paths(command, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    # typer >= 0.29 vendors click: groups are recognised by their `commands` mapping, not by class
    paths = [prefix]
    if isinstance(getattr(command, "commands", None), dict):
        for name, sub in command.commands.items():
            paths.extend(_command_paths(sub, prefix + (name,)))
    return paths


ALL_COMMANDS = _command_paths(typer.main.get_command(app))
EXPECTED_COMMANDS = {
    "data",
    "models",
    "train",
    "cv",
    "metrics",
    "evaluate",
    "explain",
    "activations",
    "predict",
    "export",
    "bench",
    "compare",
    "report",
    "demo",
    "serve",
}


def test_every_documented_command_is_registered() -> None:
    top_level = {path[0] for path in ALL_COMMANDS if len(path) == 1}
    assert EXPECTED_COMMANDS <= top_level, EXPECTED_COMMANDS - top_level


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "covidct")
def test_help_everywhere(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
