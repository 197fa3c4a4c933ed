"""Prediction speed: eager PyTorch (the baseline, default settings) vs covidct's torch, onnx, openvino paths.

    .venv/bin/python benchmarks/predict_speed.py [--out benchmarks/results/predict_speed]
        [--repeats 3] [--rounds 2]
        [--backends eager,torch,onnx,openvino:fp32,openvino:bf16] [--no-series]

Runs EfficientNet-B0 @ 224 and EfficientNet-B5 @ 456 (random weights: speed does not depend on them) at batch
1 and 8, each (model, backend) in a fresh process (see covidct.inference.bench), then prints the table and the
speed-ups over the baseline. End-to-end inputs: the first 16 JPEG-Lossless DICOM slices of
../shared/data/covid-ct-md/COVID-19/P001 when present, else generated 512 x 512 PNGs. The whole-series case:
all 74 slices of that series predicted end-to-end (``Predictor.predict(folder)``: ordering, parallel decode,
network) in slices/s, printed against the model-only throughput of the same backend and batch size.

On a shared machine, ``--rounds R`` repeats the whole set R times, alternating the backend order, and keeps
each number's best round (min latency, max throughput), so a burst of someone else's load hurts neither side
more. Numbers for docs/speed.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from covidct.inference.bench import BenchConfig, run_bench, to_markdown

DICOM = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "covid-ct-md" / "COVID-19" / "P001"
_ORDER = {"eager": 0, "torch": 1, "onnx": 2, "openvino": 3}
KEYS = ["model", "backend", "precision", "batch_size", "image_size", "device", "threads"]


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
    parser.add_argument(
        "--images", nargs="*", default=(), help="files for end-to-end timing (default: 512px PNGs)"
    )
    parser.add_argument("--backends", default="eager,torch,onnx,openvino:fp32,openvino:bf16")
    parser.add_argument("--no-series", action="store_true", help="skip the whole-series case")
    args = parser.parse_args(argv)
    images = tuple(args.images) or tuple(str(p) for p in sorted(DICOM.glob("*.dcm"))[:16])
    series = None if args.no_series or not DICOM.is_dir() else str(DICOM)
    order = tuple(args.backends.split(","))
    if "eager" not in order:
        parser.error("--backends must include eager (the baseline)")
    tables = []
    for r in range(args.rounds):
        backends = order if r % 2 == 0 else order[::-1]
        cfg = BenchConfig(
            models=tuple(args.models.split(",")),
            backends=backends,
            batch_sizes=tuple(int(b) for b in args.batch_sizes.split(",")),
            repeats=args.repeats,
            warmup=args.warmup,
            images=images,
            series=series,
        )
        out = Path(args.out) / f"round{r}"
        result = run_bench(
            cfg, out, on_case=lambda m, b, r=r: sys.stderr.write(f"  round {r}: {m} / {b} ...\n")
        )
        table = result.table.assign(_rank=result.table["backend"].map(_ORDER))
        tables.append(
            table.sort_values(["model", "_rank", "precision", "batch_size"])
            .drop(columns="_rank")
            .reset_index(drop=True)
        )
    table = best_of(tables)
    table.to_csv(Path(args.out) / "best.csv", index=False, float_format="%.4g")
    print(
        f"end-to-end inputs: {len(images) or 'generated'} {'DICOM slices' if images else 'PNGs'}; "
        f"best of {args.rounds} round(s)"
    )
    print(to_markdown(table))
    print()
    print("speed-up over eager PyTorch (same run; >1 = faster):")
    base = table[table.backend == "eager"].set_index(["model", "batch_size"])
    for row in table[table.backend != "eager"].itertuples(index=False):
        ref = base.loc[(row.model, row.batch_size)]
        name = f"{row.backend} {row.precision}"
        print(
            f"  {row.model:15s} {name:14s} batch {row.batch_size}: "
            f"model-only {ref.model_ms_median / row.model_ms_median:4.2f}x, "
            f"end-to-end {ref.e2e_ms_median / row.e2e_ms_median:4.2f}x "
            f"({row.e2e_ms_median:.0f} vs {ref.e2e_ms_median:.0f} ms/img), "
            f"stream {row.stream_img_s / ref.stream_img_s:4.2f}x ({row.stream_img_s:.1f} img/s)"
        )
    if series:
        print()
        print(f"whole series ({DICOM.name}, DICOM -> probabilities) vs model-only, same backend and batch:")
        for row in table.itertuples(index=False):
            print(
                f"  {row.model:15s} {row.backend + ' ' + row.precision:14s} batch {row.batch_size}: "
                f"{row.series_img_s:6.1f} slices/s end-to-end ({row.series_slices} slices) vs "
                f"{row.model_img_s:6.1f} img/s model-only = {row.series_img_s / row.model_img_s:4.2f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
