"""Benchmark: pushdown against the client loop's writes on a local Spark (Iceberg tables).

    python benchmarks/bench_spark.py [--rows 1000000] [--loop-rows 1000000] [--pushdown-rows 10000000]

Delta's jars are not on the package index; Iceberg on Spark 3.5 (`make iceberg`) stands in
for it, as in the tests. On identical fresh tables of N rows (id, email, phone):

  (a) pushdown: the one UPDATE a run sends (`secret(...)` replaced by the key's literal:
      Databricks folds the constant secret, the suite's Spark 3.5 has no SQL function to
      stand in for it);
  (b) loop: the MERGE statements a run sends for batches of 20,000 rows (tokens made and
      rendered in Python, as the loop does, while Spark executes the previous statement);
      the loop's keyset page reads are not included, so (b) is a lower bound of the loop.

Each prints its time and checks that no plaintext is left.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import tempfile

import sqlalchemy as sa

from datahub_tokenize_action import TableRef, parse_config
from datahub_tokenize_action._warehouses import Batch, ColumnInfo, TableDescription, WriteTarget, pushdown
from datahub_tokenize_action._warehouses.databricks import DatabricksTokenizer, _dialect

ROOT = pathlib.Path(__file__).resolve().parent.parent
RUNNER = ROOT / "benchmarks" / "iceberg_runner.py"
KEY = "benchmark-hmac-key-0123456789abcdef"
COLUMNS = ("email", "phone")


def dialect() -> DatabricksTokenizer:
    config = parse_config({
        "connections": [{"platform": "databricks", "host": "h", "http_path": "/p", "token": "t",
                         "secret_scope": "tokenize", "secret_key": "hmac-key"}],
        "tokenizer": {"type": "hmac", "key": KEY},
    })
    return DatabricksTokenizer(config.connections[0], config.build_tokenizer(), config.run)


def target(wt: DatabricksTokenizer) -> WriteTarget:
    ref = TableRef("urn", "databricks", None, "local", "db", "people")
    desc = TableDescription(columns={c: ColumnInfo(c, "STRING", True) for c in ("id", *COLUMNS)}, primary_key=("id",))
    return WriteTarget(ref=ref, table=wt.table_clause(ref, ["id", *COLUMNS]), key=("id",), columns=COLUMNS,
                       description=desc)


def run(python: str, rows: int, statements) -> dict:
    with tempfile.TemporaryDirectory() as warehouse:
        proc = subprocess.Popen([python, str(RUNNER), warehouse, str(rows)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        for sql in statements:
            proc.stdin.write(json.dumps(sql) + "\n")  # type: ignore[union-attr]
        proc.stdin.close()  # type: ignore[union-attr]
        out = proc.stdout.read()  # type: ignore[union-attr]
        if proc.wait() != 0:
            raise SystemExit("the Iceberg runner failed")
    return json.loads(out.strip().splitlines()[-1])


def pushdown_statements(wt: DatabricksTokenizer) -> list[str]:
    sql = pushdown.update_statement(wt, target(wt), wt.tokenizer.sql_form())
    assert isinstance(sql, str) and KEY not in sql
    return [sql.replace("secret('tokenize', 'hmac-key')", f"'{KEY}'")]


def loop_statements(wt: DatabricksTokenizer, rows: int, batch_size: int = 20_000):
    render = wt._literal_renderer(_dialect())
    head, tail = wt.merge_parts(target(wt))
    for lo in range(1, rows + 1, batch_size):
        ids = list(range(lo, min(lo + batch_size, rows + 1)))
        plains = [[f"user{i}@example.com" for i in ids], [f"+1-555-{i:07d}" for i in ids]]
        batch = Batch(keys=[ids], plains=plains, tokens=[wt.tokenizer.tokenize_many(p) for p in plains])
        yield from wt.merge_statements(batch, head, tail, render)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="pushdown vs loop")
    ap.add_argument("--pushdown-rows", type=int, default=10_000_000, help="pushdown alone; 0 to skip")
    ap.add_argument("--python", default=str(ROOT / ".venv-iceberg" / "bin" / "python"))
    args = ap.parse_args()
    wt = dialect()
    push = run(args.python, args.rows, pushdown_statements(wt))
    print(f"(a) pushdown, one UPDATE:   {args.rows:>11,} rows  {push['seconds']:8.2f} s  "
          f"{args.rows / push['seconds']:>10,.0f} rows/s  plaintext left {push['plaintext_left']}")
    loop = run(args.python, args.rows, loop_statements(wt, args.rows))
    print(f"(b) loop, MERGE per batch:  {args.rows:>11,} rows  {loop['seconds']:8.2f} s  "
          f"{args.rows / loop['seconds']:>10,.0f} rows/s  plaintext left {loop['plaintext_left']}")
    print(f"    loop / pushdown: {loop['seconds'] / push['seconds']:.1f}x")
    if args.pushdown_rows:
        big = run(args.python, args.pushdown_rows, pushdown_statements(wt))
        print(f"(a) pushdown, one UPDATE:   {args.pushdown_rows:>11,} rows  {big['seconds']:8.2f} s  "
              f"{args.pushdown_rows / big['seconds']:>10,.0f} rows/s  plaintext left {big['plaintext_left']}")


if __name__ == "__main__":
    main()
