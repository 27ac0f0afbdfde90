"""The Databricks dialect against a real Spark SQL engine (pip ``pyspark``, ``local[2]``).

Databricks SQL is Spark's SQL: its parser (with ``${...}`` variable substitution, on by
default) and its functions (RLIKE, sha2, base64) are Spark's. Here:

- every statement the dialect emits goes through Spark's own parser (the MERGE too);
- literals rendered by the dialect read back, through the engine, as the values they render;
- the guard and the stats scan run against a real Spark table (parquet) and must classify
  each value as Python does.

What does NOT run here: MERGE and UPDATE themselves need a table format with row-level
writes (Delta, Iceberg), whose jars are not on the package index; they are parsed, not
executed (README, "What was verified against what").

Without pyspark or Java the tests skip; with ``TOKENIZE_REQUIRE_SPARK=1`` (``make test``
and CI set it) they fail instead.
"""

from __future__ import annotations

import os
import shutil

import pytest
import sqlalchemy as sa
from databricks.sqlalchemy import DatabricksDialect
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datahub_tokenize_action import TableRef, load_tokenizer, parse_config
from datahub_tokenize_action._warehouses.databricks import DatabricksTokenizer
from datahub_tokenize_action._warehouses import Batch, ColumnInfo, TableDescription, WriteTarget, plan

from .harness import HMAC_KEY

pytestmark = pytest.mark.spark

DBX = DatabricksDialect()


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    why = None
    try:
        from pyspark.sql import SparkSession
    except ImportError as e:
        why = (f"pyspark is not installed ({e}); pip install -e '.[test,spark]' (make image-compat's "
               "environments have none: the tier runs in make test)")
    if why is None and not shutil.which("java") and not os.environ.get("JAVA_HOME"):
        why = "no Java runtime (java on PATH or JAVA_HOME); apt-get install openjdk-17-jre-headless"
    if why is not None:
        if os.environ.get("TOKENIZE_REQUIRE_SPARK") == "1":
            pytest.fail(f"the Spark tier is required here: {why}")
        pytest.skip(why)
    base = tmp_path_factory.mktemp("spark")
    session = (SparkSession.builder.master("local[2]").appName("datahub-tokenize-tests")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.sql.warehouse.dir", str(base / "warehouse"))
               .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={base}")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()


def parse(spark, sql: str) -> None:
    """Spark's own parser (variable substitution included); fails the test with its message."""
    from py4j.protocol import Py4JJavaError

    try:
        spark._jsparkSession.sessionState().sqlParser().parsePlan(sql)
    except Py4JJavaError as e:
        pytest.fail(f"Spark's parser rejects the statement: {str(e.java_exception)[:400]}\n{sql[:400]}")


def compiled(stmt) -> str:
    return str(stmt.compile(dialect=DBX, compile_kwargs={"literal_binds": True}))


def tokenizer_config(tokenizer=None):
    return parse_config({
        "connections": [{"platform": "databricks", "host": "adb-1.azuredatabricks.net",
                         "http_path": "/sql/1.0/warehouses/abc", "token": "dapi-secret",
                         "secret_scope": "tokenize", "secret_key": "hmac-key"}],
        "tokenizer": tokenizer or {"type": "hmac", "key": HMAC_KEY, "key_id": "k1"},
    })


def dialect(tokenizer=None) -> DatabricksTokenizer:
    config = tokenizer_config(tokenizer)
    return DatabricksTokenizer(config.connections[0], config.build_tokenizer(), config.run)


def target(wt, table: str, columns=("v",), key=("id",), catalog="spark_catalog", schema="default") -> WriteTarget:
    ref = TableRef("urn", "databricks", None, catalog, schema, table)
    desc = TableDescription(columns={c: ColumnInfo(c, "STRING", True) for c in (*key, *columns)},
                            primary_key=tuple(key))
    return WriteTarget(ref=ref, table=wt.table_clause(ref, [*key, *columns]), key=tuple(key),
                       columns=tuple(columns), description=desc)


#: Values that have broken SQL renderers: quotes, backslashes, Spark's ``${...}`` variables,
#: line breaks (U+2028 too), non-BMP characters, and the shapes of tokens.
TRICKY = [
    "", "plain", "it's", "''", "\\", "\\'", "a\\nb", "line\nbreak", "tab\there", "\r\n", "u\u2028v",
    "$", "$$", "${x}", "${env:HOME}", "${system:user.home}", "${hiveconf:x}", "a$b{c}", "\\${x}", "$\\{x}",
    "ünïcödé", "名前", "emoji 😀", "\U0001F600${x}", "%s", "%(x)s", ":name", "?", "--", "/* x */", ";",
    "tok_", "tok2_", "tok_x_poc", "tok_dGV4dA==_poc", "tok2_k1_" + "A" * 43, "tok2_probe_" + "A" * 51,
    "x" * 5000,
]


def test_literals_the_dialect_renders_read_back_through_spark_as_the_same_values(spark):
    render = DatabricksTokenizer._literal_renderer(DBX)
    rows = ", ".join(f"({i}, {render(v)})" for i, v in enumerate(TRICKY))
    sql = f"SELECT * FROM VALUES {rows} AS t(i, v)"
    assert "${" not in sql, "Spark would substitute ${...} before parsing"
    got = {r[0]: r[1] for r in spark.sql(sql).collect()}
    assert [got[i] for i in range(len(TRICKY))] == TRICKY


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.text(st.characters(blacklist_categories=("Cs",)), max_size=5) | st.sampled_from(
    ["$", "'", "{", "}", "\\", "\n", "\u2028", "${", "${x}", "${env:HOME}"]), max_size=12).map("".join),
    min_size=1, max_size=20))
