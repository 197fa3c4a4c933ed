"""The CLI shell: --help everywhere, --version, user errors as one line with exit 2."""

from __future__ import annotations

import click
import pytest
import typer
from typer.testing import CliRunner

from covidct import __version__
from covidct.cli.main import app

runner = CliRunner()


def _command_paths(command: click.Command, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            paths.extend(_command_paths(sub, prefix + (name,)))
    return paths


ALL_COMMANDS = _command_paths(typer.main.get_command(app))


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "covidct")
def test_help_everywhere(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
