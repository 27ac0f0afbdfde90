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
from typing import Any, ClassVar, Iterable, Mapping, NamedTuple, Sequence

from pydantic import Field, SecretStr, ValidationError, field_validator

from datahub.configuration.common import ConfigModel

from ._exceptions import ConfigError, UnknownTokenizerError

__all__ = [
    "ENTRY_POINT_GROUP",
    "KNOWN_TOKEN_REGEX",
    "HmacTokenizer",
    "PocTokenizer",
    "TokenOrigin",
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

    The guard (``token_regex`` / ``token_length_range``) may recognise more than the
    tokens this configuration makes, so that changing the tokenizer or its key never wraps
    a token in another: ``hmac`` recognises hmac tokens under any key id, ``poc`` every
    built-in format (hmac under any key id, and poc).
    ``configured_token_regex`` and ``token_origin`` tell the tokens this configuration made
    (its current and retired keys) from the others, for reporting.
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

    @property
    def configured_token_regex(self) -> str:
        """Anchored pattern that, among the values ``is_token`` recognises, matches those this
        configuration made (its format; its current key and ``retired_key_ids`` where it has
        keys). A token the guard recognises but this does not match was made by another
        tokenizer or under a key that is not configured: it is skipped like any token, and
        should be reported. Default: ``token_regex`` (every token is this one's)."""
        return self.token_regex

    def token_origin(self, value: object) -> TokenOrigin | None:
        """What made ``value``, if it is a token (``is_token``); None for plaintext.
        Default: this tokenizer, under its ``key_id``."""
        if not self.is_token(value):
            return None
        return TokenOrigin(self.type_name or type(self).__name__, self.key_id, True)

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


# The built-in token formats, as the pieces of one pattern. The poc guard recognises all of
# them (a run with `poc` over a table tokenized with `hmac`, under any key, skips those tokens
# instead of wrapping them in another token). The hmac digest's 43 characters are spelled out:
# that guard then needs no length range, which the unbounded poc format could not share.
# Bounded repetition (`{43}`) is avoided as for every guard (see the README); the spelled-out
# form costs Postgres about as much as `{43}` (measured: 2.4 us per hmac token value against
# 0.7 us for hmac's own `+` pattern with its length range; plaintext that does not start with
# `tok_` 0.25 us against 0.07 us), which is why the hmac guard does not use it.
#: Characters of a key id (1-16 of them in a configured one).
_KEY_ID = "[A-Za-z0-9]"
#: Characters of base64url without padding.
_B64URL = "[A-Za-z0-9_-]"
HMAC_DIGEST_CHARS = 43  # base64url of 32 bytes, padding dropped
_HMAC_DIGEST = _B64URL * HMAC_DIGEST_CHARS
_HMAC_BODY = _KEY_ID + "+_" + _HMAC_DIGEST
_POC_BODY = "[A-Za-z0-9_=-]+_poc"
#: Every token format this package knows (hmac under any key id, poc), anchored.
KNOWN_TOKEN_REGEX = f"^tok_({_HMAC_BODY}|{_POC_BODY})$"
_HMAC_RE = re.compile(f"tok_({_KEY_ID}+)_{_HMAC_DIGEST}")
_POC_RE = re.compile(f"tok_{_POC_BODY}")


class TokenOrigin(NamedTuple):
    """What made a token, as far as its text tells (``Tokenizer.token_origin``)."""

    #: The token format: ``hmac``, ``poc``, or a plugin's type name.
    format: str
    #: The key id written in the token (hmac), else None.
    key_id: str | None
    #: True when this tokenizer's configuration made it (its format, and for hmac the current
    #: key id or one listed in ``retired_key_ids``); False for a token of another format or of
    #: a key id that is not configured (skipped all the same, and worth reporting).
    configured: bool


def _builtin_origin(value: str, *, key_ids: Sequence[str] = (), poc: bool = False) -> TokenOrigin | None:
    """The origin of a token of a built-in format: hmac tokens whose key id is in ``key_ids``,
    or poc tokens when ``poc``, are configured. None for anything else."""
    if _POC_RE.fullmatch(value):  # also checked first for the rare hmac digest ending in "_poc"
        return TokenOrigin("poc", None, poc)
    m = _HMAC_RE.fullmatch(value)
    if m:
        return TokenOrigin("hmac", m.group(1), m.group(1) in key_ids)
    return None


class PocTokenizer(Tokenizer):
    """``tok_<base64url(value)>_poc``: the seeds' format, kept for compatibility.

    This is an encoding, not protection: anyone can decode the value back. Use it
    only for demos and for tables the seeds already tokenized.
    """

    #: Its own tokens and every other built-in format's (hmac, any key id): a table tokenized
    #: with hmac and run again with poc is left as it is.
    token_regex = KNOWN_TOKEN_REGEX
    verify_tokens = False  # base64url between the fixed ends, always (see its property tests)

    @property
    def configured_token_regex(self) -> str:
        return f"^tok_{_POC_BODY}$"

    def token_origin(self, value: object) -> TokenOrigin | None:
        return _builtin_origin(value, poc=True) if isinstance(value, str) else None

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

    DIGEST_CHARS = HMAC_DIGEST_CHARS
    #: Tokens under any key id: the current key's, retired keys' and keys not configured here
    #: (skipped, never wrapped; reported). Not poc tokens yet: one regex and one length range
    #: cannot hold an unbounded format next to this one as fast as this pair (see the README).
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
        retired_key_ids: list[str] = Field(
            default_factory=list,
            description="Key ids of earlier keys (1-16 letters or digits each) whose tokens may "
            "still be in tables. Tokens of every key id are recognised and skipped, never "
            "tokenized again; those of `key_id` and of these ids are expected, any other key id "
            "is reported (a count and a warning naming it), since it means a key this "
            "configuration does not know made them. After a rotation, move the old `key_id` here.",
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

        @field_validator("retired_key_ids")
        @classmethod
        def _retired_key_ids_shape(cls, v: list[str]) -> list[str]:
            bad = [k for k in v if not re.fullmatch(r"[A-Za-z0-9]{1,16}", k)]
            if bad:
                raise ValueError(f"retired_key_ids {bad!r}: each must be 1-16 ASCII letters or digits")
            return list(dict.fromkeys(v))

    def __init__(self, config: "HmacTokenizer.Config") -> None:
        super().__init__(config)
        key = config.key.get_secret_value().encode("utf-8")
        # RFC 2104 HMAC with the keyed inner and outer SHA-256 states computed once:
        # per value that is two state copies instead of a full HMAC setup (2x faster).
        block = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        self.key_id = config.key_id or hashlib.sha256(b"datahub-tokenize key id:" + key).hexdigest()[:8]
        if self.key_id in config.retired_key_ids:
            raise ValueError(
                f"retired_key_ids lists the current key id {self.key_id!r}; a retired id names an "
                "earlier key: remove it from retired_key_ids (or give this key a new key_id)"
            )
        #: The key ids whose tokens this configuration expects: the current one first.
        self.key_ids: tuple[str, ...] = (self.key_id, *config.retired_key_ids)
        self._prefix = f"tok_{self.key_id}_"

    def __repr__(self) -> str:  # never show the key
        return f"HmacTokenizer(key_id={self.key_id!r})"

    @property
    def configured_token_regex(self) -> str:
        # Applied to values the guard recognised (length range included): the key id decides.
        return f"^tok_({'|'.join(self.key_ids)})_[A-Za-z0-9_-]+$"

    def token_origin(self, value: object) -> TokenOrigin | None:
        if not self.is_token(value):
            return None
        key_id = str(value)[4:].split("_", 1)[0]
        return TokenOrigin("hmac", key_id, key_id in self.key_ids)

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
