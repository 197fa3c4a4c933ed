"""The web service: ``create_app(predictor) -> FastAPI`` (issue #7).

Routes: ``POST /predict`` and ``POST /explain`` (multipart field ``file``: one PNG/JPEG/TIFF/DICOM image or a
ZIP of one DICOM series), ``GET /health``, ``GET /model``, ``GET /`` (the single page, from ``static/``), and
FastAPI's ``/docs`` + ``/openapi.json``.

The model is loaded once and shared by all requests. Decoding, inference and Grad-CAM run in worker threads
(never on the event loop), at most ``worker_threads`` at a time; a torch model is additionally used by one
thread at a time (a lock: Grad-CAM hooks and module modes are per-model state), an onnxruntime session is
thread-safe.

Bounded work (issue 11): every request has a time budget (408 when it runs out) and is abandoned at the next
step when its client disconnects. *Heavy* requests (a ZIP series, or more than :data:`LIGHT_PIXELS` decoded
pixels) run one at a time in their own worker, use the model a few slices at a time, and give way to light
requests waiting for the model, so a bomb among normal requests costs them little. ``/explain`` renders at
display size (longer side <= :data:`covidct.serve.images.DISPLAY_MAX`), never at the size of a huge upload.

Every user error is a 4xx JSON ``{"error": "..."}``; uploads are staged by :mod:`covidct.serve.uploads` in a
temporary folder removed at the end of the request.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import anyio
import numpy as np
import uvicorn
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from covidct import __version__
from covidct.data.readers import load_series, load_slice
from covidct.errors import ConfigError, CovidCTError, DataError
from covidct.inference.predictor import Predictor
from covidct.serve import schemas
from covidct.serve.images import colorize, display_image, overlay, png_base64, thumbnail, to_uint8
from covidct.serve.model import ServedModel, load_model, preload_explain
from covidct.serve.priority import PAUSE_SHARE, Allowance, LightFirst
from covidct.serve.uploads import (
    MULTIPART_SLACK,
    BodyLimit,
    StagedUpload,
    UploadError,
    UploadLimits,
    cleanup_stale_uploads,
    extract_series,
    stage_upload,
)

STATIC_DIR = Path(__file__).with_name("static")
DEFAULT_MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_CAMS = 8
LIGHT_PIXELS = 4 * 1024 * 1024  # decoded pixels up to which a single image is a light request
DEFAULT_REQUEST_TIMEOUT_S = 120.0
DISCONNECT_POLL_S = 0.25
UPLOAD_HELP = "PNG/JPEG/TIFF/DICOM image, or a ZIP of one DICOM series"


class Budget:
    """One request's deadline and cancellation flag; :meth:`check` raises when the work must stop."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.cancelled = threading.Event()

    def check(self) -> None:
        if self.cancelled.is_set():
            raise UploadError("the client went away; request abandoned", 499)
        if time.monotonic() > self.deadline:
            raise self.expired()

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def expired(self, waiting: bool = False) -> UploadError:
        limit = f"its time budget of {self.timeout_s:g} s"
        if waiting:
            return UploadError(f"request waited for a worker longer than {limit} (the server is busy)", 408)
        return UploadError(
            f"request took longer than {limit} and was stopped; send a smaller file or fewer slices", 408
        )


# --------------------------------------------------------------------------------------------- requests
class _Loaded:
    """Decoded slices of one upload."""

    def __init__(self, staged: StagedUpload, images: list[np.ndarray], sources: list[str]) -> None:
        self.staged, self.images, self.sources = staged, images, sources


def _read_upload(staged: StagedUpload, served: ServedModel, check: Callable[[], None]) -> _Loaded:
    try:
        if staged.kind in ("png", "jpeg"):
            images = [load_slice(staged.path)]
            sources = [staged.filename]
        else:  # DICOM (maybe multi-frame), TIFF (maybe a stack) and DICOM series folders
            series = load_series(staged.path, window=served.meta.window_spec, check=check)
            images = list(series.images)
            sources = [staged.display(s) for s in series.sources]
    except DataError as exc:
        raise UploadError(staged.display(str(exc)), 422) from None
    if not images:
        raise UploadError(f"{staged.filename}: no slices found", 422)
    return _Loaded(staged, images, sources)


def _probs(classes: Sequence[str], row: np.ndarray) -> dict[str, float]:
    return {c: round(float(p), 6) for c, p in zip(classes, row, strict=True)}


