"""Training throughput: covidct's training loop vs a plain timm + torch loop, same model, batch and size.

Both train the same architecture (fresh weights, Adam, cross-entropy) on the same in-memory images for the
same number of epochs after one warm-up epoch; ours goes through SliceCache -> SliceDataset -> DataLoader ->
train_one_epoch (augmentation off unless --augment, to compare like with like). Prints images/s and the ratio
ours / plain (goal >= 1.0).

    .venv/bin/python benchmarks/train_throughput.py --model resnet10t --image-size 64 --batch-size 32
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class _Sample:
    path: str
    label: str
    patient_id: str | None = None


def _plain(
    model_name: str, images: np.ndarray, labels: np.ndarray, size: int, batch: int, epochs: int
) -> float:
    """The baseline: timm.create_model, preloaded normalised tensors, a bare loop."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model(model_name, pretrained=False, num_classes=int(labels.max()) + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    from covidct.data.preprocess import Preprocess

    x_all = torch.from_numpy(Preprocess(image_size=size).batch(list(images)))
    y_all = torch.from_numpy(labels)
    seen, began = 0, 0.0
    for epoch in range(epochs + 1):
        if epoch == 1:
            began, seen = time.perf_counter(), 0
        model.train()
        order = torch.randperm(len(y_all))
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(x_all[idx]), y_all[idx])
            loss.backward()
            optimizer.step()
            seen += len(idx)
    return seen / (time.perf_counter() - began)


def _ours(
    model_name: str,
    images: np.ndarray,
    labels: np.ndarray,
    size: int,
    batch: int,
    epochs: int,
    augment: bool,
    workers: int,
) -> float:
    from covidct.data.dataset import SliceCache, SliceDataset
    from covidct.data.preprocess import Preprocess
    from covidct.models.factory import create_model
    from covidct.models.normalization import model_normalization
    from covidct.models.registry import get_spec
    from covidct.training.augment import build_augment
    from covidct.training.config import TrainConfig
    from covidct.training.fit import make_loader
    from covidct.training.loop import train_one_epoch

    classes = tuple(str(c) for c in range(int(labels.max()) + 1))
    samples = [_Sample(f"mem://{i}", classes[y]) for i, y in enumerate(labels)]
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=batch,
        image_size=size,
        pretrained=False,
        augment=augment,
        workers=workers,
        device="cpu",
    ).resolve(get_spec(model_name))
    torch.manual_seed(0)
    model = create_model(model_name, len(classes), pretrained=False)
    mean, std = model_normalization(model)
    cache = SliceCache([s.path for s in samples], size, loader=lambda p: images[int(p[6:])])
    dataset = SliceDataset(
        samples,
        classes,
        Preprocess(image_size=size, mean=mean, std=std),
        cache=cache,
        augment=build_augment() if augment else None,
    )
    loader = make_loader(dataset, cfg, train=True, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    device = torch.device("cpu")
    train_one_epoch(model, loader, optimizer, criterion, device)  # warm-up
    began = time.perf_counter()
    seen = sum(train_one_epoch(model, loader, optimizer, criterion, device).n for _ in range(epochs))
    return seen / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet10t")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument(
        "--augment", action="store_true", help="augment in our loop (the baseline never does)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    images = rng.random((args.images, args.image_size, args.image_size), dtype=np.float32)
    labels = rng.integers(0, 3, args.images).astype(np.int64)
    # interleave the two to spread out drifts in machine load
    plain_runs, ours_runs = [], []
    for _ in range(2):
        plain_runs.append(_plain(args.model, images, labels, args.image_size, args.batch_size, args.epochs))
        ours_runs.append(
            _ours(
                args.model,
                images,
                labels,
                args.image_size,
                args.batch_size,
                args.epochs,
                args.augment,
                args.workers,
            )
        )
    plain, ours = max(plain_runs), max(ours_runs)
    setting = (
        f"{args.model} {args.image_size}px batch {args.batch_size}, {args.images} images x {args.epochs} "
        f"epochs, {args.threads} threads, augment={args.augment}, workers={args.workers}"
    )
    print(f"train throughput ({setting})")
    print(f"  plain timm + torch loop : {plain:8.1f} images/s")
    print(f"  covidct training loop   : {ours:8.1f} images/s")
    print(f"  ratio ours / plain      : {ours / plain:8.3f} (goal >= 1.0)")


if __name__ == "__main__":
    main()
