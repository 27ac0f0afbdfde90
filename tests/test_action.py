"""TokenizeAction as the actions pipeline drives it: ``create`` from the YAML's config,
then ``act`` on genuine event envelopes, again on the same envelope when the pipeline
retries a failure (``options.retry_count``).

Envelopes are built the way the stock Kafka source builds them (see test_events.py).
No ``datahub:`` section here (``graph=None``): nothing is written back.
"""

from __future__ import annotations

import json
import time
import traceback
from typing import Any

import pytest
from datahub.metadata.schema_classes import GenericPayloadClass
from datahub_actions.event.event_envelope import EventEnvelope
from datahub_actions.event.event_registry import ENTITY_CHANGE_EVENT_V1_TYPE
from datahub_actions.pipeline.pipeline_context import PipelineContext
from datahub_actions.plugin.source.kafka.kafka_event_source import build_entity_change_event
from pydantic import ValidationError

import datahub_tokenize_action._action as action_module
from datahub_tokenize_action import (
    NoColumnsError,
    TableNotFoundError,
    WarehouseUnavailableError,
)
from datahub_tokenize_action._action import TokenizeAction
from datahub_tokenize_action._runner import Outcome, failed_result

from .harness import HMAC_KEY

RUN_TAG = "urn:li:tag:tokenize/run"
AUDIT = {"actor": "urn:li:corpuser:jdoe", "time": 1649953100653}
PASSWORD = "S3cretPassw0rd"
UNREACHABLE = f"postgresql+psycopg2://tokenize:{PASSWORD}@127.0.0.1:1"
UNREACHABLE_DATASET = "urn:li:dataset:(urn:li:dataPlatform:postgres,appdb.public.customers,PROD)"


def envelope(ece: dict[str, Any]) -> EventEnvelope:
    payload = GenericPayloadClass(value=json.dumps(ece).encode(), contentType="application/json")
    meta = {"kafka": {"topic": "PlatformEvent_v1", "offset": 7, "partition": 0}}
    return EventEnvelope(ENTITY_CHANGE_EVENT_V1_TYPE, build_entity_change_event(payload), meta)


def dataset_tag(dataset_urn: str, tag: str = RUN_TAG, operation: str = "ADD") -> EventEnvelope:
    return envelope({
        "entityUrn": dataset_urn, "entityType": "dataset", "category": "TAG", "operation": operation,
        "modifier": tag, "parameters": {"tagUrn": tag}, "auditStamp": AUDIT, "version": 0,
    })


def field_tag(dataset_urn: str, field_path: str, tag: str = RUN_TAG, operation: str = "ADD") -> EventEnvelope:
    return envelope({
        "entityUrn": f"urn:li:schemaField:({dataset_urn},{field_path})", "entityType": "schemaField",
        "category": "TAG", "operation": operation, "modifier": tag,
        "parameters": {"fieldPath": field_path, "parentUrn": dataset_urn, "tagUrn": tag, "context": "{}"},
        "auditStamp": AUDIT, "version": 0,
    })


def config_dict(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "connections": [{"platform": "postgres", "url": url}],
        "tokenizer": {"type": "hmac", "key": HMAC_KEY},
        **extra,
    }


def make_action(url: str = UNREACHABLE, **extra: Any) -> TokenizeAction:
    return TokenizeAction.create(config_dict(url, **extra), PipelineContext(pipeline_name="t", graph=None))


@pytest.fixture
def runs(monkeypatch):
    """Counts calls of tokenize_dataset by the action, passing them through."""
    calls: list[Any] = []
    real = action_module.tokenize_dataset

    def counting(*args: Any, **kwargs: Any) -> Outcome:
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(action_module, "tokenize_dataset", counting)
    return calls


# -- create ----------------------------------------------------------------------------


def test_create_builds_the_action_from_the_pipeline_config():
    action = make_action(trigger_tag="pii/tokenize")

    assert action.config.trigger_tag == "urn:li:tag:pii/tokenize"
    assert action.graph is None


def test_create_rejects_an_unknown_config_key_by_name():
    with pytest.raises(ValidationError, match="batch_sise"):
        make_action(batch_sise=100)


def test_create_rejects_an_unknown_key_in_a_nested_section_by_name():
    with pytest.raises(ValidationError, match="comit_every_batch"):
        make_action(run={"comit_every_batch": True})



