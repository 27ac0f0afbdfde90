"""`make demo`: the product's real event path, on one machine, in under a minute.

A steward adds the tag ``tokenize/run`` to ``appdb.public.customers`` in DataHub; DataHub
publishes the change on Kafka; the stock ``datahub actions`` CLI runs the shipped
``configs/tokenize.yaml`` unchanged; our action tokenizes the PII columns in Postgres and
writes the outcome back to DataHub. Then the same event is delivered again (as Kafka may do)
and changes nothing.

What is real and what stands in:

- real: the stock ``datahub actions`` CLI (acryl-datahub-actions), its Kafka source and
  filter, this package's action, ``configs/tokenize.yaml`` as shipped, a genuine Avro
  ``PlatformEvent`` carrying an ``EntityChangeEvent``, the Kafka protocol, PostgreSQL
  (a throwaway cluster from the system's server binaries) and DataHub's own client
  (``DataHubGraph``) on our side of every DataHub call;
- stand-ins, in this process on 127.0.0.1: the Kafka broker (librdkafka's mock cluster,
  which speaks the real protocol), the schema registry, and DataHub's GMS (a recording HTTP
  server that answers the calls ``DataHubGraph`` makes and keeps the aspects it is sent).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any, Iterator

import sqlalchemy as sa
from datahub.metadata.schema_classes import (
    EditableSchemaFieldInfoClass,
    EditableSchemaMetadataClass,
    GlobalTagsClass,
    TagAssociationClass,
)

from .gms import RecordingGms, schema_metadata
from .kafka import MockKafkaCluster, PlatformEventProducer, entity_change_event
from .pipeline import wait_until
from .postgres import PostgresCluster, free_port
from .schema_registry import SchemaRegistryServer

DEMO_KEY = "demo-only-key-do-not-use-in-production"
RUN_TAG, PII_TAG = "urn:li:tag:tokenize/run", "urn:li:tag:pii"
URN = "urn:li:dataset:(urn:li:dataPlatform:postgres,appdb.public.customers,PROD)"
ROWS = 1000
NAMES = ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Edsger Dijkstra", "Barbara Liskov"]
SEED = f"""
CREATE TABLE public.customers (
  id integer PRIMARY KEY, full_name text, email varchar(120), phone text, city text, signup date
);
INSERT INTO public.customers
SELECT g,
       (ARRAY{NAMES!r})[1 + g % 5],
       lower(replace((ARRAY{NAMES!r})[1 + g % 5], ' ', '.')) || g || '@example.com',
       CASE WHEN g % 7 = 0 THEN NULL ELSE '+44 20 7946 ' || lpad(g::text, 4, '0') END,
       (ARRAY['London','Paris','Berlin'])[1 + g % 3],
       date '2024-01-01' + g
