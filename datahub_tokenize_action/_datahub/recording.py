"""What a run reads from DataHub before it starts (is the trigger still there, what did the
last run do) and how its outcome is recorded there (the write-back MCPs, the tags' names)."""

from __future__ import annotations

import json
import logging
import threading
import weakref

from datahub.metadata.schema_classes import (
    DatasetPropertiesClass,
    EditableDatasetPropertiesClass,
    EditableSchemaMetadataClass,
    GlobalTagsClass,
    MetadataChangeProposalClass,
    TagPropertiesClass,
)

from .._config import TokenizeConfig
from .._exceptions import first_line
from .._request import TokenizeRequest
from .._result import TokenizeResult
from .columns import trigger_field_paths
from .graph import Graph, talking_to_datahub
from .writeback import RUN_RECORD_PROPERTY, outcome_mcps, tag_definition_mcps

__all__ = ["current_request", "write_back"]

logger = logging.getLogger(__name__)

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


def write_back(graph: Graph, config: TokenizeConfig, request: TokenizeRequest, result: TokenizeResult,
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
