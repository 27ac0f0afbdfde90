"""The outcome of one tokenization run, as a value."""

from __future__ import annotations

import dataclasses
import datetime as _dt
from typing import Any, Literal, Mapping

__all__ = ["TokenizeResult", "Status", "committed_text", "millis", "utc_now"]


def utc_now() -> str:
    """The current UTC time as the result's timestamps spell it (ISO 8601, seconds)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def millis(timestamp: str | None) -> int:
    """Epoch milliseconds of one of the result's timestamps (now when None), as DataHub's
    audit stamps and run events spell time."""
    when = _dt.datetime.fromisoformat(timestamp) if timestamp else _dt.datetime.now(_dt.timezone.utc)
    return int(when.timestamp() * 1000)

Status = Literal["SUCCESS", "FAILED"]


def committed_text(committed: dict[str, Any]) -> str:
    """What batches committed before a failure hold, from ``rows_updated`` and
    ``values_tokenized`` (the fields a failed ``commit_every_batch`` run reports)."""
    return (f"{committed['rows_updated']:,} row(s) updated, "
            f"{sum(committed['values_tokenized'].values()):,} value(s) tokenized")


@dataclasses.dataclass(frozen=True)
class TokenizeResult:
    """What a run did (or, with ``dry_run``, would do) to one table.

    Counts are what the run sent to the warehouse, never a driver's rowcount.
    """

    status: Status
    dataset: str
    columns: tuple[str, ...]
    rows_scanned: int = 0
    rows_updated: int = 0
    values_tokenized: Mapping[str, int] = dataclasses.field(default_factory=dict)
    values_skipped: Mapping[str, int] = dataclasses.field(default_factory=dict)
    #: Of ``values_skipped``: tokens this configuration did not make (another format or version,
    #: a key id neither current nor retired), left as they are and reported.
    tokens_not_configured: Mapping[str, int] = dataclasses.field(default_factory=dict)
    nulls: Mapping[str, int] = dataclasses.field(default_factory=dict)
    empty_strings: Mapping[str, int] = dataclasses.field(default_factory=dict)
    elapsed_s: float = 0.0
    dry_run: bool = False
    #: The old values the warehouse keeps after the run outside the table's current rows, and
    #: for how long (or what ``run.purge`` removed and what it could not); None: nothing written.
    plaintext_remains: str | None = None
    #: What asked for the run: ``event``, ``reconcile`` (the sweep) or ``manual`` (the CLI, the API).
    trigger: str | None = None
    #: How the tokens were made: ``loop`` (read, tokenized in Python, written back in batches)
    #: or ``pushdown`` (one UPDATE computing them in the warehouse); None before a run chose.
    method: str | None = None
    table: str | None = None
    tokenizer: str | None = None
    key_id: str | None = None
    run_id: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    error: str | None = None
    error_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with every field."""
        d = dataclasses.asdict(self)
        d["columns"] = list(self.columns)
        for key in ("values_tokenized", "values_skipped", "tokens_not_configured", "nulls", "empty_strings"):
            d[key] = dict(d[key])
        return d

    def replace(self, **changes: Any) -> "TokenizeResult":
        return dataclasses.replace(self, **changes)
