"""The web service's JSON shapes (pydantic), so that ``/docs`` and ``/openapi.json`` describe them (issue #7).

Probabilities are keyed by class name in the checkpoint's class order. A single image is a "series" of one
slice: ``slices`` always lists the per-slice results, ``series`` is set for multi-slice uploads (the
aggregated prediction). Images travel as base64 PNG strings.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ErrorResponse(BaseModel):
    """Every 4xx answer: one human-readable line."""

    error: str = Field(examples=["scan.png: not a supported file: expected a PNG, JPEG, TIFF or DICOM image"])


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    model: str
    version: str


class WindowInfo(BaseModel):
    name: str | None = None
    width: float
    level: float


class LimitsInfo(BaseModel):
    max_upload_bytes: int
    max_zip_members: int
    max_zip_total_bytes: int
    max_pixels: int
    max_request_pixels: int = Field(description="decoded pixels of all slices of one request (frames too)")
    request_timeout_s: float = Field(description="time budget of one request (408 when it runs out)")
    max_cams: int


class ModelResponse(BaseModel):
    """What ``GET /model`` says about the loaded model."""

    name: str = Field(description="model (backbone) name as trained, e.g. EfficientNetB0")
    backbone: str = Field(description="timm architecture")
    version: str = Field(description="model version: short SHA-256 of the checkpoint/ONNX file when known")
    runtime: Literal["torch", "onnx", "openvino"]
    precision: str = Field(description="what the network computes in: fp32, bf16 (openvino), fp16 (CUDA)")
    classes: list[str]
    input_size: int
    window: WindowInfo
    mean: list[float]
    std: list[float]
    cam_layer: str
    explain: bool = Field(
        description="whether POST /explain is available (Grad-CAM needs a torch checkpoint)"
    )
    trained_with: str = Field(description="covidct version that wrote the checkpoint")
    created: str
    server_version: str
    limits: LimitsInfo


class ModelRef(BaseModel):
    name: str
    backbone: str
    version: str


class SliceResult(BaseModel):
    index: int
    source: str = Field(description="the slice's name: the upload's file name, or 'archive.zip:member.dcm'")
    probabilities: dict[str, float]
    predicted: str
    confidence: float
    height: int
    width: int
    thumbnail_png: str | None = Field(
        None, description="base64 PNG (longest side <= 128 px) when thumbnails=true"
    )


class SeriesResult(BaseModel):
    n_slices: int
    aggregation: str = Field(description="how slice probabilities become the series prediction")
    probabilities: dict[str, float]
    predicted: str
    confidence: float


class Timing(BaseModel):
    read_ms: float
    inference_ms: float
    explain_ms: float | None = None
    total_ms: float


class PredictResponse(BaseModel):
    filename: str
    kind: Literal["image", "series"]
    model: ModelRef
    classes: list[str]
    probabilities: dict[str, float] = Field(
        description="the image's, or the series' aggregated, probabilities"
    )
    predicted: str
    confidence: float
    slices: list[SliceResult]
    series: SeriesResult | None = None
    skipped: list[str] = Field(default_factory=list, description="ZIP members ignored (not DICOM)")
    timing: Timing


class CamResult(BaseModel):
    index: int = Field(description="index into ``slices``")
    source: str
    target: str = Field(description="the class the map explains")
    image_png: str = Field(
        description="base64 PNG of the slice as the model read it (grayscale), at display size: the slice's "
        "own, or shrunk so its longer side is 1024 px"
    )
    heatmap_png: str = Field(description="base64 RGBA PNG of the colour-mapped CAM, same size as image_png")
    overlay_png: str = Field(description="base64 PNG: heatmap blended over the slice (alpha 0.4)")


class ExplainResponse(PredictResponse):
    method: str
    cams: list[CamResult] = Field(description="per slice for small series, else the most suspicious slices")
