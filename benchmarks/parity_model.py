"""Train the small model the bf16 parity goal is measured on: one held-out fold of the SARS-CoV-2 CT set.

    PYTHONPATH=src .venv/bin/python benchmarks/parity_model.py [--model efficientnet_b0] [--image-size 128]
        [--epochs 2] [--pretrained] [--out benchmarks/results/parity_model]

Trains fold r0_f0 of a 5-fold slice-level plan (the set has no patient ids, so the split is slice-level
and the accuracy optimistic; parity does not depend on that) from scratch, or with ``--pretrained`` from
the ImageNet weights the weight sources find (``--model EfficientNetLite0 --pretrained`` uses the installed
weight package), and prints its files:
``RUN/folds/r0_f0/best.pt`` (the model) and ``RUN/folds/r0_f0/predictions.csv`` (its held-out slices with
labels), which ``covidct bench --parity`` takes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from covidct.training.config import CVConfig, TrainConfig
from covidct.training.cv import plan_cv, run_fold

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sarscov2-ct"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_b0")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--pretrained", action="store_true", help="start from ImageNet weights")
    parser.add_argument("--out", default="benchmarks/results/parity_model")
    args = parser.parse_args(argv)
    train = TrainConfig(
        epochs=args.epochs,
        image_size=args.image_size,
        lr=args.lr,
        pretrained=args.pretrained,
        batch_size=32,
        seed=0,
    )
    cfg = CVConfig(data=str(DATA), model=args.model, out=args.out, folds=5, repeats=1, seed=0, train=train)
    start = time.perf_counter()
    plan = plan_cv(cfg)
    predictions = run_fold(plan, 0, 0)
    took = time.perf_counter() - start
    origin = "ImageNet" if args.pretrained else "scratch"
    print(f"trained {args.model} ({origin}) @ {args.image_size} px, {args.epochs} epoch(s): {took:.0f} s")  # noqa: T201
    print(f"model: {predictions.parent / 'best.pt'}")  # noqa: T201
    print(f"held-out fold: {predictions}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
