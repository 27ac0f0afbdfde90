"""Which warehouse dialect serves which DataHub platform."""

from __future__ import annotations

from .._config import ConnectionConfig, RunOptions
from .._exceptions import NoConnectionError
from .databricks import DatabricksTokenizer
from .postgres import PostgresTokenizer
from .._tokenizers import Tokenizer
from .base import WarehouseTokenizer

__all__ = ["DIALECTS", "warehouse_for"]

DIALECTS: dict[str, type[WarehouseTokenizer]] = {
    PostgresTokenizer.platform: PostgresTokenizer,
    DatabricksTokenizer.platform: DatabricksTokenizer,
}


def warehouse_for(connection: ConnectionConfig, tokenizer: Tokenizer, options: RunOptions) -> WarehouseTokenizer:
    """The dialect for ``connection.platform``.

    Raises:
        NoConnectionError: no dialect serves that platform.
    """
    cls = DIALECTS.get(connection.platform)
    if cls is None:
        raise NoConnectionError(
            f"platform {connection.platform!r} is not supported; supported: {', '.join(sorted(DIALECTS))}"
        )
    return cls(connection, tokenizer, options)
