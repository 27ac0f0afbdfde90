"""The end-to-end test infrastructure is real: the stock datahub-actions pipeline consumes
our PlatformEvents from the mock Kafka cluster, and the real DataHubGraph talks to the
recording GMS."""

from __future__ import annotations

import os
import uuid

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from datahub.configuration.common import OperationalError
from datahub.emitter.mcp import MetadataChangeProposalWrapper
from datahub.ingestion.graph.client import DataHubGraph, DatahubClientConfig
from datahub.metadata.schema_classes import (
    GlobalTagsClass,
    OtherSchemaClass,
    SchemaFieldClass,
    SchemaFieldDataTypeClass,
    SchemaMetadataClass,
    StringTypeClass,
    TagAssociationClass,
    TagPropertiesClass,
)
from datahub.specific.dataset import DatasetPatchBuilder
from datahub_actions.event.event_registry import ENTITY_CHANGE_EVENT_V1_TYPE, EntityChangeEvent

from datahub_tokenize_action.testing.kafka import PLATFORM_EVENT_TOPIC, entity_change_event, kafka_source_config
from datahub_tokenize_action.testing.pipeline import RecordingSink, running_pipeline


pytestmark = pytest.mark.e2e

DATASET = "urn:li:dataset:(urn:li:dataPlatform:postgres,appdb.public.users,PROD)"
FIELD = f"urn:li:schemaField:({DATASET},email)"
RUN_TAG = "urn:li:tag:tokenize/run"
DONE_TAG = "urn:li:tag:tokenize/done"


def _pipeline_config(kafka_cluster, schema_registry, gms_server, sink, tmp_path) -> dict:
    return {
        "name": f"infra-{uuid.uuid4().hex[:8]}",
        "source": kafka_source_config(kafka_cluster.bootstrap, schema_registry.url),
        "filter": {
            "event_type": "EntityChangeEvent_v1",
            "event": {
                "category": "TAG",
                "operation": "ADD",
                "modifier": RUN_TAG,
                "entityType": ["dataset", "schemaField"],
            },
        },
        "action": sink.action_config(),
        "datahub": {"server": gms_server.url},
        "options": {"failed_events_dir": str(tmp_path / "failed")},
    }


def test_stock_pipeline_consumes_entity_change_events_from_the_mock_cluster(
    kafka_cluster, schema_registry, gms_server, platform_event_producer, tmp_path
):
    sink = RecordingSink.new()
    config = _pipeline_config(kafka_cluster, schema_registry, gms_server, sink, tmp_path)

    # Produced before the consumer exists: delivered because the source config reads
    # from "earliest". Same key (the dataset urn), so the non-matching event is
    # consumed, and dropped by the filter, before the matching one.
    platform_event_producer.produce_entity_change_event(
        entity_change_event(DATASET, "TAG", "ADD", modifier=DONE_TAG, parameters={"tagUrn": DONE_TAG})
    )
    platform_event_producer.produce_entity_change_event(
        entity_change_event(DATASET, "TAG", "ADD", modifier=RUN_TAG, parameters={"tagUrn": RUN_TAG})
    )

    with running_pipeline(config):
        (first,) = sink.wait_for(1, timeout=30)
        # Produced while the pipeline runs: consumed live.
        platform_event_producer.produce_entity_change_event(
            entity_change_event(
                FIELD,
                "TAG",
                "ADD",
                modifier=RUN_TAG,
                parameters={"tagUrn": RUN_TAG, "fieldPath": "email", "parentUrn": DATASET},
            )
        )
        events = sink.wait_for(2, timeout=30)

    assert len(events) == 2
    assert [e.event_type for e in events] == [ENTITY_CHANGE_EVENT_V1_TYPE] * 2
    assert all(isinstance(e.event, EntityChangeEvent) for e in events)
    assert all(e.meta["kafka"]["topic"] == PLATFORM_EVENT_TOPIC for e in events)

    dataset_event, field_event = (e.event for e in events)
    assert (dataset_event.entityType, dataset_event.entityUrn) == ("dataset", DATASET)
    assert (dataset_event.category, dataset_event.operation) == ("TAG", "ADD")
    assert dataset_event.modifier == RUN_TAG
    assert dataset_event._inner_dict["__parameters_json"] == {"tagUrn": RUN_TAG}

    assert (field_event.entityType, field_event.entityUrn) == ("schemaField", FIELD)
    assert field_event.modifier == RUN_TAG
    assert field_event.safe_parameters == {"tagUrn": RUN_TAG, "fieldPath": "email", "parentUrn": DATASET}

    # The `datahub:` section gave the action a graph, and building it called nothing.
    (ctx,) = sink.contexts
    assert ctx.graph is not None
    assert ctx.graph.graph.config.server == gms_server.url
    assert gms_server.requests() == []


