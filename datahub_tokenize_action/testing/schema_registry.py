"""An in-process stand-in for the Confluent Schema Registry, over real HTTP on loopback.

The Avro payload on a Kafka topic carries only a schema id, so the producer's
``AvroSerializer`` and the consumer's ``AvroDeserializer`` (inside DataHub's
``KafkaEventSource``) must share one registry. ``mock://`` URLs of confluent-kafka do not
work for that: each ``SchemaRegistryClient`` gets its own in-memory store.

Endpoints served (the subset confluent-kafka 2.x calls, checked against
``confluent_kafka/schema_registry/_sync/schema_registry_client.py`` and ``serde.py``):

- ``POST /subjects/{subject}/versions``: register (``AvroSerializer`` with
  ``auto.register.schemas``, the default); the same schema text gets the same id.
- ``POST /subjects/{subject}``: look a schema up under a subject.
- ``GET /schemas/ids/{id}``: the writer schema, what ``AvroDeserializer`` fetches;
  also ``/schemas/ids/{id}/subjects`` and ``/schemas/ids/{id}/versions``.
- ``GET /subjects``, ``/subjects/{subject}/versions``, ``/subjects/{subject}/versions/{v|latest}``.
- ``GET /associations/resources/{namespace}/{topic}``: answers ``[]``. Since 2.13 the
  default subject name strategy is ``AssociatedNameStrategy``: serializer and deserializer
  ask for associations first and fall back to ``<topic>-value``.
- ``GET /schemas/types``, ``GET /config``, ``GET /mode``.

Anything else answers 404 with a Schema Registry style error body and is kept in
``unhandled``.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from datahub_tokenize_action.testing._http import HttpRequest, HttpResponse, LoopbackHttpServer

__all__ = ["RegisteredSchema", "SchemaRegistryServer"]

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


@dataclass(frozen=True)
class RegisteredSchema:
    schema_id: int
    schema: str
    schema_type: str  # AVRO, JSON, PROTOBUF


def _canonical(schema: str, schema_type: str) -> str:
    """The key two registrations of one schema share (whitespace and key order ignored)."""
    if schema_type in ("AVRO", "JSON"):
        try:
            return json.dumps(json.loads(schema), sort_keys=True, separators=(",", ":"))
        except ValueError:
            return schema
    return schema


def _error(status: int, error_code: int, message: str) -> HttpResponse:
    return HttpResponse(status, {"error_code": error_code, "message": message}, _CONTENT_TYPE)


def _ok(body: object) -> HttpResponse:
    return HttpResponse(200, body, _CONTENT_TYPE)


class SchemaRegistryServer(LoopbackHttpServer):
    """A Confluent-compatible schema registry on ``127.0.0.1:<free port>``.

    ``url`` is what both ``AvroSerializer`` (producer side) and DataHub's Kafka source
    (``connection.schema_registry_url``) take. ``requests`` lists ``(method, path)`` of
    every call, in order.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._by_id: Dict[int, RegisteredSchema] = {}
        self._id_by_key: Dict[Tuple[str, str], int] = {}
        self._subjects: Dict[str, List[int]] = {}  # subject -> schema id per version (1-based)
        self.requests: List[Tuple[str, str]] = []
        self.unhandled: List[HttpRequest] = []

    # -- inspection --------------------------------------------------------------------

    def subjects(self) -> List[str]:
        with self._lock:
            return sorted(self._subjects)

    def schema(self, schema_id: int) -> Optional[RegisteredSchema]:
        with self._lock:
            return self._by_id.get(schema_id)

    def register(self, subject: str, schema: str, schema_type: str = "AVRO") -> int:
        """Register ``schema`` under ``subject`` directly (no HTTP); returns its id."""
        with self._lock:
            return self._register_locked(subject, schema, schema_type)[0]

    # -- HTTP --------------------------------------------------------------------------

    def _register_locked(self, subject: str, schema: str, schema_type: str) -> Tuple[int, int]:
        key = (schema_type, _canonical(schema, schema_type))
        schema_id = self._id_by_key.get(key)
        if schema_id is None:
            schema_id = len(self._by_id) + 1
            self._id_by_key[key] = schema_id
            self._by_id[schema_id] = RegisteredSchema(schema_id, schema, schema_type)
        versions = self._subjects.setdefault(subject, [])
        if schema_id not in versions:
            versions.append(schema_id)
        return schema_id, versions.index(schema_id) + 1

    def _version_body(self, subject: str, version: int) -> dict:
        schema_id = self._subjects[subject][version - 1]
        registered = self._by_id[schema_id]
        body = {"subject": subject, "version": version, "id": schema_id, "schema": registered.schema}
        if registered.schema_type != "AVRO":
            body["schemaType"] = registered.schema_type
        return body

    def handle(self, request: HttpRequest) -> HttpResponse:
        with self._lock:
            self.requests.append((request.method, request.path))
            response = self._route(request)
            if response is None:
                self.unhandled.append(request)
                return _error(404, 404, f"HTTP 404 Not Found: {request.method} {request.path}")
            return response

    def _route(self, request: HttpRequest) -> Optional[HttpResponse]:
        method, path = request.method, request.path.rstrip("/") or "/"
        body = request.json if isinstance(request.json, dict) else {}

        if method == "POST" and (m := re.fullmatch(r"/subjects/(.+)/versions", path)):
            schema = body.get("schema")
            if not isinstance(schema, str):
                return _error(422, 42201, "Invalid schema: 'schema' is required")
            schema_type = body.get("schemaType") or "AVRO"
            schema_id, version = self._register_locked(m.group(1), schema, schema_type)
            return _ok({"id": schema_id, "subject": m.group(1), "version": version})

        if method == "POST" and (m := re.fullmatch(r"/subjects/([^/]+)", path)):
            subject = m.group(1)
            if subject not in self._subjects:
                return _error(404, 40401, f"Subject '{subject}' not found.")
            schema_type = body.get("schemaType") or "AVRO"
            key = (schema_type, _canonical(body.get("schema") or "", schema_type))
            schema_id = self._id_by_key.get(key)
            if schema_id is None or schema_id not in self._subjects[subject]:
                return _error(404, 40403, "Schema not found")
            return _ok(self._version_body(subject, self._subjects[subject].index(schema_id) + 1))

        if method != "GET":
            return None

        if m := re.fullmatch(r"/schemas/ids/(\d+)", path):
            registered = self._by_id.get(int(m.group(1)))
            if registered is None:
                return _error(404, 40403, f"Schema {m.group(1)} not found")
            out = {"schema": registered.schema}
            if registered.schema_type != "AVRO":
                out["schemaType"] = registered.schema_type
            return _ok(out)

        if m := re.fullmatch(r"/schemas/ids/(\d+)/(subjects|versions)", path):
            schema_id = int(m.group(1))
            if schema_id not in self._by_id:
                return _error(404, 40403, f"Schema {schema_id} not found")
            pairs = [
                (subject, versions.index(schema_id) + 1)
                for subject, versions in sorted(self._subjects.items())
                if schema_id in versions
            ]
            if m.group(2) == "subjects":
                return _ok([subject for subject, _ in pairs])
            return _ok([{"subject": subject, "version": version} for subject, version in pairs])

        if path == "/schemas/types":
            return _ok(["AVRO", "JSON", "PROTOBUF"])

        if path == "/subjects":
            return _ok(sorted(self._subjects))

        if m := re.fullmatch(r"/subjects/([^/]+)/versions", path):
            if m.group(1) not in self._subjects:
                return _error(404, 40401, f"Subject '{m.group(1)}' not found.")
            return _ok(list(range(1, len(self._subjects[m.group(1)]) + 1)))

        if m := re.fullmatch(r"/subjects/([^/]+)/versions/(latest|-1|\d+)", path):
            subject = m.group(1)
            if subject not in self._subjects:
                return _error(404, 40401, f"Subject '{subject}' not found.")
            count = len(self._subjects[subject])
            version = count if m.group(2) in ("latest", "-1") else int(m.group(2))
            if not 1 <= version <= count:
                return _error(404, 40402, f"Version {m.group(2)} not found.")
            return _ok(self._version_body(subject, version))

        if re.fullmatch(r"/associations/resources/[^/]+/[^/]+", path):
            return _ok([])

        if path == "/config" or path.startswith("/config/"):
            return _ok({"compatibilityLevel": "BACKWARD"})

        if path == "/mode" or path.startswith("/mode/"):
            return _ok({"mode": "READWRITE"})

        return None
