"""End to end: tag event on Kafka → stock pipeline from configs/tokenize.yaml → our action →
a real Postgres table → what GMS receives. No Docker: librdkafka's mock cluster, a local
schema registry and a recording GMS stand in for the servers."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
from typing import Iterator

import pytest
import sqlalchemy as sa
from datahub.configuration.config_loader import load_config_file
from datahub.metadata.schema_classes import (
    DatasetPropertiesClass,
    EditableSchemaFieldInfoClass,
    EditableSchemaMetadataClass,
    GlobalTagsClass,
    TagAssociationClass,
)

from datahub_tokenize_action.testing.gms import schema_metadata
from datahub_tokenize_action.testing.kafka import entity_change_event
from datahub_tokenize_action.testing.pipeline import running_pipeline, wait_until

from datahub_tokenize_action import load_tokenizer

from .harness import HMAC_KEY

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

CONFIG = pathlib.Path(__file__).resolve().parent.parent / "configs" / "tokenize.yaml"
RUN, DONE = "urn:li:tag:tokenize/run", "urn:li:tag:tokenize/done"
SUCCESS, FAILED = "urn:li:tag:tokenize/status:SUCCESS", "urn:li:tag:tokenize/status:FAILED"
SHIPPED_TOKENIZER = load_tokenizer("hmac", {"key": HMAC_KEY, "key_id": "k1"})  # configs/tokenize.yaml's key id
PEOPLE = [(1, "alice@example.com", "+1-555-0100", "keep me"), (2, "bob@example.com", None, "and me")]


@pytest.fixture
def stack(pg, gms_server, kafka_cluster, schema_registry, platform_event_producer, tmp_path, monkeypatch):
    """Environment for configs/tokenize.yaml pointing at the test servers; yields helpers."""
    url = sa.make_url(pg.server_url)
    env = {
        "KAFKA_BOOTSTRAP_SERVER": kafka_cluster.bootstrap,
        "SCHEMA_REGISTRY_URL": schema_registry.url,
        "TOKENIZE_AUTO_OFFSET_RESET": "earliest",
        "PG_USER": url.username or "postgres", "PG_PASSWORD": "unused-under-trust-auth",
        "PG_HOST": url.host, "PG_PORT": str(url.port),
        "TOKENIZE_HMAC_KEY": HMAC_KEY,
        "DATAHUB_GMS_URL": gms_server.url,
        "TOKENIZE_FAILED_EVENTS_DIR": str(tmp_path / "failed"),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)

    class Stack:
        def table(self, rows=PEOPLE, editable_tags: dict[str, str] | None = None):
            name = pg.create_table([("id", "int"), ("email", "text"), ("phone", "text"), ("note", "text")], rows)
            urn = pg.urn(name)
            gms_server.put_aspect(urn, schema_metadata("t", {"id": "number", "email": "string", "phone": "string",
                                                "note": "string"}))
            if editable_tags:
                gms_server.put_aspect(urn, EditableSchemaMetadataClass(editableSchemaFieldInfo=[
                    EditableSchemaFieldInfoClass(fieldPath=f, globalTags=GlobalTagsClass([TagAssociationClass(t)]))
                    for f, t in editable_tags.items()
                ]))
            return name, urn

        def dataset_tag(self, urn, tag=RUN, operation="ADD", redelivery=False, time_ms=None):
            """What a steward's click does: the tag on the dataset changes in GMS, then GMS
            sends the event. ``redelivery``: the event again, as Kafka delivers it twice
            (with ``time_ms``, the same event: the same audit time)."""
            if not redelivery:
                tags = [t for t in (gms_server.aspect_json(urn, "globalTags") or {}).get("tags", []) if t["tag"] != tag]
                gms_server.put_aspect(urn, GlobalTagsClass([TagAssociationClass(t["tag"]) for t in tags]
                                           + ([TagAssociationClass(tag)] if operation == "ADD" else [])))
            platform_event_producer.produce_entity_change_event(
                entity_change_event(urn, "TAG", operation, modifier=tag, parameters={"tagUrn": tag}, time_ms=time_ms))

        def field_tag(self, urn, field, tag=RUN):
            platform_event_producer.produce_entity_change_event(entity_change_event(
                f"urn:li:schemaField:({urn},{field})", "TAG", "ADD", modifier=tag,
                parameters={"tagUrn": tag, "fieldPath": field, "parentUrn": urn}))

        def runs(self, urn):
            """The run records GMS received for ``urn``, oldest first."""
            records = []
            for mcp in gms_server.mcps(entity_urn=urn, aspect_name="datasetProperties"):
                for op in mcp.patch:
                    if op["path"].endswith("last_tokenization_run"):
                        records.append(json.loads(op["value"]))
            return records

        def wait_runs(self, urn, n, timeout=60):
            return wait_until(lambda: len(self.runs(urn)) >= n and self.runs(urn), timeout,
                              f"{n} run record(s) for {urn} in GMS")

        def tags(self, urn):
            """(added, removed) dataset tags over all globalTags patches for ``urn``."""
            added, removed = [], []
            for mcp in gms_server.mcps(entity_urn=urn, aspect_name="globalTags"):
                for op in mcp.patch:
                    tag = op["path"].rsplit("/", 1)[-1].replace("~1", "/")
                    (added if op["op"] == "add" else removed).append(tag)
            return added, removed

        def pipeline_config(self, reconcile=False):
            """The shipped config; without ``reconcile`` its sweep is off, so that no sweep
            (60 s after start-up by default) adds a run to what a test counts."""
            config = load_config_file(CONFIG)
            if not reconcile:
                config["action"]["config"]["reconcile"] = {"enabled": False}
            return config

    return Stack()


def test_a_dataset_tag_tokenizes_the_pii_columns_and_gms_receives_the_outcome(stack, pg, gms_server):
    name, urn = stack.table()
    with running_pipeline(stack.pipeline_config()):
        stack.dataset_tag(urn)
        [record] = stack.wait_runs(urn, 1)
    assert record["status"] == "SUCCESS" and record["columns"] == ["email", "phone"]
    assert record["counts"]["rows_updated"] == 2 and record["tokenizer"] == "hmac"
    rows = pg.rows(name)
    tok = SHIPPED_TOKENIZER
    assert [r[1] for r in rows] == [tok.tokenize("alice@example.com"), tok.tokenize("bob@example.com")]
    assert [r[2] for r in rows] == [tok.tokenize("+1-555-0100"), None]
    assert [r[3] for r in rows] == ["keep me", "and me"], "a column matching no PII rule is left alone"
    added, removed = stack.tags(urn)
    assert {DONE, SUCCESS} <= set(added) and {RUN, FAILED} <= set(removed)
    docs = gms_server.mcps(entity_urn=urn, aspect_name="editableDatasetProperties")
    assert docs and "tokenize:begin" in json.dumps(docs[-1].patch)
    assert HMAC_KEY not in json.dumps([r.json for r in gms_server.requests()], default=str)


def test_a_field_tag_tokenizes_only_that_field_and_untags_it(stack, pg, gms_server):
    name, urn = stack.table(editable_tags={"phone": RUN})
    with running_pipeline(stack.pipeline_config()):
        stack.field_tag(urn, "phone")
        [record] = stack.wait_runs(urn, 1)
    assert record["columns"] == ["phone"]
    rows = pg.rows(name)
    assert [r[1] for r in rows] == ["alice@example.com", "bob@example.com"]
    field_patches = gms_server.mcps(entity_urn=urn, aspect_name="editableSchemaMetadata")
    assert any(op["op"] == "remove" and "phone" in op["path"] and "tokenize~1run" in op["path"]
               for m in field_patches for op in m.patch)


def test_field_tags_on_a_dataset_event_choose_the_columns(stack, pg):
    name, urn = stack.table(editable_tags={"note": RUN})
    with running_pipeline(stack.pipeline_config()):
        stack.dataset_tag(urn)
        [record] = stack.wait_runs(urn, 1)
    assert record["columns"] == ["note"]
    assert [r[1] for r in pg.rows(name)] == ["alice@example.com", "bob@example.com"]


def test_a_duplicate_event_changes_no_row_and_reports_success_again(stack, pg):
    name, urn = stack.table()
    with running_pipeline(stack.pipeline_config()):
        stack.dataset_tag(urn)
        stack.wait_runs(urn, 1)
        after_first = pg.checksum(name)
        stack.dataset_tag(urn, redelivery=True)  # the run removed the tag; the event comes again
        first, second = stack.wait_runs(urn, 2)
    assert first["counts"]["rows_updated"] == 2
    assert second["status"] == "SUCCESS" and second["counts"]["rows_updated"] == 0
    assert second["columns"] == first["columns"] == ["email", "phone"]
    assert second["counts"]["values_skipped"] == {"email": 2, "phone": 1}
    assert pg.checksum(name) == after_first


def test_each_run_is_a_run_instance_of_the_dataset_and_a_redelivery_updates_the_same_one(stack, pg, gms_server):
    name, urn = stack.table()
    with running_pipeline(stack.pipeline_config()):
        stack.dataset_tag(urn, time_ms=1_765_000_000_000)
        [record] = stack.wait_runs(urn, 1)
        stack.dataset_tag(urn, redelivery=True, time_ms=1_765_000_000_000)  # the same event again
        stack.wait_runs(urn, 2)
    outputs = [m for m in gms_server.mcps(aspect_name="dataProcessInstanceOutput") if urn in m.value["outputs"]]
    instances = {m.entity_urn for m in outputs}
    assert len(instances) == 1, "one event, one run instance"
    [instance] = instances
    events = [m.value for m in gms_server.mcps(entity_urn=instance, aspect_name="dataProcessInstanceRunEvent")]
    assert [(e["status"], e.get("attempt"), (e.get("result") or {}).get("type")) for e in events] == [
        ("STARTED", 1, None), ("COMPLETE", 1, "SUCCESS"), ("STARTED", 2, None), ("COMPLETE", 2, "SUCCESS")]
    assert events[1]["durationMillis"] >= 0
    props = gms_server.aspect_json(instance, "dataProcessInstanceProperties")["customProperties"]
    assert props["run_id"] == record["run_id"] and props["trigger"] == "event" and props["rows_updated"] == "0"
    assert gms_server.aspect_json(instance, "dataProcessInstanceProperties")["name"] == f"tokenize-{record['run_id']}"
    written = gms_server.mcps(entity_urn=urn) + gms_server.mcps(entity_urn=instance)
    assert {(m.system_metadata or {}).get("pipelineName") for m in written} == {stack.pipeline_config()["name"]}, \
        "every write names the pipeline as its source"
    assert {(m.system_metadata or {}).get("runId") for m in written} == {f"datahub-tokenize-{record['run_id']}"}


def test_a_redelivery_after_ingestion_dropped_the_custom_property_reads_the_structured_one(stack, pg, gms_server):
    from datahub_tokenize_action._datahub import last_run

    name, urn = stack.table(editable_tags={"note": RUN})
    with running_pipeline(stack.pipeline_config()):
        stack.dataset_tag(urn)
        [first] = stack.wait_runs(urn, 1)
        gms_server.put_aspect(urn, DatasetPropertiesClass(customProperties={"owner_team": "crm"}))  # a full ingestion
        stack.dataset_tag(urn, redelivery=True)
        _, second = stack.wait_runs(urn, 2)
    assert first["columns"] == second["columns"] == ["note"], "the record was read from the structured property"
    assert second["counts"]["rows_updated"] == 0
    stored = gms_server.aspect_json(urn, "structuredProperties")["properties"]
    assert [p["propertyUrn"] for p in stored] == [last_run.PROPERTY_URN]
    assert len(gms_server.mcps(entity_urn=last_run.PROPERTY_URN, aspect_name="propertyDefinition")) == 1
    assert gms_server.aspect_json(last_run.PROPERTY_URN, "propertyDefinition")["entityTypes"] == [
        "urn:li:entityType:datahub.dataset"]
    settings = gms_server.aspect_json(last_run.PROPERTY_URN, "structuredPropertySettings")
    assert settings["showInAssetSummary"] is True


def test_a_dataset_tagged_while_no_event_reached_the_action_is_found_by_the_sweep(stack, pg, gms_server):
    # Tagged before the pipeline started (a new consumer group starts at the latest offset):
    # no event is ever published for it.
    name, urn = stack.table()
    gms_server.put_aspect(urn, GlobalTagsClass([TagAssociationClass(RUN)]))
    done, done_urn = stack.table()  # tokenized before, the tag since removed: not found
    config = stack.pipeline_config(reconcile=True)
    config["action"]["config"]["reconcile"] = {"startup_delay_s": 0, "interval_s": 3600}
    with running_pipeline(config):
        [record] = stack.wait_runs(urn, 1)
    assert record["status"] == "SUCCESS" and record["trigger"] == "reconcile"
    assert record["columns"] == ["email", "phone"] and record["counts"]["rows_updated"] == 2
    assert [r[1] for r in pg.rows(name)] == [SHIPPED_TOKENIZER.tokenize("alice@example.com"),
                                             SHIPPED_TOKENIZER.tokenize("bob@example.com")]
    added, removed = stack.tags(urn)
    assert SUCCESS in added and RUN in removed
    assert stack.runs(done_urn) == [] and pg.rows(done)[0][1] == "alice@example.com"
    [instance] = {m.entity_urn for m in gms_server.mcps(aspect_name="dataProcessInstanceOutput") if urn in m.value["outputs"]}
    assert gms_server.aspect_json(instance, "dataProcessInstanceProperties")["customProperties"]["trigger"] == "reconcile"
    from prometheus_client import REGISTRY

    assert REGISTRY.get_sample_value("datahub_tokenize_tags_waiting", {}) == 1.0


def test_a_redelivered_dataset_event_repeats_the_columns_of_its_run_not_a_new_choice(stack, pg):
    # The first run took the field tagged tokenize/run; once untagged, selection alone would
    # fall back to name patterns (email, phone): the repeat must not tokenize those.
    name, urn = stack.table(editable_tags={"note": RUN})
    with running_pipeline(stack.pipeline_config()):
        stack.dataset_tag(urn)
        stack.wait_runs(urn, 1)
        stack.dataset_tag(urn, redelivery=True)
        first, second = stack.wait_runs(urn, 2)
    assert first["columns"] == second["columns"] == ["note"]
    assert second["counts"]["rows_updated"] == 0
    assert [r[1] for r in pg.rows(name)] == ["alice@example.com", "bob@example.com"]


def test_a_missing_table_ends_failed_with_a_failed_events_line_and_no_change(stack, pg, tmp_path):
    name, urn = stack.table()
    before = pg.checksum(name)
    missing = pg.urn("no_such_table")
    stack.dataset_tag(missing)  # GMS has no schema for it: no column is found
    with running_pipeline(stack.pipeline_config()):
        stack.field_tag(missing, "email")
        records = stack.wait_runs(missing, 2)
        log = tmp_path / "failed" / "tokenize" / "failed_events.log"
        wait_until(lambda: log.exists() and len(log.read_text().splitlines()) >= 2, 30, "two failed events logged")
    assert [r["status"] for r in records] == ["FAILED", "FAILED"]
    by_type = {r["error_type"]: r["error"] for r in records}  # two keys, two partitions: any order
    assert "tag the columns" in by_type["NoColumnsError"]
    assert "does not exist" in by_type["TableNotFoundError"]
    assert len(stack.runs(missing)) == 2, "a permanent failure is not re-run by the pipeline's retries"
    added, _ = stack.tags(missing)
    assert FAILED in added and DONE not in added
    assert pg.checksum(name) == before


def test_an_unrelated_tag_or_a_removal_changes_nothing(stack, pg, gms_server):
    name, urn = stack.table()
    other, other_urn = stack.table()
    before = pg.checksum(name)
    with running_pipeline(stack.pipeline_config()):
        stack.dataset_tag(urn, tag="urn:li:tag:pii")
        stack.dataset_tag(urn, operation="REMOVE")
        stack.dataset_tag(urn, tag=DONE)  # what our own write-back looks like
        stack.dataset_tag(other_urn)  # a sentinel: once it is done, the events before it were seen
        stack.wait_runs(other_urn, 1)
    assert pg.checksum(name) == before
    assert gms_server.mcps(entity_urn=urn) == []


@contextlib.contextmanager
def stock_cli() -> Iterator[list[str]]:
    """``datahub actions -c configs/tokenize.yaml`` in its own process group; its output is in
    the yielded list once the block ends (SIGINT, as Ctrl-C)."""
    datahub = os.path.join(os.path.dirname(sys.executable), "datahub")
    proc = subprocess.Popen([datahub, "actions", "-c", str(CONFIG)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output: list[str] = []
    try:
        yield output
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        output.append(out)


def test_the_stock_datahub_actions_cli_runs_the_shipped_config(stack, pg):
    name, urn = stack.table()
    with stock_cli() as output:
        stack.dataset_tag(urn)
        [record] = stack.wait_runs(urn, 1, timeout=120)
    out = output[0]
    assert record["status"] == "SUCCESS" and record["counts"]["rows_updated"] == 2, out[-3000:]
    tok = SHIPPED_TOKENIZER
    assert pg.rows(name)[0][1] == tok.tokenize("alice@example.com")
    assert HMAC_KEY not in out and "unused-under-trust-auth" not in out


def test_through_the_stock_cli_a_failure_is_an_incident_the_next_success_resolves_and_both_are_runs(
        stack, pg, gms_server):
    from datahub_tokenize_action._datahub import incidents

    name, urn = stack.table()
    pg.execute(f"ALTER TABLE {name} RENAME TO {name}_away")
    incident = incidents.incident_urn(urn)
    with stock_cli() as output:
        stack.dataset_tag(urn)
        [failed] = stack.wait_runs(urn, 1, timeout=120)
        state = wait_until(lambda: gms_server.aspect_json(incident, "incidentInfo"), 30, "the incident")
        assert (failed["status"], failed["error_type"]) == ("FAILED", "TableNotFoundError")
        assert state["status"]["state"] == "ACTIVE" and state["entities"] == [urn]
        assert failed["run_id"] in state["description"]
        pg.execute(f"ALTER TABLE {name}_away RENAME TO {name}")
        stack.dataset_tag(urn)  # the steward tags again once the table is back
        _, ok = stack.wait_runs(urn, 2, timeout=120)
        wait_until(lambda: gms_server.aspect_json(incident, "incidentInfo")["status"]["state"] == "RESOLVED", 30,
                   "the incident resolved")
    assert ok["status"] == "SUCCESS", output[0][-3000:]
    runs = {}
    for m in gms_server.mcps(aspect_name="dataProcessInstanceOutput"):
        if urn in m.value["outputs"]:
            events = gms_server.mcps(entity_urn=m.entity_urn, aspect_name="dataProcessInstanceRunEvent")
            runs[m.entity_urn] = [(e.value["status"], (e.value.get("result") or {}).get("type")) for e in events]
    assert sorted(runs.values()) == [[("STARTED", None), ("COMPLETE", "FAILURE")],
                                     [("STARTED", None), ("COMPLETE", "SUCCESS")]]


@pytest.mark.parametrize("token", [None, "eyJ-personal-access-token"])
def test_the_shipped_config_reaches_datahub_with_the_stock_containers_variables(stack, pg, gms_server, monkeypatch,
                                                                               token):
    # What the acryldata/datahub-actions container sets: the GMS address in parts and the
    # system client's credentials, never DATAHUB_GMS_URL. A token, when given, wins.
    gms = sa.make_url(gms_server.url)
    monkeypatch.delenv("DATAHUB_GMS_URL")
    for k, v in {"DATAHUB_GMS_PROTOCOL": "http", "DATAHUB_GMS_HOST": gms.host, "DATAHUB_GMS_PORT": str(gms.port),
                 "DATAHUB_SYSTEM_CLIENT_ID": "__datahub_system", "DATAHUB_SYSTEM_CLIENT_SECRET": "s3cret-system"}.items():
        monkeypatch.setenv(k, v)
    if token:
        monkeypatch.setenv("DATAHUB_GMS_TOKEN", token)
    name, urn = stack.table()
    with running_pipeline(stack.pipeline_config()):
        stack.dataset_tag(urn)
        [record] = stack.wait_runs(urn, 1)
    assert record["status"] == "SUCCESS" and record["counts"]["rows_updated"] == 2
    sent = {r.headers.get("Authorization") for r in gms_server.requests()}
    assert sent == {f"Bearer {token}" if token else "Basic __datahub_system:s3cret-system"}
