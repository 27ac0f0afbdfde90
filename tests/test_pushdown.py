"""Pushdown on a real Postgres: one UPDATE computing hmac v2 tokens in the warehouse.

Tokens made by Postgres must be the tokenizer's, byte for byte (the tables a pushdown and a
loop run leave are compared whole), the key must never reach statement text (checked in the
server's log with every statement logged), and ``run.pushdown`` must choose as documented.
"""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datahub_tokenize_action import (
    PushdownUnavailableError,
    TokenizeRequest,
    WarehouseWriteError,
    parse_config,
    run_request,
)
from datahub_tokenize_action._tokenizers import load_tokenizer

from .harness import HMAC_KEY, PostgresHarness, throwaway_cluster
from .test_spark import TRICKY

#: Keys shorter than, exactly, and longer than SHA-256's 64-byte block (hashed first, RFC 2104).
KEYS = {
    "short": HMAC_KEY,
    "block": "Zx8r5pQ2LmN7vB3kT9wYcD4hJ6sF1gA0" * 2,
    "long": "Qm4tY7wE2rU9iO0pA5sD8fG1hJ3kL6zX" * 3 + "ünï",
}


def _rows(values):
    return [(i, v, None if v is None else v[::-1]) for i, v in enumerate(values)]


def _tokenize(pg, table, tokenizer=None, **run):
    return run_request(pg.config(tokenizer, **run), TokenizeRequest(pg.urn(table), ("email", "phone")))


@pytest.mark.parametrize("key", list(KEYS))
def test_pushdown_leaves_exactly_the_table_the_loop_leaves(pg, key):
    tokenizer = {"type": "hmac", "key": KEYS[key], "key_id": "k1"}
    tok = load_tokenizer("hmac", {"key": KEYS[key], "key_id": "k1"})
    values = [*TRICKY, None, tok.tokenize("already a token"), "tok2_k1_" + "A" * 43]
    columns = [("id", "int"), ("email", "text"), ("phone", "varchar(6000)")]
    pushed = pg.create_table(columns, _rows(values))
    looped = pg.create_table(columns, _rows(values))
    a = _tokenize(pg, pushed, tokenizer, pushdown="always")
    b = _tokenize(pg, looped, tokenizer, pushdown="never")
    assert (a.method, b.method) == ("pushdown", "loop")
    assert pg.rows(pushed) == pg.rows(looped)
    for row in pg.rows(pushed):
        want = values[row[0]]
        assert row[1] == (tok.tokenize(want) if want else want)
    same = ("rows_scanned", "rows_updated", "values_tokenized", "values_skipped", "nulls", "empty_strings")
    assert {f: getattr(a, f) for f in same} == {f: getattr(b, f) for f in same}
    again = _tokenize(pg, pushed, tokenizer, pushdown="always")
    assert again.rows_updated == 0 and sum(again.values_tokenized.values()) == 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                        min_size=1, max_size=200), min_size=1, max_size=30))
def test_any_text_gets_the_tokenizers_token_from_postgres(pg, values):
    tok = load_tokenizer("hmac", {"key": HMAC_KEY})
    table = pg.create_table([("id", "int"), ("email", "text"), ("phone", "text")], _rows(values))
    result = _tokenize(pg, table, pushdown="always")
    assert result.method == "pushdown"
    for i, email, phone in pg.rows(table):
        assert email == (values[i] if tok.is_token(values[i]) else tok.tokenize(values[i]))
        assert phone == (values[i][::-1] if tok.is_token(values[i][::-1]) else tok.tokenize(values[i][::-1]))


def test_no_key_material_reaches_the_servers_statement_log():
    # Every statement logged, and a failing one (logged with its text at ERROR) as well.
    with throwaway_cluster("log_statement=all", "log_min_error_statement=error") as cluster:
        pg = PostgresHarness(cluster.server_url(), "postgres")
        try:
            tok = load_tokenizer("hmac", {"key": HMAC_KEY})
            form = tok.sql_form()
            table = pg.create_table([("id", "int"), ("email", "text"), ("phone", "text")],
                                    _rows([f"user{i}@example.com" for i in range(50)]))
            assert _tokenize(pg, table, pushdown="always").rows_updated == 50
            failing = pg.create_table([("id", "int"), ("email", "varchar(80) CHECK (email NOT LIKE 'tok2_%')"),
                                       ("phone", "text")], _rows(["bob@example.com"]))
            with pytest.raises(WarehouseWriteError, match="violates check constraint"):
                _tokenize(pg, failing, pushdown="always")
        finally:
            pg.close()
        log = open(cluster.log_path, encoding="utf-8", errors="replace").read()
    assert "pg_temp.datahub_tokenize_v2" in log and "COPY pg_temp.datahub_tokenize_key" in log, "logging is on"
    assert "ERROR:  new row" in log and "STATEMENT:  UPDATE" in log, "the failing UPDATE is logged"
    for secret in (HMAC_KEY, form.ipad.hex(), form.opad.hex(), form.ipad.hex().upper(), form.opad.hex().upper()):
        assert secret not in log