FROM generate_series(1, {ROWS}) g;
""".replace('"', "'")
FIELDS = {"id": "number", "full_name": "string", "email": "string", "phone": "string", "city": "string",
          "signup": "date"}
PII = ("full_name", "email", "phone")  # tagged `pii` in DataHub: the action reads this


def shipped_config() -> pathlib.Path:
    """``configs/tokenize.yaml`` of the source tree this package runs from."""
    return pathlib.Path(__file__).resolve().parents[2] / "configs" / "tokenize.yaml"


def _say(text: str = "") -> None:
    print(text, flush=True)


def _seed(cluster: PostgresCluster) -> sa.Engine:
    admin = sa.create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("CREATE DATABASE appdb"))
    admin.dispose()
    engine = sa.create_engine(cluster.url("appdb"))
    with engine.begin() as conn:
        conn.execute(sa.text(SEED))
    return engine


def _show_rows(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, full_name, email, phone, city FROM customers ORDER BY id LIMIT 3"))
        for row in rows:
            _say("    " + " | ".join("NULL" if v is None else str(v) for v in row))


def _checksum(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM customers ORDER BY id")).fetchall()
    return hashlib.sha256(repr([tuple(r) for r in rows]).encode()).hexdigest()[:16]


def _register_dataset(gms: RecordingGms) -> None:
    """What ingestion and a steward left in DataHub: the schema, and `pii` on three fields."""
    gms.put_aspect(URN, schema_metadata("public.customers", FIELDS))
    gms.put_aspect(URN, EditableSchemaMetadataClass(editableSchemaFieldInfo=[
        EditableSchemaFieldInfoClass(fieldPath=f, globalTags=GlobalTagsClass([TagAssociationClass(PII_TAG)]))
        for f in PII
    ]))


def _run_records(gms: RecordingGms) -> list[dict[str, Any]]:
    records = []
    for mcp in gms.mcps(entity_urn=URN, aspect_name="datasetProperties"):
        for op in mcp.patch:
            if op["path"].endswith("last_tokenization_run"):
                records.append(json.loads(op["value"]))
    return records


def _tags(gms: RecordingGms) -> list[str]:
    return [t["tag"] for t in (gms.aspect_json(URN, "globalTags") or {}).get("tags", [])]


def _docs(gms: RecordingGms) -> str:
    for mcp in reversed(gms.mcps(entity_urn=URN, aspect_name="editableDatasetProperties")):
        for op in mcp.patch:
            if op["path"] == "/description":
                return str(op["value"])
    return "(none received)"


@contextlib.contextmanager
def _actions_cli(config: pathlib.Path, env: dict[str, str], log_path: pathlib.Path,
                 monitoring_port: int) -> Iterator[subprocess.Popen]:
    """The stock CLI as the stock image's start script runs it with monitoring on
    (``datahub-actions --enable-monitoring --monitoring-port <port> actions -c <config>``), in its
    own process group; SIGINT (as Ctrl-C) at the end."""
    cli = shutil.which("datahub-actions", path=os.path.dirname(sys.executable)) or "datahub-actions"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([cli, "--enable-monitoring", "--monitoring-port", str(monitoring_port), "actions",
                                 "-c", str(config)], stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _metrics(port: int, showing: str) -> list[str] | None:
    """The action's own samples on the stock monitoring endpoint (non-zero, no histogram
    buckets), once they include the line ``showing``; None before."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    lines = [line for line in text.splitlines()
             if line.startswith("datahub_tokenize_") and "_bucket{" not in line and "_created" not in line
             and not line.endswith(" 0.0")]
    return lines if showing in lines else None


def _tag_event() -> dict[str, Any]:
    return entity_change_event(URN, "TAG", "ADD", modifier=RUN_TAG, parameters={"tagUrn": RUN_TAG})


