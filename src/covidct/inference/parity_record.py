"""A parity record: how a reduced precision compared with fp32 on one model (issue #15).

Saved beside the model as ``<model>.parity.json`` by :func:`covidct.inference.parity.run_parity`; read by the
OpenVINO backend, whose ``auto`` precision refuses bf16 for a model whose top-1 agreement is under
:data:`MIN_AGREEMENT`. A record for another version of the model file (SHA-256) is ignored.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from covidct.errors import CovidCTWarning
from covidct.utils import sha256_file

MIN_AGREEMENT = 0.995  # top-1 agreement with fp32 below which `auto` refuses bf16
PARITY_SUFFIX = ".parity.json"

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class ParityReport:
    """A candidate precision vs fp32 on one set of slices."""

    backend: str
    precision: str  # the candidate (bf16)
    n_slices: int
    max_abs_diff: float  # max over slices and classes of |p_candidate - p_fp32|
    agreement: float  # fraction of slices with the same top-1 class
    auc_fp32: (
        float | None
    )  # ROC AUC (first class vs rest for 2 classes, else macro one-vs-rest); None: no labels
    auc_candidate: float | None
    data: str
    model: str
    model_sha256: str
    min_agreement: float = MIN_AGREEMENT
    reference: str = "fp32"

    @property
    def auc_diff(self) -> float | None:
        """``auc_candidate - auc_fp32``."""
        if self.auc_fp32 is None or self.auc_candidate is None:
            return None
        return self.auc_candidate - self.auc_fp32

    @property
    def passed(self) -> bool:
        """Whether ``auto`` may use this precision for the model."""
        return self.agreement >= self.min_agreement

    def summary(self) -> str:
        cmp = ">=" if self.passed else "<"
        auc = (
            ""
            if self.auc_diff is None
            else f", ROC AUC {self.auc_candidate:.4f} vs {self.auc_fp32:.4f} (diff {self.auc_diff:+.4f})"
        )
        return (
            f"{self.backend} {self.precision} vs {self.reference}: "
            f"top-1 agreement {self.agreement:.2%} {cmp} "
            f"{self.min_agreement:.1%} on {self.n_slices} slices of {self.data}; max |dp| "
            f"{self.max_abs_diff:.4f}{auc}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "auc_diff": self.auc_diff, "passed": self.passed}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> ParityReport:
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in record.items() if k in fields})


def parity_record_path(model: PathLike) -> Path:
    """Where the parity record of ``model`` lives: ``<model>.parity.json`` beside it."""
    model = Path(model)
    return model.with_name(model.name + PARITY_SUFFIX)


def load_parity_record(model: PathLike) -> ParityReport | None:
    """The saved parity record of ``model``, or None (none saved, unreadable, or for another file content)."""
    path = parity_record_path(model)
    if not path.is_file():
        return None
    try:
        report = ParityReport.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        warnings.warn(f"{path}: unreadable parity record ignored ({exc})", CovidCTWarning, stacklevel=2)
        return None
    if report.model_sha256 != sha256_file(model):
        warnings.warn(
            f"{path}: parity record is for another version of {Path(model).name}; ignored "
            "(rerun covidct bench --parity)",
            CovidCTWarning,
            stacklevel=2,
        )
        return None
    return report
