"""Results are files a lab can share: the atomic writer gives the normal umask-derived mode, not 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from covidct.utils import atomic_path, remove_stale_temps, write_json_atomic, write_text_atomic


@pytest.fixture()
def umask_022():  # type: ignore[no-untyped-def]
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_files_get_0644_under_umask_022(tmp_path: Path, umask_022) -> None:  # type: ignore[no-untyped-def]
    write_text_atomic(tmp_path / "report.html", "<p>ok</p>")
    write_json_atomic(tmp_path / "metrics.json", {"a": 1})
    with atomic_path(tmp_path / "sub" / "preds.csv") as tmp:
        tmp.write_text("path,label\n")
    assert [_mode(tmp_path / n) for n in ("report.html", "metrics.json", "sub/preds.csv")] == [0o644] * 3
    assert not list(tmp_path.rglob(".*.tmp"))


def test_a_stricter_umask_is_respected(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        write_text_atomic(tmp_path / "private.txt", "x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "private.txt") == 0o600


def test_remove_stale_temps_only_removes_atomic_leftovers(tmp_path: Path) -> None:
    stale = [tmp_path / ".best.pt.abcd1234.tmp", tmp_path / ".last.pt.k1ll3d_9.tmp"]
    keep = [tmp_path / "best.pt", tmp_path / ".other.pt.abcd1234.tmp", tmp_path / "x.tmp"]
    for p in stale + keep:
        p.write_bytes(b"x")
    assert sorted(remove_stale_temps(tmp_path, ("best.pt", "last.pt"))) == sorted(stale)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)
