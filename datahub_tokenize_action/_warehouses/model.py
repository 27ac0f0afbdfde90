"""What the warehouse side passes between its steps: the table as described, the validated
target, the plan a strategy executes, a batch of rows to write, and a run's counts."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator, Sequence

import sqlalchemy as sa

from .._routing import TableRef

__all__ = ["Batch", "BatchWriter", "ColumnInfo", "Counts", "Plan", "TableDescription", "WriteTarget"]


@dataclasses.dataclass(frozen=True)
class Batch:
    """One batch to write, by column: key values, then per tokenized column the plaintext
    that was read and its token. Both are None where that row keeps the column's value."""

    keys: Sequence[Sequence[Any]]
    plains: Sequence[Sequence[str | None]]
    tokens: Sequence[Sequence[str | None]]

    def __len__(self) -> int:
        return len(self.keys[0])

    def rows(self) -> Iterator[tuple[Any, ...]]:
        """Row by row: ``(*key, plain_1, token_1, plain_2, token_2, ...)``."""
        pairs = [c for pt in zip(self.plains, self.tokens) for c in pt]
        return zip(*self.keys, *pairs)


#: Called with a batch in the loop's thread, it does the CPU work (rendering the batch)
#: and returns a function that sends it, which may run in the writer thread. The send
#: function returns how many of the batch's rows the warehouse says it left alone (their
#: value changed after the read: compare-and-set), or None where it does not say.
BatchWriter = Callable[[Batch], Callable[[], "int | None"]]


#: Query parameters whose values are hidden by ``mask_url`` (psycopg2's ``password``,


@dataclasses.dataclass(frozen=True)
class ColumnInfo:
    """What the loop needs to know about one column."""

    name: str
    type_name: str
    is_text: bool
    #: Declared maximum length in characters (varchar(n), char(n)); None if unbounded.
    max_length: int | None = None
    nullable: bool = True
    #: A fixed-width text type (char(n)): the warehouse pads values with spaces.
    fixed_width: bool = False
    #: Its values survive the bulk path's round trip (COPY text, SQL literals) unchanged,
    #: so the column can be part of the key that addresses rows.
    addressable: bool = True


@dataclasses.dataclass(frozen=True)
class TableDescription:
    """The table's columns (in order) and the candidate keys that identify a row."""

    columns: dict[str, ColumnInfo]
    primary_key: tuple[str, ...] = ()
    #: Unique constraints or indexes, each usable as a key if all its columns are NOT NULL.
    unique_keys: tuple[tuple[str, ...], ...] = ()
    #: The warehouse enforces the keys above. False where constraints are informational
    #: (Databricks): the loop then checks the key's values before writing.
    keys_enforced: bool = True
    #: The column lists of the table's indexes, in index order (the primary key's too); None
    #: where the warehouse has no indexes (Databricks). Keyset paging wants one that starts
    #: with the key.
    indexes: tuple[tuple[str, ...], ...] | None = None


@dataclasses.dataclass(frozen=True)
class WriteTarget:
    """A validated request: the table clause, the key and the columns to tokenize."""

    ref: TableRef
    table: sa.TableClause
    key: tuple[str, ...]
    columns: tuple[str, ...]
    description: TableDescription



@dataclasses.dataclass(frozen=True)
class Plan:
    """A validated target and what the scan before writing found in it: what a strategy
    (the client loop, or pushdown) executes, and what the run's result reports."""

    target: WriteTarget
    #: Rows holding plaintext in at least one of the columns.
    rows_to_change: int
    #: Per column: NULLs, empty strings, values already tokens (of any format the tokenizer
    #: recognises), and those of them this configuration did not make.
    nulls: dict[str, int]
    empty_strings: dict[str, int]
    tokens: dict[str, int]
    tokens_not_configured: dict[str, int]
    #: Per column: values holding plaintext (what a run tokenizes).
    plaintext: dict[str, int]
    #: Per column: the longest plaintext in bytes (None where there is none).
    longest: dict[str, int | None]


@dataclasses.dataclass
class Counts:
    rows_scanned: int = 0
    rows_updated: int = 0
    tokenized: dict[str, int] = dataclasses.field(default_factory=dict)
    #: With ``commit_every_batch``: what the batches committed so far hold (what a failed
    #: run leaves tokenized).
    committed_rows: int = 0
    committed_tokenized: dict[str, int] = dataclasses.field(default_factory=dict)
    #: Rows sent that the warehouse says it did not update (another writer changed them after
    #: the read); they keep that writer's values and are not counted as updated.
    rows_left: int = 0
    #: Set just before the run's final COMMIT is sent: a signal that finds it set, and the
    #: connection out of its transaction, came after the run committed (the CLI reads it).
    finishing: bool = False

    def committed(self) -> dict[str, Any]:
        """The committed counts as ``TokenizeResult`` fields (``rows_updated``, ``values_tokenized``)."""
        return {"rows_updated": self.committed_rows, "values_tokenized": dict(self.committed_tokenized)}

