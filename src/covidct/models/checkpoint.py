"""Self-describing checkpoints: model weights plus everything needed to use them without the training config.

A checkpoint is a ``torch.save`` dict of plain types (loadable with ``weights_only=True``)::

    {"format": "covidct-checkpoint", "format_version": 1, "meta": {...ModelMeta...},
     "state_dict": {...}, "weights_sha256": "...", "extra": {...}}

``extra`` holds optional training state (optimizer, epoch, history) for ``--resume``. ``weights_sha256``
(:func:`weights_sha256`) is checked on every load: bytes flipped in a tensor still unpickle fine and give NaN
probabilities, so a mismatch is a :class:`CheckpointError`. Checkpoints written before the hash existed load
without the check.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from covidct import __version__
from covidct.errors import CheckpointError
from covidct.models.factory import create_model
from covidct.models.metadata import FORMAT_VERSION, ModelMeta
from covidct.utils import atomic_path

FORMAT = "covidct-checkpoint"
WEIGHTS_HASH_KEY = "weights_sha256"


#: The name checkpoint code has always used for :class:`~covidct.models.metadata.ModelMeta` (the same class).
CheckpointMeta = ModelMeta


@dataclass(frozen=True)
class LoadedCheckpoint:
    model: nn.Module
    meta: ModelMeta
    extra: dict[str, Any]


def weights_sha256(state_dict: dict[str, Any]) -> str:
    """SHA-256 over the tensors of a state dict (sorted names, dtype, shape and raw bytes of each)."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        value = state_dict[key]
        if not isinstance(value, torch.Tensor):
            digest.update(f"{key}={value!r}\n".encode())
            continue
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, meta: ModelMeta, **extra: Any) -> Path:
    """Write atomically (temp file + ``os.replace``): a crash never leaves a half-written checkpoint."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "meta": meta.to_dict(),
        "state_dict": state,
        WEIGHTS_HASH_KEY: weights_sha256(state),
        "extra": extra,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_checkpoint(path: str | os.PathLike[str], *, map_location: str = "cpu") -> dict[str, Any]:
    """The raw payload, validated; clear :class:`CheckpointError` for missing, corrupt or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (
        RuntimeError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        EOFError,
        ValueError,
        OSError,
        struct.error,
    ) as exc:
        text = str(exc)
        if "Weights only load failed" in text and "global" in text.lower():
            raise CheckpointError(
                f"{path}: refused: not a safe torch checkpoint (a pickle holding code or objects that a "
                "weights-only load does not run); covidct only loads the checkpoints it writes"
            ) from None
        reason = text.splitlines()[0][:200] if text else type(exc).__name__
        if "Weights only load failed" in reason or isinstance(exc, pickle.UnpicklingError):
            reason = "not a torch checkpoint file, or truncated"
        raise CheckpointError(f"{path}: corrupt or not a covidct checkpoint ({reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a covidct checkpoint (a plain state dict? use --weights for those)"
        )
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {version} is not supported by covidct {__version__} "
            f"(expects format {FORMAT_VERSION})"
        )
    stored = payload.get(WEIGHTS_HASH_KEY)
    if stored is not None:
        state = payload.get("state_dict")
        actual = weights_sha256(state) if isinstance(state, dict) else ""
        if actual != stored:
            raise CheckpointError(
                f"{path}: checkpoint corrupted: weights hash mismatch (stored sha256 {str(stored)[:12]}..., "
                f"weights give {actual[:12]}...); the file changed after it was written: restore or retrain"
            )
    return payload


def load_checkpoint(path: str | os.PathLike[str], *, map_location: str = "cpu") -> LoadedCheckpoint:
    """Rebuild the model (no pretrained download) and load its weights."""
    payload = read_checkpoint(path, map_location=map_location)
    try:
        meta = ModelMeta.from_dict(payload["meta"])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: checkpoint metadata is incomplete ({exc})") from None
    model = create_model(meta.timm_name, len(meta.classes), pretrained=False, dropout=meta.dropout)
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{path}: weights do not fit {meta.timm_name} ({str(exc)[:200]})") from None
    model.eval()
    return LoadedCheckpoint(model=model, meta=meta, extra=payload.get("extra") or {})
