"""What the tracker costs the application, measured against a floor taken in the same run.

- `record()` in the caller's thread, per call (median and p99 over N calls, microseconds), with
  the writer thread running as in production. Floor: `queue.Queue.put_nowait` of a ready-made
  dict of the same fields, the least any queue-based recorder can do.
- `record_response()` with an OpenAI-shaped dict response, same floor.
- The writer's sustained throughput (events per second): N queued events validated, serialized
  and appended to the landing folder by the background thread. Floor: one raw append of the
  same, already-serialized lines to a file on the same disk.

Each result is {"name", "value", "unit", "floor", "ratio"} with ratio = value / floor (for
microseconds: times the floor's cost; for events per second: the fraction of raw disk speed).
"""

from __future__ import annotations

import os
import queue
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from spendwatch.tracker import Tracker

N = 20_000

CHAT_RESPONSE = {
    "object": "chat.completion",
    "model": "gpt-4o-mini-2024-07-18",
    "usage": {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "prompt_tokens_details": {"cached_tokens": 1024},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
}


def _p99(samples: list[int]) -> float:
    return sorted(samples)[int(len(samples) * 0.99) - 1]


def _result(name: str, value: float, unit: str, floor: float) -> dict:
    return {
        "name": name,
        "value": round(value, 3),
        "unit": unit,
        "floor": round(floor, 3),
        "ratio": round(value / floor, 2) if floor else None,
    }


def _time_calls(call, n: int) -> list[int]:
    clock = time.perf_counter_ns
    samples = []
    append = samples.append
    for i in range(n):
        t0 = clock()
        call(i)
        append(clock() - t0)
    return samples


def _floor_put_nowait(n: int) -> list[int]:
    q: queue.Queue = queue.Queue(n + 1)
    now = datetime.now(UTC)

    def put(i: int) -> None:
        q.put_nowait(
            {
                "event_id": "0b0f5d0e-8a3c-4f57-9d1e-2d7f0c6a9b11",
                "occurred_at": now,
                "provider": "openai",
                "model": "gpt-4o-mini",
                "input_tokens": i,
                "output_tokens": 1,
                "feature": "bench",
            }
        )

    return _time_calls(put, n)


def _bench_record(home: Path, n: int) -> tuple[list[int], list[int], dict]:
    tracker = Tracker(home=home, feature="bench", team_id="perf", writer_id="bench-record")
    try:
        for i in range(1000):  # warm up imports, the writer thread, the disk folders
            tracker.record(provider="openai", model="gpt-4o-mini", input_tokens=i, output_tokens=1)
        tracker.flush(30)
        record = _time_calls(
            lambda i: tracker.record(
                provider="openai", model="gpt-4o-mini", input_tokens=i, output_tokens=1
            ),
            n,
        )
        tracker.flush(60)
        response = _time_calls(lambda i: tracker.record_response(CHAT_RESPONSE), n)
        tracker.flush(60)
        return record, response, tracker.stats()
    finally:
        tracker.close(60)


def _bench_writer(home: Path, n: int) -> tuple[float, float]:
    # Queue everything first (the writer sleeps: long interval, queue too big to wake it), then
    # time the background thread draining it to disk.
    tracker = Tracker(
        home=home, feature="bench", writer_id="bench-writer", queue_size=4 * n + 4,
        flush_interval=3600,
    )  # fmt: skip
    try:
        tracker.record(provider="openai", model="gpt-4o-mini", input_tokens=1, output_tokens=1)
        tracker.flush(30)
        for i in range(n):
            tracker.record(provider="openai", model="gpt-4o-mini", input_tokens=i, output_tokens=1)
        t0 = time.perf_counter()
        tracker.flush(300)
        writer_seconds = time.perf_counter() - t0
        assert tracker.stats()["written"] == n + 1, tracker.stats()
    finally:
        tracker.close(60)

    lines = b"".join(p.read_bytes() for p in home.rglob("bench-writer-*.jsonl"))
    raw_times = []
    for attempt in range(5):  # the raw write is short and noisy: take the median of five
        raw = home / f"raw-floor-{attempt}.jsonl"
        t0 = time.perf_counter()
        fd = os.open(raw, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, lines)
        finally:
            os.close(fd)
        raw_times.append(time.perf_counter() - t0)
    raw_seconds = statistics.median(raw_times)
    return n / writer_seconds, (n + 1) / raw_seconds


def run() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="spendwatch-bench-") as tmp:
        home = Path(tmp)
        floor = _floor_put_nowait(N)
        record, response, stats = _bench_record(home / "record", N)
        writer_rate, raw_rate = _bench_writer(home / "writer", N)
    floor_median, floor_p99 = statistics.median(floor) / 1000, _p99(floor) / 1000
    results = [
        _result("tracker_record_median", statistics.median(record) / 1000, "us", floor_median),
        _result("tracker_record_p99", _p99(record) / 1000, "us", floor_p99),
        _result(
            "tracker_record_response_median",
            statistics.median(response) / 1000,
            "us",
            floor_median,
        ),  # fmt: skip
        _result("tracker_record_response_p99", _p99(response) / 1000, "us", floor_p99),
        _result("tracker_writer_throughput", writer_rate, "events/s", raw_rate),
    ]
    if stats["dropped"]:  # the writer fell behind during the record() loop: say so
        for result in results[:4]:
            result["note"] = f"{stats['dropped']} events dropped (queue full) during the run"
    return results


if __name__ == "__main__":
    for row in run():
        print(
            f"{row['name']:34} {row['value']:>12,.3f} {row['unit']:9} floor {row['floor']:>12,.3f}"
            f"  ratio {row['ratio']}"
        )
