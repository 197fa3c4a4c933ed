"""The ``covidct`` command line: a thin shell over the Python API.

Each command group lives in its own module with a ``register(app)`` function. Modules import torch and
friends lazily inside the commands, so ``covidct --help`` stays fast and torch-free. Only
:class:`CovidCTError` is turned into a one-line message (exit 2); anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import importlib
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from covidct import __version__
from covidct.cli._common import err_console
from covidct.errors import CovidCTError

COMMAND_MODULES = ("data", "models", "train", "metrics", "evaluate", "explain", "predict", "study", "serve")


class _CovidCTGroup(TyperGroup):
    """Maps user errors to ``error: <message>`` and exit code 2, and Ctrl-C to exit 130."""

    def invoke(self, ctx: Any) -> Any:  # typer's click Context is private (typer._click)
        try:
            return super().invoke(ctx)
        except CovidCTError as exc:
            err_console.print(f"error: {exc}", style="red", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print(
                "interrupted: finished work is saved; rerun the same command to resume", style="yellow"
            )
            raise typer.Exit(130) from None


app = typer.Typer(
    cls=_CovidCTGroup,
    name="covidct",
    help="Train, compare, explain and deploy CNN classifiers for COVID-19 on chest CT.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"covidct {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """covidct: the paper's 20 CNNs, patient-grouped cross-validation, Grad-CAM, fast prediction."""


for _name in COMMAND_MODULES:
    importlib.import_module(f"covidct.cli.{_name}").register(app)


def run() -> None:
    """Console-script entry point."""
    app(prog_name="covidct")


if __name__ == "__main__":  # pragma: no cover
    run()
