"""What a Grad-CAM costs: one CAM vs one forward+backward pass, and batched vs one-by-one, in the same run.

    .venv/bin/python benchmarks/cam_cost.py [--model resnet10t] [--size 224] [--batch 8] [--repeats 5]
                                            [--method gradcam] [--device cpu|cuda] [--threads N]

Random weights and random 512 x 512 slices (speed does not depend on them). Medians over ``--repeats``
rounds after one warm-up, the cases interleaved within each round:
  - fwd+bwd: the model on a preprocessed batch, backward of the summed target logits (the floor for any
    gradient CAM);
  - cam (core): one cam_session + pytorch-grad-cam call on the same tensor;
  - compute_cams: covidct's whole call (preprocess, CAM, upsampling back to 512 x 512), batched and
  one-by-one.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np


def interleaved_medians(
    cases: dict[str, Callable[[], object]], repeats: int, sync: Callable[[], None]
) -> dict[str, float]:
    """Median seconds per case; cases alternate within each round so that load drifts hit all alike."""
    for fn in cases.values():  # warm-up
        fn()
    sync()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet10t")
    parser.add_argument("--size", type=int, default=224, help="network input size")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--method", default="gradcam")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)

    import torch
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from covidct.data.preprocess import Preprocess
    from covidct.explain.cam import cam_session, compute_cams, resolve_layer
    from covidct.models.factory import create_model
    from covidct.models.normalization import model_normalization
    from covidct.models.registry import get_spec

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    spec = get_spec(args.model)
    model = create_model(args.model, 3, pretrained=False).to(device).eval()
    mean, std = model_normalization(model)
    pre = Preprocess(image_size=args.size, mean=mean, std=std)
    rng = np.random.default_rng(0)
    slices = [rng.random((512, 512), dtype=np.float32) for _ in range(args.batch)]
    x = torch.from_numpy(pre.batch(slices)).to(device)
    layer = resolve_layer(model, spec)

    def fwd_bwd() -> None:
        model.zero_grad(set_to_none=True)
        logits = model(x)
        logits[:, 0].sum().backward()

    targets = [ClassifierOutputTarget(0)] * len(x)

    def core() -> None:
        with cam_session(model, layer, args.method) as cam:
            cam(input_tensor=x, targets=targets)

    t = interleaved_medians(
        {
            "fwd_bwd": fwd_bwd,
            "core": core,
            "batched": lambda: compute_cams(
                model, layer, slices, method=args.method, preprocess=pre, batch_size=args.batch
            ),
            "single": lambda: compute_cams(
                model, layer, slices, method=args.method, preprocess=pre, batch_size=1
            ),
        },
        args.repeats,
        sync,
    )
    t_fb, t_core, t_batched, t_single = t["fwd_bwd"], t["core"], t["batched"], t["single"]
    n = args.batch
    print(
        f"{args.model} @ {args.size}px, layer {layer}, {args.method}, batch {n}, device {device}, "
        f"threads {torch.get_num_threads()}, median of {args.repeats} interleaved rounds"
    )
    print(f"  forward+backward (batch):        {t_fb * 1e3:8.1f} ms")
    print(
        f"  pytorch-grad-cam call (batch):   {t_core * 1e3:8.1f} ms   ratio to fwd+bwd {t_core / t_fb:5.2f}x"
    )
    print(
        f"  compute_cams batched:            {t_batched * 1e3:8.1f} ms   ratio {t_batched / t_fb:5.2f}x"
        f"   {n / t_batched:7.1f} slices/s"
    )
    print(f"  compute_cams one-by-one:         {t_single * 1e3:8.1f} ms   {n / t_single:7.1f} slices/s")
    print(f"  batched vs one-by-one throughput: {t_single / t_batched:5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
