"""The SQLAlchemy URL of a Databricks connection, from any of the forms users write (pure, no I/O).

Three spellings of one connection are accepted:

- the SQLAlchemy form
  ``databricks://token:<token>@<host>?http_path=<path>[&catalog=<c>][&schema=<s>]``
  (``databricks+connector://``, the older dialect's name, is read the same way);
- the JDBC form of the Databricks and Simba Spark JDBC drivers, as the old seeds wrote it,
  ``jdbc:databricks://<host>[:443][/<schema>];transportMode=http;ssl=1;httpPath=<path>;
  AuthMech=3;UID=token;PWD=<token>[;ConnCatalog=<c>][;ConnSchema=<s>]``
  (also ``jdbc:spark://``; property names are case-insensitive, as the drivers treat them;
  a value may be wrapped in ``{}``; properties the Python connector has no use for are ignored);
- the separate fields ``host``, ``http_path`` and ``token`` of the connection config.

All three become the one URL that databricks-sqlalchemy 2.x reads in
``DatabricksDialect.create_connect_args``: ``url.host`` is the server host name,
``url.password`` the access token, and the query keys ``http_path``, ``catalog`` and
``schema``; the port and the path of the URL are ignored there (the connector always uses
443 unless ``connect_args={"_port": n}``), so they are rejected here rather than dropped.

No error message names the token, nor any part of the input that might be one: the messages
say which part is missing or wrong and how to write it.
"""

from __future__ import annotations

import dataclasses
import re

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from .._config import ConnectionConfig
from .._exceptions import ConfigError

__all__ = ["databricks_url"]

_DRIVERNAME = "databricks"
#: Driver names that mean the databricks-sqlalchemy dialect; all become ``databricks``.
_SQLALCHEMY_SCHEMES = ("databricks", "databricks+connector")
_JDBC_SCHEMES = ("jdbc:databricks", "jdbc:spark")
_HTTPS_PORT = 443
#: Query keys databricks-sqlalchemy 2.0.10 reads from the URL (``create_connect_args``).
_QUERY_KEYS = ("http_path", "catalog", "schema", "enable_multirow_insert_casts")

_FORMS = (
    "write `url` as `databricks://token:<token>@<host>?http_path=<http path>` or "
    "`jdbc:databricks://<host>:443/default;transportMode=http;ssl=1;httpPath=<http path>;"
    "AuthMech=3;UID=token;PWD=<token>`, or set `host`, `http_path` and `token` instead of `url`"
)
_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.:-]*)://")
# One `key=value` property of a JDBC URL; a value in braces may hold `;`.
_JDBC_PROPERTY = re.compile(r"\s*([^=;]*?)\s*=\s*(\{.*?\}(?=\s*(?:;|$))|[^;]*)\s*(?:;|$)", re.S)


class _Malformed(Exception):
    """Internal: what is wrong, worded for the user, never holding the token."""


@dataclasses.dataclass
class _Parts:
    host: str
    http_path: str
    token: str = dataclasses.field(repr=False)
    catalog: str | None = None
    schema: str | None = None
    extra_query: dict[str, str] = dataclasses.field(default_factory=dict)


def databricks_url(connection: ConnectionConfig, catalog: str | None = None) -> URL:
    """Build the URL databricks-sqlalchemy expects from a Databricks connection config.

    Args:
        connection: a connection with ``platform: databricks`` and either ``url`` (SQLAlchemy
            or JDBC form) or the fields ``host``, ``http_path`` and ``token``.
        catalog: the catalog to open the session in (the dataset URN's database). Set as the
            URL's ``catalog`` query key, which the dialect also uses for reflection.

    Returns:
        ``databricks://token:<token>@<host>?http_path=<path>[&catalog=..][&schema=..]`` as a
        ``sqlalchemy.engine.URL`` (its ``str()`` and ``repr()`` mask the token).

    Raises:
        ConfigError: the connection is not a Databricks one, misses the host, the HTTP path
            or the token, uses a sign-in other than a token, cannot be parsed, or names a
            catalog other than ``catalog``. The message never contains the token.
    """
    secrets: list[str] = []
    problem: str | None = None
    try:
        parts = _parts(connection, secrets)
        if catalog is not None:
            _set_catalog(parts, catalog)
    except _Malformed as e:
        problem = str(e)
    if problem is not None:
        # Raised outside the except block: no __context__ either, and the message is
        # scrubbed of any secret seen so far as a last line of defence.
        raise ConfigError(_scrub(f"{_where(connection)}: {problem}", secrets)) from None
    query = {"http_path": parts.http_path}
    if parts.catalog is not None:
        query["catalog"] = parts.catalog
    if parts.schema is not None:
        query["schema"] = parts.schema
    query.update(parts.extra_query)
    return URL.create(_DRIVERNAME, username="token", password=parts.token, host=parts.host, query=query)


