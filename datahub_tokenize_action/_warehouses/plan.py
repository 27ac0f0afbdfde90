"""Validation: a request checked against its table, then the scan that makes it a ``Plan``.

Everything here runs before anything is written, so a bad request changes nothing:

1. ``validate``: the table, the columns (text), the key (from the config, the primary key,
   or a unique NOT NULL key), and the dialect's own checks;
2. ``check_key``: a key the warehouse does not enforce is checked on the data;
3. ``check_guard``: the warehouse tells tokens from plaintext as Python does;
4. ``scan`` (under the run's lock): one aggregate query (rows, NULLs, empty strings, tokens,
   the longest plaintext), the column widths against the longest token, and a report of
   tokens this configuration did not make.
"""

from __future__ import annotations

import collections
import logging
from typing import TYPE_CHECKING, Any, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .._exceptions import (
    ColumnNotFoundError,
    InvalidTargetError,
    NoColumnsError,
    NoKeyError,
    TokenizerContractError,
    TokenTooLongError,
    UnsupportedColumnTypeError,
    first_line,
)
from .._routing import TableRef
from .._tokenizers import TokenOrigin, Tokenizer
from .loop import fetch
from .model import Plan, TableDescription, WriteTarget
from .progress import Progress
from .tokenizer_calls import checked_tokens

if TYPE_CHECKING:
    from .base import WarehouseTokenizer

__all__ = ["GUARD_PROBE", "LOOKALIKE_PROBE", "check_guard", "check_key", "scan", "stats_query", "validate",
           "validate_request"]

logger = logging.getLogger(__name__)


def validate_request(wh: WarehouseTokenizer, conn: Connection, ref: TableRef, columns: Sequence[str],
                     progress: Progress) -> WriteTarget:
    """Steps 1-3: the request as a target, or an InvalidTargetError / TokenizerContractError."""
    progress.step("reading the table's columns and keys")
    target = validate(wh, conn, ref, columns)
    wh.check_table(conn, target)
    progress.step(f"checking that the key ({', '.join(target.key)}) identifies rows")
    check_key(wh, conn, target)
    check_guard(wh, conn, target, with_token=False)
    return target


def scan(wh: WarehouseTokenizer, conn: Connection, target: WriteTarget, *, dry_run: bool,
         progress: Progress) -> Plan:
    """Step 4, run under the lock: what the table holds now, as a Plan."""
    progress.step("scanning the table before writing (rows, NULLs, tokens, longest values)")
    stats = conn.execute(stats_query(wh, target)).one()
    check_widths(wh, target, stats)
    others = report_other_tokens(wh, conn, target, stats)
    if int(stats.rows_to_change) and not dry_run:
        check_guard(wh, conn, target, with_token=True)

    def per_column(prefix: str) -> dict[str, Any]:
        return {c: stats._mapping[f"{prefix}_{i}"] for i, c in enumerate(target.columns)}

    total = int(stats.total_rows)
    nulls, empty, tokens = (
        {c: int(n) for c, n in per_column(prefix).items()} for prefix in ("nulls", "empty", "tokens"))
    return Plan(
        target=target,
        rows_to_change=int(stats.rows_to_change),
        nulls=nulls,
        empty_strings=empty,
        tokens=tokens,
        tokens_not_configured=others,
        plaintext={c: total - nulls[c] - empty[c] - tokens[c] for c in target.columns},
        longest={c: None if n is None else int(n) for c, n in per_column("maxlen").items()},
    )


def validate(wh: WarehouseTokenizer, conn: Connection, ref: TableRef, columns: Sequence[str]) -> WriteTarget:
    """Check the request against the table; return what the loop writes to.

    Raises:
        NoColumnsError, TableNotFoundError, ColumnNotFoundError,
        UnsupportedColumnTypeError, NoKeyError (all InvalidTargetError).
    """
    if not columns:
        raise NoColumnsError(f"dataset {ref.dataset_urn}: no columns to tokenize were given")
    desc = wh.describe(conn, ref)
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
    key = choose_key(wh, ref, desc, columns)
    if desc.indexes is not None and not any(ix[:len(key)] == key for ix in desc.indexes):
        logger.warning(
            "dataset %s: no index of %s starts with its key (%s), so every batch reads the whole "
            "table to find the next rows and the run slows down as the table grows; add one "
            "(CREATE INDEX ON %s (%s)) before tokenizing a large table",
            ref.dataset_urn, ref.name, ", ".join(key), f"{ref.schema}.{ref.table}", ", ".join(key),
        )
    table = wh.table_clause(ref, list(dict.fromkeys([*key, *columns])))
    return WriteTarget(ref=ref, table=table, key=key, columns=tuple(columns), description=desc)

