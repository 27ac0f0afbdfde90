"""The DataHub client as this package uses it, and how a failure talking to DataHub is reported."""

from __future__ import annotations

import contextlib
from typing import Iterator, Protocol, Sequence

from .._exceptions import DataHubError, first_line

__all__ = ["Graph", "talking_to_datahub"]


class Graph(Protocol):
    """The part of ``datahub.ingestion.graph.client.DataHubGraph`` this module uses."""

    def get_aspect(self, entity_urn: str, aspect_type: type) -> object | None: ...

    def emit_mcps(self, mcps: Sequence[object]) -> object: ...


@contextlib.contextmanager
def talking_to_datahub(doing: str) -> Iterator[None]:
    """Turn any failure talking to DataHub inside the block into a DataHubError."""
    try:
        yield
    except DataHubError as e:  # already one line that names the server and the cause
        raise DataHubError(f"{doing} failed: {e}; run again once DataHub answers (values already tokens are "
                           "skipped)") from e
    except Exception as e:
        raise DataHubError(
            f"{doing} failed: {type(e).__name__}: {first_line(e)[:300]}; check `datahub.server` and that "
            "DataHub is up, then run again (values already tokens are skipped)"
        ) from e
