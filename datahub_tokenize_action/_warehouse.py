"""The dialect-neutral update loop, and the hooks a warehouse dialect fills in.

The loop, for one table and some of its text columns:

1. describe the table and validate the request (table, columns, types, key);
2. take the table's lock (where the warehouse has one);
3. one aggregate scan: row count, NULLs, empty strings, values already tokens, and
   the longest plaintext per column (checked against column widths);
4. keyset pages ordered by the key, filtered in SQL by "holds plaintext" (the
   tokenizer's regex as the guard), tokenized in Python, handed to the dialect's
   bulk writer with the plaintext that was read, so a value changed by someone else
   in between is left alone (compare-and-set);
5. commit once (default) or after every batch.

Validation happens before anything is written: a bad request changes nothing.
"""

from __future__ import annotations

import abc
import collections
import contextlib
import dataclasses
import gc
import itertools
import logging
import re
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, ClassVar, ContextManager, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.pool import NullPool
from sqlalchemy.sql import sqltypes

from ._config import ConnectionConfig, RunOptions
from ._exceptions import (
    ColumnNotFoundError,
    CommitOutcomeUnknownError,
    InvalidTargetError,
    NoColumnsError,
    NoKeyError,
    TableNotFoundError,
    TokenizeError,
    TokenizerContractError,
    TokenizerError,
    TokenTooLongError,
    UnsupportedColumnTypeError,
    WarehouseUnavailableError,
    WarehouseWriteError,
    first_line,
)
from ._result import TokenizeResult, committed_text, utc_now
from ._routing import TableRef
from ._tokenizers import TokenOrigin, Tokenizer

__all__ = [
    "Batch",
    "BatchWriter",
    "ColumnInfo",
    "TableDescription",
    "WarehouseTokenizer",
    "WriteTarget",
    "mask_url",
]

logger = logging.getLogger(__name__)

#: Key column types whose values survive COPY text and SQL literals unchanged (bytea,
#: arrays, JSON, intervals... do not: a key that does not match its row updates nothing).
_ADDRESSABLE_TYPES = (
    sqltypes.Integer, sqltypes.Numeric, sqltypes.String, sqltypes.Uuid,
    sqltypes.Date, sqltypes.DateTime, sqltypes.Time, sqltypes.Boolean,
)


@dataclasses.dataclass(frozen=True)
class Batch:
    """One batch to write, by column: key values, then per tokenized column the plaintext
    that was read and its token. Both are None where that row keeps the column's value."""

    keys: Sequence[Sequence[Any]]
    plains: Sequence[Sequence[str | None]]
    tokens: Sequence[Sequence[str | None]]

    def __len__(self) -> int:
        return len(self.keys[0])

    def rows(self) -> Iterator[tuple[Any, ...]]:
        """Row by row: ``(*key, plain_1, token_1, plain_2, token_2, ...)``."""
        pairs = [c for pt in zip(self.plains, self.tokens) for c in pt]
        return zip(*self.keys, *pairs)


#: Called with a batch in the loop's thread, it does the CPU work (rendering the batch)
#: and returns a function that sends it, which may run in the writer thread.
BatchWriter = Callable[[Batch], Callable[[], None]]


#: Query parameters whose values are hidden by ``mask_url`` (psycopg2's ``password``,
#: ``sslpassword``, a connector's ``access_token``...).
_SECRET_QUERY_KEY = re.compile(r"pass|pwd|secret|token|key|credential", re.IGNORECASE)


def mask_url(url: URL | str) -> str:
    """The URL with its password, and query parameters that look secret, replaced by
    ``***``; safe for logs and errors."""
    if isinstance(url, str):
        try:
            url = sa.make_url(url)
        except sa.exc.ArgumentError:
            return "<unparseable url>"
    hidden = {k: "***" for k in url.query if _SECRET_QUERY_KEY.search(k)}
    return url.update_query_dict(hidden).render_as_string(hide_password=True).replace("=%2A%2A%2A", "=***")


@dataclasses.dataclass(frozen=True)
class ColumnInfo:
    """What the loop needs to know about one column."""

    name: str
    type_name: str
    is_text: bool
    #: Declared maximum length in characters (varchar(n), char(n)); None if unbounded.
    max_length: int | None = None
    nullable: bool = True
    #: A fixed-width text type (char(n)): the warehouse pads values with spaces.
    fixed_width: bool = False
    #: Its values survive the bulk path's round trip (COPY text, SQL literals) unchanged,
    #: so the column can be part of the key that addresses rows.
    addressable: bool = True


@dataclasses.dataclass(frozen=True)
class TableDescription:
    """The table's columns (in order) and the candidate keys that identify a row."""

    columns: dict[str, ColumnInfo]
    primary_key: tuple[str, ...] = ()
    #: Unique constraints or indexes, each usable as a key if all its columns are NOT NULL.
    unique_keys: tuple[tuple[str, ...], ...] = ()
    #: The warehouse enforces the keys above. False where constraints are informational
    #: (Databricks): the loop then checks the key's values before writing.
    keys_enforced: bool = True
    #: The column lists of the table's indexes, in index order (the primary key's too); None
    #: where the warehouse has no indexes (Databricks). Keyset paging wants one that starts
    #: with the key.
    indexes: tuple[tuple[str, ...], ...] | None = None


@dataclasses.dataclass(frozen=True)
class WriteTarget:
    """A validated request: the table clause, the key and the columns to tokenize."""

    ref: TableRef
    table: sa.TableClause
    key: tuple[str, ...]
    columns: tuple[str, ...]
    description: TableDescription


@dataclasses.dataclass
class _Counts:
    rows_scanned: int = 0
    rows_updated: int = 0
    tokenized: dict[str, int] = dataclasses.field(default_factory=dict)
    #: With ``commit_every_batch``: what the batches committed so far hold (what a failed
    #: run leaves tokenized).
    committed_rows: int = 0
    committed_tokenized: dict[str, int] = dataclasses.field(default_factory=dict)
    #: Set just before the run's final COMMIT is sent: a signal that finds it set, and the
    #: connection out of its transaction, came after the run committed (the CLI reads it).
    finishing: bool = False

    def committed(self) -> dict[str, Any]:
        """The committed counts as ``TokenizeResult`` fields (``rows_updated``, ``values_tokenized``)."""
        return {"rows_updated": self.committed_rows, "values_tokenized": dict(self.committed_tokenized)}


