"""The update loop on a real Postgres: the contract, plus transactions, locks and concurrency."""

from __future__ import annotations

import contextlib
import datetime
import decimal
import logging
import re
import threading
import time
import traceback
import uuid
from typing import Any, Iterator

import pytest
import sqlalchemy as sa

from datahub_tokenize_action import (
    ConfigError,
    DatabaseMismatchError,
    InsufficientPrivilegeError,
    LockTimeoutError,
    NoKeyError,
    TokenizeRequest,
    TokenizerContractError,
    TokenizerError,
    TokenRewrittenError,
    TokenTooLongError,
    UnsupportedColumnTypeError,
    UnsupportedTableError,
    WarehouseUnavailableError,
    WarehouseWriteError,
    parse_config,
)
from datahub_tokenize_action._warehouses.postgres import PostgresTokenizer
from datahub_tokenize_action._routing import route
from datahub_tokenize_action._runner import run_request, tokenize_dataset
from datahub_tokenize_action._warehouses import Batch, loop, plan

from .harness import HMAC_KEY, PostgresHarness, install_tokenizer
from .test_warehouse_contract import WarehouseContract

pytestmark = pytest.mark.postgres


class TestPostgresContract(WarehouseContract):
    @pytest.fixture
    def wh(self, pg):
        return pg


@pytest.fixture
def small_chunks(monkeypatch):
    """Apply the staged rows every few rows, so one run applies many key-range chunks
    while later batches are still being read (the path a table of millions takes)."""
    monkeypatch.setattr(PostgresTokenizer, "APPLY_EVERY_ROWS", 3)


class TestPostgresContractInChunks(WarehouseContract):
    @pytest.fixture
    def wh(self, pg, small_chunks):
        return pg


def _emails(n: int) -> list[tuple[int, str]]:
    return [(i, f"user{i}@example.com") for i in range(1, n + 1)]


def _fail_on_row(pg, table: str, row_id: int) -> None:
    """A trigger that raises when the loop writes row ``row_id``."""
    pg.execute(f"""
        CREATE FUNCTION boom_{table}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.id = {row_id} THEN RAISE EXCEPTION 'injected failure at row %', NEW.id; END IF;
          RETURN NEW;
        END $$;
        CREATE TRIGGER boom BEFORE UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION boom_{table}();
    """)


def test_a_failure_on_the_third_batch_leaves_the_table_unchanged(pg):
    table = pg.create_table([("id", "int"), ("email", "text")], _emails(100))
    _fail_on_row(pg, table, 25)  # batch_size 10: the third batch holds rows 21-30
    before = pg.checksum(table)
    with pytest.raises(WarehouseWriteError, match="injected failure.*nothing was changed") as err:
        run_request(pg.config(batch_size=10), TokenizeRequest(pg.urn(table), ("email",)))
    assert pg.checksum(table) == before
    assert err.value.permanent is True, "a trigger's RAISE recurs on a retry: not worth retrying"


def test_a_failed_commit_every_batch_run_reports_what_its_committed_batches_hold(pg):
    table = pg.create_table([("id", "int"), ("email", "text")], _emails(100))
    _fail_on_row(pg, table, 25)
    outcome = tokenize_dataset(pg.config(batch_size=10, commit_every_batch=True),
                               TokenizeRequest(pg.urn(table), ("email",)))
    result = outcome.result
    assert (result.status, result.rows_updated, result.values_tokenized) == ("FAILED", 20, {"email": 20})
    assert result.to_dict()["rows_updated"] == 20, "the run record shows what was committed"


def test_commit_every_batch_keeps_finished_batches_and_a_second_run_completes_the_table(pg):
    table = pg.create_table([("id", "int"), ("email", "text")], _emails(100))
    _fail_on_row(pg, table, 25)
    config = pg.config(batch_size=10, commit_every_batch=True)
    with pytest.raises(WarehouseWriteError, match=r"injected failure at row 25; batches committed before the failure "
                       r"stay tokenized \(20 row\(s\) updated, 20 value\(s\) tokenized\): once the cause is fixed, "
                       "run again") as err:
        run_request(config, TokenizeRequest(pg.urn(table), ("email",)))
    assert err.value.committed_counts == {"rows_updated": 20, "values_tokenized": {"email": 20}}
    tok = config.build_tokenizer()
    rows = pg.rows(table)
    assert all(tok.is_token(v) for _, v in rows[:20]) and not any(tok.is_token(v) for _, v in rows[20:])
    pg.execute(f"DROP TRIGGER boom ON {table}")
    result = run_request(config, TokenizeRequest(pg.urn(table), ("email",)))
    assert (result.values_tokenized, result.values_skipped) == ({"email": 80}, {"email": 20})
    assert [v for _, v in pg.rows(table)] == [tok.tokenize(e) for _, e in _emails(100)]


@pytest.mark.parametrize("commit_every_batch", [False, True])
def test_a_failure_while_later_batches_wait_for_the_writer_applies_none_of_them(pg, small_chunks, commit_every_batch):
    table = pg.create_table([("id", "int"), ("email", "text")], _emails(200))
    # The writer stalls on the second batch while the loop reads and queues the next
    # ones; then the third batch fails.
    pg.execute(f"""
        CREATE FUNCTION slow_boom_{table}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.id = 15 THEN PERFORM pg_sleep(0.5); END IF;
          IF NEW.id = 25 THEN RAISE EXCEPTION 'injected failure at row %', NEW.id; END IF;
          RETURN NEW;
        END $$;
        CREATE TRIGGER boom BEFORE UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION slow_boom_{table}();
    """)
    before = pg.rows(table)
    config = pg.config(batch_size=10, commit_every_batch=commit_every_batch)
    with pytest.raises(WarehouseWriteError, match="injected failure at row 25"):
        run_request(config, TokenizeRequest(pg.urn(table), ("email",)))
    tok = config.build_tokenizer()
    done = 20 if commit_every_batch else 0
    assert pg.rows(table) == [(i, tok.tokenize(e)) for i, e in before[:done]] + before[done:]


_UTC = datetime.timezone.utc


@pytest.mark.parametrize("key_type, keys", [
    # ICU orders these unlike their bytes: the chunk bounds must follow the column's collation.
    ('text COLLATE "und-x-icu"', ["b", "B", "a", "A", "ä", "Z", "z", "ß", "ss", "é", "e", "10", "9", " x"]),
    # Infinity (and NaN) have no faithful Python value: a key read as one would miss its row.
    ("timestamptz", ["infinity", "-infinity"]
     + [datetime.datetime(2024, 3, 31, tzinfo=_UTC) + datetime.timedelta(hours=7 * i) for i in range(12)]),
    ("timestamp", ["infinity", "-infinity", "2024-01-01 00:00:00.000001", "1999-12-31 23:59:59"]),
    ("uuid", [str(uuid.UUID(int=(i * 0x9E3779B97F4A7C15) % 2**128)) for i in range(14)]),
    ("numeric", ["Infinity", "-Infinity", "NaN"] + [decimal.Decimal(i) / 7 - 1 for i in range(11)]),
    ("bigint", [(-1) ** i * i * 10**15 for i in range(14)]),
    ("date", ["infinity", "-infinity"] + [datetime.date(2024, 2, 27) + datetime.timedelta(days=i) for i in range(12)]),
])
def test_chunks_bounded_by_key_range_reach_every_row_whatever_the_key_type(pg, small_chunks, key_type, keys):
    table = pg.create_table([("id", key_type), ("email", "text")], [(k, f"user{i}@x.com") for i, k in enumerate(keys)])
    config = pg.config(batch_size=2)
    result = run_request(config, TokenizeRequest(pg.urn(table), ("email",)))
    tok = config.build_tokenizer()
    assert result.rows_updated == len(keys)
    assert sorted(v for _, v in pg.rows(table)) == sorted(tok.tokenize(f"user{i}@x.com") for i in range(len(keys)))
    assert run_request(config, TokenizeRequest(pg.urn(table), ("email",))).rows_updated == 0


