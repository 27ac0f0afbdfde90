"""A run's progress lines: rows done and the rate while rows are written, the current step
and its duration before and after, at a steady interval (a heartbeat thread)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Iterator

__all__ = ["Progress"]

logger = logging.getLogger(__name__)


class Progress:
    """What a run is doing, logged at most once and (with ``heartbeat``) at least once every
    ``interval`` seconds: while rows are read and written, rows done, the expected total and
    the rate; before and after, the step the run is in and how long it has taken so far (one
    statement can take minutes on a large table: the scan before writing, a keyset page that
    must pass many rows already done, the last apply)."""

    def __init__(self, name: str, interval: float, dry_run: bool):
        self.name, self.interval, self.dry_run = name, interval, dry_run
        self.expected: int | None = None  # set when the rows phase starts
        self.done = 0
        self.what = "connecting to the warehouse"
        self.step_start = self.last = time.monotonic()
        self._lock = threading.Lock()

    def step(self, what: str) -> None:
        """The run now does ``what`` (a phrase, e.g. "scanning the table"), not rows."""
        with self._lock:
            self.expected, self.what, self.step_start = None, what, time.monotonic()
        self._log_if_due()

    def rows(self, expected: int) -> None:
        """The run now reads, tokenizes and writes about ``expected`` rows."""
        with self._lock:
            self.expected, self.done, self.step_start = expected, 0, time.monotonic()
        self._log_if_due()

    def update(self, done: int) -> None:
        self.done = done
        self._log_if_due()

    def _log_if_due(self) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self.last < self.interval:
                return
            self.last = now
            prefix = "dry run " if self.dry_run else ""
            if self.expected is None:
                logger.info("%s%s: %s (%.0fs)", prefix, self.name, self.what, now - self.step_start)
                return
            rate = self.done / max(now - self.step_start, 1e-9)
            pct = f" ({100 * self.done / self.expected:.0f}%)" if self.expected else ""
            logger.info(
                "%s%s: %s / ~%s rows%s, %.0f rows/s",
                prefix, self.name, f"{self.done:,}", f"{self.expected:,}", pct, rate,
            )

    @contextlib.contextmanager
    def heartbeat(self) -> Iterator[None]:
        """Log from a thread whenever ``interval`` seconds pass without a line, until the block ends."""
        done = threading.Event()

        def beat() -> None:
            while not done.wait(max(self.interval - (time.monotonic() - self.last), 0.01)):
                self._log_if_due()

        thread = threading.Thread(target=beat, name="tokenize-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
