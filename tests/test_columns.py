"""Which columns a dataset-level run tokenizes: ``select_columns`` on DataHub's own schema aspects.

Every aspect here is a genuine ``datahub.metadata.schema_classes`` object, built the way
DataHub stores them: the ingested ``schemaMetadata`` (field types, tags and terms from the
source) and the ``editableSchemaMetadata`` that the UI writes (a steward's tags and terms).
"""

from __future__ import annotations

from typing import Iterable

import pytest
from datahub.metadata.schema_classes import (
    AuditStampClass,
    DateTypeClass,
    EditableSchemaFieldInfoClass,
    EditableSchemaMetadataClass,
    GlobalTagsClass,
    GlossaryTermAssociationClass,
    GlossaryTermsClass,
    NumberTypeClass,
    OtherSchemaClass,
    RecordTypeClass,
    SchemaFieldClass,
    SchemaFieldDataTypeClass,
    SchemaMetadataClass,
    StringTypeClass,
    TagAssociationClass,
)
from pydantic import ValidationError

from datahub_tokenize_action._datahub.columns import ColumnSelection, select_columns, trigger_field_paths
from datahub_tokenize_action._config import ColumnSelectionConfig

TRIGGER = "urn:li:tag:tokenize/run"
PII = "urn:li:tag:pii"
SENSITIVE = "urn:li:glossaryTerm:Classification.Sensitive"
STAMP = AuditStampClass(time=1649953100653, actor="urn:li:corpuser:jdoe")

_TYPES = {
    "string": (StringTypeClass, "text"),
    "number": (NumberTypeClass, "integer"),
    "date": (DateTypeClass, "date"),
    "struct": (RecordTypeClass, "struct<email:string>"),
}


def _tags(tags: Iterable[str]) -> GlobalTagsClass | None:
    tags = list(tags)
    return GlobalTagsClass(tags=[TagAssociationClass(tag=t) for t in tags]) if tags else None


def _terms(terms: Iterable[str]) -> GlossaryTermsClass | None:
    terms = list(terms)
    if not terms:
        return None
    return GlossaryTermsClass(terms=[GlossaryTermAssociationClass(urn=t) for t in terms], auditStamp=STAMP)


def field(path: str, kind: str = "string", tags: Iterable[str] = (), terms: Iterable[str] = ()) -> SchemaFieldClass:
    type_class, native = _TYPES[kind]
    return SchemaFieldClass(
        fieldPath=path,
        type=SchemaFieldDataTypeClass(type=type_class()),
        nativeDataType=native,
        nullable=True,
        globalTags=_tags(tags),
        glossaryTerms=_terms(terms),
    )


def schema(*fields: SchemaFieldClass) -> SchemaMetadataClass:
    return SchemaMetadataClass(
        schemaName="public.customers",
        platform="urn:li:dataPlatform:postgres",
        version=0,
        hash="",
        platformSchema=OtherSchemaClass(rawSchema=""),
        fields=list(fields),
        created=STAMP,
        lastModified=STAMP,
    )


def editable_field(path: str, tags: Iterable[str] = (), terms: Iterable[str] = ()) -> EditableSchemaFieldInfoClass:
    return EditableSchemaFieldInfoClass(fieldPath=path, globalTags=_tags(tags), glossaryTerms=_terms(terms))


def editable(*infos: EditableSchemaFieldInfoClass) -> EditableSchemaMetadataClass:
    return EditableSchemaMetadataClass(editableSchemaFieldInfo=list(infos), created=STAMP, lastModified=STAMP)


def config(**kwargs) -> ColumnSelectionConfig:
    kwargs.setdefault("glossary_terms", [SENSITIVE])
    return ColumnSelectionConfig(**kwargs)


def select(schema_aspect=None, editable_aspect=None, cfg=None) -> ColumnSelection:
    return select_columns(schema_aspect, editable_aspect, cfg or config(), TRIGGER)


# A dataset where every source finds something, each a different column.
EVERY_SOURCE = schema(
    field("card_holder", tags=[TRIGGER]),
    field("tax_ref", tags=[PII]),
    field("passport", terms=[SENSITIVE]),
    field("email"),
    field("id", "number"),
)


# -- how the sources combine ----------------------------------------------------------


def test_fields_marked_by_the_trigger_tag_pii_tags_and_glossary_terms_are_all_taken():
    # A steward's tag on one field must not hide the PII tags on others.
    selection = select(EVERY_SOURCE)

    assert selection == ColumnSelection(("card_holder", "tax_ref", "passport"), "trigger_tag+pii_tags+glossary_terms")


def test_a_source_that_is_off_adds_nothing_to_the_union():
    selection = select(EVERY_SOURCE, cfg=config(sources=["pii_tags", "glossary_terms", "name_patterns"]))

    assert (selection.columns, selection.source) == (("tax_ref", "passport"), "pii_tags+glossary_terms")


def test_glossary_terms_win_over_name_patterns():
    selection = select(EVERY_SOURCE, cfg=config(sources=["glossary_terms", "name_patterns"]))

    assert (selection.columns, selection.source) == (("passport",), "glossary_terms")


