"""Every built-in token format is recognised by every built-in tokenizer, under any key id:
changing the tokenizer or its key never wraps a token in another (issue 14, item 3). Plaintext
that only has a token's shape is tokenized: hmac v2 tokens carry a check value, verified in SQL
and in Python alike (issue 14, item 2). Tokens this configuration did not make are counted and
reported with what made them."""

from __future__ import annotations

import logging
import re

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datahub_tokenize_action import TokenizeRequest, load_tokenizer
from datahub_tokenize_action._warehouses.postgres import PostgresTokenizer
from datahub_tokenize_action._runner import run_request
from datahub_tokenize_action._tokenizers import CHECK_CHARS, upgrade_v1_token

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


def _flip(token: str, at: int) -> str:
    """``token`` with one character changed (still base64url)."""
    return token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1:]


_V2 = _hmac("k1").tokenize("alice@example.com")
#: Values with a token's shape that no tokenizer made: each must be tokenized.
LOOKALIKES = [
    "tok_alice_SSN_123456789",
    "tok_alice_SSN_123456789_DOB_1990-01-01_and_more_text",  # free text, v1 length range
    "tok_k1_" + "x" * 42 + "!",
    "tok__" + "x" * 43,  # no key id
    "tok_poc",
    "tok_" + "x" * 43,
    "tok_alice_" + "x" * 42,  # v1-shaped, one digest character short
    "tok_alice_" + "x" * 44,  # one too many
    "tok2_alice_" + "x" * 43,  # v2-shaped, check value wrong
    "tok2_k1_SSN_123456789_DOB_1990-01-01_call_me_later",  # free text of the v2 shape
    _flip(_V2, len(_V2) - 1),  # a token whose check value was changed
    _flip(_V2, 10),  # a token whose digest was changed
    _V2[:-CHECK_CHARS] + _V2[-CHECK_CHARS:].swapcase(),  # letter case changed
    _V2.upper(),
    _V2 + "\n",
]


@pytest.mark.parametrize("value", LOOKALIKES)
def test_values_only_shaped_like_tokens_are_plaintext(value):
    for tok in (_hmac("k1"), _hmac("k9", OTHER_KEY), load_tokenizer("poc", {})):
        assert not tok.is_token(value)
        assert tok.token_origin(value) is None
        assert tok.plaintext_mask([value]) == [True]


def test_hmac_v2_tokens_fail_their_check_when_any_character_changes():
    tok = _hmac("k1")
    token = tok.tokenize("bob@example.com")
    assert tok.is_token(token)
    assert not any(tok.is_token(_flip(token, i)) for i in range(5, len(token)) if token[i] != "_")


def test_a_v1_token_converts_to_the_v2_token_of_the_same_value_without_the_key():
    new, old = _hmac("k1"), load_tokenizer("hmac", {"key": HMAC_KEY, "key_id": "k1", "token_version": 1})
    for value in ("alice@example.com", "", "zoë", "x" * 5000):
        assert upgrade_v1_token(old.tokenize(value)) == new.tokenize(value)
    with pytest.raises(ValueError):
        upgrade_v1_token("tok_alice_SSN")


def test_token_version_1_writes_v1_tokens_and_counts_them_as_its_own():
    tok = load_tokenizer("hmac", {"key": HMAC_KEY, "key_id": "k1", "token_version": 1})
    token = tok.tokenize("alice")
    assert token.startswith("tok_k1_") and len(token) == 4 + 2 + 1 + 43
    assert tok.token_origin(token) == ("hmac v1", "k1", True)
    assert tok.token_origin(_hmac("k1").tokenize("alice")) == ("hmac", "k1", False)
    assert tok.max_token_length(10) == len(token)


def test_v1_tokens_stop_being_recognised_when_turned_off():
    v1_token = load_tokenizer("hmac", {"key": HMAC_KEY, "key_id": "k1", "token_version": 1}).tokenize("alice")
    assert _hmac("k1").is_token(v1_token)
    off = load_tokenizer("hmac", {"key": HMAC_KEY, "key_id": "k1", "recognise_v1_tokens": False})
    assert not off.is_token(v1_token) and off.is_token(off.tokenize("alice"))


