"""A small load test on loopback: bounded count, every request answered, none 5xx, no files left behind."""

from __future__ import annotations

from tests.serve.conftest import load_benchmark, png_bytes


def test_concurrent_predict_requests_all_answered(live_server: str) -> None:
    bench = load_benchmark()
    result = bench.fire(live_server, png_bytes(), requests=32, concurrency=8, timeout_s=120.0)
    assert result.statuses == {200: 32}, result.statuses
    assert len(result.latencies_ms) == 32 and result.throughput > 0


def test_mixed_good_and_bad_uploads_under_load(live_server: str) -> None:
    """Bad uploads between good ones get their 4xx and do not disturb the others."""
    bench = load_benchmark()
    good = bench.fire(live_server, png_bytes(), requests=8, concurrency=4, route="/explain")
    bad = bench.fire(live_server, b"not an image", requests=8, concurrency=4)
    assert good.statuses == {200: 8} and bad.statuses == {415: 8}
