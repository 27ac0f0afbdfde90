"""A recording stand-in for DataHub GMS, over real HTTP on loopback.

It speaks what ``datahub.ingestion.graph.client.DataHubGraph`` (acryl-datahub 1.7) sends
for reads of aspects and writes of MCPs, checked against ``datahub/emitter/rest_emitter.py``
and ``datahub/ingestion/graph/client.py``:

========================================================  ==================================
request                                                   answer
========================================================  ==================================
``GET /config``                                           :attr:`RecordingGms.config`
                                                          (``noCode: "true"`` is required)
``GET /aspects/{urn}?aspect=X&version=0``                 ``{"version": 0, "aspect":
                                                          {"<fqcn>": <aspect json>}}``; 404
                                                          when absent (``get_aspect`` →
                                                          None)
``GET /entitiesV2/{urn}[?aspects=List(a,b)]``             ``{"urn", "aspects": {name:
                                                          {"name", "version", "value",
                                                          ...}}}``, 200 even when empty
``POST /aspects?action=ingestProposal``                   restli ``emit_mcp`` (default)
``POST /aspects?action=ingestProposalBatch``              restli ``emit_mcps``
``POST|PATCH /openapi/v3/entity/{type}?async=``           ``emit_mcp(s)`` with
                                                          ``openapi_ingestion=True``
``DELETE /openapi/v3/entity/{type}/{urn}``,               deletes (recorded)
``POST /entities?action=delete``
``POST /api/graphql`` ``scrollAcrossEntities``            ``get_urns_by_filter``'s search, evaluated
                                                          on the stored aspects (tags, field tags,
                                                          edited field tags, removed)
``POST /api/graphql`` (any other query)                   recorded; answers a GraphQL error
========================================================  ==================================

Aspect JSON is in GMS's wire shape, i.e. ``pre_json_transform(aspect.to_obj())``: unions
keyed by their Pegasus class name (``{"com.linkedin.schema.StringType": {}}``).
:meth:`RecordingGms.put_aspect` takes an aspect object and does that for you.

UPSERT MCPs replace the stored aspect (GMS's last-write-wins), so a read after a write
sees it. PATCH MCPs are recorded; of them, only keyed adds and removes of tags (``globalTags``
``/tags/<tag>``, ``editableSchemaMetadata`` ``/editableSchemaFieldInfo/<field>/globalTags/tags/<tag>``)
and of ``datasetProperties`` ``/customProperties/<key>``, and sets of ``structuredProperties``
``/properties/<property urn>/<source>`` are also applied (what a redelivered event reads back);
other patches are not.
Every other request answers 404 and is also kept in :meth:`RecordingGms.unhandled`.

Failure injection: :meth:`RecordingGms.fail_next`. DataHubGraph's session retries POST
and GET on 429/500/502/503/504 (``retry_max_times``, with backoff), so inject a 4xx for a
fast, single failure, or build the client with ``retry_max_times=0``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from datahub.emitter.serialization_helper import pre_json_transform
from datahub.metadata.schema_classes import (
    ASPECT_NAME_MAP,
    DateTypeClass,
    NumberTypeClass,
    OtherSchemaClass,
    SchemaFieldClass,
    SchemaFieldDataTypeClass,
    SchemaMetadataClass,
    StringTypeClass,
    _Aspect,
)
from datahub.utilities.urns.urn import Urn

from datahub_tokenize_action.testing._http import HttpRequest, HttpResponse, LoopbackHttpServer

__all__ = ["DEFAULT_GMS_CONFIG", "RecordedMcp", "RecordedRequest", "RecordingGms"]

#: What ``GET /config`` answers by default: a DataHub OSS 1.3 quickstart GMS.
DEFAULT_GMS_CONFIG: Dict[str, Any] = {
    "models": {},
    "patchCapable": True,
    "versions": {"acryldata/datahub": {"version": "v1.3.0", "commit": "0000000recording"}},
    "managedIngestion": {"defaultCliVersion": "1.3.0", "enabled": True},
    "statefulIngestionCapable": True,
    "supportsImpactAnalysis": True,
    "timeZone": "GMT",
    "telemetry": {"enabledCli": False, "enabledIngestion": False},
    "datasetUrnNameCasing": False,
    "retention": "true",
    "datahub": {"serverType": "quickstart", "serverEnv": "core"},
    "noCode": "true",
}

#: PATCH MCPs applied to the stored aspect (see the module docstring).
_APPLIED_PATCHES = {"globalTags", "datasetProperties", "editableSchemaMetadata", "structuredProperties"}


def _unescape(part: str) -> str:
    return part.replace("~1", "/").replace("~0", "~")


def _patch_tags(holder: Dict[str, Any], op: Dict[str, Any], tag: str) -> None:
    global_tags = holder.setdefault("globalTags", {})
    tags = [t for t in global_tags.get("tags", []) if t["tag"] != tag]
    global_tags["tags"] = tags + ([op["value"]] if op["op"] == "add" else [])

JSON_CONTENT_TYPE = "application/json"
JSON_PATCH_CONTENT_TYPE = "application/json-patch+json"


@dataclass(frozen=True)
class RecordedRequest:
    """One request to the recording GMS and the status it got."""

    method: str
    path: str  # percent-decoded
    query: Dict[str, List[str]]
    json: Any
    status: int
    headers: Dict[str, str] = dataclasses.field(default_factory=dict, repr=False)  # may hold credentials

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class RecordedMcp:
    """One MCP a client sent, decoded.

    ``value`` is the decoded aspect: a dict for UPSERT, the JSON patch document for PATCH
    (a list of operations, or ``{"patch": [...], "arrayPrimaryKeys": ...}`` as some
    builders send it); ``patch`` gives the operations either way. ``transport`` is
    ``"restli"`` or ``"openapi"``.
    """

    entity_urn: str
    entity_type: str
    aspect_name: Optional[str]
    change_type: str
    value: Any
    system_metadata: Optional[Dict[str, Any]]
    transport: str

    @property
    def patch(self) -> List[Dict[str, Any]]:
        if self.change_type != "PATCH":
            raise ValueError(f"{self.aspect_name} MCP is {self.change_type}, not PATCH")
        if isinstance(self.value, dict):
            return list(self.value.get("patch", []))
        return list(self.value or [])


def _aspect_fqcn(aspect_name: str) -> str:
    """``schemaMetadata`` -> ``com.linkedin.schema.SchemaMetadata`` (the get_aspect key)."""
    aspect_class = ASPECT_NAME_MAP.get(aspect_name)
    if aspect_class is None:
        raise KeyError(f"unknown aspect name {aspect_name!r}")
    return aspect_class.RECORD_SCHEMA.fullname.replace(".pegasus2avro", "")


def _entity_type(urn: str) -> str:
    try:
        return Urn.from_string(urn).entity_type
    except Exception:
        return urn.split(":")[2] if urn.count(":") >= 2 else ""


def _not_found(message: str) -> HttpResponse:
    return HttpResponse(
        404,
        {
            "exceptionClass": "com.linkedin.restli.server.RestLiServiceException",
            "message": message,
            "status": 404,
        },
    )


@dataclass
class _FailureRule:
    status: int
    method: Optional[str]
    path_prefix: Optional[str]
    times: Optional[int]
    message: str

    def matches(self, request: HttpRequest) -> bool:
        return (self.method is None or self.method == request.method) and (
            self.path_prefix is None or request.path.startswith(self.path_prefix)
        )


_FIELD_TYPES = {"string": StringTypeClass, "number": NumberTypeClass, "date": DateTypeClass}


def schema_metadata(name: str, fields: Dict[str, str], platform: str = "postgres") -> SchemaMetadataClass:
    """The ``schemaMetadata`` aspect ingestion would write for a table: ``fields`` maps each
    field path to ``string``, ``number`` or ``date`` (also its native type here)."""
    return SchemaMetadataClass(
        schemaName=name, platform=f"urn:li:dataPlatform:{platform}", version=0, hash="",
        platformSchema=OtherSchemaClass(rawSchema=""),
        fields=[SchemaFieldClass(fieldPath=f, type=SchemaFieldDataTypeClass(type=_FIELD_TYPES[t]()),
                                 nativeDataType=t) for f, t in fields.items()],
    )


class RecordingGms(LoopbackHttpServer):
    """Records every request; serves preloaded aspects; accepts MCPs.

    Use ``url`` as ``DatahubClientConfig(server=...)`` or the pipeline's ``datahub.server``.
    """

    def __init__(self, config: Optional[Dict[str, Any]] = None) -> None:
        super().__init__()
        self._lock = threading.Lock()
        #: What ``GET /config`` answers; tests may edit it before the client connects.
        self.config: Dict[str, Any] = json.loads(json.dumps(config or DEFAULT_GMS_CONFIG))
        self._aspects: Dict[Tuple[str, str], Dict[str, Any]] = {}
        self._requests: List[RecordedRequest] = []
        self._mcps: List[RecordedMcp] = []
        self._unhandled: List[RecordedRequest] = []
        self._failures: List[_FailureRule] = []

    # -- setting up --------------------------------------------------------------------

    def put_aspect(self, urn: str, aspect: _Aspect) -> None:
        """Store ``aspect`` (e.g. a ``SchemaMetadataClass``) as the latest version for ``urn``."""
        self.put_aspect_json(urn, aspect.get_aspect_name(), pre_json_transform(aspect.to_obj()))

    def put_aspect_json(self, urn: str, aspect_name: str, value: Dict[str, Any]) -> None:
        """Store an aspect given in GMS's JSON shape (``pre_json_transform`` of ``to_obj()``)."""
        _aspect_fqcn(aspect_name)  # reject unknown aspect names early
        with self._lock:
            self._aspects[(urn, aspect_name)] = json.loads(json.dumps(value))

    def remove_aspect(self, urn: str, aspect_name: str) -> None:
        with self._lock:
            self._aspects.pop((urn, aspect_name), None)

    def aspect_json(self, urn: str, aspect_name: str) -> Optional[Dict[str, Any]]:
        """The stored aspect JSON (preloaded or last UPSERTed), or None."""
        with self._lock:
            value = self._aspects.get((urn, aspect_name))
            return None if value is None else json.loads(json.dumps(value))

    def fail_next(
        self,
        status: int = 400,
        *,
        method: Optional[str] = None,
        path_prefix: Optional[str] = None,
        times: Optional[int] = 1,
        message: str = "injected failure",
    ) -> None:
        """Answer the next ``times`` matching requests (None: all) with ``status``.

        ``path_prefix`` is matched against the decoded path, e.g. ``"/aspects"``. Failed
        requests are recorded, their MCPs are not.
        """
        with self._lock:
            self._failures.append(_FailureRule(status, method, path_prefix, times, message))

    def clear(self) -> None:
        """Forget recorded requests and MCPs (stored aspects and failure rules stay)."""
        with self._lock:
            self._requests.clear()
            self._mcps.clear()
            self._unhandled.clear()

    # -- inspection --------------------------------------------------------------------

    def requests(self) -> List[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def unhandled(self) -> List[RecordedRequest]:
        """Requests no route knew (answered 404)."""
        with self._lock:
            return list(self._unhandled)

    def mcps(
        self,
        *,
        entity_urn: Optional[str] = None,
        aspect_name: Optional[str] = None,
        change_type: Optional[str] = None,
    ) -> List[RecordedMcp]:
        """Accepted MCPs in arrival order, optionally filtered."""
        with self._lock:
            found = list(self._mcps)
        return [
            mcp
            for mcp in found
            if (entity_urn is None or mcp.entity_urn == entity_urn)
            and (aspect_name is None or mcp.aspect_name == aspect_name)
            and (change_type is None or mcp.change_type == change_type)
        ]

    # -- HTTP --------------------------------------------------------------------------

    def handle(self, request: HttpRequest) -> HttpResponse:
        with self._lock:
            response = self._injected_failure(request)
            new_mcps: List[RecordedMcp] = []
            known = True
            if response is None:
                routed = self._route(request, new_mcps)
                known = routed is not None
                response = routed if routed is not None else _not_found(
                    f"recording GMS has no route for {request.method} {request.path}"
                )
            recorded = RecordedRequest(
                request.method, request.path, request.query, request.json, response.status, request.headers
            )
            self._requests.append(recorded)
            if not known:
                self._unhandled.append(recorded)
            if 200 <= response.status < 300:
                self._mcps.extend(new_mcps)
                for mcp in new_mcps:
                    self._apply_locked(mcp)
            return response

    def _injected_failure(self, request: HttpRequest) -> Optional[HttpResponse]:
        for rule in self._failures:
            if rule.matches(request):
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times <= 0:
                        self._failures.remove(rule)
                return HttpResponse(rule.status, {"message": rule.message, "status": rule.status})
        return None

    def _apply_locked(self, mcp: RecordedMcp) -> None:
        if mcp.change_type == "PATCH" and mcp.aspect_name in _APPLIED_PATCHES:
            self._apply_patch_locked(mcp)
        elif mcp.change_type == "UPSERT" and mcp.aspect_name and isinstance(mcp.value, dict):
            self._aspects[(mcp.entity_urn, mcp.aspect_name)] = json.loads(json.dumps(mcp.value))
        elif mcp.change_type == "DELETE":  # an entity delete drops all its aspects
            for key in [k for k in self._aspects if k[0] == mcp.entity_urn]:
                self._aspects.pop(key)

    def _apply_patch_locked(self, mcp: RecordedMcp) -> None:
        aspect = self._aspects.setdefault((mcp.entity_urn, mcp.aspect_name), {})  # type: ignore[arg-type]
        for op in mcp.patch:
            parts = [_unescape(p) for p in op["path"].strip("/").split("/")]
            # acryl-datahub keys tags by (attribution source, tag): an add's path is
            # /tags/<source>/<tag> (source "" when unattributed), a remove's /tags/<tag>.
            if mcp.aspect_name == "globalTags" and len(parts) in (2, 3) and parts[0] == "tags":
                _patch_tags({"globalTags": aspect}, op, parts[-1])
            elif mcp.aspect_name == "datasetProperties" and len(parts) == 2 and parts[0] == "customProperties":
                props = aspect.setdefault("customProperties", {})
                if op["op"] == "add":
                    props[parts[1]] = op["value"]
                else:
                    props.pop(parts[1], None)
            elif mcp.aspect_name == "structuredProperties" and len(parts) in (2, 3) and parts[0] == "properties":
                # Keyed by (propertyUrn, attribution source) (arrayPrimaryKeys): an add's path is
                # /properties/<property urn>/<source> (source "" when unattributed).
                entries = [e for e in aspect.get("properties", []) if e["propertyUrn"] != parts[1]]
                aspect["properties"] = entries + ([op["value"]] if op["op"] == "add" else [])
            elif (mcp.aspect_name == "editableSchemaMetadata" and len(parts) in (5, 6)
                  and parts[0] == "editableSchemaFieldInfo" and parts[2:4] == ["globalTags", "tags"]):
                infos = aspect.setdefault("editableSchemaFieldInfo", [])
                info = next((i for i in infos if i["fieldPath"] == parts[1]), None)
                if info is None:
                    info = {"fieldPath": parts[1]}
                    infos.append(info)
                _patch_tags(info, op, parts[-1])

    def _route(self, request: HttpRequest, new_mcps: List[RecordedMcp]) -> Optional[HttpResponse]:
        method, path = request.method, request.path
        action = request.query_value("action")

        if method == "GET" and path == "/config":
            return HttpResponse(200, self.config)

        if method == "GET" and path.startswith("/aspects/"):
            urn = path[len("/aspects/"):]
            aspect_name = request.query_value("aspect") or ""
            version = request.query_value("version", "0")
            value = self._aspects.get((urn, aspect_name))
            if value is None or version != "0":
                return _not_found(f"No aspect {aspect_name} (version {version}) for {urn}")
            return HttpResponse(200, {"version": 0, "aspect": {_aspect_fqcn(aspect_name): value}})

        if method == "GET" and path.startswith("/entitiesV2/"):
            urn = path[len("/entitiesV2/"):]
            wanted = request.query_value("aspects")
            names: Optional[List[str]] = None
            if wanted:
                m = re.fullmatch(r"List\((.*)\)", wanted)
                names = [n for n in (m.group(1) if m else wanted).split(",") if n]
            aspects = {
                name: {
                    "name": name,
                    "type": "VERSIONED",
                    "version": 0,
                    "value": value,
                    "created": {"time": 0, "actor": "urn:li:corpuser:__datahub_system"},
                }
                for (aspect_urn, name), value in self._aspects.items()
                if aspect_urn == urn and (names is None or name in names)
            }
            return HttpResponse(200, {"urn": urn, "entityName": _entity_type(urn), "aspects": aspects})

        if method == "POST" and path == "/aspects" and action == "ingestProposal":
            proposal = (request.json or {}).get("proposal")
            new_mcps.append(self._from_restli(proposal))
            return HttpResponse(200, {"value": proposal.get("entityUrn")})

        if method == "POST" and path == "/aspects" and action == "ingestProposalBatch":
            proposals = (request.json or {}).get("proposals") or []
            new_mcps.extend(self._from_restli(p) for p in proposals)
            return HttpResponse(200, {"value": [p.get("entityUrn") for p in proposals]})

        if method == "POST" and path == "/entities" and action == "delete":
            urn = (request.json or {}).get("urn", "")
            new_mcps.append(
                RecordedMcp(urn, _entity_type(urn), None, "DELETE", None, None, "restli")
            )
            return HttpResponse(200, {"value": {"rowsDeletedFromEntityDeletion": 1}})

        if m := re.fullmatch(r"/openapi/v3/entity/([^/]+)", path):
            if method in ("POST", "PATCH") and isinstance(request.json, list):
                change_type = "PATCH" if method == "PATCH" else "UPSERT"
                for item in request.json:
                    new_mcps.extend(self._from_openapi(m.group(1), change_type, item))
                return HttpResponse(200, [
                    {k: ({"value": v.get("value")} if isinstance(v, dict) else v) for k, v in item.items()}
                    for item in request.json
                ])

        if method == "DELETE" and (m := re.fullmatch(r"/openapi/v3/entity/([^/]+)/(.+)", path)):
            urn = m.group(2)
            new_mcps.append(RecordedMcp(urn, m.group(1), None, "DELETE", None, None, "openapi"))
            return HttpResponse(200, None)

        if method == "POST" and path == "/api/graphql":
            body = request.json if isinstance(request.json, dict) else {}
            if "scrollAcrossEntities" in str(body.get("query")):
                return self._scroll_across_entities(body.get("variables") or {})
            return HttpResponse(200, {
                "data": None,
                "errors": [{"message": "this GraphQL query is not served by the recording GMS "
                                       "(datahub_tokenize_action/testing/gms.py)"}],
            })

        return None

    #: Search fields the stand-in's ``scrollAcrossEntities`` evaluates, from the stored aspects
    #: (DataHub indexes a dataset's ``globalTags`` as ``tags``, its schema fields' tags as
    #: ``fieldTags`` and its edited fields' tags as ``editedFieldTags``; ``removed`` is ``status``).
    _SEARCH_FIELDS = ("tags", "fieldTags", "editedFieldTags", "removed")

    def _search_values(self, urn: str, search_field: str) -> List[str]:
        def aspect(name: str) -> Dict[str, Any]:
            return self._aspects.get((urn, name)) or {}

        if search_field == "tags":
            return [t["tag"] for t in aspect("globalTags").get("tags", [])]
        if search_field == "fieldTags":
            return [t["tag"] for f in aspect("schemaMetadata").get("fields", [])
                    for t in (f.get("globalTags") or {}).get("tags", [])]
        if search_field == "editedFieldTags":
            return [t["tag"] for f in aspect("editableSchemaMetadata").get("editableSchemaFieldInfo", [])
                    for t in (f.get("globalTags") or {}).get("tags", [])]
        return ["true" if aspect("status").get("removed") else "false"]

    def _scroll_across_entities(self, variables: Dict[str, Any]) -> HttpResponse:
        """``DataHubGraph.get_urns_by_filter``'s query (``scrollUrnsWithFilters``): entities of
        ``types`` matching any ``orFilters`` clause (all of its EQUAL rules, ``negated`` honoured),
        in one page. A rule on a field it does not evaluate is an error, as GMS would not be."""
        types = {str(t).lower() for t in variables.get("types") or []}
        clauses = variables.get("orFilters") or [{"and": []}]
        for clause in clauses:
            for rule in clause.get("and", []):
                if rule.get("field") not in self._SEARCH_FIELDS or rule.get("condition", "EQUAL") != "EQUAL":
                    return HttpResponse(200, {"data": None, "errors": [{
                        "message": f"recording GMS: search rule {rule!r} is not evaluated here"}]})
        # (``handle`` holds the lock while it routes.)
        urns = sorted({u for u, _ in self._aspects if not types or _entity_type(u).lower() in types})

        def matches(urn: str, rule: Dict[str, Any]) -> bool:
            hit = bool(set(rule.get("values") or []) & set(self._search_values(urn, rule["field"])))
            return hit != bool(rule.get("negated"))

        found = [u for u in urns if any(all(matches(u, r) for r in c.get("and", [])) for c in clauses)]
        return HttpResponse(200, {"data": {"scrollAcrossEntities": {
            "nextScrollId": None,
            "searchResults": [{"entity": {"urn": u}, "extraProperties": []} for u in found],
        }}})

    @staticmethod
    def _from_restli(proposal: Dict[str, Any]) -> RecordedMcp:
        aspect = proposal.get("aspect") or {}
        raw = aspect.get("value")
        value: Any = raw
        if isinstance(raw, str) and aspect.get("contentType") in (JSON_CONTENT_TYPE, JSON_PATCH_CONTENT_TYPE):
            value = json.loads(raw)
        urn = proposal["entityUrn"]
        return RecordedMcp(
            entity_urn=urn,
            entity_type=proposal.get("entityType") or _entity_type(urn),
            aspect_name=proposal.get("aspectName"),
            change_type=proposal.get("changeType", "UPSERT"),
            value=value,
            system_metadata=proposal.get("systemMetadata"),
            transport="restli",
        )

    @staticmethod
    def _from_openapi(entity_type: str, change_type: str, item: Dict[str, Any]) -> List[RecordedMcp]:
        urn = item["urn"]
        return [
            RecordedMcp(
                entity_urn=urn,
                entity_type=entity_type,
                aspect_name=name,
                change_type=change_type,
                value=body.get("value"),
                system_metadata=body.get("systemMetadata"),
                transport="openapi",
            )
            for name, body in item.items()
            if name != "urn" and isinstance(body, dict)
        ]