@contextlib.contextmanager
def _applies() -> Iterator[list[tuple[float, int]]]:
    """Each apply's (planner's estimate of the staged rows, rows staged), in order."""
    seen: list[tuple[float, int]] = []

    def before_update(conn, cursor, statement, parameters, context, executemany):
        stage = re.search(r"\(UPDATE .* FROM (_tokenize_stage_[0-9a-f]+) ", statement)
        if stage:
            with cursor.connection.cursor() as cur:
                cur.execute(f"SELECT reltuples FROM pg_class WHERE oid = 'pg_temp.{stage[1]}'::regclass")
                (estimate,) = cur.fetchone()
                cur.execute(f"SELECT count(*) FROM pg_temp.{stage[1]}")
                seen.append((estimate, cur.fetchone()[0]))

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", before_update)
    try:
        yield seen
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", before_update)


@pytest.mark.parametrize("commit_every_batch", [False, True])
def test_each_apply_lets_the_planner_know_how_many_rows_are_staged(pg, small_chunks, commit_every_batch):
    # Guessed from the stage's size, 20,000 rows of 1 kB values looked like 340,000, and the
    # join read the whole key range instead of looking each staged row up by its key.
    table = pg.create_table([("id", "int"), ("note", "text")], [(i, f"{i} " + "x" * 1000) for i in range(1, 26)])
    with _applies() as seen:
        result = run_request(pg.config(batch_size=10, commit_every_batch=commit_every_batch),
                             TokenizeRequest(pg.urn(table), ("note",)))
    assert result.rows_updated == 25
    assert [n for _, n in seen] == [10, 10, 5]
    assert all(estimate == n for estimate, n in seen), seen


def test_the_first_batch_is_applied_at_once_then_every_apply_every_rows(pg, monkeypatch):
    # Until the first apply the writer only waits for the loop to read and tokenize.
    monkeypatch.setattr(PostgresTokenizer, "APPLY_EVERY_ROWS", 30)
    table = pg.create_table([("id", "int"), ("email", "text")], _emails(105))
    config = pg.config(batch_size=10)
    with _applies() as seen:
        result = run_request(config, TokenizeRequest(pg.urn(table), ("email",)))
    assert [n for _, n in seen] == [10, 30, 30, 30, 5]
    tok = config.build_tokenizer()
    assert result.rows_updated == 105
    assert [v for _, v in pg.rows(table)] == [tok.tokenize(e) for _, e in _emails(105)]


def test_two_concurrent_runs_tokenize_every_value_exactly_once(pg):
    table = pg.create_table([("id", "int"), ("email", "text")], _emails(3000))
    config = pg.config(batch_size=100)
    results, errors = [], []

    def go() -> None:
        try:
            results.append(run_request(config, TokenizeRequest(pg.urn(table), ("email",))))
        except Exception as e:  # pragma: no cover - reported by the assert below
            errors.append(e)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(r.rows_updated for r in results) == [0, 3000]
    tok = config.build_tokenizer()
    assert [v for _, v in pg.rows(table)] == [tok.tokenize(e) for _, e in _emails(3000)]


@contextlib.contextmanager
def _run_lock_held(pg, config, table: str) -> Iterator[None]:
    """Another session holds the run lock of ``table`` while the block runs."""
    connection, ref = route(pg.urn(table), config.connections)
    wt = PostgresTokenizer(connection, config.build_tokenizer(), config.run)
    holder = pg.engine.connect()
    try:
        with wt.connect(ref) as c:
            target = plan.validate(wt, c, ref, ["email"])
        with wt.lock(holder, target):
            yield
    finally:
        holder.close()
        wt.dispose()


def test_taking_the_run_lock_leaves_the_sessions_timeouts_as_they_were(pg):
    table = pg.create_table([("id", "int"), ("email", "text")], _emails(1))
    config = pg.config(lock_timeout_s=2)
    connection, ref = route(pg.urn(table), config.connections)
    wt = PostgresTokenizer(connection, config.build_tokenizer(), config.run)
    try:
        with wt.connect(ref) as c:
            target = plan.validate(wt, c, ref, ["email"])
            c.execute(sa.text("SET lock_timeout = '7s'; SET statement_timeout = '9min'"))
            with wt.lock(c, target):
                held = c.execute(sa.text("SELECT current_setting('lock_timeout'), "
                                         "current_setting('statement_timeout')")).one()
        assert tuple(held) == ("7s", "9min")
    finally:
        wt.dispose()


def test_a_run_waits_for_the_lock_then_fails_with_a_clear_message(pg):
    table = pg.create_table([("id", "int"), ("email", "text")], _emails(5))
    config = pg.config(lock_timeout_s=0.5)
    with _run_lock_held(pg, config, table):
        before = pg.checksum(table)
        with pytest.raises(LockTimeoutError, match="another tokenization run holds"):
            run_request(config, TokenizeRequest(pg.urn(table), ("email",)))
        assert pg.checksum(table) == before


def _plan_nodes(plan):
    yield plan
    for child in plan.get("Plans", ()):
        yield from _plan_nodes(child)


def test_the_scan_before_writing_classifies_each_value_once_and_may_run_in_parallel(pg):
    # Classified in the scan itself (each CASE, regex included, once per value), not copied
    # into every aggregate; and, unlike an OFFSET 0 fence, in parallel workers when they pay.
    table = pg.create_table([("id", "int"), ("email", "text"), ("phone", "text")],
                            [(i, f"u{i}@x.com", None) for i in range(1, 2001)])
    config = pg.config()
    connection, ref = route(pg.urn(table), config.connections)
    wt = PostgresTokenizer(connection, config.build_tokenizer(), config.run)
    try:
        with wt.connect(ref) as conn:
            target = plan.validate(wt, conn, ref, ["email", "phone"])
            for name in ("parallel_setup_cost", "min_parallel_table_scan_size"):  # as on a large table
                conn.execute(sa.text(f"SET LOCAL {name} = 0"))
            stmt = plan.stats_query(wt, target).compile(conn, compile_kwargs={"literal_binds": True})
            explained = conn.execute(sa.text(f"EXPLAIN (VERBOSE, FORMAT JSON) {stmt}")).scalar_one()[0]["Plan"]
            stats = conn.execute(plan.stats_query(wt, target)).one()
            conn.rollback()
    finally:
        wt.dispose()
    nodes = list(_plan_nodes(explained))
    scans = [n for n in nodes if n["Node Type"] == "Seq Scan"]
    assert len(scans) == 1 and scans[0].get("Parallel Aware"), nodes
    classified = [o for o in scans[0]["Output"] if "~" in o]
    assert len(classified) == 2, scans[0]["Output"]  # one CASE per column, each with the regex
    shape = [(n["Node Type"], n.get("Partial Mode")) for n in nodes]
    assert shape == [("Aggregate", "Finalize"), ("Gather", None), ("Aggregate", "Partial"), ("Seq Scan", None)]
    assert (stats.total_rows, stats.rows_to_change, stats.nulls_1, stats.maxlen_0) == (2000, 2000, 2000, len("u2000@x.com"))


def test_a_value_changed_since_it_was_read_is_left_alone(pg, caplog):
    table = pg.create_table([("id", "int"), ("email", "text")], [(1, "old@x.com"), (2, "b@x.com")])
    config = pg.config()
    connection, ref = route(pg.urn(table), config.connections)
    wt = PostgresTokenizer(connection, config.build_tokenizer(), config.run)
    try:
        with wt.connect(ref) as conn:
            target = plan.validate(wt, conn, ref, ["email"])
            pg.execute(f"UPDATE {table} SET email = 'new@x.com' WHERE id = 1")
            with wt.batch_writer(conn, target) as write:
                write(Batch(keys=[[1, 2]], plains=[["old@x.com", "b@x.com"]], tokens=[["tok_stale", "tok_fresh"]]))()
            conn.commit()
    finally:
        wt.dispose()
    assert pg.rows(table) == [(1, "new@x.com"), (2, "tok_fresh")]
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"{ref.name}: 1 row(s) were changed by another writer after they were read, and were left as it wrote "
        "them (counted as updated); run again to tokenize any plaintext it wrote"]


