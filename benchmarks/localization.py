"""Localisation benchmark (issue 4): train a small CNN on the phantoms, score its CAMs against lesion masks.

Mirrors tests/explain/test_localization.py: phantoms of ``--patients`` patients per class at ``--size`` px, a
resnet10t (pretrained=False) trained on all but the last ``--held-out`` patients, then
``covidct.explain.api.explain(..., masks=...)`` on the held-out COVID-19 and Pneumonia slices with the true
class as the CAM target. Prints explain's own scores (pointing game without tolerance) and the pointing game
recomputed from the written maps with ``--tolerance`` pixels (the scorer's ``tolerance``).

    .venv/bin/python benchmarks/localization.py --threads 2 --layers layer2,layer3 --methods gradcam,layercam
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

CLASSES = ("COVID-19", "Healthy", "Pneumonia")


def train(images_dir: Path, patients: list[str], size: int, epochs: int, lr: float, seed: int):  # type: ignore[no-untyped-def]
    """resnet10t from scratch, AdamW + one-cycle lr, horizontal flips; returns the model in eval mode."""
    import torch

    from covidct.data.preprocess import Preprocess
    from covidct.data.readers import load_slice
    from covidct.models.factory import create_model

    images, labels = [], []
    for label, cls in enumerate(CLASSES):
        for patient in patients:
            for path in sorted((images_dir / cls / patient).glob("*.png")):
                images.append(load_slice(path))
                labels.append(label)
    torch.manual_seed(seed)
    model = create_model("resnet10t", len(CLASSES), pretrained=False)
    x, y = torch.from_numpy(Preprocess(image_size=size).batch(images)), torch.tensor(labels)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    batches = x.split(16)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * len(batches), pct_start=0.25)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=gen).split(16):
            flip = torch.rand(len(idx), generator=gen) < 0.5
            xb = torch.where(flip[:, None, None, None], x[idx].flip(-1), x[idx])
            loss = torch.nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def tolerant_scores(out: Path, masks_dir: Path, images_dir: Path, tolerance: int):  # type: ignore[no-untyped-def]
    """Localisation scores recomputed from the maps ``explain`` wrote, with a pointing-game tolerance."""
    from PIL import Image

    from covidct.explain.scores import localization_scores

    items = json.loads((out / "index.json").read_text())["items"]
    cams = [np.load(out / item["maps"][0]["npy"]) for item in items]
    masks = [
        np.asarray(Image.open(masks_dir / Path(item["source"]).relative_to(images_dir))) > 127
        for item in items
    ]
    return localization_scores(cams, masks, tolerance=tolerance)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--patients", type=int, default=10)
    parser.add_argument("--held-out", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0, help="phantom and training seed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--layers", default="layer3")
    parser.add_argument("--methods", default="layercam")
    parser.add_argument("--tolerance", type=int, default=4)
    args = parser.parse_args()

    import torch

    from covidct.data.synth import synthesize_dataset
    from covidct.explain.api import explain
    from covidct.models.checkpoint import CheckpointMeta, save_checkpoint
    from covidct.models.normalization import model_normalization

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = synthesize_dataset(
            root / "phantoms",
            patients_per_class=args.patients,
            slices_per_patient=4,
            size=args.size,
            seed=args.seed,
        )
        patients = [f"p{k + 1:03d}" for k in range(args.patients)]
        train_p, held = patients[: -args.held_out], patients[-args.held_out :]
        start = time.perf_counter()
        model = train(data.images_dir, train_p, args.size, args.epochs, args.lr, args.seed)
        print(f"trained on {len(train_p)} patients/class in {time.perf_counter() - start:.0f} s")  # noqa: T201
        mean, std = model_normalization(model)
        meta = CheckpointMeta(
            model_name="resnet10t",
            timm_name="resnet10t",
            classes=CLASSES,
            image_size=args.size,
            mean=mean,
            std=std,
        )
        ckpt = save_checkpoint(root / "model.pt", model, meta)
        for layer in args.layers.split(","):
            for method in args.methods.split(","):
                for cls in ("COVID-19", "Pneumonia"):
                    out = root / f"{layer}-{method}-{cls}"
                    inputs = [data.images_dir / cls / p for p in held]
                    res = explain(
                        ckpt, inputs, out, masks=data.masks_dir, target=cls, layer=layer, method=method
                    )
                    loc = res.localization
                    tol = tolerant_scores(out, data.masks_dir, data.images_dir, args.tolerance)
                    print(  # noqa: T201
                        f"{layer:7s} {method:9s} {cls:9s} n={loc.n:2d} pointing={loc.pointing_game:.2f} "
                        f"(random {loc.random_pointing_game:.2f}) "
                        f"tol{args.tolerance}={tol.pointing_game:.2f} "
                        f"(random {tol.random_pointing_game:.2f}) "
                        f"energy={loc.energy_inside:.3f} (random {loc.random_energy_inside:.3f})",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
