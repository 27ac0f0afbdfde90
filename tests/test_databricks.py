"""The update loop on a live Databricks SQL warehouse: the contract, run on Delta tables.

Live only when DATABRICKS_SERVER_HOSTNAME, DATABRICKS_HTTP_PATH, DATABRICKS_TOKEN,
DATABRICKS_TEST_CATALOG and DATABRICKS_TEST_SCHEMA are all set (the catalog must be a
Unity Catalog one: the tables declare their key as an informational PRIMARY KEY); skipped
otherwise, with the missing names in the reason. The tests at the end need no warehouse:
they check the harness and the skip itself. The statements the dialect sends are checked
offline in test_sql_rendering.py.

Every contract test holds on Databricks: none of them needs a transaction (validation
refuses a bad request before anything is written), so none is overridden here.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from datahub_tokenize_action import NotDeltaTableError, TokenizeRequest, parse_config
from datahub_tokenize_action._warehouses.databricks_url import databricks_url
from datahub_tokenize_action._routing import route
from datahub_tokenize_action._runner import run_request

from .harness import (
    DATABRICKS_VARIABLES,
    HMAC_KEY,
    DatabricksHarness,
    PostgresHarness,
    databricks_skip_reason,
    missing_databricks_variables,
)
from .test_warehouse_contract import WarehouseContract

MISSING = missing_databricks_variables()
live = pytest.mark.skipif(bool(MISSING), reason=databricks_skip_reason(MISSING))


@pytest.fixture
def dbx():
    harness = DatabricksHarness.from_env()
    try:
        yield harness
    finally:
        harness.close()


@pytest.mark.databricks
@live
class TestDatabricksContract(WarehouseContract):
    @pytest.fixture
    def wh(self, dbx):
        return dbx


@pytest.mark.databricks
@live
def test_a_table_without_a_declared_key_is_tokenized_with_the_configured_key_columns(dbx):
    table = dbx.create_table([("id", "int"), ("email", "text")], [(1, "a@x.com"), (2, "b@x.com")], key=None)
    config = parse_config({
        "connections": [{"platform": "databricks", "host": dbx.host, "http_path": dbx.http_path,
                         "token": dbx.token, "key_columns": {f"{dbx.schema}.{table}": ["id"]}}],
        "tokenizer": {"type": "hmac", "key": HMAC_KEY},
    })

    result = run_request(config, TokenizeRequest(dbx.urn(table), ("email",)))

    tok = config.build_tokenizer()
    assert result.values_tokenized == {"email": 2}
    assert dbx.rows(table) == [(1, tok.tokenize("a@x.com")), (2, tok.tokenize("b@x.com"))]


@pytest.mark.databricks
@live
def test_a_view_is_refused_as_not_delta_and_its_table_is_left_alone(dbx):
    table = dbx.create_table([("id", "int"), ("email", "text")], [(1, "a@x.com")])
    view = f"{table}_v"
    dbx.execute(f"CREATE VIEW {dbx.qualified(view)} AS SELECT * FROM {dbx.qualified(table)}")
    try:
        before = dbx.checksum(table)
        with pytest.raises(NotDeltaTableError, match="not Delta"):
            run_request(dbx.config(), TokenizeRequest(dbx.urn(view), ("email",)))
        assert dbx.checksum(table) == before
    finally:
        dbx.execute(f"DROP VIEW IF EXISTS {dbx.qualified(view)}")


# -- offline: the harness and the skip -------------------------------------------------

HARNESS_INTERFACE = ["platform", "create_table", "rows", "checksum", "urn", "config", "execute", "quote", "close"]


def offline_harness() -> DatabricksHarness:
    """A harness that has not connected (SQLAlchemy connects on first use)."""
    return DatabricksHarness("https://adb-1.2.azuredatabricks.net/", "/sql/1.0/warehouses/abc",
                             "dapiS3cretToken", "main", "tokenize_test")


def test_the_databricks_harness_is_importable_and_has_the_postgres_harness_interface():
    for name in HARNESS_INTERFACE:
        assert hasattr(DatabricksHarness, name), name
        assert hasattr(PostgresHarness, name), name
    assert DatabricksHarness.platform == "databricks"


def test_the_skip_reason_names_exactly_the_missing_variables():
    environ = {
        "DATABRICKS_SERVER_HOSTNAME": "adb-1.2.azuredatabricks.net",
        "DATABRICKS_HTTP_PATH": "/sql/1.0/warehouses/abc",
        "DATABRICKS_TEST_CATALOG": "  ",  # blank counts as missing
    }

    missing = missing_databricks_variables(environ)
    reason = databricks_skip_reason(missing)

    assert missing == ["DATABRICKS_TOKEN", "DATABRICKS_TEST_CATALOG", "DATABRICKS_TEST_SCHEMA"]
    assert reason.startswith("live Databricks: DATABRICKS_TOKEN, DATABRICKS_TEST_CATALOG, "
                             "DATABRICKS_TEST_SCHEMA not set")
    assert "DATABRICKS_HTTP_PATH" not in reason
    assert missing_databricks_variables({name: "x" for name in DATABRICKS_VARIABLES}) == []


def test_the_live_tests_are_skipped_with_the_missing_names_exactly_when_a_variable_is_missing():
    marks = [m for m in TestDatabricksContract.pytestmark if m.name == "skipif"]
    assert len(marks) == 1 and marks[0].args == (bool(MISSING),)
    assert [m.name for m in TestDatabricksContract.pytestmark if m.name == "databricks"] == ["databricks"]
    for name in MISSING:
        assert name in marks[0].kwargs["reason"]


def test_from_env_refuses_an_incomplete_environment_with_the_missing_names():
    with pytest.raises(RuntimeError, match="DATABRICKS_TOKEN, DATABRICKS_TEST_SCHEMA"):
        DatabricksHarness.from_env({"DATABRICKS_SERVER_HOSTNAME": "h", "DATABRICKS_HTTP_PATH": "/p",
                                    "DATABRICKS_TEST_CATALOG": "main"})


def test_the_harness_names_tables_the_way_the_action_routes_them():
    harness = offline_harness()
    config = harness.config()

    connection, ref = route(harness.urn("t_1"), config.connections)

    assert harness.urn("t_1") == "urn:li:dataset:(urn:li:dataPlatform:databricks,main.tokenize_test.t_1,PROD)"
    assert (ref.platform, ref.database, ref.schema, ref.table) == ("databricks", "main", "tokenize_test", "t_1")
    # The action's connection reaches the same workspace and catalog as the harness.
    url = databricks_url(connection, catalog=ref.database)
    assert (url.host, url.password, url.query["http_path"], url.query["catalog"]) == (
        harness.engine.url.host, harness.engine.url.password, "/sql/1.0/warehouses/abc", "main",
    )
    assert harness.engine.url.host == "adb-1.2.azuredatabricks.net"


def test_the_harness_creates_delta_tables_with_not_null_keys_and_an_informational_primary_key():
    harness = offline_harness()

    sql = harness.create_table_sql("t_1", [("a", "int"), ("b", "bigint"), ("email", "text"), ("v", "varchar(30)")],
                                   key=("a", "b"))
    no_key = harness.create_table_sql("t_2", [("id", "int"), ("email", "text")], key=None)

    assert sql == (
        "CREATE TABLE `main`.`tokenize_test`.`t_1` (`a` INT NOT NULL, `b` BIGINT NOT NULL, `email` STRING, "
        "`v` VARCHAR(30), CONSTRAINT `t_1_pk` PRIMARY KEY (`a`, `b`)) USING DELTA"
    )
    assert no_key == "CREATE TABLE `main`.`tokenize_test`.`t_2` (`id` INT, `email` STRING) USING DELTA"


def test_the_harness_quotes_every_name_with_backticks():
    harness = offline_harness()

    assert harness.quote("order") == "`order`"
    assert harness.quote("a`b") == "`a``b`"
    assert harness.qualified("my table") == "`main`.`tokenize_test`.`my table`"


def test_the_harness_inserts_rows_as_literals_rendered_by_the_dialect_in_bounded_statements():
    harness = offline_harness()
    harness.max_insert_chars = 60

    statements = harness.insert_statements(
        "t_1", ["id", "v"], [(1, "it's"), (2, "back\\slash"), (3, None), (4, "x" * 100)],
    )

    assert statements == [
        "INSERT INTO `main`.`tokenize_test`.`t_1` (`id`, `v`) VALUES (1, 'it\\'s'), (2, 'back\\\\slash'), (3, NULL)",
        "INSERT INTO `main`.`tokenize_test`.`t_1` (`id`, `v`) VALUES (4, '" + "x" * 100 + "')",
    ]
    assert all("?" not in s and ":" not in s for s in statements)  # no parameter markers


def test_the_harness_connects_only_when_used():
    harness = offline_harness()
    try:
        assert isinstance(harness.engine, sa.engine.Engine)
        assert "dapiS3cretToken" not in repr(harness.engine.url)
    finally:
        harness.close()  # no table was created: nothing to drop, nothing to connect for
