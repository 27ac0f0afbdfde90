"""Token formats, and the plugin registry that finds them.

A tokenizer turns one plaintext string into one token, deterministically, and
recognises its own tokens with a regular expression that the warehouse can run
(POSIX ERE on Postgres, Java regex on Databricks), so the SQL guard skips values
that already are tokens.

Built-in tokenizers are registered through the entry point group
``datahub_tokenize_action.tokenizers`` exactly as third-party ones are; a company
can ship a vault-backed tokenizer in its own package without forking this one.
"""

from __future__ import annotations

import abc
import base64
import binascii
import collections
import hashlib
import importlib.metadata
import math
import re
import sys
from typing import Any, ClassVar, Iterable, Mapping, Sequence

from pydantic import Field, SecretStr, ValidationError, field_validator

from datahub.configuration.common import ConfigModel

from ._exceptions import ConfigError, UnknownTokenizerError

__all__ = [
    "ENTRY_POINT_GROUP",
    "HmacTokenizer",
    "PocTokenizer",
    "Tokenizer",
    "available_tokenizers",
    "load_tokenizer",
]

ENTRY_POINT_GROUP = "datahub_tokenize_action.tokenizers"


class Tokenizer(abc.ABC):
    """A token format.

    Subclasses implement:
        - ``tokenize(value)``: one plaintext to one token, deterministic.
        - ``token_regex``: anchored pattern that, together with
          ``token_length_range``, matches every token this tokenizer produces and
          (for all realistic purposes) no plaintext. It must be valid as a POSIX ERE
          and as a Java regex: use only literals, bracket classes and ``+`` / ``*``.
          Avoid ``{m,n}``: Postgres evaluates bounded repetition 6-7x slower, which
          costs seconds per million rows; put lengths in ``token_length_range``.
        - ``max_token_length(input_bytes)``: the longest token for a value whose
          UTF-8 encoding has at most ``input_bytes`` bytes (checked against column
          widths before anything is written).

    Subclasses may override ``tokenize_many`` with a faster batch form, and define a
    nested ``Config`` (a ``ConfigModel``) that ``create`` validates the YAML with.
    The loop checks every token ``tokenize_many`` returns with ``is_token`` before it
    writes, unless the class sets ``verify_tokens = False`` (built-ins whose tokens are
    recognised by construction, as their tests show).
    """

    class Config(ConfigModel):
        pass

    #: The ``type`` this tokenizer is registered under (set by ``load_tokenizer``).
    type_name: ClassVar[str] = ""
    token_regex: str
    #: Inclusive (min, max) length in characters of every token, or None. Checked in
    #: SQL next to the regex (``char_length(col) BETWEEN min AND max``).
    token_length_range: tuple[int, int] | None = None
    #: A short identifier of the key in use, recorded with each run; None if keyless.
    key_id: str | None = None
    #: The loop checks each token with ``is_token`` before writing it (a token the next
    #: run did not recognise would be tokenized again). Not inherited: a class is trusted
    #: only if it sets False itself, so a subclass of a built-in is checked again.
    verify_tokens: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.verify_tokens = bool(cls.__dict__.get("verify_tokens", True))

    def __init__(self, config: Any = None) -> None:
        """Keep the validated ``Config`` (a plugin's options) as ``self.config``."""
        self.config = config if config is not None else self.Config()

    @classmethod
    def create(cls, config: Mapping[str, Any]) -> "Tokenizer":
        """Build the tokenizer from the YAML mapping (without ``type``)."""
        return cls(cls.Config.model_validate(dict(config)))  # type: ignore[call-arg]

    @abc.abstractmethod
    def tokenize(self, value: str) -> str:
        """Return the token of ``value``; a value that already is a token is returned unchanged."""

    def tokenize_many(self, values: Iterable[str]) -> list[str]:
        """One token per value, in order. Values repeat (low-cardinality columns): this
        default calls ``tokenize`` once per distinct value. Override with a batch form for
        speed; where each call is costly (a vault), keep tokenizing distinct values only."""
        token_of: dict[str, str] = {}
        return [token_of[v] if v in token_of else token_of.setdefault(v, self.tokenize(v)) for v in values]

    @abc.abstractmethod
    def max_token_length(self, input_bytes: int) -> int:
        """The longest token produced for an input of at most ``input_bytes`` UTF-8 bytes."""

    def is_token(self, value: object) -> bool:
        """True when ``value`` is a string in this tokenizer's token format."""
        if not isinstance(value, str):
            return False
        if self.token_length_range is not None:
            low, high = self.token_length_range
            if not low <= len(value) <= high:
                return False
        return self._compiled_regex().fullmatch(value) is not None

    def plaintext_mask(self, values: Sequence[object]) -> list[bool]:
        """For each value: True when it is a non-empty string that is not a token (to tokenize)."""
        fullmatch = self._compiled_regex().fullmatch
        low, high = self.token_length_range or (0, sys.maxsize)
        return [
            isinstance(v, str) and v != "" and not (low <= len(v) <= high and fullmatch(v) is not None)
            for v in values
        ]

    def _compiled_regex(self) -> "re.Pattern[str]":
        compiled = self.__dict__.get("_regex")
        if compiled is None:
            compiled = self.__dict__["_regex"] = re.compile(self.token_regex)
        return compiled


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


