"""What a run reads from DataHub before it starts (is the trigger still there, what did the
last run do) and how it is recorded there: STARTED, then the outcome (the write-back MCPs,
the run instance, the structured property, the incident), each write attributed to its source."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
import weakref
from typing import Any, Sequence, Union

from datahub.emitter.mcp import MetadataChangeProposalWrapper
from datahub.metadata.schema_classes import (
    DatasetPropertiesClass,
    EditableDatasetPropertiesClass,
    EditableSchemaMetadataClass,
    GlobalTagsClass,
    IncidentInfoClass,
    MetadataChangeProposalClass,
    StructuredPropertiesClass,
    StructuredPropertyDefinitionClass,
    SystemMetadataClass,
    TagPropertiesClass,
)

from .._config import TokenizeConfig
from .._exceptions import first_line
from .._request import TokenizeRequest
from .._result import TokenizeResult
from . import incidents, last_run, runs
from .columns import trigger_field_paths
from .graph import Graph, talking_to_datahub
from .writeback import RUN_RECORD_PROPERTY, outcome_mcps, run_record, tag_definition_mcps

__all__ = ["attributed", "current_request", "latest_record", "record_start", "write_back"]

logger = logging.getLogger(__name__)

_Mcp = Union[MetadataChangeProposalClass, MetadataChangeProposalWrapper]

#: Which write-back option owns which aspect of the outcome MCPs.
_ASPECT_OPTION = {
    "globalTags": "tags",
    "editableSchemaMetadata": "tags",
    "datasetProperties": "run_record",
    "editableDatasetProperties": "documentation",
}


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
    with talking_to_datahub(f"dataset {request.dataset_urn}: reading its tags from DataHub"):
        tags = graph.get_aspect(request.dataset_urn, GlobalTagsClass)
        if tags is not None and any(t.tag == config.trigger_tag for t in tags.tags):  # type: ignore[attr-defined]
            return request
        record = latest_record(graph, request.dataset_urn)
    if record.get("status") == "SUCCESS" and isinstance(record.get("columns"), list) and record["columns"]:
        logger.info("%s: %s is no longer on the dataset; repeating run %s on its columns %s",
                    request.dataset_urn, config.trigger_tag, record.get("run_id"), ", ".join(record["columns"]))
        return dataclasses.replace(request, columns=tuple(record["columns"]))
    logger.info("%s: %s is no longer on the dataset and no run succeeded: nothing to do",
                request.dataset_urn, config.trigger_tag)
    return None


def latest_record(graph: Graph, dataset_urn: str) -> dict[str, Any]:
    """The dataset's latest run record ({} if none): the structured property first (ingestion
    may have dropped the custom property), else the custom property."""
    record = last_run.read(graph.get_aspect(dataset_urn, StructuredPropertiesClass))  # type: ignore[arg-type]
    return record or _last_run(graph.get_aspect(dataset_urn, DatasetPropertiesClass))


def _last_run(props: object | None) -> dict:
    """The run record in ``datasetProperties`` ({} if none or unreadable)."""
    text = (getattr(props, "customProperties", None) or {}).get(RUN_RECORD_PROPERTY)
    try:
        record = json.loads(text) if text else {}
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def write_back(graph: Graph, config: TokenizeConfig, request: TokenizeRequest, result: TokenizeResult,
               editable: EditableSchemaMetadataClass | None, *, attempt: int = 1) -> None:
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
    mcps: list[_Mcp] = [
        mcp for mcp in outcome_mcps(result, trigger_tag=config.trigger_tag, fields=fields,
                                    previous_description=previous)
        if getattr(options, _ASPECT_OPTION.get(mcp.aspectName or "", "enabled"))
    ]
    if options.run_record and _last_run_property(graph):
        mcps += last_run.value_patch(result.dataset, run_record(result))
    if options.runs and result.run_id:
        mcps += runs.end_mcps(result, trigger=request.trigger, attempt=attempt)
    graph.emit_mcps(attributed(mcps, request, result.run_id))
    logger.info("%s: wrote %s back to DataHub (%d changes)", request.dataset_urn, result.status, len(mcps))
    if options.incidents:
        _update_incident(graph, request, result)
    if options.tags:
        try:
            _define_tags_once(graph)
        except Exception as e:  # cosmetic: never let it fail a recorded outcome
            logger.warning("could not give the tokenize tags a name and description in DataHub (%s: %s); "
                           "the token may lack rights on tags", type(e).__name__, first_line(e))


#: The source named on every write when no actions pipeline asked (the CLI, the Python API).
DEFAULT_SOURCE = "datahub-tokenize"


def attributed(mcps: Sequence[_Mcp], request: TokenizeRequest, run_id: str | None) -> list[_Mcp]:
    """``mcps`` with system metadata saying who wrote them: the actions pipeline's name (or
    ``datahub-tokenize``) and the run (``datahub-tokenize-<run id>``), so DataHub shows the
    action as their source."""
    meta = SystemMetadataClass(lastObserved=int(time.time() * 1000), pipelineName=request.pipeline or DEFAULT_SOURCE,
                               runId=f"datahub-tokenize-{run_id}" if run_id else None)
    for mcp in mcps:
        mcp.systemMetadata = meta
    return list(mcps)


_property_lock = threading.Lock()
_property_defined: "weakref.WeakSet[Graph]" = weakref.WeakSet()
_property_warning = threading.Event()


def _last_run_property(graph: Graph) -> bool:
    """Whether the run record can go to the structured property: its definition is there, or
    was written now (checked until it succeeds, then once per graph). False where the server
    has no structured properties or the actor may not define them: a warning says so once per
    process, and the record stays in the custom property alone (the fallback)."""
    with _property_lock:
        if graph in _property_defined:
            return True
        try:
            if graph.get_aspect(last_run.PROPERTY_URN, StructuredPropertyDefinitionClass) is None:
                graph.emit_mcps(last_run.definition_mcps())
        except Exception as e:
            if _property_warning.is_set():
                return False
            _property_warning.set()
            logger.warning(
                "could not define the structured property %s in DataHub (%s: %s): the run record stays in the "
                "custom property %s alone, which a full ingestion of the dataset may overwrite. Servers without "
                "structured properties need nothing more; otherwise grant the action's actor Manage Structured "
                "Properties (MANAGE_STRUCTURED_PROPERTIES) once, or define it yourself",
                last_run.PROPERTY_URN, type(e).__name__, first_line(e), RUN_RECORD_PROPERTY,
            )
            return False
        _property_defined.add(graph)
        return True


_incident_warning = threading.Event()


def _update_incident(graph: Graph, request: TokenizeRequest, result: TokenizeResult) -> None:
    """Raise, update or resolve the dataset's tokenization incident. Never fails the run: without
    the right to edit incidents it warns once per process, naming the privilege."""
    urn = incidents.incident_urn(result.dataset)
    try:
        mcp = incidents.incident_mcp(result, graph.get_aspect(urn, IncidentInfoClass))  # type: ignore[arg-type]
        if mcp is not None:
            graph.emit_mcps(attributed([mcp], request, result.run_id))
    except Exception as e:
        if _incident_warning.is_set():
            logger.info("%s: incident %s not updated (%s: %s)", result.dataset, urn, type(e).__name__, first_line(e))
            return
        _incident_warning.set()
        logger.warning(
            "%s: could not %s the tokenization incident %s in DataHub (%s: %s); the run's outcome is recorded "
            "without it. Grant the action's DataHub actor the privilege to edit incidents (Edit Incidents, "
            "EDIT_ENTITY_INCIDENTS) on datasets, or set write_back.incidents: false. Said once per process",
            result.dataset, "raise" if result.status == "FAILED" else "resolve", urn, type(e).__name__,
            first_line(e),
        )


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


def record_start(graph: Graph, config: TokenizeConfig, request: TokenizeRequest, run_id: str, *,
                 started_at: str, columns: tuple[str, ...], attempt: int) -> None:
    """Show the run in DataHub as STARTED (``write_back.runs``). Never fails the run: the
    outcome's write-back reports a DataHub that does not answer."""
    if not (config.write_back.enabled and config.write_back.runs):
        return
    try:
        graph.emit_mcps(attributed(runs.start_mcps(request.dataset_urn, run_id, started_at=started_at,
                                                   columns=columns, trigger=request.trigger, attempt=attempt),
                                   request, run_id))
    except Exception as e:  # (the outcome's write-back meets and reports the same DataHub)
        logger.info("%s: could not show run %s as started in DataHub (%s: %s); the run goes on",
                    request.dataset_urn, run_id, type(e).__name__, first_line(e))
