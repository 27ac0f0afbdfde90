"""Errors raised by datahub-tokenize-action.

Every error is a type; its message names the dataset, the column (where there is
one) and what to do. ``permanent`` tells callers whether retrying can help: bad
input is permanent, an unreachable warehouse or a held lock is not.

    TokenizeError
    ├── ConfigError                    the YAML or the CLI arguments are wrong
    │   ├── NoConnectionError          no connection configured for the dataset's platform
    │   ├── DatabaseMismatchError      the connection URL names another database
    │   └── UnknownTokenizerError      no tokenizer plugin of that type is installed
    ├── InvalidDatasetError            the dataset URN cannot be routed to a table
    ├── InvalidTargetError             the table cannot be tokenized as asked
    │   ├── TableNotFoundError
    │   ├── ColumnNotFoundError
    │   ├── UnsupportedColumnTypeError
    │   ├── TokenTooLongError
    │   ├── NoKeyError
    │   ├── NotDeltaTableError
    │   ├── NoColumnsError             nothing says which columns hold PII
    │   └── PushdownUnavailableError   run.pushdown: always, and this run cannot push down
    ├── WarehouseUnavailableError      cannot connect (transient)
    ├── LockTimeoutError               another run holds the table (transient)
    ├── WarehouseWriteError            the warehouse failed during the run
    │   ├── TokenRewrittenError        a trigger rewrites or skips the tokens written
    │   └── CommitOutcomeUnknownError  the connection was lost in COMMIT; the server could not tell
    └── DataHubError                   DataHub could not be read or written (transient)

    RunInterrupted (a BaseException)   a signal stopped the run (the CLI's SIGTERM/SIGINT)
"""

from __future__ import annotations

from typing import TypeVar

__all__ = [
    "ColumnNotFoundError",
    "CommitOutcomeUnknownError",
    "ConfigError",
    "DataHubError",
    "DatabaseMismatchError",
    "InvalidDatasetError",
    "InvalidTargetError",
    "LockTimeoutError",
    "NoColumnsError",
    "NoConnectionError",
    "NoKeyError",
    "NotDeltaTableError",
    "PushdownUnavailableError",
    "RunInterrupted",
    "TableNotFoundError",
    "TokenTooLongError",
    "TokenizeError",
    "TokenizerContractError",
    "TokenizerError",
    "UnknownTokenizerError",
    "UnsupportedColumnTypeError",
    "WarehouseUnavailableError",
    "WarehouseWriteError",
]


_E = TypeVar("_E", bound=BaseException)


def first_line(error: BaseException | None) -> str:
    """The first line of ``error``'s message (its type's name if empty). Drivers append the
    SQL and its parameters (plaintext) on later lines: show only this one."""
    text = str(error or "").strip()
    return text.splitlines()[0] if text else type(error).__name__


def detached(error: _E) -> _E:
    """``error`` without the exceptions it replaced and without its traceback, for errors
    that leave the package (returned in an outcome, raised to the pipeline). Tracebacks
    hide a suppressed chain, but error reporters walk it and record frame locals, and those
    hold SQL parameters and values being tokenized (plaintext), URLs with passwords or
    HTTP requests with tokens. The message says what happened and what to do."""
    error.__cause__ = error.__context__ = None
    error.__suppress_context__ = True
    return error.with_traceback(None)


class TokenizeError(Exception):
    """Base class of every error this package raises on purpose."""

    #: True when running the same request again cannot succeed without a change
    #: by a person (config, table, tags). False when a retry may succeed.
    permanent: bool = True


class ConfigError(TokenizeError):
    """The configuration or the command-line arguments are wrong."""


class NoConnectionError(ConfigError):
    """No connection is configured for the dataset's platform (and instance)."""


class DatabaseMismatchError(ConfigError):
    """The connection URL names a database other than the dataset URN's."""


class UnknownTokenizerError(ConfigError):
    """No tokenizer plugin of the configured type is installed."""


class InvalidDatasetError(TokenizeError):
    """The dataset URN cannot be turned into a warehouse table."""


class InvalidTargetError(TokenizeError):
    """The table or its columns cannot be tokenized as asked. Nothing was changed."""


class TableNotFoundError(InvalidTargetError):
    pass


class ColumnNotFoundError(InvalidTargetError):
    pass


class UnsupportedColumnTypeError(InvalidTargetError):
    pass


class TokenTooLongError(InvalidTargetError):
    pass


class NoKeyError(InvalidTargetError):
    pass


class NotDeltaTableError(InvalidTargetError):
    pass


class UnsupportedTableError(InvalidTargetError):
    """The table is of a kind the loop cannot tokenize correctly in place (Postgres: a view
    or materialized view, enabled rules on UPDATE, a parent of inheritance children, rows
    hidden by row-level security)."""


class NoColumnsError(InvalidTargetError):
    pass


class PushdownUnavailableError(InvalidTargetError):
    """``run.pushdown: always``, but this run cannot compute tokens in the warehouse (the
    tokenizer has no SQL form, no Databricks secret is configured, the table has triggers)."""


class InsufficientPrivilegeError(InvalidTargetError):
    """The connection's user lacks a grant the run needs (Postgres: USAGE on the schema,
    SELECT on the key and columns, UPDATE on the columns, TEMPORARY on the database for the
    staging table)."""


class TokenizerError(TokenizeError):
    """The tokenizer raised while making tokens (a vault plugin's outage, say); a retry may help."""

    permanent = False


class TokenizerContractError(TokenizerError):
    """A tokenizer plugin broke its contract (token count, tokens it does not recognise);
    found before those tokens are written."""

    permanent = True


class WarehouseUnavailableError(TokenizeError):
    """The warehouse could not be reached. Retrying later may succeed."""

    permanent = False


class LockTimeoutError(TokenizeError):
    """Another run holds the table's lock. Retrying later may succeed."""

    permanent = False


class WarehouseWriteError(TokenizeError):
    """The warehouse failed while the run was reading or writing."""

    permanent = False


class TokenRewrittenError(WarehouseWriteError):
    """Tokens written were not stored: a trigger on the table rewrites them (values read
    back as something else) or skips the update (rows still hold their plaintext). A retry
    would do the same."""

    permanent = True


class CommitOutcomeUnknownError(WarehouseWriteError):
    """The connection was lost while COMMIT was under way, and the server could not be
    asked (or could not yet say) whether the transaction committed: the table holds all of
    its writes or none of them. A retry establishes which (values already tokens are
    skipped) and finishes the table either way."""

    permanent = False


class DataHubError(TokenizeError):
    """DataHub could not be read (column selection) or written (the outcome). Retrying
    later may succeed; a retry changes no more rows, values already tokens are skipped."""

    permanent = False


class RunInterrupted(BaseException):
    """A signal (SIGTERM, SIGINT) stopped the run; raised by the CLI's signal handler.

    Like ``KeyboardInterrupt`` it is not an ``Exception``: no ``except Exception`` on the
    way up takes it for a failure to wrap, report or write back to DataHub, while every
    layer's cleanup (``finally``, ``except BaseException``: rollback, unlock, dispose) still
    runs. ``str()`` is the one line to show: the dataset and the state the table is left in.
    """

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum
