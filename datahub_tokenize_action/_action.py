"""The ``tokenize`` action of the DataHub Actions framework.

Registered as entry point ``tokenize`` in ``datahub_actions.action.plugins``: with this
package installed, ``type: tokenize`` works in the stock ``datahub actions`` CLI.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import logging

from datahub_actions.action.action import Action
from datahub_actions.event.event_envelope import EventEnvelope
from datahub_actions.pipeline.pipeline_context import PipelineContext

from ._config import TokenizeConfig
from ._datahub import metrics
from ._datahub.events import parse_event
from ._datahub.reconcile import Reconciler
from ._datahub.recording import current_request
from ._exceptions import TokenizeError, detached
from ._request import TokenizeRequest
from ._runner import tokenize_dataset

__all__ = ["TokenizeAction"]

logger = logging.getLogger(__name__)


class TokenizeAction(Action):
    """Tokenizes a dataset's PII columns when the trigger tag is added to it or to a column.

    Failures raise, so the pipeline's retry (``options.retry_count``) and its failed-events
    log see them. A transient failure (warehouse unreachable, table locked) is retried for
    real; safe, because a run skips values that already are tokens. A permanent one (bad
    input) is not: the pipeline's retries of that same event re-raise the remembered error
    without touching the warehouse or DataHub again.
    """

    _REMEMBERED_FAILURES = 64

    def __init__(self, config: TokenizeConfig, ctx: PipelineContext):
        self.config = config
        self.ctx = ctx
        self.graph = ctx.graph.graph if ctx.graph is not None else None
        self._permanent_failures: collections.OrderedDict[int, tuple[EventEnvelope, TokenizeError]] = (
            collections.OrderedDict()
        )
        #: Tries per run id (an event's deliveries and the pipeline's retries share one).
        self._attempts: collections.OrderedDict[str, int] = collections.OrderedDict()
        #: Held around each run: the event path and the reconcile sweep never run at once.
        self._running = threading.Lock()
        self._reconciler: Reconciler | None = None
        if self.graph is None:
            logger.warning(
                "pipeline %s has no `datahub:` section: columns must be tagged one by one (a dataset-level "
                "tag cannot look them up), nothing is written back to DataHub, and no reconcile sweep "
                "looks for tags left waiting", ctx.pipeline_name,
            )
        elif config.reconcile.enabled:
            self._reconciler = Reconciler(self.graph, config, self._reconcile).start()

    @classmethod
    def create(cls, config_dict: dict, ctx: PipelineContext) -> "TokenizeAction":
        config = TokenizeConfig.model_validate(config_dict or {})
        return cls(config, ctx)

    def act(self, event: EventEnvelope) -> None:
        remembered = self._permanent_failures.get(id(event))
        if remembered is not None and remembered[0] is event:
            # A pipeline retry of a permanent failure: nothing to redo (and no frames kept from the last time).
            metrics.event_ignored(metrics.RETRY_OF_PERMANENT_FAILURE)
            raise remembered[1].with_traceback(None)
        request = parse_event(event, self.config.trigger_tag)
        if request is None:
            metrics.event_ignored(metrics.NOT_A_TRIGGER)
            return
        if self.graph is not None:
            try:
                request = current_request(self.graph, self.config, request)  # a redelivery repeats its run
            except TokenizeError as e:
                raise detached(e)  # DataHub unreachable: transient, without the HTTP error behind it
            if request is None:
                metrics.event_ignored(metrics.TRIGGER_GONE)
                return
        request = dataclasses.replace(request, pipeline=self.ctx.pipeline_name)
        logger.info("tokenize %s%s", request.dataset_urn,
                    f" columns {', '.join(request.columns)}" if request.columns else "")
        with self._running:
            outcome = tokenize_dataset(self.config, request, graph=self.graph, attempt=self._attempt(request))
        if outcome.error is None:
            return
        if outcome.error.permanent:
            self._permanent_failures[id(event)] = (event, outcome.error)
            while len(self._permanent_failures) > self._REMEMBERED_FAILURES:
                self._permanent_failures.popitem(last=False)
        raise outcome.error

    def _reconcile(self, request: TokenizeRequest) -> None:
        """A run the sweep found waiting: recorded in DataHub like any other, never raised."""
        request = dataclasses.replace(request, pipeline=self.ctx.pipeline_name)
        with self._running:
            outcome = tokenize_dataset(self.config, request, graph=self.graph)
        logger.info("reconcile: %s %s%s", request.dataset_urn, outcome.result.status,
                    f" ({outcome.error})" if outcome.error is not None else "")

    def _attempt(self, request: TokenizeRequest) -> int:
        """1 for a run id's first try in this process, then 2, 3, ..."""
        if request.run_id is None:
            return 1
        n = self._attempts.pop(request.run_id, 0) + 1
        self._attempts[request.run_id] = n
        while len(self._attempts) > self._REMEMBERED_FAILURES * 16:
            self._attempts.popitem(last=False)
        return n

    def close(self) -> None:
        if self._reconciler is not None:
            self._reconciler.stop()