def test_the_origin_of_a_token_tells_current_retired_unconfigured_keys_and_other_formats():
    tok = _hmac("k2", retired=("k1",))
    current = tok.tokenize("alice")
    retired = _hmac("k1", OTHER_KEY).tokenize("alice")
    stranger = _hmac("k0", OTHER_KEY).tokenize("alice")
    poc = load_tokenizer("poc", {}).tokenize("alice")
    v1 = load_tokenizer("hmac", {"key": HMAC_KEY, "key_id": "k2", "token_version": 1}).tokenize("alice")
    assert tok.token_origin(current) == ("hmac", "k2", True)
    assert tok.token_origin(retired) == ("hmac", "k1", True)
    assert tok.token_origin(stranger) == ("hmac", "k0", False)
    assert tok.token_origin(poc) == ("poc", None, False)
    assert tok.token_origin(v1) == ("hmac v1", "k2", False)
    assert tok.token_origin("alice") is None
    assert load_tokenizer("poc", {}).token_origin(poc) == ("poc", None, True)
    assert load_tokenizer("poc", {}).token_origin(current) == ("hmac", "k2", False)


def test_the_configured_regex_matches_exactly_the_tokens_whose_origin_is_configured():
    hmac_tok, poc_tok = _hmac("k2", retired=("k1",)), load_tokenizer("poc", {})
    tokens = [
        load_tokenizer("hmac", {"key": HMAC_KEY, "key_id": "k2", "token_version": 1}).tokenize("alice"),
        hmac_tok.tokenize("alice"),
        _hmac("k1", OTHER_KEY).tokenize("alice"),
        _hmac("k0", OTHER_KEY).tokenize("alice"),
        _hmac("k22", OTHER_KEY).tokenize("alice"),  # a key id that starts like a configured one
        poc_tok.tokenize("alice"),
        poc_tok.tokenize("alice" * 40),
    ]
    assert all(poc_tok.is_token(t) and hmac_tok.is_token(t) for t in tokens)
    for tok in (hmac_tok, poc_tok):
        for token in filter(tok.is_token, tokens):
            configured = re.search(tok.configured_token_regex, token) is not None
            assert configured == tok.token_origin(token).configured, (tok, token)


def test_builtin_regexes_stay_within_what_postgres_and_java_read_alike():
    for tok in (_hmac("k2", retired=("k1",)), load_tokenizer("poc", {})):
        for regex in (tok.token_regex, tok.configured_token_regex):
            assert regex.startswith("^") and regex.endswith("$")
            assert not re.search(r"\{\d|\\|\(\?|\[\[", regex), "no {m,n}, escapes, (?...) or [[:class:]]"
        for pattern in tok.token_patterns:
            assert pattern.regex.startswith("^") and pattern.regex.endswith("$")
            assert not re.search(r"\{\d|\\|\(\?|\[\[", pattern.regex)


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
    ({"type": "poc"}, {"type": "hmac", "key": HMAC_KEY, "key_id": "k1"}),
    ({"type": "hmac", "key": HMAC_KEY, "key_id": "k1", "token_version": 1}, {"type": "hmac", "key": HMAC_KEY, "key_id": "k1"}),
], ids=["hmac-then-poc", "poc-then-hmac", "hmac-v1-then-v2"])
def test_a_table_tokenized_with_one_format_is_left_alone_by_the_other(pg, before, after, caplog):
    table, tokenized = _tokenized_table(pg, before)
    with caplog.at_level(logging.INFO):
        second = run_request(pg.config(after), TokenizeRequest(pg.urn(table), ("email", "phone")))
    assert second.rows_updated == 0
    assert second.values_tokenized == {"email": 0, "phone": 0}
    assert second.values_skipped == {"email": 7, "phone": 5}
    assert second.tokens_not_configured == {"email": 7, "phone": 5}, "another format: reported"
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
def test_tokens_of_a_key_id_not_configured_are_reported_with_a_count_and_the_key_id(pg, caplog):
    table, _ = _tokenized_table(pg, {"type": "hmac", "key": OTHER_KEY, "key_id": "k1"})
    config = pg.config({"type": "hmac", "key": HMAC_KEY, "key_id": "k2"})
    with caplog.at_level(logging.WARNING):
        result = run_request(config, TokenizeRequest(pg.urn(table), ("email", "phone")))
    assert result.tokens_not_configured == {"email": 7, "phone": 5}
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("12 value(s)" in m and "email: 7, phone: 5" in m and "12 hmac token(s) under key id 'k1'" in m
               and "add it to retired_key_ids" in m for m in warnings), warnings
    # Listed as retired: expected, so not reported.
    config = pg.config({"type": "hmac", "key": HMAC_KEY, "key_id": "k2", "retired_key_ids": ["k1"]})
    assert run_request(config, TokenizeRequest(pg.urn(table), ("email", "phone"))).tokens_not_configured == {
        "email": 0, "phone": 0}


