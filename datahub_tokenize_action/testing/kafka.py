"""A real Kafka protocol endpoint without Docker, and DataHub PlatformEvents to put on it.

``MockKafkaCluster`` owns librdkafka's built-in mock cluster (``test.mock.num.brokers``),
which listens on 127.0.0.1 and speaks the Kafka protocol to any client, including the
``DeserializingConsumer`` inside datahub-actions' stock ``KafkaEventSource``.

How DataHub's ``KafkaEventSource`` (datahub_actions/plugin/source/kafka/) reads events, and
what that means here:

- It subscribes to every topic in ``topic_routes`` (default ``DEFAULT_TOPIC_ROUTES``:
  ``MetadataChangeLog_Versioned_v1``, ``MetadataChangeLog_Timeseries_v1``,
  ``PlatformEvent_v1``). For a subscribed topic that does not exist yet, every poll
  raises ``UNKNOWN_TOPIC_OR_PART`` (the source logs "Kafka consume error" and goes on)
  and the topic is only picked up at the next metadata refresh. ``MockKafkaCluster``
  therefore creates the three topics when it starts (a producer metadata request
  auto-creates a topic on the mock cluster; ``AdminClient.create_topics`` times out there).
- PlatformEvents are Avro ``com.linkedin.pegasus2avro.mxe.PlatformEvent`` records
  (schema id framed, schema looked up in the registry); an EntityChangeEvent is
  ``name == "entityChangeEvent"`` with the ECE as JSON bytes in ``payload.value`` and
  ``payload.contentType == "application/json"``.
- It hard-codes ``auto.offset.reset: latest`` but lets ``connection.consumer_config``
  override it. :func:`kafka_source_config` sets ``earliest`` so an event produced before
  the consumer group has its assignment is still delivered; with a fresh cluster per
  test (the ``kafka_cluster`` fixture is function-scoped) nothing stale is replayed.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple, Union

from confluent_kafka import KafkaException, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from datahub.metadata.schemas import _load_schema
from datahub.utilities.urns.urn import Urn
from datahub_actions.plugin.source.kafka.kafka_event_source import (
    DEFAULT_TOPIC_ROUTES,
    ENTITY_CHANGE_EVENT_NAME,
)

__all__ = [
    "DATAHUB_TOPICS",
    "PLATFORM_EVENT_TOPIC",
    "MockKafkaCluster",
    "PlatformEventProducer",
    "entity_change_event",
    "kafka_source_config",
    "produce_entity_change_event",
]

logger = logging.getLogger(__name__)
_librdkafka_logger = logging.getLogger(__name__ + ".librdkafka")


def _close_producer(producer: Producer) -> None:
    """``Producer.close()`` where confluent-kafka has it; 2.12, which the image of DataHub
    1.7.0 ships, has none and frees the producer when its last reference goes."""
    close = getattr(producer, "close", None)
    if close is not None:
        close()


#: Topics the stock KafkaEventSource subscribes to when no ``topic_routes`` are given.
DATAHUB_TOPICS: Tuple[str, ...] = tuple(dict.fromkeys(DEFAULT_TOPIC_ROUTES.values()))
#: Where DataHub publishes PlatformEvents (EntityChangeEvents among them).
PLATFORM_EVENT_TOPIC: str = DEFAULT_TOPIC_ROUTES["pe"]


class MockKafkaCluster:
    """A librdkafka mock cluster on loopback, alive as long as this object is open.

    Args:
        topics: Topics to create at start (default: the three DataHub topics the stock
            source subscribes to).
        num_brokers: Brokers in the mock cluster.
        timeout: Seconds to wait for the cluster's metadata and for each topic.

    Raises:
        KafkaException: If the cluster does not answer within ``timeout``.
    """

    def __init__(
        self,
        topics: Iterable[str] = DATAHUB_TOPICS,
        *,
        num_brokers: int = 1,
        timeout: float = 10.0,
    ) -> None:
        self._timeout = timeout
        # This producer owns the cluster: the cluster lives inside its librdkafka handle.
        self._owner: Optional[Producer] = Producer(
            {"test.mock.num.brokers": num_brokers, "logger": _librdkafka_logger}
        )
        metadata = self._owner.list_topics(timeout=timeout)
        self.cluster_id: str = metadata.cluster_id
        #: ``host:port[,host:port]``: what a client's ``bootstrap.servers`` takes.
        self.bootstrap: str = ",".join(
            f"{broker.host}:{broker.port}"
            for _, broker in sorted(metadata.brokers.items())
        )
        # A plain client of the cluster, like every other client, to create topics.
        self._admin: Optional[Producer] = Producer(
            {"bootstrap.servers": self.bootstrap, "logger": _librdkafka_logger}
        )
        self.create_topics(*topics)

    def create_topics(self, *topics: str) -> None:
        """Create topics (idempotent) by a metadata request with auto-creation on.

        Raises:
            KafkaException: If a topic does not show up within the cluster timeout.
        """
        admin = self._require_open()
        for topic in topics:
            deadline = time.monotonic() + self._timeout
            while True:
                metadata = admin.list_topics(topic, timeout=self._timeout)
                entry = metadata.topics.get(topic)
                if entry is not None and entry.error is None and entry.partitions:
                    break
                if time.monotonic() >= deadline:
                    raise KafkaException(
                        f"topic {topic!r} not created on mock cluster {self.bootstrap} "
                        f"within {self._timeout}s: {entry.error if entry else 'no metadata'}"
                    )
                time.sleep(0.05)

    def topics(self) -> set:
        """Names of the topics that exist on the cluster now."""
        admin = self._require_open()
        return set(admin.list_topics(timeout=self._timeout).topics)

    def close(self) -> None:
        """Shut the cluster down (closes the owning producer). Safe to call twice."""
        for name in ("_admin", "_owner"):
            client = getattr(self, name)
            setattr(self, name, None)
            if client is not None:
                client.flush(self._timeout)
                _close_producer(client)

    def _require_open(self) -> Producer:
        if self._admin is None:
            raise RuntimeError("MockKafkaCluster is closed")
        return self._admin

    def __enter__(self) -> "MockKafkaCluster":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MockKafkaCluster(bootstrap={self.bootstrap!r})"


def kafka_source_config(
    bootstrap: str,
    schema_registry_url: str,
    consumer_config: Optional[Mapping[str, Any]] = None,
    **source_options: Any,
) -> Dict[str, Any]:
    """The ``source:`` section for ``Pipeline.create`` reading from a mock cluster.

    ``auto.offset.reset`` is ``earliest`` (the source's hard-coded ``latest`` would drop
    events produced before the consumer's partitions are assigned) and topic metadata is
    refreshed every second (a topic created after subscribing is found quickly);
    ``consumer_config`` entries win.
    Extra keyword arguments go to the source config (e.g. ``topic_routes``).
    """
    consumer: Dict[str, Any] = {
        "auto.offset.reset": "earliest",
        "topic.metadata.refresh.interval.ms": 1000,
    }
    consumer.update(consumer_config or {})
    return {
        "type": "kafka",
        "config": {
            "connection": {
                "bootstrap": bootstrap,
                "schema_registry_url": schema_registry_url,
                "consumer_config": consumer,
            },
            **source_options,
        },
    }


def entity_change_event(
    entity_urn: str,
    category: str,
    operation: str,
    *,
    modifier: Optional[str] = None,
    parameters: Optional[Mapping[str, Any]] = None,
    entity_type: Optional[str] = None,
    actor: str = "urn:li:corpuser:datahub",
    time_ms: Optional[int] = None,
    version: int = 0,
) -> Dict[str, Any]:
    """The JSON object GMS puts in ``PlatformEvent.payload.value`` for an EntityChangeEvent.

    ``entity_type`` defaults to the URN's type (``dataset``, ``schemaField``, ...).
    """
    event: Dict[str, Any] = {
        "entityType": entity_type or Urn.from_string(entity_urn).entity_type,
        "entityUrn": entity_urn,
        "category": category,
        "operation": operation,
        "auditStamp": {
            "time": int(time.time() * 1000) if time_ms is None else time_ms,
            "actor": actor,
        },
        "version": version,
    }
    if modifier is not None:
        event["modifier"] = modifier
    if parameters is not None:
        event["parameters"] = dict(parameters)
    return event


EceLike = Union[Mapping[str, Any], str, Any]


def _ece_json(ece: EceLike) -> str:
    if isinstance(ece, str):
        return ece
    if isinstance(ece, Mapping):
        return json.dumps(dict(ece))
    as_json = getattr(ece, "as_json", None)  # datahub_actions EntityChangeEvent
    if callable(as_json):
        return as_json()
    to_obj = getattr(ece, "to_obj", None)  # EntityChangeEventClass
    if callable(to_obj):
        return json.dumps(to_obj())
    raise TypeError(f"cannot turn {type(ece).__name__} into EntityChangeEvent JSON")


class PlatformEventProducer:
    """Produces DataHub ``PlatformEvent`` Avro records, registering the schema on first use.

    Args:
        bootstrap: ``bootstrap.servers`` of the cluster (``MockKafkaCluster.bootstrap``).
        schema_registry_url: URL of the registry the consumer will read from.
        topic: Defaults to ``PlatformEvent_v1``, the topic the stock source reads.
    """

    def __init__(
        self,
        bootstrap: str,
        schema_registry_url: str,
        topic: str = PLATFORM_EVENT_TOPIC,
    ) -> None:
        self.topic = topic
        self._registry = SchemaRegistryClient({"url": schema_registry_url})
        self._serializer = AvroSerializer(self._registry, _load_schema("PlatformEvent"))
        self._producer: Optional[Producer] = Producer(
            {"bootstrap.servers": bootstrap, "logger": _librdkafka_logger}
        )

    def produce_platform_event(
        self,
        name: str,
        payload_json: str,
        *,
        key: Optional[str] = None,
        timestamp_ms: Optional[int] = None,
        timeout: float = 10.0,
    ) -> Tuple[int, int]:
        """Produce one PlatformEvent and wait until the broker has it.

        Returns:
            ``(partition, offset)`` of the delivered message.

        Raises:
            KafkaException: If delivery fails or is not confirmed within ``timeout``.
        """
        if self._producer is None:
            raise RuntimeError("PlatformEventProducer is closed")
        record = {
            "header": {
                "timestampMillis": int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
            },
            "name": name,
            "payload": {"value": payload_json.encode("utf-8"), "contentType": "application/json"},
        }
        value = self._serializer(record, SerializationContext(self.topic, MessageField.VALUE))
        outcome: Dict[str, Any] = {}

        def _on_delivery(err: Any, msg: Any) -> None:
            outcome["err"], outcome["msg"] = err, msg

        self._producer.produce(
            self.topic,
            value=value,
            key=(key or str(uuid.uuid4())).encode("utf-8"),
            on_delivery=_on_delivery,
        )
        remaining = self._producer.flush(timeout)
        if remaining or "msg" not in outcome:
            raise KafkaException(f"PlatformEvent not delivered to {self.topic} within {timeout}s")
        if outcome["err"] is not None:
            raise KafkaException(outcome["err"])
        return outcome["msg"].partition(), outcome["msg"].offset()

    def produce_entity_change_event(
        self, ece: EceLike, *, timeout: float = 10.0
    ) -> Tuple[int, int]:
        """Produce an EntityChangeEvent (dict from :func:`entity_change_event`, JSON
        string, or DataHub ECE object), keyed by its entity URN so that events of one
        entity keep their order. Returns ``(partition, offset)``."""
        payload = _ece_json(ece)
        key = json.loads(payload).get("entityUrn")
        return self.produce_platform_event(
            ENTITY_CHANGE_EVENT_NAME, payload, key=key, timeout=timeout
        )

    def close(self, timeout: float = 10.0) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(timeout)
            _close_producer(producer)

    def __enter__(self) -> "PlatformEventProducer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def produce_entity_change_event(
    bootstrap: str,
    schema_registry_url: str,
    ece: EceLike,
    *,
    topic: str = PLATFORM_EVENT_TOPIC,
    timeout: float = 10.0,
) -> Tuple[int, int]:
    """One-shot: produce one EntityChangeEvent PlatformEvent; returns ``(partition, offset)``."""
    with PlatformEventProducer(bootstrap, schema_registry_url, topic) as producer:
        return producer.produce_entity_change_event(ece, timeout=timeout)