@pytest.mark.parametrize("url", ["postgresql+psycopg://u:pw@h:5432", "postgresql+asyncpg://u:pw@h:5432"])
def test_a_url_for_another_driver_is_refused_because_the_bulk_path_is_psycopg2(url):
    config = parse_config({"connections": [{"platform": "postgres", "url": url}],
                           "tokenizer": {"type": "hmac", "key": HMAC_KEY}})
    _, ref = route("urn:li:dataset:(urn:li:dataPlatform:postgres,appdb.public.t,PROD)", config.connections)
    wt = PostgresTokenizer(config.connections[0], config.build_tokenizer(), config.run)
    with pytest.raises(ConfigError, match=r"must start with postgresql\+psycopg2://") as err:
        wt.build_url(ref)
    assert "pw" not in str(err.value)


def test_a_url_naming_another_database_is_refused(pg):
    config = parse_config({
        "connections": [{"platform": "postgres", "url": pg.server_url.rstrip("/") + "/otherdb"}],
        "tokenizer": {"type": "hmac", "key": HMAC_KEY},
    })
    with pytest.raises(DatabaseMismatchError, match="'otherdb'"):
        run_request(config, TokenizeRequest(pg.urn("customers"), ("email",)))


def test_an_unreachable_server_is_a_transient_error_without_the_password():
    config = parse_config({
        "connections": [{"platform": "postgres", "url": "postgresql+psycopg2://u:S3cretPassw0rd@127.0.0.1:1"}],
        "tokenizer": {"type": "hmac", "key": HMAC_KEY},
    })
    with pytest.raises(WarehouseUnavailableError) as info:
        run_request(config, TokenizeRequest("urn:li:dataset:(urn:li:dataPlatform:postgres,db.public.t,PROD)", ("e",)))
    assert info.value.permanent is False
    assert "S3cretPassw0rd" not in str(info.value)
    assert "***" in str(info.value)


def test_a_unique_not_null_key_stands_in_for_a_missing_primary_key(pg):
    table = pg.create_table([("code", "text"), ("email", "text")], [("a", "a@x.com"), ("b", "b@x.com")], key=None)
    pg.execute(f"ALTER TABLE {table} ALTER COLUMN code SET NOT NULL, ADD CONSTRAINT {table}_u UNIQUE (code)")
    result = run_request(pg.config(), TokenizeRequest(pg.urn(table), ("email",)))
    assert result.rows_updated == 2


def test_configured_key_columns_address_a_table_without_keys(pg):
    table = pg.create_table([("code", "text"), ("email", "text")], [("a", "a@x.com"), ("b", "b@x.com")], key=None)
    config = parse_config({
        "connections": [{"platform": "postgres", "url": pg.server_url, "key_columns": {f"public.{table}": ["code"]}}],
        "tokenizer": {"type": "hmac", "key": HMAC_KEY},
    })
    assert run_request(config, TokenizeRequest(pg.urn(table), ("email",))).rows_updated == 2


@pytest.mark.parametrize("index, warned", [(None, True), ("(code, id)", True), ("(id, code)", False), ("(id)", False)])
def test_a_key_no_index_starts_with_is_run_with_a_warning(pg, caplog, index, warned):
    table = pg.create_table([("id", "int"), ("code", "text"), ("email", "text")],
                            [(1, "a", "a@x.com"), (2, "b", "b@x.com")], key=None)
    if index:
        pg.execute(f"CREATE INDEX ON {table} {index}")
    config = pg.config(key_columns={f"public.{table}": ["id", "code"]} if index != "(id)" else {f"public.{table}": ["id"]})
    caplog.set_level("WARNING", logger="datahub_tokenize_action")
    assert run_request(config, TokenizeRequest(pg.urn(table), ("email",))).rows_updated == 2
    warnings = [r.getMessage() for r in caplog.records if "no index of" in r.getMessage()]
    assert bool(warnings) is warned
    if warned:
        assert f"CREATE INDEX ON public.{table} (id" in warnings[0]


def test_long_runs_log_progress_with_rate_and_the_final_apply(pg, caplog):
    table = pg.create_table([("id", "int"), ("email", "text")], _emails(500))
    caplog.set_level("INFO", logger="datahub_tokenize_action")
    run_request(pg.config(batch_size=50, progress_interval_s=0.000001), TokenizeRequest(pg.urn(table), ("email",)))
    messages = [r.getMessage() for r in caplog.records]
    assert any("/ ~500 rows" in m and "rows/s" in m for m in messages)
    assert any("writing the last rows (500 tokenized in all)" in m for m in messages)
    assert any("500 rows updated" in m and "in " in m for m in messages)


def test_a_long_statement_still_logs_progress_every_interval(pg, caplog, monkeypatch):
    # One statement can run for minutes on a large table (the scan before writing: ~2 s per
    # million rows already tokenized); the run must not go silent meanwhile.
    stats_query = plan.stats_query
    monkeypatch.setattr(plan, "stats_query", lambda wh, target: stats_query(wh, target).add_columns(sa.func.pg_sleep(1.5)))
    table = pg.create_table([("id", "int"), ("email", "text")], _emails(5))
    caplog.set_level("INFO", logger="datahub_tokenize_action")
    result = run_request(pg.config(progress_interval_s=0.3), TokenizeRequest(pg.urn(table), ("email",)))
    assert result.rows_updated == 5
    beats = [r for r in caplog.records if "scanning the table before writing" in r.getMessage()]
    assert len(beats) >= 3, [r.getMessage() for r in caplog.records]
    assert {r.threadName for r in beats} == {"tokenize-progress"}
    took = [int(r.getMessage().rsplit("(", 1)[1].rstrip("s)")) for r in beats]  # the step's time so far
    assert took == sorted(took) and took[-1] >= 1


def test_a_roles_statement_timeout_fails_the_run_with_what_to_do_but_not_the_wait_for_the_lock(pg, monkeypatch):
    # Roles often carry a statement_timeout; the scan before writing reads the whole table.
    stats_query = plan.stats_query
    monkeypatch.setattr(plan, "stats_query", lambda wh, target: stats_query(wh, target).add_columns(sa.func.pg_sleep(1)))
    table = pg.create_table([("id", "int"), ("email", "text")], _emails(5))
    role = f"tokenize_{table}"
    config = _as_role(pg, role, f"GRANT SELECT, UPDATE ON {table} TO {{role}}; "
                                f"ALTER ROLE {{role}} SET statement_timeout = '300ms'", lock_timeout_s=1)
    before = pg.checksum(table)
    # The scan runs after the lock is taken: the role's timeout is back in force by then.
    with pytest.raises(WarehouseWriteError, match="canceling statement due to statement timeout.*"
                       r"raise it .*\(ALTER ROLE <role> SET statement_timeout = 0\)") as err:
        run_request(config, TokenizeRequest(pg.urn(table), ("email",)))
    assert not err.value.permanent, "retried: the statement may have waited for other sessions' row locks"
    assert pg.checksum(table) == before
    # Waiting for another run's lock is bounded by lock_timeout_s only.
    with _run_lock_held(pg, config, table):
        with pytest.raises(LockTimeoutError, match="another tokenization run holds .* within 1s"):
            run_request(config, TokenizeRequest(pg.urn(table), ("email",)))
    pg.execute(f"ALTER ROLE {role} SET statement_timeout = 0")
    assert run_request(config, TokenizeRequest(pg.urn(table), ("email",))).rows_updated == 5


@pytest.mark.parametrize("commit_every_batch", [False, True])
def test_a_failing_dry_run_says_nothing_was_changed(pg, monkeypatch, commit_every_batch):
    stats_query = plan.stats_query
    monkeypatch.setattr(plan, "stats_query", lambda wh, target: stats_query(wh, target).add_columns(sa.literal(1) / sa.literal(0)))
    table = pg.create_table([("id", "int"), ("email", "text")], _emails(5))
    with pytest.raises(WarehouseWriteError, match=r"division by zero; nothing was changed \(a dry run\)$"):
        run_request(pg.config(commit_every_batch=commit_every_batch), TokenizeRequest(pg.urn(table), ("email",)),
                    dry_run=True)


