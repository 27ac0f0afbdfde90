"""Per-warehouse test harnesses: make tables, read them back, build configs.

The contract suite (`test_warehouse_contract.py`) is written once against this
interface and run once per warehouse.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import uuid
from typing import Any, Iterator, Mapping, Sequence

import sqlalchemy as sa

from datahub_tokenize_action import TokenizeConfig, parse_config
from datahub_tokenize_action.testing.postgres import PostgresCluster, PostgresNotInstalled

HMAC_KEY = "test-hmac-key-0123456789abcdef"


def install_tokenizer(monkeypatch: Any, name: str, cls: type) -> None:
    """Make ``cls`` the only installed tokenizer plugin, under ``name``, for one test (as its
    package's entry point would)."""
    from datahub_tokenize_action import _tokenizers

    class _EntryPoint:
        def load(self) -> type:
            return cls

    monkeypatch.setattr(_tokenizers, "available_tokenizers", lambda: {name: _EntryPoint()})


class _TableReads:
    """Reading a test table back, the same on every warehouse (``execute``, ``quote`` and
    ``qualified`` come from the harness)."""

    def rows(self, name: str, order_by: str = "id") -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.execute(f"SELECT * FROM {self.qualified(name)} ORDER BY {self.quote(order_by)}")]

    def checksum(self, name: str, columns: Sequence[str] | None = None, order_by: str = "id") -> str:
        cols = ", ".join(self.quote(c) for c in columns) if columns else "*"
        rows = self.execute(f"SELECT {cols} FROM {self.qualified(name)} ORDER BY {self.quote(order_by)}")
        # bytea comes back as memoryview, whose repr is its address: compare its bytes.
        rows = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows]
        return hashlib.sha256(repr(rows).encode()).hexdigest()


class PostgresHarness(_TableReads):
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
            with conn.connection.dbapi_connection.cursor() as cur:  # as written: names may hold % or :
                cur.execute(f"CREATE TABLE {table} ({', '.join(cols)})".replace("%%", "%"))
            if rows:
                meta = sa.table(name, *(sa.column(c) for c, _ in columns))
                conn.execute(sa.insert(meta), [dict(zip([c for c, _ in columns], r)) for r in rows])
        return name

    def qualified(self, name: str) -> str:
        return self.quote(name)

    def urn(self, name: str) -> str:
        return f"urn:li:dataset:(urn:li:dataPlatform:postgres,{self.database}.{self.schema}.{name},PROD)"

    def config(self, tokenizer: dict[str, Any] | None = None, key_columns: dict[str, list[str]] | None = None,
               **run: Any) -> TokenizeConfig:
        return parse_config({
            "connections": [{"platform": "postgres", "url": self.server_url, "key_columns": key_columns or {}}],
            "tokenizer": tokenizer or {"type": "hmac", "key": HMAC_KEY},
            "run": run,
        })


#: What the live Databricks tests need; each is read from the environment.
DATABRICKS_VARIABLES = (
    "DATABRICKS_SERVER_HOSTNAME",
    "DATABRICKS_HTTP_PATH",
    "DATABRICKS_TOKEN",
    "DATABRICKS_TEST_CATALOG",
    "DATABRICKS_TEST_SCHEMA",
)


@contextlib.contextmanager
def throwaway_cluster(*settings: str) -> Iterator[PostgresCluster]:
    """A Postgres cluster from the system's server binaries (``settings`` added to the usual
    ones), stopped after the block. Where none is installed the test skips, or fails under
    CI=true (CI must run the real thing)."""
    import pytest

    try:
        cluster = PostgresCluster(settings=(*PostgresCluster.DEFAULT_SETTINGS, *settings)).start()
    except PostgresNotInstalled as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs a real Postgres: {e}")
        pytest.skip(str(e))
    try:
        yield cluster
    finally:
        cluster.stop()


def missing_databricks_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """The names of ``DATABRICKS_VARIABLES`` that are unset or blank in ``environ``."""
    environ = os.environ if environ is None else environ
    return [name for name in DATABRICKS_VARIABLES if not (environ.get(name) or "").strip()]


def databricks_skip_reason(missing: Sequence[str]) -> str:
    return f"live Databricks: {', '.join(missing)} not set (the test catalog must be a Unity Catalog one)"


