"""Light requests first (issue 11): heavy work pauses at its checks while a light request is in progress,
for at most a capped time, so a normal request keeps the cores; and a DICOM series is decoded slice by slice
with a check before each file."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from covidct.serve.priority import PAUSE_SHARE, Allowance, LightFirst
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
    waiting, results = threading.Event(), []
    wait_for = gate._cond.wait_for

    def signalled_wait_for(predicate, timeout=None):  # type: ignore[no-untyped-def]
        waiting.set()  # the heavy thread holds the lock until wait_for releases it, so the light exit waits
        return wait_for(predicate, timeout)

    gate._cond.wait_for = signalled_wait_for  # type: ignore[method-assign]
    light = gate.light()
    light.__enter__()
    worker = threading.Thread(target=lambda: results.append(gate.pause()))
    worker.start()
    assert waiting.wait(10), "the heavy thread never waited"
    light.__exit__(None, None, None)
    worker.join(20)
    assert not worker.is_alive() and results == [True]
    assert gate.paused_s > 0


def test_an_allowance_caps_one_requests_pauses_in_all() -> None:
    gate = LightFirst(max_pause_s=60.0)
    allowance = Allowance(gate, total_s=0.05)
    with gate.light():
        assert allowance.pause() is False  # waited out what was left of the allowance, not 60 s
        spent = allowance.paused_s
        assert spent >= 0.05
        assert allowance.pause(limit_s=60.0) is False  # used up: no more waiting
        assert allowance.paused_s == spent
    assert allowance.pause() is True
    with pytest.raises(ValueError, match="total_s"):
        Allowance(gate, total_s=-1)


def test_a_heavy_request_under_steady_light_load_finishes_within_its_budget(loaded_model, upload_dir) -> None:
    """Pauses capped only per point would let a heavy request spend its whole budget paused (a 408)."""
    from fastapi.testclient import TestClient

    from covidct.serve.app import create_app

    app = create_app(loaded_model.predictor, tmp_dir=upload_dir, request_timeout_s=3.0)
    gate = app.state.priority
    gate.max_pause_s = 60.0  # one pause could take the whole budget
    series = zip_bytes({f"{k}.dcm": dicom_bytes(k) for k in range(5)})
    with TestClient(app) as client, gate.light():  # a light request in progress for the whole heavy one
        res = client.post("/predict", files={"file": ("ct.zip", series)})
    assert res.status_code == 200, res.text
    assert 0 < gate.paused_s <= 3.0 * PAUSE_SHARE + 0.5


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
    gate.max_pause_s = 0.01
    with original_light():  # a light request in progress: the heavy one waits at each of its pause points
        res = client.post("/predict", files={"file": ("ct.zip", series)})
    assert res.status_code == 200, res.text
    assert seen_light == [1]
    assert gate.paused_s > 0
    # a pause point per ZIP member, per slice decoded and per model turn, each capped by the budget left
    assert len(pauses) >= 5 + 5 + 3
    assert all(p is not None and p > 0 for p in pauses)
    assert gate.light_in_progress == 0