@pytest.mark.parametrize("pushdown", ["never", "always"])
def test_a_read_only_connection_fails_the_run_once_with_what_to_do_and_dry_runs_work(pg, pushdown):
    # As on a standby: reads work, the first write fails (pushdown: its session's key table).
    table = pg.create_table([("id", "int"), ("email", "text")], _emails(5))
    role = f"tokenize_{table}"
    config = _as_role(pg, role, f"GRANT SELECT, UPDATE ON {table} TO {{role}}; "
                                f"ALTER ROLE {{role}} SET default_transaction_read_only = on", pushdown=pushdown)
    dry = run_request(config, TokenizeRequest(pg.urn(table), ("email",)), dry_run=True)
    assert (dry.rows_updated, dry.method) == (5, "loop" if pushdown == "never" else "pushdown")
    before = pg.checksum(table)
    with pytest.raises(WarehouseWriteError, match="read-only transaction .*the connection is read-only: a standby, "
                       "or default_transaction_read_only .*point the connection at the primary") as err:
        run_request(config, TokenizeRequest(pg.urn(table), ("email",)))
    assert err.value.permanent, "a retry meets the same read-only server"
    assert pg.checksum(table) == before


def test_a_statement_cancelled_by_an_administrator_is_retried():
    class QueryCanceled(Exception):
        pgcode = "57014"

    config = parse_config({"connections": [{"platform": "postgres", "url": "postgresql+psycopg2://u@h"}],
                           "tokenizer": {"type": "poc"}})
    wh = PostgresTokenizer(config.connections[0], config.build_tokenizer())
    error = QueryCanceled("canceling statement due to user request")
    assert (wh.is_permanent(error), wh.error_hint(error)) == (False, "")


def test_char_columns_tokenize_without_their_padding_and_a_second_run_changes_nothing(pg):
    # char(n) pads with spaces: tokens must be those of the unpadded value (as in a text column),
    # and a token read back padded must still be recognised as one.
    rows = [("a", "alice@example.com", "alice@example.com"), ("b  ", "bob@example.com", None)]
    table = pg.create_table([("id", "char(8)"), ("email", "char(80)"), ("copy", "text")], rows)
    config = pg.config(batch_size=1)
    first = run_request(config, TokenizeRequest(pg.urn(table), ("email", "copy")))
    second = run_request(config, TokenizeRequest(pg.urn(table), ("email", "copy")))
    tok = config.build_tokenizer()
    assert (first.rows_updated, second.rows_updated) == (2, 0)
    assert second.values_skipped == {"email": 2, "copy": 1}
    after = pg.execute(f"SELECT id::text, email::text, copy FROM {table} ORDER BY id")
    assert [tuple(r) for r in after] == [
        ("a", tok.tokenize("alice@example.com"), tok.tokenize("alice@example.com")),
        ("b", tok.tokenize("bob@example.com"), None),
    ]


def test_a_key_whose_values_cannot_be_matched_back_is_refused_and_nothing_changes(pg):
    table = pg.create_table([("id", "bytea"), ("email", "text")], [(b"\x00\x01", "a@x.com"), (b"\xff", "b@x.com")])
    before = pg.checksum(table)
    with pytest.raises(NoKeyError, match=r"id \(bytea\)"):
        run_request(pg.config(), TokenizeRequest(pg.urn(table), ("email",)))
    assert pg.checksum(table) == before


@pytest.mark.parametrize("pgcode, permanent", [
    ("23505", True),   # unique_violation (e.g. a unique index on the tokenized column)
    ("22001", True),   # string_data_right_truncation
    ("42501", True),   # insufficient_privilege: needs a grant
    ("P0001", True),   # a trigger's RAISE EXCEPTION
    ("40P01", False),  # deadlock_detected
    ("40001", False),  # serialization_failure
    ("08006", False),  # connection_failure
    ("57P01", False),  # admin_shutdown
    (None, False),
])
def test_failures_that_would_recur_are_permanent_and_others_retried(pgcode, permanent):
    class DriverError(Exception):
        pass

    error = DriverError("boom")
    error.pgcode = pgcode
    config = parse_config({"connections": [{"platform": "postgres", "url": "postgresql+psycopg2://u@h"}],
                           "tokenizer": {"type": "poc"}})
    assert PostgresTokenizer(config.connections[0], config.build_tokenizer()).is_permanent(error) is permanent


def _with_plugin(monkeypatch, tokenize_many) -> None:
    from datahub_tokenize_action import PocTokenizer

    class Plugin(PocTokenizer):  # a built-in's subclass is checked again: trust is not inherited
        pass

    Plugin.tokenize_many = tokenize_many
    install_tokenizer(monkeypatch, "plugin", Plugin)


def _misbehaving_on_rows(misbehave):
    """A plugin's batch form that is correct for the guard probe (so the run starts) and
    misbehaves on the table's rows (``misbehave`` gets the values)."""
    def tokenize_many(self, values):
        values = list(values)
        if any(v.startswith("user") for v in values):
            return misbehave(values)
        return [self.tokenize(v) for v in values]
    return tokenize_many


@pytest.mark.parametrize("tokenize_many, error, message", [
    (_misbehaving_on_rows(lambda values: [f"tok_{len(v)}_poc" for v in values][1:]), TokenizerContractError,
     r"returned 9 tokens for 10 values of column 'email'.*one token per value"),
    (_misbehaving_on_rows(lambda values: [f"vault:{v[::-1]}" for v in values]), TokenizerContractError,
     r"token_regex / token_length_range does not recognise.*tokenize that token again"),
    (_misbehaving_on_rows(lambda values: (_ for _ in ()).throw(RuntimeError(f"vault refused {values[0]}"))),
     TokenizerError, r"raised RuntimeError on column 'email' \(its message is not shown"),
])
@pytest.mark.parametrize("commit_every_batch", [False, True])  # True: nothing to roll back, checked first
def test_a_tokenizer_plugin_that_fails_or_breaks_its_contract_changes_nothing(pg, monkeypatch, small_chunks,
                                                                            tokenize_many, error, message,
                                                                            commit_every_batch):
    table = pg.create_table([("id", "int"), ("email", "text")], _emails(30))
    _with_plugin(monkeypatch, tokenize_many)
    before = pg.checksum(table)
    config = pg.config(tokenizer={"type": "plugin"}, batch_size=10, commit_every_batch=commit_every_batch)
    with pytest.raises(error, match=message) as err:
        run_request(config, TokenizeRequest(pg.urn(table), ("email",)))
    assert "user1@example.com" not in str(err.value)
    assert err.value.__context__ is None and err.value.__cause__ is None, "the plugin's message stays out of the chain"
    assert "_tokens" not in {f.name for f in traceback.extract_tb(err.value.__traceback__)}, "nor its values"
    assert err.value.permanent is (error is TokenizerContractError)
    assert pg.checksum(table) == before


def _with_regex_plugin(monkeypatch, regex: str) -> None:
    """A plugin making ``tk_<hex>`` tokens, recognised in Python by ``regex``."""
    import hashlib

    from datahub_tokenize_action import Tokenizer

    class Hex(Tokenizer):
        token_regex = regex

        def tokenize(self, value):
            return "tk_" + hashlib.sha256(value.encode()).hexdigest()[:16]

        def max_token_length(self, input_bytes):
            return 19

    install_tokenizer(monkeypatch, "plugin", Hex)


