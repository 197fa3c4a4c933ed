"""``covidct report STUDY``: one self-contained HTML file (inline CSS, PNGs embedded as base64, no external
links).

The report recomputes the study's tables from the saved predictions
(:func:`covidct.evaluation.tables.build_study_tables`), draws the figures into a temporary folder
(:func:`covidct.report.study_tables.save_study_figures`) and embeds them. With ``reference="paper"`` the
paper's published numbers (:mod:`covidct.report.reference`) are shown beside ours. Explanation panels found
under ``STUDY/explanations`` (written by ``covidct demo``) are embedded too.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import pandas as pd

from covidct import __version__
from covidct.evaluation.metrics import PER_CLASS_METRICS
from covidct.evaluation.predictions import model_dirname
from covidct.evaluation.summary import METRIC_TITLES, format_mean_std
from covidct.evaluation.tables import MULTICLASS_METRICS, StudyTables, build_study_tables
from covidct.report.markdown import records
from covidct.report.reference import METRICS as REFERENCE_METRICS
from covidct.report.reference import Reference, get_reference
from covidct.report.study_tables import format_params, multiclass_table, per_class_table, save_study_figures
from covidct.utils import write_text_atomic

PathLike = str | os.PathLike[str]
MAX_EXPLANATIONS = 8
_e = html.escape


def _table(
    header: Sequence[str], rows: Iterable[Sequence[Any]], *, cls: str = "", best_rows: Sequence[int] = ()
) -> str:
    head = "".join(f"<th>{_e(str(h))}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        attr = ' class="best"' if i in best_rows else ""
        body.append(f"<tr{attr}>" + "".join(f"<td>{_e(str(c))}</td>" for c in row) + "</tr>")
    klass = f' class="{cls}"' if cls else ""
    return (
        f'<div class="scroll"><table{klass}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _num(value: Any, digits: int = 4) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if not math.isfinite(number) else f"{number:.{digits}f}"


def _img(path: Path, alt: str, caption: str | None = None) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    cap = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="data:image/png;base64,{data}" alt="{_e(alt)}">{cap}</figure>'


def _best_model(tables: StudyTables) -> str | None:
    if not tables.wilcoxon.empty:
        return str(tables.wilcoxon.iloc[0]["model"])
    return tables.models[0] if tables.models else None


def _evaluation_setup(tables: StudyTables) -> str:
    """The setup of a ``covidct evaluate`` folder: one external test set, no folds."""
    cfg = tables.config
    models = cfg.get("models") or []
    label_map = cfg.get("label_map") or {}
    ensemble = f"; ensemble of {len(models)} fold models (probabilities averaged)" if len(models) > 1 else ""
    items = [
        ("Data", cfg.get("data", "?")),
        ("Classes", ", ".join(tables.classes)),
        ("Label map (data -> evaluation)", ", ".join(f"{k} -> {v}" for k, v in label_map.items())),
        ("Model classes", ", ".join(cfg.get("model_classes") or [])),
        ("Slices", cfg.get("n_slices", "?")),
        (
            "Evaluation",
            f"external: one test set the model was not trained on, no folds{ensemble}",
        ),
        ("Model", ", ".join(str(m) for m in models) or cfg.get("model", "?")),
    ]
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(str(v))}</dd>" for k, v in items)
    return f'<section id="setup"><h2>Evaluation setup</h2><dl class="setup">{rows}</dl></section>'


_TRAIN_KEYS = ("epochs", "batch_size", "image_size", "lr", "pretrained", "augment", "rotation", "seed")


def _train_summary(train: dict[str, Any]) -> str:
    """``epochs=15, batch_size=16, ...``: the recorded training options a reader compares."""
    return ", ".join(f"{k}={train[k]}" for k in _TRAIN_KEYS if k in train)


def _setup_section(tables: StudyTables) -> str:
    cfg = tables.config
    if cfg.get("kind") == "evaluate":
        return _evaluation_setup(tables)
    train = cfg.get("train", {}) or {}
    items = [
        ("Data", cfg.get("data", "?")),
        ("Classes", ", ".join(tables.classes)),
        ("Samples", cfg.get("n_samples", "?")),
        (
            "Folds",
            f"{cfg.get('folds', '?')} folds x {cfg.get('repeats', '?')} repeat(s), "
            f"seed {cfg.get('seed', '?')}; "
            f"{'patient-grouped' if cfg.get('grouped', True) else 'slice-level (no patient ids)'}; the same "
            "folds for every model (paired comparison)",
        ),
        ("Models", ", ".join(tables.models)),
        ("Training", _train_summary(train)),
        *(  # per-model overrides (StudyConfig.model_train), e.g. a pretrained model among scratch ones
            (f"Training of {name}", _train_summary(options))
            for name, options in cfg.get("model_train", []) or []
            if isinstance(options, dict)
        ),
        ("Executor", cfg.get("executor", "?")),
    ]
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(str(v))}</dd>" for k, v in items)
    return f'<section id="setup"><h2>Study setup</h2><dl class="setup">{rows}</dl></section>'


def _warnings_section(tables: StudyTables) -> str:
    parts = []
    if tables.failures:
        items = "".join(
            f"<li><code>{_e(f.get('job', '?'))}</code> after {_e(str(f.get('attempts')))} attempt(s): "
            f"{_e(str(f.get('error')))}</li>"
            for f in tables.failures
        )
        parts.append(
            f'<div class="fail"><strong>Failed jobs in the last run</strong><ul>{items}</ul>'
            "Rerun the same <code>covidct compare</code> command to retry them.</div>"
        )
    notes = [*tables.missing, *tables.warnings]
    if notes:
        items = "".join(f"<li>{_e(n)}</li>" for n in notes)
        parts.append(f'<div class="warn"><strong>Warnings</strong><ul>{items}</ul></div>')
    return f'<section id="warnings">{"".join(parts)}</section>' if parts else ""


def _models_section(tables: StudyTables) -> str:
    best = _best_model(tables)
    rows, best_rows = [], []
    for i, r in enumerate(records(tables.model_info)):
        rows.append(
            [
                r.model,
                r.timm_name or "",
                format_params(r.params),
                _num(r.image_size, 0),
                _num(r.latency_ms, 1),
                format_mean_std({"mean": r.accuracy, "std": r.accuracy_std}, 4),
                f"{r.folds_done}/{r.folds_expected or '?'}",
            ]
        )
        if r.model == best:
            best_rows.append(i)
    header = [
        "Model",
        "timm architecture",
        "Parameters",
        "Input size (px)",
        "CPU latency (ms, batch 1)",
        "Accuracy",
        "Folds done",
    ]
    threads = tables.model_info["latency_threads"].dropna()
    note = (
        f"Latency: median of timed batch-1 forward passes on the CPU with {int(threads.iloc[0])} thread(s), "
        "untrained weights (weights do not change the cost)."
        if len(threads)
        else "Latency not measured."
    )
    return (
        f'<section id="models"><h2>Models</h2>{_table(header, rows, best_rows=best_rows)}'
        f'<p class="note">{_e(note)}</p></section>'
    )


def _multiclass_section(tables: StudyTables) -> str:
    header = ["Model", *(METRIC_TITLES[m] for m in MULTICLASS_METRICS)]
    best = _best_model(tables)
    best_rows = [tables.models.index(best)] if best in tables.models else []
    parts = [
        '<section id="multiclass"><h2>Multi-class results</h2>',
        "<h3>Slice level</h3>",
        _table(header, multiclass_table(tables, "slice", ci=True), best_rows=best_rows),
        "<h3>Patient level (mean probability over a patient's slices)</h3>",
        _table(header, multiclass_table(tables, "patient", ci=True), best_rows=best_rows),
        '<p class="note">Mean ± standard deviation (ddof=1) over all folds and repeats; [low, high] is the '
        "95% bootstrap interval of the metric on the pooled test predictions (patients resampled, slices "
        "where there are no patient ids; 1000 resamples, seed 0).</p></section>",
    ]
    return "".join(parts)


def _stats_section(tables: StudyTables) -> str:
    if tables.wilcoxon.empty:
        return (
            '<section id="stats"><h2>Statistical comparison</h2><p class="note">One model only: nothing to '
            "compare.</p></section>"
        )
    header = [
        "Model",
        "Mean",
        "Std",
        "Difference vs best",
        "p (Wilcoxon)",
        "p (Holm)",
        "Paired folds",
        "Significant (Holm, 0.05)",
    ]
    rows = [
        [
            r.model + (" (best)" if r.is_best else ""),
            _num(r.mean),
            _num(r.std),
            _num(r.diff_vs_best),
            _num(r.p_value),
            _num(r.p_holm),
            r.n_pairs,
            "yes" if r.significant else "no",
        ]
        for r in records(tables.wilcoxon)
    ]
    metric = METRIC_TITLES.get(tables.wilcoxon_metric, tables.wilcoxon_metric)
    return (
        f'<section id="stats"><h2>Best model vs the rest ({_e(metric)})</h2>'
        f"{_table(header, rows, best_rows=[0])}"
        '<p class="note">Two-sided Wilcoxon signed-rank test on the paired per-fold values (same folds for '
        "every model), Holm-corrected over the comparisons. Folds of repeated k-fold share training data, so "
        "the test is somewhat optimistic; with few folds it cannot reach significance.</p></section>"
    )


def _per_class_section(tables: StudyTables) -> str:
    header = ["Class", *(METRIC_TITLES[m] for m in PER_CLASS_METRICS)]
    parts = [
        '<section id="per-class"><h2>Per-class results (one-vs-rest), shaped like the paper\'s tables</h2>'
    ]
    for model in tables.models:
        summary = tables.summaries[model]
        parts.append(
            f'<div class="model" id="model-{_e(model_dirname(model))}" data-model="{_e(model)}">'
            f"<h3>{_e(model)}</h3>"
            f'<p class="note">{summary["n_folds"]} fold(s), {summary["n_samples"]} slices, '
            f"{summary['n_patients']} patients. Slice level:</p>"
            f"{_table(header, per_class_table(tables, model, 'slice', ci=True))}"
            f"<details><summary>Patient level</summary>"
            f"{_table(header, per_class_table(tables, model, 'patient', ci=True))}</details></div>"
        )
    parts.append("</section>")
    return "".join(parts)


def _figures_section(tables: StudyTables) -> str:
    with tempfile.TemporaryDirectory(prefix="covidct-report-") as tmp:
        figs = save_study_figures(tables, tmp)
        parts = ['<section id="figures"><h2>Figures</h2><h3>Metrics per model (mean ± std over folds)</h3>']
        for key in ("accuracy", "macro_f1", *(f"f1_{c}" for c in tables.classes)):
            if key in figs:
                parts.append(_img(figs[key], f"bars {key}"))
        if "accuracy_vs_latency" in figs:
            parts += [
                "<h3>Accuracy vs CPU latency (efficiency frontier)</h3>",
                _img(figs["accuracy_vs_latency"], "accuracy vs latency"),
            ]
        parts.append("<h3>Confusion matrices (slice level, summed over folds)</h3>")
        for model in tables.models:
            parts.append(_img(figs[f"confusion_{model}"], f"confusion matrix {model}", model))
        parts.append("</section>")
    return "".join(parts)


def _our_value(tables: StudyTables, model: str, metric: str, cls: str | None) -> str:
    summary = tables.summaries[model]
    entry = summary["overall"].get(metric) if cls is None else summary["per_class"].get(cls, {}).get(metric)
    return format_mean_std(entry, 4)


def _paper_value(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value.mean:.4f}" + (f" ± {value.std:.4f}" if value.std is not None else "")


def _covid_class(classes: Sequence[str]) -> str | None:
    return "COVID-19" if "COVID-19" in classes else None


def _reference_per_model(tables: StudyTables, ref: Reference) -> str:
    """Every model: our slice-level one-vs-rest row beside the paper's row, per class (same task only)."""
    metrics = [m for m in PER_CLASS_METRICS if m in REFERENCE_METRICS]
    header = ["Model", "Class", "Source", *(METRIC_TITLES[m] for m in metrics)]
    rows: list[list[str]] = []
    for model in tables.models:
        published = ref.per_class(model)
        name = ref.model_name(model)
        for cls in tables.classes:
            rows.append([model, cls, "ours", *(_our_value(tables, model, m, cls) for m in metrics)])
            if published:
                rows.append(
                    [model, cls, f"paper ({name})", *(_paper_value(published[cls].get(m)) for m in metrics)]
                )
        if not published:
            rows.append([model, "", "paper", "no published row for this model", *[""] * (len(metrics) - 1)])
    return (
        "<h3>Per model and class (one-vs-rest, slice level): ours beside the paper's tables</h3>"
        f"{_table(header, rows, cls='reference')}"
    )


