"""Token formats: determinism, recognition, width bounds, plugin loading."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datahub_tokenize_action import (
    ConfigError,
    HmacTokenizer,
    PocTokenizer,
    Tokenizer,
    UnknownTokenizerError,
    available_tokenizers,
    load_tokenizer,
)

KEY = "unit-test-key-0123456789"
TOKENIZERS = {
    "hmac": lambda: load_tokenizer("hmac", {"key": KEY}),
    "poc": lambda: load_tokenizer("poc", {}),
}
# Built once for the property tests: `load_tokenizer` reads every installed package's entry
# points (~2 ms, >100 dist-info directories), which was nearly all of an example's time (four
# builds per example) and what a busy machine stretched past Hypothesis's deadline. Two
# instances of each, so determinism is still checked across instances.
BUILT = {name: (make(), make()) for name, make in TOKENIZERS.items()}
# The plugin class resolved once; examples that vary the key build it from its options
# (the entry point lookup itself is tested below, once).
HMAC_CLASS = available_tokenizers()["hmac"].load()
# The property tests run without Hypothesis's per-example deadline (200 ms by default): it is a
# timing assertion, and a loaded machine failed it while every value was right. What they check
# is the values; how long a batch takes is measured by the benchmark, not asserted here.
PROPERTIES = settings(deadline=None)
# Plaintext as it appears in PII columns (the poc format is an encoding: a string shaped
# exactly like one of its tokens is not realistic plaintext).
plaintext = st.text(min_size=1).filter(lambda s: not s.startswith("tok_"))


@pytest.fixture(params=sorted(TOKENIZERS))
def tokenizer(request) -> Tokenizer:
    return TOKENIZERS[request.param]()


@settings(PROPERTIES, max_examples=200)
@given(value=plaintext)
def test_every_tokenizer_is_deterministic_and_recognises_its_tokens(value):
    for a, b in BUILT.values():
        token = a.tokenize(value)
        assert token == b.tokenize(value)
        assert a.is_token(token)
        assert not a.is_token(value)
        assert a.tokenize(token) == token  # tokenizing a token is a no-op
        assert a.tokenize_many([value, value]) == [token, token]


@settings(PROPERTIES, max_examples=200)
@given(value=plaintext)
def test_tokens_fit_the_announced_maximum_length(value):
    for tok, _ in BUILT.values():
        assert len(tok.tokenize(value)) <= tok.max_token_length(len(value.encode("utf-8")))


@PROPERTIES
@given(value=plaintext)
def test_the_token_regex_is_anchored_and_agrees_with_is_token(value):
    for tok, _ in BUILT.values():
        token = tok.tokenize(value)
        assert re.search(tok.token_regex, token)
        assert not re.search(tok.token_regex, "x" + token)
        assert not tok.is_token(token + "!")
        assert not tok.is_token(token[:-20])


def test_the_token_regex_has_no_bounded_repetition_postgres_evaluates_slowly(tokenizer):
    assert not re.search(r"\{\d", tokenizer.token_regex)


# Keys of 16 or more distinct characters (random text of 16 characters may repeat one
# character, which the key strength check refuses), in any order, with any text after them.
strong_keys = st.builds(
    lambda head, tail: "".join(head) + tail,
    st.lists(st.characters(exclude_categories=("Cs",)), min_size=16, max_size=40, unique=True),
    st.text(max_size=160),
)


@settings(PROPERTIES, max_examples=100)
@given(value=st.text(), key=strong_keys)
def test_hmac_tokens_are_rfc2104_hmac_sha256_in_base64url(value, key):
    expected = base64.urlsafe_b64encode(hmac.digest(key.encode(), value.encode(), "sha256")).decode().rstrip("=")
    v1 = HMAC_CLASS.create({"key": key, "key_id": "k1", "token_version": 1})
    assert v1.tokenize_many([value]) == [f"tok_k1_{expected}"]
    # v2: the first 36 digest characters, then 7 of base64url(SHA-256(salt + all before them)).
    body = f"tok2_k1_{expected[:36]}"
    check = base64.urlsafe_b64encode(hashlib.sha256(f"datahub-tokenize check:{body}".encode()).digest()).decode()[:7]
    assert HMAC_CLASS.create({"key": key, "key_id": "k1"}).tokenize_many([value]) == [body + check]


def test_hmac_tokens_carry_the_key_id_and_differ_per_key():
    a = load_tokenizer("hmac", {"key": KEY, "key_id": "k2026"})
    b = load_tokenizer("hmac", {"key": KEY + "-rotated", "key_id": "k2027"})
    ta, tb = a.tokenize("alice@example.com"), b.tokenize("alice@example.com")
    assert ta.startswith("tok2_k2026_") and tb.startswith("tok2_k2027_")
    assert ta != tb
    assert b.is_token(ta), "tokens made under an old key are still recognised after rotation"


def test_hmac_key_id_defaults_to_a_digest_of_the_key_not_the_key():
    tok = load_tokenizer("hmac", {"key": KEY})
    assert re.fullmatch(r"[0-9a-f]{8}", tok.key_id)
    assert KEY not in repr(tok)


def test_hmac_refuses_a_short_key_without_echoing_it():
    with pytest.raises(ConfigError, match="shorter than 16") as info:
        load_tokenizer("hmac", {"key": "short-Secret"})
    assert "short-Secret" not in str(info.value)


@pytest.mark.parametrize("key", [
    "a" * 16,  # the example: one repeated letter
    "A" * 64,
    "abababababababab",
    "passwordpassword",  # 7 distinct characters
    "0000000011111111222222223333333344444444",  # 5 distinct characters
])
def test_hmac_refuses_a_key_with_too_little_entropy_naming_the_setting_and_the_fix(key):
    with pytest.raises(ConfigError) as info:
        load_tokenizer("hmac", {"key": key})
    message = str(info.value)
    assert "tokenizer.key has too little entropy" in message
    assert "openssl rand -base64 32" in message
    assert key not in message and key[:8] not in message


@pytest.mark.parametrize("key", [
    KEY,
    "test-hmac-key-0123456789abcdef",  # tests/harness.py
    "demo-only-key-do-not-use-in-production",  # make demo
    "0123456789abcdefgh",  # tests/test_config.py
    "cli-hmac-key-Secret-0123456789",  # tests/test_cli.py
    "deploy-test-hmac-key-0123456789",  # tests/test_deploy.py
    "benchmark-hmac-key-0123456789abcdef",  # benchmarks/
    "REPLACE-with-openssl-rand-base64-32",  # the Helm secret's placeholder (accepted: it is long and varied)
    "q3J+0xk1VbW9o2cY5nZ8Hf/LrA4dT7eP6sGmUiKjQwE=",  # `openssl rand -base64 32`
    "3f9a0c1b7e2d4a6f",  # 16 random hex digits
])
def test_hmac_accepts_keys_of_varied_characters(key):
    assert load_tokenizer("hmac", {"key": key}).key_id


def test_the_key_strength_estimate_is_the_shannon_entropy_of_the_characters_times_the_length():
    from datahub_tokenize_action._tokenizers import key_strength

    assert key_strength("a" * 16) == (1, 0.0)
    assert key_strength("ab" * 8) == (2, 16.0)
    assert key_strength("0123456789abcdef") == (16, 64.0)


def test_hmac_refuses_unknown_options():
    with pytest.raises(ConfigError, match="kee"):
        load_tokenizer("hmac", {"key": KEY, "kee": 1})


def test_poc_is_the_seeds_base64_format():
    assert PocTokenizer().tokenize("alice@example.com") == "tok_YWxpY2VAZXhhbXBsZS5jb20=_poc"


def test_builtins_are_registered_as_entry_points_like_any_plugin():
    found = available_tokenizers()
    assert found["hmac"].load() is HmacTokenizer
    assert found["poc"].load() is PocTokenizer


def test_an_unknown_tokenizer_type_names_the_installed_ones():
    with pytest.raises(UnknownTokenizerError, match="'vault'.*hmac, poc"):
        load_tokenizer("vault", {})


def test_the_default_batch_form_calls_tokenize_once_per_distinct_value():
    calls = []

    class Vault(Tokenizer):
        token_regex = "^v:[0-9]+$"

        def tokenize(self, value):
            calls.append(value)
            return f"v:{len(calls)}"

        def max_token_length(self, input_bytes):
            return 12

    assert Vault().tokenize_many(["de", "fr", "de", "de", "fr", "it"]) == ["v:1", "v:2", "v:1", "v:1", "v:2", "v:3"]
    assert calls == ["de", "fr", "it"]


@pytest.mark.parametrize("name", sorted(TOKENIZERS))
def test_builtins_skip_the_per_token_check_only_because_their_tokens_always_match(name):
    # The loop trusts built-ins (verify_tokens False): their batch form must agree with is_token
    # (empty strings are never tokenized: they stay empty).
    tok = TOKENIZERS[name]()
    assert tok.verify_tokens is False
    values = ["a", "zoë@exämple.com", "x" * 5000, "tok_", "\n", "日本"]
    assert all(tok.is_token(t) for t in tok.tokenize_many(values))


@pytest.mark.parametrize("values", [
    [["Berlin", "Lagos", "Osaka"][i % 3] for i in range(3000)],  # repeats: each distinct value hashed once
    [f"user{i}@example.com" for i in range(3000)],  # distinct: hashed one by one
    ["a"] + [f"v{i}" for i in range(1500)] + ["a"] * 1500,  # repeats only after the sample
])
def test_hmac_batches_give_each_value_its_own_token_whether_or_not_values_repeat(values):
    tok = TOKENIZERS["hmac"]()
    expected = [tok.tokenize(v) for v in values]
    assert tok.tokenize_many(values) == expected
    assert tok.tokenize_many(iter(values)) == expected
