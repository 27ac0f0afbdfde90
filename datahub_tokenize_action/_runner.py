"""One code path from a request to a result, shared by the action and the CLI."""

from __future__ import annotations

import datetime as _dt
import logging
import uuid

from ._config import TokenizeConfig
from ._dialects import warehouse_for
from ._exceptions import NoColumnsError, TokenizeError
from ._request import TokenizeRequest
from ._result import TokenizeResult
from ._routing import route

__all__ = ["failed_result", "run_request"]

logger = logging.getLogger(__name__)


def run_request(config: TokenizeConfig, request: TokenizeRequest, *, dry_run: bool = False) -> TokenizeResult:
    """Route ``request`` to its warehouse and tokenize its columns.

    Returns a SUCCESS result; raises a TokenizeError (nothing changed on bad input).
    """
    connection, ref = route(request.dataset_urn, config.connections)
    if not request.columns:
        raise NoColumnsError(
            f"dataset {request.dataset_urn}: no columns to tokenize; name them (--columns email,phone) "
            "or tag them in DataHub"
        )
    warehouse = warehouse_for(connection, config.build_tokenizer(), config.run)
    try:
        return warehouse.run(ref, request.columns, dry_run=dry_run)
    finally:
        warehouse.dispose()


def failed_result(request: TokenizeRequest, error: BaseException, *, dry_run: bool = False,
                  started_at: str | None = None) -> TokenizeResult:
    """A FAILED result for ``request`` carrying ``error``'s message (already free of secrets)."""
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    message = str(error) if isinstance(error, TokenizeError) else f"{type(error).__name__}: {error}"
    return TokenizeResult(
        status="FAILED",
        dataset=request.dataset_urn,
        columns=tuple(request.columns or ()),
        dry_run=dry_run,
        run_id=uuid.uuid4().hex,
        started_at=started_at or now,
        ended_at=now,
        error=message,
        error_type=type(error).__name__,
    )
