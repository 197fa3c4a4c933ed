"""Configuration plumbing shared by every stage.

Each stage owns a frozen dataclass (``TrainConfig``, ``CVConfig``, ...). :func:`load_config` alone applies
the precedence *flag > config file > default*: a flag left at ``None`` means "not given" and never overwrites
the file. Nested dataclasses are built from nested dicts, and unknown keys raise :class:`ConfigError`.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from covidct.errors import ConfigError

T = TypeVar("T")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) config dataclass; paths become strings."""

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    return convert(cfg)


def _dataclass_type(annotation: Any) -> type | None:
    """The dataclass inside ``annotation`` (``X``, ``X | None``), if any."""
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if isinstance(arg, type) and dataclasses.is_dataclass(arg):
                return arg
    return None


def config_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build ``cls`` from a dict, recursing into nested dataclass fields; unknown keys are an error."""
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{cls.__name__}: unknown option(s) {', '.join(unknown)}; known: {', '.join(fields)}"
        )
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        nested = _dataclass_type(hints.get(name))
        if nested is not None and isinstance(value, dict):
            value = config_from_dict(nested, value)
        elif isinstance(value, list) and typing.get_origin(hints.get(name)) is tuple:
            value = tuple(value)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{cls.__name__}: {exc}") from None


def load_config(cls: type[T], path: str | Path | None = None, **overrides: Any) -> T:
    """Flag > file > default. ``None`` overrides are ignored; ``section.key`` style is not needed: pass
    nested overrides as dicts, e.g. ``train={"epochs": 3}``."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            merged = dict(data[key])
            merged.update({k: v for k, v in value.items() if v is not None})
            data[key] = merged
        elif isinstance(value, dict):
            data[key] = {k: v for k, v in value.items() if v is not None}
        else:
            data[key] = value
    return config_from_dict(cls, data)