def _schema_metadata() -> SchemaMetadataClass:
    return SchemaMetadataClass(
        schemaName="users",
        platform="urn:li:dataPlatform:postgres",
        version=0,
        hash="",
        platformSchema=OtherSchemaClass(rawSchema=""),
        fields=[
            SchemaFieldClass(
                fieldPath="email",
                type=SchemaFieldDataTypeClass(type=StringTypeClass()),
                nativeDataType="text",
                globalTags=GlobalTagsClass(tags=[TagAssociationClass("urn:li:tag:pii")]),
            )
        ],
    )


def test_datahub_graph_reads_preloaded_aspects_and_its_patches_are_recorded(gms_server):
    gms_server.put_aspect(DATASET, _schema_metadata())
    graph = DataHubGraph(DatahubClientConfig(server=gms_server.url))
    graph.test_connection()

    assert graph.get_aspect(DATASET, SchemaMetadataClass) == _schema_metadata()
    assert graph.get_aspect(DATASET, GlobalTagsClass) is None
    assert graph.get_aspects_for_entity(
        DATASET, ["schemaMetadata", "globalTags"], [SchemaMetadataClass, GlobalTagsClass]
    ) == {"schemaMetadata": _schema_metadata(), "globalTags": None}

    for mcp in DatasetPatchBuilder(DATASET).add_tag(TagAssociationClass(DONE_TAG)).build():
        graph.emit_mcp(mcp)
    done_properties = TagPropertiesClass(name="tokenize/done")
    graph.emit_mcps([MetadataChangeProposalWrapper(entityUrn=DONE_TAG, aspect=done_properties)])

    (patch,) = gms_server.mcps(aspect_name="globalTags")
    assert (patch.entity_urn, patch.entity_type, patch.change_type, patch.transport) == (
        DATASET, "dataset", "PATCH", "restli"
    )
    assert [(op["op"], op["value"]) for op in patch.patch] == [("add", {"tag": DONE_TAG})]
    (upsert,) = gms_server.mcps(entity_urn=DONE_TAG)
    assert (upsert.aspect_name, upsert.change_type) == ("tagProperties", "UPSERT")
    assert upsert.value == {"name": "tokenize/done"}
    # An UPSERT is stored, so it reads back like on a real GMS.
    assert graph.get_aspect(DONE_TAG, TagPropertiesClass) == done_properties

    paths = [(r.method, r.path, r.query.get("action")) for r in gms_server.requests()]
    assert ("GET", "/config", None) in paths
    assert ("POST", "/aspects", ["ingestProposal"]) in paths
    assert ("POST", "/aspects", ["ingestProposalBatch"]) in paths
    assert gms_server.unhandled() == []