class PocTokenizer(Tokenizer):
    """``tok_<base64url(value)>_poc``: the seeds' format, kept for compatibility.

    This is an encoding, not protection: anyone can decode the value back. Use it
    only for demos and for tables the seeds already tokenized.
    """

    token_regex = "^tok_[A-Za-z0-9_=-]+_poc$"
    verify_tokens = False  # base64url between the fixed ends, always (see its property tests)

    def tokenize(self, value: str) -> str:
        if self.is_token(value):
            return value
        return "tok_" + _b64url(value.encode("utf-8")) + "_poc"

    def max_token_length(self, input_bytes: int) -> int:
        return len("tok_") + 4 * math.ceil(input_bytes / 3) + len("_poc")


class HmacTokenizer(Tokenizer):
    """``tok_<key id>_<base64url(HMAC-SHA256(key, value))>``: keyed, deterministic, irreversible.

    The same value always gives the same token under the same key, so joins across
    tables keep working. The key id in the token lets keys be rotated: tokens made
    under an old key are still recognised (and skipped) after the key changes.
    """

    DIGEST_CHARS = 43  # base64url of 32 bytes, padding dropped
    token_regex = "^tok_[A-Za-z0-9]+_[A-Za-z0-9_-]+$"
    # "tok_" + key id (1-16) + "_" + 43
    token_length_range = (4 + 1 + 1 + DIGEST_CHARS, 4 + 16 + 1 + DIGEST_CHARS)
    verify_tokens = False  # fixed shape and length, always (see its property tests)

    class Config(ConfigModel):
        key: SecretStr = Field(
            description="The HMAC key (at least 16 characters; 32 random bytes, base64 encoded, "
            "is a good choice: `openssl rand -base64 32`). Keep it in a secret store and pass it in "
            "through an environment variable: whoever holds it can confirm guesses of plaintext "
            "values. A key that looks typed or repeated is refused: it needs at least 8 distinct "
            "characters and an estimated 48 bits (the Shannon entropy of its character frequencies "
            "times its length; 16 repeated letters have 0, a 16-character random base64 string "
            "about 58, `openssl rand -base64 32` about 200). The estimate cannot tell a random key "
            "from a guessable phrase of varied characters: generate keys, do not write them.",
        )
        key_id: str | None = Field(
            default=None,
            description="A short name for this key (1-16 letters or digits) written into every "
            "token, so tokens made under different keys can be told apart after a rotation. "
            "Default: the first 8 hex digits of a SHA-256 of the key.",
        )

        @field_validator("key")
        @classmethod
        def _key_long_enough(cls, v: SecretStr) -> SecretStr:
            key = v.get_secret_value()
            if len(key) < 16:
                raise ValueError(
                    "the hmac key is shorter than 16 characters; generate one with "
                    "`openssl rand -base64 32` and pass it in an environment variable"
                )
            distinct, bits = key_strength(key)
            if distinct < MIN_KEY_DISTINCT_CHARS or bits < MIN_KEY_ENTROPY_BITS:
                # Only counts: never the key, nor which characters repeat.
                raise ValueError(
                    f"tokenizer.key has too little entropy for HMAC ({distinct} distinct characters, "
                    f"about {bits:.0f} bits estimated; at least {MIN_KEY_DISTINCT_CHARS} distinct "
                    f"characters and {MIN_KEY_ENTROPY_BITS} bits are needed): it looks typed or "
                    "repeated, not random. Generate one with `openssl rand -base64 32` and pass it "
                    "in an environment variable"
                )
            return v

        @field_validator("key_id")
        @classmethod
        def _key_id_shape(cls, v: str | None) -> str | None:
            if v is not None and not re.fullmatch(r"[A-Za-z0-9]{1,16}", v):
                raise ValueError("key_id must be 1-16 ASCII letters or digits")
            return v

    def __init__(self, config: "HmacTokenizer.Config") -> None:
        super().__init__(config)
        key = config.key.get_secret_value().encode("utf-8")
        # RFC 2104 HMAC with the keyed inner and outer SHA-256 states computed once:
        # per value that is two state copies instead of a full HMAC setup (2x faster).
        block = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        self.key_id = config.key_id or hashlib.sha256(b"datahub-tokenize key id:" + key).hexdigest()[:8]
        self._prefix = f"tok_{self.key_id}_"

    def __repr__(self) -> str:  # never show the key
        return f"HmacTokenizer(key_id={self.key_id!r})"

    def tokenize(self, value: str) -> str:
        if self.is_token(value):
            return value
        return self.tokenize_many((value,))[0]

    #: Values sampled from the start of a batch to tell whether they repeat.
    SAMPLE = 1024

    def tokenize_many(self, values: Iterable[str]) -> list[str]:
        values = values if isinstance(values, (list, tuple)) else list(values)
        sample = values[:self.SAMPLE]
        if len(set(sample)) * 2 < len(sample):
            # The values repeat (a low-cardinality column): hash each distinct one once.
            # Where they do not, the lookups would cost a third of the hashing for nothing.
            distinct = list(dict.fromkeys(values))
            token_of = dict(zip(distinct, self._macs(distinct)))
            return [token_of[v] for v in values]
        return self._macs(values)

    def _macs(self, values: Sequence[str]) -> list[str]:
        # HMAC from the precomputed states, standard base64 per value, then one
        # translate to the URL-safe alphabet for the whole batch.
        b64 = binascii.b2a_base64
        inner_copy, outer_copy = self._inner.copy, self._outer.copy

        def mac(value: str) -> bytes:
            inner = inner_copy()
            inner.update(value.encode("utf-8"))
            outer = outer_copy()
            outer.update(inner.digest())
            return outer.digest()

        blob = b"".join([b64(mac(v), newline=False) for v in values])
        text = blob.translate(_URLSAFE).decode("ascii")
        prefix, width = self._prefix, self.DIGEST_CHARS + 1  # 44 chars: 43 + one "=" of padding
        return [prefix + text[i:i + self.DIGEST_CHARS] for i in range(0, len(text), width)]

    def max_token_length(self, input_bytes: int) -> int:
        return len(self._prefix) + self.DIGEST_CHARS


