"""Every built-in token format is recognised by every built-in tokenizer, under any key id:
changing the tokenizer or its key never wraps a token in another (issue 14, item 3)."""

from __future__ import annotations

import logging
import re

import pytest

from datahub_tokenize_action import TokenizeRequest, load_tokenizer
from datahub_tokenize_action._runner import run_request

from .harness import HMAC_KEY

OTHER_KEY = "other-hmac-key-9876543210fedcba"


def _hmac(key_id: str, key: str = HMAC_KEY, retired: tuple[str, ...] = ()):
    options = {"key": key, "key_id": key_id}
    if retired:
        options["retired_key_ids"] = list(retired)
    return load_tokenizer("hmac", options)


# ------------------------------------------------------------------ pure


def test_poc_recognises_hmac_tokens_and_leaves_them_as_they_are():
    poc, token = load_tokenizer("poc", {}), _hmac("k1").tokenize("alice@example.com")
    assert poc.is_token(token)
    assert poc.tokenize(token) == token
    assert poc.plaintext_mask([token, "alice@example.com"]) == [False, True]


@pytest.mark.parametrize("key_id", ["k", "k1", "k2027", "A" * 16])
def test_hmac_tokens_of_any_key_id_are_recognised_by_every_builtin(key_id):
    token = _hmac(key_id, OTHER_KEY).tokenize("alice@example.com")
    for tok in (_hmac("k2"), load_tokenizer("hmac", {"key": HMAC_KEY}), load_tokenizer("poc", {})):
        assert tok.is_token(token)


@pytest.mark.parametrize("value", [
    "tok_alice_SSN_123456789",
    "tok_k1_" + "x" * 42 + "!",
    "tok__" + "x" * 43,  # no key id
    "tok_poc",
    "tok_" + "x" * 43,
])
def test_values_only_shaped_like_tokens_are_plaintext(value):
    for tok in (_hmac("k1"), load_tokenizer("poc", {})):
        assert not tok.is_token(value)


@pytest.mark.parametrize("value", [
    "tok_alice_" + "x" * 42,  # hmac-shaped, one digest character short
    "tok_alice_" + "x" * 44,  # one too many
])
def test_poc_takes_only_hmac_tokens_of_the_exact_digest_length_for_tokens(value):
    # The hmac guard still takes these (its length range admits any key id of 1-16 characters):
    # telling them from tokens is issue 14 item 2.
    assert not load_tokenizer("poc", {}).is_token(value)
    assert load_tokenizer("poc", {}).token_origin(value) is None


def test_the_origin_of_a_token_tells_current_retired_unconfigured_keys_and_other_formats():
    tok = _hmac("k2", retired=("k1",))
    current = tok.tokenize("alice")
    retired = _hmac("k1", OTHER_KEY).tokenize("alice")
    stranger = _hmac("k0", OTHER_KEY).tokenize("alice")
    poc = load_tokenizer("poc", {}).tokenize("alice")
    assert tok.token_origin(current) == ("hmac", "k2", True)
    assert tok.token_origin(retired) == ("hmac", "k1", True)
    assert tok.token_origin(stranger) == ("hmac", "k0", False)
    assert tok.token_origin(poc) is None  # the hmac guard does not take poc tokens yet (see below)
    assert tok.token_origin("alice") is None
    assert load_tokenizer("poc", {}).token_origin(poc) == ("poc", None, True)
    assert load_tokenizer("poc", {}).token_origin(current) == ("hmac", "k2", False)


def test_the_configured_regex_matches_exactly_the_tokens_whose_origin_is_configured():
    hmac_tok, poc_tok = _hmac("k2", retired=("k1",)), load_tokenizer("poc", {})
    tokens = [
        hmac_tok.tokenize("alice"),
        _hmac("k1", OTHER_KEY).tokenize("alice"),
        _hmac("k0", OTHER_KEY).tokenize("alice"),
        _hmac("k22", OTHER_KEY).tokenize("alice"),  # a key id that starts like a configured one
        poc_tok.tokenize("alice"),
        poc_tok.tokenize("alice" * 40),
    ]
    assert all(poc_tok.is_token(t) for t in tokens)
    for tok in (hmac_tok, poc_tok):
        for token in filter(tok.is_token, tokens):
            configured = re.search(tok.configured_token_regex, token) is not None
            assert configured == tok.token_origin(token).configured, (tok, token)


def test_builtin_regexes_stay_within_what_postgres_and_java_read_alike():
    for tok in (_hmac("k2", retired=("k1",)), load_tokenizer("poc", {})):
        for regex in (tok.token_regex, tok.configured_token_regex):
            assert regex.startswith("^") and regex.endswith("$")
            assert not re.search(r"\{\d|\\|\(\?|\[\[", regex), "no {m,n}, escapes, (?...) or [[:class:]]"


