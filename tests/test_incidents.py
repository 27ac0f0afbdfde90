"""A FAILED run raises an OPERATIONAL incident on its dataset, the next SUCCESS resolves it:
the MCPs (golden files) and the whole path through DataHub's client to the recording GMS."""

from __future__ import annotations

import logging

import pytest
from datahub.ingestion.graph.client import DatahubClientConfig, DataHubGraph
from datahub.metadata.schema_classes import IncidentInfoClass

from datahub_tokenize_action import TokenizeRequest
from datahub_tokenize_action._datahub import incidents, recording
from datahub_tokenize_action._runner import tokenize_dataset
from datahub_tokenize_action.testing.gms import schema_metadata

from .test_writeback import FAILED, SUCCESS, check_golden


def test_a_failed_run_raises_the_incident_and_a_success_resolves_it_golden():
    raised = incidents.incident_mcp(FAILED, None)
    check_golden([raised], "incident_raised.json")
    check_golden([incidents.incident_mcp(SUCCESS, raised.aspect)], "incident_resolved.json")


def test_no_incident_for_a_success_without_one_or_a_dry_run():
    assert incidents.incident_mcp(SUCCESS, None) is None
    assert incidents.incident_mcp(FAILED.replace(dry_run=True), None) is None
    resolved = incidents.incident_mcp(SUCCESS, incidents.incident_mcp(FAILED, None).aspect).aspect
    assert incidents.incident_mcp(SUCCESS, resolved) is None


def test_a_second_failure_updates_the_same_incident_and_keeps_when_it_began():
    first = incidents.incident_mcp(FAILED, None)
    later = FAILED.replace(run_id="run-2", ended_at="2024-05-02T08:00:00+00:00", error="another cause")
    second = incidents.incident_mcp(later, first.aspect)
    assert second.entityUrn == first.entityUrn == incidents.incident_urn(FAILED.dataset)
    assert second.aspect.created == first.aspect.created and "another cause" in second.aspect.description
    assert "Run run-2" in second.aspect.description


@pytest.fixture
def graph(gms_server):
    g = DataHubGraph(DatahubClientConfig(server=gms_server.url, retry_max_times=0))
    yield g
    g.close()


def _incident(gms_server, urn):
    value = gms_server.aspect_json(incidents.incident_urn(urn), "incidentInfo")
    return None if value is None else (value["status"]["state"], value["entities"], value.get("type"))


def test_through_datahub_a_failure_raises_and_the_next_success_resolves(pg, gms_server, graph):
    name = pg.create_table([("id", "int"), ("email", "text")], [(1, "a@example.com")])
    urn = pg.urn(name)
    gms_server.put_aspect(urn, schema_metadata(name, {"id": "number", "email": "string"}))
    config = pg.config()
    pg.execute(f"ALTER TABLE {name} RENAME TO {name}_away")
    failed = tokenize_dataset(config, TokenizeRequest(urn, ("email",)), graph=graph)
    assert failed.result.status == "FAILED"
    assert _incident(gms_server, urn) == ("ACTIVE", [urn], "OPERATIONAL")
    assert failed.result.run_id in gms_server.aspect_json(incidents.incident_urn(urn), "incidentInfo")["description"]
    pg.execute(f"ALTER TABLE {name}_away RENAME TO {name}")
    ok = tokenize_dataset(config, TokenizeRequest(urn, ("email",)), graph=graph)
    assert ok.error is None and ok.result.status == "SUCCESS"
    assert _incident(gms_server, urn) == ("RESOLVED", [urn], "OPERATIONAL")
    other = pg.create_table([("id", "int"), ("email", "text")], [(1, "b@example.com")])
    assert tokenize_dataset(config, TokenizeRequest(pg.urn(other), ("email",)), graph=graph).error is None
    assert _incident(gms_server, pg.urn(other)) is None, "no incident for a dataset that never failed"


def test_without_the_right_to_edit_incidents_the_run_is_recorded_and_a_warning_names_the_privilege(
        pg, gms_server, graph, caplog, monkeypatch):
    class NoIncidents:
        def get_aspect(self, urn, aspect_type):
            if aspect_type is IncidentInfoClass:
                raise PermissionError("403 Unauthorized to perform this action")
            return graph.get_aspect(urn, aspect_type)

        def emit_mcps(self, mcps):
            return graph.emit_mcps(mcps)

    monkeypatch.setattr(recording, "_incident_warning", type(recording._incident_warning)())
    name = pg.create_table([("id", "int"), ("email", "text")], [(1, "a@example.com")])
    urn = pg.urn(name)
    caplog.set_level(logging.INFO, logger="datahub_tokenize_action")
    for _ in range(2):
        outcome = tokenize_dataset(pg.config(), TokenizeRequest(urn, ("nope",)), graph=NoIncidents())
        assert outcome.result.status == "FAILED" and "DataHub" not in str(outcome.error)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "incident" in r.getMessage()]
    assert len(warnings) == 1 and "EDIT_ENTITY_INCIDENTS" in warnings[0]
    assert gms_server.mcps(entity_urn=urn, aspect_name="datasetProperties"), "the run record was written"
