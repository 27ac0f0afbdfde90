"""Databricks (Unity Catalog and hive_metastore): RLIKE guard, MERGE of inline VALUES.

No transactions and no locks: each MERGE commits on its own. A run stopped half way
leaves some batches done and every value either plaintext or a token, never a mix
inside one value; running again completes the table (tokens are skipped).

Bulk path: ``MERGE INTO <t> USING (SELECT * FROM (VALUES ...) AS v(...)) AS s ON <key>
WHEN MATCHED AND <the plaintext read is still there> THEN UPDATE`` (MERGE refuses column
aliases on its source). Values are inline literals rendered by
the dialect's own escaper (the one the connector uses), not parameter markers: native
parameters stop at 255 per statement, i.e. ~50 rows, which makes big tables take
hours. Inline statements are capped at ``MAX_STATEMENT_CHARS``. The compare-and-set
condition means a value whose literal did not round-trip exactly is left untouched;
it can never be overwritten with a wrong token.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any, Callable, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection
from sqlalchemy.sql.elements import quoted_name

from .databricks_url import databricks_url
from .._exceptions import ConfigError, NotDeltaTableError, TableNotFoundError, UnsupportedColumnTypeError
from .._routing import TableRef
from .._tokenizers import HmacSqlForm
from .base import WarehouseTokenizer
from .model import Batch, BatchWriter, ColumnInfo, TableDescription, WriteTarget

__all__ = ["DatabricksTokenizer", "parse_describe_extended"]

logger = logging.getLogger(__name__)

MAX_STATEMENT_CHARS = 900_000
_TEXT_TYPE = re.compile(r"^(string|varchar\((\d+)\)|char\((\d+)\))$", re.IGNORECASE)
_BACKTICKED = re.compile(r"`((?:[^`]|``)*)`")
#: Key types whose values the dialect renders as literals that compare equal to the row's.
_ADDRESSABLE_TYPE = re.compile(
    r"^(tinyint|smallint|int|integer|bigint|string|varchar\(\d+\)|char\(\d+\)|date|timestamp|"
    r"timestamp_ntz|decimal(\(\d+,\s*\d+\))?|boolean)$",
    re.IGNORECASE,
)
_NOT_FOUND = re.compile(r"\b(TABLE_OR_VIEW|SCHEMA|CATALOG)_NOT_FOUND\b|table or view not found", re.IGNORECASE)


def _dialect() -> sa.Dialect:
    from databricks.sqlalchemy import DatabricksDialect

    return DatabricksDialect()


def parse_describe_extended(rows: Sequence[Sequence[Any]]) -> tuple[TableDescription, str | None]:
    """Columns, declared primary key and provider from ``DESCRIBE TABLE EXTENDED`` rows.

    The output lists ``(col_name, data_type, comment)`` for each column, then a blank row
    or ``#`` sections (partitioning, ``# Detailed Table Information`` with ``Provider``,
    ``# Constraints`` with ``<name> PRIMARY KEY (`a`, `b`)`` in Unity Catalog).
    """
    columns: dict[str, ColumnInfo] = {}
    provider = None
    primary_key: tuple[str, ...] = ()
    in_columns = True
    for row in rows:
        name = (row[0] or "").strip()
        dtype = (row[1] or "").strip() if len(row) > 1 and row[1] is not None else ""
        if in_columns:
            if not name or name.startswith("#"):
                in_columns = False
            else:
                m = _TEXT_TYPE.match(dtype)
                length = (m.group(2) or m.group(3)) if m else None
                columns[name] = ColumnInfo(
                    name=name, type_name=dtype.upper(), is_text=bool(m),
                    max_length=int(length) if length else None,
                    fixed_width=bool(m and m.group(3)),
                    addressable=bool(_ADDRESSABLE_TYPE.match(dtype)),
                )
                continue
        if name == "Provider":
            provider = dtype.lower()
        elif dtype.upper().startswith("PRIMARY KEY") and not primary_key:
            primary_key = tuple(p.replace("``", "`") for p in _BACKTICKED.findall(dtype))
    # Unity Catalog's key constraints are informational: the loop checks the key's values.
    return TableDescription(columns=columns, primary_key=primary_key, keys_enforced=False), provider


class DatabricksTokenizer(WarehouseTokenizer):
    """The Databricks dialect of the loop (databricks-sqlalchemy)."""

    platform = "databricks"
    supports_transactions = False
    supports_advisory_locks = False
    supports_temp_tables = False
    supports_pipelined_reads = True

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._preparer = _dialect().identifier_preparer
        self._provider: dict[str, str | None] = {}

    def build_url(self, ref: TableRef) -> URL:
        return databricks_url(self.connection, catalog=ref.database)

    def qualified_name(self, ref: TableRef) -> str:
        """`catalog`.`schema`.`table`, each part quoted on its own."""
        q = self._preparer.quote_identifier
        return f"{q(ref.database)}.{q(ref.schema)}.{q(ref.table)}"

    def table_clause(self, ref: TableRef, columns: Sequence[str]) -> sa.TableClause:
        q = self._preparer.quote_identifier
        schema = quoted_name(f"{q(ref.database)}.{q(ref.schema)}", quote=False)
        # Aliased, so columns render as t.col rather than four-part names.
        return sa.table(ref.table, *(sa.column(c) for c in columns), schema=schema).alias("t")  # type: ignore[return-value]

    def regex_match(self, column: sa.ColumnElement[Any], regex: str) -> sa.ColumnElement[bool]:
        # Java's `$` also matches before a final line break, Python's fullmatch and Postgres'
        # `$` do not: anchor at the very end, so "tok_..._poc\n" is plaintext here too.
        if regex.endswith("$") and not regex.endswith("\\$"):
            regex = regex[:-1] + "\\z"
        return column.bool_op("RLIKE")(sa.literal(regex, sa.String()))

    def sha256_base64url(self, text: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        # sha2 hashes a string's UTF-8 bytes and returns hex; base64 of the bytes is standard.
        digest = sa.func.unhex(sa.func.sha2(text, sa.literal(256)))
        return sa.func.translate(sa.func.base64(digest), sa.literal("+/", sa.String()), sa.literal("-_", sa.String()))

    def describe(self, conn: Connection, ref: TableRef) -> TableDescription:
        try:
            rows = conn.exec_driver_sql(f"DESCRIBE TABLE EXTENDED {self.qualified_name(ref)}").fetchall()
        except sa.exc.DBAPIError as e:
            if _NOT_FOUND.search(str(e.orig)):
                raise TableNotFoundError(
                    f"dataset {ref.dataset_urn}: table {ref.name} does not exist (or the token cannot "
                    "see it); check the URN and the token's USE CATALOG / USE SCHEMA / SELECT grants"
                ) from None
            raise
        description, provider = parse_describe_extended(rows)
        self._provider[ref.name] = provider
        return description

    def check_table(self, conn: Connection, target: WriteTarget) -> None:
        for c in target.columns:
            info = target.description.columns[c]
            if info.fixed_width:
                raise UnsupportedColumnTypeError(
                    f"dataset {target.ref.dataset_urn}: column {c!r} is {info.type_name}; Databricks pads "
                    "CHAR values with spaces when it reads them, so tokens would not compare equal to "
                    f"what is stored. Change it to STRING (ALTER TABLE {target.ref.name} ALTER COLUMN "
                    f"{c} TYPE STRING) or untag it"
                )
        if self.options.purge and self.options.purge_retain_hours is None:
            raise ConfigError(
                "run.purge on Databricks needs run.purge_retain_hours (VACUUM's RETAIN): files the run "
                "replaces are removed only once older than it; see the README, Plaintext left behind"
            )
        provider = self._provider.get(target.ref.name)
        if provider != "delta":
            raise NotDeltaTableError(
                f"dataset {target.ref.dataset_urn}: table {target.ref.name} is "
                f"{provider or 'not a table with a known provider'}, not Delta; MERGE needs a Delta table. "
                "Convert it (CONVERT TO DELTA) or tokenize a Delta copy"
            )

    @contextlib.contextmanager
    def batch_writer(self, conn: Connection, target: WriteTarget) -> Iterator[BatchWriter]:
        dialect = conn.dialect
        render = self._literal_renderer(dialect)
        head, tail = self.merge_parts(target)

        def write(batch: Batch) -> Callable[[], int | None]:
            statements = list(self.merge_statements(batch, head, tail, render))
            rows = len(set(zip(*batch.keys)))  # (merge_statements sends each key once)

            def send() -> int | None:
                said = [self.rows_updated(conn.exec_driver_sql(sql)) for sql in statements]
                return None if None in said else rows - sum(said)  # type: ignore[arg-type]

            return send

        yield write

    # -- purge ------------------------------------------------------------------------

    def plaintext_remains(self, target: WriteTarget) -> str:
        return ("earlier versions of the table (time travel) keep the old values until VACUUM removes "
                "their files, at the earliest after the table's delta.deletedFileRetentionDuration "
                "(7 days by default); run.purge with purge_retain_hours removes them sooner")

    def purge(self, ref: TableRef) -> str:
        hours = self.options.purge_retain_hours
        with self.engine(ref).connect() as conn:
            conn.exec_driver_sql(f"VACUUM {self.qualified_name(ref)} RETAIN {hours:g} HOURS")
        return (f"VACUUM removed the table's files no longer current for {hours:g} hours: versions older "
                "than that can no longer be read by time travel; files the run replaced less than "
                f"{hours:g} hours before the purge remain until a later VACUUM")

    # -- pushdown ---------------------------------------------------------------------

    #: Pushdown where it can run: one Delta commit, computed by the cluster (the local Spark
    #: benchmark: an order of magnitude faster than the loop's MERGEs, README "Pushdown").
    pushdown_by_default = True

    def pushdown_unavailable(self, conn: Connection, target: WriteTarget, form: HmacSqlForm) -> str | None:
        if self.connection.secret_scope is None:
            return ("the databricks connection names no secret holding the key (secret_scope and "
                    "secret_key), and the key must not appear in statement text")
        return None

    def pushdown_key_hint(self) -> str:
        return (f"the Databricks secret {self.connection.secret_scope!r} / {self.connection.secret_key!r} "
                "(secret_scope / secret_key) holds, byte for byte, the same key as")

    def _pads(self) -> tuple[sa.ColumnElement[Any], sa.ColumnElement[Any]]:
        """HMAC's ipad and opad (RFC 2104) from ``secret(scope, key)``, in SQL: the key's UTF-8
        bytes (SHA-256 of them when longer than 64), padded with zero bytes to 64, XORed with
        0x36 / 0x5C four bytes at a time. Constant: Spark folds it once per statement."""
        f = sa.func
        key = f.encode(f.secret(sa.literal(self.connection.secret_scope, sa.String()),
                                sa.literal(self.connection.secret_key, sa.String())), sa.literal("UTF-8", sa.String()))
        block = f.rpad(sa.case((f.octet_length(key) > 64, f.unhex(f.sha2(key, sa.literal(256)))), else_=key),
                       sa.literal(64), sa.literal_column("X'00'"))

        def xor(mask: int) -> sa.ColumnElement[Any]:
            words = [f.lpad(f.hex(sa.cast(f.conv(f.hex(f.substr(block, 4 * j + 1, 4)), 16, 10), sa.BigInteger)
                                  .op("^")(sa.literal(mask))), 8, sa.literal("0", sa.String()))
                     for j in range(16)]
            return f.unhex(f.concat(*words))

        return xor(0x36363636), xor(0x5C5C5C5C)

    def token_sql(self, form: HmacSqlForm, value: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        f = sa.func
        ipad, opad = self._pads()
        utf8 = sa.literal("UTF-8", sa.String())

        def b64url(data: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
            return f.translate(f.base64(data), sa.literal("+/", sa.String()), sa.literal("-_", sa.String()))

        inner = f.unhex(f.sha2(f.concat(ipad, f.encode(value, utf8)), 256))
        mac = f.unhex(f.sha2(f.concat(opad, inner), 256))
        body = f.concat(sa.literal(form.prefix, sa.String()), b64url(f.substr(mac, 1, form.digest_bytes)))
        # The body once per value: bound to a lambda's parameter, its check appended there.
        assert "'" not in form.check_salt and "\\" not in form.check_salt
        check = (f"translate(substr(base64(substr(unhex(sha2(encode(concat('{form.check_salt}', b), 'UTF-8'), 256)), "
                 f"1, {form.check_bytes})), 1, {form.check_chars}), '+/', '-_')")
        whole = f.transform(f.array(body), sa.literal_column(f"b -> concat(b, {check})"))
        return f.element_at(whole, 1, type_=sa.String())

    def update_statement(self, target: WriteTarget, sets: dict[str, sa.ColumnElement[Any]],
                         where: sa.ColumnElement[bool]) -> str:
        # Rendered here: the table is named through its alias ``t`` (Delta and Spark take
        # ``UPDATE <table> AS t``), and every value is a literal (no parameter markers).
        dialect, q = _dialect(), self._preparer.quote_identifier

        def sql(e: sa.ColumnElement[Any]) -> str:
            return str(e.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))

        text = (f"UPDATE {self.qualified_name(target.ref)} AS t SET "
                + ", ".join(f"{q(c)} = {sql(e)}" for c, e in sets.items()) + f" WHERE {sql(where)}")
        if "${" in text:  # names or literals that Spark's variable substitution would rewrite
            raise UnsupportedColumnTypeError(
                f"dataset {target.ref.dataset_urn}: the pushdown UPDATE would hold '${{' (in a name or "
                "the secret's scope or key), which Spark rewrites before parsing; set run.pushdown: never"
            )
        return text

    def rows_updated(self, result: sa.CursorResult[Any]) -> int | None:
        """What Delta answers a MERGE or UPDATE with: one row of counts, ``num_updated_rows``
        (MERGE) or ``num_affected_rows`` (UPDATE). None where the engine says nothing."""
        if not result.returns_rows:
            return None
        row = result.mappings().first()
        if row is None:
            return None
        for name in ("num_updated_rows", "num_affected_rows"):
            if name in row and row[name] is not None:
                return int(row[name])
        return None

    # -- MERGE rendering (pure; compiled in tests with the real dialect) --------------

    def merge_parts(self, target: WriteTarget) -> tuple[str, str]:
        """The MERGE text before and after the VALUES rows."""
        q = self._preparer.quote_identifier
        nkey = len(target.key)
        src = [f"k{i}" for i in range(nkey)]
        still_plain = []
        sets = []
        for i, c in enumerate(target.columns):
            src += [f"p{i}", f"t{i}"]
            cond = f"s.t{i} IS NOT NULL AND t.{q(c)} = s.p{i}"
            still_plain.append(f"({cond})")
            sets.append(f"t.{q(c)} = CASE WHEN {cond} THEN s.t{i} ELSE t.{q(c)} END")
        on = " AND ".join(f"t.{q(k)} = s.k{i}" for i, k in enumerate(target.key))
        # MERGE takes no column aliases on its source (COLUMN_ALIASES_NOT_ALLOWED, Spark's
        # parser and Databricks' MERGE reference): the VALUES are named in a subquery.
        head = f"MERGE INTO {self.qualified_name(target.ref)} AS t USING (SELECT * FROM (VALUES "
        tail = (
            f") AS v({', '.join(src)})) AS s ON {on} WHEN MATCHED AND ({' OR '.join(still_plain)}) "
            f"THEN UPDATE SET {', '.join(sets)}"
        )
        return head, tail

    def merge_statements(self, batch: Batch, head: str, tail: str,
                         render: Callable[[Any], str]) -> Iterator[str]:
        """MERGE statements covering ``batch``, each under ``MAX_STATEMENT_CHARS``.

        Source rows are de-duplicated per key (MERGE fails when two source rows match one
        target row); a duplicate key means the configured key is not unique, which is logged.
        """
        nkey = len(batch.keys)
        seen: set[tuple[Any, ...]] = set()
        duplicates = 0
        rows: list[str] = []
        size = len(head) + len(tail)
        for row in batch.rows():
            key = row[:nkey]
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            text = "(" + ", ".join(render(v) for v in row) + ")"
            if rows and size + len(text) + 2 > MAX_STATEMENT_CHARS:
                yield head + ", ".join(rows) + tail
                rows, size = [], len(head) + len(tail)
            rows.append(text)
            size += len(text) + 2
        if rows:
            yield head + ", ".join(rows) + tail
        if duplicates:
            logger.warning(
                "%d rows share a key with another row of the same batch and were left for the next "
                "run; the configured key columns are not unique", duplicates,
            )

    @staticmethod
    def _literal_renderer(dialect: sa.Dialect) -> Callable[[Any], str]:
        """Render a Python value as a SQL literal with the dialect's own processors."""
        string = dialect.type_descriptor(sa.String()).literal_processor(dialect)

        def render(value: Any) -> str:
            if value is None:
                return "NULL"
            if isinstance(value, str):
                # Spark substitutes ``${...}`` in the statement text before parsing it
                # (spark.sql.variable.substitute, on by default): '${env:HOME}' would arrive as
                # '/root'. ``$`` is written as the escape \u0024, which the parser reads back,
                # so ``${`` never appears (after the processor has escaped backslashes).
                return string(value).replace("$", "\\u0024")  # type: ignore[misc]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return str(sa.literal(value).compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
            return repr(value)

        return render

