"""A small local Functions host for machines without Core Tools (not deployed).

It serves exactly what ``function_app.py`` registers - found through ``app.get_functions()``, with
each function's route, methods and auth level - on ``http://127.0.0.1:7071/api/...``, and fires
timer triggers on their NCRONTAB schedule (six fields, seconds first, parsed by croniter; ``%NAME%``
resolved from the environment as the Functions host resolves app settings). Event Grid triggers
are reachable the way the real host exposes them: ``POST /runtime/webhooks/eventgrid?functionName=X``.
Queue triggers are fired by polling their Storage Queue (the ``connection`` setting holding a
connection string), each message base64-decoded and deleted once the function returns, redelivered
after its visibility timeout when it raises, dropped after five attempts - as the real host does.

With Core Tools installed, ``func start`` serves the same files; this host only exists so that
``make run`` works on a bare machine and tests can drive the app over real HTTP.

Embedded defaults, so one command runs the whole thing:
- ``local.settings.json`` values are loaded into the environment when present (like ``func start``);
- no ``RUNS_TABLE_*`` setting: an Azurite table service is started (tools/azurite), and its queue
  service for the sweep queue when no ``SweepQueue`` setting is given;
- no cluster configured: the Kubernetes simulator is started with sample source Jobs, in real time,
  and the app is pointed at it through a kubeconfig - runs are SIMULATED, and it says so loudly.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import secrets
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

log = logging.getLogger("devhost")
ROOT = Path(__file__).resolve().parent.parent
QUEUE_POLL_SECONDS = 1.0  # the real host polls an idle queue with backoff up to a minute; locally, quicker
MAX_DEQUEUE_COUNT = 5  # the real host's maxDequeueCount default


class Route:
    def __init__(self, name: str, template: str, methods: list[str], auth_level: str, handler):
        self.name = name
        self.template = template
        self.methods = {m.upper() for m in methods} if methods else {"GET", "POST", "PUT", "DELETE", "PATCH"}
        self.auth_level = auth_level
        self.handler = handler
        pattern = re.sub(r"\{(\w+)(?::[^}]*)?\??\}", r"(?P<\1>[^/]+)", template.strip("/"))
        self.regex = re.compile(f"^{pattern}$")
        # Literal segments win over parameters, as in the Functions host's routing.
        self.specificity = sum(1 for seg in template.split("/") if not seg.startswith("{"))


def _value(v):
    return getattr(v, "value", v)


def load_functions(app) -> tuple[list[Route], dict, dict, dict]:
    """(http routes, timers {name: (schedule, fn)}, event grid {name: fn},
    queues {name: (queue name expression, connection setting, fn)}) from a FunctionApp."""
    if getattr(app, "functions_bindings", None):
        app.functions_bindings = {}  # a second get_functions() call raises otherwise
    routes, timers, eventgrid, queues = [], {}, {}, {}
    for fn in app.get_functions():
        bindings = [b.get_dict_repr() for b in fn.get_bindings()]
        trigger = next(b for b in bindings if _value(b["direction"]) == 0 or "Trigger" in b["type"])
        kind = trigger["type"]
        if kind == "httpTrigger":
            routes.append(Route(fn.get_function_name(), trigger.get("route") or fn.get_function_name(),
                                [str(_value(m)) for m in trigger.get("methods") or []],
                                str(_value(trigger.get("authLevel") or "function")).lower(),
                                fn.get_user_function()))
        elif kind == "timerTrigger":
            timers[fn.get_function_name()] = (trigger["schedule"], fn.get_user_function())
        elif kind == "eventGridTrigger":
            eventgrid[fn.get_function_name()] = fn.get_user_function()
        elif kind == "queueTrigger":
            queues[fn.get_function_name()] = (trigger["queueName"], trigger.get("connection") or "AzureWebJobsStorage",
                                              fn.get_user_function())
    routes.sort(key=lambda r: -r.specificity)
    return routes, timers, eventgrid, queues


def resolve_setting(expression: str) -> str:
    def sub(match):
        value = os.environ.get(match.group(1))
        if value is None:
            raise KeyError(f"app setting {match.group(1)} referenced by a trigger is not set")
        return value

    return re.sub(r"%(\w+)%", sub, expression)


class DevHost:
    """Serve a FunctionApp over HTTP and fire its timers. ``start()`` returns the base URL."""

    def __init__(self, app=None, *, port: int = 7071, function_key: str | None = None, timers: bool = True):
        if app is None:
            import function_app

            app = function_app.app
        self.routes, self.timers, self.eventgrid, self.queues = load_functions(app)
        self.function_key = function_key or os.environ.get("DEVHOST_FUNCTION_KEY") or secrets.token_urlsafe(24)
        self.port = port
        self.run_timers = timers
        self._server: ThreadingHTTPServer | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.timer_runs: dict[str, int] = {}
        self.queue_runs: dict[str, int] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> str:
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):  # quiet; the app logs what matters
                log.debug(fmt, *args)

            def _serve(self):
                host.serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        t = threading.Thread(target=self._server.serve_forever, name="devhost-http", daemon=True)
        t.start()
        self._threads.append(t)
        if self.run_timers:
            for name, (schedule, fn) in self.timers.items():
                t = threading.Thread(target=self._timer_loop, args=(name, schedule, fn), name=f"timer-{name}",
                                     daemon=True)
                t.start()
                self._threads.append(t)
            for name, (_, connection, _) in self.queues.items():
                if not os.environ.get(connection):
                    log.info("queue trigger %s: app setting %s is not set; not polling", name, connection)
                    continue
                t = threading.Thread(target=self._queue_loop, args=(name,), name=f"queue-{name}", daemon=True)
                t.start()
                self._threads.append(t)
        return self.url

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def fire_timer(self, name: str) -> None:
        from azure.functions.timer import TimerRequest

        _, fn = self.timers[name]
        fn(TimerRequest(past_due=False))
        self.timer_runs[name] = self.timer_runs.get(name, 0) + 1

    def drain_queue(self, name: str, *, visibility_timeout: int = 30, max_messages: int | None = None) -> int:
        """Fire queue trigger ``name`` for the messages visible now (one at a time, as one
        consumer); returns how many its function took. Several threads may drain at once: each
        is one more consumer."""
        import azure.functions as func
        from azure.core.exceptions import ResourceNotFoundError

        queue_expr, connection, fn = self.queues[name]
        client = _queue_client(os.environ[connection], resolve_setting(queue_expr))
        taken = 0
        while max_messages is None or taken < max_messages:
            try:
                messages = list(client.receive_messages(max_messages=1, visibility_timeout=visibility_timeout))
            except ResourceNotFoundError:
                # No queue yet (its first message creates it): the Functions host's queue listener
                # (WebJobs' QueueListener.ExecuteAsync) backs off on QueueNotFound and logs no error.
                return taken
            if not messages:
                return taken
            message = messages[0]
            body = message.content if isinstance(message.content, bytes) else str(message.content).encode()
            try:
                fn(func.QueueMessage(id=message.id, body=body, pop_receipt=message.pop_receipt))
            except Exception:
                log.exception("queue trigger %s failed (attempt %d)", name, message.dequeue_count)
                if message.dequeue_count >= MAX_DEQUEUE_COUNT:
                    client.delete_message(message.id, message.pop_receipt)  # the real host parks it as poison
                continue
            client.delete_message(message.id, message.pop_receipt)
            taken += 1
            self.queue_runs[name] = self.queue_runs.get(name, 0) + 1
        return taken

    def _queue_loop(self, name: str) -> None:
        while not self._stop.is_set():
            try:
                taken = self.drain_queue(name)
            except Exception:
                log.exception("polling the queue of %s failed", name)
                taken = 0
            if self._stop.wait(QUEUE_POLL_SECONDS if not taken else 0):
                return

    def _timer_loop(self, name: str, schedule: str, fn) -> None:
        from croniter import croniter

        expr = resolve_setting(schedule)
        it = croniter(expr, datetime.now(UTC), second_at_beginning=True)
        while not self._stop.is_set():
            due = it.get_next(datetime)
            if self._stop.wait(max(0.0, (due - datetime.now(UTC)).total_seconds())):
                return
            try:
                self.fire_timer(name)
            except Exception:
                log.exception("timer %s failed", name)

    # ----------------------------------------------------------- requests

    def serve(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in h.headers.items()}
        host = h.headers.get("Host") or f"127.0.0.1:{self.port}"
        status, out_headers, out_body = self.dispatch(h.command, h.path, headers, body, host=host)
        self._send(h, status, out_body, out_headers)

    def dispatch(self, method: str, path: str, headers: dict, body: bytes = b"",
                 host: str = "127.0.0.1:7071") -> tuple[int, dict, bytes]:
        """One request through routing, auth and the function: (status, headers, body)."""
        import azure.functions as func

        parts = urlsplit(path)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        headers = {k.lower(): v for k, v in headers.items()}
        if parts.path.lower() == "/runtime/webhooks/eventgrid":  # the host's routes ignore case
            return self._dispatch_eventgrid(method, params, headers, body)
        if not parts.path.startswith("/api/"):
            return 404, {}, b""
        sub = parts.path[len("/api/"):]
        for route in self.routes:
            match = route.regex.match(sub)
            if not match or method.upper() not in route.methods:
                continue
            if route.auth_level != "anonymous" and not self._authorised(params, headers):
                return 401, {}, b""
            req = func.HttpRequest(method.upper(), f"http://{host}{path}", headers=headers, params=params,
                                   route_params={k: unquote(v) for k, v in match.groupdict().items()}, body=body)
            try:
                resp = route.handler(req)
            except Exception:
                log.exception("function %s raised", route.name)
                return 500, {}, b""
            out_headers = dict(resp.headers)
            out_headers.setdefault("Content-Type", resp.mimetype or "text/plain")
            return resp.status_code, out_headers, resp.get_body() or b""
        return 404, {}, b""

    def _authorised(self, params: dict, headers: dict) -> bool:
        given = params.get("code") or headers.get("x-functions-key") or ""
        return secrets.compare_digest(given.encode(), self.function_key.encode())

    def _dispatch_eventgrid(self, method, params, headers, body) -> tuple[int, dict, bytes]:
        """Event Grid's webhook, as the Functions host exposes it for eventGridTrigger functions."""
        import azure.functions as func

        fn = self.eventgrid.get(params.get("functionName", ""))
        if fn is None:
            return 404, {}, b""
        if not self._authorised(params, headers):
            return 401, {}, b""
        if method.upper() == "OPTIONS":
            # The CloudEvents abuse-protection handshake Event Grid makes before delivering to a
            # CloudEvents-schema subscription, answered as the Functions Event Grid extension does
            # (HttpRequestProcessor.ProcessAsync in Microsoft.Azure.WebJobs.Extensions.EventGrid).
            if "webhook-request-origin" not in headers:
                return 400, {}, b""
            return 200, {"WebHook-Allowed-Origin": "eventgrid.azure.net"}, b""
        if method.upper() != "POST":
            return 405, {}, b""
        try:
            events = json.loads(body or b"[]")
        except ValueError:
            return 400, {}, b""
        events = events if isinstance(events, list) else [events]
        for ev in events:
            if isinstance(ev, dict) and ev.get("eventType") == "Microsoft.EventGrid.SubscriptionValidationEvent":
                code = (ev.get("data") or {}).get("validationCode")
                return 200, {"Content-Type": "application/json"}, json.dumps({"validationResponse": code}).encode()
        for ev in events:
            if not isinstance(ev, dict):
                continue
            event = func.EventGridEvent(
                id=ev.get("id"), data=ev.get("data"), topic=ev.get("topic") or ev.get("source"),
                subject=ev.get("subject"), event_type=ev.get("eventType") or ev.get("type"),
                event_time=None, data_version=ev.get("dataVersion") or ev.get("specversion") or "")
            try:
                fn(event)
            except Exception:
                log.exception("event grid function failed; Event Grid would redeliver")
                return 500, {}, b""
        return 200, {}, b""

    @staticmethod
    def _send(h, status: int, body: bytes, headers: dict) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)


