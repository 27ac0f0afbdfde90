"""A FAILED run raises an OPERATIONAL incident on its dataset; the next SUCCESS resolves it.

One incident per dataset (its URN derived from the dataset's), so repeated failures update
the same incident with the latest error and run, and the dataset's health shows it until a
run succeeds. Pure: MCPs from values and the incident as DataHub holds it now.
"""

from __future__ import annotations

import hashlib

from datahub.emitter.mcp import MetadataChangeProposalWrapper
from datahub.metadata.schema_classes import (
    AuditStampClass,
    IncidentInfoClass,
    IncidentSourceClass,
    IncidentSourceTypeClass,
    IncidentStateClass,
    IncidentStatusClass,
    IncidentTypeClass,
)

from .._result import TokenizeResult, millis

__all__ = ["ACTOR", "incident_mcp", "incident_urn"]

#: Who the incident's changes are attributed to (DataHub's system actor: the action writes
#: with the pipeline's credentials, which are usually the system client's).
ACTOR = "urn:li:corpuser:datahub"
_TITLE = "Tokenization failed"


def incident_urn(dataset_urn: str) -> str:
    """The dataset's tokenization incident: the same URN for every run on it."""
    return "urn:li:incident:datahub-tokenize-" + hashlib.sha256(dataset_urn.encode()).hexdigest()[:32]


def incident_mcp(result: TokenizeResult, current: IncidentInfoClass | None) -> MetadataChangeProposalWrapper | None:
    """What the run changes in its dataset's incident: raise (or update) it on FAILED, resolve
    an active one on SUCCESS, nothing otherwise (a dry run, a success with none active)."""
    if result.dry_run:
        return None
    active = current is not None and current.status.state == IncidentStateClass.ACTIVE
    now = AuditStampClass(time=millis(result.ended_at), actor=ACTOR)
    if result.status == "SUCCESS":
        if not active:
            return None
        assert current is not None
        info = IncidentInfoClass.from_obj(current.to_obj())
        info.status = IncidentStatusClass(state=IncidentStateClass.RESOLVED, lastUpdated=now,
                                          message=f"Resolved by the successful run {result.run_id}.")
    else:
        first = current.created if active and current is not None else now
        info = IncidentInfoClass(
            type=IncidentTypeClass.OPERATIONAL,
            title=_TITLE,
            description=(
                f"Run {result.run_id} of datahub-tokenize-action failed"
                f"{f' ({result.error_type})' if result.error_type else ''}: {result.error or 'unknown error'}\n\n"
                "The tag tokenize/run stays on the dataset; once the cause is fixed, run again (remove and add "
                "the tag, or `datahub-tokenize run`). The next successful run resolves this incident."
            ),
            entities=[result.dataset],
            status=IncidentStatusClass(state=IncidentStateClass.ACTIVE, lastUpdated=now,
                                       message=f"Run {result.run_id} failed."),
            source=IncidentSourceClass(type=IncidentSourceTypeClass.MANUAL),
            created=first,
            startedAt=first.time,
            priority=1,
        )
    return MetadataChangeProposalWrapper(entityUrn=incident_urn(result.dataset), aspect=info)
