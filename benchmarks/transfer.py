"""Transfer learning on real CT: what ImageNet weights buy, on the same folds, one arm per process.

Arms (``--arm``), all ``covidct.training.cv.cross_validate`` on one fold plan (``--folds``, seed 0):

- ``lite0_pretrained``: EfficientNetLite0, ImageNet weights from the installed package, fine-tuned;
- ``lite0_scratch``: the same architecture from random weights;
- ``lite0_linear``: the pretrained backbone frozen, a linear head on cached features (the fast linear probe);
- ``resnet10t_scratch``: the README's from-scratch baseline (64 px, lr 1e-3);
- ``reference``: frozen Lite0 features + scikit-learn logistic regression on the same folds (the issue's bar).

Each arm writes ``OUT/<arm>/bench.json``; ``--summary`` prints the table (mean ± std over folds, wall time).
On sarscov2-ct (no patient ids) every split is slice-level, so the accuracies are **optimistic**.

    flock /tmp/covidct-heavy.lock python benchmarks/transfer.py --arm lite0_linear --out /tmp/transfer
    python benchmarks/transfer.py --summary --out /tmp/transfer
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ARMS = ("reference", "lite0_linear", "lite0_pretrained", "lite0_scratch", "resnet10t_scratch")


def _train_config(arm: str, args: argparse.Namespace) -> tuple[str, Any]:
    from covidct.training.config import TrainConfig

    common = dict(epochs=args.epochs, batch_size=args.batch_size, seed=0, image_size=args.image_size)
    if arm == "lite0_pretrained":
        return "EfficientNetLite0", TrainConfig(
            **common,
            lr=args.lr,
            backbone_lr_scale=args.backbone_lr_scale,
            head_warmup=args.head_warmup,
            recalibrate_bn=args.precise_bn,
            augment=args.augment,
        )
    if arm == "lite0_scratch":
        return "EfficientNetLite0", TrainConfig(
            **common,
            lr=args.scratch_lr,
            pretrained=False,
            recalibrate_bn=args.precise_bn,
            augment=args.augment,
        )
    if arm == "lite0_linear":
        return "EfficientNetLite0", TrainConfig(
            **{**common, "epochs": args.linear_epochs},
            lr=args.linear_lr,
            freeze_backbone=True,
            feature_cache_dir=str(Path(args.out) / "features_linear"),
            label_smoothing=0.0,
        )
    if arm == "resnet10t_scratch":
        return "resnet10t", TrainConfig(
            epochs=args.baseline_epochs, batch_size=32, seed=0, image_size=64, lr=1e-3, pretrained=False
        )
    raise ValueError(arm)


def _fold_scores(predictions: Any, positive: str) -> tuple[list[float], list[float]]:
    from sklearn.metrics import roc_auc_score

    accs, aucs = [], []
    for _, part in predictions.groupby(["repeat", "fold"]):
        probs = part[[c for c in part.columns if c.startswith("prob_")]].to_numpy()
        classes = [c[len("prob_") :] for c in part.columns if c.startswith("prob_")]
        predicted = np.asarray(classes, dtype=object)[probs.argmax(1)]
        accs.append(float((predicted == part["label"].to_numpy()).mean()))
        aucs.append(float(roc_auc_score(part["label"] == positive, part[f"prob_{positive}"])))
    return accs, aucs


def run_cv_arm(arm: str, args: argparse.Namespace) -> dict[str, Any]:
    from covidct.evaluation.predictions import read_predictions
    from covidct.training.config import CVConfig
    from covidct.training.cv import cross_validate, plan_cv, run_fold

    model, train = _train_config(arm, args)
    cfg = CVConfig(
        data=args.data,
        model=model,
        out=str(Path(args.out) / arm / "run"),
        folds=args.folds,
        repeats=1,
        seed=0,
        train=train,
        group_near_duplicates=args.group_near_duplicates,
    )
    began = time.perf_counter()
    if args.only_fold is None:
        result = cross_validate(cfg)
        files, trained = result.predictions, result.trained
    else:  # one fold of the same plan: recipe experiments at a fifth of the cost
        files, trained = run_fold(plan_cv(cfg), 0, args.only_fold), 1
    seconds = time.perf_counter() - began
    accs, aucs = _fold_scores(read_predictions(files), args.positive)
    from covidct.config import config_to_dict

    return {
        "arm": arm,
        "model": model,
        "train": config_to_dict(train),
        "accuracy": accs,
        "roc_auc": aucs,
        "seconds": seconds,
        "trained_folds": trained,
        "only_fold": args.only_fold,
        "group_near_duplicates": args.group_near_duplicates,
    }


def run_reference(args: argparse.Namespace) -> dict[str, Any]:
    """Frozen ImageNet Lite0 features (a fresh feature cache: the time counts extraction) + sklearn LR."""
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from covidct.data.preprocess import Preprocess
    from covidct.models.factory import create_model_with_report
    from covidct.models.normalization import model_normalization
    from covidct.training.config import CVConfig, TrainConfig
    from covidct.training.cv import plan_cv
    from covidct.training.features import FeatureStats, extract_features

    began = time.perf_counter()
    size = args.image_size
    plan = plan_cv(
        CVConfig(
            data=args.data,
            model="EfficientNetLite0",
            out=str(Path(args.out) / "reference" / "run"),
            folds=args.folds,
            repeats=1,
            seed=0,
            train=TrainConfig(image_size=size),
            group_near_duplicates=args.group_near_duplicates,
        )
    )
    model, report = create_model_with_report("EfficientNetLite0", len(plan.classes))
    mean, std = model_normalization(model)
    stats = FeatureStats()
    with tempfile.TemporaryDirectory() as cache:
        ds = extract_features(
            model,
            plan.samples,
            plan.classes,
            Preprocess(image_size=size, mean=mean, std=std),
            cache_dir=cache,
            batch_size=32,
            stats=stats,
            device=torch.device("cpu"),
        )
    by_path = {s.path: i for i, s in enumerate(ds.samples)}
    x, y = ds.features.numpy(), ds.labels
    positive = plan.classes.index(args.positive)
    accs, aucs = [], []
    for train_idx, val_idx, test_idx in plan.splits.values():
        tr = [
            by_path[plan.samples[i].path] for i in (*train_idx, *val_idx) if plan.samples[i].path in by_path
        ]
        te = [by_path[plan.samples[i].path] for i in test_idx if plan.samples[i].path in by_path]
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=args.ref_c))
        clf.fit(x[tr], y[tr])
        accs.append(float((clf.predict(x[te]) == y[te]).mean()))
        aucs.append(float(roc_auc_score(y[te] == positive, clf.predict_proba(x[te])[:, positive])))
    return {
        "arm": "reference",
        "model": "EfficientNetLite0 features + LogisticRegression",
        "accuracy": accs,
        "roc_auc": aucs,
        "seconds": time.perf_counter() - began,
        "weights": report.describe(),
        "features_computed": stats.computed,
        "image_size": size,
        "group_near_duplicates": args.group_near_duplicates,
    }


def _mean_std(values: Any) -> str:
    a = np.asarray(values, dtype=float)
    return f"{a[0]:.3f} (1 fold)" if len(a) == 1 else f"{a.mean():.3f} ± {a.std(ddof=1):.3f}"


def summary(out: Path) -> str:
    rows = ["| arm | accuracy | ROC AUC | wall time | settings |", "|---|---|---|---|---|"]
    for path in sorted(out.glob("*/bench.json")):
        arm = path.parent.name
        r = json.loads(path.read_text())
        t = r.get("train", {})
        settings = (
            f"{r['model']}, {t.get('image_size', r.get('image_size'))} px, "
            + (f"{t['epochs']} ep, lr {t['lr']:g}" if t else "")
            + (f", backbone x{t['backbone_lr_scale']:g}" if t.get("backbone_lr_scale", 1) != 1 else "")
            + (f", head warm-up {t['head_warmup']}" if t.get("head_warmup") else "")
            + ("" if t.get("recalibrate_bn", True) else ", no precise BN")
            + (", pretrained" if t.get("pretrained") and not t.get("freeze_backbone") else "")
            + (", frozen + cached features" if t.get("freeze_backbone") else "")
            + ("" if not t or t.get("pretrained") else ", from scratch")
            + (", near-duplicates grouped" if r.get("group_near_duplicates") else ", slice-level groups only")
        )
        folds = f"fold {r['only_fold']}" if r.get("only_fold") is not None else f"{len(r['accuracy'])} folds"
        rows.append(
            f"| {arm} | {_mean_std(r['accuracy'])} | {_mean_std(r['roc_auc'])} "
            f"| {r['seconds']:.0f} s | {settings} ({folds}) |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arm", choices=ARMS)
    parser.add_argument("--summary", action="store_true")
    parser.add_argument("--data", default="../shared/data/sarscov2-ct")
    parser.add_argument("--positive", default="COVID-19")
    parser.add_argument("--out", default="/tmp/covidct-transfer")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3, help="pretrained fine-tuning: head lr")
    parser.add_argument("--backbone-lr-scale", type=float, default=0.1)
    parser.add_argument("--head-warmup", type=int, default=0)
    parser.add_argument("--precise-bn", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--scratch-lr", type=float, default=1e-3)
    parser.add_argument("--linear-lr", type=float, default=1e-3)
    parser.add_argument("--linear-epochs", type=int, default=30)
    parser.add_argument("--baseline-epochs", type=int, default=5)
    parser.add_argument("--ref-c", type=float, default=1.0, help="reference: LogisticRegression C")
    parser.add_argument(
        "--group-near-duplicates",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="merge near-duplicate slices into one split group (the leak-free default here)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only-fold", type=int, help="run this one fold of the plan (recipe experiments)")
    parser.add_argument("--tag", default="", help="suffix of the arm's folder (variants of one arm)")
    args = parser.parse_args()
    out = Path(args.out)
    if args.summary:
        print(summary(out))  # noqa: T201
        return
    if not args.arm:
        parser.error("give --arm or --summary")
    import torch

    torch.set_num_threads(args.threads)
    args.out = str(out / (args.arm + args.tag)) if args.tag else args.out
    result = run_reference(args) if args.arm == "reference" else run_cv_arm(args.arm, args)
    folder = out / (args.arm + args.tag)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench.json").write_text(json.dumps(result, indent=2))
    print(  # noqa: T201
        f"{args.arm}{args.tag}: accuracy {_mean_std(result['accuracy'])}, "
        f"ROC AUC {_mean_std(result['roc_auc'])}, {result['seconds']:.0f} s"
    )


if __name__ == "__main__":
    main()
