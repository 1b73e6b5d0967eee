"""Peak resident memory of named processes, sampled on a thread while a phase runs."""

from __future__ import annotations

import contextlib
import threading
import time

import psutil


class RssSampler(threading.Thread):
    def __init__(self, procs: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.procs = {name: psutil.Process(pid) for name, pid in procs.items()}
        self.peak = dict.fromkeys(procs, 0.0)
        self.running = True

    def run(self) -> None:
        while self.running:
            for name, proc in self.procs.items():
                with contextlib.suppress(psutil.Error):
                    self.peak[name] = max(self.peak[name], proc.memory_info().rss / 2**20)
            time.sleep(0.25)
