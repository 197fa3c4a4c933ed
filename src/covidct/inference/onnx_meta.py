"""ONNX model metadata: what covidct writes into ``metadata_props`` on export and reads back for prediction.

Keys (strings; JSON where structured): ``covidct_meta`` (everything below in one JSON object), ``model_name``,
``timm_name``, ``classes``, ``input_size``, ``mean``, ``std``, ``window``, ``covidct_version``, ``preprocess``
(lung crop / standardisation, see :meth:`covidct.data.preprocess.Preprocess.record`). No torch here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from covidct.errors import CheckpointError
from covidct.inference.predictor import ModelInfo

META_KEY = "covidct_meta"


def onnx_metadata(info: ModelInfo, **extra: Any) -> dict[str, str]:
    """The ``metadata_props`` for a model described by ``info``."""
    record = {
        "model_name": info.model_name, "classes": list(info.classes), "input_size": info.image_size,
        "mean": list(info.mean), "std": list(info.std), "window": info.window,
        "covidct_version": info.covidct_version, "preprocess": info.preprocess, **extra,
    }
    props = {k: v if isinstance(v, str) else json.dumps(v) for k, v in record.items()}
    props[META_KEY] = json.dumps(record)
    return props


def open_session(path: str | os.PathLike[str], options: Any = None, providers: list[str] | None = None) -> Any:
    """An onnxruntime session; missing or corrupt files raise :class:`CheckpointError`."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: ONNX model not found")
    if options is None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: corrupt or not an ONNX model ({reason})") from None


def session_metadata(session: Any, path: str | os.PathLike[str]) -> dict[str, Any]:
    """The covidct record stored in a loaded model's ``metadata_props``."""
    props = session.get_modelmeta().custom_metadata_map
    if META_KEY not in props:
        raise CheckpointError(f"{path}: ONNX model was not exported by covidct (no {META_KEY} metadata)")
    try:
        return json.loads(props[META_KEY])
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: unreadable {META_KEY} metadata") from None


def session_info(session: Any, path: str | os.PathLike[str]) -> ModelInfo:
    """:class:`ModelInfo` from a loaded model's metadata."""
    return record_info(session_metadata(session, path), path)


def record_info(record: dict[str, Any], path: str | os.PathLike[str]) -> ModelInfo:
    """:class:`ModelInfo` from a covidct metadata record."""
    try:
        return ModelInfo.from_meta({**record, "image_size": record["input_size"]})
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: incomplete covidct metadata ({exc})") from None


def read_onnx_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The covidct record stored in an ONNX file."""
    return session_metadata(open_session(path), path)


def read_metadata_props(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The covidct record of an ONNX file read with the ``onnx`` package (no onnxruntime session: for the
    OpenVINO backend, which reads the graph itself)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: ONNX model not found")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise CheckpointError(f"{path}: corrupt or not an ONNX model ({type(exc).__name__})") from None
    props = {p.key: p.value for p in proto.metadata_props}
    if META_KEY not in props:
        raise CheckpointError(f"{path}: ONNX model was not exported by covidct (no {META_KEY} metadata)")
    try:
        return json.loads(props[META_KEY])
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: unreadable {META_KEY} metadata") from None
