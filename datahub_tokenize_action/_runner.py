"""One code path from a request to a result, shared by the action and the CLI:
request → route → columns → warehouse loop → result → write-back."""

from __future__ import annotations

import dataclasses
import logging
import uuid

from datahub.metadata.schema_classes import EditableSchemaMetadataClass, SchemaMetadataClass

from ._config import TokenizeConfig
from ._datahub.columns import select_columns
from ._datahub.graph import Graph, talking_to_datahub
from ._datahub import metrics, recording
from ._exceptions import DataHubError, NoColumnsError, TokenizeError, detached, first_line
from ._request import TokenizeRequest
from ._result import TokenizeResult, utc_now
from ._routing import route
from ._warehouses import warehouse_for

__all__ = ["Outcome", "failed_result", "run_request", "tokenize_dataset"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The result of a run, and the error that failed it (None on success)."""

    result: TokenizeResult
    error: TokenizeError | None = None


def tokenize_dataset(config: TokenizeConfig, request: TokenizeRequest, *, graph: Graph | None = None,
                     dry_run: bool = False, write_back: bool = True, attempt: int = 1) -> Outcome:
    """Tokenize one dataset and, with a ``graph``, record the outcome in DataHub.

    Columns come from the request, else from DataHub's schema aspects (needs ``graph``).
    Returns the outcome; a TokenizeError becomes a FAILED result (and is returned with
    it). When recording the outcome in DataHub fails, the outcome carries a DataHubError
    (transient) instead: the table may be tokenized, but DataHub does not show it yet,
    and a retry (0 rows left to change) writes it. ``attempt``: which try of the request's
    run this is (its run instance in DataHub shows it).
    """
    with metrics.observed_run(request.dataset_urn) as ended:
        outcome = _tokenize_dataset(config, request, graph=graph, dry_run=dry_run, write_back=write_back,
                                    attempt=attempt)
        ended.append(outcome.result)
    return outcome


def _tokenize_dataset(config: TokenizeConfig, request: TokenizeRequest, *, graph: Graph | None,
                      dry_run: bool, write_back: bool, attempt: int) -> Outcome:
    started_at = utc_now()
    run_id = request.run_id or uuid.uuid4().hex
    records = graph is not None and write_back and config.write_back.enabled and not dry_run
    schema_editable: EditableSchemaMetadataClass | None = None
    try:
        connection, ref = route(request.dataset_urn, config.connections)
        columns = request.columns
        if not columns and graph is not None:
            with talking_to_datahub(f"dataset {request.dataset_urn}: reading its schema from DataHub to choose columns"):
                schema = graph.get_aspect(request.dataset_urn, SchemaMetadataClass)
                schema_editable = graph.get_aspect(request.dataset_urn, EditableSchemaMetadataClass)  # type: ignore[assignment]
            selection = select_columns(schema, schema_editable, config.column_selection, config.trigger_tag)  # type: ignore[arg-type]
            columns = selection.columns
            if columns:
                logger.info("%s: columns %s chosen by %s", request.dataset_urn, ", ".join(columns), selection.source)
        if not columns and graph is None:
            raise NoColumnsError(
                f"dataset {request.dataset_urn}: the event names no column and there is no `datahub:` "
                f"section to look them up; tag the columns one by one with {config.trigger_tag}, add a "
                "`datahub:` section (server, token) to the pipeline file, or with the CLI pass --columns a,b"
            )
        if not columns:
            raise NoColumnsError(
                f"dataset {request.dataset_urn}: no PII columns found; tag the columns in DataHub with "
                f"{config.trigger_tag} or a PII tag ({', '.join(config.column_selection.pii_tags)}), or "
                "configure `column_selection.name_patterns` (with the CLI: --columns a,b)"
            )
        warehouse = warehouse_for(connection, config.build_tokenizer(), config.run)
        if records:
            recording.record_start(graph, config, request, run_id, started_at=started_at,  # type: ignore[arg-type]
                                   columns=tuple(columns), attempt=attempt)
        try:
            result = warehouse.run(ref, columns, dry_run=dry_run, run_id=run_id)
        finally:
            warehouse.dispose()
        outcome = Outcome(result.replace(trigger=request.trigger))
    except TokenizeError as e:
        # The caller reports it (the CLI on stderr, the pipeline when the action raises).
        logger.info("%s: FAILED: %s", request.dataset_urn, e)
        outcome = Outcome(failed_result(request, e, dry_run=dry_run, started_at=started_at, run_id=run_id),
                          detached(e))
    # A run that failed talking to DataHub is not recorded there: the write-back would meet
    # the same failure and say it twice (the pipeline's retry or the user runs it again).
    failed_on_datahub = isinstance(outcome.error, DataHubError)
    if records and not failed_on_datahub:
        what = "SUCCESS" if outcome.error is None else f"FAILED ({outcome.error})"
        try:
            with talking_to_datahub(f"dataset {request.dataset_urn}: the run ended {what}, but recording that in DataHub"):
                recording.write_back(graph, config, request, outcome.result, schema_editable,  # type: ignore[arg-type]
                                     attempt=attempt)
        except DataHubError as e:
            metrics.writeback_failed(request.dataset_urn)
            outcome = Outcome(outcome.result, detached(e))
    return outcome


def run_request(config: TokenizeConfig, request: TokenizeRequest, *, dry_run: bool = False) -> TokenizeResult:
    """Tokenize the request's columns without DataHub; raise the TokenizeError on failure."""
    outcome = tokenize_dataset(config, request, dry_run=dry_run)
    if outcome.error is not None:
        raise outcome.error
    return outcome.result


def failed_result(request: TokenizeRequest, error: BaseException, *, dry_run: bool = False,
                  started_at: str | None = None, run_id: str | None = None) -> TokenizeResult:
    """A FAILED result for ``request`` carrying ``error``'s message (already free of secrets)."""
    now = utc_now()
    message = str(error) if isinstance(error, TokenizeError) else f"unexpected {type(error).__name__}: {first_line(error)}"
    return TokenizeResult(
        status="FAILED",
        dataset=request.dataset_urn,
        columns=tuple(request.columns or ()),
        dry_run=dry_run,
        run_id=run_id or request.run_id or uuid.uuid4().hex,
        started_at=started_at or now,
        ended_at=now,
        error=message,
        error_type=type(error).__name__,
        trigger=request.trigger,
        # With commit_every_batch, what the batches committed before the failure hold.
        **getattr(error, "committed_counts", {}),
    )
