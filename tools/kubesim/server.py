"""The wire: a threaded HTTP/1.1 server on loopback that the official client talks to unchanged.

Per request, in this order: count it (``KubeSim.requests`` by method and route template, and a
``request_log`` entry), add the simulator's latency, apply an injected fault, check the bearer
token (401 ``Unauthorized`` Status otherwise; ``/version`` and health probes also answer
anonymous requests, as kube-apiserver's ``system:public-info-viewer`` allows), then hand the
request to ``apiserver``.

Connections are kept alive (HTTP/1.1 with ``Content-Length`` on every answer) and each answer
goes out in a single write with Nagle off, so a benchmark's thousands of requests are not paced
by delayed ACKs. With an ``ssl_context`` the socket is wrapped and the TLS handshake happens in
the connection's own thread.

Deliberately not here: what any request means (``apiserver``). Nothing is logged: requests
carry bearer tokens.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote

from . import apiserver, statuses
from .apiserver import Request, Response

if TYPE_CHECKING:  # pragma: no cover
    from .sim import KubeSim


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    sim: KubeSim


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "kubesim"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        super().setup()
        do_handshake = getattr(self.connection, "do_handshake", None)
        if do_handshake is not None:  # TLS: handshake here, not in the accepting thread
            try:
                do_handshake()
            except OSError:
                self.close_connection = True

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the stdlib's signature)
        # Silent on purpose: nothing about a request (a token, a path with a name) reaches stderr.
        pass

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ConnectionError, TimeoutError, OSError):
            self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET  # noqa: N815

    def _serve(self) -> None:
        sim = self.server.sim
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        raw_path, _, raw_query = self.path.partition("?")
        path = unquote(raw_path)
        query = {k: v[-1] for k, v in parse_qs(raw_query, keep_blank_values=True).items()}
        route, params = apiserver.match(path)
        method = self.command
        entry = sim.audit.record(method, route.template if route else path, path, query)

        if sim.latency:
            sim._sleep(sim.latency)
        fault = sim.faults.take(method, path)
        if fault is not None:
            if fault.kind == "latency":
                sim._sleep(fault.seconds)
            elif fault.kind == "status":
                err = statuses.for_code(fault.status, fault.message, fault.retry_after)
                self._send(apiserver.json_response(err.code, err.body, err.headers), entry)
                return
            elif fault.kind == "drop":
                self._abort()
                return
            elif fault.kind == "hang":
                sim._sleep(fault.seconds)
                self._abort()
                return
            elif fault.kind == "body":
                self._send(Response(fault.status, fault.body, fault.content_type), entry)
                return

        if not (route is not None and route.endpoint in apiserver.ANONYMOUS and not self.headers.get("Authorization")):
            if not sim.tokens.authorized(self.headers.get("Authorization")):
                err = statuses.unauthorized()
                self._send(apiserver.json_response(err.code, err.body), entry)
                return
        headers = {k: v for k, v in self.headers.items()}
        response = sim.apiserver.handle(Request(method, path, query, headers, body), route, params)
        if fault is not None and fault.kind == "cut":
            self._send_cut(response, entry, fault.keep, fault.framed)
            return
        self._send(response, entry)

    def _abort(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send_cut(self, response: Response, entry: dict, keep: int, framed: bool) -> None:
        """The answer with only its body's first ``keep`` bytes: announced as the whole body and
        followed by a closed connection, or (``framed``) announced as exactly that part."""
        part = response.body[:keep]
        if framed:
            self._send(Response(response.code, part, response.content_type, response.headers), entry)
            return
        self._send(response, entry, body=part)
        self.wfile.flush()
        self._abort()

    def _send(self, response: Response, entry: dict, body: bytes | None = None) -> None:
        entry["status"] = response.code
        self.send_response(response.code)
        ctype = response.content_type
        if ctype.startswith("text/"):
            ctype += "; charset=utf-8"
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-cache, private")
        for key, value in response.headers.items():
            self.send_header(key, value)
        if body is None:
            body = b"" if self.command == "HEAD" else response.body
        self.send_header("Content-Length", str(len(response.body)))
        # One write for headers and body: no Nagle/delayed-ACK stall on kept-alive connections.
        self._headers_buffer.append(b"\r\n")
        self._headers_buffer.append(body)
        self.flush_headers()


def serve(sim: KubeSim, host: str, port: int, ssl_context=None) -> tuple[_Server, threading.Thread]:
    server = _Server((host, port), _Handler, bind_and_activate=True)
    server.sim = sim
    if ssl_context is not None:
        server.socket = ssl_context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              name=f"kubesim-http-{server.server_address[1]}", daemon=True)
    thread.start()
    return server, thread
