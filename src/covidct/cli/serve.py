"""CLI: ``covidct serve MODEL``: the web service and page (issue #7)."""

from __future__ import annotations

from pathlib import Path

import typer

from covidct.cli._common import backend_option, console, err_console, precision_option


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("serve")(serve)


def serve(
    model: Path = typer.Argument(..., help="A covidct checkpoint (.pt, torch) or an exported .onnx model."),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on (0.0.0.0 exposes it to the network)."
    ),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    max_upload_mb: float = typer.Option(50.0, "--max-upload-mb", help="Largest accepted upload, in MiB."),
    worker_threads: int = typer.Option(
        2, "--workers-threads",
        help="Requests decoded/predicted at the same time (torch models run one at a time).",
    ),
    threads: int | None = typer.Option(
        None, "--threads", help="Intra-op threads of torch/onnxruntime/openvino (default: cores)."
    ),
    backend: str | None = backend_option(),
    precision: str = precision_option(),
    timeout_s: float = typer.Option(
        120.0, "--timeout-s", help="Time budget of one request in seconds (answered 408 when it runs out)."
    ),
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
    run_service(model, host=host, port=port, max_upload_mb=max_upload_mb, worker_threads=worker_threads,
                threads=threads, backend=backend, precision=precision, request_timeout_s=timeout_s)
