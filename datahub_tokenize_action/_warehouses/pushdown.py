"""Pushdown: the plan executed as one UPDATE that computes each token in the warehouse.

Where the tokenizer has a SQL form (hmac v2) and the dialect can hand it the key without
statement text, ``UPDATE t SET c = CASE WHEN <c holds plaintext> THEN <token of c> ELSE c END
WHERE <some column holds plaintext>`` replaces the client loop: no row leaves the warehouse,
and the table changes in one statement (all or nothing). Validation, the lock, the scan, the
counts and the result are the loop's. Before anything is written, the warehouse's tokens of
fixed probe values must equal Python's, byte for byte, or the run stops.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .._exceptions import PushdownUnavailableError, TokenizerContractError
from .._tokenizers import HmacSqlForm
from .model import Counts, Plan, WriteTarget
from .progress import Progress

if TYPE_CHECKING:
    from .base import WarehouseTokenizer

__all__ = ["PROBES", "choose", "run_pushdown", "update_statement"]

logger = logging.getLogger(__name__)

#: Values whose warehouse tokens must equal Python's before a pushdown writes: ASCII, quotes and
#: ``${...}``, non-BMP characters, and a value longer than SHA-256's 64-byte block.
PROBES = ("alice@example.com", "it's ${x} \\ \n", "ünïcödé 名前 😀", "x" * 300)


def choose(wh: WarehouseTokenizer, conn: Connection, target: WriteTarget) -> HmacSqlForm | None:
    """The SQL form to push down with, or None for the client loop (``run.pushdown``, and
    whether this tokenizer, dialect and table allow it); logged either way.

    Raises:
        PushdownUnavailableError: ``run.pushdown: always`` and this run cannot push down.
    """
    option = wh.options.pushdown
    if option == "never":
        return None
    why = None
    if option == "auto" and wh.options.commit_every_batch:
        why = "run.commit_every_batch asks for the client loop's batches"
    elif option == "auto" and not wh.pushdown_by_default:
        why = f"run.pushdown: auto keeps the client loop on {wh.platform} (set always to push down)"
    form = wh.tokenizer.sql_form() if why is None else None
    if why is None:  # (asks the warehouse: only when the answer can change the choice)
        why = (f"tokenizer {wh.tokenizer.type_name!r} has no SQL form (hmac with token_version 2 has)"
               if form is None else wh.pushdown_unavailable(conn, target, form))
    if option == "always" and why is not None:
        raise PushdownUnavailableError(
            f"dataset {target.ref.dataset_urn}: run.pushdown is always, but {why}; fix that, or set "
            "run.pushdown to auto (or never) to use the client loop. Nothing was changed"
        )
    if why is not None:
        logger.debug("%s: client loop: %s", target.ref.name, why)
        return None
    return form


def update_statement(wh: WarehouseTokenizer, target: WriteTarget, form: HmacSqlForm) -> sa.Executable | str:
    """``UPDATE`` setting each column holding plaintext to its token, where any column does."""
    values = {c: wh.value_of(target, c) for c in target.columns}
    sets = {c: sa.case((wh.holds_plaintext(v), wh.token_sql(form, v)), else_=target.table.c[c])
            for c, v in values.items()}
    return wh.update_statement(target, sets, sa.or_(*(wh.holds_plaintext(v) for v in values.values())))


def check_tokens(wh: WarehouseTokenizer, conn: Connection, target: WriteTarget, form: HmacSqlForm) -> None:
    """The warehouse's tokens of ``PROBES`` must be Python's.

    Raises:
        TokenizerContractError: they differ (a different key in the warehouse, an encoding).
    """
    got = conn.execute(sa.select(*(wh.token_sql(form, sa.literal(p, sa.Text)) for p in PROBES))).one()
    want = wh.tokenizer.tokenize_many(list(PROBES))
    if list(got) != want:
        raise TokenizerContractError(
            f"dataset {target.ref.dataset_urn}: the tokens the warehouse computes differ from the "
            f"tokenizer's ({sum(g != w for g, w in zip(got, want))} of {len(PROBES)} probe values): "
            f"check that {wh.pushdown_key_hint()} is exactly tokenizer.key; nothing was changed"
        )


def run_pushdown(wh: WarehouseTokenizer, conn: Connection, plan: Plan, form: HmacSqlForm, *, dry_run: bool,
                 progress: Progress, counts: Counts) -> None:
    """Execute ``plan`` as one UPDATE (a dry run checks the warehouse's tokens and writes
    nothing). Counts: the rows the warehouse says it changed (the scan's count where it does
    not say), the scan's plaintext values per column."""
    target = plan.target
    if plan.rows_to_change == 0:
        return
    if dry_run and wh.read_only(conn):
        # A standby, or default_transaction_read_only: the session's key objects cannot be made.
        logger.info("%s: dry run on a read-only connection: the warehouse's tokens are not checked",
                    target.ref.name)
    else:
        _execute(wh, conn, plan, form, dry_run=dry_run, progress=progress, counts=counts)
    counts.rows_scanned = plan.rows_to_change
    if dry_run:
        counts.rows_updated = plan.rows_to_change
    for c in target.columns:
        counts.tokenized[c] = plan.plaintext[c]


def _execute(wh: WarehouseTokenizer, conn: Connection, plan: Plan, form: HmacSqlForm, *, dry_run: bool,
             progress: Progress, counts: Counts) -> None:
    target = plan.target
    with wh.pushdown_session(conn, form):
        check_tokens(wh, conn, target, form)
        changed = plan.rows_to_change
        if not dry_run:
            progress.step(f"tokenizing ~{plan.rows_to_change:,} rows in the warehouse (one UPDATE)")
            said = wh.execute_pushdown(conn, update_statement(wh, target, form))
            if said is not None:
                if said != plan.rows_to_change:
                    logger.warning(
                        "%s: the warehouse updated %s row(s) where the scan before writing found %s holding "
                        "plaintext: other writers changed rows in between (per-column counts are the scan's); "
                        "run again to tokenize any plaintext they wrote",
                        target.ref.name, f"{said:,}", f"{plan.rows_to_change:,}",
                    )
                changed = said
    counts.rows_updated = changed