class WarehouseTokenizer(abc.ABC):
    """Tokenizes columns of one warehouse's tables; owns the update loop.

    Methods a dialect must implement:
        - ``build_url(table)``: the SQLAlchemy URL for the table's database/catalog.
        - ``regex_match(column, regex)``: SQL that is true when the column's value
          matches ``regex`` (the guard is built from it).
        - ``batch_writer(conn, target)``: a context manager yielding a function that
          writes one batch of rows (the bulk path).

    Methods a dialect may override:
        - ``table_clause(ref, columns)``: how to qualify the table name.
        - ``describe(conn, ref)``: columns and keys (default: SQLAlchemy's inspector).
        - ``check_table(conn, target)``: extra checks before writing (e.g. Delta format).
        - ``lock(conn, target)``: mutual exclusion of runs on one table.
        - ``keyset_after(target, last_key)``: the "after this key" predicate.
        - ``value_of(target, column)``: the column's value as read, guarded and tokenized.
        - ``key_of(target, column)``: a key column's value as read and written back.
        - ``is_permanent(driver_error)``: whether a failure mid-run is worth retrying.
        - ``error_hint(driver_error)``: what to do about it, added to the error's message.
        - ``transaction_id(conn)`` and ``transaction_status(conn, xid)``: what lets a run
          whose connection was lost in COMMIT ask the server, on a new connection, whether
          it committed (default: cannot; the failure is reported as it came).

    Capability flags (class attributes):
        - ``supports_transactions``: the whole run can be one transaction.
        - ``supports_advisory_locks``: ``lock`` really excludes a second run.
        - ``supports_temp_tables``: the bulk writer may stage rows in a temp table.
        - ``supports_pipelined_reads``: pages may be read on a second connection while
          the run's connection writes the previous batch (in a writer thread).
    """

    platform: ClassVar[str]
    supports_transactions: ClassVar[bool] = True
    supports_advisory_locks: ClassVar[bool] = False
    supports_temp_tables: ClassVar[bool] = False
    supports_pipelined_reads: ClassVar[bool] = False

    #: With pipelined reads: rows tokenized ahead of the writer, at most (whole batches,
    #: at least one). Enough to keep Python busy while the writer is slow for a while (on
    #: Postgres, applying a chunk of staged rows); it bounds memory whatever the ``batch_size``.
    MAX_ROWS_IN_FLIGHT: ClassVar[int] = 160_000

    #: After a COMMIT lost with its connection: how long to wait for the server to finish the
    #: old session's transaction (it may still be writing or waiting for a synchronous standby).
    COMMIT_OUTCOME_WAIT_S: ClassVar[float] = 10.0

    def __init__(self, connection: ConnectionConfig, tokenizer: Tokenizer, options: RunOptions | None = None):
        self.connection = connection
        self.tokenizer = tokenizer
        self.options = options or RunOptions()
        self._engines: dict[str, Engine] = {}

    # ----------------------------------------------------------------- hooks

    @abc.abstractmethod
    def build_url(self, ref: TableRef) -> URL:
        """The SQLAlchemy URL to reach ``ref``'s database (Postgres) or catalog (Databricks).

        Raises:
            ConfigError: the connection config cannot serve this table.
        """

    @abc.abstractmethod
    def regex_match(self, column: sa.ColumnElement[Any], regex: str) -> sa.ColumnElement[bool]:
        """SQL that is true when ``column`` matches ``regex`` (false or NULL otherwise)."""

    @abc.abstractmethod
    def batch_writer(self, conn: Connection, target: WriteTarget) -> ContextManager[BatchWriter]:
        """Prepare the bulk path for ``target`` and yield a ``BatchWriter``.

        The writer must set a column to its token only where the column still holds
        the plaintext that was read. It may stage batches and apply them later, or
        when the block exits without an error, except with ``options.commit_every_batch``
        where each batch must be applied by its send function (the loop commits after it).
        Send functions run one at a time, never concurrently with another use of ``conn``.
        """

    def engine_options(self) -> dict[str, Any]:
        """Keyword arguments for ``create_engine``; the config's ``engine_options`` win."""
        return {}

    def table_clause(self, ref: TableRef, columns: Sequence[str]) -> sa.TableClause:
        """A table clause naming ``ref`` with ``columns``; override to qualify differently."""
        return sa.table(ref.table, *(sa.column(c) for c in columns), schema=ref.schema)

    def describe(self, conn: Connection, ref: TableRef) -> TableDescription:
        """Columns and keys of ``ref``.

        Raises:
            TableNotFoundError: the table does not exist.
        """
        insp = sa.inspect(conn)
        if not insp.has_table(ref.table, schema=ref.schema):
            raise TableNotFoundError(
                f"dataset {ref.dataset_urn}: table {ref.name} does not exist (or the connection's "
                "user cannot see it); check the URN and the user's grants"
            )
        columns = {}
        for c in insp.get_columns(ref.table, schema=ref.schema):
            ctype = c["type"]
            is_text = isinstance(ctype, sqltypes.String) and not isinstance(ctype, sqltypes.Enum)
            columns[c["name"]] = ColumnInfo(
                name=c["name"],
                type_name=str(ctype),
                is_text=is_text,
                max_length=getattr(ctype, "length", None) if is_text else None,
                nullable=bool(c.get("nullable", True)),
                fixed_width=isinstance(ctype, sqltypes.CHAR),
                addressable=isinstance(ctype, _ADDRESSABLE_TYPES),
            )
        pk = tuple(insp.get_pk_constraint(ref.table, schema=ref.schema).get("constrained_columns") or ())
        uniques = [tuple(u["column_names"]) for u in insp.get_unique_constraints(ref.table, schema=ref.schema)]
        indexes = insp.get_indexes(ref.table, schema=ref.schema)
        uniques += [
            tuple(i["column_names"])
            for i in indexes
            if i.get("unique") and all(i["column_names"]) and not i.get("dialect_options", {}).get("postgresql_where")
        ]
        # Leading plain columns of each index (an expression ends the usable prefix).
        ordered = [pk] + [tuple(itertools.takewhile(bool, i["column_names"])) for i in indexes]
        return TableDescription(columns=columns, primary_key=pk, unique_keys=tuple(uniques),
                                indexes=tuple(o for o in ordered if o))

    def check_table(self, conn: Connection, target: WriteTarget) -> None:
        """Dialect-specific checks before writing; raise an InvalidTargetError to refuse."""

    def value_of(self, target: WriteTarget, column: str) -> sa.ColumnElement[Any]:
        """The column's value as the loop reads, guards and tokenizes it.

        Default: the column itself; a fixed-width (``char(n)``) column is cast to text, which
        drops its padding, so a value tokenizes as it would in a text column and a token
        read back is recognised as one.
        """
        col = target.table.c[column]
        return sa.cast(col, sa.Text) if target.description.columns[column].fixed_width else col

    def key_of(self, target: WriteTarget, column: str) -> sa.ColumnElement[Any]:
        """A key column's value as the loop reads it. The loop hands these values back to
        the warehouse (the keyset predicate, the bulk writer), so they must be ones the
        warehouse reads back as the same key. Default: the column itself."""
        return target.table.c[column]

    def is_permanent(self, driver_error: BaseException) -> bool:
        """Whether a driver error during the run will recur on a retry (a constraint, a
        trigger, a missing grant) rather than pass (a lost connection, a deadlock).
        Default: False, so the pipeline retries; safe, a retry skips what is done."""
        return False

    def error_hint(self, driver_error: BaseException) -> str:
        """What the user can do about a driver error during the run, where the driver's
        own first line does not say (``""``: nothing to add)."""
        return ""

    def transaction_id(self, conn: Connection) -> Any | None:
        """An id of ``conn``'s open transaction that another session can look up with
        ``transaction_status`` once ``conn`` is gone; None where the warehouse has none."""
        return None

    def transaction_status(self, conn: Connection, xid: Any) -> str | None:
        """``"committed"``, ``"aborted"`` or ``"in progress"``: the outcome of transaction
        ``xid`` as the server knows it, asked on ``conn`` (another session); None if it
        cannot tell."""
        return None

    def lock(self, conn: Connection, target: WriteTarget) -> ContextManager[None]:
        """Hold off other runs on the same table while the block runs (default: no lock)."""
        return contextlib.nullcontext()

    def keyset_after(self, target: WriteTarget, last_key: tuple[Any, ...]) -> sa.ColumnElement[bool]:
        """Rows whose key sorts after ``last_key`` (the key order of the scan)."""
        cols = [target.table.c[k] for k in target.key]
        if len(cols) == 1:
            return cols[0] > last_key[0]
        # (a, b) > (x, y) spelled out, for dialects without row-value comparison.
        terms = []
        for i, col in enumerate(cols):
            equal_prefix = [cols[j] == last_key[j] for j in range(i)]
            terms.append(sa.and_(*equal_prefix, col > last_key[i]))
        return sa.or_(*terms)

    # ------------------------------------------------------------ connection

    def engine(self, ref: TableRef) -> Engine:
        url = self.build_url(ref)
        key = url.render_as_string(hide_password=False)
        if key not in self._engines:
            opts = {"poolclass": NullPool, **self.engine_options(), **self.connection.engine_options}
            self._engines[key] = sa.create_engine(url, **opts)
        return self._engines[key]

    def dispose(self) -> None:
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()

    @contextlib.contextmanager
    def _connect(self, ref: TableRef) -> Iterator[Connection]:
        engine = self.engine(ref)
        try:
            conn = engine.connect()
        except sa.exc.DBAPIError as e:
            raise WarehouseUnavailableError(
                f"dataset {ref.dataset_urn}: cannot connect to {mask_url(engine.url)}: "
                f"{first_line(e.orig)}; check that the warehouse is up and the credentials are right"
            ) from None
        with conn:
            yield conn

    # ------------------------------------------------------------ validation

    def validate(self, conn: Connection, ref: TableRef, columns: Sequence[str]) -> WriteTarget:
        """Check the request against the table; return what the loop writes to.

        Raises:
            NoColumnsError, TableNotFoundError, ColumnNotFoundError,
            UnsupportedColumnTypeError, NoKeyError (all InvalidTargetError).
        """
        if not columns:
            raise NoColumnsError(f"dataset {ref.dataset_urn}: no columns to tokenize were given")
        desc = self.describe(conn, ref)
        for col in columns:
            info = desc.columns.get(col)
            if info is None:
                raise ColumnNotFoundError(
                    f"dataset {ref.dataset_urn}: column {col!r} does not exist in {ref.name} "
                    f"(columns: {', '.join(desc.columns)}); fix the column name or the tag"
                )
            if not info.is_text:
                raise UnsupportedColumnTypeError(
                    f"dataset {ref.dataset_urn}: column {col!r} is {info.type_name}, not text; only "
                    "text columns can hold tokens. Untag it, or change its type to text first"
                )
        key = self._choose_key(ref, desc, columns)
        if desc.indexes is not None and not any(ix[:len(key)] == key for ix in desc.indexes):
            logger.warning(
                "dataset %s: no index of %s starts with its key (%s), so every batch reads the whole "
                "table to find the next rows and the run slows down as the table grows; add one "
                "(CREATE INDEX ON %s (%s)) before tokenizing a large table",
                ref.dataset_urn, ref.name, ", ".join(key), f"{ref.schema}.{ref.table}", ", ".join(key),
            )
        table = self.table_clause(ref, list(dict.fromkeys([*key, *columns])))
        return WriteTarget(ref=ref, table=table, key=key, columns=tuple(columns), description=desc)

    def _choose_key(self, ref: TableRef, desc: TableDescription, columns: Sequence[str]) -> tuple[str, ...]:
        configured = self.connection.key_columns.get(ref.name) or self.connection.key_columns.get(
            f"{ref.schema}.{ref.table}"
        )
        if configured:
            missing = [k for k in configured if k not in desc.columns]
            if missing:
                raise ColumnNotFoundError(
                    f"dataset {ref.dataset_urn}: key column(s) {', '.join(missing)} from `key_columns` "
                    f"do not exist in {ref.name}"
                )
            key = tuple(configured)
        elif desc.primary_key:
            key = desc.primary_key
        else:
            usable = [
                u for u in desc.unique_keys
                if all(not desc.columns[c].nullable and desc.columns[c].addressable for c in u)
            ]
            if not usable:
                raise NoKeyError(
                    f"dataset {ref.dataset_urn}: table {ref.name} has no primary key or unique NOT NULL "
                    "key to address rows; add one, or name the key columns under the connection's "
                    f"`key_columns: {{{ref.schema}.{ref.table}: [...]}}`"
                )
            key = min(usable, key=len)
        unusable = [k for k in key if not desc.columns[k].addressable]
        if unusable:
            raise NoKeyError(
                f"dataset {ref.dataset_urn}: key column(s) "
                f"{', '.join(f'{k} ({desc.columns[k].type_name})' for k in unusable)} of {ref.name} "
                "have a type whose values cannot be matched back to their rows; use a key of "
                "integer, numeric, text, uuid, date or timestamp columns under the connection's "
                f"`key_columns: {{{ref.schema}.{ref.table}: [...]}}`"
            )
        overlap = [c for c in columns if c in key]
        if overlap:
            raise InvalidTargetError(
                f"dataset {ref.dataset_urn}: column(s) {', '.join(overlap)} are part of the key of "
                f"{ref.name}; tokenizing a key column would change row identity. Untag it or use "
                "another key"
            )
        return key

    #: A value the guard check tokenizes: not PII, and not shaped like any token.
    GUARD_PROBE = "datahub-tokenize guard probe: alice@example.com"
    #: Plaintext of the hmac v2 shape whose check value is wrong: the warehouse's check must
    #: take it for plaintext, as Python does.
    LOOKALIKE_PROBE = "tok2_probe_" + "A" * 51

    def check_guard(self, conn: Connection, target: WriteTarget, *, with_token: bool) -> None:
        """The warehouse must tell tokens from plaintext as Python does: its guard is what
        skips tokens on the next run, and its regex dialect (POSIX, Java) is not Python's.
        One query: the guard's token test must hold for two fixed probe values (plain text,
        and a value of the hmac v2 shape with a wrong check value) exactly when Python's
        ``is_token`` says so, and (``with_token``, only when the run will write: a
        dry run calls no tokenizer) it must hold for a token of the probe.

        Raises:
            TokenizerContractError: the warehouse rejects the regex or disagrees with Python.
        """
        token = None
        if with_token:
            token = self._tokens(target, "the guard probe (a fixed test value)", [self.GUARD_PROBE])[0]
        try:
            probe_matches, lookalike_matches, token_matches = conn.execute(self._guard_probe_query(token)).one()
        except sa.exc.DBAPIError as e:
            if not self.is_permanent(e.orig):
                raise  # a lost connection, a timeout: the run's error handling retries it
            raise TokenizerContractError(
                f"dataset {target.ref.dataset_urn}: the warehouse rejects tokenizer "
                f"{self.tokenizer.type_name!r}'s token_regex {self.tokenizer.token_regex!r}: "
                f"{first_line(e.orig)}; use only literals, bracket classes and + / * in it"
            ) from None
        if (not token_matches or bool(probe_matches) != self.tokenizer.is_token(self.GUARD_PROBE)
                or bool(lookalike_matches) != self.tokenizer.is_token(self.LOOKALIKE_PROBE)):
            raise TokenizerContractError(
                f"dataset {target.ref.dataset_urn}: the warehouse's regex dialect reads tokenizer "
                f"{self.tokenizer.type_name!r}'s token_regex {self.tokenizer.token_regex!r} unlike Python "
                f"({'a token is not recognised' if not token_matches else 'plaintext is taken for a token'}), "
                "so runs would tokenize tokens again or skip plaintext; use only literals, bracket "
                "classes and + / * in it"
            )

    def _guard_probe_query(self, token: str | None) -> sa.Select[Any]:
        """Whether the guard's token test holds for the probe, the look-alike, and ``token``
        (true if None)."""
        return sa.select(
            self.is_token_clause(sa.literal(self.GUARD_PROBE, sa.Text)),
            self.is_token_clause(sa.literal(self.LOOKALIKE_PROBE, sa.Text)),
            sa.true() if token is None else self.is_token_clause(sa.literal(token, sa.Text)),
        )

    def check_key(self, conn: Connection, target: WriteTarget) -> None:
        """Refuse a key that does not identify rows: paging by key would skip rows that
        share a key value, and rows with a NULL in the key would never be read.

        A primary key or unique key of NOT NULL columns that the warehouse enforces is
        trusted as it is; any other key (from ``key_columns``, or declared but not enforced)
        is checked on the data with one ``GROUP BY`` over the key.

        Raises:
            NoKeyError: some key value is shared by several rows or holds a NULL.
        """
        desc, key = target.description, set(target.key)
        candidates = ((desc.primary_key,) if desc.primary_key else ()) + desc.unique_keys
        if (
            desc.keys_enforced
            and all(not desc.columns[k].nullable for k in target.key)
            and any(set(u) <= key for u in candidates)
        ):
            return
        key_cols = [target.table.c[k] for k in target.key]
        shared = (
            sa.select(sa.literal(1)).select_from(target.table).group_by(*key_cols)
            .having(sa.or_(sa.func.count() > 1, *(c.is_(None) for c in key_cols)))
            .subquery("shared")
        )
        bad = conn.execute(sa.select(sa.func.count()).select_from(shared)).scalar_one()
        if bad:
            raise NoKeyError(
                f"dataset {target.ref.dataset_urn}: the key ({', '.join(target.key)}) of {target.ref.name} "
                f"does not identify rows: {bad:,} key value(s) are shared by several rows or hold a NULL, "
                "and those rows would be skipped. Name a unique NOT NULL key under the connection's "
                f"`key_columns: {{{target.ref.schema}.{target.ref.table}: [...]}}`, or add a primary key"
            )

    # ------------------------------------------------------------ predicates

    def sha256_base64url(self, text: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        """SQL twin of ``check_value``: base64url of SHA-256 of ``text`` in UTF-8 (44 characters,
        padding included). Needed for token formats with a check value (hmac v2)."""
        raise NotImplementedError(f"{type(self).__name__} cannot compute a token's check value in SQL")

    def text_equals(self, a: sa.ColumnElement[Any], b: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        """True where two text values are the same characters (default: ``=``)."""
        return a == b

    def is_token_clause(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        """SQL twin of ``Tokenizer.is_token``: any of the tokenizer's ``token_patterns`` (its
        length range, its regex, its check value), each test ordered cheapest first."""
        terms = []
        for pattern in self.tokenizer.token_patterns:
            parts = []
            if pattern.length_range is not None:
                parts.append(sa.func.char_length(column).between(*pattern.length_range))
            parts.append(self.regex_match(column, pattern.regex))
            if pattern.check_chars:
                n = pattern.check_chars
                rest = sa.func.substr(column, 1, sa.func.char_length(column) - n)
                digest = self.sha256_base64url(sa.func.concat(sa.literal(pattern.check_salt, sa.Text), rest))
                parts.append(self.text_equals(sa.func.right(column, n), sa.func.substr(digest, 1, n)))
            terms.append(sa.and_(*parts) if len(parts) > 1 else parts[0])
        return sa.or_(*terms) if len(terms) > 1 else terms[0]

    def holds_plaintext(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        """True where the column holds a value to tokenize: not NULL, not empty, not a token."""
        return sa.and_(column != "", sa.not_(self.is_token_clause(column)))

    def fence(self, subquery: sa.Select[Any]) -> sa.Select[Any]:
        """Keep the planner from inlining ``subquery`` into its outer query, so each of its
        expressions is evaluated once per row. Default: unchanged."""
        return subquery

    def _stats_query(self, target: WriteTarget) -> sa.Select[Any]:
        """One scan: rows, rows holding plaintext, and per column NULLs, empty strings,
        tokens and the longest plaintext in bytes. The regex runs once per value: each
        value is classified in a fenced subquery and only the class is aggregated."""
        t = target.table
        classes = []
        for i, c in enumerate(target.columns):
            col = self.value_of(target, c)
            classes += [
                sa.case((col.is_(None), "n"), (col == "", "e"), (self.is_token_clause(col), self._token_class(col)),
                        else_="p")
                .label(f"class_{i}"),
                sa.func.octet_length(col).label(f"bytes_{i}"),
            ]
        per_row = self.fence(sa.select(*classes).select_from(t)).subquery("v")
        one, zero = sa.literal(1), sa.literal(0)

        def count_where(cond: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
            return sa.func.coalesce(sa.func.sum(sa.case((cond, one), else_=zero)), 0)

        cols: list[sa.ColumnElement[Any]] = [
            sa.func.count().label("total_rows"),
            count_where(sa.or_(*(per_row.c[f"class_{i}"] == "p" for i in range(len(target.columns)))))
            .label("rows_to_change"),
        ]
        for i in range(len(target.columns)):
            cls = per_row.c[f"class_{i}"]
            cols += [
                count_where(cls == "n").label(f"nulls_{i}"),
                count_where(cls == "e").label(f"empty_{i}"),
                count_where(cls.in_(["t", "o"])).label(f"tokens_{i}"),
                count_where(cls == "o").label(f"others_{i}"),
                sa.func.max(sa.case((cls == "p", per_row.c[f"bytes_{i}"]))).label(f"maxlen_{i}"),
            ]
        return sa.select(*cols).select_from(per_row)

    def _token_class(self, col: sa.ColumnElement[Any]) -> sa.ColumnElement[str] | str:
        """For a value the guard takes for a token: "t" if this configuration made it (its
        ``configured_token_regex``), "o" if another format or key did."""
        tok = self.tokenizer
        if len(tok.token_patterns) == 1 and tok.configured_token_regex == tok.token_regex:
            return "t"
        return sa.case((self.regex_match(col, tok.configured_token_regex), "t"), else_="o")

    #: Tokens read to tell what made the tokens a run did not expect (their formats and key ids).
    OTHER_TOKENS_SAMPLE = 10_000

    def _report_other_tokens(self, conn: Connection, target: WriteTarget, stats: sa.Row[Any]) -> dict[str, int]:
        """Count, per column, the tokens this configuration did not make (another format or
        version, a key id neither current nor retired); they are skipped like any token, never
        wrapped in another. When there are any, read up to ``OTHER_TOKENS_SAMPLE`` of them and
        warn with what made them and what to do."""
        others = {c: int(stats._mapping[f"others_{i}"]) for i, c in enumerate(target.columns)}
        if not any(others.values()):
            return others
        origins: collections.Counter[TokenOrigin | None] = collections.Counter()
        for c, n in others.items():
            if not n:
                continue
            col = self.value_of(target, c)
            stmt = (sa.select(col).select_from(target.table)
                    .where(self.is_token_clause(col), sa.not_(self.regex_match(col, self.tokenizer.configured_token_regex)))
                    .limit(self.OTHER_TOKENS_SAMPLE))
            origins.update(self.tokenizer.token_origin(v) for (v,) in self._fetch(conn, stmt))
        seen = sum(origins.values())
        logger.warning(
            "dataset %s: %s value(s) (%s) are tokens this configuration did not make; they are left as "
            "they are, never tokenized again. %s: %s",
            target.ref.dataset_urn, f"{sum(others.values()):,}",
            ", ".join(f"{c}: {n:,}" for c, n in others.items() if n),
            "Found" if seen == sum(others.values()) else f"In a sample of {seen:,}",
            "; ".join(f"{n:,} {_origin_advice(o, self.tokenizer)}" for o, n in origins.most_common()),
        )
        return others

    def _check_widths(self, target: WriteTarget, stats: sa.Row[Any]) -> None:
        for i, c in enumerate(target.columns):
            width = target.description.columns[c].max_length
            longest = stats._mapping[f"maxlen_{i}"]
            if width is None or longest is None:
                continue
            need = self.tokenizer.max_token_length(int(longest))
            if need > width:
                raise TokenTooLongError(
                    f"dataset {target.ref.dataset_urn}: column {c!r} is "
                    f"{target.description.columns[c].type_name}, but tokens of its longest value "
                    f"({longest} bytes) need up to {need} characters; widen the column to at least "
                    f"{need} characters (or an unbounded text type) and run again"
                )

    # ------------------------------------------------------------------ loop

    def run(self, ref: TableRef, columns: Sequence[str], *, dry_run: bool = False) -> TokenizeResult:
        """Tokenize ``columns`` of ``ref``; with ``dry_run``, count what would change and write nothing.

        Returns a SUCCESS result. Raises a TokenizeError on any failure; in
        single-transaction mode nothing is left changed.
        """
        started = time.monotonic()
        started_at = utc_now()
        run_id = uuid.uuid4().hex
        columns = tuple(dict.fromkeys(columns))
        progress = _Progress(ref.name, self.options.progress_interval_s, dry_run)
        counts = _Counts(tokenized={c: 0 for c in columns}, committed_tokenized={c: 0 for c in columns})
        commits_batches = self.options.commit_every_batch and not dry_run
        with progress.heartbeat(), self._connect(ref) as conn:
            try:
                progress.step("reading the table's columns and keys")
                target = self.validate(conn, ref, columns)
                self.check_table(conn, target)
                progress.step(f"checking that the key ({', '.join(target.key)}) identifies rows")
                self.check_key(conn, target)
                self.check_guard(conn, target, with_token=False)
                progress.step("waiting for the table's run lock (held while another run works on it)")
                with self.lock(conn, target):
                    progress.step("scanning the table before writing (rows, NULLs, tokens, longest values)")
                    stats = conn.execute(self._stats_query(target)).one()
                    self._check_widths(target, stats)
                    others = self._report_other_tokens(conn, target, stats)
                    if int(stats.rows_to_change) and not dry_run:
                        self.check_guard(conn, target, with_token=True)
                    self._loop(conn, target, int(stats.rows_to_change), dry_run, progress, counts)
                    if dry_run:
                        conn.rollback()
                    else:
                        progress.step("committing")
                        counts.finishing = True
                        self._commit(conn, ref)  # (a lost session after the last COMMIT: nothing left to send)
            except TokenizeError as e:
                conn.rollback()
                if commits_batches:
                    e.committed_counts = counts.committed()  # type: ignore[attr-defined]
                    if counts.committed_rows:
                        e.args = (f"{e}; batches committed before the failure stay tokenized "
                                  f"({_committed_text(counts)})",)
                raise
            except Exception as e:
                driver_error = e.orig if isinstance(e, sa.exc.DBAPIError) else e
                if not isinstance(driver_error, conn.dialect.loaded_dbapi.Error):
                    raise
                conn.rollback()
                hint = self.error_hint(driver_error)
                error = WarehouseWriteError(
                    f"dataset {ref.dataset_urn}: the warehouse failed during the run: {first_line(driver_error)}"
                    + (f" ({hint})" if hint else "")
                    + ("; nothing was changed (a dry run)" if dry_run
                       else "; nothing was changed (the run's transaction was rolled back)"
                       if self.supports_transactions and not self.options.commit_every_batch
                       else f"; batches committed before the failure stay tokenized ({_committed_text(counts)}): "
                       "once the cause is fixed, run again to finish (values already tokens are skipped)"
                       if commits_batches
                       else "; batches written before the failure (if any) stay tokenized: once the "
                       "cause is fixed, run again to finish (values already tokens are skipped)")
                )
                error.permanent = self.is_permanent(driver_error)
                if commits_batches:
                    error.committed_counts = counts.committed()  # type: ignore[attr-defined]
                raise error from None
            except BaseException as e:  # a signal (RunInterrupted), a bug: what is committed stays
                if commits_batches:
                    e.committed_counts = counts.committed()  # type: ignore[attr-defined]
                raise
        elapsed = time.monotonic() - started
        result = TokenizeResult(
            status="SUCCESS",
            dataset=ref.dataset_urn,
            table=ref.name,
            columns=columns,
            rows_scanned=counts.rows_scanned,
            rows_updated=counts.rows_updated,
            values_tokenized={c: counts.tokenized.get(c, 0) for c in columns},
            values_skipped={c: int(stats._mapping[f"tokens_{i}"]) for i, c in enumerate(columns)},
            tokens_not_configured=others,
            nulls={c: int(stats._mapping[f"nulls_{i}"]) for i, c in enumerate(columns)},
            empty_strings={c: int(stats._mapping[f"empty_{i}"]) for i, c in enumerate(columns)},
            elapsed_s=round(elapsed, 3),
            dry_run=dry_run,
            tokenizer=self.tokenizer.type_name or type(self.tokenizer).__name__,
            key_id=self.tokenizer.key_id,
            run_id=run_id,
            started_at=started_at,
            ended_at=utc_now(),
        )
        logger.info(
            "%s %s: %d rows scanned, %d rows %s, %s values tokenized, %s already tokens, in %.1fs",
            "dry run of" if dry_run else "tokenized",
            ref.name,
            result.rows_scanned,
            result.rows_updated,
            "would change" if dry_run else "updated",
            sum(result.values_tokenized.values()),
            sum(result.values_skipped.values()),
            elapsed,
        )
        return result

    def _loop(self, conn: Connection, target: WriteTarget, expected: int, dry_run: bool,
              progress: _Progress, counts: _Counts) -> None:
        """Read, tokenize and write in keyset batches.

        With ``supports_pipelined_reads`` (and not a dry run) pages are read on a second
        connection while one writer thread sends earlier batches, in order, on ``conn``,
        the connection holding the run's transaction and lock: reading and tokenizing in
        Python overlap with the warehouse applying writes. At most ``MAX_ROWS_IN_FLIGHT``
        rows (whole batches, at least one) wait for the writer, which bounds memory.
        """
        t = target.table
        nkey = len(target.key)
        key_cols = [t.c[k] for k in target.key]
        if expected == 0:
            return  # the stats scan found nothing to tokenize
        values = [self.value_of(target, c) for c in target.columns]
        guard = sa.or_(*(self.holds_plaintext(v) for v in values))
        keys = [self.key_of(target, k) for k in target.key]
        base = sa.select(*keys, *values).order_by(*key_cols)
        batch_size = self.options.batch_size
        commit_each = self.options.commit_every_batch and not dry_run
        pipelined = self.supports_pipelined_reads and not dry_run
        in_flight = max(1, self.MAX_ROWS_IN_FLIGHT // batch_size)
        last_key: tuple[Any, ...] | None = None

        failed: list[BaseException] = []

        def send(thunk: Callable[[], None], rows: int, tokenized: dict[str, int]) -> None:
            if failed:  # a batch before this one failed: its error ends the run, send nothing more
                return  # (SQLAlchemy would send it on a new session, without the run's lock)
            try:
                thunk()
                if not commit_each:
                    return
                lost = self._commit(conn, target.ref)
                # Counted once committed: what a run that fails later leaves tokenized.
                counts.committed_rows += rows
                for name, n in tokenized.items():
                    counts.committed_tokenized[name] += n
                if lost is not None:
                    raise lost  # committed, but the run's session is gone: it cannot go on
            except BaseException as e:
                failed.append(e)
                raise

        progress.rows(expected)
        writer: ContextManager[BatchWriter | None] = (
            contextlib.nullcontext() if dry_run else self.batch_writer(conn, target)
        )
        with _old_objects_frozen(), writer as write:
            with contextlib.ExitStack() as stack:
                reader = stack.enter_context(self.engine(target.ref).connect()) if pipelined else conn
                pool = stack.enter_context(ThreadPoolExecutor(1, "tokenize-writer")) if pipelined else None
                pending: collections.deque[Future[None]] = collections.deque()
                try:
                    while True:
                        where = guard if last_key is None else sa.and_(guard, self.keyset_after(target, last_key))
                        rows = self._fetch(reader, base.where(where).limit(batch_size))
                        if not rows:
                            break
                        last_key = tuple(rows[-1][:nkey])
                        before = dict(counts.tokenized)
                        batch, changed_rows = self._tokenize_batch(target, rows, nkey, dry_run, counts)
                        made = {c: counts.tokenized[c] - before[c] for c in target.columns}
                        while pending and (pending[0].done() or len(pending) >= in_flight):
                            pending.popleft().result()  # written, or its error raised here
                        if write is not None and changed_rows:
                            thunk = write(batch)
                            if pool is not None:
                                pending.append(pool.submit(send, thunk, changed_rows, made))
                            else:
                                send(thunk, changed_rows, made)
                        counts.rows_scanned += len(rows)
                        counts.rows_updated += changed_rows
                        progress.update(counts.rows_scanned)
                        if len(rows) < batch_size:
                            break
                    if write is not None:
                        # Batches waiting for the writer, and (Postgres) the last staged rows.
                        progress.step(f"writing the last rows ({counts.rows_updated:,} tokenized in all)")
                    while pending:
                        pending.popleft().result()
                finally:
                    for future in pending:
                        future.cancel()
                    for future in pending:
                        if not future.cancelled():
                            future.exception()  # never leave the writer running on ``conn``

    def _commit(self, conn: Connection, ref: TableRef) -> Exception | None:
        """COMMIT ``conn``'s transaction. When the COMMIT itself fails with a driver error
        (the connection dropped, the server restarted), the server may still have committed:
        ask it on a new connection. If it committed, returns the failure (with a warning):
        the transaction's writes are in, but the session is gone (its lock, its staging
        table), so nothing more may be sent on ``conn``. Re-raises the failure if it did not
        commit, raises CommitOutcomeUnknownError if the server cannot tell. None: committed."""
        xid = self.transaction_id(conn) if conn.in_transaction() else None
        try:
            conn.commit()
        except Exception as e:
            driver_error = e.orig if isinstance(e, sa.exc.DBAPIError) else e
            if xid is None or not isinstance(driver_error, conn.dialect.loaded_dbapi.Error):
                raise
            status, why = self._commit_outcome(ref, xid)
            if status == "aborted":
                raise
            if status != "committed":
                raise CommitOutcomeUnknownError(
                    f"dataset {ref.dataset_urn}: the connection failed while committing "
                    f"({first_line(driver_error)}) and whether the server committed is unknown ({why}; "
                    f"transaction {xid}): the table holds all of the writes of that commit or none of "
                    "them; run again: a rerun skips values already tokens, so it finishes the table "
                    "either way and reports what it found"
                ) from None
            logger.warning(
                "%s: the connection failed while committing (%s); asked on a new connection, the "
                "server says transaction %s committed: the writes are in the table",
                ref.name, first_line(driver_error), xid,
            )
            return e
        return None

    def _commit_outcome(self, ref: TableRef, xid: Any) -> tuple[str | None, str]:
        """(status, why it is not known): polled until the server has finished the
        transaction or ``COMMIT_OUTCOME_WAIT_S`` has passed."""
        deadline = time.monotonic() + self.COMMIT_OUTCOME_WAIT_S
        while True:
            try:
                with self.engine(ref).connect() as check:
                    status = self.transaction_status(check, xid)
                why = ("the server still reports it in progress" if status == "in progress"
                       else "the server no longer knows it")
            except sa.exc.DBAPIError as e:
                status, why = None, f"the server could not be asked: {first_line(e.orig)}"
            if status in ("committed", "aborted") or time.monotonic() >= deadline:
                return status, why
            time.sleep(0.2)

    @staticmethod
    def _fetch(conn: Connection, stmt: sa.Select[Any]) -> list[tuple[Any, ...]]:
        """Run a SELECT on the DBAPI cursor: plain tuples, without SQLAlchemy's Row objects
        (about half the cost of reading a million rows)."""
        compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(str(compiled), compiled.params)
            return cursor.fetchall()
        finally:
            cursor.close()

    def _tokenize_batch(self, target: WriteTarget, rows: Sequence[sa.Row[Any]], nkey: int, dry_run: bool,
                        counts: _Counts) -> tuple[Batch, int]:
        """Split fetched rows into a columnar Batch; count and tokenize the plaintext values."""
        columns = list(zip(*rows))
        plains: list[Sequence[str | None]] = []
        tokens: list[Sequence[str | None]] = []
        changed: list[bool] | None = None
        for name, col in zip(target.columns, columns[nkey:]):
            mask = self.tokenizer.plaintext_mask(col)
            n_plain = sum(mask)
            counts.tokenized[name] += n_plain
            changed = mask if changed is None else [a or b for a, b in zip(changed, mask)]
            if n_plain == len(col):  # the common case: every value read is plaintext
                plains.append(col)
                tokens.append(col if dry_run else self._tokens(target, f"column {name!r}", col))
                continue
            plain = [v if m else None for v, m in zip(col, mask)]
            plains.append(plain)
            if dry_run or not n_plain:
                tokens.append(plain)
                continue
            made = iter(self._tokens(target, f"column {name!r}", [v for v in plain if v is not None]))
            tokens.append([None if v is None else next(made) for v in plain])
        assert changed is not None
        n_changed = sum(changed)
        if n_changed == len(rows):
            return Batch(columns[:nkey], plains, tokens), n_changed
        keep = [i for i, c in enumerate(changed) if c]  # rows whose every value is already done

        def pick(seq: Sequence[Any]) -> list[Any]:
            return [seq[i] for i in keep]

        return Batch([pick(k) for k in columns[:nkey]], [pick(p) for p in plains], [pick(t) for t in tokens]), n_changed

    def _tokens(self, target: WriteTarget, what: str, values: Sequence[str]) -> list[str]:
        """The tokenizer's tokens for ``values``, checked before anything is written: one
        token per value and (unless the tokenizer's tokens are proven by construction)
        each recognised as a token, so the next run's guard skips it instead of
        tokenizing the token."""
        try:
            made = self.tokenizer.tokenize_many(values)
            if not isinstance(made, list):
                made = list(made)
        except TokenizeError:
            raise
        except Exception as e:
            # Only the type: a plugin's message may quote the plaintext it was given.
            raise TokenizerError(
                f"dataset {target.ref.dataset_urn}: tokenizer {self.tokenizer.type_name!r} raised "
                f"{type(e).__name__} on {what} (its message is not shown: it may hold "
                "plaintext); check the tokenizer's service and run again (values already tokens are skipped)"
            ) from None
        if len(made) != len(values):
            raise TokenizerContractError(
                f"dataset {target.ref.dataset_urn}: tokenizer {self.tokenizer.type_name!r} returned "
                f"{len(made)} tokens for {len(values)} values of {what}; its tokenize_many "
                "must return one token per value, in order. Fix the tokenizer plugin"
            )
        if self.tokenizer.verify_tokens and not all(map(self.tokenizer.is_token, made)):
            raise TokenizerContractError(
                f"dataset {target.ref.dataset_urn}: tokenizer {self.tokenizer.type_name!r} made a token "
                f"for {what} that its own token_regex / token_length_range does not "
                "recognise; the next run would tokenize that token again. Fix the tokenizer plugin"
            )
        return made


def _origin_advice(origin: TokenOrigin | None, tokenizer: Tokenizer) -> str:
    """What made tokens of ``origin``, and what the user can do about them."""
    if origin is None:
        return "of a format the tokenizer does not name"
    if origin.format == "hmac v1":
        return (f"hmac v1 token(s) under key id {origin.key_id!r} (written before 0.3, recognised by "
                "shape only): convert them to v2 with the SQL in the README (Token formats), or, if "
                "they are plaintext, set tokenizer.recognise_v1_tokens: false")
    if origin.format == "poc":
        return ("poc token(s): a reversible encoding of the plaintext, not protection; replace them "
                "from the source")
    if origin.key_id is not None:
        return (f"{origin.format} token(s) under key id {origin.key_id!r}, which is neither "
                f"tokenizer.key_id ({tokenizer.key_id!r}) nor in retired_key_ids: if it was an earlier "
                "key of yours, add it to retired_key_ids")
    return f"{origin.format} token(s)"


def _committed_text(counts: _Counts) -> str:
    return committed_text(counts.committed())


@contextlib.contextmanager
def _old_objects_frozen() -> Iterator[None]:
    """Leave the objects that exist before the loop (the ~100,000 of the imported SQLAlchemy,
    DataHub and pydantic modules) out of the garbage collector's full passes until it ends.

    The loop allocates millions of objects that die young, and each full pass (about 20
    per million rows) walked the whole module heap again: 1.3 CPU-seconds per million rows,
    on a machine whose cores the warehouse's backends also need. Nothing the loop makes is
    frozen, so its own garbage is collected as usual. Left alone when something else froze
    objects (a host that calls ``gc.freeze`` itself) or turned collection off.

    The freeze is process-wide for the loop's duration: in a host process (the actions
    pipeline), reference cycles among objects older than the loop wait for its end to be
    collected, and a host calling ``gc.freeze`` while a loop runs has that undone when it ends.
    """
    if gc.get_freeze_count() or not gc.isenabled():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class _Progress:
    """What a run is doing, logged at most once and (with ``heartbeat``) at least once every
    ``interval`` seconds: while rows are read and written, rows done, the expected total and
    the rate; before and after, the step the run is in and how long it has taken so far (one
    statement can take minutes on a large table: the scan before writing, a keyset page that
    must pass many rows already done, the last apply)."""

    def __init__(self, name: str, interval: float, dry_run: bool):
        self.name, self.interval, self.dry_run = name, interval, dry_run
        self.expected: int | None = None  # set when the rows phase starts
        self.done = 0
        self.what = "connecting to the warehouse"
        self.step_start = self.last = time.monotonic()
        self._lock = threading.Lock()

    def step(self, what: str) -> None:
        """The run now does ``what`` (a phrase, e.g. "scanning the table"), not rows."""
        with self._lock:
            self.expected, self.what, self.step_start = None, what, time.monotonic()
        self._log_if_due()

    def rows(self, expected: int) -> None:
        """The run now reads, tokenizes and writes about ``expected`` rows."""
        with self._lock:
            self.expected, self.done, self.step_start = expected, 0, time.monotonic()
        self._log_if_due()

    def update(self, done: int) -> None:
        self.done = done
        self._log_if_due()

    def _log_if_due(self) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self.last < self.interval:
                return
            self.last = now
            prefix = "dry run " if self.dry_run else ""
            if self.expected is None:
                logger.info("%s%s: %s (%.0fs)", prefix, self.name, self.what, now - self.step_start)
                return
            rate = self.done / max(now - self.step_start, 1e-9)
            pct = f" ({100 * self.done / self.expected:.0f}%)" if self.expected else ""
            logger.info(
                "%s%s: %s / ~%s rows%s, %.0f rows/s",
                prefix, self.name, f"{self.done:,}", f"{self.expected:,}", pct, rate,
            )

    @contextlib.contextmanager
    def heartbeat(self) -> Iterator[None]:
        """Log from a thread whenever ``interval`` seconds pass without a line, until the block ends."""
        done = threading.Event()

        def beat() -> None:
            while not done.wait(max(self.interval - (time.monotonic() - self.last), 0.01)):
                self._log_if_due()

        thread = threading.Thread(target=beat, name="tokenize-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
