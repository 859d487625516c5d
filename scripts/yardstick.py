"""How fast this machine is today, in one number: the seconds a fixed single-threaded pure-Python
loop takes (best of three). Cloud hosts of the same size differ, and the same host differs from day
to day; the benchmarks record this next to their timings so two runs can be compared fairly (a run
with a yardstick 1.4x larger is expected to take about 1.4x longer).

    .venv/bin/python scripts/yardstick.py
"""
from __future__ import annotations

import time

LOOP = 10_000_000


def _loop() -> int:
    s = 0
    for i in range(LOOP):
        s += i ^ (i >> 3)
    return s


def yardstick_seconds(repeats: int = 3) -> float:
    """Best of ``repeats`` timings of the fixed loop, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        _loop()
        best = min(best, time.perf_counter() - t)
    return round(best, 3)


def announce() -> float:
    """Measure, print one line and return the seconds (what the benchmarks call before Spark starts)."""
    secs = yardstick_seconds()
    print(f"yardstick {secs:.3f} s (scripts/yardstick.py: fixed 10 M-iteration Python loop, best of 3; "
          "lower is a faster machine)", flush=True)
    return secs


if __name__ == "__main__":
    announce()
