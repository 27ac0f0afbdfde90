"""pytest fixtures for end-to-end tests: a Kafka cluster, a schema registry, a GMS.

Load them from the top-level conftest with ``pytest_plugins = ["tests.support.fixtures"]``.
All of them listen on 127.0.0.1 only and need no Docker.

- ``schema_registry`` (session): one registry; registering the same schema twice gives
  the same id, so sharing it across tests is harmless.
- ``kafka_cluster`` (function): a fresh librdkafka mock cluster per test (~0.1 s) with
  DataHub's three topics created, so a consumer reading from ``earliest`` never sees an
  earlier test's events.
- ``platform_event_producer`` (function): produces PlatformEvents to ``kafka_cluster``.
- ``gms_server`` (function): a fresh recording GMS per test.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from datahub_tokenize_action.testing.gms import RecordingGms
from datahub_tokenize_action.testing.kafka import MockKafkaCluster, PlatformEventProducer
from datahub_tokenize_action.testing.schema_registry import SchemaRegistryServer


@pytest.fixture(scope="session")
def schema_registry() -> Iterator[SchemaRegistryServer]:
    """A Confluent-compatible schema registry over HTTP; ``.url`` for clients."""
    server = SchemaRegistryServer().start()
    try:
        yield server
    finally:
        server.stop()
    if server.errors:
        raise AssertionError(f"schema registry handler errors: {server.errors!r}")


@pytest.fixture
def kafka_cluster() -> Iterator[MockKafkaCluster]:
    """A librdkafka mock cluster; ``.bootstrap`` for clients."""
    cluster = MockKafkaCluster()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def platform_event_producer(
    kafka_cluster: MockKafkaCluster, schema_registry: SchemaRegistryServer
) -> Iterator[PlatformEventProducer]:
    """Produces PlatformEvents (e.g. ``.produce_entity_change_event(...)``) to ``PlatformEvent_v1``."""
    producer = PlatformEventProducer(kafka_cluster.bootstrap, schema_registry.url)
    try:
        yield producer
    finally:
        producer.close()


@pytest.fixture
def gms_server() -> Iterator[RecordingGms]:
    """A recording DataHub GMS; ``.url`` for ``DatahubClientConfig(server=...)``.

    Fails the test at teardown if a request handler raised (a bug in the stand-in or a
    malformed request); requests it has no route for are in ``.unhandled()``.
    """
    server = RecordingGms().start()
    try:
        yield server
    finally:
        server.stop()
    if server.errors:
        raise AssertionError(f"recording GMS handler errors: {server.errors!r}")