def test_name_patterns_decide_only_when_no_field_is_tagged_or_termed():
    selection = select(schema(field("email"), field("tax_ref"), field("id", "number")))

    assert (selection.columns, selection.source) == (("email",), "name_patterns")


def test_name_patterns_stay_a_fallback_whatever_order_the_sources_are_listed_in():
    selection = select(EVERY_SOURCE, cfg=config(sources=["name_patterns", "glossary_terms", "pii_tags"]))

    assert selection.source == "pii_tags+glossary_terms"


def test_the_deciding_source_takes_every_field_it_finds_in_schema_order():
    selection = select(schema(
        field("b_ref", tags=[PII]), field("email"), field("a_ref", tags=["urn:li:tag:other", PII]),
    ))

    assert (selection.columns, selection.source) == (("b_ref", "a_ref"), "pii_tags")


def test_a_field_of_any_type_carrying_a_tag_is_taken_and_left_to_the_warehouse_to_refuse():
    # Only name patterns look at types; an explicit tag is the steward's word.
    selection = select(schema(field("amount", "number", tags=[PII]), field("email")))

    assert (selection.columns, selection.source) == (("amount",), "pii_tags")


# -- where tags and terms are read from ------------------------------------------------


def test_a_tag_from_the_ingested_schema_metadata_counts():
    selection = select(schema(field("tax_ref", tags=[PII]), field("note")))

    assert selection.columns == ("tax_ref",)


def test_a_tag_from_the_editable_schema_metadata_counts():
    selection = select(schema(field("tax_ref"), field("note")), editable(editable_field("tax_ref", tags=[PII])))

    assert (selection.columns, selection.source) == (("tax_ref",), "pii_tags")


def test_ingested_and_editable_tags_of_one_field_and_of_different_fields_all_count():
    selection = select(
        schema(field("a_ref", tags=[PII]), field("b_ref"), field("note")),
        editable(editable_field("b_ref", tags=[PII]), editable_field("note", tags=["urn:li:tag:other"])),
    )

    assert selection.columns == ("a_ref", "b_ref")


def test_the_trigger_tag_in_the_editable_schema_metadata_joins_ingested_pii_tags():
    selection = select(
        schema(field("a_ref", tags=[PII]), field("b_ref")),
        editable(editable_field("b_ref", tags=[TRIGGER])),
    )

    assert selection == ColumnSelection(("a_ref", "b_ref"), "trigger_tag+pii_tags")


def test_glossary_terms_from_both_aspects_count():
    selection = select(
        schema(field("a_ref", terms=[SENSITIVE]), field("b_ref"), field("c_ref")),
        editable(editable_field("b_ref", terms=[SENSITIVE]), editable_field("c_ref", terms=["urn:li:glossaryTerm:Other"])),
    )

    assert (selection.columns, selection.source) == (("a_ref", "b_ref"), "glossary_terms")


def test_editable_schema_metadata_alone_is_enough():
    selection = select(None, editable(editable_field("tax_ref", tags=[TRIGGER])))

    assert selection == ColumnSelection(("tax_ref",), "trigger_tag")


# -- v2 field paths --------------------------------------------------------------------

V2_EMAIL = "[version=2.0].[type=string].email"


def test_a_v2_field_path_gives_the_simple_column_name():
    selection = select(schema(field(V2_EMAIL, tags=[PII]), field("[version=2.0].[type=long].id", "number")))

    assert selection.columns == ("email",)


def test_v2_and_plain_paths_of_one_column_are_one_field():
    # The ingested schema uses the v2 path; the UI stored the tag under the same v2 path,
    # another aspect may use the plain one: still one column.
    selection = select(
        schema(field(V2_EMAIL, tags=[PII])),
        editable(editable_field("email", tags=[PII]), editable_field(V2_EMAIL, terms=[SENSITIVE])),
    )

    assert selection.columns == ("email",)


def test_the_selected_columns_lead_back_to_the_stored_v2_path_of_trigger_tagged_fields():
    stored = editable(editable_field(V2_EMAIL, tags=[TRIGGER]))

    selection = select(schema(field(V2_EMAIL), field("[version=2.0].[type=string].phone")), stored)

    assert selection == ColumnSelection(("email",), "trigger_tag")
    assert trigger_field_paths(stored, TRIGGER, selection.columns) == (V2_EMAIL,)


def test_trigger_field_paths_returns_the_stored_v2_path_of_each_column_that_carries_the_trigger_tag():
    stored = editable(
        editable_field(V2_EMAIL, tags=[TRIGGER]),
        editable_field("[version=2.0].[type=string].phone", tags=[PII]),
        editable_field("[version=2.0].[type=string].name", tags=[TRIGGER]),
    )

    assert trigger_field_paths(stored, TRIGGER, ["email", "phone", "name"]) == (
        V2_EMAIL, "[version=2.0].[type=string].name",
    )
    assert trigger_field_paths(stored, TRIGGER, ["phone"]) == ()
    assert trigger_field_paths(stored, TRIGGER, ["name"]) == ("[version=2.0].[type=string].name",)


