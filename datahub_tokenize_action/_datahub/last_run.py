"""The latest run's record as a structured property of the dataset.

``datasetProperties.customProperties`` belong to ingestion, whose next full run can drop the
``last_tokenization_run`` custom property; the ``structuredProperties`` aspect is not written
by ingestion sources, so the record kept there survives them. The property is defined by the
action once (shown in the asset's summary), its value is a PATCH keyed by the property. The
custom property is still written: it is the fallback on servers without structured
properties, and what older readers read.

Pure: MCPs from values, and the record read back from an aspect.
"""

from __future__ import annotations

import json
from typing import Any

from datahub.emitter.mcp import MetadataChangeProposalWrapper
from datahub.metadata.schema_classes import (
    MetadataChangeProposalClass,
    PropertyCardinalityClass,
    StructuredPropertiesClass,
    StructuredPropertyDefinitionClass,
    StructuredPropertySettingsClass,
)
from datahub.specific.dataset import DatasetPatchBuilder

__all__ = ["PROPERTY_URN", "definition_mcps", "read", "value_patch"]

QUALIFIED_NAME = "datahub_tokenize.last_run"
PROPERTY_URN = f"urn:li:structuredProperty:{QUALIFIED_NAME}"


def definition_mcps() -> list[MetadataChangeProposalWrapper]:
    """The property's definition (a string on datasets, one value) and its display settings
    (in the asset's summary, hidden there while empty)."""
    return [
        MetadataChangeProposalWrapper(entityUrn=PROPERTY_URN, aspect=StructuredPropertyDefinitionClass(
            qualifiedName=QUALIFIED_NAME,
            displayName="Last tokenization run",
            description="The record of the latest datahub-tokenize-action run on this dataset (JSON: run id, "
            "status, columns, counts, tokenizer and key id, error). Written by the action on every run.",
            valueType="urn:li:dataType:datahub.string",
            cardinality=PropertyCardinalityClass.SINGLE,
            entityTypes=["urn:li:entityType:datahub.dataset"],
        )),
        MetadataChangeProposalWrapper(entityUrn=PROPERTY_URN, aspect=StructuredPropertySettingsClass(
            isHidden=False, showInSearchFilters=False, showInAssetSummary=True, hideInAssetSummaryWhenEmpty=True,
            showAsAssetBadge=False, showInColumnsTable=False,
        )),
    ]


def value_patch(dataset_urn: str, record: dict[str, Any]) -> list[MetadataChangeProposalClass]:
    """The PATCH setting the dataset's value of the property to ``record`` (as JSON)."""
    return DatasetPatchBuilder(dataset_urn).set_structured_property(
        PROPERTY_URN, json.dumps(record, sort_keys=True)).build()


def read(aspect: StructuredPropertiesClass | None) -> dict[str, Any]:
    """The record in the dataset's ``structuredProperties`` ({} if none or unreadable)."""
    for assignment in getattr(aspect, "properties", None) or []:
        if assignment.propertyUrn == PROPERTY_URN and assignment.values:
            try:
                record = json.loads(str(assignment.values[0]))
            except ValueError:
                return {}
            return record if isinstance(record, dict) else {}
    return {}
