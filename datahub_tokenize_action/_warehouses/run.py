"""One run, from connecting to its result: validate, take the lock, scan, execute the plan,
commit; a failure becomes a TokenizeError that says what was changed (nothing, or what the
batches committed) and whether a retry can pass."""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Sequence

import sqlalchemy as sa

from .._exceptions import TokenizeError, WarehouseWriteError, first_line
from .._result import TokenizeResult, committed_text, utc_now
from .._routing import TableRef
from . import pushdown
from .commit import commit
from .loop import run_loop
from .model import Counts, WriteTarget
from .plan import scan, validate_request
from .progress import Progress

if TYPE_CHECKING:
    from .base import WarehouseTokenizer

__all__ = ["execute_run"]

logger = logging.getLogger(__name__)


def execute_run(wh: WarehouseTokenizer, ref: TableRef, columns: Sequence[str], *, dry_run: bool,
                run_id: str | None = None) -> TokenizeResult:
    """Tokenize ``columns`` of ``ref``; with ``dry_run``, count what would change and write nothing.

    Returns a SUCCESS result. Raises a TokenizeError on any failure; in
    single-transaction mode nothing is left changed.
    """
    started = time.monotonic()
    started_at = utc_now()
    run_id = run_id or uuid.uuid4().hex
    columns = tuple(dict.fromkeys(columns))
    progress = Progress(ref.name, wh.options.progress_interval_s, dry_run)
    counts = Counts(tokenized={c: 0 for c in columns}, committed_tokenized={c: 0 for c in columns})
    commits_batches = wh.options.commit_every_batch and not dry_run
    with progress.heartbeat(), wh.connect(ref) as conn:
        try:
            target = validate_request(wh, conn, ref, columns, progress)
            form = pushdown.choose(wh, conn, target)
            progress.step("waiting for the table's run lock (held while another run works on it)")
            with wh.lock(conn, target):
                plan = scan(wh, conn, target, dry_run=dry_run, progress=progress)
                if form is not None:
                    pushdown.run_pushdown(wh, conn, plan, form, dry_run=dry_run, progress=progress, counts=counts)
                else:
                    run_loop(wh, conn, plan, dry_run=dry_run, progress=progress, counts=counts)
                if dry_run:
                    conn.rollback()
                else:
                    progress.step("committing")
                    counts.finishing = True
                    commit(wh, conn, ref)  # (a lost session after the last COMMIT: nothing left to send)
        except TokenizeError as e:
            conn.rollback()
            if commits_batches:
                e.committed_counts = counts.committed()  # type: ignore[attr-defined]
                if counts.committed_rows:
                    e.args = (f"{e}; batches committed before the failure stay tokenized "
                              f"({committed_text(counts.committed())})",)
            raise
        except Exception as e:
            driver_error = e.orig if isinstance(e, sa.exc.DBAPIError) else e
            if not isinstance(driver_error, conn.dialect.loaded_dbapi.Error):
                raise
            conn.rollback()
            hint = wh.error_hint(driver_error)
            error = WarehouseWriteError(
                f"dataset {ref.dataset_urn}: the warehouse failed during the run: {first_line(driver_error)}"
                + (f" ({hint})" if hint else "")
                + ("; nothing was changed (a dry run)" if dry_run
                   else "; nothing was changed (the run's transaction was rolled back)"
                   if wh.supports_transactions and not wh.options.commit_every_batch
                   else f"; batches committed before the failure stay tokenized ({committed_text(counts.committed())}): "
                   "once the cause is fixed, run again to finish (values already tokens are skipped)"
                   if commits_batches
                   else "; batches written before the failure (if any) stay tokenized: once the "
                   "cause is fixed, run again to finish (values already tokens are skipped)")
            )
            error.permanent = wh.is_permanent(driver_error)
            if commits_batches:
                error.committed_counts = counts.committed()  # type: ignore[attr-defined]
            raise error from None
        except BaseException as e:  # a signal (RunInterrupted), a bug: what is committed stays
            if commits_batches:
                e.committed_counts = counts.committed()  # type: ignore[attr-defined]
            raise
    remains = None
    if counts.rows_updated and not dry_run:
        remains = purge(wh, target, progress) if wh.options.purge else wh.plaintext_remains(target)
    elapsed = time.monotonic() - started
    result = TokenizeResult(
        status="SUCCESS",
        dataset=ref.dataset_urn,
        table=ref.name,
        columns=columns,
        rows_scanned=counts.rows_scanned,
        rows_updated=counts.rows_updated,
        values_tokenized={c: counts.tokenized.get(c, 0) for c in columns},
        values_skipped=plan.tokens,
        tokens_not_configured=plan.tokens_not_configured,
        nulls=plan.nulls,
        empty_strings=plan.empty_strings,
        elapsed_s=round(elapsed, 3),
        dry_run=dry_run,
        method="pushdown" if form is not None else "loop",
        plaintext_remains=remains,
        tokenizer=wh.tokenizer.type_name or type(wh.tokenizer).__name__,
        key_id=wh.tokenizer.key_id,
        run_id=run_id,
        started_at=started_at,
        ended_at=utc_now(),
    )
    logger.info(
        "%s %s%s: %d rows scanned, %d rows %s, %s values tokenized, %s already tokens, in %.1fs",
        "dry run of" if dry_run else "tokenized",
        ref.name,
        " (tokens computed in the warehouse)" if form is not None else "",
        result.rows_scanned,
        result.rows_updated,
        "would change" if dry_run else "updated",
        sum(result.values_tokenized.values()),
        sum(result.values_skipped.values()),
        elapsed,
    )
    return result


def purge(wh: WarehouseTokenizer, target: WriteTarget, progress: Progress) -> str:
    """``run.purge`` after the run committed: what remains. A failure is logged and said in
    what remains; the run stays a success (its tokens are committed)."""
    progress.step("purging the old values (run.purge)")
    try:
        return wh.purge(target.ref)
    except sa.exc.DBAPIError as e:
        why = first_line(e.orig)
    except TokenizeError as e:
        why = str(e)
    logger.warning("%s: the purge after the run failed: %s; the old values remain: %s",
                   target.ref.name, why, wh.plaintext_remains(target))
    return f"the purge failed ({why}); {wh.plaintext_remains(target)}"