@pytest.mark.parametrize("retired", [["k-1"], [""], ["x" * 17]])
def test_retired_key_ids_are_key_id_shaped(retired):
    from datahub_tokenize_action import ConfigError

    with pytest.raises(ConfigError, match="retired_key_ids"):
        load_tokenizer("hmac", {"key": HMAC_KEY, "retired_key_ids": retired})


def test_the_current_key_id_cannot_also_be_retired():
    from datahub_tokenize_action import ConfigError

    with pytest.raises(ConfigError, match="retired_key_ids lists the current key id 'k1'"):
        _hmac("k1", retired=("k1",))


# ------------------------------------------------------------- Postgres


def _tokenized_table(pg, tokenizer: dict) -> tuple[str, list]:
    rows = [(i, f"user{i}@example.com", None if i % 3 == 0 else f"+49 30 {i:07d}") for i in range(1, 8)]
    table = pg.create_table([("id", "int"), ("email", "text"), ("phone", "text")], rows)
    first = run_request(pg.config(tokenizer), TokenizeRequest(pg.urn(table), ("email", "phone")))
    assert first.rows_updated == 7
    return table, pg.rows(table)


@pytest.mark.postgres
@pytest.mark.parametrize("before, after", [
    ({"type": "hmac", "key": HMAC_KEY, "key_id": "k1"}, {"type": "poc"}),
    pytest.param(
        {"type": "poc"}, {"type": "hmac", "key": HMAC_KEY, "key_id": "k1"},
        marks=pytest.mark.xfail(strict=True, reason="the hmac guard does not recognise poc tokens yet: it needs "
                                "the loop to OR one (regex, length range) pair per format (issue 14 item 3)"),
    ),
], ids=["hmac-then-poc", "poc-then-hmac"])
def test_a_table_tokenized_with_one_format_is_left_alone_by_the_other(pg, before, after, caplog):
    table, tokenized = _tokenized_table(pg, before)
    with caplog.at_level(logging.INFO):
        second = run_request(pg.config(after), TokenizeRequest(pg.urn(table), ("email", "phone")))
    assert second.rows_updated == 0
    assert second.values_tokenized == {"email": 0, "phone": 0}
    assert second.values_skipped == {"email": 7, "phone": 5}
    assert "14 already tokens" not in caplog.text and "12 already tokens" in caplog.text
    assert pg.rows(table) == tokenized


@pytest.mark.postgres
def test_a_table_tokenized_under_a_retired_key_is_left_alone(pg):
    table, tokenized = _tokenized_table(pg, {"type": "hmac", "key": OTHER_KEY, "key_id": "k1"})
    config = pg.config({"type": "hmac", "key": HMAC_KEY, "key_id": "k2", "retired_key_ids": ["k1"]})
    second = run_request(config, TokenizeRequest(pg.urn(table), ("email", "phone")))
    assert (second.rows_updated, second.values_skipped) == (0, {"email": 7, "phone": 5})
    assert pg.rows(table) == tokenized


@pytest.mark.postgres
def test_tokens_of_a_key_id_not_configured_are_skipped_not_wrapped(pg):
    table, tokenized = _tokenized_table(pg, {"type": "hmac", "key": OTHER_KEY, "key_id": "k1"})
    config = pg.config({"type": "hmac", "key": HMAC_KEY, "key_id": "k2"})
    second = run_request(config, TokenizeRequest(pg.urn(table), ("email", "phone")))
    assert (second.rows_updated, second.values_skipped) == (0, {"email": 7, "phone": 5})
    assert pg.rows(table) == tokenized


@pytest.mark.postgres
@pytest.mark.xfail(strict=True, reason="needs the loop (_warehouse.py) to count tokens the guard recognises but "
                   "configured_token_regex does not match, and to warn naming their key ids (issue 14 item 3; "
                   "see the tokenizer's configured_token_regex / token_origin)")
def test_tokens_of_a_key_id_not_configured_are_reported_with_a_count_and_the_key_id(pg, caplog):
    table, _ = _tokenized_table(pg, {"type": "hmac", "key": OTHER_KEY, "key_id": "k1"})
    config = pg.config({"type": "hmac", "key": HMAC_KEY, "key_id": "k2"})
    with caplog.at_level(logging.WARNING):
        run_request(config, TokenizeRequest(pg.urn(table), ("email", "phone")))
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("'k1'" in m and "12" in m for m in warnings), warnings
