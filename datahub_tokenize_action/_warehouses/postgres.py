"""Postgres: advisory lock, ``!~`` guard, COPY into a temp staging table + key-range chunks of ``UPDATE ... FROM``."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import logging
import uuid
import warnings
from typing import Any, Callable, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection

from .. import _stderr_gate
from .._exceptions import (
    ConfigError,
    DatabaseMismatchError,
    InsufficientPrivilegeError,
    LockTimeoutError,
    TokenRewrittenError,
    UnsupportedColumnTypeError,
    UnsupportedTableError,
)
from .._routing import TableRef
from .._tokenizers import HmacSqlForm
from .base import WarehouseTokenizer
from .model import Batch, BatchWriter, TableDescription, WriteTarget
from .urls import mask_url

__all__ = ["PostgresTokenizer", "copy_column", "copy_text"]

logger = logging.getLogger(__name__)

_COPY_SPECIALS = ("\\", "\t", "\n", "\r")


def quote_ident(name: str) -> str:
    """``name`` as a quoted Postgres identifier, for SQL sent as it is (COPY, DDL without
    parameters). Not SQLAlchemy's quoting: for psycopg2's paramstyle it doubles ``%``,
    and nothing undoes that in a statement sent without parameters."""
    return '"' + name.replace('"', '""') + '"'


def quote_table(ref: TableRef) -> str:
    """``"schema"."table"`` for ``ref``, quoted as ``quote_ident`` does (also a ``regclass`` literal)."""
    return f"{quote_ident(ref.schema)}.{quote_ident(ref.table)}"


def copy_column(values: Sequence[Any]) -> list[str]:
    """One column of values as COPY text fields: NULL as ``\\N``; backslash, tab,
    newline and carriage return escaped. Works on the whole column at once: Postgres
    text cannot hold NUL, so NUL can join and split the values."""
    if not values:
        return []  # (joining nothing gives one empty field)
    has_null = None in values
    if has_null:
        joined = "\x00".join(["" if v is None else v if isinstance(v, str) else str(v) for v in values])
    else:  # the common case, without a Python-level pass over the values
        try:
            joined = "\x00".join(values)
        except TypeError:  # not all strings (keys)
            joined = "\x00".join(map(str, values))
    if any(c in joined for c in _COPY_SPECIALS):
        joined = joined.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    fields = joined.split("\x00")
    if has_null:
        fields = ["\\N" if v is None else f for v, f in zip(values, fields)]
    return fields


def copy_text(batch: Batch) -> str:
    """The batch as COPY text: one line per row, columns (keys, then plain/token pairs)."""
    columns = [copy_column(k) for k in batch.keys]
    for plain, token in zip(batch.plains, batch.tokens):
        columns += [copy_column(plain), copy_column(token)]
    return "".join([line + "\n" for line in map("\t".join, zip(*columns))])


class PostgresTokenizer(WarehouseTokenizer):
    """The Postgres dialect of the loop.

    The whole run is one transaction unless ``commit_every_batch``; a session
    advisory lock keyed by the table keeps two runs from interleaving.
    """

    platform = "postgres"
    supports_transactions = True
    supports_advisory_locks = True
    supports_temp_tables = True
    supports_pipelined_reads = True

    #: Staged rows applied per ``UPDATE ... FROM`` in one-transaction mode. Each apply
    #: joins only the key range its rows came from (an index range scan, not the whole
    #: table), so applying while the loop reads and tokenizes the next rows costs no more
    #: than one join at the end, and the two overlap.
    APPLY_EVERY_ROWS = 100_000

    def build_url(self, ref: TableRef) -> URL:
        if self.connection.url is None:
            raise ConfigError("the postgres connection needs `url` (postgresql+psycopg2://user:pass@host:port)")
        try:
            url = sa.make_url(self.connection.url.get_secret_value())
        except sa.exc.ArgumentError:
            raise ConfigError(
                "the postgres connection `url` is not a SQLAlchemy URL; expected "
                "postgresql+psycopg2://user:password@host:port"
            ) from None
        if url.drivername not in ("postgresql", "postgresql+psycopg2"):
            # The bulk path is psycopg2's COPY, and key text relies on the ISO DateStyle it sets.
            raise ConfigError(
                f"the postgres connection `url` ({mask_url(url)}) must start with postgresql+psycopg2:// "
                "(the bulk path uses psycopg2's COPY; psycopg2-binary is installed with this package)"
            )
        if self.connection.password is not None and self.connection.password.get_secret_value():
            url = url.set(password=self.connection.password.get_secret_value())
        if url.database and url.database != ref.database:
            raise DatabaseMismatchError(
                f"dataset {ref.dataset_urn}: its database is {ref.database!r} but the postgres connection "
                f"URL names {url.database!r}; remove the database from the URL (the URN's is used) or "
                "add a connection for that database under its own platform_instance"
            )
        return url.set(database=ref.database)

    def engine_options(self) -> dict[str, Any]:
        # The run's connection waits, in its transaction, while the other one reads a page;
        # on a large table with few rows left to do that can take longer than a role's
        # idle_in_transaction_session_timeout, which would end the run's session mid-run.
        return {"connect_args": {"application_name": "datahub-tokenize", "connect_timeout": 10,
                                 "options": "-c idle_in_transaction_session_timeout=0"}}

    #: SQLSTATE classes that a retry meets again: feature not supported, data exception,
    #: integrity constraint, syntax error or access rule (grants), WITH CHECK OPTION, SQL
    #: routine, PL/pgSQL RAISE.
    PERMANENT_SQLSTATE_CLASSES = frozenset({"0A", "22", "23", "42", "44", "2F", "P0"})

    def is_permanent(self, driver_error: BaseException) -> bool:
        code = getattr(driver_error, "pgcode", None) or ""
        return code[:2] in self.PERMANENT_SQLSTATE_CLASSES or code == "25006"  # read_only_sql_transaction

    def error_hint(self, driver_error: BaseException) -> str:
        if getattr(driver_error, "pgcode", None) == "25006":
            return ("the connection is read-only: a standby, or default_transaction_read_only set for the "
                    "role or database; point the connection at the primary with a role that may write "
                    "(a dry run works on a standby)")
        # query_canceled is also a cancel by an administrator; only the server's message tells
        # them apart (in English: with another lc_messages there is no hint, and it is retried).
        if getattr(driver_error, "pgcode", None) == "57014" and "statement timeout" in str(driver_error):
            # Transient: the statement may have waited for other sessions' row locks. On a large
            # table it recurs: each of a run's statements reads the whole table once or applies
            # a chunk of rows.
            return ("the connection's statement_timeout cancelled it: if the table is large rather than "
                    "busy, raise it for the role the run connects as (ALTER ROLE <role> SET "
                    "statement_timeout = 0), or where else it is set (database, URL options)")
        return ""

    #: Postgres text types, by the name of the (base) type in ``pg_type``.
    _TEXT_TYPES = frozenset({"text", "varchar", "bpchar", "citext", "name"})

    def describe(self, conn: Connection, ref: TableRef) -> TableDescription:
        """SQLAlchemy's reflection, corrected from the catalog where it misreads a type:
        ``name`` (text cut to 63 bytes without an error), ``"char"`` (one byte), a domain
        over a text type, ``char`` without a length; and each type by its Postgres name.

        Raises:
            InsufficientPrivilegeError: no USAGE on the schema.
            TableNotFoundError: no such table.
            UnsupportedTableError: a view, a materialized view, a table with UPDATE rules or
                inheritance children.
        """
        usage = conn.execute(sa.text(
            "SELECT has_schema_privilege(n.oid, 'USAGE'), current_user FROM pg_namespace n WHERE n.nspname = :s"
        ), {"s": ref.schema}).first()
        if usage is not None and not usage[0]:  # (a missing schema is the table-not-found error below)
            raise InsufficientPrivilegeError(
                f"dataset {ref.dataset_urn}: user {usage[1]!r} lacks USAGE on schema {ref.schema} of database "
                f"{ref.database}, which a run needs (a dry run checks it too); have an owner or a superuser "
                f"run: GRANT USAGE ON SCHEMA {quote_ident(ref.schema)} TO {quote_ident(usage[1])}"
            )
        with warnings.catch_warnings():
            # SQLAlchemy warns for types it cannot map (``bpchar`` for char without a length);
            # they are read from the catalog below, so the warning would only mislead.
            warnings.filterwarnings("ignore", "Did not recognize type", sa.exc.SAWarning)
            desc = super().describe(conn, ref)
        self._check_relation(conn, ref)
        rows = conn.execute(sa.text(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), coalesce(b.typname, t.typname), "
            "CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END "
            "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
            "LEFT JOIN pg_type b ON t.typtype = 'd' AND b.oid = t.typbasetype "
            "WHERE a.attrelid = CAST(:t AS regclass) AND a.attnum > 0 AND NOT a.attisdropped"
        ), {"t": quote_table(ref)}).all()
        for name, type_name, base, typmod in rows:
            info = desc.columns.get(name)
            if info is None:
                continue
            is_text = base in self._TEXT_TYPES
            if base == "name":
                # ``name`` silently truncates to 63 bytes: a token cut short would be kept as
                # a token (or, in the poc format, tokenized again) and its value lost.
                length: int | None = 63
            elif base in ("varchar", "bpchar") and typmod > 4:
                length = typmod - 4  # the declared length is stored plus the 4-byte header
            else:
                length = None
            desc.columns[name] = dataclasses.replace(
                info, type_name=type_name, is_text=is_text, max_length=length, fixed_width=base == "bpchar",
            )
        return desc

    def check_table(self, conn: Connection, target: WriteTarget) -> None:
        """Refuse generated columns; users without the grants a run needs (in a dry run too,
        so that a dry run that succeeds says the run can write); row-level security hiding
        rows from this user. Views, rules and inheritance parents are refused by ``describe``.

        Raises:
            UnsupportedTableError: with what to do instead.
            UnsupportedColumnTypeError: a generated column.
            InsufficientPrivilegeError: with the GRANT statements to run.
        """
        ref = target.ref
        hidden, generated = conn.execute(sa.text(
            "SELECT row_security_active(c.oid), "
            "(SELECT string_agg(a.attname, ', ' ORDER BY a.attnum) FROM pg_attribute a "
            " WHERE a.attrelid = c.oid AND a.attname = ANY(CAST(:cols AS text[])) AND a.attgenerated <> '') "
            "FROM pg_class c WHERE c.oid = CAST(:t AS regclass)"
        ), {"t": quote_table(ref), "cols": list(target.columns)}).one()
        if generated:
            raise UnsupportedColumnTypeError(
                f"dataset {ref.dataset_urn}: column(s) {generated} of {ref.name} are generated (GENERATED "
                "ALWAYS AS ... STORED) and cannot be written; tokenize the columns they are computed "
                "from, and they follow"
            )
        user = self._check_privileges(conn, target)
        if hidden:
            raise UnsupportedTableError(
                f"dataset {ref.dataset_urn}: row-level security on {ref.name} hides rows from user "
                f"{user!r}, so a run would leave their plaintext in place; connect as the table's owner "
                "or a role with BYPASSRLS (and without FORCE ROW LEVEL SECURITY on the table)"
            )

    def _check_relation(self, conn: Connection, ref: TableRef) -> None:
        """Refuse views (a run would change only the rows they show, through whatever they do
        on update), materialized views, tables whose rules rewrite an UPDATE, and parents of
        inheritance children (their rows are read and updated through the parent, and their
        keys may repeat the parent's).

        Raises:
            UnsupportedTableError: with what to do instead.
        """
        relkind, rules, children = conn.execute(sa.text(
            "SELECT c.relkind, (SELECT string_agg(r.rulename, ', ' ORDER BY r.rulename) FROM pg_rewrite r "
            " WHERE r.ev_class = c.oid AND r.ev_type = '2' AND r.ev_enabled IN ('O', 'A')), "
            "(SELECT string_agg(i.inhrelid::regclass::text, ', ' ORDER BY i.inhrelid::regclass::text) "
            " FROM pg_inherits i WHERE i.inhparent = c.oid) "
            "FROM pg_class c WHERE c.oid = CAST(:t AS regclass)"
        ), {"t": quote_table(ref)}).one()
        if relkind == "m":
            raise UnsupportedTableError(
                f"dataset {ref.dataset_urn}: {ref.name} is a materialized view, which cannot be updated; "
                "tokenize the tables it is built from, then refresh it"
            )
        if relkind == "v":
            raise UnsupportedTableError(
                f"dataset {ref.dataset_urn}: {ref.name} is a view; a run through it would change only the "
                "rows it shows, through whatever it does on UPDATE. Tokenize the tables it reads from "
                "(the view then shows their tokens)"
            )
        if rules:
            raise UnsupportedTableError(
                f"dataset {ref.dataset_urn}: {ref.name} has rules on UPDATE ({rules}), which replace the "
                "run's UPDATE (DO INSTEAD) or add statements to it (DO ALSO: an audit copy would keep "
                "the plaintext); disable them for the run (ALTER TABLE ... DISABLE RULE name) and run again"
            )
        if relkind == "r" and children:
            raise UnsupportedTableError(
                f"dataset {ref.dataset_urn}: {ref.name} has inheritance children ({children}); a run "
                "reads and updates their rows through it, and their keys may repeat its own, so rows "
                "would be skipped. Tokenize each child as its own dataset and the parent once it has "
                "no children, or move to declarative partitioning (partitioned tables are supported)"
            )

    def _check_privileges(self, conn: Connection, target: WriteTarget) -> str:
        """SELECT on the key and the columns, UPDATE on the columns (table or column grants),
        TEMPORARY on the database: without them the run would fail at its first write,
        after the scan, and a dry run would have said it could run. Returns the user."""
        ref = target.ref
        rows = conn.execute(sa.text(
            "SELECT c.name, has_column_privilege(CAST(:t AS regclass), c.name, 'SELECT'), "
            "has_column_privilege(CAST(:t AS regclass), c.name, 'UPDATE') "
            "FROM unnest(CAST(:cols AS text[])) WITH ORDINALITY AS c(name, n) ORDER BY c.n"
        ), {"t": quote_table(ref), "cols": list(dict.fromkeys((*target.key, *target.columns)))}).all()
        user, temp = conn.execute(sa.text(
            "SELECT current_user, has_database_privilege(current_database(), 'TEMPORARY')"
        )).one()
        no_select = [name for name, can_select, _ in rows if not can_select]
        no_update = [name for name, _, can_update in rows if not can_update and name in target.columns]
        missing, grants = [], []
        role, table = quote_ident(user), quote_table(ref)
        for privilege, names in (("SELECT", no_select), ("UPDATE", no_update)):
            if names:
                missing.append(f"{privilege} on {', '.join(names)} of {ref.name}")
                grants.append(f"GRANT {privilege} ({', '.join(map(quote_ident, names))}) ON {table} TO {role}")
        if not temp:
            missing.append(f"TEMPORARY on database {ref.database} (for the run's staging table)")
            grants.append(f"GRANT TEMPORARY ON DATABASE {quote_ident(ref.database)} TO {role}")
        if missing:
            raise InsufficientPrivilegeError(
                f"dataset {ref.dataset_urn}: user {user!r} lacks {'; '.join(missing)}, which a run needs "
                f"(a dry run checks them too); have an owner or a superuser run: {'; '.join(grants)}"
            )
        return user

    def fence(self, subquery: sa.Select[Any]) -> sa.Select[Any]:
        # Postgres does not pull up a subquery whose select list calls a volatile function
        # (is_simple_subquery: "we might introduce multiple evaluations"); pulled up, each
        # CASE, regex included, would be copied into every aggregate that reads it. Unlike
        # the usual OFFSET 0 fence this leaves the scan free to run in parallel workers
        # (clock_timestamp is parallel safe): 1M rows already tokenized took 1.1 s instead
        # of 1.9 s on 2 cores, plaintext 0.26 s instead of 0.39 s.
        return subquery.add_columns(sa.func.clock_timestamp().label("fence"))

    def key_of(self, target: WriteTarget, column: str) -> sa.ColumnElement[Any]:
        # Postgres's own text form reads back as exactly the same value, in COPY and as an
        # untyped literal; the driver's Python values do not always (numeric and timestamp
        # infinity become NaN or a finite date, and those rows would silently be missed).
        return sa.cast(target.table.c[column], sa.Text)

    def value_of(self, target: WriteTarget, column: str) -> sa.ColumnElement[Any]:
        # As text, whatever the type: char(n) without its padding (see the base class), and
        # citext without its case-insensitive operators (its ~ would take an upper-cased
        # token-like plaintext for a token).
        return sa.cast(target.table.c[column], sa.Text)

    def regex_match(self, column: sa.ColumnElement[Any], regex: str) -> sa.ColumnElement[bool]:
        # In the "C" collation: a nondeterministic (case-insensitive ICU) one refuses regexes.
        return column.collate("C").regexp_match(regex)

    def sha256_base64url(self, text: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        # sha256(bytea) is built in since Postgres 11; base64 of 32 bytes is one 44-character
        # line (encode() breaks lines only after 76).
        digest = sa.func.sha256(sa.func.convert_to(text, sa.literal("UTF8", sa.Text)))
        return sa.func.translate(sa.func.encode(digest, sa.literal("base64", sa.Text)), "+/", "-_")

    # ----------------------------------------------------------------- purge

    def plaintext_remains(self, target: WriteTarget) -> str:
        return ("the old row versions stay in the table's files until VACUUM (autovacuum, or run.purge) "
                "removes them; WAL, replicas, WAL archives and backups keep them for their own retention")

    def purge(self, ref: TableRef) -> str:
        table = quote_table(ref)
        with self.engine(ref).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"VACUUM {table}")
            # VACUUM updates the table's statistics: what it found dead and could not remove.
            if int(conn.exec_driver_sql("SHOW server_version_num").scalar_one()) >= 150000:
                conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")  # (statistics are flushed lazily)
            left = conn.execute(sa.text("SELECT n_dead_tup FROM pg_stat_all_tables WHERE relid = CAST(:t AS regclass)"),
                                {"t": table}).scalar()
        kept = (f"{left:,} old row version(s) could not be removed yet (a transaction older than the run "
                "still sees them; autovacuum removes them once it ends), and " if left else "")
        return (f"VACUUM removed the old row versions from the table (their bytes may remain in free space "
                f"of its files until overwritten); {kept}WAL, replicas, WAL archives and backups keep the old "
                "values for their own retention")

    # -------------------------------------------------------------- pushdown

    #: The session's copy of the key material (ipad, opad), filled by COPY and gone at COMMIT.
    _KEY_TABLE = sa.table("datahub_tokenize_key", sa.column("ipad"), sa.column("opad"), schema="pg_temp")
    #: The token of ``v`` from the key material and the token prefix, in PL/pgSQL so that the
    #: token's body is computed once for its check value. Its text holds no key material.
    _TOKEN_FUNCTION = """
        CREATE OR REPLACE FUNCTION pg_temp.datahub_tokenize_v2(v text, ipad bytea, opad bytea, prefix text)
        RETURNS text LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
        DECLARE body text;
        BEGIN
            body := prefix || translate(encode(substr(sha256(opad || sha256(ipad || convert_to(v, 'UTF8'))),
                                                      1, {digest_bytes}), 'base64'), '+/', '-_');
            RETURN body || translate(left(encode(substr(sha256(convert_to({salt} || body, 'UTF8')), 1, {check_bytes}),
                                              'base64'), {check_chars}), '+/', '-_');
        END $fn$"""

    def pushdown_unavailable(self, conn: Connection, target: WriteTarget, form: HmacSqlForm) -> str | None:
        encoding, version = conn.execute(sa.text(
            "SELECT current_setting('server_encoding'), current_setting('server_version_num')::int")).one()
        if version < 110000:
            return "the server is older than Postgres 11 (no built-in sha256)"
        if encoding == "SQL_ASCII":
            return "the database's encoding is SQL_ASCII (its text has no defined UTF-8 form)"
        triggers = conn.execute(sa.text(
            "SELECT string_agg(tgname, ', ' ORDER BY tgname) FROM pg_trigger "
            "WHERE tgrelid = CAST(:t AS regclass) AND NOT tgisinternal AND tgenabled <> 'D'"),
            {"t": quote_table(target.ref)}).scalar_one()
        if triggers:
            return (f"{target.ref.name} has triggers ({triggers}) whose effect on the tokens only the "
                    "client loop's write check sees")
        return None

    def read_only(self, conn: Connection) -> bool:
        return conn.exec_driver_sql("SHOW transaction_read_only").scalar_one() == "on"

    @contextlib.contextmanager
    def pushdown_session(self, conn: Connection, form: HmacSqlForm) -> Iterator[None]:
        # COPY data is not statement text: log_statement and a failing statement's log line show
        # only "COPY ... FROM STDIN". Both objects live in the session's temporary schema; the
        # table goes at the end of the transaction, the function with the session.
        cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cur.execute("CREATE TEMPORARY TABLE IF NOT EXISTS datahub_tokenize_key (ipad bytea NOT NULL, "
                        "opad bytea NOT NULL) ON COMMIT DROP")
            cur.execute("TRUNCATE pg_temp.datahub_tokenize_key")
            with _stderr_gate.dropped():
                cur.copy_expert("COPY pg_temp.datahub_tokenize_key (ipad, opad) FROM STDIN",
                                io.StringIO(f"\\\\x{form.ipad.hex()}\t\\\\x{form.opad.hex()}\n"))
            salt = form.check_salt.replace("'", "''")
            cur.execute(self._TOKEN_FUNCTION.format(digest_bytes=form.digest_bytes, check_bytes=form.check_bytes,
                                                    check_chars=form.check_chars, salt=f"'{salt}'"))
        finally:
            cur.close()
        yield

    def token_sql(self, form: HmacSqlForm, value: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        key = self._KEY_TABLE
        return getattr(sa.func.pg_temp, "datahub_tokenize_v2")(
            value, sa.select(key.c.ipad).scalar_subquery(), sa.select(key.c.opad).scalar_subquery(),
            sa.literal(form.prefix, sa.Text), type_=sa.Text)

    def text_equals(self, a: sa.ColumnElement[Any], b: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        # Byte for byte, whatever the column's collation (a case-insensitive one would take a
        # check value in the wrong letter case; two implicit collations would not compare).
        return a.collate("C") == b.collate("C")

    def transaction_id(self, conn: Connection) -> Any | None:
        # Postgres 10 and later (the pg_*_xact_id() names are 13+). NULL when the transaction
        # has written nothing: then there is nothing to find out.
        return conn.exec_driver_sql("SELECT txid_current_if_assigned()").scalar_one()

    def transaction_status(self, conn: Connection, xid: Any) -> str | None:
        # NULL for a transaction too old for the commit log to say (after wraparound).
        return conn.execute(sa.text("SELECT txid_status(:xid)"), {"xid": int(xid)}).scalar_one()

    def keyset_after(self, target: WriteTarget, last_key: tuple[Any, ...]) -> sa.ColumnElement[bool]:
        # Row-value comparison lets Postgres use the key's index for composite keys too.
        cols = [target.table.c[k] for k in target.key]
        return sa.tuple_(*cols) > sa.tuple_(*(sa.literal(v) for v in last_key))

    @contextlib.contextmanager
    def lock(self, conn: Connection, target: WriteTarget) -> Iterator[None]:
        digest = hashlib.sha256(f"datahub-tokenize:{target.ref.name}".encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        timeout_ms = int(self.options.lock_timeout_s * 1000)
        try:
            # Only lock_timeout bounds the wait: a role's shorter statement_timeout would cut it
            # and report a timeout instead of the run that holds the table. Both are put back
            # as they were (the role's or the database's) once the lock is held.
            lock_timeout, statement_timeout = conn.execute(sa.text(
                "SELECT current_setting('lock_timeout'), current_setting('statement_timeout'), "
                "set_config('lock_timeout', :t, false), set_config('statement_timeout', '0', false)"
            ), {"t": f"{timeout_ms}ms"}).one()[:2]
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        except sa.exc.OperationalError as e:
            if getattr(e.orig, "pgcode", None) == "55P03":  # lock_not_available
                conn.rollback()
                raise LockTimeoutError(
                    f"dataset {target.ref.dataset_urn}: another tokenization run holds {target.ref.name} "
                    f"and did not finish within {self.options.lock_timeout_s:g}s; try again later or "
                    "raise `run.lock_timeout_s`"
                ) from None
            raise
        conn.execute(sa.text("SELECT set_config('lock_timeout', :l, false), set_config('statement_timeout', :s, false)"),
                     {"l": lock_timeout, "s": statement_timeout})
        try:
            yield
        except BaseException:
            conn.rollback()  # leave the failed transaction first, so the unlock below can run
            raise
        finally:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})

    @contextlib.contextmanager
    def batch_writer(self, conn: Connection, target: WriteTarget) -> Iterator[BatchWriter]:
        """COPY each batch into a temp staging table; apply the stage with one ``UPDATE ... FROM``
        over the staged key range after the first batch, then every ``APPLY_EVERY_ROWS`` staged
        rows and at the end (each batch with ``commit_every_batch``). Fewer, larger joins are
        cheaper than one per batch; the first comes early because until it runs the writer has
        nothing to do but wait for the loop to read and tokenize (0.25 s of 6.8 s at 1M rows)."""
        # A name no table of the user's can have: the UPDATE names both tables unqualified.
        stage_name = f"_tokenize_stage_{uuid.uuid4().hex[:12]}"
        stage_cols = [f"k{i}" for i in range(len(target.key))]
        select_list = [f"{quote_ident(k)} AS k{i}" for i, k in enumerate(target.key)]
        for i, c in enumerate(target.columns):
            stage_cols += [f"p{i}", f"t{i}"]
            # p keeps the column's type, so char(n) compares as char(n); t is text.
            select_list += [f"{quote_ident(c)} AS p{i}", f"{quote_ident(c)}::text AS t{i}"]
        source = quote_table(target.ref)
        dbapi_conn = conn.connection.dbapi_connection

        def execute(sql: str) -> None:
            # On the driver's cursor, without parameters, so the statement is sent as written:
            # names may hold ``%`` or ``:``, which the layers above would take for parameters.
            with dbapi_conn.cursor() as cur:  # type: ignore[union-attr]
                cur.execute(sql)

        execute(f"CREATE TEMP TABLE {stage_name} AS SELECT {', '.join(select_list)} FROM {source} WITH NO DATA")
        key_stage_cols = stage_cols[:len(target.key)]
        execute(f"ALTER TABLE {stage_name} " + ", ".join(f"ALTER COLUMN {k} SET STATISTICS 10" for k in key_stage_cols))
        analyze_sql = f"ANALYZE {stage_name} ({', '.join(key_stage_cols)})"
        stage = sa.table(stage_name, *(sa.column(c) for c in stage_cols))
        # Only BEFORE UPDATE row triggers can change what an UPDATE stores (rewrite a token) or
        # skip a row's update; without one, a staged row an apply did not update, or whose
        # stored value is not the token written, was changed by another writer meanwhile.
        before_triggers = conn.execute(sa.text(
            "SELECT string_agg(format('%I on %s', t.tgname, t.tgrelid::regclass), ', ' "
            " ORDER BY t.tgrelid::regclass::text, t.tgname) "
            "FROM pg_trigger t WHERE (t.tgrelid = CAST(:t AS regclass) "
            " OR t.tgrelid IN (SELECT relid FROM pg_partition_tree(CAST(:t AS regclass)))) "
            "AND NOT t.tgisinternal AND t.tgenabled IN ('O', 'A') "
            "AND t.tgtype & 19 = 19"  # ROW (1) | BEFORE (2) | UPDATE (16)
        ), {"t": source}).scalar_one()
        # With such a trigger a row is updated only if every column it stages still holds the
        # plaintext read (whole-row compare-and-set), so a stored value that is not the token
        # written can only be the trigger's doing. Without one, each column is compared on its
        # own, and a column another writer changed is left while the others are tokenized.
        whole_row = bool(before_triggers)
        update = self._checked(target, stage, whole_row=whole_row)
        skipped_query = self._skipped(target, stage, whole_row=whole_row)
        copy_sql = f"COPY {stage_name} ({', '.join(stage_cols)}) FROM STDIN"
        apply_every = 1 if self.options.commit_every_batch else self.APPLY_EVERY_ROWS
        applied_once = False
        staged = 0
        changed_meanwhile = 0  # staged rows another writer changed after they were read
        # The key range of the staged rows: batches arrive in key order, so the first
        # key of the first batch and the last key of the last one bound every staged row.
        low: tuple[Any, ...] = ()
        high: tuple[Any, ...] = ()

        what_to_do = (
            ("This batch was rolled back (batches committed before it were checked the same way); "
             if self.options.commit_every_batch else "Nothing was changed (rolled back); ")
            + "disable the trigger for the run (ALTER TABLE ... DISABLE TRIGGER name) and run again"
        )

        def apply() -> None:
            nonlocal staged, applied_once, changed_meanwhile
            conn.execute(sa.text("SELECT set_config('work_mem', :m, true)"), {"m": self.options.postgres_work_mem})
            # The planner needs the stage's row count: guessed from its size, wide values
            # (1 kB of text) made 20,000 staged rows look like 340,000, and a join that
            # should look up each row by key read its whole key range (40x slower when the
            # staged rows are sparse in it). Only the key columns, with a small sample: about
            # 12 ms per 100,000 rows, where a full ANALYZE cost 1-1.7 s per million rows on
            # the writer, the run's critical path.
            execute(analyze_sql)
            bounds = {**_bounds("lo", low), **_bounds("hi", high)}
            updated, rewritten = conn.execute(update, bounds).one()
            # Fewer rows than staged: another writer changed some since they were read (left
            # as it wrote them), or a trigger skipped them; only then is it worth a look.
            skipped = 0
            if updated < staged and before_triggers:
                skipped = conn.execute(skipped_query, bounds).scalar_one()
            changed_meanwhile += staged - updated - skipped
            if skipped:
                raise TokenRewrittenError(
                    f"dataset {target.ref.dataset_urn}: {skipped:,} row(s) of {target.ref.name} were not "
                    f"updated though they still hold the plaintext read from {', '.join(target.columns)}: a "
                    f"BEFORE UPDATE trigger returning NULL skips them ({before_triggers}), and the run "
                    "would report them as tokenized (unless another writer deleted and inserted them "
                    "again meanwhile: then a retry passes). " + what_to_do
                )
            if rewritten and before_triggers:
                raise TokenRewrittenError(
                    f"dataset {target.ref.dataset_urn}: {rewritten:,} row(s) of {target.ref.name} did not "
                    f"keep the token written to {', '.join(target.columns)}: a trigger on the table "
                    f"({before_triggers}) rewrites the value (e.g. lower() on an email), which would leave "
                    "wrong tokens that the next run skips as done. " + what_to_do
                )
            # No trigger: rows where another writer changed some of the columns since they were
            # read; those columns were left as it wrote them, the others tokenized.
            changed_meanwhile += rewritten
            execute(f"TRUNCATE {stage_name}")
            staged = 0
            applied_once = True

        def write(batch: Batch) -> Callable[[], int | None]:
            text = copy_text(batch)  # CPU work, in the loop's thread
            first = tuple(k[0] for k in batch.keys)
            last = tuple(k[-1] for k in batch.keys)
            rows = len(batch)  # the batch itself is not kept while it waits for the writer

            def send() -> None:
                nonlocal staged, low, high
                with dbapi_conn.cursor() as cur:  # type: ignore[union-attr]
                    # One read of the whole buffer: psycopg2 takes the GIL for every read,
                    # and in 8 kB reads this thread would queue behind the tokenizing
                    # thread's 5 ms GIL slices hundreds of times per batch.
                    # A connection lost meanwhile raises here, and psycopg2 also prints it,
                    # with the row being sent (plaintext), to stderr: never let it through.
                    with _stderr_gate.dropped():
                        cur.copy_expert(copy_sql, io.StringIO(text), size=len(text) + 1)
                if not staged:
                    low = first
                staged += rows
                high = last
                if staged >= apply_every or not applied_once:
                    apply()

            return send

        try:
            yield write
            if staged:
                apply()
            if changed_meanwhile:
                logger.warning(
                    "%s: %d row(s) were changed by another writer after they were read, and were left as it "
                    "wrote them (counted as updated); run again to tokenize any plaintext it wrote",
                    target.ref.name, changed_meanwhile,
                )
        finally:
            # After a failed statement or commit Postgres (or SQLAlchemy) refuses this too; the
            # run's error matters, and closing the connection drops the table anyway.
            with contextlib.suppress(conn.dialect.loaded_dbapi.Error):
                execute(f"DROP TABLE IF EXISTS pg_temp.{stage_name}")

    @classmethod
    def _checked(cls, target: WriteTarget, stage: sa.TableClause, *, whole_row: bool = False) -> sa.Select[Any]:
        """The apply ``UPDATE`` in a CTE; the rows it updated, and of those the rows where a
        column it staged a token for does not hold that token (``RETURNING`` shows the row
        after BEFORE triggers). With ``whole_row`` every staged column of an updated row was
        written, so those rows are a trigger rewriting tokens; without, they are rows where
        another writer changed some column since it was read, which the compare-and-set left."""
        t = target.table
        # Exactly, as text in the "C" collation: citext or a case-insensitive collation would
        # find lower(token) equal to the token.
        rewritten = sa.or_(*(
            sa.and_(stage.c[f"t{i}"].is_not(None), _exact(t.c[c]).is_distinct_from(stage.c[f"t{i}"]))
            for i, c in enumerate(target.columns)
        ))
        applied = cls._update_from(target, stage, whole_row=whole_row).returning(rewritten.label("rewritten")).cte("applied")
        return sa.select(sa.func.count(), sa.func.count().filter(applied.c.rewritten)).select_from(applied)

    @staticmethod
    def _matching(target: WriteTarget, stage: sa.TableClause, *, whole_row: bool = False,
                  ) -> tuple[list[sa.ColumnElement[bool]], list[sa.ColumnElement[bool]]]:
        """Per column, "the row still holds the plaintext read, and it has a token"; and the
        join of the table to the stage on the key, bounded by the staged key range
        (parameters ``lo_i``/``hi_i``; the bound only narrows the scan: every staged row
        lies inside it), plus, with ``whole_row``, "every column with a token still holds
        its plaintext".

        The plaintext is compared exactly as stored, byte for byte (text in the "C"
        collation): citext, a case-insensitive collation or a domain over them would take a
        value another writer changed only in case (or accents) for the plaintext read, and
        store the token of a value the row no longer holds. ``char(n)`` compares without its
        padding, as its own ``=`` does (``::text`` drops trailing spaces on both sides)."""
        t = target.table
        still_plain = [sa.and_(stage.c[f"t{i}"].is_not(None), _exact(t.c[c]) == _exact(stage.c[f"p{i}"]))
                       for i, c in enumerate(target.columns)]
        key_cols = [t.c[k] for k in target.key]
        in_range = sa.tuple_(*key_cols).between(
            sa.tuple_(*(sa.bindparam(f"lo_{i}", type_=col.type) for i, col in enumerate(key_cols))),
            sa.tuple_(*(sa.bindparam(f"hi_{i}", type_=col.type) for i, col in enumerate(key_cols))),
        )
        join = [*(col == stage.c[f"k{i}"] for i, col in enumerate(key_cols)), in_range]
        if whole_row and len(target.columns) > 1:
            join += [sa.or_(stage.c[f"t{i}"].is_(None), plain) for i, plain in enumerate(still_plain)]
        return still_plain, join

    @classmethod
    def _update_from(cls, target: WriteTarget, stage: sa.TableClause, *, whole_row: bool = False) -> sa.Update:
        """``UPDATE t SET c = CASE <still the plaintext read> THEN token ELSE c END FROM stage``,
        joined on the key within the staged key range."""
        t = target.table
        still_plain, join = cls._matching(target, stage, whole_row=whole_row)
        values = {c: sa.case((plain, stage.c[f"t{i}"]), else_=t.c[c])
                  for i, (c, plain) in enumerate(zip(target.columns, still_plain))}
        return sa.update(t).values(values).where(*join, sa.or_(*still_plain))

    @classmethod
    def _skipped(cls, target: WriteTarget, stage: sa.TableClause, *, whole_row: bool = False) -> sa.Select[Any]:
        """After an apply: staged rows the apply would still update (they hold the plaintext
        they were read with). The apply updated every such row, unless something skipped it
        (a BEFORE UPDATE trigger returning NULL); rows another writer changed meanwhile no
        longer hold it."""
        still_plain, join = cls._matching(target, stage, whole_row=whole_row)
        return sa.select(sa.func.count()).select_from(target.table).where(*join, sa.or_(*still_plain))


def _exact(value: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """``value`` as text in the "C" collation, whose ``=`` compares bytes whatever the
    column's type or collation."""
    return sa.cast(value, sa.Text).collate("C")


def _bounds(prefix: str, key: tuple[Any, ...]) -> dict[str, Any]:
    return {f"{prefix}_{i}": v for i, v in enumerate(key)}
