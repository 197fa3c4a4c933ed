"""Prediction speed: eager PyTorch (the baseline, default settings) vs covidct's torch and onnx paths, same run.

    .venv/bin/python benchmarks/predict_speed.py [--out benchmarks/results/predict_speed] [--repeats 5]

Runs EfficientNet-B0 @ 224 and EfficientNet-B5 @ 456 (random weights: speed does not depend on them) at batch 1
and 8, each (model, backend) in a fresh process (see covidct.inference.bench), then prints the table and the
speed-ups over the baseline. Numbers for docs/speed.md.
"""

from __future__ import annotations

import argparse
import sys

from covidct.inference.bench import BenchConfig, run_bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="EfficientNetB0,EfficientNetB5")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/predict_speed")
    parser.add_argument("--images", nargs="*", default=(), help="files for end-to-end timing (default: 512px PNGs)")
    args = parser.parse_args(argv)
    cfg = BenchConfig(
        models=tuple(args.models.split(",")), backends=("eager", "torch", "onnx"),
        batch_sizes=tuple(int(b) for b in args.batch_sizes.split(",")), repeats=args.repeats, warmup=args.warmup,
        images=tuple(args.images),
    )
    result = run_bench(cfg, args.out, on_case=lambda m, b: sys.stderr.write(f"  {m} / {b} ...\n"))
    table = result.table
    print(result.markdown())
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
