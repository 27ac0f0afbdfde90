"""Benchmark: our loop against the server-side floor and the seeds' per-row approach.

    python benchmarks/bench_postgres.py [--rows 1000000] [--seed-rows 100000] [--rss-rows 5000000] [--repeat 2]

Starts a throwaway Postgres (system binaries), builds a table of N rows (id, two PII
columns, four other columns), and times on identical copies, each after a CHECKPOINT and
after an untimed warm-up UPDATE has created the cluster's WAL files:

  (a) floor: one server-side UPDATE computing HMAC tokens with pgcrypto;
  (b) seeds: SELECT ... FOR UPDATE, fetch all, one UPDATE per row (on --seed-rows);
  (c) ours: `datahub-tokenize run --json` in a subprocess (its peak RSS measured);
  (d) ours with `run.pushdown: always`: one UPDATE computing the tokens in Postgres.

Each of (a), (b), (c), (d) is measured --repeat times, in rounds (a, b, c; a, b, c; ...), each on
a fresh copy, and its best time is compared (as timeit does: on a shared machine noise only
ever adds time); every time is printed. Then a second run of (c) on the last tokenized copy,
and (c) on --rss-rows to show that memory stays flat as the table grows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import sqlalchemy as sa

from datahub_tokenize_action import load_tokenizer
from datahub_tokenize_action.testing.postgres import PostgresCluster

KEY = "benchmark-hmac-key-0123456789abcdef"
COLUMNS = ("email", "phone")

BUILD = """
CREATE TABLE {t} (
  id bigint PRIMARY KEY, email text, phone text, first_name text, city text, signup date, score integer
);
INSERT INTO {t}
SELECT g,
       (ARRAY['anna','ben','chloe','dmitri','eva','farid','grace','hiro'])[1 + g % 8] || '.' ||
         (ARRAY['smith','garcia','müller','kowalski','nguyen','okafor'])[1 + g % 6] || g || '@example.com',
       '+1-' || lpad((200 + g % 800)::text, 3, '0') || '-' || lpad((g % 10000000)::text, 7, '0'),
       (ARRAY['Anna','Ben','Chloe','Dmitri','Eva','Farid','Grace','Hiro'])[1 + g % 8],
       (ARRAY['Berlin','Lagos','Osaka','Lima','Oslo'])[1 + g % 5],
       date '2020-01-01' + (g % 1500),
       g % 1000
