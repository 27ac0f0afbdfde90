"""From a dataset URN to a connection and a table (pure, no I/O)."""

from __future__ import annotations

import dataclasses
from typing import Sequence

from datahub.metadata.urns import DatasetUrn
from datahub.utilities.urns.error import InvalidUrnError

from ._config import ConnectionConfig
from ._exceptions import InvalidDatasetError, NoConnectionError

__all__ = ["TableRef", "route"]


@dataclasses.dataclass(frozen=True)
class TableRef:
    """One warehouse table named by a dataset URN.

    ``database`` is the Postgres database or the Databricks catalog.
    """

    dataset_urn: str
    platform: str
    platform_instance: str | None
    database: str
    schema: str
    table: str

    @property
    def name(self) -> str:
        return f"{self.database}.{self.schema}.{self.table}"


def _split_name(urn: str, name: str, instance: str | None) -> tuple[str, str, str] | None:
    if instance is not None:
        if not name.startswith(instance + "."):
            return None
        name = name[len(instance) + 1:]
    parts = name.split(".")
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]


def route(dataset_urn: str, connections: Sequence[ConnectionConfig]) -> tuple[ConnectionConfig, TableRef]:
    """Pick the connection for ``dataset_urn`` and name its table.

    A connection with a ``platform_instance`` serves URNs whose name is
    ``<instance>.<database>.<schema>.<table>``; one without serves
    ``<database>.<schema>.<table>``. Instance-specific connections win.

    Raises:
        InvalidDatasetError: not a dataset URN.
        NoConnectionError: no configured connection serves it.
    """
    try:
        urn = DatasetUrn.from_string(dataset_urn)
    except InvalidUrnError as e:
        raise InvalidDatasetError(f"{dataset_urn!r} is not a dataset URN: {e}") from None
    platform = urn.get_data_platform_urn().platform_name
    candidates = [c for c in connections if c.platform == platform]
    candidates.sort(key=lambda c: c.platform_instance is None)
    for conn in candidates:
        parts = _split_name(dataset_urn, urn.name, conn.platform_instance)
        if parts is not None:
            return conn, TableRef(dataset_urn, platform, conn.platform_instance, *parts)
    if candidates:
        instances = ", ".join(repr(c.platform_instance) for c in candidates)
        raise NoConnectionError(
            f"dataset {dataset_urn}: the {platform} connections (platform_instance: {instances}) "
            f"do not serve the name {urn.name!r}; expected <database>.<schema>.<table>, prefixed "
            "by the platform instance where one is set. Add a connection with the matching "
            "`platform_instance` to the config (a database, schema or table whose name contains "
            "'.' cannot be told from that prefix, and is not supported)."
        )
    raise NoConnectionError(
        f"dataset {dataset_urn}: no connection for platform {platform!r}; add one under "
        f"`connections:` with `platform: {platform}` (supported: postgres, databricks)"
    )
