"""Predictor: per-slice and per-group results, batching, backends, output files, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from covidct.errors import CheckpointError, ConfigError, DataError
from covidct.inference.load import load_predictor
from covidct.inference.onnx_backend import OnnxPredictor
from covidct.inference.predictor import aggregate_groups
from covidct.inference.torch_backend import TorchPredictor

CLASSES = ("COVID-19", "Healthy", "Pneumonia")

PROB_COLS = [f"prob_{c}" for c in CLASSES]


def test_predict_arrays_gives_one_row_per_slice_and_group(
    tiny_checkpoint: Path, arrays: list[np.ndarray]
) -> None:
    result = TorchPredictor.load(tiny_checkpoint).predict(arrays)
    assert list(result.slices.columns) == [
        "path",
        "patient_id",
        *PROB_COLS,
        "predicted",
        "model",
        "backend",
        "precision",
    ]
    assert set(result.slices["backend"]) == {"torch"} and set(result.slices["precision"]) == {"fp32"}
    assert len(result.slices) == len(arrays) and len(result.groups) == len(arrays)
    probs = result.probabilities
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert result.slices["predicted"].tolist() == [CLASSES[i] for i in probs.argmax(axis=1)]
    assert probs.std(axis=0).max() > 1e-4  # the images get different probabilities


def test_stack_is_one_group(tiny_checkpoint: Path, arrays: list[np.ndarray]) -> None:
    result = TorchPredictor.load(tiny_checkpoint).predict(np.stack(arrays))
    assert result.groups["n_slices"].tolist() == [len(arrays)]
    assert result.slices["path"].tolist() == [f"array[0]#{k}" for k in range(len(arrays))]


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_batch_size_and_prefetch_do_not_change_results(
    tiny_checkpoint: Path, arrays: list[np.ndarray], batch_size: int
) -> None:
    reference = TorchPredictor.load(tiny_checkpoint, prefetch=False).predict(arrays, batch_size=1)
    result = TorchPredictor.load(tiny_checkpoint, batch_size=batch_size).predict(arrays)
    np.testing.assert_allclose(result.probabilities, reference.probabilities, atol=1e-5)
    assert result.slices["path"].tolist() == reference.slices["path"].tolist()


def test_aggregate_groups_mean_probability_and_votes() -> None:
    slices = pd.DataFrame(
        {
            "path": ["a", "b", "c", "d"],
            "patient_id": ["p2", "p1", "p2", "p2"],
            "prob_A": [0.9, 0.2, 0.4, 0.1],
            "prob_B": [0.1, 0.8, 0.6, 0.9],
            "predicted": ["A", "B", "B", "B"],
        }
    )
    groups = aggregate_groups(slices, ["A", "B"])
    assert groups["patient_id"].tolist() == ["p2", "p1"]  # first-seen order
    p2 = groups.iloc[0]
    assert p2["n_slices"] == 3 and p2["votes_A"] == 1 and p2["votes_B"] == 2
    assert p2["prob_A"] == pytest.approx(1.4 / 3) and p2["predicted"] == "B"
    assert groups.iloc[1]["votes_A"] == 0 and groups.iloc[1]["predicted"] == "B"


def test_onnx_matches_torch(tiny_checkpoint: Path, tiny_onnx: Path, arrays: list[np.ndarray]) -> None:
    torch_result = load_predictor(tiny_checkpoint).predict(arrays)
    onnx_predictor = load_predictor(tiny_onnx, batch_size=2)
    assert isinstance(onnx_predictor, OnnxPredictor)
    onnx_result = onnx_predictor.predict(arrays)
    np.testing.assert_allclose(onnx_result.probabilities, torch_result.probabilities, atol=1e-4)
    assert onnx_result.classes == CLASSES and onnx_predictor.meta.image_size == 32


def test_onnx_path_never_imports_torch(tiny_onnx: Path) -> None:
    code = (
        "import sys, numpy as np\n"
        "from covidct.inference import load_predictor\n"
        f"r = load_predictor({str(tiny_onnx)!r}).predict([np.random.rand(40, 40)])\n"
        "assert len(r.slices) == 1, r.slices\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_backend_choice(tiny_checkpoint: Path, tiny_onnx: Path) -> None:
    with pytest.raises(ConfigError, match="backend onnx"):
        load_predictor(tiny_onnx, backend="torch")
    with pytest.raises(ConfigError, match="unknown backend"):
        load_predictor(tiny_checkpoint, backend="tensorrt")
    assert isinstance(load_predictor(tiny_checkpoint, backend="onnx"), OnnxPredictor)


def test_save_csv_and_json(tiny_checkpoint: Path, arrays: list[np.ndarray], tmp_path: Path) -> None:
    result = TorchPredictor.load(tiny_checkpoint).predict(arrays[:2])
    written = result.save(tmp_path / "preds.csv")
    assert [p.name for p in written] == ["preds.csv", "preds.patients.csv"]
    slices = pd.read_csv(written[0])
    assert list(slices.columns[:2]) == ["path", "patient_id"] and len(slices) == 2
    np.testing.assert_allclose(slices[PROB_COLS].to_numpy(), result.probabilities, atol=1e-9)
    assert "votes_Healthy" in pd.read_csv(written[1]).columns
    (path,) = result.save(tmp_path / "preds.json")
    data = json.loads(path.read_text())
    assert data["classes"] == list(CLASSES) and len(data["slices"]) == 2 and len(data["patients"]) == 2
    with pytest.raises(ConfigError, match="csv or .json"):
        result.save(tmp_path / "preds.xlsx")


def test_predict_patient_folders(tiny_checkpoint: Path, png_patients: Path) -> None:
    result = TorchPredictor.load(tiny_checkpoint).predict([png_patients])
    assert len(result.slices) == 5
    counts = dict(
        zip(result.groups["patient_id"].map(lambda g: Path(g).name), result.groups["n_slices"], strict=True)
    )
    assert counts == {"P1": 3, "P2": 2}
    votes = result.groups[[f"votes_{c}" for c in CLASSES]].sum(axis=1)
    assert votes.tolist() == result.groups["n_slices"].tolist()


def test_bad_inputs_raise_clear_errors(tiny_checkpoint: Path, tmp_path: Path) -> None:
    predictor = TorchPredictor.load(tiny_checkpoint)
    with pytest.raises(DataError, match="no such file"):
        predictor.predict([tmp_path / "missing.png"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError):
        predictor.predict([empty])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match="bad.png"):
        predictor.predict([bad])
    with pytest.raises(DataError, match="2-D"):
        predictor.predict([np.zeros(5, dtype=np.float32)])
    with pytest.raises(ConfigError):
        predictor.predict([])


def test_corrupt_models_raise_checkpoint_error(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="corrupt.pt"):
        load_predictor(corrupt)
    bad_onnx = tmp_path / "bad.onnx"
    bad_onnx.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="bad.onnx"):
        load_predictor(bad_onnx)
    with pytest.raises(CheckpointError, match="not found"):
        load_predictor(tmp_path / "nope.onnx")


@pytest.mark.real_data
def test_real_dicom_series_one_row_per_patient(tiny_checkpoint: Path, shared_data: Path) -> None:
    root = shared_data / "covid-ct-md"
    inputs = [root / "COVID-19" / "P001", root / "CAP" / "cap001", root / "Normal" / "normal001"]
    result = TorchPredictor.load(tiny_checkpoint, batch_size=16).predict(inputs)
    counts = {
        Path(g).name: n for g, n in zip(result.groups["patient_id"], result.groups["n_slices"], strict=True)
    }
    assert len(result.groups) == 3
    assert sorted(counts.values()) == [74, 77, 84]
    assert not result.skipped
    votes = result.groups[[f"votes_{c}" for c in CLASSES]].sum(axis=1)
    assert votes.tolist() == result.groups["n_slices"].tolist()


@pytest.mark.gpu
def test_cuda_predictor_matches_cpu(tiny_checkpoint: Path, arrays: list[np.ndarray]) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    cpu = TorchPredictor.load(tiny_checkpoint).predict(arrays)
    gpu = TorchPredictor.load(tiny_checkpoint, device="cuda").predict(arrays)
    np.testing.assert_allclose(gpu.probabilities, cpu.probabilities, atol=1e-2)  # fp16 autocast


def _folder_with_bad_files(root: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(3)
    for patient in ("P1", "P2"):
        (root / patient).mkdir(parents=True)
        for k in range(7):
            Image.fromarray(rng.integers(0, 256, (40, 44), dtype=np.uint8)).save(root / patient / f"{k}.png")
    (root / "P1" / "3.png").write_bytes(b"\x89PNG not really")  # unreadable, in the middle of a patient
    (root / "P2" / "notes.txt").write_text("hello")
    (root / "empty").mkdir()
    return root


@pytest.mark.parametrize("workers", ["0", "1", "3"])
def test_parallel_decoding_keeps_order_and_skip_reports(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: str
) -> None:
    from covidct.data.inputs import iter_inputs

    root = _folder_with_bad_files(tmp_path / "data")
    sequential_skipped: list[tuple[str, str]] = []
    expected = [s.source for s in iter_inputs(root, skipped=sequential_skipped)]
    monkeypatch.setenv("COVIDCT_DECODE_WORKERS", workers)
    reference = TorchPredictor.load(tiny_checkpoint, prefetch=False).predict(root, batch_size=1)
    result = TorchPredictor.load(tiny_checkpoint).predict([root, root / "empty"], batch_size=4)
    assert result.slices["path"].tolist() == expected  # the sequential read's order
    assert result.skipped == [*sequential_skipped, (str(root / "empty"), "no readable images (0 skipped)")]
    assert {Path(p).name for p, _ in result.skipped[:2]} == {"3.png", "notes.txt"}
    np.testing.assert_allclose(result.probabilities, reference.probabilities, atol=1e-5)
    assert reference.skipped == sequential_skipped


def test_predict_slices_decodes_lazy_loaders_in_order(tiny_checkpoint: Path, arrays: list) -> None:
    from covidct.errors import DataError as Unreadable

    def broken() -> np.ndarray:
        raise Unreadable("s-bad", "truncated file")

    slices = [(f"s{i}", (lambda a=a: a), "g") for i, a in enumerate(arrays)]
    slices.insert(2, ("s-bad", broken, "g"))
    result = TorchPredictor.load(tiny_checkpoint).predict_slices(
        slices, batch_size=2, skipped=[("x.png", "bad")]
    )
    reference = TorchPredictor.load(tiny_checkpoint, prefetch=False).predict(arrays)
    assert result.slices["path"].tolist() == [f"s{i}" for i in range(len(arrays))]
    np.testing.assert_allclose(result.probabilities, reference.probabilities, atol=1e-5)
    assert result.skipped == [("x.png", "bad"), ("s-bad", "truncated file")]
