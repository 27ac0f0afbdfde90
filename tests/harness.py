"""Per-warehouse test harnesses: make tables, read them back, build configs.

The contract suite (`test_warehouse_contract.py`) is written once against this
interface and run once per warehouse.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any, Sequence

import sqlalchemy as sa

from datahub_tokenize_action import TokenizeConfig, parse_config

HMAC_KEY = "test-hmac-key-0123456789abcdef"


class PostgresHarness:
    platform = "postgres"
    supports_transactions = True
    types = {"int": "integer", "bigint": "bigint", "text": "text", "date": "date"}

    def __init__(self, server_url: str, database: str):
        self.server_url = server_url
        self.database = database
        self.schema = "public"
        self.engine = sa.create_engine(sa.make_url(server_url).set(database=database))

    def close(self) -> None:
        self.engine.dispose()

    def sql_type(self, t: str) -> str:
        return self.types.get(t, t)

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        with self.engine.begin() as conn:
            result = conn.execute(sa.text(sql), params or {})
            return result.fetchall() if result.returns_rows else None

    def quote(self, name: str) -> str:
        return self.engine.dialect.identifier_preparer.quote(name)

    def create_table(self, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]],
                     key: Sequence[str] | None = ("id",), name: str | None = None) -> str:
        """Create a table with ``columns`` [(name, type)] and insert ``rows``; returns its name."""
        name = name or f"t_{uuid.uuid4().hex[:10]}"
        cols = [f"{self.quote(c)} {self.sql_type(t)}" for c, t in columns]
        if key:
            cols.append(f"PRIMARY KEY ({', '.join(self.quote(k) for k in key)})")
        table = self.quote(name)
        with self.engine.begin() as conn:
            conn.execute(sa.text(f"CREATE TABLE {table} ({', '.join(cols)})"))
            if rows:
                meta = sa.table(name, *(sa.column(c) for c, _ in columns))
                conn.execute(sa.insert(meta), [dict(zip([c for c, _ in columns], r)) for r in rows])
        return name

    def rows(self, name: str, order_by: str = "id") -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.execute(f"SELECT * FROM {self.quote(name)} ORDER BY {self.quote(order_by)}")]

    def checksum(self, name: str, columns: Sequence[str] | None = None, order_by: str = "id") -> str:
        cols = ", ".join(self.quote(c) for c in columns) if columns else "*"
        rows = self.execute(f"SELECT {cols} FROM {self.quote(name)} ORDER BY {self.quote(order_by)}")
        return hashlib.sha256(repr([tuple(r) for r in rows]).encode()).hexdigest()

    def urn(self, name: str) -> str:
        return f"urn:li:dataset:(urn:li:dataPlatform:postgres,{self.database}.{self.schema}.{name},PROD)"

    def config(self, tokenizer: dict[str, Any] | None = None, **run: Any) -> TokenizeConfig:
        return parse_config({
            "connections": [{"platform": "postgres", "url": self.server_url}],
            "tokenizer": tokenizer or {"type": "hmac", "key": HMAC_KEY},
            "run": run,
        })
