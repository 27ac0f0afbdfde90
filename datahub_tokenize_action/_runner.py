"""One code path from a request to a result, shared by the action and the CLI:
request → route → columns → warehouse loop → result → write-back."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
import uuid
import weakref
from typing import Iterator, Protocol, Sequence

from datahub.metadata.schema_classes import (
    DatasetPropertiesClass,
    EditableDatasetPropertiesClass,
    EditableSchemaMetadataClass,
    GlobalTagsClass,
    MetadataChangeProposalClass,
    SchemaMetadataClass,
    TagPropertiesClass,
)

from ._columns import select_columns, trigger_field_paths
from ._config import TokenizeConfig
from ._warehouses import warehouse_for
from ._exceptions import DataHubError, NoColumnsError, TokenizeError, detached, first_line
from ._request import TokenizeRequest
from ._result import TokenizeResult, utc_now
from ._routing import route
from ._writeback import RUN_RECORD_PROPERTY, outcome_mcps, tag_definition_mcps

__all__ = ["Outcome", "current_request", "failed_result", "run_request", "tokenize_dataset"]

logger = logging.getLogger(__name__)

#: Which write-back option owns which aspect of the outcome MCPs.
_ASPECT_OPTION = {
    "globalTags": "tags",
    "editableSchemaMetadata": "tags",
    "datasetProperties": "run_record",
    "editableDatasetProperties": "documentation",
}


class Graph(Protocol):
    """The part of ``datahub.ingestion.graph.client.DataHubGraph`` this module uses."""

    def get_aspect(self, entity_urn: str, aspect_type: type) -> object | None: ...

    def emit_mcps(self, mcps: Sequence[object]) -> object: ...


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The result of a run, and the error that failed it (None on success)."""

    result: TokenizeResult
    error: TokenizeError | None = None


def tokenize_dataset(config: TokenizeConfig, request: TokenizeRequest, *, graph: Graph | None = None,
                     dry_run: bool = False, write_back: bool = True) -> Outcome:
    """Tokenize one dataset and, with a ``graph``, record the outcome in DataHub.

    Columns come from the request, else from DataHub's schema aspects (needs ``graph``).
    Returns the outcome; a TokenizeError becomes a FAILED result (and is returned with
    it). When recording the outcome in DataHub fails, the outcome carries a DataHubError
    (transient) instead: the table may be tokenized, but DataHub does not show it yet,
    and a retry (0 rows left to change) writes it.
    """
    started_at = utc_now()
    schema_editable: EditableSchemaMetadataClass | None = None
    try:
        connection, ref = route(request.dataset_urn, config.connections)
        columns = request.columns
        if not columns and graph is not None:
            with _datahub(f"dataset {request.dataset_urn}: reading its schema from DataHub to choose columns"):
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
        try:
            result = warehouse.run(ref, columns, dry_run=dry_run)
        finally:
            warehouse.dispose()
        outcome = Outcome(result)
    except TokenizeError as e:
        # The caller reports it (the CLI on stderr, the pipeline when the action raises).
        logger.info("%s: FAILED: %s", request.dataset_urn, e)
        outcome = Outcome(failed_result(request, e, dry_run=dry_run, started_at=started_at), detached(e))
    # A run that failed talking to DataHub is not recorded there: the write-back would meet
    # the same failure and say it twice (the pipeline's retry or the user runs it again).
    failed_on_datahub = isinstance(outcome.error, DataHubError)
    if graph is not None and write_back and config.write_back.enabled and not dry_run and not failed_on_datahub:
        what = "SUCCESS" if outcome.error is None else f"FAILED ({outcome.error})"
        try:
            with _datahub(f"dataset {request.dataset_urn}: the run ended {what}, but recording that in DataHub"):
                _write_back(graph, config, request, outcome.result, schema_editable)
        except DataHubError as e:
            outcome = Outcome(outcome.result, detached(e))
    return outcome


@contextlib.contextmanager
def _datahub(doing: str) -> Iterator[None]:
    """Turn any failure talking to DataHub inside the block into a DataHubError."""
    try:
        yield
    except DataHubError as e:  # already one line that names the server and the cause
        raise DataHubError(f"{doing} failed: {e}; run again once DataHub answers (values already tokens are "
                           "skipped)") from e
    except Exception as e:
        raise DataHubError(
            f"{doing} failed: {type(e).__name__}: {first_line(e)[:300]}; check `datahub.server` and that "
            "DataHub is up, then run again (values already tokens are skipped)"
        ) from e