def _suspicion_order(probs: np.ndarray, classes: Sequence[str]) -> list[int]:
    """Slices most likely abnormal first: by 1 - p(Healthy) when a healthy class exists, else by
    confidence."""
    healthy = [i for i, c in enumerate(classes) if c.lower() in ("healthy", "normal", "non-covid")]
    score = 1.0 - probs[:, healthy[0]] if healthy else probs.max(axis=1)
    return [int(i) for i in np.argsort(-score, kind="stable")]


def _build_prediction(
    loaded: _Loaded,
    probs: np.ndarray,
    overall: np.ndarray,
    served: ServedModel,
    timing: dict[str, float],
    thumbnails: bool,
) -> dict[str, Any]:
    classes = served.classes
    slices = []
    for i, (image, source, row) in enumerate(zip(loaded.images, loaded.sources, probs, strict=True)):
        k = int(row.argmax())
        slices.append(
            schemas.SliceResult(
                index=i,
                source=source,
                probabilities=_probs(classes, row),
                predicted=classes[k],
                confidence=round(float(row[k]), 6),
                height=int(image.shape[0]),
                width=int(image.shape[1]),
                thumbnail_png=png_base64(thumbnail(image)) if thumbnails else None,
            )
        )
    series = None
    if len(loaded.images) > 1:
        k = int(overall.argmax())
        series = schemas.SeriesResult(
            n_slices=len(loaded.images),
            aggregation="mean",
            probabilities=_probs(classes, overall),
            predicted=classes[k],
            confidence=round(float(overall[k]), 6),
        )
    k = int(overall.argmax())
    return {
        "filename": loaded.staged.filename,
        "kind": "series" if len(loaded.images) > 1 else "image",
        "model": schemas.ModelRef(name=served.name, backbone=served.backbone, version=served.version),
        "classes": list(classes),
        "probabilities": _probs(classes, overall),
        "predicted": classes[k],
        "confidence": round(float(overall[k]), 6),
        "slices": slices,
        "series": series,
        "skipped": loaded.staged.skipped,
        "timing": schemas.Timing(**timing),
    }


def _process(
    served: ServedModel,
    limits: UploadLimits,
    staged: StagedUpload,
    budget: Budget,
    *,
    heavy: bool,
    priority: LightFirst,
    **options: Any,
) -> dict[str, Any]:
    """:func:`_work` for one request: a light one marked in progress, a heavy one pausing for light ones at
    each budget check (for at most :data:`PAUSE_SHARE` of its budget in all)."""
    if not heavy:
        with priority.light():
            return _work(served, limits, staged, budget.check, heavy=False, **options)

    allowance = Allowance(priority, PAUSE_SHARE * budget.remaining())

    def check() -> None:
        budget.check()
        allowance.pause(budget.remaining())
        budget.check()

    return _work(served, limits, staged, check, heavy=True, **options)


def _work(
    served: ServedModel,
    limits: UploadLimits,
    staged: StagedUpload,
    check: Callable[[], None],
    *,
    heavy: bool,
    explain: bool,
    thumbnails: bool,
    max_cams: int,
    target: str | None,
    t0: float,
) -> dict[str, Any]:
    """Extract (a ZIP), decode, predict, (explain) a staged upload; ``check`` runs between steps."""
    if staged.kind == "zip":
        staged = extract_series(staged, limits, check=check)
    check()
    loaded = _read_upload(staged, served, check)
    t1 = time.perf_counter()
    probs, overall = served.predict(loaded.images, loaded.sources, urgent=not heavy, check=check)
    t2 = time.perf_counter()
    timing = {"read_ms": (t1 - t0) * 1e3, "inference_ms": (t2 - t1) * 1e3}
    if not explain:
        timing["total_ms"] = (time.perf_counter() - t0) * 1e3
        return _build_prediction(loaded, probs, overall, served, timing, thumbnails)
    order = _suspicion_order(probs, served.classes)[:max_cams]
    cls = target or served.classes[int(overall.argmax())]
    shown = [display_image(loaded.images[i]) for i in order]  # CAMs computed and drawn at display size
    maps = served.cams(shown, cls, urgent=not heavy, check=check)
    cams = []
    for i, image, cam in zip(order, shown, maps, strict=True):
        check()
        heat = colorize(cam)
        cams.append(
            schemas.CamResult(
                index=i,
                source=loaded.sources[i],
                target=cls,
                image_png=png_base64(to_uint8(image)),
                heatmap_png=png_base64(heat),
                overlay_png=png_base64(overlay(image, heat)),
            )
        )
    t3 = time.perf_counter()
    timing.update(explain_ms=(t3 - t2) * 1e3, total_ms=(t3 - t0) * 1e3)
    result = _build_prediction(loaded, probs, overall, served, timing, thumbnails)
    result.update(method="gradcam", cams=cams)
    return result