def test_datahub_graph_with_openapi_ingestion_is_recorded_the_same_way(gms_server):
    graph = DataHubGraph(DatahubClientConfig(server=gms_server.url, openapi_ingestion=True))
    builder = DatasetPatchBuilder(DATASET).add_tag(TagAssociationClass(DONE_TAG))
    builder.for_field("email").add_tag(TagAssociationClass(DONE_TAG))
    graph.emit_mcps(builder.build())

    by_aspect = {m.aspect_name: m for m in gms_server.mcps()}
    assert set(by_aspect) == {"globalTags", "editableSchemaMetadata"}
    assert all(m.transport == "openapi" and m.change_type == "PATCH" for m in by_aspect.values())
    (field_op,) = by_aspect["editableSchemaMetadata"].patch
    assert field_op["path"].startswith("/editableSchemaFieldInfo/email/globalTags/tags/")
    assert {r.method for r in gms_server.requests()} == {"PATCH"}


def test_recording_gms_can_reject_a_write_and_then_records_nothing(gms_server):
    graph = DataHubGraph(DatahubClientConfig(server=gms_server.url))
    gms_server.fail_next(422, path_prefix="/aspects", message="boom")
    with pytest.raises(OperationalError, match="boom"):
        graph.emit_mcp(MetadataChangeProposalWrapper(entityUrn=DONE_TAG, aspect=TagPropertiesClass(name="x")))
    assert gms_server.mcps() == []
    assert [r.status for r in gms_server.requests()] == [422]


def test_schema_registry_serves_registered_schemas_by_id_to_another_client(schema_registry):
    from confluent_kafka.schema_registry import Schema

    schema = '{"type": "record", "name": "T", "fields": [{"name": "a", "type": "string"}]}'
    writer = SchemaRegistryClient({"url": schema_registry.url})
    schema_id = writer.register_schema("infra-test-value", Schema(schema, "AVRO"))
    assert writer.register_schema("infra-test-value", Schema(schema.replace(" ", ""), "AVRO")) == schema_id

    reader = SchemaRegistryClient({"url": schema_registry.url})  # its own cache
    assert reader.get_schema(schema_id).schema_str == schema
    with pytest.raises(SchemaRegistryError) as err:
        reader.get_schema(987654)
    assert err.value.http_status_code == 404


def test_tag_patches_from_the_real_builder_are_applied_to_the_stored_aspects(gms_server):
    # acryl-datahub's builder keys tags by (attribution source, tag): adds are written as
    # /tags/<source>/<tag>, removes as /tags/<tag>; both must change what GMS then reads back.
    graph = DataHubGraph(DatahubClientConfig(server=gms_server.url))
    gms_server.put_aspect(DATASET, GlobalTagsClass([TagAssociationClass(RUN_TAG)]))
    builder = DatasetPatchBuilder(DATASET).remove_tag(RUN_TAG).add_tag(TagAssociationClass(DONE_TAG))
    builder.for_field("email").add_tag(TagAssociationClass(DONE_TAG))
    graph.emit_mcps(builder.build())

    assert [t.tag for t in graph.get_aspect(DATASET, GlobalTagsClass).tags] == [DONE_TAG]
    [field] = gms_server.aspect_json(DATASET, "editableSchemaMetadata")["editableSchemaFieldInfo"]
    assert (field["fieldPath"], field["globalTags"]["tags"]) == ("email", [{"tag": DONE_TAG}])


def test_a_throwaway_postgres_whose_port_is_taken_before_it_starts_takes_another():
    # Two suites (or any process) can take the free port a cluster chose before its server binds it.
    import socket

    import sqlalchemy as sa

    from datahub_tokenize_action.testing.postgres import PostgresCluster, PostgresNotInstalled

    try:
        cluster = PostgresCluster()
    except PostgresNotInstalled as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs a real Postgres: {e}")
        pytest.skip(str(e))
    taken = cluster.port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        cluster.start()
        try:
            assert cluster.port != taken
            engine = sa.create_engine(cluster.url(), poolclass=sa.pool.NullPool)
            with engine.connect() as conn:
                assert conn.exec_driver_sql("SELECT 1").scalar() == 1
        finally:
            cluster.stop()
