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
import dataclasses
import functools
import hashlib
import importlib.metadata
import math
import os
import re
from typing import Any, ClassVar, Iterable, Literal, Mapping, NamedTuple, Sequence

from pydantic import Field, SecretStr, ValidationError, field_validator

from datahub.configuration.common import ConfigModel

from ._exceptions import ConfigError, UnknownTokenizerError

__all__ = [
    "ENTRY_POINT_GROUP",
    "BUILTIN_TOKEN_PATTERNS",
    "HmacSqlForm",
    "HmacTokenizer",
    "PocTokenizer",
    "TokenOrigin",
    "TokenPattern",
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

    The guard is ``token_patterns``: by default the one pattern ``token_regex`` /
    ``token_length_range``. It may recognise more than the tokens this configuration makes,
    so that changing the tokenizer or its key never wraps a token in another: every built-in
    recognises every built-in format (hmac v2 under any key id, with its check value; hmac
    v1 tokens of earlier versions, by shape; poc). ``configured_token_regex`` and
    ``token_origin`` tell the tokens this configuration made (its current and retired keys)
    from the others, for reporting.
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

    @property
    def token_patterns(self) -> tuple["TokenPattern", ...]:
        """The token formats the guard recognises (a value matching any of them is skipped),
        checked alike in SQL and in Python. Default: ``token_regex`` / ``token_length_range``."""
        return (TokenPattern(self.token_regex, self.token_length_range),)

    def is_token(self, value: object) -> bool:
        """True when ``value`` is a string in one of ``token_patterns``."""
        return isinstance(value, str) and any(p.matches(value) for p in self.token_patterns)

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

    def sql_form(self) -> "HmacSqlForm | None":
        """What a warehouse needs to make this tokenizer's tokens itself (pushdown), or None
        where it cannot (the default: tokens are made in Python, by the client loop)."""
        return None

    def plaintext_mask(self, values: Sequence[object]) -> list[bool]:
        """For each value: True when it is a non-empty string that is not a token (to tokenize)."""
        patterns = self.token_patterns
        # Most values (all plaintext on a first run) fail at the literal start every pattern shares.
        prefix = os.path.commonprefix([_literal_prefix(p.regex) for p in patterns])
        if len(patterns) == 1:
            is_token = patterns[0].matches
        else:
            def is_token(v: str) -> bool:
                return any(p.matches(v) for p in patterns)
        return [isinstance(v, str) and v != "" and not (v.startswith(prefix) and is_token(v)) for v in values]


class TokenPattern(NamedTuple):
    """One token format as the guard tests it, in SQL and in Python alike.

    ``regex`` is anchored and reads the same as a POSIX ERE and a Java regex (literals, bracket
    classes, ``+`` / ``*``, groups with ``|``; no ``{m,n}``, which Postgres evaluates 6-7x slower).
    """

    regex: str
    #: Inclusive (min, max) length in characters, or None.
    length_range: tuple[int, int] | None = None
    #: When > 0, the token's last ``check_chars`` characters are the first ones of
    #: ``check_value(check_salt + <the token without them>)``: a value of the token's shape
    #: passes only by a 64**-check_chars chance (8 characters: one in 2.8e14). 0: the shape
    #: alone decides.
    check_chars: int = 0
    check_salt: str = ""

    def matches(self, value: str) -> bool:
        if self.length_range is not None and not self.length_range[0] <= len(value) <= self.length_range[1]:
            return False
        if _compiled(self.regex).fullmatch(value) is None:
            return False
        if not self.check_chars:
            return True
        body, check = value[:-self.check_chars], value[-self.check_chars:]
        return check_value(self.check_salt + body)[:self.check_chars] == check


def check_value(text: str) -> str:
    """base64url (with its padding) of SHA-256 of ``text`` in UTF-8: what a token's check value
    is cut from. The warehouse computes the same in SQL (``WarehouseTokenizer.sha256_base64url``)."""
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


@dataclasses.dataclass(frozen=True)
class HmacSqlForm:
    """An hmac v2 token as SQL computes it, from SHA-256 and base64 alone:

    ``prefix + b64url(HMAC-SHA256(key, utf8(value))[:27]) + b64url(SHA-256(utf8(check_salt + body))[:6])[:7]``

    (27 bytes are exactly the 36 digest characters; 6 bytes give the 7 check characters), with
    HMAC spelled out as ``SHA-256(opad || SHA-256(ipad || message))`` (RFC 2104). ``ipad`` and
    ``opad`` are key material: a dialect hands them to the warehouse outside statement text,
    or computes them there from a secret it holds (never shown in a repr)."""

    prefix: str
    check_salt: str
    ipad: bytes = dataclasses.field(repr=False)
    opad: bytes = dataclasses.field(repr=False)
    digest_bytes: ClassVar[int] = 27
    check_bytes: ClassVar[int] = 6
    check_chars: ClassVar[int] = 7


@functools.lru_cache(maxsize=None)
def _compiled(regex: str) -> "re.Pattern[str]":
    return re.compile(regex)


@functools.lru_cache(maxsize=None)
def _literal_prefix(regex: str) -> str:
    """The literal characters every match of an anchored regex starts with (``^tok_[...``
    gives ``tok_``; ``""`` when unsure: no anchor, an alternation outside groups)."""
    depth, in_class = 0, False
    for i, ch in enumerate(regex):
        if regex[i - 1:i] == "\\":
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch in "()":
            depth += 1 if ch == "(" else -1
        elif ch == "|" and depth == 0:
            return ""
    m = re.match(r"\^([^.\[\](){}*+?|\\^$]*)", regex)
    literal = m.group(1) if m else ""
    # A quantifier applies to the character before it, which is then not certain to be there.
    rest = regex[len(literal) + 1:] if m else ""
    return literal[:-1] if literal and rest[:1] in ("*", "?", "{") else literal


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


# The built-in token formats. Every built-in tokenizer recognises all of them, so a run with
# `poc` over a table tokenized with `hmac` (or the reverse, or under another key) skips those
# tokens instead of wrapping them in another token.
#: Characters of a key id (1-16 of them in a configured one).
_KEY_ID = "[A-Za-z0-9]"
#: Characters of base64url without padding.
_B64URL = "[A-Za-z0-9_-]"
HMAC_DIGEST_CHARS = 43  # base64url of 32 bytes, padding dropped
#: Digest characters of an hmac v2 token (216 bits) and of its check value: 43 in all, as v1's
#: digest, so a v2 token is one character longer than the v1 token of the same value.
V2_DIGEST_CHARS = 36
CHECK_CHARS = 7
CHECK_SALT = "datahub-tokenize check:"
#: hmac v2 (this version): ``tok2_<key id>_<digest><check>``. The check value is cut from a
#: SHA-256 of the rest of the token, so any other value of this shape (random strings, free
#: text, a token changed by hand) fails it, with a chance of one in 4.4e12 to pass. The check is
#: keyless, so tokens of any key id (retired, unknown) are verified alike, in SQL and in Python.
HMAC_V2 = TokenPattern(
    "^tok2_[A-Za-z0-9]+_[A-Za-z0-9_-]+$",
    (5 + 1 + 1 + V2_DIGEST_CHARS + CHECK_CHARS, 5 + 16 + 1 + V2_DIGEST_CHARS + CHECK_CHARS),
    CHECK_CHARS,
    CHECK_SALT,
)
#: hmac v1 (versions before 0.3): ``tok_<key id>_<digest>``, recognised by shape only, its 43
#: digest characters spelled out (this regex costs Postgres about 2.4 us per token-shaped
#: value; the length range, tested first, keeps it off most plaintext).
HMAC_V1 = TokenPattern(
    f"^tok_{_KEY_ID}+_{_B64URL * HMAC_DIGEST_CHARS}$",
    (4 + 1 + 1 + HMAC_DIGEST_CHARS, 4 + 16 + 1 + HMAC_DIGEST_CHARS),
)
#: poc: ``tok_<base64url(value)>_poc``, any length, by shape.
POC = TokenPattern("^tok_[A-Za-z0-9_=-]+_poc$")
#: Every token format this package knows, in the order ``token_origin`` tells them apart.
BUILTIN_TOKEN_PATTERNS = (HMAC_V2, HMAC_V1, POC)


class TokenOrigin(NamedTuple):
    """What made a token, as far as its text tells (``Tokenizer.token_origin``)."""

    #: The token format: ``hmac`` (v2), ``hmac v1``, ``poc``, or a plugin's type name.
    format: str
    #: The key id written in the token (hmac), else None.
    key_id: str | None
    #: True when this tokenizer's configuration made it: its format and version, and for hmac
    #: the current key id or one listed in ``retired_key_ids``. False for a token of another
    #: format or version, or of a key id that is not configured (skipped all the same, and
    #: reported).
    configured: bool


def _builtin_origin(value: str, *, key_ids: Sequence[str] = (), version: int = 0,
                    poc: bool = False) -> TokenOrigin | None:
    """The origin of a token of a built-in format: hmac tokens of ``version`` whose key id is in
    ``key_ids``, or poc tokens when ``poc``, are configured. None for anything else."""
    if POC.matches(value):  # checked first for the rare v1 digest ending in "_poc"
        return TokenOrigin("poc", None, poc)
    if HMAC_V2.matches(value):
        key_id = value[5:].split("_", 1)[0]
        return TokenOrigin("hmac", key_id, version == 2 and key_id in key_ids)
    if HMAC_V1.matches(value):
        key_id = value[4:].split("_", 1)[0]
        return TokenOrigin("hmac v1", key_id, version == 1 and key_id in key_ids)
    return None


class PocTokenizer(Tokenizer):
    """``tok_<base64url(value)>_poc``: the seeds' format, kept for compatibility.

    This is an encoding, not protection: anyone can decode the value back. Use it
    only for demos and for tables the seeds already tokenized.
    """

    token_regex = POC.regex
    verify_tokens = False  # base64url between the fixed ends, always (see its property tests)

    @property
    def token_patterns(self) -> tuple[TokenPattern, ...]:
        # Its own tokens and every other built-in format's: a table tokenized with hmac and
        # run again with poc is left as it is.
        return BUILTIN_TOKEN_PATTERNS

    @property
    def configured_token_regex(self) -> str:
        return POC.regex

    def token_origin(self, value: object) -> TokenOrigin | None:
        return _builtin_origin(value, poc=True) if isinstance(value, str) else None

    def tokenize(self, value: str) -> str:
        if self.is_token(value):
            return value
        return "tok_" + _b64url(value.encode("utf-8")) + "_poc"

    def max_token_length(self, input_bytes: int) -> int:
        return len("tok_") + 4 * math.ceil(input_bytes / 3) + len("_poc")


class HmacTokenizer(Tokenizer):
    """``tok2_<key id>_<base64url(HMAC-SHA256(key, value))><check>``: keyed, deterministic,
    irreversible.

    The same value always gives the same token under the same key, so joins across
    tables keep working. The key id in the token lets keys be rotated: tokens made
    under an old key are still recognised (and skipped) after the key changes. The check
    value (``HMAC_V2``) tells tokens from plaintext that only has their shape.
    ``token_version: 1`` writes the format of versions before 0.3 instead
    (``tok_<key id>_<digest>``, recognised by shape only).
    """

    DIGEST_CHARS = HMAC_DIGEST_CHARS
    token_regex = HMAC_V2.regex
    token_length_range = HMAC_V2.length_range
    verify_tokens = False  # fixed shape, length and check, always (see its property tests)

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
        token_version: Literal[1, 2] = Field(
            default=2,
            description="The token format written: 2 (`tok2_<key id>_<digest><check>`; a check "
            "value tells tokens from plaintext of the same shape) or 1 (`tok_<key id>_<digest>`, "
            "written by versions before 0.3 and recognised by its shape only). A v2 token holds the "
            "first 36 characters of the v1 digest, so v1 tokens convert to v2 without the key "
            "(see the README, Token formats). Keep 1 only while other tables' v1 tokens must join "
            "with new ones and cannot be converted yet.",
        )
        recognise_v1_tokens: bool = Field(
            default=True,
            description="Skip values of the v1 token shape (`tok_<key id>_` and 43 base64url "
            "characters) as tokens, as versions before 0.3 did. Set false once no table holds "
            "v1 tokens (each run's record counts them), so that plaintext of that shape is "
            "tokenized. Ignored with token_version 1.",
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
        self._ipad, self._opad = bytes(b ^ 0x36 for b in block), bytes(b ^ 0x5C for b in block)
        self._inner = hashlib.sha256(self._ipad)
        self._outer = hashlib.sha256(self._opad)
        self.key_id = config.key_id or hashlib.sha256(b"datahub-tokenize key id:" + key).hexdigest()[:8]
        if self.key_id in config.retired_key_ids:
            raise ValueError(
                f"retired_key_ids lists the current key id {self.key_id!r}; a retired id names an "
                "earlier key: remove it from retired_key_ids (or give this key a new key_id)"
            )
        #: The key ids whose tokens this configuration expects: the current one first.
        self.key_ids: tuple[str, ...] = (self.key_id, *config.retired_key_ids)
        self.version = config.token_version
        own = HMAC_V2 if self.version == 2 else HMAC_V1
        self.token_regex, self.token_length_range = own.regex, own.length_range
        v1 = self.version == 1 or config.recognise_v1_tokens
        self._patterns = tuple(p for p in BUILTIN_TOKEN_PATTERNS if v1 or p is not HMAC_V1)
        self._prefix = f"tok2_{self.key_id}_" if self.version == 2 else f"tok_{self.key_id}_"

    def __repr__(self) -> str:  # never show the key
        return f"HmacTokenizer(key_id={self.key_id!r})"

    @property
    def token_patterns(self) -> tuple[TokenPattern, ...]:
        # Every built-in format (v1 unless turned off): never a token wrapped in another.
        return self._patterns

    @property
    def configured_token_regex(self) -> str:
        # Applied to values the guard recognised (length range and check included): the
        # prefix of this version and the key id decide.
        return f"^{self._prefix.split('_')[0]}_({'|'.join(self.key_ids)})_[A-Za-z0-9_-]+$"

    def token_origin(self, value: object) -> TokenOrigin | None:
        if not self.is_token(value):
            return None
        return _builtin_origin(str(value), key_ids=self.key_ids, version=self.version)

    def sql_form(self) -> HmacSqlForm | None:
        if self.version != 2:
            return None  # v1 is kept for joins with old tables only: tokens made in Python
        return HmacSqlForm(self._prefix, HMAC_V2.check_salt, self._ipad, self._opad)

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
        if self.version == 1:
            return [prefix + text[i:i + self.DIGEST_CHARS] for i in range(0, len(text), width)]
        bodies = [prefix + text[i:i + V2_DIGEST_CHARS] for i in range(0, len(text), width)]
        return [body + check for body, check in zip(bodies, self._checks(bodies))]

    @staticmethod
    def _checks(bodies: Sequence[str]) -> list[str]:
        """The check value of each token body (``HMAC_V2``), in one pass like ``_macs``."""
        salted = hashlib.sha256(CHECK_SALT.encode("ascii")).copy
        b64 = binascii.b2a_base64

        def digest(body: str) -> bytes:
            h = salted()
            h.update(body.encode("ascii"))
            return h.digest()

        text = b"".join([b64(digest(b), newline=False)[:CHECK_CHARS] for b in bodies])
        text = text.translate(_URLSAFE).decode("ascii")
        return [text[i:i + CHECK_CHARS] for i in range(0, len(text), CHECK_CHARS)]

    def max_token_length(self, input_bytes: int) -> int:
        return len(self._prefix) + self.DIGEST_CHARS  # v2: 36 digest + 7 check characters


def upgrade_v1_token(token: str) -> str:
    """The v2 token of a v1 hmac token (its key id, the first 36 characters of its digest, and
    the check value); no key is needed. The README's SQL does the same in a table."""
    if not HMAC_V1.matches(token) or POC.matches(token):
        raise ValueError("not an hmac v1 token")
    body = "tok2_" + token[4:-(HMAC_DIGEST_CHARS - V2_DIGEST_CHARS)]
    return body + check_value(CHECK_SALT + body)[:CHECK_CHARS]


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