def current_request(graph: Graph, config: TokenizeConfig, request: TokenizeRequest) -> TokenizeRequest | None:
    """What an event's request asks for now, given DataHub's current state.

    A request naming columns is returned as it is. A dataset-level one is served by column
    selection only while the trigger tag is still on the dataset. Without it, a successful
    run has removed it (the event is a duplicate or a redelivery): the columns of that run
    are returned, so the repeat changes 0 rows and writes SUCCESS again, instead of letting
    selection pick other columns now that the tagged fields are untagged. Neither the tag
    nor a successful run (the steward removed the tag before the run): None, nothing to do.

    Raises:
        DataHubError: DataHub could not be read.
    """
    if request.columns:
        return request
    with _datahub(f"dataset {request.dataset_urn}: reading its tags from DataHub"):
        tags = graph.get_aspect(request.dataset_urn, GlobalTagsClass)
        if tags is not None and any(t.tag == config.trigger_tag for t in tags.tags):  # type: ignore[attr-defined]
            return request
        props = graph.get_aspect(request.dataset_urn, DatasetPropertiesClass)
    record = _last_run(props)
    if record.get("status") == "SUCCESS" and isinstance(record.get("columns"), list) and record["columns"]:
        logger.info("%s: %s is no longer on the dataset; repeating run %s on its columns %s",
                    request.dataset_urn, config.trigger_tag, record.get("run_id"), ", ".join(record["columns"]))
        return TokenizeRequest(request.dataset_urn, tuple(record["columns"]))
    logger.info("%s: %s is no longer on the dataset and no run succeeded: nothing to do",
                request.dataset_urn, config.trigger_tag)
    return None


def _last_run(props: object | None) -> dict:
    """The run record in ``datasetProperties`` ({} if none or unreadable)."""
    text = (getattr(props, "customProperties", None) or {}).get(RUN_RECORD_PROPERTY)
    try:
        record = json.loads(text) if text else {}
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def run_request(config: TokenizeConfig, request: TokenizeRequest, *, dry_run: bool = False) -> TokenizeResult:
    """Tokenize the request's columns without DataHub; raise the TokenizeError on failure."""
    outcome = tokenize_dataset(config, request, dry_run=dry_run)
    if outcome.error is not None:
        raise outcome.error
    return outcome.result


def _write_back(graph: Graph, config: TokenizeConfig, request: TokenizeRequest, result: TokenizeResult,
                editable: EditableSchemaMetadataClass | None) -> None:
    options = config.write_back
    fields: tuple[str, ...] = ()
    if result.status == "SUCCESS" and options.tags:
        if editable is None:
            editable = graph.get_aspect(request.dataset_urn, EditableSchemaMetadataClass)  # type: ignore[assignment]
        # Only fields DataHub shows with the tag now: removing one that is not there (a
        # redelivery, or a tag from ingestion) is an error on some servers.
        fields = trigger_field_paths(editable, config.trigger_tag, result.columns)
    previous = None
    if options.documentation:
        props = graph.get_aspect(request.dataset_urn, EditableDatasetPropertiesClass)
        previous = getattr(props, "description", None)
    mcps: list[MetadataChangeProposalClass] = [
        mcp for mcp in outcome_mcps(result, trigger_tag=config.trigger_tag, fields=fields,
                                    previous_description=previous)
        if getattr(options, _ASPECT_OPTION.get(mcp.aspectName or "", "enabled"))
    ]
    graph.emit_mcps(mcps)
    logger.info("%s: wrote %s back to DataHub (%d changes)", request.dataset_urn, result.status, len(mcps))
    if options.tags:
        try:
            _define_tags_once(graph)
        except Exception as e:  # cosmetic: never let it fail a recorded outcome
            logger.warning("could not give the tokenize tags a name and description in DataHub (%s: %s); "
                           "the token may lack rights on tags", type(e).__name__, first_line(e))


_defined_tags_lock = threading.Lock()
_defined_tags: "weakref.WeakSet[Graph]" = weakref.WeakSet()  # not ids: a new graph may reuse one


def _define_tags_once(graph: Graph) -> None:
    """Give the action's tags a name and description, once per graph, only where the tag has
    none yet (so a steward's own wording of them is never overwritten)."""
    with _defined_tags_lock:
        if graph in _defined_tags:
            return
        missing = [m for m in tag_definition_mcps() if graph.get_aspect(m.entityUrn, TagPropertiesClass) is None]
        if missing:
            graph.emit_mcps(missing)
        _defined_tags.add(graph)


def failed_result(request: TokenizeRequest, error: BaseException, *, dry_run: bool = False,
                  started_at: str | None = None) -> TokenizeResult:
    """A FAILED result for ``request`` carrying ``error``'s message (already free of secrets)."""
    now = utc_now()
    message = str(error) if isinstance(error, TokenizeError) else f"unexpected {type(error).__name__}: {first_line(error)}"
    return TokenizeResult(
        status="FAILED",
        dataset=request.dataset_urn,
        columns=tuple(request.columns or ()),
        dry_run=dry_run,
        run_id=uuid.uuid4().hex,
        started_at=started_at or now,
        ended_at=now,
        error=message,
        error_type=type(error).__name__,
        # With commit_every_batch, what the batches committed before the failure hold.
        **getattr(error, "committed_counts", {}),
    )
