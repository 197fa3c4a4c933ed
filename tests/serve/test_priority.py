"""Light requests first (issue 11): heavy work pauses at its checks while a light request is in progress,
for at most a capped time, so a normal request keeps the cores; and a DICOM series is decoded slice by slice
with a check before each file."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from covidct.serve.priority import LightFirst
from tests.serve.conftest import dicom_bytes, png_bytes, zip_bytes


def test_pause_returns_at_once_without_light_work() -> None:
    gate = LightFirst(max_pause_s=60.0)
    assert gate.pause() is True
    assert gate.paused_s == 0.0


def test_pause_gives_up_at_its_cap_while_light_work_goes_on() -> None:
    gate = LightFirst(max_pause_s=0.0)
    with gate.light():
        assert gate.light_in_progress == 1
        assert gate.pause() is False  # capped at 0 s: heavy work moves on
    assert gate.light_in_progress == 0
    assert gate.pause() is True


def test_pause_is_capped_by_the_callers_budget() -> None:
    gate = LightFirst(max_pause_s=60.0)
    with gate.light():
        assert gate.pause(limit_s=0.0) is False


def test_a_paused_heavy_thread_resumes_when_the_light_request_ends() -> None:
    gate = LightFirst(max_pause_s=30.0)
    entered, results = threading.Event(), []
    light = gate.light()
    light.__enter__()

    def heavy() -> None:
        entered.set()
        results.append(gate.pause())

    worker = threading.Thread(target=heavy)
    worker.start()
    assert entered.wait(10)
    light.__exit__(None, None, None)
    worker.join(20)
    assert not worker.is_alive() and results == [True]


def test_max_pause_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="max_pause_s"):
        LightFirst(max_pause_s=-1)


def test_load_series_runs_check_before_each_file_and_stops_when_it_raises(tmp_path: Path) -> None:
    from covidct.data.readers import load_series

    for k in range(4):
        (tmp_path / f"{k}.dcm").write_bytes(dicom_bytes(k))
    calls = []
    assert len(load_series(tmp_path, check=lambda: calls.append(1))) == 4
    assert len(calls) == 4

    def stop() -> None:
        if len(calls) >= 6:
            raise TimeoutError("budget")
        calls.append(1)

    with pytest.raises(TimeoutError):
        load_series(tmp_path, check=stop)


def test_heavy_requests_pause_for_light_ones_and_light_ones_are_counted(client) -> None:
    gate = client.app.state.priority
    pauses, seen_light = [], []
    original_pause, original_light = gate.pause, gate.light

    def pause(limit_s=None):
        pauses.append(limit_s)
        return original_pause(limit_s)

    def light():
        seen_light.append(1)
        return original_light()

    gate.pause, gate.light = pause, light
    assert client.post("/predict", files={"file": ("a.png", png_bytes())}).status_code == 200
    assert seen_light == [1] and pauses == []
    series = zip_bytes({f"{k}.dcm": dicom_bytes(k) for k in range(5)})
    res = client.post("/predict", files={"file": ("ct.zip", series)})
    assert res.status_code == 200, res.text
    assert seen_light == [1]
    # a pause point per ZIP member, per slice decoded and per model turn, each capped by the budget left
    assert len(pauses) >= 5 + 5 + 3
    assert all(p is not None and p > 0 for p in pauses)
    assert gate.light_in_progress == 0