def test_any_text_round_trips_through_spark(spark, values):
    render = DatabricksTokenizer._literal_renderer(DBX)
    values = [v.replace("\x00", "") for v in values]
    sql = "SELECT * FROM VALUES " + ", ".join(f"({i}, {render(v)})" for i, v in enumerate(values)) + " AS t(i, v)"
    got = {r[0]: r[1] for r in spark.sql(sql).collect()}
    assert [got[i] for i in range(len(values))] == values


def test_every_merge_the_dialect_writes_is_parsed_by_spark(spark):
    wt = dialect()
    for columns, key in ((("v",), ("id",)), (("email", "phone"), ("region", "id"))):
        t = target(wt, "people", columns=columns, key=key)
        head, tail = wt.merge_parts(t)
        plains = [TRICKY[i::len(columns)][:10] for i in range(len(columns))]
        n = min(len(p) for p in plains)
        batch = Batch(keys=[list(range(n)) for _ in key], plains=[p[:n] for p in plains],
                      tokens=[[wt.tokenizer.tokenize(v) if v else None for v in p[:n]] for p in plains])
        for sql in wt.merge_statements(batch, head, tail, wt._literal_renderer(DBX)):
            assert "${" not in sql
            parse(spark, sql)


def test_every_read_the_dialect_emits_is_parsed_by_spark(spark):
    wt = dialect()
    t = target(wt, "people", columns=("email", "phone"), key=("region", "id"))
    tab = t.table
    page = (sa.select(tab.c.region, tab.c.id, tab.c.email, tab.c.phone)
            .where(sa.or_(wt.holds_plaintext(tab.c.email), wt.holds_plaintext(tab.c.phone)),
                   wt.keyset_after(t, ("eu${x}", 7)))
            .order_by(tab.c.region, tab.c.id).limit(500))
    for sql in (compiled(page), compiled(plan.stats_query(wt, t)),
                compiled(plan.guard_probe_query(wt, wt.tokenizer.tokenize("x")))):
        parse(spark, sql)


@pytest.fixture(scope="module")
def corpus_table(spark):
    """A parquet table of every TRICKY value, real tokens of several formats and key ids, and
    look-alikes whose check value is wrong."""
    hmac = load_tokenizer("hmac", {"key": HMAC_KEY, "key_id": "k1"})
    other = load_tokenizer("hmac", {"key": HMAC_KEY + "x", "key_id": "k2"})
    v1 = load_tokenizer("hmac", {"key": HMAC_KEY, "key_id": "k1", "token_version": 1})
    poc = load_tokenizer("poc", {})
    values = list(TRICKY) + [None]
    for i in range(40):
        plain = f"user{i}@example.com"
        for tok in (hmac, other, v1, poc):
            values.append(tok.tokenize(plain))
        good = hmac.tokenize(plain)
        values.append(good[:-1] + ("A" if good[-1] != "A" else "B"))  # wrong check value
        values.append(good.upper())
        values.append(good + "\n")
    df = spark.createDataFrame([(i, v) for i, v in enumerate(values)], "id INT, v STRING")
    df.write.mode("overwrite").format("parquet").saveAsTable("spark_catalog.default.corpus")
    return values