@pytest.mark.postgres
def test_plaintext_shaped_like_a_token_is_tokenized_and_real_tokens_are_not(pg):
    tok = _hmac("k1")
    stranger = _hmac("k9", OTHER_KEY).tokenize("carol")  # a real token under a key id not configured
    values = [*LOOKALIKES, tok.tokenize("alice"), stranger]
    table = pg.create_table([("id", "int"), ("email", "text")], list(enumerate(values, 1)))
    result = run_request(pg.config({"type": "hmac", "key": HMAC_KEY, "key_id": "k1"}),
                         TokenizeRequest(pg.urn(table), ("email",)))
    assert result.values_tokenized == {"email": len(LOOKALIKES)}
    assert result.values_skipped == {"email": 2} and result.tokens_not_configured == {"email": 1}
    assert [v for _, v in pg.rows(table)] == [*map(tok.tokenize, LOOKALIKES), tok.tokenize("alice"), stranger]


# Values the SQL guard and Python must classify alike: tokens of every format and key id,
# the look-alikes above, and mutations of real tokens (one character, letter case, cut, extended).
_token_values = st.builds(
    lambda key_id, version, value: load_tokenizer(
        "hmac", {"key": HMAC_KEY, "key_id": key_id, "token_version": version}).tokenize(value),
    st.text("abcXYZ019", min_size=1, max_size=16), st.sampled_from([1, 2]), st.text(max_size=30),
) | st.builds(lambda v: load_tokenizer("poc", {}).tokenize(v), st.text(max_size=40))


@st.composite
def _guard_corpus(draw):
    token = draw(_token_values)
    how = draw(st.sampled_from(["as is", "flip", "case", "cut", "extend", "lookalike", "text"]))
    if how == "flip":
        return _flip(token, draw(st.integers(0, len(token) - 1)))
    if how == "case":
        return token.swapcase()
    if how == "cut":
        return token[:draw(st.integers(0, len(token) - 1))]
    if how == "extend":
        return token + draw(st.text(min_size=1, max_size=3))
    if how == "lookalike":
        return draw(st.sampled_from(LOOKALIKES))
    if how == "text":
        return draw(st.text(max_size=80))
    return token


@pytest.mark.postgres
# The fixture is only read (one database), so reusing it across examples is safe.
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(_guard_corpus(), min_size=300, max_size=300))
def test_the_postgres_guard_classifies_every_value_as_python_does(pg, values):
    values = [v.replace("\x00", "") for v in values]  # Postgres text holds no NUL
    for tok in (_hmac("k1"), load_tokenizer("poc", {}),
                load_tokenizer("hmac", {"key": HMAC_KEY, "recognise_v1_tokens": False})):
        wt = PostgresTokenizer(pg.config().connections[0], tok)
        v = sa.column("v", sa.Text)
        stmt = sa.select(v, wt.is_token_clause(v)).select_from(
            sa.func.unnest(sa.literal(values, sa.ARRAY(sa.Text))).table_valued("v").render_derived(name="u"))
        with pg.engine.connect() as conn:
            got = {value: bool(is_token) for value, is_token in conn.execute(stmt)}
        assert got == {value: tok.is_token(value) for value in values}, tok


_V1_UPGRADE_SQL_MARK = "-- upgrade hmac v1 tokens to v2"


def _readme_upgrade_sql() -> str:
    import pathlib

    readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    block = readme.split(_V1_UPGRADE_SQL_MARK, 1)[1].split("```", 1)[0]
    return _V1_UPGRADE_SQL_MARK + block


@pytest.mark.postgres
def test_the_readme_sql_upgrades_v1_tokens_to_exactly_their_v2_tokens(pg, caplog):
    v1 = {"type": "hmac", "key": HMAC_KEY, "key_id": "k1", "token_version": 1}
    table, _ = _tokenized_table(pg, v1)
    plain = [(i, f"user{i}@example.com") for i in range(1, 8)]
    with caplog.at_level(logging.WARNING):
        before = run_request(pg.config({"type": "hmac", "key": HMAC_KEY, "key_id": "k1"}),
                             TokenizeRequest(pg.urn(table), ("email", "phone")))
    assert before.tokens_not_configured == {"email": 7, "phone": 5} and before.rows_updated == 0
    assert "hmac v1 token(s) under key id 'k1'" in caplog.text
    sql = _readme_upgrade_sql().replace("public.customers", f"public.{table}")
    for column in ("email", "phone"):
        pg.execute(sql.replace("email", column))
    tok = _hmac("k1")
    assert [(i, e) for i, e, _ in pg.rows(table)] == [(i, tok.tokenize(e)) for i, e in plain]
    after = run_request(pg.config({"type": "hmac", "key": HMAC_KEY, "key_id": "k1"}),
                        TokenizeRequest(pg.urn(table), ("email", "phone")))
    assert after.rows_updated == 0 and after.tokens_not_configured == {"email": 0, "phone": 0}
    assert after.values_skipped == {"email": 7, "phone": 5}
