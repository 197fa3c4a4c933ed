"""CLI: ``covidct serve MODEL``: the web service and page (issue #7)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from covidct.cli._common import Backend, Precision, console, err_console


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("serve")(serve)


def serve(
    model: Annotated[
        Path, typer.Argument(help="A covidct checkpoint (.pt, torch) or an exported .onnx model.")
    ],
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (0.0.0.0 exposes it to the network).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", help="Largest accepted upload, in MiB.")
    ] = 50.0,
    worker_threads: Annotated[
        int,
        typer.Option(
            "--workers-threads",
            help="Requests decoded/predicted at the same time (torch models run one at a time).",
        ),
    ] = 2,
    threads: Annotated[
        int | None,
        typer.Option("--threads", help="Intra-op threads of torch/onnxruntime/openvino (default: cores)."),
    ] = None,
    backend: Backend = None,
    precision: Precision = "auto",
    timeout_s: Annotated[
        float,
        typer.Option(
            "--timeout-s", help="Time budget of one request in seconds (answered 408 when it runs out)."
        ),
    ] = 120.0,
) -> None:
    """Serve MODEL over HTTP: POST /predict, POST /explain (Grad-CAM), GET /health, GET /model, the page at /.

    API docs at /docs. Uploads: one PNG/JPEG/TIFF/DICOM image or a ZIP of one DICOM series.
    """
    from covidct.serve.app import serve as run_service

    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(
            f"warning: listening on {host}: anyone who can reach it can upload files", style="yellow"
        )
    console.print(f"covidct serve: loading {model} …  then http://{host}:{port}/ (Ctrl-C to stop)")
    run_service(
        model,
        host=host,
        port=port,
        max_upload_mb=max_upload_mb,
        worker_threads=worker_threads,
        threads=threads,
        backend=backend,
        precision=precision,
        request_timeout_s=timeout_s,
    )
