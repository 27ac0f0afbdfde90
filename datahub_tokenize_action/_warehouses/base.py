"""``WarehouseTokenizer``: the hooks a warehouse dialect fills in, its connections, and the
SQL twins of the tokenizer's tests (token or plaintext) that validation and the loop build on.

A run (``run``) goes: ``plan`` validates the request and scans the table into a ``Plan``;
``loop`` executes it (keyset pages tokenized in Python, written by the dialect's bulk
writer); ``commit`` ends it; ``run`` ties these together and turns failures into errors.
"""

from __future__ import annotations

import abc
import contextlib
import itertools
from typing import Any, ClassVar, ContextManager, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.pool import NullPool
from sqlalchemy.sql import sqltypes

from .._config import ConnectionConfig, RunOptions
from .._exceptions import TableNotFoundError, WarehouseUnavailableError, first_line
from .._result import TokenizeResult
from .._routing import TableRef
from .._tokenizers import HmacSqlForm, Tokenizer
from .model import BatchWriter, ColumnInfo, TableDescription, WriteTarget
from .run import execute_run
from .urls import mask_url

__all__ = ["WarehouseTokenizer"]

#: Key column types whose values survive COPY text and SQL literals unchanged (bytea,
#: arrays, JSON, intervals... do not: a key that does not match its row updates nothing).
_ADDRESSABLE_TYPES = (
    sqltypes.Integer, sqltypes.Numeric, sqltypes.String, sqltypes.Uuid,
    sqltypes.Date, sqltypes.DateTime, sqltypes.Time, sqltypes.Boolean,
)



class WarehouseTokenizer(abc.ABC):
    """Tokenizes columns of one warehouse's tables: the dialect hooks that ``plan``, ``loop`` and
    ``run`` call.

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

    # -------------------------------------------------------------- pushdown

    #: ``run.pushdown: auto`` computes tokens in this warehouse wherever it can (the benchmark's
    #: verdict for the dialect, README "Pushdown"); False: auto keeps the client loop.
    pushdown_by_default: ClassVar[bool] = False

    def pushdown_unavailable(self, conn: Connection, target: WriteTarget, form: HmacSqlForm) -> str | None:
        """Why this run cannot compute ``form``'s tokens in the warehouse (a phrase), or None."""
        return f"the {self.platform} dialect has no SQL form of tokens"

    def pushdown_session(self, conn: Connection, form: HmacSqlForm) -> ContextManager[None]:
        """Make ``form``'s key material usable by ``token_sql`` on ``conn`` for the block, through
        a channel that is not statement text (Postgres: COPY into a temporary table)."""
        return contextlib.nullcontext()

    def token_sql(self, form: HmacSqlForm, value: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        """SQL computing the token of ``value`` (not NULL) byte for byte as the tokenizer does."""
        raise NotImplementedError(f"{type(self).__name__} cannot compute tokens in SQL")

    def read_only(self, conn: Connection) -> bool:
        """Whether ``conn`` can write nothing, not even session objects (a standby)."""
        return False

    def pushdown_key_hint(self) -> str:
        """Where the warehouse's copy of the key comes from, for an error when its tokens differ."""
        return "the key handed to the session"

    def update_statement(self, target: WriteTarget, sets: dict[str, sa.ColumnElement[Any]],
                         where: sa.ColumnElement[bool]) -> sa.Executable | str:
        """``UPDATE <target> SET <column> = <expression>, ... WHERE <where>`` (SQL text where the
        dialect renders it itself)."""
        return sa.update(target.table).values(sets).where(where)

    def execute_pushdown(self, conn: Connection, stmt: sa.Executable | str) -> int | None:
        """Run the pushdown UPDATE; the rows the warehouse says it changed (None: it does not say)."""
        return self.rows_updated(conn.exec_driver_sql(stmt) if isinstance(stmt, str) else conn.execute(stmt))

    def rows_updated(self, result: sa.CursorResult[Any]) -> int | None:
        """The rows a write's result says it updated (default: the driver's row count), or None."""
        return result.rowcount if result.rowcount is not None and result.rowcount >= 0 else None

    # ----------------------------------------------------------------- purge

    def plaintext_remains(self, target: WriteTarget) -> str:
        """What keeps the old values after a run that changed rows, and for how long."""
        return "the warehouse may keep old versions of the changed rows"

    def purge(self, ref: TableRef) -> str:
        """Remove the old values the warehouse keeps (``run.purge``), after the run committed;
        what remains afterwards. Raises a driver error (the caller reports it) if it cannot."""
        raise NotImplementedError(f"{type(self).__name__} cannot purge")

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
    def connect(self, ref: TableRef) -> Iterator[Connection]:
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

    # ------------------------------------------------------------------- run

    def run(self, ref: TableRef, columns: Sequence[str], *, dry_run: bool = False,
            run_id: str | None = None) -> TokenizeResult:
        """Tokenize ``columns`` of ``ref``; with ``dry_run``, count what would change and write nothing.

        Returns a SUCCESS result. Raises a TokenizeError on any failure; in
        single-transaction mode nothing is left changed.
        """
        return execute_run(self, ref, columns, dry_run=dry_run, run_id=run_id)
