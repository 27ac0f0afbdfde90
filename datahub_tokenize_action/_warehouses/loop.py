"""The client loop: keyset pages read, tokenized in Python and handed to the dialect's bulk
writer with the plaintext that was read, so a value changed by someone else in between is
left alone (compare-and-set); committed once at the end (default) or after every batch."""

from __future__ import annotations

import collections
import contextlib
import gc
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .commit import commit
from .model import Batch, BatchWriter, Counts, Plan, WriteTarget
from .progress import Progress
from .tokenizer_calls import checked_tokens

if TYPE_CHECKING:
    from .base import WarehouseTokenizer

__all__ = ["fetch", "old_objects_frozen", "run_loop", "tokenize_batch"]

logger = logging.getLogger(__name__)


def run_loop(wh: WarehouseTokenizer, conn: Connection, plan: Plan, *, dry_run: bool, progress: Progress,
             counts: Counts) -> None:
    """Read, tokenize and write in keyset batches.

    With ``supports_pipelined_reads`` (and not a dry run) pages are read on a second
    connection while one writer thread sends earlier batches, in order, on ``conn``,
    the connection holding the run's transaction and lock: reading and tokenizing in
    Python overlap with the warehouse applying writes. At most ``MAX_ROWS_IN_FLIGHT``
    rows (whole batches, at least one) wait for the writer, which bounds memory.
    """
    target, expected = plan.target, plan.rows_to_change
    t = target.table
    nkey = len(target.key)
    key_cols = [t.c[k] for k in target.key]
    if expected == 0:
        return  # the stats scan found nothing to tokenize
    values = [wh.value_of(target, c) for c in target.columns]
    guard = sa.or_(*(wh.holds_plaintext(v) for v in values))
    keys = [wh.key_of(target, k) for k in target.key]
    base = sa.select(*keys, *values).order_by(*key_cols)
    batch_size = wh.options.batch_size
    commit_each = wh.options.commit_every_batch and not dry_run
    pipelined = wh.supports_pipelined_reads and not dry_run
    in_flight = max(1, wh.MAX_ROWS_IN_FLIGHT // batch_size)
    last_key: tuple[Any, ...] | None = None

    failed: list[BaseException] = []

    def send(thunk: Callable[[], int | None], rows: int, tokenized: dict[str, int]) -> None:
        if failed:  # a batch before this one failed: its error ends the run, send nothing more
            return  # (SQLAlchemy would send it on a new session, without the run's lock)
        try:
            left = thunk()
            if left:
                counts.rows_left += left  # (only this thread writes it)
            if not commit_each:
                return
            lost = commit(wh, conn, target.ref)
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
        contextlib.nullcontext() if dry_run else wh.batch_writer(conn, target)
    )
    with old_objects_frozen(), writer as write:
        with contextlib.ExitStack() as stack:
            reader = stack.enter_context(wh.engine(target.ref).connect()) if pipelined else conn
            pool = stack.enter_context(ThreadPoolExecutor(1, "tokenize-writer")) if pipelined else None
            pending: collections.deque[Future[None]] = collections.deque()
            try:
                while True:
                    where = guard if last_key is None else sa.and_(guard, wh.keyset_after(target, last_key))
                    rows = fetch(reader, base.where(where).limit(batch_size))
                    if not rows:
                        break
                    last_key = tuple(rows[-1][:nkey])
                    before = dict(counts.tokenized)
                    batch, changed_rows = tokenize_batch(wh, target, rows, nkey, dry_run, counts)
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
                if counts.rows_left:
                    counts.rows_updated -= counts.rows_left
                    logger.warning(
                        "%s: the warehouse left %s row(s) of those sent alone: another writer changed them "
                        "after they were read, and they keep what it wrote (not counted as updated; the "
                        "per-column counts are of the values sent); run again to tokenize any plaintext it wrote",
                        target.ref.name, f"{counts.rows_left:,}",
                    )
            finally:
                for future in pending:
                    future.cancel()
                for future in pending:
                    if not future.cancelled():
                        future.exception()  # never leave the writer running on ``conn``


def fetch(conn: Connection, stmt: sa.Select[Any]) -> list[tuple[Any, ...]]:
    """Run a SELECT on the DBAPI cursor: plain tuples, without SQLAlchemy's Row objects
    (about half the cost of reading a million rows)."""
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(str(compiled), compiled.params)
        return cursor.fetchall()
    finally:
        cursor.close()


def tokenize_batch(wh: WarehouseTokenizer, target: WriteTarget, rows: Sequence[sa.Row[Any]], nkey: int,
                   dry_run: bool, counts: Counts) -> tuple[Batch, int]:
    """Split fetched rows into a columnar Batch; count and tokenize the plaintext values."""
    columns = list(zip(*rows))
    plains: list[Sequence[str | None]] = []
    tokens: list[Sequence[str | None]] = []
    changed: list[bool] | None = None
    for name, col in zip(target.columns, columns[nkey:]):
        mask = wh.tokenizer.plaintext_mask(col)
        n_plain = sum(mask)
        counts.tokenized[name] += n_plain
        changed = mask if changed is None else [a or b for a, b in zip(changed, mask)]
        if n_plain == len(col):  # the common case: every value read is plaintext
            plains.append(col)
            tokens.append(col if dry_run else checked_tokens(wh, target, f"column {name!r}", col))
            continue
        plain = [v if m else None for v, m in zip(col, mask)]
        plains.append(plain)
        if dry_run or not n_plain:
            tokens.append(plain)
            continue
        made = iter(checked_tokens(wh, target, f"column {name!r}", [v for v in plain if v is not None]))
        tokens.append([None if v is None else next(made) for v in plain])
    assert changed is not None
    n_changed = sum(changed)
    if n_changed == len(rows):
        return Batch(columns[:nkey], plains, tokens), n_changed
    keep = [i for i, c in enumerate(changed) if c]  # rows whose every value is already done

    def pick(seq: Sequence[Any]) -> list[Any]:
        return [seq[i] for i in keep]

    return Batch([pick(k) for k in columns[:nkey]], [pick(p) for p in plains], [pick(t) for t in tokens]), n_changed


@contextlib.contextmanager
def old_objects_frozen() -> Iterator[None]:
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
