"""One epoch of training, one pass of evaluation, and batched prediction.

Progress is reported to an optional object with rich's ``Progress`` interface (``add_task``, ``update``,
``remove_task``): the library never imports rich or prints; the CLI passes a ``rich.progress.Progress``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from covidct.errors import CovidCTError


class NonFiniteError(CovidCTError):
    """A NaN/Inf loss or output in training or evaluation: stop, naming the batch's files, never save it."""


def _batch_files(loader: Iterable[Any], batch: Any, rows: torch.Tensor | None = None, limit: int = 8) -> str:
    """The files of ``batch`` (``rows`` of it first), when the dataset returns indices (``with_index``)."""
    samples = getattr(getattr(loader, "dataset", None), "samples", None)
    if len(batch) < 3 or samples is None:
        return "files unknown (the dataset does not return indices)"
    index = [int(i) for i in batch[2]]
    picked = [index[int(r)] for r in rows] if rows is not None and len(rows) else index
    names = [str(samples[i].path) for i in picked]
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _non_finite_rows(*tensors: torch.Tensor) -> torch.Tensor:
    """Batch rows where any of ``tensors`` holds a NaN or Inf."""
    bad = torch.zeros(tensors[0].shape[0], dtype=torch.bool)
    for t in tensors:
        bad |= ~torch.isfinite(t.detach().float().reshape(t.shape[0], -1)).all(dim=1).cpu()
    return torch.nonzero(bad).flatten()


class ProgressLike(Protocol):
    """The subset of ``rich.progress.Progress`` the library uses."""

    def add_task(self, description: str, *, total: float | None = ..., **fields: Any) -> Any: ...

    def update(self, task_id: Any, **kwargs: Any) -> None: ...

    def remove_task(self, task_id: Any) -> None: ...


@contextlib.contextmanager
def progress_task(progress: ProgressLike | None, description: str, total: int, **fields: Any):
    """A task on ``progress`` for the duration of the block (yields an ``update(**kwargs)`` callable)."""
    if progress is None:
        yield lambda **kwargs: None
        return
    task = progress.add_task(description, total=total, **fields)
    try:
        yield lambda **kwargs: progress.update(task, **kwargs)
    finally:
        progress.remove_task(task)


@dataclass(frozen=True)
class EpochStats:
    loss: float
    accuracy: float
    n: int


def _to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager[Any]:
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, loader: Iterable[Any], device: torch.device, *, channels_last: bool = False
) -> None:
    """Re-estimate BatchNorm running statistics as plain averages over ``loader`` ("precise BN").

    The momentum-lagged running statistics trail the weights; on small datasets trained at a high learning
    rate the eval-mode network then swings between epochs (validation accuracy 0.3 -> 0.9 -> 0.4 on the
    phantoms).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    was_training = model.training
    model.train()
    try:
        for batch in loader:
            if batch is not None:
                model(_to_device(batch[0], device, channels_last))
    finally:
        for bn, momentum in zip(norms, momenta, strict=True):
            bn.momentum = momentum
        model.train(was_training)


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[Any],
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    device: torch.device,
    *,
    amp: bool = False,
    channels_last: bool = False,
    scaler: torch.amp.GradScaler | None = None,
    progress: ProgressLike | None = None,
    description: str = "train",
    bn_eval: bool = False,
) -> EpochStats:
    """Train for one pass over ``loader`` (batches of ``(x, y)``; ``None`` batches are skipped).

    ``bn_eval`` keeps BatchNorm layers in eval mode (running statistics neither taken from the batch nor
    updated), for a frozen backbone.
    """
    model.train()
    if bn_eval:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
    total_loss = torch.zeros((), dtype=torch.float64)
    correct = 0
    seen = 0
    n_batches = len(loader) if hasattr(loader, "__len__") else 0  # type: ignore[arg-type]
    with progress_task(progress, description, n_batches, loss="-", acc="-") as update:
        for step, batch in enumerate(loader, start=1):
            if batch is None:
                update(advance=1)
                continue
            x, y = batch[0], batch[1]
            x = _to_device(x, device, channels_last)
            y = y.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with _autocast(device, amp):
                logits = model(x)
                loss = criterion(logits, y)
            if not bool(torch.isfinite(loss.detach())):
                rows = _non_finite_rows(x, logits)
                raise NonFiniteError(
                    f"training stopped: the loss is {float(loss.detach()):g} in {description}, batch {step}; "
                    f"{'non-finite inputs/outputs' if len(rows) else 'files in the batch'}: "
                    f"{_batch_files(loader, batch, rows)}. Check these files for extreme values, or lower "
                    "--lr; nothing of this epoch was saved"
                )
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            n = y.shape[0]
            total_loss += loss.detach().double().cpu() * n
            correct += int((logits.detach().argmax(1) == y).sum())
            seen += n
            update(advance=1, loss=f"{float(total_loss) / seen:.4f}", acc=f"{correct / seen:.3f}")
    if seen == 0:
        return EpochStats(float("nan"), float("nan"), 0)
    return EpochStats(float(total_loss) / seen, correct / seen, seen)


@torch.no_grad()
def predict_proba(
    model: nn.Module,
    loader: Iterable[Any],
    device: torch.device,
    *,
    amp: bool = False,
    channels_last: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities ``(N, C)`` and the labels ``(N,)`` of every (readable) item in ``loader``."""
    model.eval()
    probs: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for batch in loader:
        if batch is None:
            continue
        x, y = batch[0], batch[1]
        with _autocast(device, amp):
            logits = model(_to_device(x, device, channels_last))
        p = torch.softmax(logits.float(), dim=1)
        rows = _non_finite_rows(p)
        if len(rows):
            raise NonFiniteError(
                f"the model gave non-finite probabilities (NaN/Inf) for {_batch_files(loader, batch, rows)}; "
                "no prediction is written (diverged weights? lower --lr)"
            )
        probs.append(p.cpu().numpy())
        labels.append(np.asarray(y))
    if not probs:
        return np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=np.int64)
    return np.concatenate(probs).astype(np.float64), np.concatenate(labels)


def evaluate(
    model: nn.Module,
    loader: Iterable[Any],
    criterion: nn.Module,
    device: torch.device,
    *,
    amp: bool = False,
    channels_last: bool = False,
) -> EpochStats:
    """Loss (with ``criterion``, i.e. label-smoothed) and accuracy on ``loader``."""
    probs, labels = predict_proba(model, loader, device, amp=amp, channels_last=channels_last)
    if len(labels) == 0:
        return EpochStats(float("nan"), float("nan"), 0)
    logp = torch.log(torch.from_numpy(probs).clamp_min(1e-12))
    target = torch.from_numpy(labels).long()
    smoothing = float(
        getattr(criterion, "label_smoothing", 0.0)
    )  # same smoothing as training, no class weights
    loss = float(nn.functional.cross_entropy(logp, target, label_smoothing=smoothing))
    accuracy = float((probs.argmax(1) == labels).mean())
    return EpochStats(loss, accuracy, len(labels))
