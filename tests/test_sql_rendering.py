"""The statements each dialect issues, compiled with the real dialect (no database needed)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql

from datahub_tokenize_action import TableRef, parse_config
from datahub_tokenize_action._warehouses.postgres import PostgresTokenizer, copy_column
from datahub_tokenize_action._warehouses import ColumnInfo, TableDescription, WriteTarget, plan

from .harness import HMAC_KEY


def _target(wt, ref, key=("id",), columns=("email", "phone")) -> WriteTarget:
    desc = TableDescription(
        columns={c: ColumnInfo(c, "TEXT", True) for c in (*key, *columns)}, primary_key=tuple(key)
    )
    return WriteTarget(ref=ref, table=wt.table_clause(ref, [*key, *columns]), key=tuple(key),
                       columns=tuple(columns), description=desc)


def _sql(stmt, dialect) -> str:
    return " ".join(str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True})).split())


def _postgres():
    config = parse_config({"connections": [{"platform": "postgres", "url": "postgresql+psycopg2://u@h"}],
                           "tokenizer": {"type": "hmac", "key": HMAC_KEY}})
    wt = PostgresTokenizer(config.connections[0], config.build_tokenizer(), config.run)
    ref = TableRef("urn", "postgres", None, "appdb", "public", "customers")
    return wt, ref


#: The v1 digest, spelled out (43 base64url characters).
_V1_DIGEST = "[A-Za-z0-9_-]" * 43


def _pg_is_token(v: str) -> str:
    """The hmac guard on Postgres for the value expression ``v``: v2 (length, shape, check value
    compared in the "C" collation), v1 (length, exact shape), poc (shape)."""
    c = f'({v} COLLATE "C")'
    return (
        f"char_length({v}) BETWEEN 50 AND 65 AND {c} ~ '^tok2_[A-Za-z0-9]+_[A-Za-z0-9_-]+$' AND "
        f"(right({v}, 7) COLLATE \"C\") = (substr(translate(encode(sha256(convert_to(concat("
        f"'datahub-tokenize check:', substr({v}, 1, char_length({v}) - 7)), 'UTF8')), 'base64'), '+/', '-_'), "
        f"1, 7) COLLATE \"C\") "
        f"OR char_length({v}) BETWEEN 49 AND 64 AND {c} ~ '^tok_[A-Za-z0-9]+_{_V1_DIGEST}$' "
        f"OR {c} ~ '^tok_[A-Za-z0-9_=-]+_poc$'"
    )


def _dbx_is_token(v: str) -> str:
    """The same guard on Databricks (RLIKE anchored with \\z; sha2/unhex/base64)."""
    return (
        f"char_length({v}) BETWEEN 50 AND 65 AND ({v} RLIKE '^tok2_[A-Za-z0-9]+_[A-Za-z0-9_-]+\\\\z') AND "
        f"right({v}, 7) = substr(translate(base64(unhex(sha2(concat('datahub-tokenize check:', "
        f"substr({v}, 1, char_length({v}) - 7)), 256))), '+/', '-_'), 1, 7) "
        f"OR char_length({v}) BETWEEN 49 AND 64 AND ({v} RLIKE '^tok_[A-Za-z0-9]+_{_V1_DIGEST}\\\\z') "
        f"OR ({v} RLIKE '^tok_[A-Za-z0-9_=-]+_poc\\\\z')"
    )


def test_postgres_guard_skips_empty_strings_and_tokens_of_every_builtin_format():
    wt, ref = _postgres()
    target = _target(wt, ref)
    # As text (citext's own ~ ignores case) in the "C" collation (a case-insensitive one refuses regexes).
    v = "CAST(public.customers.email AS TEXT)"
    assert _sql(wt.holds_plaintext(wt.value_of(target, "email")), postgresql.dialect()) == (
        f"{v} != '' AND NOT ({_pg_is_token(v)})"
    )


def test_postgres_update_sets_a_token_only_where_the_plaintext_read_is_still_there():
    wt, ref = _postgres()
    target = _target(wt, ref)
    stage = sa.table("_tokenize_stage", *(sa.column(c) for c in ("k0", "p0", "t0", "p1", "t1")))
    update = wt._update_from(target, stage)
    assert " ".join(str(update.compile(dialect=postgresql.dialect())).split()) == (
        # Values compare as stored, byte for byte (citext and case-insensitive collations would
        # take a case-only change for the plaintext read); run on Postgres by test_postgres.py.
        "UPDATE public.customers SET "
        "email=CASE WHEN (_tokenize_stage.t0 IS NOT NULL AND (CAST(public.customers.email AS TEXT) COLLATE \"C\") = (CAST(_tokenize_stage.p0 AS TEXT) COLLATE \"C\")) "
        "THEN _tokenize_stage.t0 ELSE public.customers.email END, "
        "phone=CASE WHEN (_tokenize_stage.t1 IS NOT NULL AND (CAST(public.customers.phone AS TEXT) COLLATE \"C\") = (CAST(_tokenize_stage.p1 AS TEXT) COLLATE \"C\")) "
        "THEN _tokenize_stage.t1 ELSE public.customers.phone END "
        "FROM _tokenize_stage WHERE public.customers.id = _tokenize_stage.k0 AND "
        "(public.customers.id) BETWEEN (%(lo_0)s) AND (%(hi_0)s) AND "
        "(_tokenize_stage.t0 IS NOT NULL AND (CAST(public.customers.email AS TEXT) COLLATE \"C\") = (CAST(_tokenize_stage.p0 AS TEXT) COLLATE \"C\") OR "
        "_tokenize_stage.t1 IS NOT NULL AND (CAST(public.customers.phone AS TEXT) COLLATE \"C\") = (CAST(_tokenize_stage.p1 AS TEXT) COLLATE \"C\"))"
    )


def test_postgres_update_bounds_a_composite_key_by_row_comparison():
    wt, ref = _postgres()
    target = _target(wt, ref, key=("region", "id"), columns=("email",))
    stage = sa.table("_tokenize_stage", *(sa.column(c) for c in ("k0", "k1", "p0", "t0")))
    update = wt._update_from(target, stage)
    assert (
        "WHERE public.customers.region = _tokenize_stage.k0 AND public.customers.id = _tokenize_stage.k1 AND "
        "(public.customers.region, public.customers.id) BETWEEN (%(lo_0)s, %(lo_1)s) AND (%(hi_0)s, %(hi_1)s) AND "
    ) in " ".join(str(update.compile(dialect=postgresql.dialect())).split())


def _read_copy_field(field: str):
    """How Postgres reads one COPY text field (the escapes copy_column writes)."""
    if field == "\\N":
        return None
    out, chars = [], iter(field)
    for c in chars:
        out.append({"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}[next(chars)] if c == "\\" else c)
    return "".join(out)


_copy_values = st.lists(st.one_of(st.none(), st.text(alphabet=st.characters(blacklist_characters="\x00")),
                                  st.integers()), max_size=30)


@given(_copy_values)
def test_copy_fields_read_back_as_the_values_written(values):
    fields = copy_column(values)
    assert len(fields) == len(values)
    assert all("\t" not in f and "\n" not in f and "\r" not in f for f in fields)
    assert [_read_copy_field(f) for f in fields] == [None if v is None else str(v) for v in values]


def test_postgres_keyset_paging_uses_a_row_value_comparison_for_composite_keys():
    wt, ref = _postgres()
    target = _target(wt, ref, key=("a", "b"), columns=("email",))
    assert _sql(wt.keyset_after(target, (1, "x")), postgresql.dialect()) == (
        "(public.customers.a, public.customers.b) > (1, 'x')"
    )


# -- Databricks ----------------------------------------------------------------------

from databricks.sqlalchemy import DatabricksDialect  # noqa: E402

from datahub_tokenize_action._warehouses.databricks import DatabricksTokenizer, parse_describe_extended  # noqa: E402
from datahub_tokenize_action._warehouses import Batch  # noqa: E402

DBX = DatabricksDialect()


def _databricks(catalog="main", schema="sales", table="people"):
    config = parse_config({
        "connections": [{"platform": "databricks", "host": "adb-1.azuredatabricks.net",
                         "http_path": "/sql/1.0/warehouses/abc", "token": "dapi-secret"}],
        "tokenizer": {"type": "hmac", "key": HMAC_KEY},
    })
    wt = DatabricksTokenizer(config.connections[0], config.build_tokenizer(), config.run)
    return wt, TableRef("urn", "databricks", None, catalog, schema, table)


def test_databricks_guard_check_asks_the_warehouse_about_a_token_a_plaintext_and_a_lookalike():
    wt, _ = _databricks()
    token = "tok2_k1_" + "a" * 43
    sql = _sql(plan.guard_probe_query(wt, token), DBX)
    probes = [f"'{plan.GUARD_PROBE}'", f"'{plan.LOOKALIKE_PROBE}'", f"'{token}'"]
    assert sql == "SELECT " + ", ".join(f"{_dbx_is_token(p)} AS anon_{i}" for i, p in enumerate(probes, 1))


def test_databricks_guard_uses_rlike_and_keeps_nulls_out():
    wt, ref = _databricks()
    target = _target(wt, ref)
    assert _sql(wt.holds_plaintext(target.table.c.email), DBX) == f"t.email != '' AND NOT ({_dbx_is_token('t.email')})"


def test_databricks_keyset_page_names_catalog_schema_and_table_part_by_part():
    wt, ref = _databricks()
    target = _target(wt, ref, key=("region", "id"), columns=("email",))
    t = target.table
    stmt = (sa.select(t.c.region, t.c.id, t.c.email)
            .where(wt.holds_plaintext(t.c.email), wt.keyset_after(target, ("eu", 7)))
            .order_by(t.c.region, t.c.id).limit(500))
    assert _sql(stmt, DBX) == (
        "SELECT t.region, t.id, t.email FROM `main`.`sales`.people AS t "
        f"WHERE t.email != '' AND NOT ({_dbx_is_token('t.email')}) "
        "AND (t.region > 'eu' OR t.region = 'eu' AND t.id > 7) ORDER BY t.region, t.id LIMIT 500"
    )


def test_databricks_awkward_names_are_quoted_with_backticks_doubled():
    wt, ref = _databricks(catalog="my-Cat", schema="Sälës", table="we`ird Table")
    target = _target(wt, ref, key=("Id",), columns=("e-mail", "名前"))
    assert wt.qualified_name(ref) == "`my-Cat`.`Sälës`.`we``ird Table`"
    stmt = sa.select(target.table.c["e-mail"], target.table.c["名前"])
    assert _sql(stmt, DBX) == "SELECT t.`e-mail`, t.`名前` FROM `my-Cat`.`Sälës`.`we``ird Table` AS t"
    head, tail = wt.merge_parts(target)
    assert head == "MERGE INTO `my-Cat`.`Sälës`.`we``ird Table` AS t USING (SELECT * FROM (VALUES "
    assert "ON t.`Id` = s.k0" in tail and "t.`e-mail` = CASE WHEN s.t0 IS NOT NULL AND t.`e-mail` = s.p0" in tail


def test_databricks_merge_for_a_batch_is_compare_and_set_with_escaped_literals():
    wt, ref = _databricks()
    target = _target(wt, ref, columns=("email", "phone"))
    batch = Batch(keys=[[1, 2]], plains=[["it's \\ 'x' ${env:HOME}", None], ["ünï\ncode", "555"]],
                  tokens=[["tok_a", None], ["tok_b", "tok_c"]])
    head, tail = wt.merge_parts(target)
    [sql] = list(wt.merge_statements(batch, head, tail, wt._literal_renderer(DBX)))
    assert sql == (
        "MERGE INTO `main`.`sales`.`people` AS t USING (SELECT * FROM (VALUES "
        "(1, 'it\\'s \\\\ \\'x\\' \\u0024{env:HOME}', 'tok_a', 'ünï\ncode', 'tok_b'), (2, NULL, NULL, '555', 'tok_c')"
        ") AS v(k0, p0, t0, p1, t1)) AS s ON t.`id` = s.k0 "
        "WHEN MATCHED AND ((s.t0 IS NOT NULL AND t.`email` = s.p0) OR (s.t1 IS NOT NULL AND t.`phone` = s.p1)) "
        "THEN UPDATE SET "
        "t.`email` = CASE WHEN s.t0 IS NOT NULL AND t.`email` = s.p0 THEN s.t0 ELSE t.`email` END, "
        "t.`phone` = CASE WHEN s.t1 IS NOT NULL AND t.`phone` = s.p1 THEN s.t1 ELSE t.`phone` END"
    )


def test_databricks_merge_splits_big_batches_and_drops_duplicate_keys(monkeypatch):
    import datahub_tokenize_action._warehouses.databricks as mod

    monkeypatch.setattr(mod, "MAX_STATEMENT_CHARS", 1000)
    wt, ref = _databricks()
    target = _target(wt, ref, columns=("email",))
    n = 100
    batch = Batch(keys=[list(range(n)) + [5]], plains=[[f"user{i}@x.com" for i in range(n + 1)]],
                  tokens=[[f"tok_{i}" for i in range(n + 1)]])
    head, tail = wt.merge_parts(target)
    statements = list(wt.merge_statements(batch, head, tail, wt._literal_renderer(DBX)))
    assert len(statements) > 1 and all(len(s) <= 1000 for s in statements)
    rows = [r for s in statements for r in s[len(head):s.index(") AS v(")].split("), (")]
    assert len(rows) == n  # every key once; the duplicate key 5 is left for the next run


DESCRIBE_ROWS = [
    ("id", "bigint", None), ("email", "string", None), ("code", "varchar(12)", None), ("age", "int", None),
    ("we`ird", "int", None), ("", "", ""), ("# Detailed Table Information", "", ""), ("Catalog", "main", ""),
    ("Provider", "delta", ""), ("Type", "MANAGED", ""),
    ("# Constraints", "", ""), ("people_pk", "PRIMARY KEY (`id`, `we``ird`)", ""),
]


def test_databricks_describe_extended_gives_types_widths_key_and_provider():
    description, provider = parse_describe_extended(DESCRIBE_ROWS)
    assert provider == "delta"
    assert description.primary_key == ("id", "we`ird")
    assert [c for c, info in description.columns.items() if info.is_text] == ["email", "code"]
    assert description.columns["code"].max_length == 12


def test_databricks_url_puts_the_urn_catalog_in_the_connection():
    wt, ref = _databricks(catalog="hive_metastore")
    url = wt.build_url(ref)
    assert url.query["catalog"] == "hive_metastore" and url.query["http_path"] == "/sql/1.0/warehouses/abc"
    assert "dapi-secret" not in url.render_as_string(hide_password=True)


class _RecordingConnection:
    """Stands in for a Databricks connection: records the SQL, answers DESCRIBE with ``rows``
    and any other query with ``scalar``."""

    def __init__(self, rows, scalar=0):
        self.sql, self.rows, self.scalar = [], rows, scalar

    def exec_driver_sql(self, sql):
        self.sql.append(sql)
        rows = self.rows

        class _Result:
            def fetchall(self):
                return rows

        return _Result()

    def execute(self, stmt):
        self.sql.append(_sql(stmt, DBX))
        scalar = self.scalar

        class _Result:
            def scalar_one(self):
                return scalar

        return _Result()


def test_databricks_validation_describes_the_table_by_its_quoted_parts_and_refuses_non_delta():
    from datahub_tokenize_action import NotDeltaTableError

    wt, ref = _databricks(table="People-2024")
    conn = _RecordingConnection(DESCRIBE_ROWS)
    target = plan.validate(wt, conn, ref, ["email", "code"])
    assert conn.sql == ["DESCRIBE TABLE EXTENDED `main`.`sales`.`People-2024`"]
    assert target.key == ("id", "we`ird")
    wt.check_table(conn, target)  # Delta: accepted
    parquet = [r if r[0] != "Provider" else ("Provider", "parquet", "") for r in DESCRIBE_ROWS]
    target = plan.validate(wt, _RecordingConnection(parquet), ref, ["email"])
    import pytest

    with pytest.raises(NotDeltaTableError, match="parquet, not Delta"):
        wt.check_table(conn, target)


def test_databricks_stats_scan_classifies_each_value_once():
    wt, ref = _databricks()
    target = _target(wt, ref, columns=("email",))
    assert _sql(plan.stats_query(wt, target), DBX) == (
        "SELECT count(*) AS total_rows, coalesce(sum(CASE WHEN (v.class_0 = 'p') THEN 1 ELSE 0 END), 0) AS rows_to_change, "
        "coalesce(sum(CASE WHEN (v.class_0 = 'n') THEN 1 ELSE 0 END), 0) AS nulls_0, "
        "coalesce(sum(CASE WHEN (v.class_0 = 'e') THEN 1 ELSE 0 END), 0) AS empty_0, "
        "coalesce(sum(CASE WHEN (v.class_0 IN ('t', 'o')) THEN 1 ELSE 0 END), 0) AS tokens_0, "
        "coalesce(sum(CASE WHEN (v.class_0 = 'o') THEN 1 ELSE 0 END), 0) AS others_0, "
        "max(CASE WHEN (v.class_0 = 'p') THEN v.bytes_0 END) AS maxlen_0 "
        "FROM (SELECT CASE WHEN (t.email IS NULL) THEN 'n' WHEN (t.email = '') THEN 'e' "
        f"WHEN ({_dbx_is_token('t.email')}) "
        # A token this configuration made ('t': its version and key ids), or another ('o').
        f"THEN CASE WHEN (t.email RLIKE '^tok2_({wt.tokenizer.key_id})_[A-Za-z0-9_-]+\\\\z') THEN 't' ELSE 'o' END "
        "ELSE 'p' END AS class_0, octet_length(t.email) AS bytes_0 "
        "FROM `main`.`sales`.people AS t) AS v"
    )


def test_postgres_stats_scan_is_fenced_so_the_regex_runs_once_per_value():
    wt, ref = _postgres()
    target = _target(wt, ref, columns=("email",))
    sql = _sql(plan.stats_query(wt, target), postgresql.dialect())
    assert sql.endswith("clock_timestamp() AS fence FROM public.customers) AS v")
    assert sql.count("~ '^tok2_[A-Za-z0-9]+") == 1, "each value is classified once"


def test_databricks_checks_the_key_on_the_data_because_its_constraints_are_not_enforced():
    from datahub_tokenize_action import NoKeyError

    wt, ref = _databricks()
    target = plan.validate(wt, _RecordingConnection(DESCRIBE_ROWS), ref, ["email"])
    conn = _RecordingConnection(DESCRIBE_ROWS, scalar=0)
    plan.check_key(wt, conn, target)
    assert conn.sql == [
        "SELECT count(*) AS count_1 FROM (SELECT 1 AS anon_1 FROM `main`.`sales`.people AS t "
        "GROUP BY t.id, t.`we``ird` HAVING count(*) > 1 OR t.id IS NULL OR t.`we``ird` IS NULL) AS shared"
    ]
    with pytest.raises(NoKeyError, match=r"key \(id, we`ird\).*2 key value\(s\)"):
        plan.check_key(wt, _RecordingConnection(DESCRIBE_ROWS, scalar=2), target)


def test_databricks_refuses_char_columns_because_it_pads_them_on_read():
    from datahub_tokenize_action import UnsupportedColumnTypeError

    wt, ref = _databricks()
    rows = [("initials", "char(3)", None), *DESCRIBE_ROWS]
    conn = _RecordingConnection(rows)
    target = plan.validate(wt, conn, ref, ["email", "initials"])
    with pytest.raises(UnsupportedColumnTypeError, match="'initials' is CHAR\\(3\\).*TYPE STRING"):
        wt.check_table(conn, target)


def test_databricks_refuses_a_key_whose_values_cannot_be_matched_back_to_rows():
    from datahub_tokenize_action import NoKeyError

    wt, ref = _databricks()
    rows = [("blob", "binary", None), ("email", "string", None), ("", "", ""), ("Provider", "delta", ""),
            ("# Constraints", "", ""), ("pk", "PRIMARY KEY (`blob`)", "")]
    with pytest.raises(NoKeyError, match=r"blob \(BINARY\)"):
        plan.validate(wt, _RecordingConnection(rows), ref, ["email"])


def test_a_char_column_is_read_and_guarded_without_its_padding_on_postgres():
    wt, ref = _postgres()
    desc = TableDescription(
        columns={"id": ColumnInfo("id", "INTEGER", False), "code": ColumnInfo("code", "CHAR(80)", True, 80, fixed_width=True)},
        primary_key=("id",),
    )
    target = WriteTarget(ref=ref, table=wt.table_clause(ref, ["id", "code"]), key=("id",), columns=("code",),
                         description=desc)
    v = "CAST(public.customers.code AS TEXT)"
    assert _sql(wt.holds_plaintext(wt.value_of(target, "code")), postgresql.dialect()) == (
        f"{v} != '' AND NOT ({_pg_is_token(v)})"
    )


class _DeltaConnection:
    """Answers each statement as Delta does a MERGE: one row of counts (``counts``: its
    num_updated_rows per statement, in order), or no rows at all (``counts`` None)."""

    dialect = DBX

    def __init__(self, counts):
        self.sql, self.counts = [], counts

    def exec_driver_sql(self, sql):
        self.sql.append(sql)
        counts = self.counts

        class _Result:
            returns_rows = counts is not None

            def mappings(self):
                updated = counts.pop(0)
                return type("M", (), {"first": lambda _: {"num_affected_rows": updated, "num_updated_rows": updated,
                                                           "num_deleted_rows": 0, "num_inserted_rows": 0}})()

        return _Result()


@pytest.mark.parametrize("answers, left", [([1, 1, 0, 1], 1), ([1, 1, 1, 1], 0), (None, None)],
                         ids=["one row left", "all updated", "engine says nothing"])
def test_databricks_writer_reports_the_rows_delta_says_it_left(monkeypatch, answers, left):
    import datahub_tokenize_action._warehouses.databricks as mod

    monkeypatch.setattr(mod, "MAX_STATEMENT_CHARS", 400)  # a statement per row
    wt, ref = _databricks()
    target = _target(wt, ref, columns=("email",))
    batch = Batch(keys=[[1, 2, 3, 4]], plains=[["a" * 40, "b" * 40, "c" * 40, "d" * 40]],
                  tokens=[["t" * 40, "u" * 40, "v" * 40, "w" * 40]])
    conn = _DeltaConnection(answers)
    with wt.batch_writer(conn, target) as write:
        assert write(batch)() == left
    assert len(conn.sql) == 4