def run(config: pathlib.Path, workdir: pathlib.Path) -> int:
    started = time.monotonic()
    for noisy in ("httpx2", "httpx", "datahub_tokenize_action.testing.kafka.librdkafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    log_path = workdir / "actions.log"
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(PostgresCluster())
        engine = _seed(cluster)
        stack.callback(engine.dispose)
        gms = RecordingGms().start()
        stack.callback(gms.stop)
        registry = SchemaRegistryServer().start()
        stack.callback(registry.stop)
        kafka = stack.enter_context(MockKafkaCluster())
        producer = stack.enter_context(PlatformEventProducer(kafka.bootstrap, registry.url))
        _register_dataset(gms)

        _say("What runs here (real / stand-in):")
        _say(f"  real       the stock `datahub-actions` CLI with configs/tokenize.yaml, unchanged ({config})")
        _say(f"  real       PostgreSQL, a throwaway cluster: {cluster.server_url()}, appdb.public.customers "
             f"({ROWS} rows)")
        _say(f"  stand-in   Kafka broker: librdkafka's mock cluster (real Kafka protocol) at {kafka.bootstrap}")
        _say(f"  stand-in   schema registry at {registry.url}")
        _say(f"  stand-in   DataHub GMS, recording what it is sent, at {gms.url}")
        _say(f"\nDataHub knows the dataset {URN}\n  with the fields {', '.join(FIELDS)}; "
             f"{', '.join(PII)} carry the tag `pii`.")
        _say("\nThe table before:")
        _show_rows(engine)

        url = sa.make_url(cluster.server_url())
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVER": kafka.bootstrap,
            "SCHEMA_REGISTRY_URL": registry.url,
            "DATAHUB_GMS_URL": gms.url,
            "PG_HOST": url.host or "127.0.0.1", "PG_PORT": str(url.port), "PG_USER": url.username or "postgres",
            "PG_PASSWORD": "",  # the throwaway cluster trusts local connections
            "TOKENIZE_HMAC_KEY": DEMO_KEY,
            "TOKENIZE_KEY_ID": "demo",
            # A new consumer group starts at the latest offset by default; the demo's group is
            # new every time, so read from the start to see the event whenever it joins.
            "TOKENIZE_AUTO_OFFSET_RESET": "earliest",
            "TOKENIZE_FAILED_EVENTS_DIR": str(workdir / "failed"),
        }
        port = free_port()
        proc = stack.enter_context(_actions_cli(config, env, log_path, port))
        _say(f"\n$ datahub-actions --enable-monitoring --monitoring-port {port} actions -c configs/tokenize.yaml"
             f"\n  (as the stock image starts it with DATAHUB_ACTIONS_MONITORING_ENABLED=true; log: {log_path})")
        wait_until(lambda: proc.poll() is not None or "is now running" in log_path.read_text(), 90,
                   "the actions pipeline to start")
        if proc.poll() is not None:
            _say(f"datahub actions exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            return 1

        _say("\nA steward adds the tag `tokenize/run` to the dataset; DataHub publishes the EntityChangeEvent.")
        gms.put_aspect(URN, GlobalTagsClass([TagAssociationClass(RUN_TAG)]))
        before = _checksum(engine)
        t0 = time.monotonic()
        producer.produce_entity_change_event(_tag_event())
        # The status tag is the write-back's last patch: once it is there, all of it is.
        wait_until(lambda: proc.poll() is not None or any(t.startswith("urn:li:tag:tokenize/status:") for t in _tags(gms)),
                   120, "the run's outcome in DataHub")
        if proc.poll() is not None:
            _say(f"datahub actions exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            return 1
        elapsed = time.monotonic() - t0
        [record] = _run_records(gms)
        _say(f"\nDataHub received the outcome {elapsed:.1f} s after the event "
             f"(the consumer joining its group included).")
        _say("\nThe table after:")
        _show_rows(engine)
        _say(f"\nThe dataset's tags in DataHub now: {', '.join(_tags(gms))}")
        _say("\nThe run record (custom property `last_tokenization_run`):")
        _say("  {" + ",\n   ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in record.items()) + "}")
        _say("\nThe summary in the dataset's documentation:")
        _say("  " + _docs(gms).replace("\n", "\n  "))
        if record["status"] != "SUCCESS":
            _say(f"\nthe run failed: {record['error']}")
            return 1
        after_first = _checksum(engine)

        _say("\nKafka delivers the same event again (a redelivery, as after a consumer rebalance):")
        producer.produce_entity_change_event(_tag_event())
        wait_until(lambda: proc.poll() is not None or len(_run_records(gms)) >= 2, 120, "the second run's outcome")
        second = _run_records(gms)[-1]
        unchanged = _checksum(engine) == after_first
        _say(f"  status {second['status']}, rows updated {second['counts']['rows_updated']}, "
             f"values already tokens {second['counts']['values_skipped']}, "
             f"table {'unchanged' if unchanged else 'CHANGED'}")
        _say(f"\nPrometheus metrics of the runs (http://127.0.0.1:{port}/metrics):")
        # The run record is written before the run is counted: wait for the second run's count.
        both = 'datahub_tokenize_runs_total{dry_run="false",platform="postgres",status="SUCCESS"} 2.0'
        scraped = wait_until(lambda: _metrics(port, showing=both), 30, "the second run in the metrics")
        for line in scraped:
            _say(f"  {line}")
    leaked = DEMO_KEY in log_path.read_text()
    _say(f"\nThe HMAC key in the actions log: {'FOUND (a defect)' if leaked else 'no'}. "
         f"Demo took {time.monotonic() - started:.0f} s.")
    counted = both in scraped
    ok = (second["status"] == "SUCCESS" and second["counts"]["rows_updated"] == 0 and unchanged
          and before != after_first and not leaked and counted)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datahub_tokenize_action.testing.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=pathlib.Path, default=shipped_config(),
                        help="the pipeline YAML to run (default: this source tree's configs/tokenize.yaml)")
    args = parser.parse_args(argv)
    if not args.config.is_file():
        print(f"demo: error: {args.config} not found; run the demo from a clone of the repository "
              "(`make demo`) or pass --config", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="tokenize-demo-") as tmp:
        return run(args.config, pathlib.Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
