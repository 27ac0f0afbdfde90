"""What a run writes back to DataHub, as MCP values (nothing here sends anything).

The action sends the MCPs from one place; this module only builds them, so every
shape is testable against golden files.

Patch-only, with one documented exception
-----------------------------------------
Tags, the run record and field tags are written with
:class:`datahub.specific.dataset.DatasetPatchBuilder`: each PATCH names only the
entry it adds or removes, so the steward's other tags and properties survive
without a read-modify-write race.

The documentation summary is the exception. ``DatasetPatchBuilder.set_description(
text, editable=True)`` is a JSON-patch ``add`` of ``/description`` on
``editableDatasetProperties``: it replaces the *whole* editable description. To
keep the steward's own text, the caller reads that one aspect once before the
write (``previous_description``) and :func:`merge_summary` swaps only the managed
section between :data:`SUMMARY_BEGIN` and :data:`SUMMARY_END`. A steward edit made
between that read and the write is lost; that window is the price of a readable
summary in the place stewards look first.

What the outcome MCPs do::

    SUCCESS   remove <trigger> from the dataset and from each field in ``fields``
              add tokenize/done, tokenize/status:SUCCESS
              remove tokenize/status:FAILED
    FAILED    keep <trigger>
              add tokenize/status:FAILED, remove tokenize/status:SUCCESS
    dry run   tags untouched (nothing was tokenized)
    always    datasetProperties.customProperties["last_tokenization_run"] = JSON run record
              editableDatasetProperties.description = steward text + managed summary

Feedback loop: those tag changes arrive as ``EntityChangeEvent_v1`` events too
(REMOVE of the trigger, ADD of ``done``/``status``); none of them is an ADD of the
trigger tag, so the action's filter and ``parse_event`` drop them.

``customProperties`` belong to ``datasetProperties``, which ingestion owns: a later
full ingestion run may overwrite the run record (the tags and the summary stay).
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

from datahub.emitter.mcp import MetadataChangeProposalWrapper
from datahub.metadata.schema_classes import (
    MetadataChangeProposalClass,
    TagAssociationClass,
    TagPropertiesClass,
)
from datahub.metadata.urns import DatasetUrn
from datahub.specific.dataset import DatasetPatchBuilder

from .._result import TokenizeResult

__all__ = [
    "DONE_TAG",
    "RUN_RECORD_PROPERTY",
    "RUN_TAG",
    "STATUS_FAILED_TAG",
    "STATUS_SUCCESS_TAG",
    "SUMMARY_BEGIN",
    "SUMMARY_END",
    "merge_summary",
    "outcome_mcps",
    "render_summary",
    "run_record",
    "tag_definition_mcps",
]

RUN_TAG = "urn:li:tag:tokenize/run"
DONE_TAG = "urn:li:tag:tokenize/done"
STATUS_SUCCESS_TAG = "urn:li:tag:tokenize/status:SUCCESS"
STATUS_FAILED_TAG = "urn:li:tag:tokenize/status:FAILED"

RUN_RECORD_PROPERTY = "last_tokenization_run"

SUMMARY_BEGIN = "<!-- tokenize:begin -->"
SUMMARY_END = "<!-- tokenize:end -->"

# A complete managed section: BEGIN, then anything that is not another BEGIN, then
# the first END. The lookahead makes a stray BEGIN before a real section harmless
# instead of letting the section swallow the steward text in between.
_SECTION = re.compile(
    re.escape(SUMMARY_BEGIN) + r"(?:(?!" + re.escape(SUMMARY_BEGIN) + r").)*?" + re.escape(SUMMARY_END),
    re.DOTALL,
)

_COUNT_KEYS = ("rows_scanned", "rows_updated", "values_tokenized", "values_skipped", "tokens_not_configured",
               "nulls", "empty_strings")
_ERROR_SUMMARY_CHARS = 300


def run_record(result: TokenizeResult) -> dict[str, Any]:
    """The JSON-ready run record stored in the ``last_tokenization_run`` property.

    Derived from :meth:`TokenizeResult.to_dict`; counts are grouped under ``counts``.
    """
    d = result.to_dict()
    return {
        "run_id": d["run_id"],
        "status": d["status"],
        "dry_run": d["dry_run"],
        "method": d["method"],
        "trigger": d["trigger"],
        "plaintext_remains": d["plaintext_remains"],
        "dataset": d["dataset"],
        "table": d["table"],
        "columns": d["columns"],
        "started_at": d["started_at"],
        "ended_at": d["ended_at"],
        "elapsed_s": d["elapsed_s"],
        "counts": {key: d[key] for key in _COUNT_KEYS},
        "tokenizer": d["tokenizer"],
        "key_id": d["key_id"],
        "error": d["error"],
        "error_type": d["error_type"],
    }


def outcome_mcps(
    result: TokenizeResult,
    *,
    trigger_tag: str,
    fields: Sequence[str],
    previous_description: str | None,
) -> list[MetadataChangeProposalClass]:
    """The PATCH MCPs that record ``result`` on its dataset.

    Args:
        result: the run's outcome; ``result.dataset`` is the dataset URN.
        trigger_tag: the tag URN that started the run (removed on success).
        fields: DataHub field paths (as stored in the schema, v2 form included)
            that carry the trigger tag and were tokenized; the tag is removed from
            each on success. Pass ``()`` for a dataset-level trigger.
        previous_description: the dataset's current editable description (read
            once by the caller), or None when it has none.

    Returns:
        MCPs with ``changeType`` PATCH, one or more per aspect, in a stable order.

    Raises:
        InvalidUrnError: ``result.dataset`` is not a dataset URN.
    """
    DatasetUrn.from_string(result.dataset)
    patch = DatasetPatchBuilder(result.dataset)

    if result.dry_run:
        pass  # nothing was tokenized: the tags keep saying what they said
    elif result.status == "SUCCESS":
        patch.remove_tag(trigger_tag)
        patch.remove_tag(STATUS_FAILED_TAG)
        patch.add_tag(TagAssociationClass(tag=DONE_TAG))
        patch.add_tag(TagAssociationClass(tag=STATUS_SUCCESS_TAG))
        for path in fields:
            patch.for_field(path).remove_tag(trigger_tag)
    else:
        patch.remove_tag(STATUS_SUCCESS_TAG)
        patch.add_tag(TagAssociationClass(tag=STATUS_FAILED_TAG))

    patch.add_custom_property(RUN_RECORD_PROPERTY, json.dumps(run_record(result), sort_keys=True))
    patch.set_description(merge_summary(previous_description, render_summary(result)), editable=True)
    return patch.build()


def tag_definition_mcps() -> list[MetadataChangeProposalWrapper]:
    """UPSERTs of ``tagProperties`` so the action's tags read well in the UI.

    An UPSERT replaces the whole aspect (a steward's own name, colour or
    description for these tags is overwritten): send these once at setup, not per run.
    """
    definitions = [
        (
            RUN_TAG,
            "tokenize/run",
            "Add to a dataset or to some of its columns to have datahub-tokenize-action "
            "replace the PII values in the warehouse with tokens. Removed when the run succeeds.",
            "#1565c0",
        ),
        (
            DONE_TAG,
            "tokenize/done",
            "datahub-tokenize-action has tokenized this dataset; see the documentation "
            "summary and the last_tokenization_run property.",
            "#2e7d32",
        ),
        (
            STATUS_SUCCESS_TAG,
            "tokenize/status:SUCCESS",
            "The last tokenization run on this dataset succeeded.",
            "#2e7d32",
        ),
        (
            STATUS_FAILED_TAG,
            "tokenize/status:FAILED",
            "The last tokenization run on this dataset failed and changed no data; "
            "see the documentation summary for the error. The tokenize/run tag stays.",
            "#c62828",
        ),
    ]
    return [
        MetadataChangeProposalWrapper(
            entityUrn=urn,
            aspect=TagPropertiesClass(name=name, description=description, colorHex=color),
        )
        for urn, name, description, color in definitions
    ]


def render_summary(result: TokenizeResult) -> str:
    """The Markdown body of the managed documentation section (without markers)."""
    heading = f"### Tokenization: {result.status}"
    if result.dry_run:
        heading += " (dry run, no data changed)"
    lines = [heading, ""]
    if result.run_id:
        lines.append(f"- Run {_code(result.run_id)}")
    if result.started_at or result.ended_at:
        lines.append(
            f"- Started {_text(result.started_at or '?')}, ended {_text(result.ended_at or '?')} "
            f"({result.elapsed_s:.1f} s)"
        )
    if result.table:
        lines.append(f"- Table {_code(result.table)}")
    if result.tokenizer:
        key = f", key {_code(result.key_id)}" if result.key_id else ""
        lines.append(f"- Tokenizer {_code(result.tokenizer)}{key}")
    lines.append(f"- Rows scanned {result.rows_scanned:,}, rows updated {result.rows_updated:,}")
    others = {c: n for c, n in result.tokens_not_configured.items() if n}
    if others:
        lines.append(
            "- Already tokens not made by this configuration (another format or key; left as they are): "
            + ", ".join(f"{_code(c)} {n:,}" for c, n in others.items())
        )
    if result.plaintext_remains:
        lines.append(f"- Old values left behind: {_text(result.plaintext_remains)}")
    if result.status == "FAILED":
        kind = f" ({_code(result.error_type)})" if result.error_type else ""
        lines.append(f"- Error{kind}: {_text(_first_line(result.error or 'unknown error'))}")

    columns = list(result.columns)
    for counts in (result.values_tokenized, result.values_skipped, result.nulls, result.empty_strings):
        columns += sorted(c for c in counts if c not in columns)
    if columns:
        lines += [
            "",
            "| Column | Tokenized | Already tokens | Nulls | Empty strings |",
            "|---|---:|---:|---:|---:|",
        ]
        for c in columns:
            lines.append(
                f"| {_code(c)} | {result.values_tokenized.get(c, 0):,} | {result.values_skipped.get(c, 0):,} "
                f"| {result.nulls.get(c, 0):,} | {result.empty_strings.get(c, 0):,} |"
            )
    lines += [
        "",
        "_Written by datahub-tokenize-action on each run; edit outside this section, "
        "text inside it is replaced._",
    ]
    return "\n".join(lines)


def merge_summary(previous_description: str | None, summary_markdown: str) -> str:
    """``previous_description`` with its managed section replaced by ``summary_markdown``.

    Text outside the markers is kept as it was. With no managed section yet, the
    new one is appended after a blank line. Extra managed sections (a copy-paste)
    are dropped, and a lone marker left by a half-deleted section is removed while
    the text around it is kept, so steward text is never swallowed.
    """
    block = f"{SUMMARY_BEGIN}\n{summary_markdown.strip()}\n{SUMMARY_END}"
    text = previous_description or ""
    if not text.strip():
        return block

    sections = list(_SECTION.finditer(text))
    gaps = [text[a:b] for a, b in zip([0] + [m.end() for m in sections], [m.start() for m in sections] + [len(text)])]
    gaps = [_drop_markers(gap) for gap in gaps]
    if not sections:
        kept = gaps[0].rstrip()
        return f"{kept}\n\n{block}" if kept else block
    return gaps[0] + block + "".join(gaps[1:])


def _drop_markers(text: str) -> str:
    return text.replace(SUMMARY_BEGIN, "").replace(SUMMARY_END, "")


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    if len(line) > _ERROR_SUMMARY_CHARS:
        line = line[: _ERROR_SUMMARY_CHARS - 1] + "…"
    return line


def _text(value: str) -> str:
    """Plain text safe inside a Markdown table cell or list item."""
    return value.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _code(value: str) -> str:
    """A code span, or escaped plain text when the value holds a backtick."""
    if "`" in value or "\n" in value:
        return _text(value)
    return "`" + value.replace("|", "\\|") + "`"
