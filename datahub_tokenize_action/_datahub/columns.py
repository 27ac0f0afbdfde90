"""Which columns hold PII, decided from DataHub's schema aspects (pure, no I/O).

What a person marked is unioned; names are only a fallback:

1. ``trigger_tag``: fields carrying the trigger tag (editable or ingested schema metadata),
2. ``pii_tags``: fields carrying one of the configured PII tags,
3. ``glossary_terms``: fields with one of the configured glossary terms:
   every column any of these marks is taken;
4. ``name_patterns``: only when 1-3 mark nothing, string-typed fields whose name matches a
   configured pattern.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterable

from datahub.metadata.schema_classes import (
    EditableSchemaMetadataClass,
    GlobalTagsClass,
    GlossaryTermsClass,
    SchemaMetadataClass,
    StringTypeClass,
)
from datahub.utilities.urns.field_paths import get_simple_field_path_from_v2_field_path

from .._config import ColumnSelectionConfig

__all__ = ["ColumnSelection", "select_columns"]


@dataclasses.dataclass(frozen=True)
class ColumnSelection:
    """The columns to tokenize and the sources that chose them (``+``-joined)."""

    columns: tuple[str, ...]
    source: str | None


@dataclasses.dataclass
class _Field:
    path: str
    is_string: bool = False
    tags: set[str] = dataclasses.field(default_factory=set)
    terms: set[str] = dataclasses.field(default_factory=set)


def _tags(tags: GlobalTagsClass | None) -> set[str]:
    return {t.tag for t in tags.tags} if tags else set()


def _terms(terms: GlossaryTermsClass | None) -> set[str]:
    return {t.urn for t in terms.terms} if terms else set()


def _fields(schema: SchemaMetadataClass | None, editable: EditableSchemaMetadataClass | None) -> dict[str, _Field]:
    fields: dict[str, _Field] = {}
    for f in schema.fields if schema else ():
        name = get_simple_field_path_from_v2_field_path(f.fieldPath)
        field = fields.setdefault(name, _Field(name))
        field.is_string = isinstance(f.type.type, StringTypeClass)
        field.tags |= _tags(f.globalTags)
        field.terms |= _terms(f.glossaryTerms)
    for info in editable.editableSchemaFieldInfo if editable else ():
        name = get_simple_field_path_from_v2_field_path(info.fieldPath)
        field = fields.setdefault(name, _Field(name))
        field.tags |= _tags(info.globalTags)
        field.terms |= _terms(info.glossaryTerms)
    return fields


def _is_member(name: str, fields: dict[str, _Field]) -> bool:
    parts = name.split(".")
    return any(".".join(parts[:i]) in fields for i in range(1, len(parts)))


def trigger_field_paths(editable: EditableSchemaMetadataClass | None, trigger_tag: str,
                        columns: Iterable[str]) -> tuple[str, ...]:
    """The stored (possibly v2) field paths of ``columns`` that carry ``trigger_tag`` in the
    editable schema metadata: what a successful run removes the tag from."""
    wanted = set(columns)
    return tuple(
        info.fieldPath
        for info in (editable.editableSchemaFieldInfo if editable else ())
        if get_simple_field_path_from_v2_field_path(info.fieldPath) in wanted and trigger_tag in _tags(info.globalTags)
    )


def select_columns(schema: SchemaMetadataClass | None, editable: EditableSchemaMetadataClass | None,
                   config: ColumnSelectionConfig, trigger_tag: str) -> ColumnSelection:
    """Decide the PII columns of a dataset from its schema aspects (see the module docstring)."""
    fields = _fields(schema, editable)
    pii_tags, terms = set(config.pii_tags), set(config.glossary_terms)
    patterns = [re.compile(p, re.IGNORECASE) for p in config.name_patterns]
    tests = {
        "trigger_tag": lambda f: trigger_tag in f.tags,
        "pii_tags": lambda f: bool(f.tags & pii_tags),
        "glossary_terms": lambda f: bool(f.terms & terms),
        "name_patterns": lambda f: f.is_string and any(p.search(f.path) for p in patterns),
    }
    # Members of struct columns (``contact.email``) cannot be updated on their own: only
    # top-level columns are candidates.
    fields = {name: f for name, f in fields.items() if not _is_member(name, fields)}
    for group in (("trigger_tag", "pii_tags", "glossary_terms"), ("name_patterns",)):
        sources = [s for s in group if s in config.sources]
        hits = {s: {f.path for f in fields.values() if tests[s](f)} for s in sources}
        found = tuple(f.path for f in fields.values() if any(f.path in h for h in hits.values()))
        if found:
            source = "+".join(s for s in sources if hits[s])
            return ColumnSelection(found, source)
    return ColumnSelection((), None)