def test_auto_keeps_the_loop_on_postgres_and_always_refuses_what_cannot_push_down(pg, caplog):
    table = pg.create_table([("id", "int"), ("email", "text"), ("phone", "text")],
                            _rows(["a@example.com", "b@example.com"]))
    assert _tokenize(pg, table).method == "loop"  # auto: the benchmark found no gain here (README)
    poc = pg.create_table([("id", "int"), ("email", "text"), ("phone", "text")], _rows(["a@x.org"]))
    before = pg.checksum(poc)
    with pytest.raises(PushdownUnavailableError, match=r"tokenizer 'poc' has no SQL form.*Nothing was changed"):
        _tokenize(pg, poc, {"type": "poc"}, pushdown="always")
    v1 = {"type": "hmac", "key": HMAC_KEY, "token_version": 1}
    with pytest.raises(PushdownUnavailableError, match="has no SQL form"):
        _tokenize(pg, poc, v1, pushdown="always")
    pg.execute(f"CREATE FUNCTION {poc}_f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$; "
               f"CREATE TRIGGER audit BEFORE UPDATE ON {poc} FOR EACH ROW EXECUTE FUNCTION {poc}_f()")
    with pytest.raises(PushdownUnavailableError, match=r"has triggers \(audit\)"):
        _tokenize(pg, poc, pushdown="always")
    assert pg.checksum(poc) == before
    with pytest.raises(Exception, match="commit_every_batch cannot apply"):
        parse_config({"connections": [{"platform": "postgres", "url": "postgresql+psycopg2://u@h"}],
                      "tokenizer": {"type": "poc"}, "run": {"pushdown": "always", "commit_every_batch": True}})


def test_a_pushdown_dry_run_checks_the_warehouses_tokens_and_changes_nothing(pg):
    table = pg.create_table([("id", "int"), ("email", "text"), ("phone", "text")],
                            _rows(["a@example.com", "", None]))
    before = pg.checksum(table)
    result = run_request(pg.config(pushdown="always"), TokenizeRequest(pg.urn(table), ("email", "phone")),
                         dry_run=True)
    assert result.method == "pushdown" and result.dry_run
    assert (result.rows_updated, dict(result.values_tokenized)) == (1, {"email": 1, "phone": 1})
    assert pg.checksum(table) == before


def test_warehouse_tokens_that_differ_from_pythons_stop_the_run_before_it_writes(pg, monkeypatch):
    from datahub_tokenize_action._warehouses.postgres import PostgresTokenizer

    table = pg.create_table([("id", "int"), ("email", "text"), ("phone", "text")],
                            _rows(["a@example.com"]))
    before = pg.checksum(table)
    token_sql = PostgresTokenizer.token_sql
    monkeypatch.setattr(PostgresTokenizer, "token_sql",
                        lambda self, form, value: sa.func.upper(token_sql(self, form, value)))
    with pytest.raises(Exception, match=r"differ from the tokenizer's \(4 of 4 probe values\).*nothing was changed"):
        _tokenize(pg, table, pushdown="always")
    assert pg.checksum(table) == before


def test_a_pushdown_run_counts_what_postgres_says_it_updated(pg, caplog, monkeypatch):
    # Another writer between the scan and the UPDATE: the warehouse's count wins, with a warning.
    from datahub_tokenize_action._warehouses import pushdown

    table = pg.create_table([("id", "int"), ("email", "text"), ("phone", "text")],
                            _rows([f"u{i}@example.com" for i in range(10)]))
    check = pushdown.check_tokens

    def deleting_writer(wh, conn, target, form):
        pg.execute(f"DELETE FROM {table} WHERE id < 3")
        check(wh, conn, target, form)

    monkeypatch.setattr(pushdown, "check_tokens", deleting_writer)
    caplog.set_level(logging.WARNING, logger="datahub_tokenize_action")
    result = _tokenize(pg, table, pushdown="always")
    assert result.rows_updated == 7
    assert any("updated 7 row(s) where the scan before writing found 10" in r.getMessage() for r in caplog.records)
