"""The lazy public API in covidct/__init__.py: every name resolves, nothing heavy is imported up front."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import covidct


@pytest.mark.parametrize("name", covidct.__all__)
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(covidct, name)
    if name != "__version__":
        module, _, attribute = covidct._API[name].partition(":")
        assert value is getattr(importlib.import_module(module), attribute)
        assert callable(value)


def test_dir_lists_the_api_and_unknown_names_raise() -> None:
    assert covidct.__all__ == ["__version__", *covidct._API]
    assert set(covidct.__all__) <= set(dir(covidct))
    with pytest.raises(AttributeError, match="no_such_thing"):
        covidct.no_such_thing  # noqa: B018


def test_no_public_name_shadows_a_subpackage() -> None:
    # `import covidct.explain.api` sets covidct.explain to the subpackage: a function so named would vanish
    import pkgutil

    subpackages = {m.name for m in pkgutil.iter_modules(covidct.__path__)}
    assert not subpackages & set(covidct.__all__)


def test_import_covidct_is_torch_free() -> None:
    code = "import sys, covidct; covidct.__all__; dir(covidct); sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
