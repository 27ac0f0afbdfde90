"""What to tokenize: a dataset and, optionally, which of its columns."""

from __future__ import annotations

import dataclasses

__all__ = ["TokenizeRequest"]


@dataclasses.dataclass(frozen=True)
class TokenizeRequest:
    """A request to tokenize one dataset.

    Attributes:
        dataset_urn: the DataHub dataset URN, e.g.
            ``urn:li:dataset:(urn:li:dataPlatform:postgres,appdb.public.customers,PROD)``.
        columns: the columns to tokenize, or None to let column selection decide.
    """

    dataset_urn: str
    columns: tuple[str, ...] | None = None
