"""parse_event on genuine datahub_actions event objects.

Events are built the way the stock Kafka source builds them
(``build_entity_change_event`` on a PlatformEvent payload, then ``EventEnvelope``),
from the ECE JSON shape DataHub documents (docs/actions/events/entity-change-event.md)
and that its server emits for schema-field tags (``ChangeEventGeneratorUtils``:
parameters ``fieldPath``, ``parentUrn``, ``tagUrn``, ``context``). The server always
sets ``version: 0``; the documented samples omit it, but ``EntityChangeEvent.from_json``
requires it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from datahub.metadata.schema_classes import GenericPayloadClass
from datahub_actions.event.event_envelope import EventEnvelope
from datahub_actions.event.event_registry import (
    ENTITY_CHANGE_EVENT_V1_TYPE,
    METADATA_CHANGE_LOG_EVENT_V1_TYPE,
    MetadataChangeLogEvent,
)
from datahub_actions.plugin.source.kafka.kafka_event_source import build_entity_change_event

from datahub_tokenize_action._datahub.events import parse_event
from datahub_tokenize_action._request import TokenizeRequest
from datahub_tokenize_action._datahub.writeback import DONE_TAG, RUN_TAG, STATUS_SUCCESS_TAG

DATASET = "urn:li:dataset:(urn:li:dataPlatform:postgres,appdb.public.customers,PROD)"
AUDIT = {"actor": "urn:li:corpuser:jdoe", "time": 1649953100653}


def envelope(ece: dict[str, Any]) -> EventEnvelope:
    """An envelope exactly as KafkaEventSource.handle_pe yields it."""
    payload = GenericPayloadClass(value=json.dumps(ece).encode(), contentType="application/json")
    meta = {"kafka": {"topic": "PlatformEvent_v1", "offset": 7, "partition": 0}}
    return EventEnvelope(ENTITY_CHANGE_EVENT_V1_TYPE, build_entity_change_event(payload), meta)


def dataset_tag_event(tag: str = RUN_TAG, operation: str = "ADD", urn: str = DATASET) -> dict[str, Any]:
    return {
        "entityUrn": urn,
        "entityType": "dataset",
        "category": "TAG",
        "operation": operation,
        "modifier": tag,
        "parameters": {"tagUrn": tag},
        "auditStamp": AUDIT,
        "version": 0,
    }


def field_tag_event(
    field_path: str,
    *,
    parent_urn: str = DATASET,
    tag: str = RUN_TAG,
    operation: str = "ADD",
    urn_field_path: str | None = None,
) -> dict[str, Any]:
    return {
        "entityUrn": f"urn:li:schemaField:({DATASET},{urn_field_path or field_path})",
        "entityType": "schemaField",
        "category": "TAG",
        "operation": operation,
        "modifier": tag,
        "parameters": {"fieldPath": field_path, "parentUrn": parent_urn, "tagUrn": tag, "context": "{}"},
        "auditStamp": AUDIT,
        "version": 0,
    }


def test_fixture_events_keep_their_parameters_where_the_action_reads_them() -> None:
    event = envelope(field_tag_event("email")).event

    assert event.parameters is None
    assert event._inner_dict["__parameters_json"]["fieldPath"] == "email"


def test_trigger_tag_added_to_a_dataset_requests_the_whole_dataset() -> None:
    assert parse_event(envelope(dataset_tag_event())) == TokenizeRequest(DATASET, None)


def test_trigger_tag_added_to_a_column_requests_that_column() -> None:
    assert parse_event(envelope(field_tag_event("email"))) == TokenizeRequest(DATASET, ("email",))


def test_v2_field_path_is_simplified_to_the_column_name() -> None:
    event = field_tag_event("[version=2.0].[type=string].email")

    assert parse_event(envelope(event)) == TokenizeRequest(DATASET, ("email",))


def test_dataset_comes_from_the_field_urn_when_parent_urn_is_the_field_urn_itself() -> None:
    field_urn = f"urn:li:schemaField:({DATASET},email)"
    event = field_tag_event("email", parent_urn=field_urn)

    assert parse_event(envelope(event)) == TokenizeRequest(DATASET, ("email",))


def test_field_path_falls_back_to_the_urn_and_is_decoded_when_the_parameter_is_missing() -> None:
    event = field_tag_event("[version=2.0].[type=string].a,b", urn_field_path="[version=2.0].[type=string].a%2Cb")
    del event["parameters"]["fieldPath"]

    assert parse_event(envelope(event)) == TokenizeRequest(DATASET, ("a,b",))


def test_a_custom_trigger_tag_is_honoured() -> None:
    tag = "urn:li:tag:pii/tokenize"

    assert parse_event(envelope(dataset_tag_event(tag)), trigger_tag=tag) == TokenizeRequest(DATASET)
    assert parse_event(envelope(dataset_tag_event(RUN_TAG)), trigger_tag=tag) is None


@pytest.mark.parametrize(
    "ece",
    [
        pytest.param(dataset_tag_event("urn:li:tag:PII"), id="another-tag"),
        pytest.param(field_tag_event("email", tag="urn:li:tag:PII"), id="another-tag-on-a-field"),
        pytest.param(dataset_tag_event(operation="REMOVE"), id="trigger-removed-from-dataset"),
        pytest.param(field_tag_event("email", operation="REMOVE"), id="trigger-removed-from-field"),
        pytest.param(
            {
                "entityUrn": DATASET,
                "entityType": "dataset",
                "category": "GLOSSARY_TERM",
                "operation": "ADD",
                "modifier": RUN_TAG,
                "parameters": {"termUrn": RUN_TAG},
                "auditStamp": AUDIT,
                "version": 0,
            },
            id="glossary-term-category",
        ),
        pytest.param(
            {**dataset_tag_event(), "entityType": "chart", "entityUrn": "urn:li:chart:(looker,sales)"},
            id="another-entity-type",
        ),
        pytest.param(dataset_tag_event(urn="urn:li:dataset:abc"), id="malformed-dataset-urn"),
        pytest.param(
            {**field_tag_event("email"), "entityUrn": "urn:li:schemaField:(urn:li:chart:(looker,sales),email)"},
            id="field-of-a-non-dataset",
        ),
        pytest.param(
            {**field_tag_event("email"), "entityUrn": f"urn:li:schemaField:({DATASET}"},
            id="malformed-field-urn",
        ),
        pytest.param(field_tag_event("[version=2.0].[type=struct]"), id="field-path-with-no-column"),
    ],
)
def test_other_entity_change_events_request_nothing(ece: dict[str, Any]) -> None:
    assert parse_event(envelope(ece)) is None


def test_metadata_change_log_events_request_nothing() -> None:
    mcl = MetadataChangeLogEvent.from_json(
        json.dumps(
            {
                "entityType": "dataset",
                "entityUrn": DATASET,
                "changeType": "UPSERT",
                "aspectName": "globalTags",
                "aspect": {"value": json.dumps({"tags": [{"tag": RUN_TAG}]}), "contentType": "application/json"},
                "created": AUDIT,
            }
        )
    )

    assert parse_event(EventEnvelope(METADATA_CHANGE_LOG_EVENT_V1_TYPE, mcl, {})) is None


def test_events_caused_by_our_own_write_back_do_not_trigger_a_run() -> None:
    caused = [
        dataset_tag_event(RUN_TAG, "REMOVE"),
        field_tag_event("email", tag=RUN_TAG, operation="REMOVE"),
        dataset_tag_event(DONE_TAG, "ADD"),
        dataset_tag_event(STATUS_SUCCESS_TAG, "ADD"),
    ]

    assert [parse_event(envelope(e)) for e in caused] == [None, None, None, None]
