"""Turn a DataHub event into a :class:`TokenizeRequest`, or into nothing.

Pure: no I/O, no logging; the caller decides what to say about a dropped event.

Accepted (everything else gives None)::

    EntityChangeEvent_v1, category TAG, operation ADD, modifier == trigger tag
    ├── entityType dataset       entityUrn urn:li:dataset:(...)
    │                            -> TokenizeRequest(dataset_urn, None)
    └── entityType schemaField   entityUrn urn:li:schemaField:(<dataset urn>,<fieldPath>)
                                 parameters {fieldPath, parentUrn, tagUrn, context}
                                 -> TokenizeRequest(dataset_urn, (column,))

How DataHub's server fills a schemaField tag event (its
``EditableSchemaMetadataChangeEventGenerator`` / ``ChangeEventGeneratorUtils``):

- ``entityUrn`` is built from the dataset URN and the *editable* field path, with
  ``(``, ``)`` and ``,`` percent-encoded;
- ``parameters.fieldPath`` is that field path as stored, unencoded, and may be a
  v2 path such as ``[version=2.0].[type=string].email``;
- ``parameters.parentUrn`` is, in some server versions, the schemaField URN itself
  rather than the dataset, so it is not used: the dataset comes from
  ``SchemaFieldUrn.from_string(entityUrn).parent``.

On the Python object (``datahub_actions.event.event_registry.EntityChangeEvent``)
``parameters`` is None and the JSON parameters sit in
``event._inner_dict["__parameters_json"]``: ``EntityChangeEvent.from_json`` pops
them before Avro validation, since the Avro ``Parameters`` record has no fields.
"""

from __future__ import annotations

import urllib.parse
from typing import Any, Mapping

from datahub.metadata.schema_classes import EntityChangeEventClass
from datahub.metadata.urns import DatasetUrn, SchemaFieldUrn
from datahub.utilities.urns.error import InvalidUrnError
from datahub.utilities.urns.field_paths import get_simple_field_path_from_v2_field_path
from datahub_actions.event.event_envelope import EventEnvelope
from datahub_actions.event.event_registry import ENTITY_CHANGE_EVENT_V1_TYPE

from .._request import TokenizeRequest
from .runs import event_run_id
from .writeback import RUN_TAG

__all__ = ["parse_event"]


def parse_event(envelope: EventEnvelope, trigger_tag: str = RUN_TAG) -> TokenizeRequest | None:
    """The tokenization request an event asks for, or None when it asks for none.

    Args:
        envelope: an event as the actions pipeline delivers it.
        trigger_tag: the tag URN whose addition starts a run.

    Returns:
        A request for the whole dataset (dataset-level tag) or for one column
        (field-level tag, path simplified to its column name); None for any other
        event, including a malformed URN.
    """
    if envelope.event_type != ENTITY_CHANGE_EVENT_V1_TYPE:
        return None
    event = envelope.event
    if not isinstance(event, EntityChangeEventClass):
        return None
    if event.category != "TAG" or event.operation != "ADD" or event.modifier != trigger_tag:
        return None

    audit = getattr(event.auditStamp, "time", None)
    run_id = event_run_id(event.entityUrn, event.modifier, event.operation, audit)
    try:
        if event.entityType == "dataset":
            return TokenizeRequest(str(DatasetUrn.from_string(event.entityUrn)), run_id=run_id, trigger="event")
        if event.entityType == "schemaField":
            field_urn = SchemaFieldUrn.from_string(event.entityUrn)
            dataset_urn = str(DatasetUrn.from_string(field_urn.parent))
            path = _field_path(_parameters(event).get("fieldPath"), field_urn.field_path)
            column = get_simple_field_path_from_v2_field_path(path)
            return TokenizeRequest(dataset_urn, (column,), run_id=run_id, trigger="event") if column else None
    except InvalidUrnError:
        return None
    return None


def _parameters(event: EntityChangeEventClass) -> Mapping[str, Any]:
    """The event's parameters, wherever this object keeps them."""
    raw = event._inner_dict.get("__parameters_json")
    if isinstance(raw, Mapping):
        return raw
    if event.parameters is not None:
        return event.parameters.to_obj()
    return {}


def _field_path(parameter_path: Any, urn_path: str) -> str:
    """The field path as DataHub stores it: ``parameters.fieldPath``, else the URN's (decoded)."""
    if isinstance(parameter_path, str) and parameter_path.strip():
        return parameter_path.strip()
    return urllib.parse.unquote(urn_path).strip()
