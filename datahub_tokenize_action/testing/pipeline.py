"""Run the stock datahub-actions ``Pipeline`` in a thread, and an action that records events.

``RecordingAction`` is resolved by the pipeline's action registry from its import path
(the registry imports any ``type`` containing a ``.`` or ``:``)::

    sink = RecordingSink.new()
    config["action"] = sink.action_config()   # {"type": "datahub_tokenize_action.testing.pipeline.RecordingAction", ...}
    with running_pipeline(config):
        envelope, = sink.wait_for(1, timeout=30)
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from typing import Any, Callable, ClassVar, Dict, Iterator, List, Optional

from datahub_actions.action.action import Action
from datahub_actions.event.event_envelope import EventEnvelope
from datahub_actions.pipeline.pipeline import Pipeline
from datahub_actions.pipeline.pipeline_context import PipelineContext

__all__ = [
    "PipelineThread",
    "RecordingAction",
    "RecordingSink",
    "running_pipeline",
    "wait_until",
]


def wait_until(predicate: Callable[[], Any], timeout: float, message: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; return it.

    Raises:
        TimeoutError: with ``message`` if that does not happen within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{message} (waited {timeout}s)")
        time.sleep(interval)


class RecordingSink:
    """Where one ``RecordingAction`` puts the events it receives (thread-safe)."""

    _sinks: ClassVar[Dict[str, "RecordingSink"]] = {}
    _sinks_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, name: str) -> None:
        self.name = name
        self.events: List[EventEnvelope] = []
        self.contexts: List[PipelineContext] = []
        self._cond = threading.Condition()

    @classmethod
    def new(cls, name: Optional[str] = None) -> "RecordingSink":
        sink = cls(name or f"sink-{uuid.uuid4().hex[:8]}")
        with cls._sinks_lock:
            cls._sinks[sink.name] = sink
        return sink

    @classmethod
    def get(cls, name: str) -> "RecordingSink":
        with cls._sinks_lock:
            try:
                return cls._sinks[name]
            except KeyError:
                raise KeyError(
                    f"no RecordingSink named {name!r}; create it with RecordingSink.new()"
                ) from None

    def action_config(self) -> Dict[str, Any]:
        """The ``action:`` section of a pipeline config that records into this sink."""
        return {"type": f"{RecordingAction.__module__}.RecordingAction", "config": {"sink": self.name}}

    def add(self, event: EventEnvelope) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait_for(self, count: int = 1, timeout: float = 30.0) -> List[EventEnvelope]:
        """Block until at least ``count`` events arrived; return them all.

        Raises:
            TimeoutError: if fewer than ``count`` arrived within ``timeout`` seconds.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.events) >= count, timeout):
                raise TimeoutError(
                    f"sink {self.name!r}: {len(self.events)} of {count} events within {timeout}s"
                )
            return list(self.events)


class RecordingAction(Action):
    """An action that appends every event it is given to the ``RecordingSink`` named by
    its ``sink`` config key, and acks it."""

    def __init__(self, sink: RecordingSink, ctx: PipelineContext) -> None:
        self.sink = sink
        self.ctx = ctx
        sink.contexts.append(ctx)

    @classmethod
    def create(cls, config_dict: dict, ctx: PipelineContext) -> "RecordingAction":
        unknown = set(config_dict) - {"sink"}
        if unknown or "sink" not in config_dict:
            raise ValueError(f"RecordingAction takes exactly one key, 'sink'; got {sorted(config_dict)}")
        return cls(RecordingSink.get(config_dict["sink"]), ctx)

    def act(self, event: EventEnvelope) -> None:
        self.sink.add(event)

    def close(self) -> None:
        pass


class PipelineThread:
    """Runs ``pipeline.run()`` in a daemon thread; :meth:`stop` ends and closes it.

    The Kafka source polls with a 2 s timeout, so a stop takes up to ~2 s plus the
    consumer's group leave.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name=f"pipeline:{pipeline.name}", daemon=True)

    def _run(self) -> None:
        try:
            self.pipeline.run()
        except BaseException as exc:  # kept for stop() to re-raise in the test thread
            self.error = exc

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> "PipelineThread":
        self._thread.start()
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """Stop, join (at most ``timeout`` s) and close the pipeline.

        Raises:
            TimeoutError: if ``run()`` did not return in time.
            BaseException: whatever ``run()`` raised, if anything.
        """
        close = getattr(self.pipeline, "close", None)
        deadline = time.monotonic() + timeout
        if close is not None:  # stop() only signals the worker; close() after it has left
            self.pipeline.stop()
            self._thread.join(timeout)
        else:
            # acryl-datahub-actions 1.7.0 has no Pipeline.close(), and its stop() closes the
            # Kafka consumer at once, while the worker may be inside poll(): librdkafka does
            # not support that, and close() hung forever here. Signal as newer releases do
            # (the source's loop ends within its 2 s poll; it sets `running` again when it
            # starts, hence the repeat), then let stop() close what the worker left.
            self.pipeline._shutdown = True
            while self._thread.is_alive() and time.monotonic() < deadline:
                self.pipeline.source.running = False
                self._thread.join(0.2)
        if self._thread.is_alive():
            raise TimeoutError(f"pipeline {self.pipeline.name!r} did not stop within {timeout}s")
        if close is not None:
            close()
        else:
            self.pipeline.stop()
        if self.error is not None:
            raise self.error


@contextlib.contextmanager
def running_pipeline(config: Dict[str, Any], stop_timeout: float = 20.0) -> Iterator[Pipeline]:
    """``Pipeline.create(config)``, run in a thread for the ``with`` body, then stopped.

    An exception ``run()`` raised is re-raised on exit; if the body failed too (say a
    wait timed out because the source died), a RuntimeError chained to ``run()``'s
    exception is raised instead.
    """
    pipeline = Pipeline.create(config)
    runner = PipelineThread(pipeline).start()
    try:
        yield pipeline
    except BaseException:
        with contextlib.suppress(Exception):
            runner.stop(stop_timeout)
        if runner.error is not None:  # the likelier root cause of what the body saw
            raise RuntimeError(f"pipeline {pipeline.name!r} run() failed: {runner.error!r}") from runner.error
        raise
    runner.stop(stop_timeout)
