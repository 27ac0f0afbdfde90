"""The Databricks dialect's MERGE executed by a Spark engine on a table format with row-level
writes: Iceberg (runtime jar from the package index, built for Spark 3.5) stands in for Delta.

The statements are rendered here, exactly as a run renders them, and executed by
``tests/spark_iceberg/runner.py`` in a separate interpreter (``make iceberg`` builds it:
pyspark 3.5.9 + snowpark-connect-deps-iceberg 1.0.2), after another writer changed some of
the rows the batch read. Without that interpreter the tests skip; with
``TOKENIZE_REQUIRE_SPARK=1`` (``make test``, CI) they fail.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

import pytest

from datahub_tokenize_action._warehouses import Batch

from .test_spark import TRICKY, dialect, target

pytestmark = pytest.mark.spark

ROOT = pathlib.Path(__file__).resolve().parent.parent
RUNNER = pathlib.Path(__file__).resolve().parent / "spark_iceberg" / "runner.py"


@pytest.fixture(scope="module")
def iceberg_python() -> str:
    python = os.environ.get("TOKENIZE_ICEBERG_PYTHON") or str(ROOT / ".venv-iceberg" / "bin" / "python")
    probe = subprocess.run([python, "-c", "import pyspark, snowpark_connect_deps_iceberg"],
                           capture_output=True, text=True) if os.path.exists(python) else None
    if probe is None or probe.returncode != 0:
        why = (f"no Spark 3.5 + Iceberg interpreter at {python} "
               f"({'missing' if probe is None else probe.stderr.strip().splitlines()[-1]}); run make iceberg")
        if os.environ.get("TOKENIZE_REQUIRE_SPARK") == "1":
            pytest.fail(f"the Spark write tier is required here: {why}")
        pytest.skip(why)
    return python


def run_on_iceberg(python: str, tmp_path, columns, rows, before, statements, secret=None) -> dict:
    job = {"warehouse": str(tmp_path / "warehouse"), "columns": list(columns), "rows": rows,
           "before": before, "statements": statements, "secret": secret}
    done = subprocess.run([python, str(RUNNER)], input=json.dumps(job), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_the_merges_a_run_sends_tokenize_exactly_the_values_still_holding_what_was_read(
        iceberg_python, tmp_path, monkeypatch):
    import datahub_tokenize_action._warehouses.databricks as mod

    monkeypatch.setattr(mod, "MAX_STATEMENT_CHARS", 6000)  # several statements, as on a big batch
    wt = dialect()
    tok = wt.tokenizer
    columns = ("email", "phone")
    t = target(wt, "people", columns=columns, catalog="local", schema="db")
    n = len(TRICKY)
    table = {i: {"email": TRICKY[i], "phone": None if i % 5 == 0 else TRICKY[n - 1 - i]} for i in range(n)}
    # What the run read: the guard's rows (values that are not NULL, empty or tokens).
    read = {i: {c: v for c, v in vals.items() if v and not tok.is_token(v)} for i, vals in table.items()}
    ids = [i for i in range(n) if read[i]]
    batch = Batch(keys=[ids],
                  plains=[[read[i].get(c) for i in ids] for c in columns],
                  tokens=[[tok.tokenize(read[i][c]) if c in read[i] else None for i in ids] for c in columns])
    head, tail = wt.merge_parts(t)
    statements = list(wt.merge_statements(batch, head, tail, wt._literal_renderer(mod._dialect())))
    assert len(statements) > 1
    # Another writer, after the read and before the write: a new value, a change of letter case
    # only, and a value holding ${...}, on rows the batch holds.
    app = {(1, "email"): "PLAIN", (2, "phone"): "+1 555 0100", (3, "email"): "new@example.com"}
    before = [f"UPDATE local.db.people SET `{c}` = '{v}' WHERE id = {i}" for (i, c), v in app.items()]
    out = run_on_iceberg(iceberg_python, tmp_path, columns,
                         [[i, table[i]["email"], table[i]["phone"]] for i in range(n)], before, statements)
    got = {r[0]: {"email": r[1], "phone": r[2]} for r in out["rows"]}
    assert sorted(got) == list(range(n)), "no row lost or added"
    for i in range(n):
        for c in columns:
            if (i, c) in app:
                want = app[(i, c)]  # changed after the read: left as the other writer wrote it
            elif c in read[i]:
                want = tok.tokenize(read[i][c])
            else:
                want = table[i][c]  # NULL, empty or already a token: untouched
            assert got[i][c] == want, (i, c, table[i][c], got[i][c])
    assert any("${" in v for vals in read.values() for v in vals.values()), "the batch holds values with ${...}"


def test_the_pushdown_update_tokenizes_every_plaintext_value_on_iceberg_and_nothing_else(iceberg_python, tmp_path):
    from datahub_tokenize_action._warehouses import pushdown

    from .harness import HMAC_KEY

    wt = dialect()
    tok = wt.tokenizer
    columns = ("email", "phone")
    t = target(wt, "people", columns=columns, catalog="local", schema="db")
    n = len(TRICKY)
    v2 = tok.tokenize("already")
    table = {i: {"email": TRICKY[i], "phone": None if i % 5 == 0 else (v2 if i % 7 == 0 else TRICKY[n - 1 - i])}
             for i in range(n)}
    sql = pushdown.update_statement(wt, t, tok.sql_form())
    assert HMAC_KEY not in sql
    out = run_on_iceberg(iceberg_python, tmp_path, columns,
                         [[i, table[i]["email"], table[i]["phone"]] for i in range(n)], [], [sql], secret=HMAC_KEY)
    got = {r[0]: {"email": r[1], "phone": r[2]} for r in out["rows"]}
    assert sorted(got) == list(range(n)), "no row lost or added"
    for i in range(n):
        for c in columns:
            v = table[i][c]
            assert got[i][c] == (tok.tokenize(v) if v and not tok.is_token(v) else v), (i, c, v)
