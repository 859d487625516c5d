"""Peak resident memory of a benchmark: this process and all its children (the Spark JVM and its
Python workers), sampled in a background thread; optionally per named stage."""
from __future__ import annotations

import threading
import time

import psutil


class PeakMemory(threading.Thread):
    """Samples every ``interval`` seconds; ``peak`` is the highest total in bytes and
    ``stage_peaks[stage]`` the highest while ``stage`` was set."""

    def __init__(self, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = 0
        self.running = True
        self.stage = ""
        self.stage_peaks: dict[str, int] = {}

    @staticmethod
    def sample() -> int:
        me = psutil.Process()
        total = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def run(self) -> None:
        while self.running:
            m = self.sample()
            self.peak = max(self.peak, m)
            if self.stage:
                self.stage_peaks[self.stage] = max(self.stage_peaks.get(self.stage, 0), m)
            time.sleep(self.interval)

    def stop(self) -> None:
        self.running = False
        self.join()
