"""Plaintext left behind after a run, and ``run.purge``, on a real Postgres.

The old row versions a run leaves are read from the table's own pages (pageinspect): before a
purge they hold the plaintext; after it, no row version of the table does.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from datahub_tokenize_action import TokenizeRequest, parse_config, run_request

EMAILS = [f"purge.user{i}@example.com" for i in range(200)]


def _table(pg):
    table = pg.create_table([("id", "int"), ("email", "text")], [(i, e) for i, e in enumerate(EMAILS)])
    pg.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")  # only the run's VACUUM
    pg.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
    return table


def _row_versions_holding_plaintext(pg, table) -> int:
    """Row versions (live or dead, not yet removed) in the table's pages whose data holds an
    original email, read from the pages themselves."""
    pages = pg.execute(f"SELECT pg_relation_size('{table}') / current_setting('block_size')::int")[0][0]
    found = 0
    for page in range(pages):
        for (data,) in pg.execute(f"SELECT t_data FROM heap_page_items(get_raw_page('{table}', {page})) "
                                  "WHERE t_data IS NOT NULL"):
            found += any(e.encode() in bytes(data) for e in EMAILS[:20])
    return found


def _run(pg, table, **run):
    return run_request(pg.config(**run), TokenizeRequest(pg.urn(table), ("email",)))


def test_a_run_says_what_keeps_the_old_values_and_they_are_there(pg):
    table = _table(pg)
    result = _run(pg, table)
    assert result.rows_updated == len(EMAILS)
    assert "old row versions stay in the table's files until VACUUM" in result.plaintext_remains
    assert "WAL, replicas, WAL archives and backups" in result.plaintext_remains
    assert _row_versions_holding_plaintext(pg, table) == 20, "the dead versions still hold the plaintext"
    assert _run(pg, table).plaintext_remains is None, "a run that changed nothing leaves nothing behind"


@pytest.mark.parametrize("pushdown", ["never", "always"])
def test_purge_vacuums_the_old_row_versions_away(pg, pushdown):
    table = _table(pg)
    result = _run(pg, table, purge=True, pushdown=pushdown)
    assert result.status == "SUCCESS" and result.rows_updated == len(EMAILS)
    assert result.plaintext_remains.startswith("VACUUM removed the old row versions from the table")
    assert "could not be removed yet" not in result.plaintext_remains
    assert _row_versions_holding_plaintext(pg, table) == 0


def test_purge_says_what_an_older_transaction_keeps(pg):
    table = _table(pg)
    reader = sa.create_engine(sa.make_url(pg.server_url).set(database=pg.database), poolclass=sa.pool.NullPool)
    with reader.connect() as conn:
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        assert conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar() == len(EMAILS)  # its snapshot
        result = _run(pg, table, purge=True)
        assert f"{len(EMAILS):,} old row version(s) could not be removed yet" in result.plaintext_remains
        assert _row_versions_holding_plaintext(pg, table) == 20
        conn.rollback()
    reader.dispose()


def test_purge_on_databricks_needs_a_retention():
    config = parse_config({
        "connections": [{"platform": "databricks", "host": "h", "http_path": "/p", "token": "t"}],
        "tokenizer": {"type": "poc"}, "run": {"purge": True},
    })
    from datahub_tokenize_action._warehouses.databricks import DatabricksTokenizer

    wt = DatabricksTokenizer(config.connections[0], config.build_tokenizer(), config.run)
    wt._provider["c.s.t"] = "delta"
    from datahub_tokenize_action import ConfigError, TableRef
    from datahub_tokenize_action._warehouses import ColumnInfo, TableDescription, WriteTarget

    ref = TableRef("urn", "databricks", None, "c", "s", "t")
    desc = TableDescription(columns={"id": ColumnInfo("id", "INT", False), "e": ColumnInfo("e", "STRING", True)})
    target = WriteTarget(ref=ref, table=wt.table_clause(ref, ["id", "e"]), key=("id",), columns=("e",),
                         description=desc)
    with pytest.raises(ConfigError, match="run.purge on Databricks needs run.purge_retain_hours"):
        wt.check_table(None, target)
