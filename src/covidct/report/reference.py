"""Published numbers to show beside a study's own (``covidct report --reference paper``).

Only numbers that could be checked against the paper's own text are stored. For Garg et al.
(arXiv:2012.11860v2, Expert Systems with Applications 2022, 116540) these are the headline results of the
abstract and the journal's highlights: EfficientNet-B5 on the 3-class "A COVID multiclass dataset of CT scans"
(4,173 slices) and on an alternate 2-class dataset, and its prediction time. The paper's full per-model tables
(all 20 backbones) could not be retrieved and verified while writing this module, so they are deliberately NOT
stored: no number here is estimated, read off a figure or recalled from memory. The abstract does not say over
which class(es) its one-vs-rest metrics are taken; the report therefore shows them beside our COVID-19
one-vs-rest values and our multi-class accuracy, labelled as such.
"""

from __future__ import annotations

from dataclasses import dataclass

from covidct.errors import ConfigError


@dataclass(frozen=True)
class ReferenceValue:
    """One published number: mean ± std of ``metric`` for ``model`` on ``dataset``."""

    model: str
    dataset: str
    metric: str  # f1 | accuracy | sensitivity | specificity | precision
    mean: float
    std: float | None
    n_classes: int  # the task: ours are shown beside it only for a study with as many classes


@dataclass(frozen=True)
class Reference:
    """A set of published results with its source and caveats."""

    name: str
    title: str
    source: str
    values: tuple[ReferenceValue, ...]
    facts: tuple[str, ...]  # other verified statements (e.g. prediction times), quoted as text
    notes: tuple[str, ...]


_MULTICLASS = "A COVID multiclass dataset of CT scans (3 classes, 4,173 slices)"
_BINARY = "alternate 2-class dataset (as named in the abstract)"


def _values(
    model: str, dataset: str, n_classes: int, **metrics: tuple[float, float]
) -> tuple[ReferenceValue, ...]:
    return tuple(
        ReferenceValue(model, dataset, m, mean, std, n_classes) for m, (mean, std) in metrics.items()
    )


PAPER = Reference(
    name="paper",
    title="Garg et al., Efficient and Visualizable Convolutional Neural Networks for COVID-19 Classification "
    "Using Chest CT (Expert Syst. Appl. 2022; arXiv:2012.11860)",
    source="arXiv:2012.11860v2 abstract; Expert Systems with Applications 116540 (2022) abstract and "
    "highlights",
    values=(
        *_values(
            "EfficientNetB5",
            _MULTICLASS,
            3,
            f1=(0.9769, 0.0046),
            accuracy=(0.9759, 0.0048),
            sensitivity=(0.9788, 0.0055),
            specificity=(0.9730, 0.0057),
            precision=(0.9751, 0.0051),
        ),
        *_values(
            "EfficientNetB5",
            _BINARY,
            2,
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
        "Only the abstract's headline numbers (EfficientNetB5) are stored; the per-model tables of all 20 "
        "backbones could not be verified and are not shown.",
        "The abstract does not state which class(es) its one-vs-rest metrics refer to; ours are shown for "
        "the "
        "COVID-19 class (one-vs-rest) and, for accuracy, also as multi-class accuracy.",
        "Different data, preprocessing, training budget and hardware: a difference is expected, not an "
        "error.",
    ),
)

REFERENCES: dict[str, Reference] = {"paper": PAPER}


def get_reference(name: str) -> Reference:
    """A stored reference by name (``"paper"``)."""
    try:
        return REFERENCES[name.lower()]
    except KeyError:
        raise ConfigError(f"--reference must be one of {', '.join(REFERENCES)}, got {name!r}") from None