def test_create_rejects_an_unknown_tokenizer_option_by_name():
    with pytest.raises(ValidationError, match="kye_id"):
        TokenizeAction.create(
            {"connections": [{"platform": "postgres", "url": UNREACHABLE}],
             "tokenizer": {"type": "hmac", "key": HMAC_KEY, "kye_id": "2024"}},
            PipelineContext(pipeline_name="t", graph=None),
        )


def test_create_errors_never_show_the_url_password_or_the_tokenizer_key():
    with pytest.raises(ValidationError) as info:
        make_action(batch_sise=100, run={"batch_size": 0})

    assert PASSWORD not in str(info.value)
    assert HMAC_KEY not in str(info.value)

# -- events that are not ours ----------------------------------------------------------


@pytest.mark.parametrize("event", [
    pytest.param(lambda: field_tag(UNREACHABLE_DATASET, "email", tag="urn:li:tag:pii"), id="another tag on a column"),
    pytest.param(lambda: dataset_tag(UNREACHABLE_DATASET, tag="urn:li:tag:pii"), id="another tag on a dataset"),
    pytest.param(lambda: field_tag(UNREACHABLE_DATASET, "email", operation="REMOVE"), id="trigger tag removed"),
    pytest.param(lambda: dataset_tag(UNREACHABLE_DATASET, tag="urn:li:tag:tokenize/done"), id="the action's own done tag"),
])
def test_an_event_that_is_not_ours_returns_none_and_does_nothing(event, runs):
    assert make_action().act(event()) is None
    assert runs == []


# -- a run -----------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_column_tag_event_tokenizes_that_column(pg, runs):
    table = pg.create_table([("id", "int"), ("email", "text"), ("phone", "text")],
                            [(1, "alice@example.com", "+1-555-0100"), (2, "bob@example.com", None)])
    action = make_action(pg.server_url)

    assert action.act(field_tag(pg.urn(table), "email")) is None

    tok = action.config.build_tokenizer()
    assert pg.rows(table) == [
        (1, tok.tokenize("alice@example.com"), "+1-555-0100"),
        (2, tok.tokenize("bob@example.com"), None),
    ]
    assert len(runs) == 1


@pytest.mark.postgres
def test_a_v2_column_tag_event_tokenizes_the_simple_column(pg):
    table = pg.create_table([("id", "int"), ("email", "text")], [(1, "alice@example.com")])
    action = make_action(pg.server_url)

    action.act(field_tag(pg.urn(table), "[version=2.0].[type=string].email"))

    assert pg.rows(table) == [(1, action.config.build_tokenizer().tokenize("alice@example.com"))]


@pytest.mark.postgres
def test_a_second_delivery_of_a_succeeded_event_changes_nothing(pg):
    table = pg.create_table([("id", "int"), ("email", "text")], [(1, "alice@example.com")])
    action = make_action(pg.server_url)
    event = field_tag(pg.urn(table), "email")
    action.act(event)
    after = pg.rows(table)

    action.act(event)

    assert pg.rows(table) == after


# -- permanent failures ----------------------------------------------------------------


@pytest.mark.postgres
def test_a_permanent_failure_raises_and_the_pipeline_retry_re_raises_it_without_running_again(pg, runs):
    action = make_action(pg.server_url)
    event = field_tag(pg.urn("no_such_table"), "email")

    with pytest.raises(TableNotFoundError, match="does not exist") as first:
        action.act(event)
    assert first.value.permanent is True
    assert len(runs) == 1

    depth = []
    for _ in range(3):
        with pytest.raises(TableNotFoundError) as retried:
            action.act(event)  # the pipeline retries with the very same envelope
        assert retried.value is first.value
        depth.append(len(traceback.extract_tb(retried.value.__traceback__)))
    assert len(runs) == 1
    assert depth[0] == depth[-1], "each re-raise starts afresh: the traceback does not pile up"


@pytest.mark.postgres
def test_a_new_delivery_of_a_permanently_failed_event_is_tried_afresh(pg, runs):
    # After the steward fixed the cause and re-tagged, a new envelope arrives.
    action = make_action(pg.server_url)
    with pytest.raises(TableNotFoundError):
        action.act(field_tag(pg.urn("no_such_table"), "email"))

    with pytest.raises(TableNotFoundError):
        action.act(field_tag(pg.urn("no_such_table"), "email"))

    assert len(runs) == 2


