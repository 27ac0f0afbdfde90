"""The reconcile sweep: a dataset tagged while no event reached the action is found by search
and tokenized; datasets whose tag is not waiting are left alone."""

from __future__ import annotations

import datetime

import pytest
from datahub.ingestion.graph.client import DatahubClientConfig, DataHubGraph
from datahub.metadata.schema_classes import (
    EditableSchemaFieldInfoClass,
    EditableSchemaMetadataClass,
    GlobalTagsClass,
    StatusClass,
    TagAssociationClass,
)

from datahub_tokenize_action._datahub import reconcile

RUN = "urn:li:tag:tokenize/run"
NOW = datetime.datetime(2026, 12, 6, 12, 0, tzinfo=datetime.timezone.utc)


def _ago(minutes: float) -> str:
    return (NOW - datetime.timedelta(minutes=minutes)).isoformat(timespec="seconds")


@pytest.mark.parametrize("record, tags_removed, waits", [
    ({}, True, "no run recorded"),
    ({"status": "SUCCESS", "dry_run": True}, True, "no run recorded"),
    ({"status": "SUCCESS", "ended_at": _ago(60)}, True, "tagged again after its last successful run"),
    ({"status": "SUCCESS", "ended_at": _ago(2)}, True, None),  # search still lags behind the run
    ({"status": "SUCCESS", "ended_at": _ago(60)}, False, None),  # write_back.tags off: the tag always stays
    ({"status": "FAILED", "error_type": "WarehouseUnavailableError"}, True,
     "its last run failed with WarehouseUnavailableError, which a retry can pass"),
    ({"status": "FAILED", "error_type": "TableNotFoundError"}, True, None),  # waits for a fix and a new tag
    ({"status": "FAILED", "error_type": "SomethingElse"}, True, None),
])
def test_which_tagged_datasets_wait_for_a_run(record, tags_removed, waits):
    assert reconcile.waiting(record, tags_removed=tags_removed, now=NOW) == waits


def test_datahubs_search_finds_datasets_tagged_on_the_dataset_or_a_field(gms_server):
    def dataset(name):
        return f"urn:li:dataset:(urn:li:dataPlatform:postgres,db.public.{name},PROD)"

    gms_server.put_aspect(dataset("on_dataset"), GlobalTagsClass([TagAssociationClass(RUN)]))
    gms_server.put_aspect(dataset("on_field"), EditableSchemaMetadataClass(editableSchemaFieldInfo=[
        EditableSchemaFieldInfoClass(fieldPath="email", globalTags=GlobalTagsClass([TagAssociationClass(RUN)]))]))
    gms_server.put_aspect(dataset("other_tag"), GlobalTagsClass([TagAssociationClass("urn:li:tag:pii")]))
    gms_server.put_aspect(dataset("removed"), GlobalTagsClass([TagAssociationClass(RUN)]))
    gms_server.put_aspect(dataset("removed"), StatusClass(removed=True))
    graph = DataHubGraph(DatahubClientConfig(server=gms_server.url, retry_max_times=0))
    try:
        found = reconcile.tagged_datasets(graph, RUN)
    finally:
        graph.close()
    assert sorted(found) == [dataset("on_dataset"), dataset("on_field")]
    [search] = [r for r in gms_server.requests() if r.path == "/api/graphql"]
    assert "scrollAcrossEntities" in search.json["query"]