def _where(connection: ConnectionConfig) -> str:
    if connection.platform_instance:
        return f"databricks connection (platform_instance {connection.platform_instance!r})"
    return "databricks connection"


def _scrub(message: str, secrets: list[str]) -> str:
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        message = message.replace(secret, "***")
    return message


def _parts(connection: ConnectionConfig, secrets: list[str]) -> _Parts:
    if connection.platform != "databricks":
        raise _Malformed(f"platform is {connection.platform!r}, not 'databricks'")
    if connection.token is not None:
        secrets.append(connection.token.get_secret_value())
    if connection.url is None:
        return _from_fields(connection)
    if connection.host is not None or connection.http_path is not None or connection.token is not None:
        raise _Malformed(
            "both `url` and `host`/`http_path`/`token` are set; keep one: either the whole "
            "`url`, or the three fields `host`, `http_path` and `token` without `url`"
        )
    raw = connection.url.get_secret_value().strip()
    secrets.append(raw)
    scheme = _SCHEME.match(raw)
    name = scheme.group(1).lower() if scheme else None
    if name in _JDBC_SCHEMES:
        return _from_jdbc(raw[scheme.end():], secrets)
    if name in _SQLALCHEMY_SCHEMES:
        return _from_sqlalchemy(raw, secrets)
    if name is None:
        raise _Malformed(f"`url` is not a URL (no `<scheme>://` at its start); {_FORMS}")
    # A scheme is shown only when short: a token pasted in the wrong place is not.
    shown = f"`{name}://`" if len(name) <= 20 else "a scheme other than `databricks://`"
    raise _Malformed(f"`url` starts with {shown}, which is not a Databricks URL; {_FORMS}")


def _from_fields(connection: ConnectionConfig) -> _Parts:
    missing = [
        name
        for name, value in (
            ("host", connection.host),
            ("http_path", connection.http_path),
            ("token", connection.token.get_secret_value() if connection.token else None),
        )
        if value is None or not value.strip()
    ]
    if missing:
        names = ", ".join(f"`{m}`" for m in missing)
        raise _Malformed(
            f"{names} {'is' if len(missing) == 1 else 'are'} missing; without `url`, set `host` "
            "(the workspace host name, e.g. adb-123.4.azuredatabricks.net), `http_path` (the SQL "
            "warehouse's HTTP path, e.g. /sql/1.0/warehouses/abc) and `token` (an access token)"
        )
    host = connection.host.strip()
    # The workspace URL as the browser shows it is a common way to write the host.
    if host.lower().startswith("https://"):
        host = host[len("https://"):]
    host = host.rstrip("/")
    host, port = _split_port(host, "`host`")
    _check_port(port)
    _check_host(host, "`host`")
    token = connection.token.get_secret_value().strip()  # type: ignore[union-attr]
    return _Parts(host=host, http_path=connection.http_path.strip(), token=token)  # type: ignore[union-attr]


