"""Error types: user errors (fixable by the user, shown as one line) versus bugs (tracebacks)."""

from __future__ import annotations


class CovidCTError(Exception):
    """Something the user can fix: CLI exit 2, HTTP 4xx, never a traceback."""


class ConfigError(CovidCTError, ValueError):
    """An invalid option or configuration value."""


class UnknownModelError(ConfigError):
    """A model name that is neither in the registry nor a timm architecture."""


class DataError(CovidCTError):
    """A file or dataset that cannot be used; the message starts with the path: ``"s01.dcm: no pixels"``."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class CheckpointError(CovidCTError):
    """A checkpoint or exported model that is missing, corrupt or from an incompatible version."""


class CovidCTWarning(UserWarning):
    """A result is usable but weaker than it looks (e.g. slice-level folds without patient ids)."""