@pytest.mark.parametrize("tokenizer", [
    {"type": "hmac", "key": HMAC_KEY, "key_id": "k1"},
    {"type": "hmac", "key": HMAC_KEY, "key_id": "k1", "recognise_v1_tokens": False},
    {"type": "poc"},
], ids=["hmac", "hmac-without-v1", "poc"])
def test_the_guard_on_a_spark_table_classifies_every_value_as_python_does(spark, corpus_table, tokenizer):
    wt = dialect(tokenizer)
    t = target(wt, "corpus")
    col = t.table.c.v
    stmt = sa.select(t.table.c.id, wt.holds_plaintext(col), wt.is_token_clause(col))
    got = {r[0]: (r[1], r[2]) for r in spark.sql(compiled(stmt)).collect()}
    for i, v in enumerate(corpus_table):
        want_token = None if v is None else wt.tokenizer.is_token(v)
        want_plain = None if v is None else (v != "" and not want_token)
        assert (bool(got[i][1]) if got[i][1] is not None else None) == want_token, (v, got[i])
        assert bool(got[i][0]) == bool(want_plain), (v, got[i])


def test_the_stats_scan_on_a_spark_table_counts_as_python_does(spark, corpus_table):
    wt = dialect()
    t = target(wt, "corpus")
    row = spark.sql(compiled(plan.stats_query(wt, t))).collect()[0].asDict()
    tok = wt.tokenizer
    values = corpus_table
    assert row["nulls_0"] == sum(v is None for v in values)
    assert row["empty_0"] == sum(v == "" for v in values)
    assert row["tokens_0"] == sum(1 for v in values if v and tok.is_token(v))
    assert row["others_0"] == sum(1 for v in values if v and tok.is_token(v) and tok.token_origin(v)
                                  and not tok.token_origin(v).configured)
    assert row["rows_to_change"] == sum(1 for v in values if v and not tok.is_token(v))


#: Keys shorter than, exactly, and longer than SHA-256's 64-byte block (then hashed, RFC 2104).
PUSHDOWN_KEYS = [HMAC_KEY, "Zx8r5pQ2LmN7vB3kT9wYcD4hJ6sF1gA0" * 2, "Qm4tY7wE2rU9iO0pA5sD8fG1hJ3kL6zX" * 3 + "ünï"]


def stand_in_secret(spark, key: str) -> None:
    """Databricks' ``secret(scope, key)`` stand-in: a SQL function returning ``key`` for the
    configured scope and key (Spark 4 SQL functions are inlined and folded, as the real one is
    constant). Its own statement holds the key; the statements the dialect sends must not."""
    escaped = key.replace("\\", "\\\\").replace("'", "\\'")
    spark.sql("CREATE OR REPLACE TEMPORARY FUNCTION secret(scope STRING, key STRING) RETURNS STRING "
              f"RETURN CASE WHEN scope = 'tokenize' AND key = 'hmac-key' THEN '{escaped}' END")


@pytest.mark.parametrize("key", range(len(PUSHDOWN_KEYS)), ids=["short", "block", "long"])
def test_pushdown_tokens_computed_by_spark_are_pythons_byte_for_byte(spark, corpus_table, key):
    wt = dialect({"type": "hmac", "key": PUSHDOWN_KEYS[key], "key_id": "k1"})
    stand_in_secret(spark, PUSHDOWN_KEYS[key])
    t = target(wt, "corpus")
    stmt = sa.select(t.table.c.id, wt.token_sql(wt.tokenizer.sql_form(), t.table.c.v))
    sql = compiled(stmt)
    assert PUSHDOWN_KEYS[key] not in sql and "secret('tokenize', 'hmac-key')" in sql
    got = {r[0]: r[1] for r in spark.sql(sql).collect()}
    for i, v in enumerate(corpus_table):
        if v:
            assert got[i] == wt.tokenizer.tokenize_many([v])[0], (i, v)
    optimized = spark.sql(sql)._jdf.queryExecution().optimizedPlan().toString()
    assert "secret(" not in optimized, "the key material is computed once per statement, not per row"


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=300),
                min_size=1, max_size=20))
def test_any_text_gets_the_tokenizers_token_from_spark(spark, values):
    # (Each example is a Spark query of about a second; the corpus test above covers the tricky values.)
    wt = dialect()
    stand_in_secret(spark, HMAC_KEY)
    form = wt.tokenizer.sql_form()
    render = DatabricksTokenizer._literal_renderer(DBX)
    rows = spark.sql(compiled(sa.select(*(wt.token_sql(form, sa.literal_column(render(v))) for v in values))))
    assert list(rows.collect()[0]) == wt.tokenizer.tokenize_many(values)


def test_the_pushdown_update_is_parsed_by_spark_and_holds_no_key(spark):
    from datahub_tokenize_action._warehouses import pushdown

    wt = dialect()
    t = target(wt, "people", columns=("email", "phone"), catalog="local", schema="db")
    sql = pushdown.update_statement(wt, t, wt.tokenizer.sql_form())
    assert sql.startswith("UPDATE `local`.`db`.`people` AS t SET `email` = CASE WHEN")
    assert HMAC_KEY not in sql and wt.tokenizer.sql_form().ipad.hex() not in sql.lower()
    parse(spark, sql)
