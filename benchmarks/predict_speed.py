"""Prediction speed: eager PyTorch (the baseline, default settings) vs covidct's torch and onnx paths, same run.

    .venv/bin/python benchmarks/predict_speed.py [--out benchmarks/results/predict_speed] [--repeats 3] [--rounds 2]

Runs EfficientNet-B0 @ 224 and EfficientNet-B5 @ 456 (random weights: speed does not depend on them) at batch 1
and 8, each (model, backend) in a fresh process (see covidct.inference.bench), then prints the table and the
speed-ups over the baseline. End-to-end inputs: the first 16 JPEG-Lossless DICOM slices of
../shared/data/covid-ct-md/COVID-19/P001 when present, else generated 512 x 512 PNGs.

On a shared machine, ``--rounds R`` repeats the whole set R times, alternating the backend order, and keeps each
number's best round (min latency, max throughput), so a burst of someone else's load hurts neither side more.
Numbers for docs/speed.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from covidct.inference.bench import BenchConfig, run_bench, to_markdown

DICOM = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "covid-ct-md" / "COVID-19" / "P001"
_ORDER = {"eager": 0, "torch": 1, "onnx": 2}
KEYS = ["model", "backend", "batch_size", "image_size", "device", "threads"]


def best_of(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Per case: the lowest latencies and highest throughputs over rounds."""
    both = pd.concat(tables)
    agg = {c: ("max" if c.endswith("img_s") else "min") for c in both.columns if c not in KEYS}
    order = tables[0][KEYS]
    return order.merge(both.groupby(KEYS, as_index=False).agg(agg), on=KEYS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="EfficientNetB0,EfficientNetB5")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/predict_speed")
    parser.add_argument("--images", nargs="*", default=(), help="files for end-to-end timing (default: 512px PNGs)")
    args = parser.parse_args(argv)
    images = tuple(args.images) or tuple(str(p) for p in sorted(DICOM.glob("*.dcm"))[:16])
    tables = []
    for r in range(args.rounds):
        backends = ("eager", "torch", "onnx") if r % 2 == 0 else ("onnx", "torch", "eager")
        cfg = BenchConfig(
            models=tuple(args.models.split(",")), backends=backends,
            batch_sizes=tuple(int(b) for b in args.batch_sizes.split(",")), repeats=args.repeats,
            warmup=args.warmup, images=images,
        )
        out = Path(args.out) / f"round{r}"
        result = run_bench(cfg, out, on_case=lambda m, b, r=r: sys.stderr.write(f"  round {r}: {m} / {b} ...\n"))
        table = result.table.assign(_rank=result.table["backend"].map(_ORDER))
        tables.append(table.sort_values(["model", "_rank", "batch_size"]).drop(columns="_rank").reset_index(drop=True))
    table = best_of(tables)
    table.to_csv(Path(args.out) / "best.csv", index=False, float_format="%.4g")
    print(f"end-to-end inputs: {len(images) or 'generated'} {'DICOM slices' if images else 'PNGs'}; "
          f"best of {args.rounds} round(s)")
    print(to_markdown(table))
    print()
    print("speed-up over eager PyTorch (same run; >1 = faster):")
    base = table[table.backend == "eager"].set_index(["model", "batch_size"])
    for row in table[table.backend != "eager"].itertuples(index=False):
        ref = base.loc[(row.model, row.batch_size)]
        print(
            f"  {row.model:15s} {row.backend:5s} batch {row.batch_size}: "
            f"model-only {ref.model_ms_median / row.model_ms_median:4.2f}x, "
            f"end-to-end {ref.e2e_ms_median / row.e2e_ms_median:4.2f}x "
            f"({row.e2e_ms_median:.0f} vs {ref.e2e_ms_median:.0f} ms/img), "
            f"stream {row.stream_img_s / ref.stream_img_s:4.2f}x ({row.stream_img_s:.1f} img/s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
