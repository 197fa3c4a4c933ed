"""Leakage audit: exact and near-duplicate pairs, fold-plan crossings, --group-near-duplicates in CV plans."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter
from typer.testing import CliRunner

from covidct.cli.main import app
from covidct.data.audit import audit, crossings, hamming_pairs, near_duplicate_pairs
from covidct.data.manifest import scan_dataset
from covidct.errors import ConfigError

runner = CliRunner()


def _blob(seed: int, size: int = 64) -> np.ndarray:
    field = gaussian_filter(np.random.default_rng(seed).normal(size=(size, size)), 4)
    field = (field - field.min()) / (np.ptp(field) + 1e-9)
    return (field * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def leaky(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 distinct images per class; COVID/3 has an exact copy, Healthy/5 a near-duplicate in COVID."""
    root = tmp_path_factory.mktemp("leaky")
    for c, cls in enumerate(("COVID", "non-COVID")):
        (root / cls).mkdir()
        for k in range(12):
            Image.fromarray(_blob(100 * c + k)).save(root / cls / f"{k}.png")
    shutil.copy(root / "COVID" / "3.png", root / "COVID" / "3 copy.png")
    near = _blob(105).astype(int) + np.random.default_rng(9).integers(-3, 4, size=(64, 64))
    Image.fromarray(np.clip(near, 0, 255).astype(np.uint8)).save(root / "COVID" / "near 5.png")
    return root


def _name(path: str) -> str:
    return "/".join(Path(path).parts[-2:])


def test_hamming_pairs_vectorised() -> None:
    hashes = np.array([[0, 0, 0, 0], [0b111, 0, 0, 0], [0, 0, 0, 2**63]], dtype=np.uint64)
    idx, dist = hamming_pairs(hashes, 3)
    assert idx.tolist() == [[0, 1], [0, 2]] and dist.tolist() == [3, 1]
    idx, _ = hamming_pairs(hashes, 0)
    assert idx.shape == (0, 2)


def test_audit_finds_exact_and_near_duplicates(leaky: Path) -> None:
    result = audit(leaky)
    assert result.n_samples == 26
    assert result.n_exact == 1 and result.n_near == 1, result.pairs
    exact = result.pairs[result.pairs["exact"]].iloc[0]
    assert {_name(exact.path_a), _name(exact.path_b)} == {"COVID/3.png", "COVID/3 copy.png"}
    near = result.pairs[~result.pairs["exact"]].iloc[0]
    assert {_name(near.path_a), _name(near.path_b)} == {"non-COVID/5.png", "COVID/near 5.png"}
    assert 0 < near.distance <= 32 and near.label_a != near.label_b
    assert result.distances[0] == 2  # the exact copies are each other's nearest neighbour
    with pytest.raises(ConfigError, match="threshold"):
        audit(leaky, threshold=300)


def test_crossings_count_test_versus_train(leaky: Path) -> None:
    samples = scan_dataset(leaky).samples
    pairs = near_duplicate_pairs(samples)
    rows = []
    for s in samples:
        test = _name(s.path) in ("COVID/3.png", "non-COVID/5.png")  # both pairs straddle fold 0
        rows.append((s.path, 0, 0, "test" if test else "train"))
        rows.append((s.path, 0, 1, "val" if test or "copy" in s.path or "near" in s.path else "test"))
    folds = pd.DataFrame(rows, columns=["path", "repeat", "fold", "split"])
    table = crossings(pairs, folds)
    assert table["pairs_crossing"].tolist() == [2, 0] and table["exact_crossing"].tolist() == [1, 0]


def test_cli_audit_prints_counts_and_writes_pairs(leaky: Path, tmp_path: Path) -> None:
    samples = scan_dataset(leaky).samples
    folds = pd.DataFrame(
        [(s.path, 0, 0, "test" if _name(s.path) == "non-COVID/5.png" else "train") for s in samples],
        columns=["path", "repeat", "fold", "split"],
    )
    folds.to_csv(tmp_path / "folds.csv", index=False)
    out = tmp_path / "pairs.csv"
    result = runner.invoke(
        app, ["data", "audit", str(leaky), "--folds", str(tmp_path / "folds.csv"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "1 exact-duplicate pair(s)" in result.output and "1 near-duplicate pair(s)" in result.output
    assert "1 pair crossing(s) over 1 fold(s) (0 exact)" in result.output
    table = pd.read_csv(out)
    assert len(table) == 2 and set(table.columns) >= {"path_a", "path_b", "distance", "exact"}
    bad = runner.invoke(app, ["data", "audit", str(leaky), "--threshold", "-1"])
    assert bad.exit_code == 2 and "threshold" in bad.output


def test_cv_plan_groups_near_duplicates_when_asked(leaky: Path, tmp_path: Path) -> None:
    from covidct.training.config import CVConfig, TrainConfig
    from covidct.training.cv import plan_cv

    def plan(flag: bool, out: str):
        cfg = CVConfig(
            data=str(leaky),
            model="resnet10t",
            out=str(tmp_path / out),
            folds=4,
            repeats=3,
            group_near_duplicates=flag,
            train=TrainConfig(pretrained=False, image_size=32),
        )
        with pytest.warns(Warning):
            return plan_cv(cfg)

    def together(p, a: str, b: str) -> bool:
        names = [_name(s.path) for s in p.samples]
        i, j = names.index(a), names.index(b)
        return all((i in test) == (j in test) for _, _, test in p.splits.values())

    grouped = plan(True, "grouped")
    assert together(grouped, "non-COVID/5.png", "COVID/near 5.png")
    assert together(grouped, "COVID/3.png", "COVID/3 copy.png")
    config = json.loads((tmp_path / "grouped" / "config.json").read_text())
    assert config["group_near_duplicates"] is True and config["near_duplicate_threshold"] == 32
    assert any("--group-near-duplicates: 2 pair(s)" in w for w in grouped.warnings)
    default = plan(False, "default")
    assert together(default, "COVID/3.png", "COVID/3 copy.png")  # exact duplicates are always grouped
    assert not together(default, "non-COVID/5.png", "COVID/near 5.png")


def test_cv_and_compare_take_the_flag_and_pass_it_to_the_plan(tmp_path: Path) -> None:
    from covidct.study.config import StudyConfig

    for command in ("cv", "compare"):
        result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0 and "--group-near-duplicates" in result.output
        assert "--near-duplicate-threshold" in result.output
    study = StudyConfig(
        data="d", out="o", models=("resnet10t",), group_near_duplicates=True, near_duplicate_threshold=20
    )
    cv = study.cv_config("resnet10t", tmp_path / "m")
    assert cv.group_near_duplicates is True and cv.near_duplicate_threshold == 20
    with pytest.raises(ConfigError, match="near_duplicate_threshold"):
        StudyConfig(data="d", out="o", near_duplicate_threshold=256)
