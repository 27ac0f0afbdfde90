"""Write-back MCPs against golden files, plus the managed-summary merge.

Goldens live in tests/golden/ and are compared with datahub.testing's helper
(``check_goldens_stream``: the MCPs serialized with ``to_obj()`` into a JSON list).
Refresh them with ``pytest --update-golden-files``.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Sequence

import pytest
from datahub.testing.mce_helpers import check_goldens_stream

from datahub_tokenize_action._result import TokenizeResult
from datahub_tokenize_action._datahub.writeback import (
    DONE_TAG,
    RUN_RECORD_PROPERTY,
    RUN_TAG,
    STATUS_FAILED_TAG,
    STATUS_SUCCESS_TAG,
    SUMMARY_BEGIN,
    SUMMARY_END,
    merge_summary,
    outcome_mcps,
    render_summary,
    run_record,
    tag_definition_mcps,
)

GOLDEN = pathlib.Path(__file__).parent / "golden"
DATASET = "urn:li:dataset:(urn:li:dataPlatform:postgres,appdb.public.customers,PROD)"
V2_EMAIL = "[version=2.0].[type=string].email"

SUCCESS = TokenizeResult(
    status="SUCCESS",
    dataset=DATASET,
    columns=("email", "phone"),
    rows_scanned=1000,
    rows_updated=990,
    values_tokenized={"email": 990, "phone": 985},
    values_skipped={"email": 10, "phone": 5},
    nulls={"email": 0, "phone": 8},
    empty_strings={"email": 0, "phone": 2},
    elapsed_s=12.345,
    table="public.customers",
    tokenizer="hmac",
    key_id="k-2024-05",
    run_id="0b9c1f2e-run-fixed",
    started_at="2024-05-01T12:00:00+00:00",
    ended_at="2024-05-01T12:00:12+00:00",
)
FAILED = SUCCESS.replace(
    status="FAILED",
    columns=("email",),
    rows_updated=0,
    values_tokenized={},
    values_skipped={},
    nulls={},
    empty_strings={},
    error="column \"email\" of public.customers is varchar(20); tokens need 48 characters.\nNo data changed.",
    error_type="TokenTooLongError",
)

STEWARD_BEFORE = "Customer master data.\n\nOwned by the CRM team."
STEWARD_AFTER = "## Notes\nRefreshed nightly."
OLD_SECTION = f"{SUMMARY_BEGIN}\n### Tokenization: FAILED\n- stale\n{SUMMARY_END}"


def check_golden(mcps: Sequence[Any], name: str) -> None:
    check_goldens_stream(list(mcps), GOLDEN / name, ignore_order=False)


def patch_ops(mcps: Sequence[Any]) -> list[tuple[str, str, str]]:
    """(aspect, op, path) of every patch operation, in order."""
    ops = []
    for mcp in mcps:
        body = json.loads(mcp.aspect.value)
        for op in body["patch"] if isinstance(body, dict) else body:
            ops.append((mcp.aspectName, op["op"], op["path"]))
    return ops


def description_of(mcps: Sequence[Any]) -> str:
    [mcp] = [m for m in mcps if m.aspectName == "editableDatasetProperties"]
    [op] = json.loads(mcp.aspect.value)
    return op["value"]


# --- golden files -------------------------------------------------------------


def test_success_on_a_dataset_trigger_matches_golden() -> None:
    mcps = outcome_mcps(
        SUCCESS,
        trigger_tag=RUN_TAG,
        fields=(),
        previous_description=f"{STEWARD_BEFORE}\n\n{OLD_SECTION}\n\n{STEWARD_AFTER}",
    )

    check_golden(mcps, "writeback_success_dataset.json")


def test_success_on_column_triggers_matches_golden() -> None:
    mcps = outcome_mcps(SUCCESS, trigger_tag=RUN_TAG, fields=(V2_EMAIL, "phone"), previous_description=None)

    check_golden(mcps, "writeback_success_fields.json")


def test_failure_matches_golden() -> None:
    mcps = outcome_mcps(FAILED, trigger_tag=RUN_TAG, fields=(V2_EMAIL,), previous_description=STEWARD_BEFORE)

    check_golden(mcps, "writeback_failed.json")


def test_tag_definitions_match_golden() -> None:
    check_golden(tag_definition_mcps(), "tag_definitions.json")


# --- behaviour, spelled out -----------------------------------------------------


def test_success_flips_the_trigger_to_done_on_the_dataset_and_its_tagged_fields() -> None:
    ops = patch_ops(outcome_mcps(SUCCESS, trigger_tag=RUN_TAG, fields=(V2_EMAIL,), previous_description=None))

    assert ("globalTags", "remove", "/tags/urn:li:tag:tokenize~1run") in ops
    assert ("globalTags", "add", "/tags//urn:li:tag:tokenize~1done") in ops
    assert ("globalTags", "add", "/tags//urn:li:tag:tokenize~1status:SUCCESS") in ops
    assert ("globalTags", "remove", "/tags/urn:li:tag:tokenize~1status:FAILED") in ops
    assert (
        "editableSchemaMetadata",
        "remove",
        f"/editableSchemaFieldInfo/{V2_EMAIL}/globalTags/tags/urn:li:tag:tokenize~1run",
    ) in ops


def test_failure_keeps_the_trigger_and_marks_the_dataset_failed() -> None:
    ops = patch_ops(outcome_mcps(FAILED, trigger_tag=RUN_TAG, fields=(V2_EMAIL,), previous_description=None))
    touched_tags = {path for aspect, _, path in ops if aspect in ("globalTags", "editableSchemaMetadata")}

    assert ("globalTags", "add", "/tags//urn:li:tag:tokenize~1status:FAILED") in ops
    assert ("globalTags", "remove", "/tags/urn:li:tag:tokenize~1status:SUCCESS") in ops
    assert not any("tokenize~1run" in path or "tokenize~1done" in path for path in touched_tags)


def test_a_dry_run_leaves_the_tags_alone_but_records_the_run() -> None:
    mcps = outcome_mcps(SUCCESS.replace(dry_run=True), trigger_tag=RUN_TAG, fields=("email",), previous_description=None)

    assert {m.aspectName for m in mcps} == {"datasetProperties", "editableDatasetProperties"}
    assert "dry run" in description_of(mcps)


def test_every_write_is_a_patch_that_names_only_what_it_changes() -> None:
    mcps = outcome_mcps(SUCCESS, trigger_tag=RUN_TAG, fields=("email",), previous_description=None)

    assert {m.changeType for m in mcps} == {"PATCH"}
    assert {m.entityUrn for m in mcps} == {DATASET}
    assert ("datasetProperties", "add", f"/customProperties/{RUN_RECORD_PROPERTY}") in patch_ops(mcps)


def test_run_record_property_holds_the_json_run_record() -> None:
    mcps = outcome_mcps(FAILED, trigger_tag=RUN_TAG, fields=(), previous_description=None)
    [mcp] = [m for m in mcps if m.aspectName == "datasetProperties"]
    [op] = json.loads(mcp.aspect.value)
    record = json.loads(op["value"])

    assert record["run_id"] == FAILED.run_id
    assert record["status"] == "FAILED"
    assert record["columns"] == ["email"]
    assert record["counts"]["rows_scanned"] == 1000
    assert record["error_type"] == "TokenTooLongError"
    assert set(record) >= {
        "run_id", "started_at", "ended_at", "dataset", "columns", "counts",
        "tokenizer", "key_id", "dry_run", "status", "error",
    }


def test_the_description_keeps_the_steward_text_around_a_fresh_summary() -> None:
    previous = f"{STEWARD_BEFORE}\n\n{OLD_SECTION}\n\n{STEWARD_AFTER}"
    description = description_of(outcome_mcps(SUCCESS, trigger_tag=RUN_TAG, fields=(), previous_description=previous))

    assert description.startswith(STEWARD_BEFORE + "\n\n" + SUMMARY_BEGIN)
    assert description.endswith(SUMMARY_END + "\n\n" + STEWARD_AFTER)
    assert "stale" not in description
    assert "### Tokenization: SUCCESS" in description


def test_the_summary_shows_the_error_of_a_failed_run_on_one_line() -> None:
    summary = render_summary(FAILED)

    assert "### Tokenization: FAILED" in summary
    assert "- Error (`TokenTooLongError`): column \"email\" of public.customers is varchar(20)" in summary
    assert "No data changed." not in summary  # only the first line of the error


def test_the_summary_and_the_run_record_say_what_old_values_remain() -> None:
    remains = "the old row versions stay in the table's files until VACUUM | autovacuum"
    result = SUCCESS.replace(plaintext_remains=remains, method="pushdown")

    assert "- Old values left behind: the old row versions stay in the table's files until VACUUM \\| autovacuum" \
        in render_summary(result)
    assert "Old values" not in render_summary(SUCCESS)
    assert run_record(result)["plaintext_remains"] == remains and run_record(result)["method"] == "pushdown"


def test_the_summary_escapes_pipes_in_column_names() -> None:
    summary = render_summary(SUCCESS.replace(columns=("a|b",), values_tokenized={"a|b": 1}))

    assert "| `a\\|b` | 1 |" in summary


def test_tag_definitions_cover_every_tag_the_action_writes() -> None:
    assert [m.entityUrn for m in tag_definition_mcps()] == [RUN_TAG, DONE_TAG, STATUS_SUCCESS_TAG, STATUS_FAILED_TAG]
    assert {m.changeType for m in tag_definition_mcps()} == {"UPSERT"}


# --- merge_summary ----------------------------------------------------------------

SUMMARY = "### Tokenization: SUCCESS\n- new"
BLOCK = f"{SUMMARY_BEGIN}\n{SUMMARY}\n{SUMMARY_END}"


@pytest.mark.parametrize("previous", [None, "", "  \n\n "])
def test_merge_into_nothing_gives_just_the_managed_section(previous: str | None) -> None:
    assert merge_summary(previous, SUMMARY) == BLOCK


def test_merge_appends_a_section_after_the_steward_text() -> None:
    assert merge_summary(STEWARD_BEFORE + "\n", SUMMARY) == f"{STEWARD_BEFORE}\n\n{BLOCK}"


def test_merge_replaces_the_old_section_and_keeps_text_before_and_after_byte_for_byte() -> None:
    before, after = "Intro  \n\n* a list\n\n", "\n\nTrailing text with a | pipe.\n"

    assert merge_summary(before + OLD_SECTION + after, SUMMARY) == before + BLOCK + after


def test_merge_is_stable_when_run_twice() -> None:
    once = merge_summary(STEWARD_BEFORE, SUMMARY)

    assert merge_summary(once, SUMMARY) == once


def test_merge_drops_a_duplicated_managed_section() -> None:
    previous = f"A\n{OLD_SECTION}\nB\n{OLD_SECTION}\nC"

    assert merge_summary(previous, SUMMARY) == f"A\n{BLOCK}\nB\n\nC"


def test_merge_keeps_steward_text_after_a_lone_begin_marker() -> None:
    previous = f"A\n{SUMMARY_BEGIN}\nsteward text the action never wrote"

    merged = merge_summary(previous, SUMMARY)

    assert merged == f"A\n\nsteward text the action never wrote\n\n{BLOCK}"


def test_merge_does_not_swallow_text_between_a_stray_begin_and_a_real_section() -> None:
    previous = f"A {SUMMARY_BEGIN} keep me\n{OLD_SECTION}\nB"

    assert merge_summary(previous, SUMMARY) == f"A  keep me\n{BLOCK}\nB"