def _from_sqlalchemy(raw: str, secrets: list[str]) -> _Parts:
    try:
        url: URL | None = make_url(raw)
    except (ArgumentError, ValueError):
        url = None
    if url is None:
        raise _Malformed(
            "`url` cannot be parsed as a SQLAlchemy URL (is the port a number? are `@`, `/`, `?` "
            f"in the token percent-encoded?); {_FORMS}"
        )
    if url.password:
        secrets.append(url.password)
    if not url.password:
        raise _Malformed(
            "`url` has no token: write it as the password of the user `token`, "
            "`databricks://token:<token>@<host>?http_path=<http path>`"
        )
    if url.username is None or url.username.lower() != "token":
        raise _Malformed(
            "the user name in `url` must be `token` (databricks-sqlalchemy signs in with an "
            "access token only): `databricks://token:<token>@<host>?http_path=<http path>`"
        )
    if not url.host:
        raise _Malformed(
            "`url` has no host: `databricks://token:<token>@<workspace host>?http_path=<http path>`"
        )
    _check_host(url.host, "the host in `url`")
    _check_port(url.port)
    if url.database:
        raise _Malformed(
            "`url` has a path after the host, which databricks-sqlalchemy ignores; put the HTTP "
            "path in `?http_path=<http path>` and the catalog and schema in `&catalog=<catalog>"
            "&schema=<schema>`"
        )
    query: dict[str, str] = {}
    for key, value in url.query.items():
        if not isinstance(value, str):
            raise _Malformed(f"`url` gives the query key `{key}` more than once; give it once")
        query[key] = value
    unknown = sorted(set(query) - set(_QUERY_KEYS))
    if not query.get("http_path", "").strip():
        hint = (
            " (it has `httpPath`: the SQLAlchemy form spells it `http_path`)"
            if any(k.lower() == "httppath" for k in query)
            else ""
        )
        raise _Malformed(
            f"`url` has no HTTP path{hint}: add `?http_path=<http path>`, the SQL warehouse's "
            "HTTP path from its Connection details tab (e.g. /sql/1.0/warehouses/abc)"
        )
    if unknown:
        raise _Malformed(
            f"`url` has query keys databricks-sqlalchemy does not read: "
            f"{', '.join(f'`{k}`' for k in unknown)}; the keys it reads are "
            f"{', '.join(f'`{k}`' for k in _QUERY_KEYS)} (other connector options go in "
            "`engine_options.connect_args`)"
        )
    return _Parts(
        host=url.host,
        http_path=query.pop("http_path").strip(),
        token=url.password,
        catalog=_optional(query.pop("catalog", None), "`catalog` in `url`"),
        schema=_optional(query.pop("schema", None), "`schema` in `url`"),
        extra_query=query,
    )


def _from_jdbc(rest: str, secrets: list[str]) -> _Parts:
    location, _, properties_text = rest.partition(";")
    properties = _jdbc_properties(properties_text, secrets)

    authority, _, path = location.partition("/")
    if "@" in authority:
        raise _Malformed(
            "the JDBC `url` has credentials before the host; a JDBC URL gives them as "
            "properties: `;AuthMech=3;UID=token;PWD=<token>`"
        )
    host, port = _split_port(authority.strip(), "the host of the JDBC `url`")
    if not host.strip():
        raise _Malformed(
            "the JDBC `url` has no host: `jdbc:databricks://<workspace host>:443/default;...`"
        )
    _check_port(port)
    _check_host(host, "the host of the JDBC `url`")
    path = path.strip()
    if "/" in path:
        raise _Malformed(
            "the JDBC `url` has more than one path segment after the host; the only one allowed "
            "is the schema, as in `jdbc:databricks://<host>:443/default;...`"
        )

    transport = properties.get("transportmode")
    if transport is not None and transport.lower() != "http":
        raise _Malformed(
            "the JDBC `url` sets `transportMode` to something other than `http`; the Python "
            "connector speaks only HTTP: write `transportMode=http` or leave it out"
        )
    ssl = properties.get("ssl")
    if ssl is not None and ssl.lower() not in ("1", "true"):
        raise _Malformed(
            "the JDBC `url` turns `ssl` off; the Python connector always uses TLS: write "
            "`ssl=1` or leave it out"
        )
    auth_mech = properties.get("authmech")
    if auth_mech is not None and auth_mech != "3":
        shown = f"AuthMech={auth_mech}" if auth_mech.isdigit() and len(auth_mech) <= 3 else "this `AuthMech`"
        raise _Malformed(
            f"the JDBC `url` uses {shown}; only personal access token sign-in is supported: "
            "`AuthMech=3;UID=token;PWD=<token>`"
        )
    uid = properties.get("uid")
    if uid is not None and uid.lower() != "token":
        raise _Malformed(
            "the JDBC `url` has a `UID` other than `token`; user name and password sign-in is "
            "not supported, use an access token: `AuthMech=3;UID=token;PWD=<token>`"
        )
    token = properties.get("pwd", "")
    if not token:
        raise _Malformed(
            "the JDBC `url` has no token: add `;AuthMech=3;UID=token;PWD=<token>`"
        )
    http_path = properties.get("httppath", "")
    if not http_path:
        raise _Malformed(
            "the JDBC `url` has no HTTP path: add `;httpPath=<http path>`, the SQL warehouse's "
            "HTTP path from its Connection details tab (e.g. /sql/1.0/warehouses/abc)"
        )
    schema = _optional(properties.get("connschema"), "`ConnSchema` in the JDBC `url`")
    path_schema = path or None
    if schema is not None and path_schema is not None and schema.lower() != path_schema.lower():
        raise _Malformed(
            f"the JDBC `url` names schema {path_schema!r} after the host and {schema!r} in "
            "`ConnSchema`; keep one of them"
        )
    return _Parts(
        host=host,
        http_path=http_path,
        token=token,
        catalog=_optional(properties.get("conncatalog"), "`ConnCatalog` in the JDBC `url`"),
        schema=schema or path_schema,
    )