def test_remembered_permanent_failures_are_bounded_and_the_oldest_is_forgotten(monkeypatch):
    calls: list[EventEnvelope] = []

    def failing(config, request, **kwargs):
        calls.append(request)
        error = TableNotFoundError(f"dataset {request.dataset_urn}: table does not exist")
        return Outcome(failed_result(request, error), error)

    monkeypatch.setattr(action_module, "tokenize_dataset", failing)
    action = make_action()
    events = [field_tag(f"urn:li:dataset:(urn:li:dataPlatform:postgres,db.public.t{i},PROD)", "email")
              for i in range(TokenizeAction._REMEMBERED_FAILURES + 1)]
    for event in events:
        with pytest.raises(TableNotFoundError):
            action.act(event)
    assert len(calls) == len(events)

    with pytest.raises(TableNotFoundError):
        action.act(events[-1])  # still remembered
    assert len(calls) == len(events)
    with pytest.raises(TableNotFoundError):
        action.act(events[0])  # forgotten: runs again
    assert len(calls) == len(events) + 1


def test_a_dataset_tag_without_a_datahub_graph_fails_with_how_to_tag_columns(runs):
    action = make_action()
    event = dataset_tag(UNREACHABLE_DATASET)

    with pytest.raises(NoColumnsError) as info:
        action.act(event)

    message = str(info.value)
    assert UNREACHABLE_DATASET in message
    assert "tag the columns one by one" in message and RUN_TAG in message
    assert info.value.permanent is True
    with pytest.raises(NoColumnsError):
        action.act(event)
    assert len(runs) == 1



def test_without_a_datahub_graph_the_error_says_columns_must_be_tagged_one_by_one():
    with pytest.raises(NoColumnsError) as info:
        make_action().act(dataset_tag(UNREACHABLE_DATASET))

    message = str(info.value)
    assert "datahub:" in message
    assert "name_patterns" not in message

# -- transient failures ----------------------------------------------------------------


def test_a_transient_failure_is_retried_for_real_and_never_shows_the_password(runs):
    action = make_action(UNREACHABLE)
    event = field_tag(UNREACHABLE_DATASET, "email")

    with pytest.raises(WarehouseUnavailableError) as first:
        action.act(event)
    assert first.value.permanent is False
    assert len(runs) == 1

    with pytest.raises(WarehouseUnavailableError) as retried:
        action.act(event)  # the pipeline's retry of the same envelope
    assert len(runs) == 2
    assert retried.value is not first.value

    for error in (first.value, retried.value):
        assert PASSWORD not in str(error)
        assert PASSWORD not in repr(error)
        assert "127.0.0.1" in str(error)
        assert error.__cause__ is None and error.__suppress_context__



# -- DataHub unreachable ---------------------------------------------------------------


class _FlakyGraph:
    """A DataHub graph whose writes fail until ``up`` is set; records what it was sent."""

    def __init__(self) -> None:
        self.up, self.sent = False, []

    def get_aspect(self, entity_urn: str, aspect_type: type) -> None:
        return None

    def emit_mcps(self, mcps: Any) -> None:
        if not self.up:
            raise ConnectionError("HTTPConnectionPool(host='gms', port=8080): Max retries exceeded")
        self.sent.extend(mcps)


@pytest.mark.postgres
def test_a_datahub_outage_after_tokenizing_is_transient_and_the_retry_records_the_outcome(pg, runs):
    from datahub_tokenize_action import DataHubError

    table = pg.create_table([("id", "int"), ("email", "text")], [(1, "alice@example.com")])
    action = make_action(pg.server_url)
    action.graph = graph = _FlakyGraph()
    event = field_tag(pg.urn(table), "email")

    with pytest.raises(DataHubError, match="ended SUCCESS, but recording that in DataHub failed") as err:
        action.act(event)
    assert err.value.permanent is False
    _assert_detached(err.value)
    tokenized = pg.rows(table)
    assert action.config.build_tokenizer().is_token(tokenized[0][1])

    graph.up = True
    action.act(event)  # the pipeline's retry: runs again, changes nothing, writes the outcome

    assert len(runs) == 2 and pg.rows(table) == tokenized
    assert {m.aspectName for m in graph.sent} >= {"globalTags", "datasetProperties"}


def _assert_detached(error: BaseException) -> None:
    """Raised to the pipeline without the HTTP error behind it or the frames that met it
    (error reporters record both, with their locals: requests, tokens, plaintext)."""
    assert error.__cause__ is None and error.__context__ is None
    frames = {f.name for f in traceback.extract_tb(error.__traceback__)}
    assert frames.isdisjoint({"emit_mcps", "get_aspect", "write_back", "current_request", "talking_to_datahub"}), frames