# ------------------------------------------------------------- local stack


def _queue_client(connection_string: str, queue_name: str):
    from azure.storage.queue import BinaryBase64DecodePolicy, BinaryBase64EncodePolicy, QueueClient

    return QueueClient.from_connection_string(connection_string, queue_name,
                                              message_encode_policy=BinaryBase64EncodePolicy(),
                                              message_decode_policy=BinaryBase64DecodePolicy())


def load_local_settings(path: Path = ROOT / "local.settings.json") -> None:
    if not path.exists():
        return
    values = json.loads(path.read_text()).get("Values") or {}
    for k, v in values.items():
        os.environ.setdefault(k, str(v))


class LocalStack:
    """Azurite and the simulated cluster, started only where nothing real is configured."""

    def __init__(self):
        self.azurite = None
        self.azurite_queue = None
        self.sim = None
        self.kubeconfig_dir = None

    def start(self, *, sweep_schedule: str = "*/5 * * * * *") -> None:
        if not os.environ.get("RUNS_TABLE_CONNECTION_STRING") and not os.environ.get("RUNS_TABLE_ENDPOINT"):
            from tools.azurite import Azurite

            self.azurite = Azurite()
            self.azurite.start()
            os.environ["RUNS_TABLE_CONNECTION_STRING"] = self.azurite.connection_string
            if not os.environ.get("SweepQueue") and not os.environ.get("SweepQueue__queueServiceUri"):
                self.azurite_queue = Azurite(service="queue")
                self.azurite_queue.start()
                os.environ["SweepQueue"] = self.azurite_queue.connection_string
        cluster_configured = os.environ.get("AKS_CLUSTER_NAME") or (
            os.environ.get("AKS_CREDENTIAL_MODE") == "kubeconfig" and os.environ.get("KUBECONFIG"))
        if not cluster_configured:
            from tools.kubesim import KubeSim, seed_samples

            self.sim = KubeSim(auto_run=True)
            self.sim.start()
            namespace = os.environ.get("AKS_NAMESPACE") or "default"
            seed_samples(self.sim, namespace=namespace)
            self.kubeconfig_dir = tempfile.TemporaryDirectory(prefix="devhost-")
            path = Path(self.kubeconfig_dir.name) / "kubeconfig"
            path.write_text(json.dumps(simulator_kubeconfig(self.sim.url, self.sim.token, namespace)))
            os.environ["AKS_CREDENTIAL_MODE"] = "kubeconfig"
            os.environ["KUBECONFIG"] = str(path)
        os.environ.setdefault("SWEEP_SCHEDULE", sweep_schedule)
        # Trigger bindings read %SETTING% expressions from the environment, where the app's own
        # defaults do not apply (the Functions host would refuse the trigger just the same).
        os.environ.setdefault("SWEEP_QUEUE_NAME", _setting_default("SWEEP_QUEUE_NAME"))

    def stop(self) -> None:
        if self.sim is not None:
            self.sim.stop()
        if self.azurite is not None:
            self.azurite.close()
        if self.azurite_queue is not None:
            self.azurite_queue.close()
        if self.kubeconfig_dir is not None:
            self.kubeconfig_dir.cleanup()


