"""Does INT8 (NNCF post-training quantisation) win over OpenVINO fp32 / bf16 on this CPU? (issue #15)

    PYTHONPATH=src .venv/bin/python benchmarks/int8_probe.py [--model EfficientNetB5] [--checkpoint BEST.pt]
        [--calibration ../shared/data/covid-ct-md/COVID-19/P001] [--heldout predictions.csv] [--repeats 20]

Exports the network to ONNX (random weights for ``--model``; a trained ``--checkpoint`` instead when given),
quantises it with ``nncf.quantize`` calibrated on the preprocessed slices of ``--calibration`` (default: the
74 DICOM slices of covid-ct-md P001), and times model-only batch 1 for OpenVINO fp32, bf16, INT8 (rest fp32)
and INT8 (rest bf16) in this process, one after the other. With ``--heldout`` (a CSV with ``path[,label]``,
e.g. a fold's ``predictions.csv``), it also prints INT8's top-1 agreement with fp32, max |Δp| and ROC AUC.

A probe, not a feature: covidct has no ``int8`` precision; this script is how to decide whether it should.
Needs NNCF, which covidct does not depend on: ``.venv/bin/pip install nncf``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from covidct.data.readers import load_slice
from covidct.inference.openvino_backend import OpenVinoPredictor, _core, cpu_capabilities
from covidct.inference.parity import parity_inputs, parity_metrics
from covidct.inference.predictor import softmax

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
P001 = SHARED / "covid-ct-md" / "COVID-19" / "P001"


def _predictor(args: argparse.Namespace, workdir: Path) -> OpenVinoPredictor:
    """OpenVINO fp32 on the ONNX export of ``--checkpoint``, or of ``--model`` with random weights."""
    if args.checkpoint:
        from covidct.inference.export import export_to_temp

        return OpenVinoPredictor(export_to_temp(args.checkpoint), precision="fp32", prefetch=False)
    from covidct.inference.bench import _build

    predictor: OpenVinoPredictor = _build(
        args.model, "openvino", args.image_size, "cpu", None, workdir, "fp32"
    )
    return predictor


def _pixels(predictor: OpenVinoPredictor, paths: list[str]) -> list[np.ndarray]:
    """One preprocessed batch of one slice per path."""
    return [predictor.preprocess.batch([load_slice(p)]) for p in paths]


def _time(compiled: Any, pixels: np.ndarray, repeats: int) -> float:
    request = compiled.create_infer_request()
    for _ in range(3):
        request.infer({0: pixels})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        request.infer({0: pixels})
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _probabilities(compiled: Any, batches: list[np.ndarray]) -> np.ndarray:
    request = compiled.create_infer_request()
    logits = []
    for pixels in batches:
        request.infer({0: pixels})
        logits.append(np.array(request.get_output_tensor(0).data, dtype=np.float32))
    return softmax(np.concatenate(logits))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="EfficientNetB5")
    parser.add_argument("--image-size", type=int, default=456)
    parser.add_argument("--checkpoint", help="a trained covidct checkpoint (.pt) instead of random weights")
    parser.add_argument("--calibration", default=str(P001))
    parser.add_argument("--calibration-slices", type=int, default=74)
    parser.add_argument("--heldout", help="CSV with path[,label]: INT8 vs fp32 agreement on these slices")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)

    import nncf
    import openvino as ov

    print(f"OpenVINO {ov.__version__}, NNCF {nncf.__version__}, CPU capabilities {list(cpu_capabilities())}")
    with tempfile.TemporaryDirectory(prefix="covidct-int8-") as tmp:
        predictor = _predictor(args, Path(tmp))
        onnx = str(predictor.path)
        size = predictor.meta.image_size
        files = sorted(p for p in Path(args.calibration).iterdir() if p.is_file())
        calibration = _pixels(predictor, [str(p) for p in files[: args.calibration_slices]])
        core = _core()
        start = time.perf_counter()
        quantized = nncf.quantize(
            core.read_model(onnx), nncf.Dataset(calibration), subset_size=len(calibration)
        )
        quantize_s = time.perf_counter() - start
        print(
            f"{predictor.meta.model_name} @ {size}: {len(calibration)} calibration slices, {quantize_s:.0f} s"
        )
        compiled = {"fp32": predictor.compiled}
        for name, model, hint in (
            ("bf16", core.read_model(onnx), "bf16"),
            ("int8 (rest fp32)", quantized, "f32"),
            ("int8 (rest bf16)", quantized, "bf16"),
        ):
            compiled[name] = core.compile_model(
                model,
                "CPU",
                {
                    "INFERENCE_PRECISION_HINT": hint,
                    "PERFORMANCE_HINT": "LATENCY",
                    "INFERENCE_NUM_THREADS": predictor.threads,
                },
            )
        pixels = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
        times = {name: _time(c, pixels, args.repeats) for name, c in compiled.items()}
        print("model-only, batch 1, median of", args.repeats, "runs:")
        for name, ms in times.items():
            print(f"  {name:18s} {ms:7.1f} ms/img   {times['fp32'] / ms:4.2f}x fp32")
        if args.heldout:
            paths, labels = parity_inputs(args.heldout, predictor.meta.classes)
            classes = list(predictor.meta.classes)
            label_idx = None
            if labels is not None:
                label_idx = np.array(
                    [classes.index(lab) if lab in classes else -1 for lab in map(labels.get, paths)]
                )
            batches = _pixels(predictor, paths)
            reference = _probabilities(compiled["fp32"], batches)
            for name in ("bf16", "int8 (rest fp32)", "int8 (rest bf16)"):
                m = parity_metrics(reference, _probabilities(compiled[name], batches), label_idx)
                line = f"  {name:18s} vs fp32 on {m['n_slices']} slices: "
                line += f"top-1 agreement {100 * m['agreement']:.2f}%, max |dp| {m['max_abs_diff']:.4f}"
                if m["auc_fp32"] is not None:
                    diff = m["auc_candidate"] - m["auc_fp32"]
                    line += f", ROC AUC {m['auc_fp32']:.4f} -> {m['auc_candidate']:.4f} ({diff:+.4f})"
                print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
