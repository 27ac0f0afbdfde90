"""COMMIT, and what a run does when the connection is lost in it: the server may have
committed, so it is asked on a new connection (where the dialect can tell)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .._exceptions import CommitOutcomeUnknownError, first_line
from .._routing import TableRef

if TYPE_CHECKING:
    from .base import WarehouseTokenizer

__all__ = ["commit", "commit_outcome"]

logger = logging.getLogger(__name__)


def commit(wh: WarehouseTokenizer, conn: Connection, ref: TableRef) -> Exception | None:
    """COMMIT ``conn``'s transaction. When the COMMIT itself fails with a driver error
    (the connection dropped, the server restarted), the server may still have committed:
    ask it on a new connection. If it committed, returns the failure (with a warning):
    the transaction's writes are in, but the session is gone (its lock, its staging
    table), so nothing more may be sent on ``conn``. Re-raises the failure if it did not
    commit, raises CommitOutcomeUnknownError if the server cannot tell. None: committed."""
    xid = wh.transaction_id(conn) if conn.in_transaction() else None
    try:
        conn.commit()
    except Exception as e:
        driver_error = e.orig if isinstance(e, sa.exc.DBAPIError) else e
        if xid is None or not isinstance(driver_error, conn.dialect.loaded_dbapi.Error):
            raise
        status, why = commit_outcome(wh, ref, xid)
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

def commit_outcome(wh: WarehouseTokenizer, ref: TableRef, xid: Any) -> tuple[str | None, str]:
    """(status, why it is not known): polled until the server has finished the
    transaction or ``COMMIT_OUTCOME_WAIT_S`` has passed."""
    deadline = time.monotonic() + wh.COMMIT_OUTCOME_WAIT_S
    while True:
        try:
            with wh.engine(ref).connect() as check:
                status = wh.transaction_status(check, xid)
            why = ("the server still reports it in progress" if status == "in progress"
                   else "the server no longer knows it")
        except sa.exc.DBAPIError as e:
            status, why = None, f"the server could not be asked: {first_line(e.orig)}"
        if status in ("committed", "aborted") or time.monotonic() >= deadline:
            return status, why
        time.sleep(0.2)
