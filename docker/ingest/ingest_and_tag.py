"""One-shot job of docker-compose.yml, run in DataHub's ingestion image
(acryldata/datahub-ingestion, which ships acryl-datahub with the `postgres` source):

1. ingests the warehouse's `appdb` with DataHub's `postgres` source, tagging the PII columns
   `pii` (transformer `pattern_add_dataset_schema_tags`);
2. then, once the dataset's schema with those tags is in DataHub, adds the tag
   `tokenize/run` to the dataset, the steward's click that starts a tokenization.

Step 2 comes after step 1 so that the action finds the `pii` field tags when it chooses the
columns. The event it produces is read even if the actions pipeline has not joined its
consumer group yet: the compose file starts the actions service first and sets
TOKENIZE_AUTO_OFFSET_RESET=earliest. A dataset already tagged `tokenize/run` or
`tokenize/done` is left alone, so running this job again does not start another run.
"""

from __future__ import annotations

import os
import sys
import time

from datahub.emitter.mce_builder import make_dataset_urn
from datahub.ingestion.graph.client import DatahubClientConfig, DataHubGraph
from datahub.ingestion.run.pipeline import Pipeline
from datahub.metadata.schema_classes import GlobalTagsClass, SchemaMetadataClass, TagAssociationClass
from datahub.specific.dataset import DatasetPatchBuilder

GMS = os.environ.get("DATAHUB_GMS_URL", "http://datahub-gms:8080")
DATASET = make_dataset_urn("postgres", "appdb.public.customers", "PROD")
PII_TAG = "urn:li:tag:pii"
RUN_TAG = "urn:li:tag:tokenize/run"
DONE_TAG = "urn:li:tag:tokenize/done"
PII_COLUMNS = ("full_name", "email", "phone")

RECIPE = {
    "source": {
        "type": "postgres",
        "config": {
            "host_port": os.environ.get("WAREHOUSE_HOST_PORT", "warehouse:5432"),
            "database": "appdb",
            "username": os.environ.get("READER_PG_USER", "datahub_reader"),
            "password": os.environ["READER_PG_PASSWORD"],
            "schema_pattern": {"allow": ["^public$"]},
            "include_views": False,
            "profiling": {"enabled": False},
        },
    },
    "transformers": [
        {
            "type": "pattern_add_dataset_schema_tags",
            "config": {"tag_pattern": {"rules": {f"^({'|'.join(PII_COLUMNS)})$": [PII_TAG]}}},
        }
    ],
    "sink": {"type": "datahub-rest", "config": {"server": GMS}},
}


def pii_fields(graph: DataHubGraph) -> set[str]:
    schema = graph.get_aspect(DATASET, SchemaMetadataClass)
    if schema is None:
        return set()
    return {
        f.fieldPath
        for f in schema.fields
        if f.globalTags and any(t.tag == PII_TAG for t in f.globalTags.tags)
    }


def main() -> int:
    pipeline = Pipeline.create(RECIPE)
    pipeline.run()
    pipeline.pretty_print_summary()
    pipeline.raise_from_status()

    graph = DataHubGraph(DatahubClientConfig(server=GMS))
    deadline = time.monotonic() + 120
    while pii_fields(graph) != set(PII_COLUMNS):
        if time.monotonic() > deadline:
            print(f"{DATASET}: PII field tags not found after ingestion: {pii_fields(graph)}", file=sys.stderr)
            return 1
        time.sleep(2)

    tags = graph.get_aspect(DATASET, GlobalTagsClass)
    present = {t.tag for t in tags.tags} if tags else set()
    if present & {RUN_TAG, DONE_TAG}:
        print(f"{DATASET} already has {sorted(present & {RUN_TAG, DONE_TAG})}; not adding {RUN_TAG}")
        return 0
    for mcp in DatasetPatchBuilder(DATASET).add_tag(TagAssociationClass(tag=RUN_TAG)).build():
        graph.emit_mcp(mcp)
    print(f"added {RUN_TAG} to {DATASET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