def test_trigger_field_paths_is_empty_without_editable_schema_metadata():
    assert trigger_field_paths(None, TRIGGER, ["email"]) == ()


def test_a_trigger_tag_from_ingestion_is_not_scheduled_for_removal():
    # Only the editable aspect is written back, so only its paths are returned.
    stored = editable(editable_field(V2_EMAIL))
    selection = select(schema(field(V2_EMAIL, tags=[TRIGGER])), stored)

    assert selection == ColumnSelection(("email",), "trigger_tag")
    assert trigger_field_paths(stored, TRIGGER, selection.columns) == ()


# -- name patterns ---------------------------------------------------------------------

PII_NAMES = ["email", "phone_number", "first_name", "ssn", "street_address", "date_of_birth"]
OTHER_NAMES = ["id", "created_at", "note"]


@pytest.mark.parametrize("name", PII_NAMES)
def test_a_string_field_with_a_pii_name_is_chosen_by_the_default_patterns(name):
    selection = select(schema(field(name), field("note")))

    assert (selection.columns, selection.source) == ((name,), "name_patterns")


@pytest.mark.parametrize("name", OTHER_NAMES)
def test_a_string_field_with_an_unrelated_name_is_not_chosen(name):
    assert select(schema(field(name))) == ColumnSelection((), None)


def test_name_patterns_take_every_matching_string_field_and_only_those():
    fields = [field(n) for n in PII_NAMES + OTHER_NAMES]
    fields += [field("birth_date", "date"), field("phone_count", "number")]

    selection = select(schema(*fields))

    assert selection.columns == tuple(PII_NAMES)


def test_a_date_field_named_like_a_birth_date_is_not_chosen():
    assert select(schema(field("birth_date", "date"), field("id", "number"))) == ColumnSelection((), None)
    assert select(schema(field("birth_date"))).columns == ("birth_date",)


def test_name_patterns_ignore_case_and_see_the_simple_name_of_a_v2_path():
    selection = select(schema(field("[version=2.0].[type=string].Customer_EMail"), field("Note")))

    assert selection.columns == ("Customer_EMail",)


def test_name_patterns_take_top_level_columns_and_not_members_of_a_struct_column():
    # How DataHub ingests a Databricks column `contact STRUCT<email: STRING>` next to `email`.
    selection = select(schema(
        field("[version=2.0].[type=string].email"),
        field("[version=2.0].[type=struct].contact", "struct"),
        field("[version=2.0].[type=struct].contact.[type=string].email"),
    ))

    assert selection.columns == ("email",)


def test_configured_name_patterns_replace_the_defaults():
    selection = select(schema(field("email"), field("iban")), cfg=config(name_patterns=[r"^iban$"]))

    assert selection.columns == ("iban",)


# -- turning sources off, and nothing to go on -------------------------------------------


def test_a_disabled_trigger_tag_source_is_skipped():
    selection = select(EVERY_SOURCE, cfg=config(sources=["pii_tags"]))

    assert (selection.columns, selection.source) == (("tax_ref",), "pii_tags")


def test_with_name_patterns_disabled_an_untagged_dataset_selects_nothing():
    cfg = config(sources=["trigger_tag", "pii_tags", "glossary_terms"])

    assert select(schema(field("email"), field("phone_number")), cfg=cfg) == ColumnSelection((), None)


def test_with_only_name_patterns_enabled_tags_are_ignored():
    selection = select(EVERY_SOURCE, cfg=config(sources=["name_patterns"]))

    assert (selection.columns, selection.source) == (("email",), "name_patterns")


def test_no_schema_at_all_gives_an_empty_selection():
    assert select(None, None) == ColumnSelection((), None)


def test_empty_aspects_give_an_empty_selection():
    assert select(schema(), editable()) == ColumnSelection((), None)


def test_an_unknown_source_is_refused_by_the_config():
    with pytest.raises(ValidationError, match="sources"):
        ColumnSelectionConfig(sources=["pii_tags", "column_names"])


# -- tag and term names in the config ----------------------------------------------------


def test_pii_tags_given_as_bare_names_become_tag_urns():
    cfg = ColumnSelectionConfig(pii_tags=["pii", "Sensitive", "urn:li:tag:gdpr"])

    assert cfg.pii_tags == ["urn:li:tag:pii", "urn:li:tag:Sensitive", "urn:li:tag:gdpr"]


def test_a_pii_tag_given_by_name_matches_the_tag_urn_on_a_field():
    cfg = ColumnSelectionConfig(pii_tags=["Sensitive"])

    selection = select(schema(field("tax_ref", tags=["urn:li:tag:Sensitive"]), field("email")), cfg=cfg)

    assert (selection.columns, selection.source) == (("tax_ref",), "pii_tags")


def test_glossary_terms_given_as_bare_names_become_term_urns_and_match():
    cfg = ColumnSelectionConfig(glossary_terms=["Classification.Sensitive"])

    assert cfg.glossary_terms == [SENSITIVE]
    assert select(schema(field("passport", terms=[SENSITIVE]), field("email")), cfg=cfg).columns == ("passport",)
