"""Each run as a DataHub DataProcessInstance with the dataset as its output, so the dataset's
Runs tab lists every tokenization: STARTED when it begins, COMPLETE with SUCCESS or FAILURE
and its duration when it ends, its run record in the instance's properties.

Pure: MCPs from values. One run id gives one instance URN (acryl-datahub's
``DataProcessInstance`` key: orchestrator + id), so a retry of the same event (same run id)
updates the instance with a higher attempt number instead of adding another.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Iterable, Sequence

from datahub.api.entities.dataprocess.dataprocess_instance import DataProcessInstance, InstanceRunResult
from datahub.emitter.mcp import MetadataChangeProposalWrapper
from datahub.metadata.schema_classes import DataProcessTypeClass
from datahub.metadata.urns import DatasetUrn

from .._result import TokenizeResult, millis

__all__ = ["ORCHESTRATOR", "end_mcps", "event_run_id", "instance_urn", "start_mcps"]

#: The instances' orchestrator (their platform in DataHub's UI).
ORCHESTRATOR = "datahub-tokenize"
#: What made the run: a tag event through the actions pipeline, or the CLI.
Trigger = str

_RUN_ID_NAMESPACE = uuid.UUID("6b1f0c52-2f5e-4d0e-9a43-4a1c7f0d2b11")


def event_run_id(*parts: object) -> str:
    """A run id derived from what identifies an event (its entity, time, tag): every delivery
    and retry of one event gets the same id, so its instance is one."""
    return uuid.uuid5(_RUN_ID_NAMESPACE, "|".join(str(p) for p in parts)).hex


def _instance(dataset_urn: str, run_id: str, properties: dict[str, str]) -> DataProcessInstance:
    return DataProcessInstance(
        id=f"tokenize-{run_id}",
        orchestrator=ORCHESTRATOR,
        type=DataProcessTypeClass.BATCH_AD_HOC,
        outlets=[DatasetUrn.from_string(dataset_urn)],
        properties=properties,
    )


def instance_urn(dataset_urn: str, run_id: str) -> str:
    return str(_instance(dataset_urn, run_id, {}).urn)


def start_mcps(dataset_urn: str, run_id: str, *, started_at: str, columns: Sequence[str] | None,
               trigger: Trigger, attempt: int) -> list[MetadataChangeProposalWrapper]:
    """The instance as the run begins: its properties so far, the dataset as its output, a
    STARTED run event."""
    started = millis(started_at)
    dpi = _instance(dataset_urn, run_id, {
        "run_id": run_id, "dataset": dataset_urn, "trigger": trigger, "status": "RUNNING",
        "columns": ", ".join(columns) if columns else "(chosen from DataHub)", "started_at": started_at,
    })
    return [*_without_input(dpi.generate_mcp(created_ts_millis=started, materialize_iolets=False)),
            *dpi.start_event_mcp(started, attempt=attempt)]


def end_mcps(result: TokenizeResult, *, trigger: Trigger, attempt: int) -> list[MetadataChangeProposalWrapper]:
    """The instance as the run ended: its properties (the run record, flattened to strings),
    a COMPLETE run event with SUCCESS or FAILURE and the duration."""
    assert result.run_id is not None
    started, ended = millis(result.started_at), millis(result.ended_at)
    dpi = _instance(result.dataset, result.run_id, _properties(result, trigger))
    outcome = InstanceRunResult.SUCCESS if result.status == "SUCCESS" else InstanceRunResult.FAILURE
    return [*_without_input(dpi.generate_mcp(created_ts_millis=started, materialize_iolets=False)),
            *dpi.end_event_mcp(ended, outcome, result_type=ORCHESTRATOR, attempt=attempt,
                               start_timestamp_millis=started)]


def _without_input(mcps: Iterable[MetadataChangeProposalWrapper]) -> list[MetadataChangeProposalWrapper]:
    """acryl-datahub writes an empty input list too: an instance with no inputs needs none."""
    return [m for m in mcps if m.aspectName != "dataProcessInstanceInput"]


def _properties(result: TokenizeResult, trigger: Trigger) -> dict[str, str]:
    d = result.to_dict()
    props: dict[str, Any] = {
        "run_id": d["run_id"], "dataset": d["dataset"], "trigger": trigger, "status": d["status"],
        "dry_run": d["dry_run"], "method": d["method"], "table": d["table"], "columns": ", ".join(d["columns"]),
        "started_at": d["started_at"], "ended_at": d["ended_at"], "elapsed_s": d["elapsed_s"],
        "rows_scanned": d["rows_scanned"], "rows_updated": d["rows_updated"],
        "values_tokenized": json.dumps(d["values_tokenized"], sort_keys=True),
        "values_skipped": json.dumps(d["values_skipped"], sort_keys=True),
        "tokenizer": d["tokenizer"], "key_id": d["key_id"],
        "plaintext_remains": d["plaintext_remains"], "error_type": d["error_type"], "error": d["error"],
    }
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in props.items() if v is not None}
