"""covidct: train, compare, explain and deploy CNN classifiers for COVID-19 on chest CT.

Reproduces and extends Garg et al., "Efficient and Visualizable Convolutional Neural Networks for COVID-19
Classification Using Chest CT" (Expert Systems with Applications, 2022; arXiv:2012.11860).

The public API is lazy (PEP 562): ``import covidct`` loads neither torch nor the stage packages, so
``covidct --help`` stays fast; ``covidct.cross_validate`` imports its module on first use. Each CLI verb has
its function here (``explain`` is ``explain_model``: ``covidct.explain`` is the subpackage).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

#: public name -> "module:attribute"
_API: dict[str, str] = {
    # data
    "scan_dataset": "covidct.data.manifest:scan_dataset",
    "synthesize_dataset": "covidct.data.synth:synthesize_dataset",
    "audit": "covidct.data.audit:audit",
    # models
    "list_models": "covidct.models.registry:list_models",
    # training
    "TrainConfig": "covidct.training.config:TrainConfig",
    "TrainRunConfig": "covidct.training.config:TrainRunConfig",
    "CVConfig": "covidct.training.config:CVConfig",
    "train": "covidct.training.fit:train",
    "cross_validate": "covidct.training.cv:cross_validate",
    # study and report
    "StudyConfig": "covidct.study.config:StudyConfig",
    "compare": "covidct.study.compare:compare",
    "write_report": "covidct.report.html:write_report",
    "write_run_metrics": "covidct.report.run_metrics:write_run_metrics",
    # inference
    "EvaluateConfig": "covidct.inference.evaluate:EvaluateConfig",
    "evaluate": "covidct.inference.evaluate:evaluate",
    "export_onnx": "covidct.inference.export:export_onnx",
    "load_predictor": "covidct.inference.load:load_predictor",
    # explanations
    "ExplainConfig": "covidct.explain.api:ExplainConfig",
    "explain_model": "covidct.explain.api:explain",
    "activations": "covidct.explain.api:activations",
    # configuration and errors
    "load_config": "covidct.config:load_config",
    "CovidCTError": "covidct.errors:CovidCTError",
    "ConfigError": "covidct.errors:ConfigError",
    "DataError": "covidct.errors:DataError",
}

# No `if TYPE_CHECKING:` imports here: import-linter counts them, and every module that reads __version__
# would then seem to import every stage.
__all__ = [  # a literal list, so linters and IDEs see the names (tests check it matches _API)
    "__version__",
    "scan_dataset",
    "synthesize_dataset",
    "audit",
    "list_models",
    "TrainConfig",
    "TrainRunConfig",
    "CVConfig",
    "train",
    "cross_validate",
    "StudyConfig",
    "compare",
    "write_report",
    "write_run_metrics",
    "EvaluateConfig",
    "evaluate",
    "export_onnx",
    "load_predictor",
    "ExplainConfig",
    "explain_model",
    "activations",
    "load_config",
    "CovidCTError",
    "ConfigError",
    "DataError",
]


def __getattr__(name: str) -> Any:
    target = _API.get(name)
    if target is None:
        raise AttributeError(f"module 'covidct' has no attribute {name!r}")
    module, _, attribute = target.partition(":")
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