@pytest.mark.parametrize("regex, message", [
    # Python reads \b as a word boundary, Postgres as a backspace: tokens would never be skipped.
    (r"^tk_[0-9a-f]+\b$", r"reads tokenizer 'plugin''s token_regex .* unlike Python \(a token is not recognised\)"),
    # Python's named group is no Postgres syntax.
    (r"^tk_(?P<digest>[0-9a-f]+)$", r"the warehouse rejects tokenizer 'plugin''s token_regex .*invalid regular expression"),
    # A POSIX class is one to Postgres and a plain set to Python: Postgres takes the probe for a token.
    (r"^(tk_[0-9a-f]+|d[[:alpha:]]+.*)$", r"unlike Python \(plaintext is taken for a token\)"),
])
@pytest.mark.filterwarnings("ignore:Possible nested set:FutureWarning")  # Python's reading of [[:alpha:]]
def test_a_token_regex_the_warehouse_reads_unlike_python_is_refused_before_anything_is_written(
        pg, monkeypatch, regex, message):
    table = pg.create_table([("id", "int"), ("email", "text")], _emails(5))
    _with_regex_plugin(monkeypatch, regex)
    config = pg.config(tokenizer={"type": "plugin"})
    assert config.build_tokenizer().is_token(config.build_tokenizer().tokenize("a@x.com")), "Python agrees"
    before = pg.checksum(table)
    with pytest.raises(TokenizerContractError, match=message):
        run_request(config, TokenizeRequest(pg.urn(table), ("email",)))
    assert pg.checksum(table) == before


def test_a_dry_run_calls_no_tokenizer(pg, monkeypatch):
    # A vault that is down must not fail a dry run, and a dry run must not send it values.
    table = pg.create_table([("id", "int"), ("email", "text")], _emails(30))
    _with_plugin(monkeypatch, lambda self, values: (_ for _ in ()).throw(ConnectionError("vault is down")))
    config = pg.config(tokenizer={"type": "plugin"})
    result = run_request(config, TokenizeRequest(pg.urn(table), ("email",)), dry_run=True)
    assert result.values_tokenized == {"email": 30}
    with pytest.raises(TokenizerError, match="raised ConnectionError on the guard probe"):
        run_request(config, TokenizeRequest(pg.urn(table), ("email",)))


def test_a_lost_connection_during_the_guard_check_is_a_transient_warehouse_error(pg, monkeypatch):
    table = pg.create_table([("id", "int"), ("email", "text")], _emails(5))
    monkeypatch.setattr(plan, "guard_probe_query",
                        lambda wh, token: sa.select(sa.func.pg_terminate_backend(sa.func.pg_backend_pid()), sa.true()))
    with pytest.raises(WarehouseWriteError) as err:
        run_request(pg.config(), TokenizeRequest(pg.urn(table), ("email",)))
    assert err.value.permanent is False


def test_a_token_regex_the_warehouse_reads_as_python_does_runs(pg, monkeypatch):
    table = pg.create_table([("id", "int"), ("email", "text")], _emails(5))
    _with_regex_plugin(monkeypatch, r"^tk_[0-9a-f]+$")
    config = pg.config(tokenizer={"type": "plugin"})
    assert run_request(config, TokenizeRequest(pg.urn(table), ("email",))).rows_updated == 5
    assert run_request(config, TokenizeRequest(pg.urn(table), ("email",))).rows_updated == 0


def test_a_failure_at_a_batch_commit_is_reported_as_the_warehouse_error(pg):
    # A deferred constraint trigger fires at COMMIT: the commit after the second batch fails.
    table = pg.create_table([("id", "int"), ("email", "text")], _emails(30))
    pg.execute(f"""
        CREATE FUNCTION late_boom_{table}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.id = 15 THEN RAISE EXCEPTION 'deferred failure at row %', NEW.id; END IF;
          RETURN NEW;
        END $$;
        CREATE CONSTRAINT TRIGGER late AFTER UPDATE ON {table} DEFERRABLE INITIALLY DEFERRED
          FOR EACH ROW EXECUTE FUNCTION late_boom_{table}();
    """)
    config = pg.config(batch_size=10, commit_every_batch=True)
    with pytest.raises(WarehouseWriteError, match="deferred failure at row 15") as err:
        run_request(config, TokenizeRequest(pg.urn(table), ("email",)))
    assert err.value.__context__ is None
    tok = config.build_tokenizer()
    assert [v for _, v in pg.rows(table)] == [tok.tokenize(e) for _, e in _emails(10)] + [e for _, e in _emails(30)[10:]]


@pytest.mark.parametrize("host", ["default", "host froze objects", "collection off", "the loop fails"])
def test_a_run_freezes_old_objects_for_the_loop_and_leaves_the_collector_as_it_found_it(pg, monkeypatch, host):
    import gc

    assert gc.get_freeze_count() == 0 and gc.isenabled(), "precondition: the test process froze nothing"
    table = pg.create_table([("id", "int"), ("email", "text")], _emails(30))
    in_loop: list[int] = []

    def tokenize_many(self, values):
        values = list(values)
        if values != [plan.GUARD_PROBE]:  # (the guard check runs before the loop)
            in_loop.append(gc.get_freeze_count())
            if host == "the loop fails" and len(in_loop) == 2:
                raise ConnectionError("vault is down")
        return [self.tokenize(v) for v in values]

    _with_plugin(monkeypatch, tokenize_many)
    gc.collect()
    if host == "host froze objects":
        gc.freeze()
    elif host == "collection off":
        gc.disable()
    before = (gc.get_freeze_count(), gc.isenabled())
    try:
        with contextlib.ExitStack() as failing:
            if host == "the loop fails":
                failing.enter_context(pytest.raises(TokenizerError))
            run_request(pg.config(tokenizer={"type": "plugin"}, batch_size=10),
                        TokenizeRequest(pg.urn(table), ("email",)))
        after = (gc.get_freeze_count(), gc.isenabled())
    finally:
        if host == "host froze objects":
            gc.unfreeze()
        gc.enable()
    assert after[1] == before[1]
    assert len(in_loop) == (2 if host == "the loop fails" else 3)
    if host in ("default", "the loop fails"):
        assert all(n > 1000 for n in in_loop), "the imported modules are left out of full collections"
        assert after[0] == 0, "and put back when the loop ends, however it ends"
    elif host == "host froze objects":
        # (frozen objects that die are freed, so the count may only shrink)
        assert all(n <= before[0] for n in in_loop), "nothing more was frozen"
        assert 0 < after[0] <= before[0], "the host's freeze is not undone"
    else:
        assert in_loop == [0, 0, 0] and after[0] == 0


# ------------------------------------------------------------ tables as users have them


def _as_role(pg, role: str, grants: str, **run: Any) -> dict:
    """A config whose connection logs in as ``role`` (not a superuser), created with ``grants``."""
    password = "role-password-" + uuid.uuid4().hex[:8]
    pg.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    pg.execute(grants.format(role=role))
    url = sa.make_url(pg.server_url).set(username=role, password=password)
    return parse_config({"connections": [{"platform": "postgres", "url": url.render_as_string(hide_password=False)}],
                         "tokenizer": {"type": "hmac", "key": HMAC_KEY}, "run": run})


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_user_without_update_is_refused_up_front_with_the_grant_that_fixes_it(pg, dry_run):
    table = pg.create_table([("id", "int"), ("email", "text"), ("phone", "text")],
                            [(i, f"u{i}@x.com", f"+1-555-{i:04d}") for i in range(1, 11)])
    role = f"tokenize_{table}"
    config = _as_role(pg, role, f"GRANT SELECT ON {table} TO {{role}}; GRANT UPDATE (phone) ON {table} TO {{role}}")
    before = pg.checksum(table)
    with pytest.raises(InsufficientPrivilegeError, match=f"user '{role}' lacks UPDATE on email of ") as err:
        run_request(config, TokenizeRequest(pg.urn(table), ("email", "phone")), dry_run=dry_run)
    assert err.value.permanent
    assert pg.checksum(table) == before
    # The statement the message gives is the one that lets the run through.
    grant = re.search(r"GRANT UPDATE .*", str(err.value))[0]
    assert grant == f'GRANT UPDATE ("email") ON "public"."{table}" TO "{role}"'
    pg.execute(grant)
    assert run_request(config, TokenizeRequest(pg.urn(table), ("email", "phone"))).rows_updated == 10