FROM generate_series(1, {n}) g;
"""


def build(engine: sa.Engine, table: str, n: int) -> None:
    with engine.begin() as c:
        c.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        for stmt in BUILD.format(t=table, n=n).split(";"):
            if stmt.strip():
                c.execute(sa.text(stmt))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(sa.text(f"VACUUM ANALYZE {table}"))
        # Every timed run starts with clean buffers: otherwise a run pays for writing out
        # the pages the runs before it dirtied (the floor's UPDATE, the table builds).
        c.execute(sa.text("CHECKPOINT"))


def drop(engine: sa.Engine, table: str) -> None:
    with engine.begin() as c:
        c.execute(sa.text(f"DROP TABLE {table}"))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def floor(engine: sa.Engine, table: str) -> float:
    # The same v2 tokens as ours: 36 digest characters, then the 7-character check value.
    expr = "pg_temp.tok2('tok2_bench_' || left(translate(encode(hmac({c}, :k, 'sha256'), 'base64'), '+/', '-_'), 36))"
    sets = ", ".join(f"{c} = {expr.format(c=c)}" for c in COLUMNS)

    def go() -> None:
        with engine.begin() as c:
            c.execute(sa.text(
                "CREATE OR REPLACE FUNCTION pg_temp.tok2(b text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT b || "
                "translate(left(encode(sha256(convert_to('datahub-tokenize check:' || b, 'UTF8')), 'base64'), 7), "
                "'+/', '-_') $$"))
            c.execute(sa.text(f"UPDATE {table} SET {sets}"), {"k": KEY})

    return timed(go)


def seeds(engine: sa.Engine, table: str) -> float:
    tok = load_tokenizer("hmac", {"key": KEY})

    def go() -> None:
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute(f"SELECT id, email, phone FROM {table} FOR UPDATE")
            for row_id, email, phone in cur.fetchall():
                cur.execute(f"UPDATE {table} SET email = %s, phone = %s WHERE id = %s",
                            (tok.tokenize(email), tok.tokenize(phone), row_id))
            raw.commit()
        finally:
            raw.close()

    return timed(go)


def ours(cluster: PostgresCluster, table: str, pushdown: str = "never") -> tuple[float, dict, int]:
    """Run the CLI in a subprocess; return wall time, its JSON result and its peak RSS in MB."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(
            "action:\n  type: tokenize\n  config:\n"
            f"    connections:\n      - platform: postgres\n        url: {cluster.server_url()}\n"
            "    tokenizer:\n      type: hmac\n      key: ${BENCH_KEY}\n"
            f"    run:\n      pushdown: {pushdown}\n"
        )
        config = f.name
    cmd = [sys.executable, "-m", "datahub_tokenize_action.cli", "run", "-c", config, "--json", "-q",
           "--dataset", f"urn:li:dataset:(urn:li:dataPlatform:postgres,postgres.public.{table},PROD)",
           "--columns", ",".join(COLUMNS)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env={**os.environ, "BENCH_KEY": KEY}, text=True)
    out = proc.stdout.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)  # reap it ourselves: wait4 gives this child's own peak RSS
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    os.unlink(config)
    if proc.returncode != 0:
        raise SystemExit(f"our run failed ({proc.returncode})")
    return wall, json.loads(out), usage.ru_maxrss // 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seed-rows", type=int, default=100_000)
    ap.add_argument("--rss-rows", type=int, default=5_000_000, help="0 to skip the memory run")
    ap.add_argument("--repeat", type=int, default=2, help="rounds of (a), (b), (c); the best time of each is compared")
    args = ap.parse_args()

    print(f"machine: {os.cpu_count()} cores; PostgreSQL from the system binaries; N = {args.rows:,}")
    with PostgresCluster(settings=("shared_buffers=512MB", "max_wal_size=4GB")) as cluster:
        engine = sa.create_engine(cluster.url())
        with engine.begin() as c:
            c.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pgcrypto"))

        # Warm-up, untimed: a fresh cluster creates its WAL files during the first big UPDATE
        # (~4% of its time); every timed run below reuses them.
        build(engine, "bench_warmup", args.rows)
        floor(engine, "bench_warmup")
        drop(engine, "bench_warmup")

        floors: list[float] = []
        seed_times: list[float] = []
        runs: list[tuple[float, dict, int]] = []
        pushed: list[tuple[float, dict, int]] = []
        for round_ in range(1, args.repeat + 1):
            build(engine, "bench_floor", args.rows)
            floors.append(floor(engine, "bench_floor"))
            drop(engine, "bench_floor")  # else autovacuum cleans up its 1M dead rows during the next runs
            build(engine, "bench_seeds", args.seed_rows)
            seed_times.append(seeds(engine, "bench_seeds"))
            drop(engine, "bench_seeds")
            build(engine, "bench_pushdown", args.rows)
            pushed.append(ours(cluster, "bench_pushdown", pushdown="always"))
            assert pushed[-1][1]["rows_updated"] == args.rows and pushed[-1][1]["method"] == "pushdown", pushed[-1][1]
            drop(engine, "bench_pushdown")
            build(engine, "bench_ours", args.rows)
            runs.append(ours(cluster, "bench_ours"))
            assert runs[-1][1]["rows_updated"] == args.rows, runs[-1][1]
            if round_ < args.repeat:  # the last one is kept for the second run below
                drop(engine, "bench_ours")
            print(f"round {round_}: floor {floors[-1]:.2f} s, seeds {args.seed_rows / seed_times[-1]:,.0f} rows/s, "
                  f"ours {runs[-1][1]['elapsed_s']:.2f} s, pushdown {pushed[-1][1]['elapsed_s']:.2f} s")

        t_floor = min(floors)
        print(f"(a) floor, server-side pgcrypto hmac UPDATE: {t_floor:7.2f} s  {args.rows / t_floor:>10,.0f} rows/s"
              f"  (best of {len(floors)})")
        t_seeds = min(seed_times)
        seeds_rate = args.seed_rows / t_seeds
        print(f"(b) seeds, per-row UPDATE on {args.seed_rows:,} rows:   {t_seeds:7.2f} s  {seeds_rate:>10,.0f} rows/s"
              f"  (best of {len(seed_times)})")
        wall, result, rss = min(runs, key=lambda r: r[1]["elapsed_s"])
        rss = max(r[2] for r in runs)
        ours_rate = args.rows / result["elapsed_s"]
        print(f"(c) ours, datahub-tokenize run:               {result['elapsed_s']:7.2f} s  {ours_rate:>10,.0f} rows/s"
              f"  (best of {len(runs)}; process wall {wall:.2f} s, peak RSS {rss} MB)")
        print(f"    ours / floor: {result['elapsed_s'] / t_floor:.2f}x ({wall / t_floor:.2f}x with the CLI's start-up)"
              f"   speed-up over seeds: {ours_rate / seeds_rate:.1f}x")

        _, push, push_rss = min(pushed, key=lambda r: r[1]["elapsed_s"])
        print(f"(d) ours, run.pushdown: always:              {push['elapsed_s']:7.2f} s  "
              f"{args.rows / push['elapsed_s']:>10,.0f} rows/s  (best of {len(pushed)}; peak RSS {push_rss} MB)")
        print(f"    pushdown / loop: {push['elapsed_s'] / result['elapsed_s']:.2f}x   "
              f"pushdown / floor: {push['elapsed_s'] / t_floor:.2f}x")

        wall2, again, _ = ours(cluster, "bench_ours")
        print(f"    second run (nothing to do): {again['elapsed_s']:.2f} s, rows updated {again['rows_updated']}")

        if args.rss_rows:
            drop(engine, "bench_ours")
            build(engine, "bench_big", args.rss_rows)
            wall3, big, rss_big = ours(cluster, "bench_big")
            print(f"(c) ours on {args.rss_rows:,} rows: {big['elapsed_s']:.2f} s "
                  f"({args.rss_rows / big['elapsed_s']:,.0f} rows/s), peak RSS {rss_big} MB "
                  f"(vs {rss} MB at {args.rows:,})")
        engine.dispose()


if __name__ == "__main__":
    main()