# --------------------------------------------------------------------------------------------- the app
def create_app(
    predictor: Predictor,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    worker_threads: int = 2,
    max_cams: int = MAX_CAMS,
    model_version: str | None = None,
    tmp_dir: str | Path | None = None,
    limits: UploadLimits | None = None,
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
    heavy_workers: int = 1,
) -> FastAPI:
    """The service around one loaded :class:`~covidct.inference.predictor.Predictor` (torch or ONNX).

    ``GET /model`` reports the predictor's :class:`~covidct.models.metadata.ModelMeta`; ``model_version``
    defaults to the checkpoint's creation time (:func:`load_model` gives the file's short SHA-256).
    Each request may take ``request_timeout_s``; heavy requests (ZIP series, large images) run
    ``heavy_workers`` at a time. Upload folders left in ``tmp_dir`` by a killed service are removed now.
    """
    if worker_threads < 1 or max_cams < 1 or heavy_workers < 1:
        raise UploadError(
            f"worker_threads, heavy_workers and max_cams must be >= 1, got {worker_threads}, "
            f"{heavy_workers}, {max_cams}"
        )
    if not request_timeout_s > 0:
        raise UploadError(f"request_timeout_s must be > 0, got {request_timeout_s}")
    limits = limits or UploadLimits(max_upload_bytes=max_upload_bytes)
    served = ServedModel(predictor, version=model_version)
    limiter = anyio.CapacityLimiter(worker_threads)
    heavy_limiter = anyio.CapacityLimiter(heavy_workers)
    priority = LightFirst()
    tmp_root = str(tmp_dir) if tmp_dir is not None else None
    cleanup_stale_uploads(tmp_root)
    app = FastAPI(
        title="covidct",
        version=__version__,
        description=(
            "COVID-19 / pneumonia / healthy classification of chest CT slices and series, with Grad-CAM."
        ),
        responses={
            400: {"model": schemas.ErrorResponse},
            408: {"model": schemas.ErrorResponse},
            413: {"model": schemas.ErrorResponse},
            415: {"model": schemas.ErrorResponse},
            422: {"model": schemas.ErrorResponse},
        },
    )
    app.state.served = served
    app.state.limits = limits
    app.state.priority = priority
    app.add_middleware(BodyLimit, max_bytes=limits.max_upload_bytes + MULTIPART_SLACK)

    @app.exception_handler(UploadError)
    async def _upload_error(request: Request, exc: UploadError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status_code)

    @app.exception_handler(CovidCTError)
    async def _user_error(request: Request, exc: CovidCTError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
        text = "; ".join(parts) or "invalid request"
        if any(err.get("type") == "missing" for err in exc.errors()):
            text = f"no file uploaded: send one multipart field named 'file' ({text})"
        return JSONResponse({"error": text}, status_code=400)

    async def _handle(request: Request, upload: UploadFile, **options: Any) -> dict[str, Any]:
        """Stage (light worker), then process in a light or heavy worker; watch for the client going away."""
        budget = Budget(request_timeout_s)
        t0 = time.perf_counter()
        result: dict[str, Any] | None = None
        error: Exception | None = None
        async with anyio.create_task_group() as watchers:
            watchers.start_soon(_watch_disconnect, request, budget)
            try:
                result = await _stage_and_process(budget, upload, t0, options)
            except Exception as exc:  # re-raised outside the task group (which would wrap it in a group)
                error = exc
            finally:
                watchers.cancel_scope.cancel()
        if error is not None:
            raise error
        assert result is not None
        return result

    async def _stage_and_process(
        budget: Budget, upload: UploadFile, t0: float, options: dict[str, Any]
    ) -> dict[str, Any]:
        # the budget also bounds the waits for a worker (a heavy request queued behind others): the deadline
        # cancels a wait; work already running in a thread stops at its next budget check
        staged: StagedUpload | None = None
        with anyio.move_on_after(budget.remaining()):
            staged = await anyio.to_thread.run_sync(
                lambda: stage_upload(
                    upload.file, upload.filename, limits, tmp_root=tmp_root, check=budget.check
                ),
                limiter=limiter,
            )
        if staged is None:
            raise budget.expired(waiting=True)
        try:
            heavy = staged.kind == "zip" or staged.pixels > LIGHT_PIXELS
            with anyio.move_on_after(budget.remaining()):
                return await anyio.to_thread.run_sync(
                    partial(
                        _process,
                        served,
                        limits,
                        staged,
                        budget,
                        heavy=heavy,
                        priority=priority,
                        t0=t0,
                        **options,
                    ),
                    limiter=heavy_limiter if heavy else limiter,
                )
            raise budget.expired(waiting=True)
        finally:
            await anyio.to_thread.run_sync(staged.cleanup)

    @app.post(
        "/predict", response_model=schemas.PredictResponse, summary="Classify one image or a DICOM series"
    )
    async def predict(
        request: Request,
        file: Annotated[UploadFile, File(description=UPLOAD_HELP)],
        thumbnails: bool = Query(False, description="include a small PNG of every slice"),
    ) -> dict[str, Any]:
        return await _handle(
            request, file, explain=False, thumbnails=thumbnails, max_cams=max_cams, target=None
        )

    @app.post(
        "/explain", response_model=schemas.ExplainResponse, summary="Classify and explain with Grad-CAM"
    )
    async def explain(
        request: Request,
        file: Annotated[UploadFile, File(description=UPLOAD_HELP)],
        thumbnails: bool = Query(False, description="include a small PNG of every slice"),
        max_slices: int = Query(max_cams, ge=1, le=max_cams, description="CAMs for at most this many slices"),
        target: str | None = Query(None, description="class to explain (default: the predicted class)"),
    ) -> dict[str, Any]:
        if not served.can_explain:
            raise UploadError("Grad-CAM needs a torch checkpoint (.pt); this server runs an ONNX model", 409)
        if target is not None and target not in served.classes:
            raise UploadError(f"unknown target class {target!r}; one of {', '.join(served.classes)}")
        return await _handle(
            request, file, explain=True, thumbnails=thumbnails, max_cams=max_slices, target=target
        )

    @app.get("/health", response_model=schemas.HealthResponse)
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": served.name, "version": served.version}

    @app.get("/model", response_model=schemas.ModelResponse)
    async def model_info() -> dict[str, Any]:
        info = served.meta
        return {
            "name": info.model_name,
            "backbone": served.backbone,
            "version": served.version,
            "runtime": served.runtime,
            "precision": served.precision,
            "classes": list(served.classes),
            "input_size": int(info.image_size),
            "window": {
                "name": info.window.get("name"),
                "width": float(info.window["width"]),
                "level": float(info.window["level"]),
            },
            "mean": list(info.mean),
            "std": list(info.std),
            "cam_layer": served.cam_layer,
            "explain": served.can_explain,
            "trained_with": info.covidct_version,
            "created": served.created,
            "server_version": __version__,
            "limits": {
                "max_upload_bytes": limits.max_upload_bytes,
                "max_zip_members": limits.max_zip_members,
                "max_zip_total_bytes": limits.max_zip_total_bytes,
                "max_pixels": limits.max_pixels,
                "max_request_pixels": limits.max_request_pixels,
                "request_timeout_s": request_timeout_s,
                "max_cams": max_cams,
            },
        }

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


async def _watch_disconnect(request: Request, budget: Budget) -> None:
    """Cancel the request's work when its client disconnects (checked every ``DISCONNECT_POLL_S``)."""
    while not budget.cancelled.is_set():
        await anyio.sleep(DISCONNECT_POLL_S)
        if await request.is_disconnected():
            budget.cancelled.set()


def serve(
    model_path: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_upload_mb: float = 50.0,
    worker_threads: int = 2,
    threads: int | None = None,
    backend: str | None = None,
    precision: str = "auto",
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
) -> None:
    """Load the model once and run the service with uvicorn until interrupted (``covidct serve``)."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"port must be in 0..65535, got {port}")
    if not max_upload_mb > 0:
        raise ConfigError(f"max upload size must be > 0 MB, got {max_upload_mb}")
    if worker_threads < 1:
        raise ConfigError(f"worker threads must be >= 1, got {worker_threads}")
    if not request_timeout_s > 0:
        raise ConfigError(f"request timeout must be > 0 s, got {request_timeout_s}")
    loaded = load_model(model_path, threads=threads, backend=backend, precision=precision)
    app = create_app(
        loaded.predictor,
        model_version=loaded.version,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        worker_threads=worker_threads,
        request_timeout_s=request_timeout_s,
    )
    if loaded.predictor.backend == "torch":
        preload_explain()
    uvicorn.run(app, host=host, port=port, log_level="info")
