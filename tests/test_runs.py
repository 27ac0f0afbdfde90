"""Runs as DataProcessInstances: the MCPs (golden files), the run id an event gives, and the
instance GMS receives end to end."""

from __future__ import annotations

import json

from datahub_tokenize_action._datahub import runs
from datahub_tokenize_action._datahub.events import parse_event

from .test_action import dataset_tag, field_tag
from .test_writeback import FAILED, SUCCESS, check_golden

DATASET = SUCCESS.dataset


def test_a_started_run_matches_golden():
    check_golden(runs.start_mcps(DATASET, "run-1", started_at="2026-12-06T03:00:00+00:00", columns=("email",),
                                 trigger="event", attempt=1), "run_started.json")


def test_an_ended_run_matches_golden():
    check_golden(runs.end_mcps(SUCCESS, trigger="event", attempt=2), "run_success.json")
    check_golden(runs.end_mcps(FAILED, trigger="manual", attempt=1), "run_failed.json")


def test_the_instance_has_the_dataset_as_output_and_one_urn_per_run_id():
    started = runs.start_mcps(DATASET, "r", started_at="2026-12-06T03:00:00+00:00", columns=None,
                              trigger="event", attempt=1)
    ended = runs.end_mcps(SUCCESS.replace(run_id="r"), trigger="event", attempt=1)
    assert {m.entityUrn for m in started + ended} == {runs.instance_urn(DATASET, "r")}
    assert runs.instance_urn(DATASET, "r") != runs.instance_urn(DATASET, "s")
    [output] = [m.aspect for m in ended if m.aspectName == "dataProcessInstanceOutput"]
    assert output.outputs == [DATASET]
    [event] = [m.aspect for m in ended if m.aspectName == "dataProcessInstanceRunEvent"]
    assert (event.status, event.result.type) == ("COMPLETE", "SUCCESS")
    [props] = [m.aspect for m in ended if m.aspectName == "dataProcessInstanceProperties"]
    assert props.customProperties["status"] == "SUCCESS"
    assert json.loads(props.customProperties["values_tokenized"]) == dict(SUCCESS.values_tokenized)


def test_every_delivery_of_one_event_has_one_run_id_and_another_event_another():
    urn = DATASET
    first, again = parse_event(dataset_tag(urn)), parse_event(dataset_tag(urn))
    assert first.run_id == again.run_id and first.trigger == "event"
    assert parse_event(field_tag(urn, "email")).run_id != first.run_id
    later = dataset_tag(urn)
    later.event.auditStamp.time += 1
    assert parse_event(later).run_id != first.run_id


def test_every_write_names_its_source_and_run():
    from datahub_tokenize_action import TokenizeRequest
    from datahub_tokenize_action._datahub.recording import attributed

    mcps = runs.end_mcps(SUCCESS, trigger="manual", attempt=1)
    [meta] = {id(m.systemMetadata): m.systemMetadata for m in attributed(mcps, TokenizeRequest(DATASET), "r1")}.values()
    assert (meta.pipelineName, meta.runId) == ("datahub-tokenize", "datahub-tokenize-r1") and meta.lastObserved > 0
    [m] = attributed(mcps[:1], TokenizeRequest(DATASET, pipeline="tokenize"), "r1")
    assert m.systemMetadata.pipelineName == "tokenize"


def test_the_run_record_as_a_structured_property_round_trips_through_datahubs_client(gms_server):
    from datahub.ingestion.graph.client import DatahubClientConfig, DataHubGraph
    from datahub.metadata.schema_classes import StructuredPropertiesClass

    from datahub_tokenize_action._datahub import last_run
    from datahub_tokenize_action._datahub.writeback import run_record

    check_golden(last_run.definition_mcps() + last_run.value_patch(DATASET, run_record(SUCCESS)),
                 "last_run_property.json")
    graph = DataHubGraph(DatahubClientConfig(server=gms_server.url, retry_max_times=0))
    try:
        graph.emit_mcps(last_run.value_patch(DATASET, {"run_id": "old"}))
        graph.emit_mcps(last_run.value_patch(DATASET, run_record(SUCCESS)))
        aspect = graph.get_aspect(DATASET, StructuredPropertiesClass)
    finally:
        graph.close()
    assert len(aspect.properties) == 1, "a set replaces the value, keyed by the property"
    assert last_run.read(aspect) == run_record(SUCCESS)
    assert last_run.read(None) == {}


def test_a_server_that_refuses_the_property_keeps_the_record_in_the_custom_property(pg, gms_server, caplog,
                                                                                      monkeypatch):
    import logging

    from datahub.ingestion.graph.client import DatahubClientConfig, DataHubGraph

    from datahub_tokenize_action import TokenizeRequest
    from datahub_tokenize_action._datahub import recording
    from datahub_tokenize_action._runner import tokenize_dataset

    monkeypatch.setattr(recording, "_property_warning", type(recording._property_warning)())
    name = pg.create_table([("id", "int"), ("email", "text")], [(1, "a@example.com")])
    urn = pg.urn(name)
    graph = DataHubGraph(DatahubClientConfig(server=gms_server.url, retry_max_times=0))
    caplog.set_level(logging.WARNING, logger="datahub_tokenize_action")
    try:
        # An older server: the definition's write is refused. POSTs: the run shown as STARTED
        # (its failure is only logged), then the definition, then the outcome.
        gms_server.fail_next(400, method="POST", times=2, message="Unknown aspect propertyDefinition")
        outcome = tokenize_dataset(pg.config(), TokenizeRequest(urn, ("email",)), graph=graph)
    finally:
        graph.close()
    assert outcome.error is None and outcome.result.status == "SUCCESS"
    assert gms_server.aspect_json(urn, "structuredProperties") is None
    record = json.loads(gms_server.aspect_json(urn, "datasetProperties")["customProperties"]["last_tokenization_run"])
    assert record["run_id"] == outcome.result.run_id
    [warning] = [r.getMessage() for r in caplog.records if "structured property" in r.getMessage()]
    assert "MANAGE_STRUCTURED_PROPERTIES" in warning and "last_tokenization_run" in warning
