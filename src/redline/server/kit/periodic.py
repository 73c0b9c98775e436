"""A background pass repeated every `interval` seconds in a daemon thread, until stopped: the
sweeps of the embedded worker (retention, executions, the shard timeout) share this one loop.

    class Sweep(Periodic):
        def run_once(self) -> None: ...

    sweep = Sweep("redline-sweep", interval=5).start()
    ...
    sweep.stop()

A pass that raises (the database went away, say) is logged and the next pass tries again: a
background loop never dies of one bad pass."""

from __future__ import annotations

import logging
import threading
from typing import Self

log = logging.getLogger("redline.worker")


class Periodic:
    def __init__(self, name: str, interval: float, *, first_at_start: bool = False):
        self.name = name
        self.interval = interval
        self.first_at_start = first_at_start  # one pass at once, before the first wait
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def _run(self) -> None:
        if self.first_at_start:
            self._one_pass()
        while not self._stopping.wait(self.interval):
            self._one_pass()

    def _one_pass(self) -> None:
        try:
            self.run_once()
        except Exception:
            log.warning("%s: a pass failed; the next one tries again", self.name,
                        exc_info=True)