def _setting_default(name: str) -> str:
    from shared.settings import SETTINGS

    return next(spec.default for spec in SETTINGS if spec.name == name)


def simulator_kubeconfig(url: str, token: str, namespace: str = "default") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kubesim", "cluster": {"server": url}}],
        "users": [{"name": "kubesim", "user": {"token": token}}],
        "contexts": [{"name": "kubesim", "context": {"cluster": "kubesim", "user": "kubesim",
                                                      "namespace": namespace}}],
        "current-context": "kubesim",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the Functions app locally (no Core Tools needed).")
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEVHOST_PORT", "7071")))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The host's own queue polls would log every request's headers (the app quiets these too).
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
    sys.path.insert(0, str(ROOT))
    load_local_settings()
    stack = LocalStack()
    stack.start()
    host = DevHost(port=args.port)
    url = host.start()
    banner = [
        f"AKS Jobs for Polysync - local host at {url}/api",
        f"function key: {host.function_key}   (send as ?code=... or the x-functions-key header)",
        f"sweep schedule: {os.environ.get('SWEEP_SCHEDULE')}",
        f"run table: {'Azurite (embedded)' if stack.azurite else 'configured'}",
        f"sweep queue: {'Azurite (embedded)' if stack.azurite_queue else 'configured' if os.environ.get('SweepQueue') else 'none: the timer sweeps in process'}",
    ]
    if stack.sim is not None:
        banner += ["", "!!! NO CLUSTER CONFIGURED: runs go to the built-in Kubernetes SIMULATOR !!!",
                   f"!!! simulator at {stack.sim.url}; nothing runs on a real cluster         !!!"]
    banner += ["", "try:",
               f"  curl -s '{url}/api/jobs?code={host.function_key}'",
               f"  curl -s -X POST '{url}/api/jobs/nightly-etl/runs?code={host.function_key}' "
               "-H 'Content-Type: application/json' -d '{\"BATCH_SIZE\": \"100\"}'"]
    print("\n".join(banner), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        host.stop()
        stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
