"""Published numbers to show beside a study's own (``covidct report --reference paper``).

Garg et al. (Expert Systems with Applications 195:116540, 2022; arXiv:2012.11860) published one-vs-rest
results (mean ± std over 5 x 5 patient-level CV folds) for each of their 20 models and 3 classes on "A COVID
multiclass dataset of CT scans" (4,173 slices). Those tables ship with covidct as package data
(``report/data/garg2022_tables.csv``, copied unchanged from the authors' code release; provenance in
``report/data/README.md``). The abstract adds EfficientNet-B5's figures on an alternate 2-class dataset
(which class its one-vs-rest metrics refer to is not stated) and prediction times.

The report shows a reference row beside a model only for the same task: the per-class tables for a study whose
classes are exactly COVID-19, Healthy and Pneumonia; the 2-class abstract figures beside a 2-class study's
COVID-19 one-vs-rest values.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from covidct.errors import ConfigError

METRICS = ("f1", "accuracy", "sensitivity", "specificity", "precision")
TABLES_FILE = "garg2022_tables.csv"


@dataclass(frozen=True)
class ReferenceValue:
    """One published number: mean ± std of ``metric`` for ``model`` (and class ``cls``) on ``dataset``."""

    model: str
    dataset: str
    metric: str  # f1 | accuracy | sensitivity | specificity | precision
    mean: float
    std: float | None
    n_classes: int  # the task: ours are shown beside it only for a study with as many classes
    cls: str | None = None  # the one-vs-rest positive class; None where the source does not say


@dataclass(frozen=True)
class Reference:
    """A set of published results with its source and caveats."""

    name: str
    title: str
    source: str
    values: tuple[ReferenceValue, ...]
    facts: tuple[str, ...]  # other verified statements (e.g. prediction times), quoted as text
    notes: tuple[str, ...]
    classes: tuple[str, ...] = ()  # the per-class tables' task (its class names, covidct spelling)

    def models(self) -> list[str]:
        """Models with per-class rows, in table order."""
        return list(dict.fromkeys(v.model for v in self.values if v.cls is not None))

    def model_name(self, name: str) -> str | None:
        """The reference's spelling of ``name`` (case-insensitive paper name or a registered timm name)."""
        by_lower = {m.lower(): m for m in self.models()}
        if name.lower() in by_lower:
            return by_lower[name.lower()]
        from covidct.models.registry import list_models  # the zoo's specs: no torch import

        for spec in list_models():
            if name in (spec.timm_name, spec.arch) and spec.name.lower() in by_lower:
                return by_lower[spec.name.lower()]
        return None

    def per_class(self, model: str) -> dict[str, dict[str, ReferenceValue]]:
        """``{class: {metric: value}}`` of ``model`` (any spelling :meth:`model_name` accepts); {} if none."""
        name = self.model_name(model)
        out: dict[str, dict[str, ReferenceValue]] = {}
        for v in self.values:
            if v.model == name and v.cls is not None and v.n_classes == len(self.classes):
                out.setdefault(v.cls, {})[v.metric] = v
        return out

    def same_task(self, classes: tuple[str, ...] | list[str]) -> bool:
        """Whether a study's classes are the per-class tables' task (same class set)."""
        return bool(self.classes) and set(classes) == set(self.classes)


_MULTICLASS = "A COVID multiclass dataset of CT scans (3 classes, 4,173 slices)"
_BINARY = "alternate 2-class dataset (as named in the abstract)"


@lru_cache(maxsize=1)
def _table_values() -> tuple[ReferenceValue, ...]:
    text = resources.files("covidct.report").joinpath("data", TABLES_FILE).read_text(encoding="utf-8")
    rows = csv.DictReader(line for line in text.splitlines() if line and not line.startswith("#"))
    return tuple(
        ReferenceValue(
            row["model"], _MULTICLASS, m, float(row[f"{m}_mean"]), float(row[f"{m}_std"]), 3, row["class"]
        )
        for row in rows
        for m in METRICS
    )


def _binary(**metrics: tuple[float, float]) -> tuple[ReferenceValue, ...]:
    return tuple(
        ReferenceValue("EfficientNetB5", _BINARY, m, mean, std, 2) for m, (mean, std) in metrics.items()
    )


def _paper() -> Reference:
    return Reference(
        name="paper",
        title="Garg, Salehi, La Rocca, Garner, Duncan: Efficient and Visualizable Convolutional Neural "
        "Networks for COVID-19 Classification Using Chest CT (Expert Syst. Appl. 195:116540, 2022; "
        "arXiv:2012.11860)",
        source="per-model tables: the results tables of the authors' code release (COV-AID), shipped as "
        "covidct/report/data/garg2022_tables.csv; 2-class figures and prediction times: the abstract",
        values=(
            *_table_values(),
            *_binary(
                accuracy=(0.9845, 0.0109),
                f1=(0.9599, 0.0251),
                sensitivity=(0.9682, 0.0099),
                specificity=(0.9883, 0.0150),
                precision=(0.9526, 0.0523),
            ),
        ),
        facts=(
            "EfficientNetB5 was the best of the 20 CNNs (highest accuracy, sensitivity and F1).",
            "Prediction time: under 0.1 s per image on a GPU and about 0.5 s per image on a CPU.",
        ),
        notes=(
            "Published values are mean ± std over the paper's 5 x 5 patient-level CV folds on its 3-class "
            "dataset; ours are over this study's folds on this study's data.",
            "The per-class tables are shown only for a 3-class study (COVID-19, Healthy, Pneumonia): another "
            "class set is another task.",
            "The abstract does not state which class its 2-class one-vs-rest metrics refer to; ours are "
            "shown for the COVID-19 class.",
            "Different data, preprocessing, training budget and hardware: a difference is expected, not an "
            "error.",
        ),
        classes=("COVID-19", "Healthy", "Pneumonia"),
    )


PAPER = _paper()
REFERENCES: dict[str, Reference] = {"paper": PAPER}


def get_reference(name: str) -> Reference:
    """A stored reference by name (``"paper"``)."""
    try:
        return REFERENCES[name.lower()]
    except KeyError:
        raise ConfigError(f"--reference must be one of {', '.join(REFERENCES)}, got {name!r}") from None