class DatabricksHarness(_TableReads):
    """Delta tables in a Unity Catalog schema of a live SQL warehouse.

    Tables are ``USING DELTA`` with a unique name; with a ``key``, its columns are NOT NULL
    and declared by an informational ``PRIMARY KEY`` constraint (Unity Catalog), which is
    what the dialect reads as the key. Rows are inserted as literals rendered by the
    databricks dialect (native parameters stop at 255 markers per statement).
    """

    platform = "databricks"
    supports_transactions = False
    types = {"int": "INT", "bigint": "BIGINT", "text": "STRING", "date": "DATE"}
    #: Characters of inline rows per INSERT statement.
    max_insert_chars = 500_000

    def __init__(self, host: str, http_path: str, token: str, catalog: str, schema: str):
        # The workspace URL as the browser shows it is a common way to write the host.
        host = host.strip().removeprefix("https://").rstrip("/")
        self.host = host
        self.http_path = http_path
        self.token = token
        self.catalog = catalog
        self.schema = schema
        self.engine = sa.create_engine(
            sa.engine.URL.create(
                "databricks", username="token", password=token, host=host,
                query={"http_path": http_path, "catalog": catalog, "schema": schema},
            ),
            poolclass=sa.pool.NullPool,
        )
        self._preparer = self.engine.dialect.identifier_preparer
        self._string = self.engine.dialect.type_descriptor(sa.String()).literal_processor(self.engine.dialect)
        self._created: list[str] = []

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "DatabricksHarness":
        environ = os.environ if environ is None else environ
        missing = missing_databricks_variables(environ)
        if missing:
            raise RuntimeError(databricks_skip_reason(missing))
        return cls(*(environ[name].strip() for name in DATABRICKS_VARIABLES))

    def close(self) -> None:
        try:
            for name in self._created:
                self.execute(f"DROP TABLE IF EXISTS {self.qualified(name)}")
            self._created.clear()
        finally:
            self.engine.dispose()

    def sql_type(self, t: str) -> str:
        m = re.fullmatch(r"varchar\((\d+)\)", t, re.IGNORECASE)
        if m:
            return f"VARCHAR({m.group(1)})"
        return self.types.get(t, t)

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        with self.engine.connect() as conn:
            result = conn.execute(sa.text(sql), params or {})
            rows = result.fetchall() if result.returns_rows else None
            conn.commit()
            return rows

    def quote(self, name: str) -> str:
        return self._preparer.quote_identifier(name)

    def qualified(self, name: str) -> str:
        return f"{self.quote(self.catalog)}.{self.quote(self.schema)}.{self.quote(name)}"

    def literal(self, value: Any) -> str:
        """``value`` as a Databricks SQL literal, rendered by the dialect."""
        if value is None:
            return "NULL"
        if isinstance(value, str):
            return self._string(value)
        if isinstance(value, bool) or not isinstance(value, int):
            return str(sa.literal(value).compile(dialect=self.engine.dialect, compile_kwargs={"literal_binds": True}))
        return str(value)

    def insert_statements(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
        """INSERT statements with inline rows, each under ``max_insert_chars``."""
        head = f"INSERT INTO {self.qualified(name)} ({', '.join(self.quote(c) for c in columns)}) VALUES "
        statements: list[str] = []
        chunk: list[str] = []
        size = 0
        for row in rows:
            text = "(" + ", ".join(self.literal(v) for v in row) + ")"
            if chunk and size + len(text) > self.max_insert_chars:
                statements.append(head + ", ".join(chunk))
                chunk, size = [], 0
            chunk.append(text)
            size += len(text) + 2
        if chunk:
            statements.append(head + ", ".join(chunk))
        return statements

    def create_table_sql(self, name: str, columns: Sequence[tuple[str, str]], key: Sequence[str] | None) -> str:
        key = tuple(key or ())
        cols = [
            f"{self.quote(c)} {self.sql_type(t)}{' NOT NULL' if c in key else ''}" for c, t in columns
        ]
        if key:
            cols.append(
                f"CONSTRAINT {self.quote(name + '_pk')} PRIMARY KEY ({', '.join(self.quote(k) for k in key)})"
            )
        return f"CREATE TABLE {self.qualified(name)} ({', '.join(cols)}) USING DELTA"

    def create_table(self, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]],
                     key: Sequence[str] | None = ("id",), name: str | None = None) -> str:
        """Create a Delta table with ``columns`` [(name, type)] and insert ``rows``; returns its name."""
        name = name or f"t_{uuid.uuid4().hex[:10]}"
        with self.engine.connect() as conn:
            conn.exec_driver_sql(self.create_table_sql(name, columns, key))
            self._created.append(name)
            for sql in self.insert_statements(name, [c for c, _ in columns], rows):
                conn.exec_driver_sql(sql)
            conn.commit()
        return name


    def urn(self, name: str) -> str:
        return f"urn:li:dataset:(urn:li:dataPlatform:databricks,{self.catalog}.{self.schema}.{name},PROD)"

    def config(self, tokenizer: dict[str, Any] | None = None, key_columns: dict[str, list[str]] | None = None,
               **run: Any) -> TokenizeConfig:
        return parse_config({
            "connections": [{"platform": "databricks", "host": self.host, "http_path": self.http_path,
                             "token": self.token, "key_columns": key_columns or {}}],
            "tokenizer": tokenizer or {"type": "hmac", "key": HMAC_KEY},
            "run": run,
        })