def _reference_binary(tables: StudyTables, ref: Reference) -> str:
    covid = _covid_class(tables.classes)
    binary = [v for v in ref.values if v.n_classes == 2]
    if len(tables.classes) != 2 or covid is None or not binary:
        return ""
    ours = [f"Ours: {m}, {covid} one-vs-rest" for m in tables.models]
    header = ["Dataset", "Model", "Metric", "Paper (mean ± std)", *ours]
    rows = [
        [
            v.dataset,
            v.model,
            METRIC_TITLES.get(v.metric, v.metric),
            _paper_value(v),
            *(_our_value(tables, m, v.metric, covid) for m in tables.models),
        ]
        for v in binary
    ]
    return "<h3>The abstract's 2-class figures (another dataset)</h3>" + _table(header, rows)


def _reference_section(tables: StudyTables, ref: Reference) -> str:
    if ref.same_task(tables.classes):
        body = _reference_per_model(tables, ref)
    else:
        body = (
            f'<p class="note">The published per-model tables are for the 3-class task '
            f"({', '.join(ref.classes)}); this study's classes ({', '.join(tables.classes)}) are another "
            "task, so they are not shown beside ours.</p>"
        ) + _reference_binary(tables, ref)
    facts = "".join(f"<li>{_e(f)}</li>" for f in ref.facts)
    notes = "".join(f"<li>{_e(n)}</li>" for n in ref.notes)
    return (
        f'<section id="reference"><h2>Published reference: {_e(ref.title)}</h2>'
        f'<p class="note">Source: {_e(ref.source)}</p>{body}'
        f'<ul>{facts}</ul><p><strong>Caveats</strong></p><ul class="note">{notes}</ul></section>'
    )


