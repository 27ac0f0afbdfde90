"""The reconcile sweep: no tag left waiting.

A new consumer group starts at the latest offset, and an event can be lost while the action
is down or misconfigured: a dataset may carry the trigger tag with no run ever coming. On
start-up and then every ``reconcile.interval_s``, the sweep asks DataHub's search for
datasets carrying the trigger tag (on the dataset, or on a field, edited or ingested) and
returns the requests to run for those whose tag is still waiting.

``waiting`` is pure: it decides from the dataset's latest run record (the structured
property, else the custom property) whether the tag is still waiting.
"""

from __future__ import annotations

import datetime
import logging
import threading
from typing import Any, Callable, Iterator

from .. import _exceptions
from .._exceptions import first_line
from .._config import TokenizeConfig
from .._request import TokenizeRequest
from . import metrics, recording
from .graph import Graph, talking_to_datahub

__all__ = ["Reconciler", "sweep", "tagged_datasets", "waiting"]

logger = logging.getLogger(__name__)

#: How long after a successful run a tag still found by search is taken for search lagging
#: behind the run's removal of it, not for a new tag.
SETTLE_S = 600.0

#: Search fields holding tags: the dataset's own, its schema fields' as ingested, and as edited in DataHub.
TAG_FIELDS = ("tags", "fieldTags", "editedFieldTags")


def tagged_datasets(graph: Graph, tag: str) -> list[str]:
    """Dataset URNs carrying ``tag`` on the dataset or on a field (DataHub's search)."""
    or_filters = [{"and": [{"field": field, "values": [tag], "condition": "EQUAL"}]} for field in TAG_FIELDS]
    return list(dict.fromkeys(graph.get_urns_by_filter(  # type: ignore[attr-defined]
        entity_types=["dataset"], extra_or_filters=or_filters)))


def waiting(record: dict[str, Any], *, tags_removed: bool, now: datetime.datetime,
            settle_s: float = SETTLE_S) -> str | None:
    """Why a dataset that carries the trigger tag still waits for a run, given its latest run
    record ({} if none), or None when it does not.

    - no record: no run ever came (the event was missed);
    - the last run succeeded and removed the tag (``tags_removed``) more than ``settle_s``
      ago (search lags behind writes): the tag was added again since, and that event was missed;
    - the last run failed for a reason a retry can pass (an outage, a held lock): the
      pipeline's retries ran out. Failures a retry meets again (bad input) wait for a change
      and a new tag, as on the event path. A dry run does not count.
    """
    if not record or record.get("dry_run"):
        return "no run recorded"
    if record.get("status") == "SUCCESS":
        if not tags_removed:
            return None  # write_back.tags is off: the tag stays after every run
        try:
            ended = datetime.datetime.fromisoformat(str(record.get("ended_at")))
        except ValueError:
            return "tagged again after its last successful run"
        if (now - ended).total_seconds() < settle_s:
            return None
        return "tagged again after its last successful run"
    error_type = getattr(_exceptions, str(record.get("error_type")), None)
    if isinstance(error_type, type) and issubclass(error_type, _exceptions.TokenizeError) and not error_type.permanent:
        return f"its last run failed with {record['error_type']}, which a retry can pass"
    return None


def sweep(graph: Graph, config: TokenizeConfig) -> Iterator[TokenizeRequest]:
    """The requests to run now: one per tagged dataset whose tag is still waiting (trigger
    ``reconcile``; columns chosen as for a dataset-level tag).

    Raises:
        DataHubError: DataHub's search or the records could not be read.
    """
    with talking_to_datahub("the reconcile sweep: searching DataHub for datasets tagged "
                            f"{config.trigger_tag}"):
        urns = tagged_datasets(graph, config.trigger_tag)
    logger.info("reconcile: %d dataset(s) carry %s", len(urns), config.trigger_tag)
    for urn in urns:
        with talking_to_datahub(f"the reconcile sweep: reading the last run of {urn}"):
            why = waiting(recording.latest_record(graph, urn),
                          tags_removed=config.write_back.enabled and config.write_back.tags,
                          now=datetime.datetime.now(datetime.timezone.utc))
        if why is None:
            continue
        logger.info("reconcile: %s waits for a run (%s)", urn, why)
        yield TokenizeRequest(urn, trigger="reconcile")


class Reconciler:
    """Runs ``sweep`` on start-up and then every ``config.reconcile.interval_s`` in a daemon
    thread, handing each request to ``run`` (which must not raise for a failed run: the
    outcome is recorded in DataHub like any other). A sweep that cannot read DataHub is
    logged and tried again at the next interval."""

    def __init__(self, graph: Graph, config: TokenizeConfig, run: Callable[[TokenizeRequest], None]):
        self.graph, self.config, self.run = graph, config, run
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tokenize-reconcile", daemon=True)
        #: Sweeps completed (tests wait on it).
        self.sweeps = 0

    def start(self) -> "Reconciler":
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        options = self.config.reconcile
        if self._stop.wait(options.startup_delay_s):
            return
        while True:
            try:
                found = list(sweep(self.graph, self.config))
                metrics.tags_waiting(len(found))
                for request in found:
                    if self._stop.is_set():
                        return
                    self.run(request)
            except Exception as e:  # DataHub unreachable, a bug: the next sweep tries again
                logger.warning("reconcile: the sweep stopped (%s: %s); the next one is in %.0f s",
                               type(e).__name__, first_line(e), options.interval_s)
            self.sweeps += 1
            if self._stop.wait(options.interval_s):
                return