def test_column_grants_are_enough_and_a_missing_select_is_named(pg):
    table = pg.create_table([("id", "int"), ("email", "text"), ("salary", "int")],
                            [(i, f"u{i}@x.com", 1000 * i) for i in range(1, 6)])
    role = f"tokenize_{table}"
    config = _as_role(pg, role, f"GRANT SELECT (email), UPDATE (email) ON {table} TO {{role}}")
    with pytest.raises(InsufficientPrivilegeError, match=r'lacks SELECT on id of .*GRANT SELECT \("id"\) ON'):
        run_request(config, TokenizeRequest(pg.urn(table), ("email",)))
    pg.execute(f"GRANT SELECT (id) ON {table} TO {role}")  # still nothing on salary
    assert run_request(config, TokenizeRequest(pg.urn(table), ("email",))).rows_updated == 5


def test_a_schema_without_usage_for_the_user_is_refused_with_the_grant(pg):
    schema = f"s_{uuid.uuid4().hex[:8]}"
    pg.execute(f"CREATE SCHEMA {schema}")
    pg.execute(f"CREATE TABLE {schema}.people (id int PRIMARY KEY, email text)")
    pg.execute(f"INSERT INTO {schema}.people VALUES (1, 'a@x.com')")
    role = f"tokenize_{schema}"
    config = _as_role(pg, role, f"GRANT SELECT, UPDATE ON {schema}.people TO {{role}}")
    urn = f"urn:li:dataset:(urn:li:dataPlatform:postgres,{pg.database}.{schema}.people,PROD)"
    with pytest.raises(InsufficientPrivilegeError, match=f'lacks USAGE on schema {schema} .*'
                       f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"$') as err:
        run_request(config, TokenizeRequest(urn, ("email",)), dry_run=True)
    pg.execute(re.search(r"GRANT USAGE .*", str(err.value))[0])
    assert run_request(config, TokenizeRequest(urn, ("email",))).rows_updated == 1


def test_a_database_without_temporary_for_the_user_is_refused_up_front(pg):
    # PUBLIC has TEMPORARY on a new database; a hardened one may not, and the staging table needs it.
    database = f"notemp_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg.server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f"CREATE DATABASE {database}"))
    other = PostgresHarness(pg.server_url, database)
    try:
        table = other.create_table([("id", "int"), ("email", "text")], _emails(3))
        other.execute(f"REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC")
        role = f"tokenize_{table}"
        config = _as_role(other, role, f"GRANT SELECT, UPDATE ON {table} TO {{role}}")
        with pytest.raises(InsufficientPrivilegeError, match=f"lacks TEMPORARY on database {database} .*"
                           f'GRANT TEMPORARY ON DATABASE "{database}" TO "{role}"'):
            run_request(config, TokenizeRequest(other.urn(table), ("email",)), dry_run=True)
        other.execute(f"GRANT TEMPORARY ON DATABASE {database} TO {role}")
        assert run_request(config, TokenizeRequest(other.urn(table), ("email",))).rows_updated == 3
        other.execute(f"DROP OWNED BY {role}")
        other.execute(f"DROP ROLE {role}")
    finally:
        other.close()
        with admin.connect() as c:
            c.execute(sa.text(f"DROP DATABASE {database} WITH (FORCE)"))
        admin.dispose()


@pytest.mark.parametrize("dry_run", [False, True])
def test_rows_hidden_by_row_level_security_are_refused_not_left_plaintext(pg, dry_run):
    table = pg.create_table([("id", "int"), ("tenant", "text"), ("email", "text")],
                            [(i, "a" if i % 2 else "b", f"u{i}@x.com") for i in range(1, 21)])
    pg.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    pg.execute(f"CREATE POLICY only_a ON {table} USING (tenant = 'a')")
    role = f"tokenize_{table}"
    config = _as_role(pg, role, f"GRANT SELECT, UPDATE ON {table} TO {{role}}")
    before = pg.checksum(table)
    with pytest.raises(UnsupportedTableError, match=f"row-level security on .* hides rows from user '{role}'"):
        run_request(config, TokenizeRequest(pg.urn(table), ("email",)), dry_run=dry_run)
    assert pg.checksum(table) == before
    # The owner (here a superuser) sees every row, and tokenizes them all.
    assert run_request(pg.config(), TokenizeRequest(pg.urn(table), ("email",))).rows_updated == 20


def test_a_parent_of_inheritance_children_is_refused_and_its_children_run_alone(pg):
    parent = pg.create_table([("id", "int"), ("email", "text")], _emails(5))
    child = f"{parent}_archive"
    pg.execute(f"CREATE TABLE {child} () INHERITS ({parent})")
    pg.execute(f"ALTER TABLE {child} ADD PRIMARY KEY (id)")
    pg.execute(f"INSERT INTO {child} SELECT i, 'old' || i || '@x.com' FROM generate_series(1, 5) i")
    before = (pg.checksum(parent), pg.checksum(child))
    with pytest.raises(UnsupportedTableError, match=f"has inheritance children \\({child}\\)"):
        run_request(pg.config(), TokenizeRequest(pg.urn(parent), ("email",)))
    assert (pg.checksum(parent), pg.checksum(child)) == before
    assert run_request(pg.config(), TokenizeRequest(pg.urn(child), ("email",))).rows_updated == 5


def test_a_partitioned_table_is_tokenized_through_its_parent(pg):
    name = f"t_{uuid.uuid4().hex[:10]}"
    pg.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, email text) PARTITION BY RANGE (id)")
    pg.execute(f"CREATE TABLE {name}_low PARTITION OF {name} FOR VALUES FROM (1) TO (4)")
    pg.execute(f"CREATE TABLE {name}_high PARTITION OF {name} FOR VALUES FROM (4) TO (100)")
    pg.execute(f"INSERT INTO {name} SELECT i, 'u' || i || '@x.com' FROM generate_series(1, 6) i")
    config = pg.config(batch_size=2)
    assert run_request(config, TokenizeRequest(pg.urn(name), ("email",))).rows_updated == 6
    assert run_request(config, TokenizeRequest(pg.urn(name), ("email",))).rows_updated == 0
    tok = config.build_tokenizer()
    assert pg.rows(name) == [(i, tok.tokenize(f"u{i}@x.com")) for i in range(1, 7)]


def test_a_materialized_view_is_refused_before_anything_runs(pg):
    table = pg.create_table([("id", "int"), ("email", "text")], _emails(3))
    view = f"{table}_mv"
    pg.execute(f"CREATE MATERIALIZED VIEW {view} AS SELECT * FROM {table}")
    pg.execute(f"CREATE UNIQUE INDEX ON {view} (id)")
    config = pg.config(key_columns={f"public.{view}": ["id"]})
    with pytest.raises(UnsupportedTableError, match="is a materialized view, which cannot be updated"):
        run_request(config, TokenizeRequest(pg.urn(view), ("email",)), dry_run=True)


def test_name_columns_are_held_to_their_63_bytes(pg):
    # `name` truncates silently: a 65-character token would be stored cut short.
    table = pg.create_table([("id", "int"), ("login", "name")], [(1, "alice")])
    before = pg.checksum(table)
    config = pg.config(tokenizer={"type": "hmac", "key": HMAC_KEY, "key_id": "k" * 16})
    with pytest.raises(TokenTooLongError, match="need up to 65 characters"):
        run_request(config, TokenizeRequest(pg.urn(table), ("login",)))
    assert pg.checksum(table) == before
    assert run_request(pg.config(), TokenizeRequest(pg.urn(table), ("login",))).rows_updated == 1


def test_names_with_percent_colon_and_the_staging_prefix_are_sent_as_written(pg):
    columns = [("id", "int"), ("e%mail", "text"), ("a :b", "text"), ("k0", "text")]
    rows = [(i, f"u{i}@x.com", f"x{i}", f"k{i}") for i in range(1, 6)]
    for name in (None, "_tokenize_stage", "_tokenize_stage_0123456789ab"):
        table = pg.create_table(columns, rows, name=name)
        config = pg.config(batch_size=2)
        first = run_request(config, TokenizeRequest(pg.urn(table), ("e%mail", "a :b", "k0")))
        again = run_request(config, TokenizeRequest(pg.urn(table), ("e%mail", "a :b", "k0")))
        assert (first.rows_updated, again.rows_updated) == (5, 0), name
        tok = config.build_tokenizer()
        assert pg.rows(table) == [(i, *map(tok.tokenize, r[1:])) for i, *_ in rows for r in [rows[i - 1]]]
        pg.execute(f"DROP TABLE {pg.quote(table)}")