_URLSAFE = bytes.maketrans(b"+/", b"-_")

#: An hmac key needs at least this many distinct characters ...
MIN_KEY_DISTINCT_CHARS = 8
#: ... and this many bits by ``key_strength``'s estimate (a 16-character random base64 key
#: has about 58; `openssl rand -base64 32` about 200; 16 repeated letters 0).
MIN_KEY_ENTROPY_BITS = 48


def key_strength(key: str) -> tuple[int, float]:
    """(distinct characters, estimated bits) of ``key``: the Shannon entropy of its character
    frequencies times its length. It catches keys that are typed or repeated
    (``aaaaaaaaaaaaaaaa``, ``passwordpassword``), not every guessable one: a key should be
    random bytes, e.g. `openssl rand -base64 32`."""
    counts = collections.Counter(key)
    n = len(key)
    bits = max(0.0, -sum(c * math.log2(c / n) for c in counts.values())) if n else 0.0
    return len(counts), bits


def available_tokenizers() -> dict[str, importlib.metadata.EntryPoint]:
    """The installed tokenizer plugins, by type name."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def load_tokenizer(type_name: str, options: Mapping[str, Any]) -> Tokenizer:
    """Find the plugin registered as ``type_name`` and build it from ``options``.

    Raises:
        UnknownTokenizerError: no plugin of that name is installed.
        ConfigError: the plugin rejected its options.
    """
    plugins = available_tokenizers()
    if type_name not in plugins:
        raise UnknownTokenizerError(
            f"tokenizer type {type_name!r} is not installed; installed types: "
            f"{', '.join(sorted(plugins)) or 'none'} (is datahub-tokenize-action installed with pip?)"
        )
    cls = plugins[type_name].load()
    if not (isinstance(cls, type) and issubclass(cls, Tokenizer)):
        raise UnknownTokenizerError(f"entry point {type_name!r} does not name a Tokenizer subclass")
    try:
        tokenizer = cls.create(options)
    except ValidationError as e:
        # Without the inputs: a plugin's model may not hide them, and they hold its secrets.
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or 'options'}: {err['msg']}" for err in e.errors(include_input=False)
        )
        raise ConfigError(f"tokenizer {type_name!r}: {problems}") from None
    except ValueError as e:
        raise ConfigError(f"tokenizer {type_name!r}: {e}") from None
    tokenizer.type_name = type_name
    return tokenizer