def _jdbc_properties(text: str, secrets: list[str]) -> dict[str, str]:
    """``key=value;...`` with keys lower-cased; a value in ``{}`` loses its braces."""
    properties: dict[str, str] = {}
    position = 0
    number = 0
    while position < len(text):
        if text[position] in "; \t\r\n":
            position += 1
            continue
        number += 1
        match = _JDBC_PROPERTY.match(text, position)
        if match is None or not match.group(1) or match.end() == position:
            raise _Malformed(
                f"property number {number} after the host in the JDBC `url` is not `name=value`; "
                "properties are separated by `;`, e.g. `;httpPath=<http path>;PWD=<token>`"
            )
        key, value = match.group(1).lower(), match.group(2).strip()
        if value.startswith("{") and value.endswith("}"):
            value = value[1:-1]
        if key == "pwd":
            secrets.append(value)
        if key in properties and properties[key] != value:
            raise _Malformed(
                f"property number {number} of the JDBC `url` repeats an earlier one with another "
                "value (names are case-insensitive); give each property once"
            )
        properties[key] = value
        position = match.end()
    return properties


def _split_port(authority: str, what: str) -> tuple[str, int | None]:
    host, colon, port = authority.rpartition(":")
    if not colon:
        return authority, None
    if not port.isdigit():
        raise _Malformed(f"{what} has a port that is not a number; leave the port out (it is 443)")
    return host, int(port)


def _check_port(port: int | None) -> None:
    if port is not None and port != _HTTPS_PORT:
        raise _Malformed(
            f"the port is {port}, but databricks-sqlalchemy ignores the port of the URL and "
            f"connects to {_HTTPS_PORT}; leave the port out (or set "
            "`engine_options: {connect_args: {_port: <port>}}`)"
        )


def _check_host(host: str, what: str) -> None:
    if not _HOST.match(host):
        raise _Malformed(
            f"{what} is not a host name (letters, digits, `-` and `.` only), e.g. "
            "adb-1234567890123456.7.azuredatabricks.net or dbc-a1b2c3d4-e5f6.cloud.databricks.com"
        )


def _optional(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    if not value.strip():
        raise _Malformed(f"{what} is empty; give a name or leave it out")
    return value.strip()


def _set_catalog(parts: _Parts, catalog: str) -> None:
    if not catalog.strip():
        raise _Malformed("the catalog asked for is empty; give the catalog's name")
    catalog = catalog.strip()
    if parts.catalog is None:
        parts.catalog = catalog
    elif parts.catalog.lower() != catalog.lower():  # catalog names are case-insensitive
        raise _Malformed(
            f"the connection names catalog {parts.catalog!r} but the dataset is in catalog "
            f"{catalog!r}; remove `catalog` (or `ConnCatalog`) from the connection's `url`: "
            "the dataset URN names the catalog"
        )
