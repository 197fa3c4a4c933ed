"""The model hub, seen from a machine that may be offline: one quick reachability probe, cache-only access
when it fails, and whether a timm pretrained tag is already in the local cache (no network)."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import timm
import torch.hub
from huggingface_hub import constants, try_to_load_from_cache


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the model hub's host accepts a TCP connection (one quick probe, no retries)."""
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def hub_offline_if_unreachable() -> Iterator[None]:
    """Cache-only hub access when the hub cannot be reached: a missing download then fails at once instead of
    retrying for about a minute; weights already in the local hub cache still load."""
    previous = constants.HF_HUB_OFFLINE
    if not previous and not hub_reachable():
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


def pretrained_cfg(timm_name: str) -> Any:
    """timm's pretrained config of ``arch[.tag]`` (``None`` when timm knows no pretrained weights for it)."""
    try:
        return timm.get_pretrained_cfg(timm_name, allow_unregistered=False)
    except (RuntimeError, ValueError, TypeError):
        return None


def hub_status(timm_name: str) -> str:
    """``"cached"`` (weights in the local hub/torch cache), ``"hub"`` (timm names a download) or ``"none"``.

    Looks at the disk only: nothing is downloaded and the network is not probed.
    """
    cfg = pretrained_cfg(timm_name)
    if cfg is None:
        return "none"
    hub_id = getattr(cfg, "hf_hub_id", None)
    url = getattr(cfg, "url", None)
    if hub_id:
        repo = hub_id.split("@", 1)[0]
        for filename in (getattr(cfg, "hf_hub_filename", None), "model.safetensors", "pytorch_model.bin"):
            if filename and isinstance(try_to_load_from_cache(repo, filename), str):
                return "cached"
    if url:
        if (Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)).is_file():
            return "cached"
    return "hub" if hub_id or url else "none"