def test_a_datahub_outage_before_the_run_is_transient_and_detached(runs):
    class _DownGraph:
        def get_aspect(self, entity_urn: str, aspect_type: type) -> None:
            raise ConnectionError("HTTPConnectionPool(host='gms', port=8080): Max retries exceeded")

    from datahub_tokenize_action import DataHubError

    action = make_action()
    action.graph = _DownGraph()
    with pytest.raises(DataHubError, match="reading its tags from DataHub failed: ConnectionError") as err:
        action.act(dataset_tag("urn:li:dataset:(urn:li:dataPlatform:postgres,appdb.public.customers,PROD)"))
    assert err.value.permanent is False and not runs
    _assert_detached(err.value)


# -- what DataHub says now: redelivered and withdrawn dataset events -------------------------


class _StateGraph:
    """DataHub's current aspects of one dataset (by aspect class); writes are kept."""

    def __init__(self, *aspects: Any) -> None:
        self.aspects = {type(a): a for a in aspects}
        self.sent: list[Any] = []

    def get_aspect(self, entity_urn: str, aspect_type: type) -> Any:
        return self.aspects.get(aspect_type)

    def emit_mcps(self, mcps: Any) -> None:
        self.sent.extend(mcps)


def _run_record(**fields: Any):
    from datahub.metadata.schema_classes import DatasetPropertiesClass

    return DatasetPropertiesClass(customProperties={"last_tokenization_run": json.dumps(fields)})


def test_a_dataset_event_whose_tag_was_removed_before_any_run_does_nothing(runs):
    from datahub.metadata.schema_classes import GlobalTagsClass, TagAssociationClass

    action = make_action()
    action.graph = graph = _StateGraph(GlobalTagsClass([TagAssociationClass("urn:li:tag:pii")]))

    assert action.act(dataset_tag(UNREACHABLE_DATASET)) is None
    assert runs == [] and graph.sent == []


def test_a_failed_run_does_not_make_a_withdrawn_tag_run_again(runs):
    action = make_action()
    action.graph = _StateGraph(_run_record(status="FAILED", columns=["email"]))

    assert action.act(dataset_tag(UNREACHABLE_DATASET)) is None
    assert runs == []


@pytest.mark.postgres
def test_a_redelivered_dataset_event_repeats_the_columns_of_the_run_that_removed_its_tag(pg, runs):
    table = pg.create_table([("id", "int"), ("email", "text"), ("note", "text")], [(1, "a@x.com", "n")])
    action = make_action(pg.server_url)
    action.graph = _StateGraph(_run_record(status="SUCCESS", columns=["note"], run_id="r1"))

    action.act(dataset_tag(pg.urn(table)))

    assert [r.columns for r in runs] == [("note",)]
    assert pg.rows(table)[0][1] == "a@x.com"


def test_while_the_tag_is_on_the_dataset_its_columns_are_chosen_afresh(runs):
    from datahub.metadata.schema_classes import GlobalTagsClass, TagAssociationClass

    action = make_action()
    action.graph = _StateGraph(GlobalTagsClass([TagAssociationClass(RUN_TAG)]),
                               _run_record(status="SUCCESS", columns=["note"]))

    with pytest.raises(NoColumnsError):
        action.act(dataset_tag(UNREACHABLE_DATASET))  # no schema in this DataHub: no column
    assert [r.columns for r in runs] == [None]


@pytest.mark.postgres
def test_a_token_without_rights_on_tags_still_records_the_outcome(pg):
    from datahub.metadata.schema_classes import TagPropertiesClass

    class NoTagRights(_StateGraph):
        def get_aspect(self, entity_urn: str, aspect_type: type) -> Any:
            if aspect_type is TagPropertiesClass:
                raise PermissionError("403 Unauthorized to read tag")
            return super().get_aspect(entity_urn, aspect_type)

    table = pg.create_table([("id", "int"), ("email", "text")], [(1, "a@x.com")])
    action = make_action(pg.server_url)
    action.graph = graph = NoTagRights()

    assert action.act(field_tag(pg.urn(table), "email")) is None

    assert {m.aspectName for m in graph.sent} >= {"globalTags", "datasetProperties"}


