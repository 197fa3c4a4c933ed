"""Windows: presets, 'W,L' parsing, HU -> [0, 1] mapping."""

from __future__ import annotations

import numpy as np
import pytest

from covidct.data.window import WINDOW_PRESETS, Window, apply_window, parse_window
from covidct.errors import ConfigError


def test_presets_and_spec_parsing() -> None:
    assert parse_window("lung") == Window(1500, -600)
    assert parse_window("Mediastinal") == Window(350, 50)
    assert parse_window("400,40") == Window(400, 40)
    assert parse_window(" 1500 , -600 ") == Window(1500, -600)
    assert parse_window((80, 40)) == Window(80, 40)
    win = Window(10, 5)
    assert parse_window(win) is win
    assert set(WINDOW_PRESETS) == {"lung", "mediastinal"}


@pytest.mark.parametrize("spec", ["bone?", "1500", "a,b", "0,40", "-5,0"])
def test_bad_specs_are_config_errors(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_window(spec)


def test_apply_window_values() -> None:
    hu = np.array([-2000.0, -1350.0, -600.0, 150.0, 3000.0])
    out = apply_window(hu, "lung")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(apply_window(np.array([50.0, -125.0, 225.0]), "mediastinal"), [0.5, 0.0, 1.0])
    assert Window(1500, -600).lower == -1350 and Window(1500, -600).upper == 150
