"""The web service: ``create_app(predictor) -> FastAPI`` (issue #7).

Routes: ``POST /predict`` and ``POST /explain`` (multipart field ``file``: one PNG/JPEG/TIFF/DICOM image or a ZIP
of one DICOM series), ``GET /health``, ``GET /model``, ``GET /`` (the single page, from ``static/``), and FastAPI's
``/docs`` + ``/openapi.json``.

The model is loaded once and shared by all requests. Decoding, inference and Grad-CAM run in worker threads (never
on the event loop), at most ``worker_threads`` at a time; a torch model is additionally used by one thread at a
time (a lock: Grad-CAM hooks and module modes are per-model state), an onnxruntime session is thread-safe.

Every user error is a 4xx JSON ``{"error": "..."}``; uploads are staged by :mod:`covidct.serve.uploads` in a
temporary folder removed at the end of the request.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.exceptions import HTTPException

from covidct import __version__
from covidct.errors import CheckpointError, CovidCTError
from covidct.serve import schemas
from covidct.serve.uploads import (
    MULTIPART_SLACK, BodyLimit, StagedUpload, UploadError, UploadLimits, staged_upload,
)
from covidct.utils import sha256_file

if TYPE_CHECKING:
    from covidct.inference.predictor import Predictor
    from covidct.models.checkpoint import CheckpointMeta

STATIC_DIR = Path(__file__).with_name("static")
DEFAULT_MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_CAMS = 8
SERIES_BATCH = 8  # slices per forward pass for a series
THUMBNAIL_SIZE = 128
OVERLAY_ALPHA = 0.4


@dataclass(frozen=True)
class LoadedModel:
    """A predictor plus what the service reports about it."""

    predictor: Predictor
    meta: CheckpointMeta | None  # None for ONNX models (their metadata lives in the session)
    version: str  # short SHA-256 of the model file


def load_predictor(
    path: str | os.PathLike[str], *, threads: int | None = None, backend: str | None = None,
    precision: str = "auto",
) -> LoadedModel:
    """A ``.pt`` checkpoint or an ``.onnx`` model as a :class:`LoadedModel`; the backend by suffix unless
    given (see :func:`covidct.inference.backends.load_predictor`)."""
    from covidct.inference.backends import check_backend
    from covidct.inference.backends import load_predictor as load_backend

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: model file not found")
    check_backend(backend, precision)
    version = sha256_file(path)[:12]
    if path.suffix.lower() == ".onnx" or backend not in (None, "torch"):
        predictor = load_backend(path, backend=backend, precision=precision, threads=threads)
        return LoadedModel(predictor, None, version)
    from covidct.inference.torch_backend import TorchPredictor
    from covidct.inference.predictor import ModelInfo
    from covidct.models.checkpoint import load_checkpoint

    loaded = load_checkpoint(path)  # once: TorchPredictor.load would drop the meta (timm name, CAM layer)
    amp = False if precision == "fp32" else None
    predictor = TorchPredictor(loaded.model, ModelInfo.from_meta(loaded.meta), threads=threads, amp=amp)
    return LoadedModel(predictor, loaded.meta, version)


class ServedModel:
    """The shared model: thread-safe prediction and Grad-CAM, plus what ``GET /model`` reports."""

    def __init__(self, predictor: Predictor, *, meta: CheckpointMeta | None = None, version: str | None = None):
        self.predictor = predictor
        self.info = predictor.info
        self.classes = tuple(predictor.classes)
        self.runtime = predictor.backend
        self.torch_model = getattr(predictor, "model", None) if self.runtime == "torch" else None
        record: dict[str, Any] = meta.to_dict() if meta is not None else {}
        if not record:
            record = predictor.model_record()  # ONNX metadata_props (onnx, openvino)
        self.precision = predictor.precision
        self.backbone = str(record.get("timm_name") or "")
        self.cam_layer = str(record.get("cam_layer") or "")
        if self.torch_model is not None:  # the default CAM layer at the served input size (issue 14)
            from covidct.explain.layers import choose_cam_layer

            size = int(record.get("image_size") or predictor.info.image_size)
            self.cam_layer = choose_cam_layer(self.torch_model, size, self.cam_layer or None).layer
        self.created = str(record.get("created") or "")
        self.version = version or self.created or "unknown"
        # one torch forward/CAM at a time: hooks and module modes are per-model state; ORT sessions are thread-safe
        self._lock: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if self.runtime == "torch" else contextlib.nullcontext()
        )

    @property
    def name(self) -> str:
        return self.info.model_name

    @property
    def can_explain(self) -> bool:
        return self.torch_model is not None

    def predict(self, images: Sequence[np.ndarray], sources: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per-slice ``(N, C)`` probabilities and the series' aggregated ``(C,)`` (the predictor's group mean)."""
        slices = [(src, image, "upload") for src, image in zip(sources, images)]
        with self._lock:
            result = self.predictor.predict_slices(slices, batch_size=SERIES_BATCH)
        group = result.groups.iloc[0]
        return result.probabilities, np.asarray([group[f"prob_{c}"] for c in self.classes], dtype=np.float64)

    def cams(self, images: Sequence[np.ndarray], target: str) -> list[np.ndarray]:
        """One ``(H, W)`` map in [0, 1] per slice, for class ``target``."""
        from covidct.explain.cam import compute_cams

        with self._lock:
            batch = compute_cams(
                self.torch_model, self.cam_layer or None, list(images), target, classes=self.classes,
                preprocess=self.predictor.preprocess, batch_size=4,
            )
        return [batch.maps[i][0] for i in range(len(batch))]