def test_runs_and_ignored_events_are_counted_in_the_prometheus_registry(pg, monkeypatch):
    from prometheus_client import REGISTRY

    from datahub_tokenize_action._datahub import metrics

    def sample(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    table = pg.create_table([("id", "int"), ("email", "text")], [(i, f"m{i}@example.com") for i in range(12)])
    before = {
        "ok": sample("datahub_tokenize_runs_total", platform="postgres", status="SUCCESS", dry_run="false"),
        "failed": sample("datahub_tokenize_runs_total", platform="postgres", status="FAILED", dry_run="false"),
        "updated": sample("datahub_tokenize_rows_updated_total", platform="postgres"),
        "values": sample("datahub_tokenize_values_tokenized_total", platform="postgres"),
        "durations": sample("datahub_tokenize_run_duration_seconds_count", platform="postgres", status="SUCCESS"),
        "ignored": sample("datahub_tokenize_events_ignored_total", reason="not_a_trigger"),
    }
    config = pg.config()
    from datahub_tokenize_action import TokenizeRequest
    from datahub_tokenize_action._runner import tokenize_dataset

    assert tokenize_dataset(config, TokenizeRequest(pg.urn(table), ("email",))).error is None
    assert tokenize_dataset(config, TokenizeRequest(pg.urn(table), ("nope",))).error is not None
    action = TokenizeAction(config, PipelineContext(pipeline_name="p", graph=None))
    action.act(dataset_tag(pg.urn(table), tag="urn:li:tag:other"))
    assert sample("datahub_tokenize_runs_total", platform="postgres", status="SUCCESS", dry_run="false") == before["ok"] + 1
    assert sample("datahub_tokenize_runs_total", platform="postgres", status="FAILED", dry_run="false") == before["failed"] + 1
    assert sample("datahub_tokenize_rows_updated_total", platform="postgres") == before["updated"] + 12
    assert sample("datahub_tokenize_values_tokenized_total", platform="postgres") == before["values"] + 12
    assert sample("datahub_tokenize_run_duration_seconds_count", platform="postgres", status="SUCCESS") == before["durations"] + 1
    assert sample("datahub_tokenize_runs_in_progress", platform="postgres") == 0
    assert sample("datahub_tokenize_oldest_run_start_time_seconds", platform="postgres") == 0
    with metrics.observed_run(pg.urn(table)), metrics.observed_run(pg.urn(table)):
        started = sample("datahub_tokenize_oldest_run_start_time_seconds", platform="postgres")
        assert 0 < time.time() - started < 60
        assert sample("datahub_tokenize_runs_in_progress", platform="postgres") == 2
    assert sample("datahub_tokenize_oldest_run_start_time_seconds", platform="postgres") == 0
    assert sample("datahub_tokenize_events_ignored_total", reason="not_a_trigger") == before["ignored"] + 1
    assert metrics.platform_of("urn:li:corpuser:x") == "unknown"


def test_the_sweep_and_the_event_path_never_run_at_once_and_close_stops_the_sweep(monkeypatch):
    import threading

    from datahub_tokenize_action import TokenizeRequest
    from datahub_tokenize_action.testing.pipeline import wait_until

    class _Ctx:  # what PipelineContext.graph holds: an object whose .graph is the client
        graph = object()

    active, overlaps, order = [], [], []
    release = threading.Event()

    def one_run(config, request, **kwargs):
        active.append(request)
        overlaps.append(len(active))
        order.append(request.trigger)
        if request.trigger == "event":
            release.wait(5)
        active.remove(request)
        return Outcome(failed_result(request, RuntimeError("stub")))  # (no error: the caller does not raise)

    monkeypatch.setattr(action_module, "tokenize_dataset", one_run)
    monkeypatch.setattr(action_module, "current_request", lambda graph, config, request: request)
    action = TokenizeAction.create(config_dict(UNREACHABLE, reconcile={"startup_delay_s": 3600}),
                                   PipelineContext(pipeline_name="t", graph=_Ctx()))
    assert action._reconciler is not None
    event = threading.Thread(target=action.act, args=(dataset_tag(UNREACHABLE_DATASET),))
    event.start()
    wait_until(lambda: active, 5, "the event's run to start")
    sweep = threading.Thread(target=action._reconcile, args=(TokenizeRequest(UNREACHABLE_DATASET, trigger="reconcile"),))
    sweep.start()
    sweep.join(0.3)
    assert sweep.is_alive(), "the sweep's run waits while the event's run holds the action"
    release.set()
    event.join(5)
    sweep.join(5)
    assert order == ["event", "reconcile"] and max(overlaps) == 1
    action.close()
    assert not action._reconciler._thread.is_alive()