@pytest.mark.filterwarnings("error::sqlalchemy.exc.SAWarning")  # no "Did not recognize type 'bpchar'"
def test_column_types_are_read_from_the_catalog(pg):
    suffix = uuid.uuid4().hex[:8]
    pg.execute(f"CREATE DOMAIN email_{suffix} AS varchar(80) CHECK (VALUE <> '')")
    pg.execute(f"CREATE TYPE mood_{suffix} AS ENUM ('happy', 'sad')")
    table = pg.create_table(
        [("id", "int"), ("dom", f"email_{suffix}"), ("pad", "bpchar"), ("flag", '"char"'), ("mood", f"mood_{suffix}")],
        [(1, "a@x.com", "b@x.com", "y", "sad")])
    config = pg.config()
    # A domain over a text type is text (its CHECK still applies); so is char without a length.
    assert run_request(config, TokenizeRequest(pg.urn(table), ("dom", "pad"))).rows_updated == 1
    tok = config.build_tokenizer()
    assert pg.execute(f"SELECT dom::text, pad::text FROM {table}") == [(tok.tokenize("a@x.com"), tok.tokenize("b@x.com"))]
    # Refused under their Postgres names, not SQLAlchemy's guesses (VARCHAR(8), NULL).
    for column, shown in (("flag", '"char"'), ("mood", f"mood_{suffix}")):
        with pytest.raises(UnsupportedColumnTypeError, match=f"column '{column}' is {shown}, not text"):
            run_request(config, TokenizeRequest(pg.urn(table), (column,)))


def _before_update_trigger(pg, table: str, body: str) -> None:
    pg.execute(f"CREATE FUNCTION {table}_trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} RETURN NEW; END $$")
    pg.execute(f"CREATE TRIGGER trg BEFORE UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION {table}_trg()")


@pytest.mark.parametrize("commit_every_batch", [False, True])
@pytest.mark.parametrize("email_type", ["text", "citext", "case-insensitive collation"])
def test_a_trigger_that_rewrites_tokens_fails_the_run_instead_of_storing_wrong_tokens(pg, commit_every_batch, email_type):
    # An email normalizer (lower()) would store lower(token): still token-shaped, so the next
    # run would skip it, and joins on the tokens would silently break. Where the column's own
    # comparison ignores case, lower(token) would compare equal to the token.
    if email_type == "citext":
        pg.execute("CREATE EXTENSION IF NOT EXISTS citext")
    elif email_type != "text":
        collation = f"ci_{uuid.uuid4().hex[:8]}"
        pg.execute(f"CREATE COLLATION {collation} (provider = icu, locale = 'und-u-ks-level2', deterministic = false)")
        email_type = f'text COLLATE "{collation}"'
    table = pg.create_table([("id", "int"), ("email", email_type)], _emails(30))
    _before_update_trigger(pg, table, "NEW.email = lower(NEW.email);")
    before = pg.checksum(table)
    with pytest.raises(TokenRewrittenError, match="did not keep the token written to email: a trigger") as e:
        run_request(pg.config(batch_size=10, commit_every_batch=commit_every_batch), TokenizeRequest(pg.urn(table), ("email",)))
    assert e.value.permanent
    assert pg.checksum(table) == before  # the first batch failed: nothing was committed


@pytest.mark.parametrize("commit_every_batch", [False, True])
@pytest.mark.parametrize("where", ["table", "one partition"])
def test_a_trigger_that_skips_rows_fails_the_run_instead_of_reporting_them_tokenized(pg, commit_every_batch, where):
    # A BEFORE UPDATE trigger returning NULL skips the row: RETURNING never sees it.
    if where == "table":
        table = pg.create_table([("id", "int"), ("email", "text")], _emails(30))
        on = table
    else:
        table = f"t_{uuid.uuid4().hex[:10]}"
        pg.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, email text) PARTITION BY RANGE (id)")
        pg.execute(f"CREATE TABLE {table}_a PARTITION OF {table} FOR VALUES FROM (1) TO (16)")
        pg.execute(f"CREATE TABLE {table}_b PARTITION OF {table} FOR VALUES FROM (16) TO (100)")
        pg.execute(f"INSERT INTO {table} SELECT i, 'user' || i || '@example.com' FROM generate_series(1, 30) i")
        on = f"{table}_b"
    pg.execute(f"CREATE FUNCTION {on}_skip() RETURNS trigger LANGUAGE plpgsql AS "
               "$$ BEGIN IF NEW.id % 2 = 1 THEN RETURN NULL; END IF; RETURN NEW; END $$")
    pg.execute(f"CREATE TRIGGER skip BEFORE UPDATE ON {on} FOR EACH ROW EXECUTE FUNCTION {on}_skip()")
    before = pg.checksum(table)
    config = pg.config(batch_size=10, commit_every_batch=commit_every_batch)
    with pytest.raises(TokenRewrittenError, match="were not updated though they still hold the plaintext read"
                       ".*BEFORE UPDATE trigger returning NULL") as e:
        run_request(config, TokenizeRequest(pg.urn(table), ("email",)))
    assert e.value.permanent
    if not commit_every_batch or where == "table":
        assert pg.checksum(table) == before  # the first failing batch is the first one written to it
    else:  # the first batch (rows 1-10) only met the partition without the trigger: committed, and right
        tok = config.build_tokenizer()
        assert pg.rows(table) == [(i, tok.tokenize(e)) for i, e in _emails(10)] + _emails(30)[10:]
    pg.execute(f"DROP TRIGGER skip ON {on}")
    assert run_request(config, TokenizeRequest(pg.urn(table), ("email",))).rows_updated == (
        20 if commit_every_batch and where != "table" else 30)


@pytest.mark.parametrize("with_trigger", [False, True])
def test_a_row_deleted_and_inserted_again_while_the_run_waits_for_it_is_left_as_written(pg, caplog, with_trigger):
    # A sync job replaces a row while the run's UPDATE waits for its lock: the UPDATE skips the
    # deleted version and cannot see the new one, which still holds its plaintext. No trigger
    # skipped it: a warning, not a TokenRewrittenError (with a trigger that could, the error
    # says a retry passes if this is what happened).
    table = pg.create_table([("id", "int"), ("email", "text")], _emails(10))
    if with_trigger:
        _before_update_trigger(pg, table, "IF NEW.id > 1000 THEN RETURN NULL; END IF;")
    replaced = threading.Event()

    def sync_job():
        with pg.engine.connect() as c:
            c.execute(sa.text(f"DELETE FROM {table} WHERE id = 5"))
            c.execute(sa.text(f"INSERT INTO {table} VALUES (5, 'user5@example.com')"))
            replaced.set()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not pg.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE application_name = 'datahub-tokenize' "
                    "AND wait_event_type = 'Lock'"):
                time.sleep(0.02)
            c.commit()

    job = threading.Thread(target=sync_job)
    job.start()
    replaced.wait()
    try:
        if with_trigger:
            with pytest.raises(TokenRewrittenError, match=r"returning NULL skips them \(trg on .*unless another "
                               "writer deleted and inserted them again meanwhile: then a retry passes"):
                run_request(pg.config(), TokenizeRequest(pg.urn(table), ("email",)))
            return
        result = run_request(pg.config(), TokenizeRequest(pg.urn(table), ("email",)))
    finally:
        job.join()
    assert result.rows_updated == 10  # rows sent; one of them was left as the sync job wrote it
    assert pg.rows(table)[4] == (5, "user5@example.com")
    assert any("1 row(s) were changed by another writer" in r.getMessage() for r in caplog.records)
    assert run_request(pg.config(), TokenizeRequest(pg.urn(table), ("email",))).rows_updated == 1


