"""Keeps a driver's own prints off the process's stderr while one thread calls it.

psycopg2 2.9 (C code) prints the server's error to ``sys.stderr`` when the connection
dies while COPY data is being sent, chained with a ``SystemError`` of its own, and then
raises the error the run reports. The print ignores logging (so ``-q`` and the action's
log configuration) and holds the server's ``CONTEXT`` line, which quotes the COPY row
being sent: plaintext. While a thread is inside ``dropped()``, what it writes to
``sys.stderr`` is discarded; other threads write through unchanged.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import Any, Iterator, TextIO

__all__ = ["dropped"]

_lock = threading.Lock()
_local = threading.local()
_users = 0
_saved: TextIO | None = None
_gate: "_Gate | None" = None


class _Gate:
    """``sys.stderr`` while some thread is inside ``dropped()``."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        if getattr(_local, "depth", 0):
            return len(text)
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def dropped() -> Iterator[None]:
    """Discard what this thread writes to ``sys.stderr`` until the block ends."""
    global _users, _saved, _gate
    with _lock:
        if _users == 0:
            _saved = sys.stderr
            _gate = _Gate(sys.stderr)
            sys.stderr = _gate  # type: ignore[assignment]
        _users += 1
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1
        with _lock:
            _users -= 1
            if _users == 0:
                if sys.stderr is _gate:  # (unless someone replaced it meanwhile: theirs stays)
                    sys.stderr = _saved  # type: ignore[assignment]
                _saved = _gate = None