def choose_key(wh: WarehouseTokenizer, ref: TableRef, desc: TableDescription, columns: Sequence[str]) -> tuple[str, ...]:
    configured = wh.connection.key_columns.get(ref.name) or wh.connection.key_columns.get(
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

def check_guard(wh: WarehouseTokenizer, conn: Connection, target: WriteTarget, *, with_token: bool) -> None:
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
        token = checked_tokens(wh, target, "the guard probe (a fixed test value)", [GUARD_PROBE])[0]
    try:
        probe_matches, lookalike_matches, token_matches = conn.execute(guard_probe_query(wh, token)).one()
    except sa.exc.DBAPIError as e:
        if not wh.is_permanent(e.orig):
            raise  # a lost connection, a timeout: the run's error handling retries it
        raise TokenizerContractError(
            f"dataset {target.ref.dataset_urn}: the warehouse rejects tokenizer "
            f"{wh.tokenizer.type_name!r}'s token_regex {wh.tokenizer.token_regex!r}: "
            f"{first_line(e.orig)}; use only literals, bracket classes and + / * in it"
        ) from None
    if (not token_matches or bool(probe_matches) != wh.tokenizer.is_token(GUARD_PROBE)
            or bool(lookalike_matches) != wh.tokenizer.is_token(LOOKALIKE_PROBE)):
        raise TokenizerContractError(
            f"dataset {target.ref.dataset_urn}: the warehouse's regex dialect reads tokenizer "
            f"{wh.tokenizer.type_name!r}'s token_regex {wh.tokenizer.token_regex!r} unlike Python "
            f"({'a token is not recognised' if not token_matches else 'plaintext is taken for a token'}), "
            "so runs would tokenize tokens again or skip plaintext; use only literals, bracket "
            "classes and + / * in it"
        )

def guard_probe_query(wh: WarehouseTokenizer, token: str | None) -> sa.Select[Any]:
    """Whether the guard's token test holds for the probe, the look-alike, and ``token``
    (true if None)."""
    return sa.select(
        wh.is_token_clause(sa.literal(GUARD_PROBE, sa.Text)),
        wh.is_token_clause(sa.literal(LOOKALIKE_PROBE, sa.Text)),
        sa.true() if token is None else wh.is_token_clause(sa.literal(token, sa.Text)),
    )

def check_key(wh: WarehouseTokenizer, conn: Connection, target: WriteTarget) -> None:
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

def stats_query(wh: WarehouseTokenizer, target: WriteTarget) -> sa.Select[Any]:
    """One scan: rows, rows holding plaintext, and per column NULLs, empty strings,
    tokens and the longest plaintext in bytes. The regex runs once per value: each
    value is classified in a fenced subquery and only the class is aggregated."""
    t = target.table
    classes = []
    for i, c in enumerate(target.columns):
        col = wh.value_of(target, c)
        classes += [
            sa.case((col.is_(None), "n"), (col == "", "e"), (wh.is_token_clause(col), token_class(wh, col)),
                    else_="p")
            .label(f"class_{i}"),
            sa.func.octet_length(col).label(f"bytes_{i}"),
        ]
    per_row = wh.fence(sa.select(*classes).select_from(t)).subquery("v")
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

def token_class(wh: WarehouseTokenizer, col: sa.ColumnElement[Any]) -> sa.ColumnElement[str] | str:
    """For a value the guard takes for a token: "t" if this configuration made it (its
    ``configured_token_regex``), "o" if another format or key did."""
    tok = wh.tokenizer
    if len(tok.token_patterns) == 1 and tok.configured_token_regex == tok.token_regex:
        return "t"
    return sa.case((wh.regex_match(col, tok.configured_token_regex), "t"), else_="o")

#: Tokens read to tell what made the tokens a run did not expect (their formats and key ids).
OTHER_TOKENS_SAMPLE = 10_000

def report_other_tokens(wh: WarehouseTokenizer, conn: Connection, target: WriteTarget, stats: sa.Row[Any]) -> dict[str, int]:
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
        col = wh.value_of(target, c)
        stmt = (sa.select(col).select_from(target.table)
                .where(wh.is_token_clause(col), sa.not_(wh.regex_match(col, wh.tokenizer.configured_token_regex)))
                .limit(OTHER_TOKENS_SAMPLE))
        origins.update(wh.tokenizer.token_origin(v) for (v,) in fetch(conn, stmt))
    seen = sum(origins.values())
    logger.warning(
        "dataset %s: %s value(s) (%s) are tokens this configuration did not make; they are left as "
        "they are, never tokenized again. %s: %s",
        target.ref.dataset_urn, f"{sum(others.values()):,}",
        ", ".join(f"{c}: {n:,}" for c, n in others.items() if n),
        "Found" if seen == sum(others.values()) else f"In a sample of {seen:,}",
        "; ".join(f"{n:,} {origin_advice(o, wh.tokenizer)}" for o, n in origins.most_common()),
    )
    return others

def check_widths(wh: WarehouseTokenizer, target: WriteTarget, stats: sa.Row[Any]) -> None:
    for i, c in enumerate(target.columns):
        width = target.description.columns[c].max_length
        longest = stats._mapping[f"maxlen_{i}"]
        if width is None or longest is None:
            continue
        need = wh.tokenizer.max_token_length(int(longest))
        if need > width:
            raise TokenTooLongError(
                f"dataset {target.ref.dataset_urn}: column {c!r} is "
                f"{target.description.columns[c].type_name}, but tokens of its longest value "
                f"({longest} bytes) need up to {need} characters; widen the column to at least "
                f"{need} characters (or an unbounded text type) and run again"
            )

def origin_advice(origin: TokenOrigin | None, tokenizer: Tokenizer) -> str:
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