# --------------------------------------------------------------------------------------------- encoding
def png_base64(array: np.ndarray) -> str:
    """A uint8 (H, W), (H, W, 3) or (H, W, 4) array as a base64 PNG string."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", optimize=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def thumbnail(image: np.ndarray, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    pil = Image.fromarray(to_uint8(image))
    pil.thumbnail((size, size), Image.BILINEAR)
    return np.asarray(pil)


def colorize(cam: np.ndarray) -> np.ndarray:
    """A CAM in [0, 1] -> RGBA uint8 with the jet colormap (as the paper's figures and ``explain/render``)."""
    from matplotlib import colormaps

    return (colormaps["jet"](np.clip(cam, 0.0, 1.0)) * 255.0 + 0.5).astype(np.uint8)


def overlay(image: np.ndarray, heat_rgba: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    gray = np.repeat(np.clip(image, 0.0, 1.0)[..., None], 3, axis=2)
    mixed = (1.0 - alpha) * gray + alpha * heat_rgba[..., :3].astype(np.float32) / 255.0
    return to_uint8(mixed)


# --------------------------------------------------------------------------------------------- requests
class _Loaded:
    """Decoded slices of one upload."""

    def __init__(self, staged: StagedUpload, images: list[np.ndarray], sources: list[str]) -> None:
        self.staged, self.images, self.sources = staged, images, sources


def _read_upload(staged: StagedUpload, served: ServedModel) -> _Loaded:
    from covidct.data.readers import load_series, load_slice
    from covidct.errors import DataError

    try:
        if staged.kind in ("png", "jpeg"):
            images = [load_slice(staged.path)]
            sources = [staged.filename]
        else:  # DICOM (maybe multi-frame), TIFF (maybe a stack) and DICOM series folders
            series = load_series(staged.path, window=served.info.window_spec)
            images = list(series.images)
            sources = [staged.display(s) for s in series.sources]
    except DataError as exc:
        raise UploadError(staged.display(str(exc)), 422) from None
    if not images:
        raise UploadError(f"{staged.filename}: no slices found", 422)
    return _Loaded(staged, images, sources)


def _probs(classes: Sequence[str], row: np.ndarray) -> dict[str, float]:
    return {c: round(float(p), 6) for c, p in zip(classes, row)}


def _suspicion_order(probs: np.ndarray, classes: Sequence[str]) -> list[int]:
    """Slices most likely abnormal first: by 1 - p(Healthy) when a healthy class exists, else by confidence."""
    healthy = [i for i, c in enumerate(classes) if c.lower() in ("healthy", "normal", "non-covid")]
    score = 1.0 - probs[:, healthy[0]] if healthy else probs.max(axis=1)
    return [int(i) for i in np.argsort(-score, kind="stable")]


def _build_prediction(
    loaded: _Loaded, probs: np.ndarray, overall: np.ndarray, served: ServedModel, timing: dict[str, float],
    thumbnails: bool,
) -> dict[str, Any]:
    classes = served.classes
    slices = []
    for i, (image, source, row) in enumerate(zip(loaded.images, loaded.sources, probs)):
        k = int(row.argmax())
        slices.append(schemas.SliceResult(
            index=i, source=source, probabilities=_probs(classes, row), predicted=classes[k],
            confidence=round(float(row[k]), 6), height=int(image.shape[0]), width=int(image.shape[1]),
            thumbnail_png=png_base64(thumbnail(image)) if thumbnails else None,
        ))
    series = None
    if len(loaded.images) > 1:
        k = int(overall.argmax())
        series = schemas.SeriesResult(
            n_slices=len(loaded.images), aggregation="mean", probabilities=_probs(classes, overall),
            predicted=classes[k], confidence=round(float(overall[k]), 6),
        )
    k = int(overall.argmax())
    return {
        "filename": loaded.staged.filename,
        "kind": "series" if len(loaded.images) > 1 else "image",
        "model": schemas.ModelRef(name=served.name, backbone=served.backbone, version=served.version),
        "classes": list(classes), "probabilities": _probs(classes, overall), "predicted": classes[k],
        "confidence": round(float(overall[k]), 6), "slices": slices, "series": series,
        "skipped": loaded.staged.skipped, "timing": schemas.Timing(**timing),
    }


def _run(
    served: ServedModel, limits: UploadLimits, upload: UploadFile, tmp_root: str | None, *,
    explain: bool, thumbnails: bool, max_cams: int, target: str | None,
) -> dict[str, Any]:
    """The whole request in a worker thread: stage, decode, predict, (explain), always clean up."""
    t0 = time.perf_counter()
    with staged_upload(upload.file, upload.filename, limits, tmp_root=tmp_root) as staged:
        loaded = _read_upload(staged, served)
    t1 = time.perf_counter()
    probs, overall = served.predict(loaded.images, loaded.sources)
    t2 = time.perf_counter()
    timing = {"read_ms": (t1 - t0) * 1e3, "inference_ms": (t2 - t1) * 1e3}
    if not explain:
        timing["total_ms"] = (time.perf_counter() - t0) * 1e3
        return _build_prediction(loaded, probs, overall, served, timing, thumbnails)
    order = _suspicion_order(probs, served.classes)[:max_cams]
    cls = target or served.classes[int(overall.argmax())]
    maps = served.cams([loaded.images[i] for i in order], cls)
    cams = []
    for i, cam in zip(order, maps):
        heat = colorize(cam)
        cams.append(schemas.CamResult(
            index=i, source=loaded.sources[i], target=cls, image_png=png_base64(to_uint8(loaded.images[i])),
            heatmap_png=png_base64(heat), overlay_png=png_base64(overlay(loaded.images[i], heat)),
        ))
    t3 = time.perf_counter()
    timing.update(explain_ms=(t3 - t2) * 1e3, total_ms=(t3 - t0) * 1e3)
    result = _build_prediction(loaded, probs, overall, served, timing, thumbnails)
    result.update(method="gradcam", cams=cams)
    return result


# --------------------------------------------------------------------------------------------- the app
def create_app(
    predictor: Predictor,
    *,
    meta: CheckpointMeta | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    worker_threads: int = 2,
    max_cams: int = MAX_CAMS,
    model_version: str | None = None,
    tmp_dir: str | Path | None = None,
    limits: UploadLimits | None = None,
) -> FastAPI:
    """The service around one loaded :class:`~covidct.inference.predictor.Predictor` (torch or ONNX).

    ``meta`` (the checkpoint's) adds the backbone and CAM layer to ``GET /model``; ``model_version`` defaults to
    the checkpoint's creation time (:func:`load_predictor` gives the file's short SHA-256).
    """
    if worker_threads < 1 or max_cams < 1:
        raise UploadError(f"worker_threads and max_cams must be >= 1, got {worker_threads}, {max_cams}")
    limits = limits or UploadLimits(max_upload_bytes=max_upload_bytes)
    served = ServedModel(predictor, meta=meta, version=model_version)
    limiter = anyio.CapacityLimiter(worker_threads)
    tmp_root = str(tmp_dir) if tmp_dir is not None else None
    app = FastAPI(
        title="covidct", version=__version__,
        description="COVID-19 / pneumonia / healthy classification of chest CT slices and series, with Grad-CAM.",
        responses={400: {"model": schemas.ErrorResponse}, 413: {"model": schemas.ErrorResponse},
                   415: {"model": schemas.ErrorResponse}, 422: {"model": schemas.ErrorResponse}},
    )
    app.state.served = served
    app.state.limits = limits
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

    async def _handle(upload: UploadFile, **options: Any) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(
            lambda: _run(served, limits, upload, tmp_root, **options), limiter=limiter
        )

    @app.post("/predict", response_model=schemas.PredictResponse, summary="Classify one image or a DICOM series")
    async def predict(
        file: UploadFile = File(..., description="PNG/JPEG/TIFF/DICOM image, or a ZIP of one DICOM series"),
        thumbnails: bool = Query(False, description="include a small PNG of every slice"),
    ) -> dict[str, Any]:
        return await _handle(file, explain=False, thumbnails=thumbnails, max_cams=max_cams, target=None)

    @app.post("/explain", response_model=schemas.ExplainResponse, summary="Classify and explain with Grad-CAM")
    async def explain(
        file: UploadFile = File(..., description="PNG/JPEG/TIFF/DICOM image, or a ZIP of one DICOM series"),
        thumbnails: bool = Query(False, description="include a small PNG of every slice"),
        max_slices: int = Query(max_cams, ge=1, le=max_cams, description="CAMs for at most this many slices"),
        target: str | None = Query(None, description="class to explain (default: the predicted class)"),
    ) -> dict[str, Any]:
        if not served.can_explain:
            raise UploadError("Grad-CAM needs a torch checkpoint (.pt); this server runs an ONNX model", 409)
        if target is not None and target not in served.classes:
            raise UploadError(f"unknown target class {target!r}; one of {', '.join(served.classes)}")
        return await _handle(file, explain=True, thumbnails=thumbnails, max_cams=max_slices, target=target)

    @app.get("/health", response_model=schemas.HealthResponse)
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": served.name, "version": served.version}

    @app.get("/model", response_model=schemas.ModelInfo)
    async def model_info() -> dict[str, Any]:
        info = served.info
        return {
            "name": info.model_name, "backbone": served.backbone, "version": served.version,
            "runtime": served.runtime, "precision": served.precision,
            "classes": list(served.classes), "input_size": int(info.image_size),
            "window": {"name": info.window.get("name"), "width": float(info.window["width"]),
                       "level": float(info.window["level"])},
            "mean": list(info.mean), "std": list(info.std), "cam_layer": served.cam_layer,
            "explain": served.can_explain, "trained_with": info.covidct_version, "created": served.created,
            "server_version": __version__,
            "limits": {"max_upload_bytes": limits.max_upload_bytes, "max_zip_members": limits.max_zip_members,
                       "max_zip_total_bytes": limits.max_zip_total_bytes, "max_pixels": limits.max_pixels,
                       "max_cams": max_cams},
        }

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


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
) -> None:
    """Load the model once and run the service with uvicorn until interrupted (``covidct serve``)."""
    from covidct.errors import ConfigError

    if not 0 <= port <= 65535:
        raise ConfigError(f"port must be in 0..65535, got {port}")
    if not max_upload_mb > 0:
        raise ConfigError(f"max upload size must be > 0 MB, got {max_upload_mb}")
    if worker_threads < 1:
        raise ConfigError(f"worker threads must be >= 1, got {worker_threads}")
    loaded = load_predictor(model_path, threads=threads, backend=backend, precision=precision)
    app = create_app(
        loaded.predictor, meta=loaded.meta, model_version=loaded.version,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024), worker_threads=worker_threads,
    )
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="info")
