"""``checked_tokens``: the tokenizer called on a run's values, its output checked before
anything is written, its failures turned into errors that never quote plaintext."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from .._exceptions import TokenizeError, TokenizerContractError, TokenizerError
from .model import WriteTarget

if TYPE_CHECKING:
    from .base import WarehouseTokenizer

__all__ = ["checked_tokens"]


def checked_tokens(wh: WarehouseTokenizer, target: WriteTarget, what: str, values: Sequence[str]) -> list[str]:
    """The tokenizer's tokens for ``values``, checked before anything is written: one
    token per value and (unless the tokenizer's tokens are proven by construction)
    each recognised as a token, so the next run's guard skips it instead of
    tokenizing the token."""
    try:
        made = wh.tokenizer.tokenize_many(values)
        if not isinstance(made, list):
            made = list(made)
    except TokenizeError:
        raise
    except Exception as e:
        # Only the type: a plugin's message may quote the plaintext it was given.
        raise TokenizerError(
            f"dataset {target.ref.dataset_urn}: tokenizer {wh.tokenizer.type_name!r} raised "
            f"{type(e).__name__} on {what} (its message is not shown: it may hold "
            "plaintext); check the tokenizer's service and run again (values already tokens are skipped)"
        ) from None
    if len(made) != len(values):
        raise TokenizerContractError(
            f"dataset {target.ref.dataset_urn}: tokenizer {wh.tokenizer.type_name!r} returned "
            f"{len(made)} tokens for {len(values)} values of {what}; its tokenize_many "
            "must return one token per value, in order. Fix the tokenizer plugin"
        )
    if wh.tokenizer.verify_tokens and not all(map(wh.tokenizer.is_token, made)):
        raise TokenizerContractError(
            f"dataset {target.ref.dataset_urn}: tokenizer {wh.tokenizer.type_name!r} made a token "
            f"for {what} that its own token_regex / token_length_range does not "
            "recognise; the next run would tokenize that token again. Fix the tokenizer plugin"
        )
    return made