def test_a_trigger_that_leaves_the_tokenized_columns_alone_is_fine(pg):
    table = pg.create_table([("id", "int"), ("email", "text"), ("phone", "text"), ("touched", "int")],
                            [(i, f"u{i}@x.com", None if i % 2 else f"+1-{i}", 0) for i in range(1, 21)])
    _before_update_trigger(pg, table, "NEW.touched = OLD.touched + 1;")
    config = pg.config(batch_size=7)
    assert run_request(config, TokenizeRequest(pg.urn(table), ("email", "phone"))).rows_updated == 20
    assert pg.execute(f"SELECT sum(touched) FROM {table}") == [(20,)]


def test_the_run_outlasts_a_roles_idle_in_transaction_timeout(pg, monkeypatch):
    # The run's connection idles in its transaction while the other reads the next page.
    table = pg.create_table([("id", "int"), ("email", "text")], _emails(30))
    role = f"tokenize_{table}"
    config = _as_role(pg, role, f"GRANT SELECT, UPDATE ON {table} TO {{role}}")
    pg.execute(f"ALTER ROLE {role} SET idle_in_transaction_session_timeout = '300ms'")
    fetch, calls = loop.fetch, []

    def slow_fetch(conn, stmt):
        calls.append(1)
        if len(calls) == 2:
            time.sleep(1.0)  # the first batch is written by now: its transaction is open
        return fetch(conn, stmt)

    monkeypatch.setattr(loop, "fetch", slow_fetch)
    config.run.batch_size = 10
    assert run_request(config, TokenizeRequest(pg.urn(table), ("email",))).rows_updated == 30


def test_citext_columns_are_tokenized_and_their_guard_reads_case_as_python_does(pg):
    pg.execute("CREATE EXTENSION IF NOT EXISTS citext")  # postgresql-contrib, as .ci/run installs it
    config = pg.config()
    tok = config.build_tokenizer()
    # Plaintext shaped like a token but for its case: citext's ~ ignores case, Python's regex does not.
    shouting = tok.tokenize("x@x.com").upper()
    rows = [(1, "Alice@Example.COM"), (2, "bob@example.com"), (3, shouting), (4, None)]
    table = pg.create_table([("id", "int"), ("email", "citext")], rows)
    result = run_request(config, TokenizeRequest(pg.urn(table), ("email",)))
    assert result.rows_updated == 3
    assert pg.execute(f"SELECT email::text FROM {table} ORDER BY id") == [
        (tok.tokenize("Alice@Example.COM"),), (tok.tokenize("bob@example.com"),), (tok.tokenize(shouting),), (None,)]
    assert run_request(config, TokenizeRequest(pg.urn(table), ("email",))).rows_updated == 0


def test_a_column_with_a_case_insensitive_collation_is_tokenized(pg):
    name = f"ci_{uuid.uuid4().hex[:8]}"
    pg.execute(f"CREATE COLLATION {name} (provider = icu, locale = 'und-u-ks-level2', deterministic = false)")
    table = pg.create_table([("id", "int"), ("email", f'text COLLATE "{name}"')], [(1, "Alice@Example.COM"), (2, "b@x.com")])
    config = pg.config()
    tok = config.build_tokenizer()
    assert run_request(config, TokenizeRequest(pg.urn(table), ("email",))).rows_updated == 2
    assert [v for _, v in pg.rows(table)] == [tok.tokenize("Alice@Example.COM"), tok.tokenize("b@x.com")]
    assert run_request(config, TokenizeRequest(pg.urn(table), ("email",))).rows_updated == 0


@pytest.mark.parametrize("dry_run", [False, True])
def test_views_and_update_rules_are_refused_before_anything_runs(pg, dry_run):
    table = pg.create_table([("id", "int"), ("email", "text"), ("active", "boolean")],
                            [(i, f"u{i}@x.com", i % 2 == 0) for i in range(1, 11)])
    view = f"{table}_active"
    # Updatable, and keyed: it would run, and tokenize only the rows it shows.
    pg.execute(f"CREATE VIEW {view} AS SELECT id, email FROM {table} WHERE active")
    audit = pg.create_table([("id", "int"), ("old", "text")], [], key=None)
    pg.execute(f"CREATE RULE keep_old AS ON UPDATE TO {table} DO ALSO INSERT INTO {audit} VALUES (OLD.id, OLD.email)")
    config = pg.config(key_columns={f"public.{view}": ["id"]})
    before = pg.checksum(table)
    with pytest.raises(UnsupportedTableError, match=f"{view} is a view; .*Tokenize the tables it reads from"):
        run_request(config, TokenizeRequest(pg.urn(view), ("email",)), dry_run=dry_run)
    with pytest.raises(UnsupportedTableError, match=r"has rules on UPDATE \(keep_old\).*DISABLE RULE"):
        run_request(config, TokenizeRequest(pg.urn(table), ("email",)), dry_run=dry_run)
    assert pg.checksum(table) == before and pg.rows(audit, order_by="id") == []
    pg.execute(f"ALTER TABLE {table} DISABLE RULE keep_old")
    assert run_request(config, TokenizeRequest(pg.urn(table), ("email",)), dry_run=dry_run).rows_updated == 10


def test_a_generated_column_is_refused_and_follows_the_column_it_is_computed_from(pg):
    table = pg.create_table([("id", "int"), ("email", "text"),
                             ("email_lc", "text GENERATED ALWAYS AS (lower(email)) STORED")],
                            [], key=("id",))
    pg.execute(f"INSERT INTO {table} (id, email) SELECT i, 'User' || i || '@X.com' FROM generate_series(1, 5) i")
    config = pg.config()
    before = pg.checksum(table)
    with pytest.raises(UnsupportedColumnTypeError, match="column\\(s\\) email_lc of .* are generated"):
        run_request(config, TokenizeRequest(pg.urn(table), ("email", "email_lc")))
    assert pg.checksum(table) == before
    assert run_request(config, TokenizeRequest(pg.urn(table), ("email",))).rows_updated == 5
    tok = config.build_tokenizer()
    assert pg.rows(table)[0] == (1, tok.tokenize("User1@X.com"), tok.tokenize("User1@X.com").lower())


@pytest.mark.parametrize("column_type", ["citext", 'text COLLATE "und_ci"'])
def test_the_compare_and_set_sees_a_change_of_letter_case_where_the_column_type_does_not(pg, column_type):
    # The apply's comparison (CAST(x AS TEXT) COLLATE "C" on both sides, see
    # test_sql_rendering.py) against the column's own `=`, on the engine itself.
    pg.execute("CREATE EXTENSION IF NOT EXISTS citext")
    pg.execute("CREATE COLLATION IF NOT EXISTS und_ci (provider = icu, locale = 'und-u-ks-level2', "
               "deterministic = false)")
    table = f"t_{uuid.uuid4().hex[:10]}"
    pg.execute(f"CREATE TABLE {table} (v {column_type})")
    pg.execute(f"INSERT INTO {table} VALUES ('Alice@Example.com')")
    [(own, exact)] = pg.execute(
        f"SELECT v = 'alice@example.com', "
        f"(CAST(v AS TEXT) COLLATE \"C\") = (CAST('alice@example.com' AS TEXT) COLLATE \"C\") FROM {table}")
    assert (own, exact) == (True, False)


def test_rows_the_warehouse_says_it_left_alone_are_not_counted_as_updated(pg, monkeypatch, caplog):
    # Delta answers each MERGE with num_updated_rows; the loop takes rows it left out of rows_updated.
    table = pg.create_table([("id", "int"), ("email", "text")], _emails(30))
    writer = PostgresTokenizer.batch_writer

    @contextlib.contextmanager
    def reporting_writer(self, conn, target):
        with writer(self, conn, target) as write:
            def write_reporting(batch):
                send = write(batch)
                return lambda: (send(), 2)[1]  # as if the warehouse left 2 rows of each batch alone
            yield write_reporting

    monkeypatch.setattr(PostgresTokenizer, "batch_writer", reporting_writer)
    caplog.set_level(logging.WARNING, logger="datahub_tokenize_action")
    result = run_request(pg.config(batch_size=10), TokenizeRequest(pg.urn(table), ("email",)))
    assert result.rows_updated == 30 - 3 * 2
    assert any("the warehouse left 6 row(s) of those sent alone" in r.getMessage() for r in caplog.records)
