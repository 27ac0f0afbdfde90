"""Prometheus metrics of runs and events, in the default registry: the one the stock
``datahub-actions --enable-monitoring`` serves on ``:<monitoring-port>/metrics`` (8000 by
default; the stock image sets it with ``DATAHUB_ACTIONS_MONITORING_ENABLED=true``).

In the CLI's process nothing serves them; counting costs nothing there.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Iterator

from prometheus_client import Counter, Gauge, Histogram

from .._result import TokenizeResult

__all__ = ["event_ignored", "observed_run", "platform_of", "tags_waiting", "writeback_failed"]

_PREFIX = "datahub_tokenize"

RUNS = Counter(f"{_PREFIX}_runs", "Tokenization runs that ended, by warehouse platform and status "
               "(SUCCESS or FAILED; dry runs are counted with dry_run=true).", ["platform", "status", "dry_run"])
ROWS_SCANNED = Counter(f"{_PREFIX}_rows_scanned", "Rows runs read (rows holding plaintext).", ["platform"])
ROWS_UPDATED = Counter(f"{_PREFIX}_rows_updated", "Rows runs updated (dry runs excluded).", ["platform"])
VALUES_TOKENIZED = Counter(f"{_PREFIX}_values_tokenized", "Values runs replaced by tokens (dry runs excluded).",
                           ["platform"])
RUN_DURATION = Histogram(f"{_PREFIX}_run_duration_seconds", "Wall time of runs that ended, from the request to "
                         "the write-back.", ["platform", "status"],
                         buckets=(1, 5, 15, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, float("inf")))
IN_PROGRESS = Gauge(f"{_PREFIX}_runs_in_progress", "Runs in progress.", ["platform"])
OLDEST_RUN_START = Gauge(f"{_PREFIX}_oldest_run_start_time_seconds", "Unix time the longest-running run in "
                         "progress started (0: none runs); `time() - ` it is how long that run has taken.",
                         ["platform"])
WRITEBACK_FAILURES = Counter(f"{_PREFIX}_writeback_failures", "Runs whose outcome could not be recorded in "
                             "DataHub (the table may be tokenized; a retry records it).", ["platform"])
TAGS_WAITING = Gauge(f"{_PREFIX}_tags_waiting", "Datasets the last reconcile sweep found carrying the trigger "
                     "tag with no run to answer it (it then ran them).", [])
EVENTS_IGNORED = Counter(f"{_PREFIX}_events_ignored", "Events the action received and did not run, by reason.",
                         ["reason"])

#: Why an event was not run (the ``reason`` label).
NOT_A_TRIGGER = "not_a_trigger"  # another tag, another entity, a removal: the filter let it through
TRIGGER_GONE = "trigger_gone"  # the tag left the dataset before the run, and no run succeeded
RETRY_OF_PERMANENT_FAILURE = "retry_of_permanent_failure"  # the pipeline's retry of a failure that recurs


_lock = threading.Lock()
#: Per platform, the wall-clock start of each run in progress.
_starts: dict[str, dict[object, float]] = {}


def platform_of(dataset_urn: str) -> str:
    """The platform name in a dataset URN (``urn:li:dataset:(urn:li:dataPlatform:<p>,...)``), or
    ``unknown`` for a URN that is not one."""
    prefix = "urn:li:dataset:(urn:li:dataPlatform:"
    if dataset_urn.startswith(prefix) and "," in dataset_urn:
        return dataset_urn[len(prefix):].split(",", 1)[0] or "unknown"
    return "unknown"


@contextlib.contextmanager
def observed_run(dataset_urn: str) -> Iterator[list[TokenizeResult]]:
    """Counts one run: in progress while the block runs, then (from the result the block
    appends to the yielded list) its status, rows, values and duration."""
    platform = platform_of(dataset_urn)
    ended: list[TokenizeResult] = []
    IN_PROGRESS.labels(platform).inc()
    start = time.monotonic()
    token = object()
    with _lock:
        _starts.setdefault(platform, {})[token] = time.time()
        OLDEST_RUN_START.labels(platform).set(min(_starts[platform].values()))
    try:
        yield ended
    finally:
        with _lock:
            del _starts[platform][token]
            OLDEST_RUN_START.labels(platform).set(min(_starts[platform].values(), default=0))
        IN_PROGRESS.labels(platform).dec()
        if ended:
            result = ended[-1]
            RUNS.labels(platform, result.status, str(result.dry_run).lower()).inc()
            RUN_DURATION.labels(platform, result.status).observe(time.monotonic() - start)
            if not result.dry_run:
                ROWS_SCANNED.labels(platform).inc(result.rows_scanned)
                ROWS_UPDATED.labels(platform).inc(result.rows_updated)
                VALUES_TOKENIZED.labels(platform).inc(sum(result.values_tokenized.values()))


def writeback_failed(dataset_urn: str) -> None:
    WRITEBACK_FAILURES.labels(platform_of(dataset_urn)).inc()


def tags_waiting(n: int) -> None:
    TAGS_WAITING.set(n)


def event_ignored(reason: str) -> None:
    EVENTS_IGNORED.labels(reason).inc()
