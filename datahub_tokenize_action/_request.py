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
        run_id: the run's id, or None for a new one. An event gives every delivery and retry
            of itself the same id, so DataHub shows one run instance for it.
        trigger: what asked for the run: ``event`` (a tag event through the actions
            pipeline) or ``manual`` (the CLI, the Python API).
        pipeline: the name of the actions pipeline that asked, if one did.
    """

    dataset_urn: str
    columns: tuple[str, ...] | None = None
    # Not part of what is asked: two requests for the same columns of a dataset are equal.
    run_id: str | None = dataclasses.field(default=None, compare=False)
    trigger: str = dataclasses.field(default="manual", compare=False)
    #: The actions pipeline that asked (its name), written as the source of what the run
    #: writes to DataHub; None: the CLI or the Python API.
    pipeline: str | None = dataclasses.field(default=None, compare=False)
