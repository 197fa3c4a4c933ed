"""CT display windows: Hounsfield units -> [0, 1].

A window is (width, level): values below ``level - width / 2`` map to 0, above ``level + width / 2`` to 1,
linear in between. Presets: ``lung`` (W1500/L-600, the default) and ``mediastinal`` (W350/L50); ``"W,L"`` for
anything else (issue #2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from covidct.errors import ConfigError

WINDOW_PRESETS: dict[str, tuple[float, float]] = {"lung": (1500.0, -600.0), "mediastinal": (350.0, 50.0)}


@dataclass(frozen=True)
class Window:
    """A CT display window in Hounsfield units."""

    width: float
    level: float

    def __post_init__(self) -> None:
        if not np.isfinite(self.width) or not np.isfinite(self.level) or self.width <= 0:
            raise ConfigError(
                f"window width must be > 0 and finite, got width={self.width}, level={self.level}"
            )

    @property
    def lower(self) -> float:
        return self.level - self.width / 2.0

    @property
    def upper(self) -> float:
        return self.level + self.width / 2.0

    def __str__(self) -> str:
        return f"{self.width:g},{self.level:g}"


def parse_window(spec: str | Window | tuple[float, float]) -> Window:
    """``"lung"``, ``"mediastinal"``, ``"1500,-600"`` (width, level), a ``(width, level)`` pair, a Window."""
    if isinstance(spec, Window):
        return spec
    if isinstance(spec, tuple):
        if len(spec) != 2:
            raise ConfigError(f"window must be (width, level), got {spec!r}")
        return Window(float(spec[0]), float(spec[1]))
    if not isinstance(spec, str):
        raise ConfigError(f"window must be a preset name or 'W,L', got {spec!r}")
    key = spec.strip().lower()
    if key in WINDOW_PRESETS:
        return Window(*WINDOW_PRESETS[key])
    parts = [p.strip() for p in key.replace("/", ",").split(",")]
    if len(parts) == 2:
        try:
            return Window(float(parts[0]), float(parts[1]))
        except ValueError:
            pass
    presets = ", ".join(WINDOW_PRESETS)
    raise ConfigError(f"unknown window {spec!r}: use one of {presets} or 'WIDTH,LEVEL' such as '1500,-600'")


def apply_window(hu: np.ndarray, window: str | Window | tuple[float, float] = "lung") -> np.ndarray:
    """Map Hounsfield units to float32 in [0, 1] through ``window``."""
    win = parse_window(window)
    out = np.array(hu, dtype=np.float32)  # one float32 buffer, scaled in place (large uploads, issue 11)
    out -= np.float32(win.lower)
    out /= np.float32(win.width)
    return np.clip(out, 0.0, 1.0, out=out)
