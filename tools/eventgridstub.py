"""A loopback HTTPS stand-in for an Event Grid (basic) topic, for the publisher and outbox tests.

``azure-eventgrid``'s ``EventGridPublisherClient`` talks to it unchanged: point
``EVENTGRID_TOPIC_ENDPOINT`` at ``stub.endpoint`` and trust ``stub.ca_path`` (``REQUESTS_CA_BUNDLE``,
or ``connection_verify=stub.ca_path``). It must be HTTPS: azure-core's bearer-token policy refuses
to put a token on a plain-http request.

It accepts what the SDK sends for CloudEvents to a basic topic, and checks it the way the service
does:

- ``POST /api/events?api-version=...`` (400 ``MissingApiVersionParameter`` without one);
- ``Content-Type: application/cloudevents-batch+json`` (400 otherwise), a JSON array of events,
  each with ``id``, ``source``, ``type`` and ``specversion`` ``"1.0"`` (400 naming the first bad
  one); a body over 1 MB is 413;
- auth: the ``aeg-sas-key`` header equal to ``key``, or ``Authorization: Bearer <token>`` with a
  token this stub issued or was told to accept (``accept_token``); anything else is 401;
- success is ``200`` with an empty body; the batch's events are recorded in order (``events``).

It also serves an App Service managed-identity token endpoint (``GET /msi/token``, header
``X-IDENTITY-HEADER``): with ``IDENTITY_ENDPOINT=stub.identity_endpoint`` and
``IDENTITY_HEADER=stub.identity_header`` set, azure-identity's ``DefaultAzureCredential`` gets its
token here, and the request's ``resource`` and ``client_id`` are recorded (``token_requests``).

Faults, to prove the outbox: ``fail(status, times, after)`` answers ``status`` (500 by default) to
the next ``times`` publish requests (``None``: until ``up()``), optionally only after ``after`` more
successes; ``hang(times)`` holds publish requests without an answer until ``up()`` or ``stop()``
(the client's read timeout fires); ``up()`` ends every fault. Every publish attempt is in
``attempts`` (status, auth kind, event ids), so a test sees the SDK's retries too.

It deliberately does not implement subscriptions, delivery to handlers, the Event Grid event
schema, custom input schemas, SAS tokens (``aeg-sas-token``) or namespace topics.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from tools.loopback import LoopbackTlsStub, TlsServer

EVENTS_PATH = "/api/events"
IDENTITY_PATH = "/msi/token"
CLOUDEVENTS_BATCH = "application/cloudevents-batch+json"
MAX_BODY_BYTES = 1024 * 1024
# A hung request is released after this long even if nobody calls up(): no thread lingers forever.
HANG_LIMIT_SECONDS = 30.0
TOKEN_LIFETIME_SECONDS = 3600


@dataclass
class Attempt:
    """One publish request as the stub saw it."""

    status: int | None  # None: hung, never answered
    auth: str | None  # "key" | "bearer" | None
    content_type: str
    api_version: str | None
    event_ids: list[str] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: TlsServer

    def log_message(self, format, *args):  # noqa: A002 - signature fixed by the base class
        pass

    def answer(self, status: int, doc: dict | None = None) -> None:
        body = json.dumps(doc).encode() if doc is not None else b""
        self.send_response(status)
        if doc is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            # Don't read a body this large; answer and drop the connection.
            self.close_connection = True
            self.answer(413, _error("RequestEntityTooLarge", "The maximum size (1536000) has been exceeded."))
            return
        body = self.rfile.read(length) if length else b""
        self.server.stub._publish(self, body)

    def do_GET(self):  # noqa: N802
        self.server.stub._token(self)


def _error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


class EventGridStub(LoopbackTlsStub):
    """An Event Grid basic topic for CloudEvents, on ``https://127.0.0.1:<port>/api/events``."""

    name = "eventgridstub"
    handler = _Handler

    def __init__(self, key: str | None = None, *, cert_path: str | None = None, key_path: str | None = None):
        self.key = key if key is not None else secrets.token_urlsafe(32)
        self.identity_header = secrets.token_urlsafe(16)
        self.events: list[dict] = []
        self.attempts: list[Attempt] = []
        self.token_requests: list[dict] = []
        self._tokens: set[str] = set()
        self._fail_status = 500
        self._fail_left: int | None = 0  # None: until up()
        self._fail_after = 0
        self._hang_left: int | None = 0
        self._release = threading.Event()
        super().__init__(cert_path, key_path)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    # ------------------------------------------------------------------ lifecycle

    @property
    def endpoint(self) -> str:
        """The topic endpoint, as ARM's ``properties.endpoint`` gives it (what EVENTGRID_TOPIC_ENDPOINT holds)."""
        return self.url + EVENTS_PATH

    @property
    def identity_endpoint(self) -> str:
        return self.url + IDENTITY_PATH

    def _before_start(self) -> None:
        self._release.clear()

    def _before_stop(self) -> None:
        self._release.set()  # let hung handlers go first, or shutdown waits on them

    # ------------------------------------------------------------------ modes

    def up(self) -> None:
        """Answer normally again: ends ``fail`` and ``hang``, and releases hung requests."""
        with self._lock:
            self._fail_left = 0
            self._fail_after = 0
            self._hang_left = 0
            self._release.set()

    def fail(self, status: int = 500, *, times: int | None = None, after: int = 0) -> None:
        """Answer ``status`` to the next ``times`` publish requests (None: until ``up()``), starting
        after ``after`` more requests have been accepted."""
        with self._lock:
            self._fail_status = status
            self._fail_left = times
            self._fail_after = after
            self._hang_left = 0

    def hang(self, *, times: int | None = None) -> None:
        """Hold the next ``times`` publish requests (None: every one until ``up()``) unanswered."""
        with self._lock:
            self._hang_left = times
            self._fail_left = 0
            self._release.clear()

    def accept_token(self, token: str) -> None:
        """Accept ``Authorization: Bearer <token>`` (a test credential's token)."""
        with self._lock:
            self._tokens.add(token)

    # ------------------------------------------------------------------ reading

    @property
    def ids(self) -> list[str]:
        with self._lock:
            return [e.get("id") for e in self.events]

    def received(self, *, subject: str | None = None) -> list[dict]:
        """Accepted events in arrival order, optionally only those of one subject (one run)."""
        with self._lock:
            return [e for e in self.events if subject is None or e.get("subject") == subject]

    def wait_for_events(self, count: int, timeout: float = 5.0) -> list[dict]:
        """Block until at least ``count`` events were accepted; the events, or TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.events) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self.events)} of {count} events arrived within {timeout} s")
                self._changed.wait(left)
            return list(self.events)

    def clear(self) -> None:
        with self._lock:
            self.events.clear()
            self.attempts.clear()
            self.token_requests.clear()

    # ------------------------------------------------------------------ answers

    def _auth_kind(self, handler: _Handler) -> str | None:
        sas = handler.headers.get("aeg-sas-key")
        if sas is not None:
            return "key" if secrets.compare_digest(sas.encode(), self.key.encode()) else None
        authorization = handler.headers.get("Authorization") or ""
        if authorization.startswith("Bearer "):
            with self._lock:
                return "bearer" if authorization[len("Bearer "):] in self._tokens else None
        return None

    def _next_fault(self) -> str | None:
        with self._lock:
            if self._hang_left is None or self._hang_left > 0:
                if self._hang_left is not None:
                    self._hang_left -= 1
                return "hang"
            if self._fail_left is None or self._fail_left > 0:
                if self._fail_after > 0:
                    self._fail_after -= 1
                    return None
                if self._fail_left is not None:
                    self._fail_left -= 1
                return "fail"
            return None

    def _record(self, attempt: Attempt, events: list[dict] | None = None) -> None:
        with self._changed:
            self.attempts.append(attempt)
            if events:
                self.events.extend(events)
            self._changed.notify_all()

    def _publish(self, handler: _Handler, body: bytes) -> None:
        parts = urlsplit(handler.path)
        query = parse_qs(parts.query)
        api_version = (query.get("api-version") or [None])[0]
        content_type = (handler.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        auth = self._auth_kind(handler)
        attempt = Attempt(status=None, auth=auth, content_type=content_type, api_version=api_version)

        if parts.path != EVENTS_PATH:
            attempt.status = 404
            self._record(attempt)
            handler.answer(404, _error("NotFound", f"No route for {parts.path}"))
            return
        fault = self._next_fault()
        if fault == "hang":
            self._record(attempt)
            # No answer: the client's read timeout fires. The wait is bounded so a forgotten
            # hang never keeps a thread (or stop()) waiting for long.
            self._release.wait(HANG_LIMIT_SECONDS)
            handler.close_connection = True
            return
        if fault == "fail":
            attempt.status = self._fail_status
            self._record(attempt)
            handler.answer(self._fail_status, _error("InternalServerError",
                                                     "The service is temporarily unavailable (stub fault)."))
            return

        status, doc, events = self._check(auth, api_version, content_type, body)
        attempt.status = status
        attempt.event_ids = [e.get("id") for e in events]
        self._record(attempt, events if status == 200 else None)
        handler.answer(status, doc)

    def _check(self, auth, api_version, content_type, body) -> tuple[int, dict | None, list[dict]]:
        if auth is None:
            return 401, _error("Unauthorized", "The request authorization key is not authorized for this "
                                               "topic, or no valid bearer token was given."), []
        if not api_version:
            return 400, _error("MissingApiVersionParameter",
                               "The api-version query parameter (?api-version=) is required for all requests."), []
        if content_type != CLOUDEVENTS_BATCH:
            return 400, _error("BadRequest", f"This topic accepts CloudEvents batches ({CLOUDEVENTS_BATCH}), "
                                             f"not {content_type or 'no content type'}."), []
        try:
            events = json.loads(body or b"null")
        except ValueError:
            return 400, _error("BadRequest", "The request body is not valid JSON."), []
        if not isinstance(events, list) or not events:
            return 400, _error("BadRequest", "A CloudEvents batch must be a non-empty JSON array."), []
        for i, event in enumerate(events):
            if not isinstance(event, dict):
                return 400, _error("BadRequest", f"Event {i} is not a JSON object."), []
            missing = [k for k in ("id", "source", "type", "specversion") if not event.get(k)]
            if missing:
                return 400, _error("BadRequest", f"Event {i} lacks required attribute {missing[0]!r}."), []
            if event["specversion"] != "1.0":
                return 400, _error("BadRequest", f"Event {i} has specversion {event['specversion']!r}; "
                                                 "only 1.0 is supported."), []
        return 200, None, events

    def _token(self, handler: _Handler) -> None:
        parts = urlsplit(handler.path)
        if parts.path != IDENTITY_PATH:
            handler.answer(404, _error("NotFound", f"No route for {parts.path}"))
            return
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        given = handler.headers.get("X-IDENTITY-HEADER") or ""
        if not secrets.compare_digest(given.encode(), self.identity_header.encode()):
            handler.answer(401, _error("Unauthorized", "X-IDENTITY-HEADER is missing or wrong."))
            return
        if not query.get("resource"):
            handler.answer(400, _error("BadRequest", "resource is required."))
            return
        token = "stub-token-" + secrets.token_urlsafe(16)
        with self._lock:
            self.token_requests.append({"resource": query.get("resource"), "client_id": query.get("client_id"),
                                        "api_version": query.get("api-version")})
            self._tokens.add(token)
        handler.answer(200, {
            "access_token": token,
            "expires_on": str(int(time.time()) + TOKEN_LIFETIME_SECONDS),
            "resource": query["resource"],
            "token_type": "Bearer",
            "client_id": query.get("client_id") or "00000000-0000-0000-0000-0000000000aa",
        })


def main(argv: list[str] | None = None) -> int:
    """Run a stub topic in the foreground and print each accepted event's subject and status."""
    import argparse

    parser = argparse.ArgumentParser(description="A loopback HTTPS Event Grid topic for local runs.")
    parser.add_argument("--key", help="topic key to require (default: a random one, printed)")
    args = parser.parse_args(argv)
    stub = EventGridStub(args.key)
    stub.start()
    print(f"export EVENTGRID_TOPIC_ENDPOINT={stub.endpoint}\n"
          f"export EVENTGRID_TOPIC_KEY={stub.key}\n"
          f"export REQUESTS_CA_BUNDLE={stub.ca_path}", flush=True)
    seen = 0
    try:
        while True:
            try:
                events = stub.wait_for_events(seen + 1, timeout=3600)
            except TimeoutError:
                continue
            for event in events[seen:]:
                data = event.get("data") if isinstance(event.get("data"), dict) else {}
                print(f"{event.get('time')} {event.get('type')} {event.get('subject')} "
                      f"{data.get('previousStatus')} -> {data.get('status')} ({data.get('phase')}, "
                      f"{data.get('reason')}) id={event.get('id')}", flush=True)
            seen = len(events)
    except KeyboardInterrupt:
        pass
    finally:
        stub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