def _explanations_section(study: Path) -> str:
    panels = sorted((study / "explanations").rglob("*.png"))[:MAX_EXPLANATIONS]
    if not panels:
        return ""
    images = "".join(_img(p, f"explanation {p.stem}", str(p.relative_to(study))) for p in panels)
    return (
        f'<section id="explanations"><h2>Explanations (Grad-CAM)</h2>{images}'
        '<p class="note">Class activation maps of a few slices (from <code>covidct explain</code>).</p>'
        f"{_audit_table(study)}</section>"
    )


def _audit_table(study: Path) -> str:
    """The shortcut audit of the explained slices (``explanations/*/audit.csv``), per model and class."""
    tables = sorted((study / "explanations").glob("*/audit.csv"))
    if not tables:
        return ""
    audit = pd.concat([pd.read_csv(t) for t in tables], ignore_index=True).dropna(subset=["lung_share"])
    if audit.empty:
        return ""
    audit["outside"] = audit["outside"].astype(str).str.lower() == "true"
    rows = [
        [
            model,
            cls,
            len(g),
            f"{g.lung_share.mean():.2f}",
            f"{g.lung_fraction.mean():.2f}",
            f"{g.outside.mean():.0%}",
        ]
        for (model, cls), g in audit.groupby(["model", "class"], sort=True)
    ]
    header = ["Model", "Class", "Slices", "CAM energy in lungs", "Random map", "Mostly outside the lungs"]
    return (
        '<h3 id="audit">Shortcut audit</h3>'
        + _table(header, rows)
        + "<p class=\"note\">Share of each map's energy inside the lung mask vs the lungs' share of the "
        "slice (what a random map scores); a slice is mostly outside when under half its energy is in the "
        "lungs.</p>"
    )


