"""A tiny threaded HTTP server on a free loopback port, the base of the test stand-ins.

Subclasses implement :meth:`LoopbackHttpServer.handle`, which receives a parsed
:class:`HttpRequest` and returns an :class:`HttpResponse`. Everything else (binding
127.0.0.1 on a free port, a serving thread, bounded shutdown, JSON in and out, keeping
exceptions raised by the handler so a test can see them) lives here.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["HttpRequest", "HttpResponse", "LoopbackHttpServer"]

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class HttpRequest:
    """One request as the server saw it.

    ``path`` is percent-decoded (``/aspects/urn:li:dataset:(...)``); ``raw_path`` is the
    path as sent. ``query`` maps each parameter to the list of its values. ``json`` is
    the decoded body when it is JSON, else None.
    """

    method: str
    path: str
    raw_path: str
    query: Dict[str, List[str]]
    headers: Dict[str, str]
    body: bytes
    json: Any = None

    def query_value(self, name: str, default: Optional[str] = None) -> Optional[str]:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class HttpResponse:
    status: int = 200
    body: Any = None  # JSON-serialisable, or bytes sent as they are
    content_type: str = "application/json"
    headers: Dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode("utf-8")


def _parse_request(handler: BaseHTTPRequestHandler, method: str) -> HttpRequest:
    split = urlsplit(handler.path)
    length = int(handler.headers.get("Content-Length") or 0)
    body = handler.rfile.read(length) if length > 0 else b""
    decoded: Any = None
    if body:
        try:
            decoded = json.loads(body)
        except ValueError:
            decoded = None
    return HttpRequest(
        method=method,
        path=unquote(split.path),
        raw_path=split.path,
        query=parse_qs(split.query, keep_blank_values=True),
        headers={k: v for k, v in handler.headers.items()},
        body=body,
        json=decoded,
    )


class LoopbackHttpServer:
    """Base class: a ThreadingHTTPServer on ``127.0.0.1:<free port>``.

    Use as a context manager or call :meth:`start` / :meth:`stop`. ``errors`` keeps
    every exception raised by :meth:`handle` (the client sees a 500 with the message).
    """

    #: Seconds an idle keep-alive connection is kept open by a handler thread.
    idle_connection_timeout: float = 5.0

    def __init__(self) -> None:
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self.errors: List[BaseException] = []

    # -- to override -------------------------------------------------------------------

    def handle(self, request: HttpRequest) -> HttpResponse:  # pragma: no cover
        raise NotImplementedError

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:40123``."""
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> "LoopbackHttpServer":
        if self._server is not None:
            return self
        owner = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = owner.idle_connection_timeout

            def _dispatch(self, method: str) -> None:
                request = _parse_request(self, method)
                try:
                    response = owner.handle(request)
                except Exception as exc:  # surfaced to the test through owner.errors
                    logger.exception("%s failed on %s %s", type(owner).__name__, method, self.path)
                    owner.errors.append(exc)
                    response = HttpResponse(
                        500, {"message": f"{type(exc).__name__}: {exc}", "status": 500}
                    )
                payload = response.encode()
                self.send_response(response.status)
                if payload:
                    self.send_header("Content-Type", response.content_type)
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if payload and method != "HEAD":
                    self.wfile.write(payload)

            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                self._dispatch("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._dispatch("POST")

            def do_PUT(self) -> None:  # noqa: N802
                self._dispatch("PUT")

            def do_PATCH(self) -> None:  # noqa: N802
                self._dispatch("PATCH")

            def do_DELETE(self) -> None:  # noqa: N802
                self._dispatch("DELETE")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                logger.debug("%s: " + format, type(owner).__name__, *args)

        server = ThreadingHTTPServer((LOOPBACK, 0), _Handler)
        server.daemon_threads = True
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{server.server_address[1]}",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and close the socket; waits at most ``timeout`` seconds."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        stopper = threading.Thread(target=server.shutdown, daemon=True)
        stopper.start()
        stopper.join(timeout)
        server.server_close()
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError(f"{type(self).__name__} did not stop within {timeout}s")

    def __enter__(self) -> "LoopbackHttpServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
