"""ONNX model metadata: what covidct writes into ``metadata_props`` on export and reads back for prediction.

Keys (strings; JSON where structured): ``covidct_meta`` (everything below in one JSON object), ``model_name``,
``timm_name``, ``exporter``, ``classes``, ``input_size``, ``mean``, ``std``, ``window``, ``covidct_version``,
``preprocess`` (lung crop / standardisation, see :meth:`covidct.data.preprocess.Preprocess.record`), and
``weights_sha256`` (:func:`onnx_weights_sha256` of the graph's initializers), checked by
:func:`verify_weights` when a predictor opens the file. No torch here.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import onnx
from onnx import numpy_helper

from covidct.errors import CheckpointError
from covidct.models.metadata import ModelMeta, window_record

META_KEY = "covidct_meta"
WEIGHTS_HASH_KEY = "weights_sha256"


def onnx_metadata(meta: ModelMeta, **extra: Any) -> dict[str, str]:
    """The ``metadata_props`` for a model described by ``meta`` (``extra``: e.g. ``exporter``)."""
    record = {
        "model_name": meta.model_name,
        "classes": list(meta.classes),
        "input_size": meta.image_size,
        "mean": list(meta.mean),
        "std": list(meta.std),
        "window": meta.window,
        "covidct_version": meta.covidct_version,
        "preprocess": meta.preprocess,
        "timm_name": meta.timm_name,
        **extra,
    }
    props = {k: v if isinstance(v, str) else json.dumps(v) for k, v in record.items()}
    props[META_KEY] = json.dumps(record)
    return props


def open_session(
    path: str | os.PathLike[str], options: Any = None, providers: list[str] | None = None
) -> Any:
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


def session_meta(session: Any, path: str | os.PathLike[str]) -> ModelMeta:
    """:class:`ModelMeta` from a loaded model's metadata."""
    return record_meta(session_metadata(session, path), path)


def record_meta(record: dict[str, Any], path: str | os.PathLike[str]) -> ModelMeta:
    """:class:`ModelMeta` from a covidct metadata record (no CAM layer or creation time: ONNX has none)."""
    try:
        return ModelMeta(
            model_name=str(record.get("model_name")),
            timm_name=str(record.get("timm_name") or ""),
            classes=tuple(record["classes"]),
            image_size=int(record["input_size"]),
            mean=tuple(float(v) for v in record["mean"]),
            std=tuple(float(v) for v in record["std"]),
            window=dict(record.get("window") or window_record()),
            covidct_version=str(record.get("covidct_version") or ""),
            preprocess=dict(record.get("preprocess") or {}),
            created="",
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: incomplete covidct metadata ({exc})") from None


def read_onnx_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The covidct record stored in an ONNX file."""
    return session_metadata(open_session(path), path)


def onnx_weights_sha256(proto: Any) -> str:
    """SHA-256 over an ONNX graph's initializers (sorted names, element type, dims and values)."""
    digest = hashlib.sha256()
    for init in sorted(proto.graph.initializer, key=lambda t: t.name):
        digest.update(f"{init.name}|{init.data_type}|{tuple(init.dims)}\n".encode())
        digest.update(numpy_helper.to_array(init).tobytes())
    return digest.hexdigest()


def verify_weights(path: str | os.PathLike[str], session: Any) -> None:
    """CheckpointError when the weights no longer match the hash written at export (files from before the hash
    existed have none and are not checked)."""
    stored = session.get_modelmeta().custom_metadata_map.get(WEIGHTS_HASH_KEY)
    if not stored:
        return
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError and friends on damaged files
        raise CheckpointError(f"{path}: corrupt ONNX model ({type(exc).__name__})") from None
    _check_hash(path, stored, proto)


def _check_hash(path: str | os.PathLike[str], stored: str | None, proto: Any) -> None:
    if not stored:
        return
    actual = onnx_weights_sha256(proto)
    if actual != stored:
        raise CheckpointError(
            f"{path}: model corrupted: weights hash mismatch (stored sha256 {stored[:12]}..., weights give "
            f"{actual[:12]}...); the file changed after export: export it again"
        )


def read_metadata_props(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The covidct record of an ONNX file read with the ``onnx`` package (no onnxruntime session: for the
    OpenVINO backend, which reads the graph itself)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: ONNX model not found")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise CheckpointError(f"{path}: corrupt or not an ONNX model ({type(exc).__name__})") from None
    props = {p.key: p.value for p in proto.metadata_props}
    _check_hash(path, props.get(WEIGHTS_HASH_KEY), proto)
    if META_KEY not in props:
        raise CheckpointError(f"{path}: ONNX model was not exported by covidct (no {META_KEY} metadata)")
    try:
        return json.loads(props[META_KEY])
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: unreadable {META_KEY} metadata") from None
