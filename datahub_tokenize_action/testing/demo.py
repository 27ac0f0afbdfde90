"""`make demo`: tokenize a seeded `customers` table in a throwaway Postgres, twice.

Runs the real CLI (`datahub-tokenize run`) against an embedded config with a demo
HMAC key, and shows rows before and after: the first run updates every row, the
second updates none.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import sqlalchemy as sa

from .postgres import PostgresCluster

DEMO_KEY = "demo-only-key-do-not-use-in-production"
CONFIG = """\
action:
  type: tokenize
  config:
    connections:
      - platform: postgres
        url: {url}
    tokenizer:
      type: hmac
      key: ${{TOKENIZE_HMAC_KEY}}
      key_id: demo
"""
SEED = """
CREATE TABLE public.customers (
  id integer PRIMARY KEY, full_name text, email varchar(120), phone text, city text, signup date
);
INSERT INTO public.customers
SELECT g,
       (ARRAY['Ada Lovelace','Grace Hopper','Alan Turing','Edsger Dijkstra','Barbara Liskov'])[1 + g % 5],
       lower(replace((ARRAY['Ada Lovelace','Grace Hopper','Alan Turing','Edsger Dijkstra','Barbara Liskov'])[1 + g % 5], ' ', '.')) || g || '@example.com',
       CASE WHEN g % 7 = 0 THEN NULL ELSE '+44 20 7946 ' || lpad(g::text, 4, '0') END,
       (ARRAY['London','Paris','Berlin'])[1 + g % 3],
       date '2024-01-01' + g
FROM generate_series(1, 1000) g;
"""
URN = "urn:li:dataset:(urn:li:dataPlatform:postgres,appdb.public.customers,PROD)"


def _show(engine: sa.Engine, title: str) -> None:
    print(f"\n{title}")
    with engine.connect() as conn:
        for row in conn.execute(sa.text("SELECT id, full_name, email, phone, city FROM customers ORDER BY id LIMIT 3")):
            print("  ", tuple(row))


def main() -> int:
    cli = shutil.which("datahub-tokenize", path=os.path.dirname(sys.executable)) or "datahub-tokenize"
    with PostgresCluster() as cluster, tempfile.TemporaryDirectory() as tmp:
        admin = sa.create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text("CREATE DATABASE appdb"))
        admin.dispose()
        engine = sa.create_engine(cluster.url("appdb"))
        with engine.begin() as conn:
            for stmt in SEED.split(";"):
                if stmt.strip():
                    conn.execute(sa.text(stmt))
        config = os.path.join(tmp, "tokenize.yaml")
        with open(config, "w") as f:
            f.write(CONFIG.format(url=cluster.server_url()))
        print(f"throwaway Postgres on {cluster.server_url()}, table appdb.public.customers (1000 rows)")
        _show(engine, "before:")
        env = {**os.environ, "TOKENIZE_HMAC_KEY": DEMO_KEY}
        for n in (1, 2):
            cmd = [cli, "run", "-c", config, "--dataset", URN, "--columns", "full_name,email,phone", "-q"]
            print(f"\n$ datahub-tokenize run -c tokenize.yaml --dataset '{URN}' --columns full_name,email,phone"
                  f"   # run {n}")
            proc = subprocess.run(cmd, env=env)
            if proc.returncode != 0:
                return proc.returncode
        _show(engine, "after:")
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