def render_report(study_dir: PathLike, *, reference: str | None = None, title: str | None = None) -> str:
    """The study's HTML report as a string.

    Raises:
        DataError: no study folder or no predictions in it. ConfigError: an unknown ``reference``.
    """
    ref = get_reference(reference) if reference else None
    tables = build_study_tables(study_dir)
    study = Path(study_dir)
    body = [
        _setup_section(tables),
        _warnings_section(tables),
        _models_section(tables),
        _multiclass_section(tables),
        _stats_section(tables),
        _per_class_section(tables),
        _figures_section(tables),
        _reference_section(tables, ref) if ref else "",
        _explanations_section(study),
    ]
    template = Template(
        resources.files("covidct.report").joinpath("template.html").read_text(encoding="utf-8")
    )
    return template.substitute(
        title=_e(title or f"covidct comparison study: {study.resolve().name}"),
        version=_e(__version__),
        generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        study=_e(str(study)),
        body="\n".join(part for part in body if part),
    )


def write_report(study_dir: PathLike, out: PathLike | None = None, *, reference: str | None = None) -> Path:
    """Write the report (default ``STUDY/report.html``) atomically; returns its path."""
    target = Path(out) if out is not None else Path(study_dir) / "report.html"
    write_text_atomic(target, render_report(study_dir, reference=reference))
    return target
