"""`make e2e`: checks the compose stack end to end, from the host (the dev venv's
acryl-datahub and psycopg2), after `make up`:

1. waits (bounded) for DataHub to show `tokenize/status:SUCCESS` and a SUCCESS run record on
   appdb.public.customers (the ingest job tagged it `tokenize/run`);
2. checks in the warehouse (its published port) that every PII value is a token and no
   plaintext is left, and that the non-PII columns are untouched;
3. removes and adds `tokenize/run` again, waits for the next run record, and checks it
   updated 0 rows and the table's checksum did not change.

Exit code 0 when all hold; 1 with a message otherwise.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import psycopg2
from datahub.ingestion.graph.client import DatahubClientConfig, DataHubGraph
from datahub.metadata.schema_classes import DatasetPropertiesClass, GlobalTagsClass, TagAssociationClass
from datahub.specific.dataset import DatasetPatchBuilder

DATASET = "urn:li:dataset:(urn:li:dataPlatform:postgres,appdb.public.customers,PROD)"
RUN_TAG = "urn:li:tag:tokenize/run"
SUCCESS_TAG = "urn:li:tag:tokenize/status:SUCCESS"
FAILED_TAG = "urn:li:tag:tokenize/status:FAILED"
PII = ("full_name", "email", "phone")
ROOT = pathlib.Path(__file__).resolve().parent.parent
CHECKSUM_SQL = (
    "SELECT count(*), md5(string_agg(concat_ws('|', id, full_name, email, phone, city, signup_date), "
    "',' ORDER BY id)) FROM public.customers"
)


class Failed(Exception):
    pass


def read_env(path: pathlib.Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            env[k.strip()] = v.strip()
    return env


def tags(graph: DataHubGraph) -> set[str]:
    aspect = graph.get_aspect(DATASET, GlobalTagsClass)
    return {t.tag for t in aspect.tags} if aspect else set()


def run_record(graph: DataHubGraph) -> dict | None:
    props = graph.get_aspect(DATASET, DatasetPropertiesClass)
    raw = (props.customProperties or {}).get("last_tokenization_run") if props else None
    return json.loads(raw) if raw else None


def wait_for_run(graph: DataHubGraph, timeout_s: float, not_run_id: str | None = None) -> dict:
    """The first run record whose run_id is not `not_run_id`, once the SUCCESS tag is there."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            record, present = run_record(graph), tags(graph)
        except Exception as e:  # GMS still starting
            last = f"GMS: {type(e).__name__}: {e}"
        else:
            last = f"tags {sorted(present)}, run record {record}"
            if record and record.get("run_id") != not_run_id:
                if record.get("status") == "FAILED" or FAILED_TAG in present:
                    raise Failed(f"the run failed: {record.get('error_type')}: {record.get('error')}")
                if record.get("status") == "SUCCESS" and SUCCESS_TAG in present:
                    return record
        time.sleep(3)
    raise Failed(f"no new SUCCESS run on {DATASET} within {timeout_s:.0f} s; last seen: {last}")


def check_table(conn) -> str:
    with conn.cursor() as cur:
        cur.execute("SELECT id, full_name, email, phone, city FROM public.customers ORDER BY id")
        rows = cur.fetchall()
        if len(rows) != 300:
            raise Failed(f"expected 300 rows, found {len(rows)}")
        for id_, full_name, email, phone, city in rows:
            for col, value in (("full_name", full_name), ("email", email), ("phone", phone)):
                if value is not None and not value.startswith("tok2_"):
                    raise Failed(f"row {id_}: {col} is not a token")
            if phone is None and id_ % 7 != 0:
                raise Failed(f"row {id_}: phone became NULL")
            if city.startswith("tok"):
                raise Failed(f"row {id_}: city (not PII) was tokenized")
        cur.execute("SELECT count(*) FROM public.customers WHERE email LIKE '%@example.com' OR full_name LIKE '% %'")
        if cur.fetchone()[0]:
            raise Failed("plaintext PII left in the table")
        cur.execute(CHECKSUM_SQL)
        return cur.fetchone()[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gms", default="http://localhost:8080")
    p.add_argument("--timeout", type=float, default=900, help="seconds to wait for the first run")
    args = p.parse_args()
    env = read_env(ROOT / ".env")
    graph = DataHubGraph(DatahubClientConfig(server=args.gms))
    conn = psycopg2.connect(host="127.0.0.1", port=int(env.get("WAREHOUSE_PORT", "15432")), dbname="appdb",
                            user="postgres", password=env["WAREHOUSE_ADMIN_PASSWORD"])
    conn.autocommit = True
    try:
        first = wait_for_run(graph, args.timeout)
        print(f"run {first['run_id']}: SUCCESS, {first['counts']['rows_updated']} rows updated, columns {first['columns']}")
        if sorted(first["columns"]) != sorted(PII):
            raise Failed(f"tokenized columns {first['columns']}, expected {list(PII)}")
        checksum = check_table(conn)
        print(f"table holds tokens only in {', '.join(PII)}; checksum {checksum}")

        # The steward removes tokenize/run (the action has already removed it) and adds it again.
        for builder in (DatasetPatchBuilder(DATASET).remove_tag(RUN_TAG),
                        DatasetPatchBuilder(DATASET).add_tag(TagAssociationClass(tag=RUN_TAG))):
            for mcp in builder.build():
                graph.emit_mcp(mcp)
            time.sleep(2)
        second = wait_for_run(graph, 300, not_run_id=first["run_id"])
        updated = second["counts"]["rows_updated"]
        print(f"run {second['run_id']}: SUCCESS, {updated} rows updated")
        if updated != 0:
            raise Failed(f"the second run updated {updated} rows, expected 0")
        if check_table(conn) != checksum:
            raise Failed("the second run changed the table")
        print("e2e: OK")
        return 0
    except Failed as e:
        print(f"e2e: FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
