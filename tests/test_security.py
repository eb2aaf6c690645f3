"""Security promises, proved from what the app registers and from everything it emits.

- Every HTTP route but health needs a function key: read from ``function_app.app.get_functions()``,
  and confirmed by calling each route without a key.
- Requests reach only namespaces in ``ALLOWED_NAMESPACES`` (default: ``AKS_NAMESPACE`` alone), by
  every route, by the Event Grid submit and by the sweep: the simulator's request log shows where
  the cluster was asked.
- No kubeconfig token, account key, topic key or ``Secret``-typed parameter value reaches a log
  line (DEBUG, every logger), a table row, an answer, an error message, an event or a plain Job
  spec: distinctive values are planted and everything is scanned for them.
- A cluster error passed back to a caller is trimmed and never echoes a dumped object, even when
  the body is not a Kubernetes ``Status`` at all (a proxy or webhook that dumps what it got).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared import composition
from shared.settings import load_settings
from tests.fixtures.app import FUNCTION_KEY, source_job
from tools.azurite import ACCOUNT_KEY
from tools.devhost import simulator_kubeconfig

PLANTED_SECRET = "planted-secret-value-7f3a9c41"
PLANTED_IN_DUMP = "planted-dumped-env-value-51d0"
WRITES = ("POST", "PUT", "PATCH", "DELETE")


def http_functions() -> dict[str, dict]:
    """{function name: its HTTP trigger binding} as ``function_app`` registers them."""
    import function_app

    function_app.app.functions_bindings = {}  # a second get_functions() call raises otherwise
    found = {}
    for fn in function_app.app.get_functions():
        for binding in fn.get_bindings():
            doc = binding.get_dict_repr()
            if doc.get("type") == "httpTrigger":
                found[fn.get_function_name()] = doc
    return found


def auth_level(binding: dict) -> str:
    level = binding.get("authLevel")
    return str(getattr(level, "value", level)).lower()


def reconfigure(app, monkeypatch, **env: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    composition.reset()
    app.service.clock = app.sim.now


def write_kubeconfig(app, server: str, token: str) -> None:
    with open(app.env["KUBECONFIG"], "w") as fh:
        json.dump(simulator_kubeconfig(server, token), fh)


def concrete(route: str, run_id: str) -> str:
    return "/api/" + route.replace("{externalId}", "report").replace("{runId}", run_id)


# ------------------------------------------------------------------------------ auth levels


def test_every_route_but_health_and_the_signed_ones_is_registered_with_auth_level_function():
    functions = http_functions()
    routes = {b["route"] for b in functions.values()}
    assert {"jobs", "jobs/{externalId}", "jobs/{externalId}/runs", "runs", "runs/{runId}", "runs/{runId}/poll",
            "runs/{runId}/cancel", "health", "signed/runs/{runId}/poll", "signed/runs/{runId}",
            "signed/runs/{runId}/cancel"} <= routes
    for name, binding in functions.items():
        # The signed routes check their own per-run signature (tests/test_run_access.py).
        public = binding["route"] == "health" or binding["route"].startswith("signed/")
        expected = "anonymous" if public else "function"
        assert auth_level(binding) == expected, f"{name} ({binding['route']}) has authLevel {auth_level(binding)}"


def test_without_the_function_key_every_route_but_health_is_refused(app):
    app.sim.put("jobs", "default", source_job("report", {"MODE": "full"}))
    run_id = app.submit("report", {}).json["runId"]
    app.sim.reset_counters()
    before = len(app.table_entities())
    for binding in http_functions().values():
        for method in binding["methods"]:
            method = str(getattr(method, "value", method))
            path = concrete(binding["route"], run_id)
            if binding["route"] == "health":
                assert app.call(method, path, key=False).status == 200
                continue
            assert app.call(method, path, {}, key=False).status == 401, path
            assert app.call(method, path, {}, key=False, headers={"x-functions-key": "wrong"}).status == 401, path
    assert not [e for e in app.sim.request_log if e["method"] in WRITES]
    assert len(app.table_entities()) == before


# ------------------------------------------------------------------------------- namespaces


def test_allowed_namespaces_default_to_the_aks_namespace_alone():
    settings = load_settings({"AKS_CREDENTIAL_MODE": "kubeconfig", "KUBECONFIG": "/dev/null",
                              "AKS_NAMESPACE": "team-a", "RUNS_TABLE_CONNECTION_STRING": "UseDevelopmentStorage=true"})
    assert settings.allowed_namespaces == ("team-a",)
    widened = load_settings({"AKS_CREDENTIAL_MODE": "kubeconfig", "KUBECONFIG": "/dev/null", "AKS_NAMESPACE": "team-a",
                             "ALLOWED_NAMESPACES": "team-b", "RUNS_TABLE_CONNECTION_STRING": "UseDevelopmentStorage=true"})
    assert widened.allowed_namespaces == ("team-a", "team-b")  # the AKS namespace always stays usable


def test_no_route_reaches_a_namespace_outside_allowed_namespaces(app):
    for namespace in ("default", "kube-system"):
        app.sim.put("jobs", namespace, source_job("report", {"MODE": "full"}, scenario="run-forever"))
    run_id = app.submit("report", {}).json["runId"]
    app.sim.reset_counters()
    before = len(app.table_entities())
    for binding in http_functions().values():
        if binding["route"] == "health":
            continue
        for method in binding["methods"]:
            method = str(getattr(method, "value", method))
            answer = app.call(method, concrete(binding["route"], run_id) + "?namespace=kube-system", {})
            # A signed route refuses a link not signed for kube-system before looking any further.
            expected = (401, "sig") if binding["route"].startswith("signed/") else (403, "namespace")
            assert (answer.status, answer.json["error"]["field"]) == expected, (binding["route"], answer.body)
    app.sweep()
    assert not [e for e in app.sim.request_log if "/namespaces/kube-system" in e["path"]]
    assert not [e for e in app.sim.request_log if e["method"] in WRITES]
    assert len(app.table_entities()) == before
    assert app.sim.get("jobs", "default", run_id) is not None  # the cancel above was refused


def test_a_widened_allow_list_reaches_exactly_the_listed_namespaces(app, monkeypatch):
    reconfigure(app, monkeypatch, ALLOWED_NAMESPACES="team-a")
    for namespace in ("default", "team-a", "kube-system"):
        app.sim.put("jobs", namespace, source_job("report", {"MODE": "full"}, scenario="run-forever"))

    created = app.post("/api/jobs/report/runs?namespace=team-a", {})
    refused = app.post("/api/jobs/report/runs?namespace=kube-system", {})
    assert app.submit("report", {}).status == 202  # one in the AKS namespace too: both get swept
    app.advance(5)

    assert created.status == 202, created.body
    assert created.json["namespace"] == "team-a"
    assert app.sim.get("jobs", "team-a", created.json["runId"]) is not None
    assert refused.status == 403
    touched = {e["path"].split("/namespaces/")[1].split("/")[0] for e in app.sim.request_log if "/namespaces/" in e["path"]}
    assert touched == {"default", "team-a"}  # the sweep lists both allowed namespaces, nothing else


def test_an_event_grid_submit_for_another_namespace_is_dropped_before_the_cluster(app):
    app.sim.put("jobs", "kube-system", source_job("report", {"MODE": "full"}))
    app.sim.reset_counters()
    event = {"id": "evt-1", "eventType": "Polysync.AksJob.SubmitRun", "subject": "runs", "dataVersion": "1.0",
             "data": {"externalId": "report", "namespace": "kube-system", "parameters": {"MODE": "x"}}}
    status, _, _ = app.host.dispatch("POST", "/runtime/webhooks/eventgrid?functionName=submit_from_event",
                                     {"x-functions-key": FUNCTION_KEY, "content-type": "application/json"},
                                     json.dumps([event]).encode())
    assert status == 200  # dropped for good: redelivering it could never succeed
    assert not app.sim.request_log
    assert not [e for e in app.table_entities() if e["RowKey"].startswith("run|")]


# -------------------------------------------------------------------------- planted secrets


def test_no_token_key_or_secret_value_reaches_logs_tables_answers_errors_events_or_job_specs(
        app, app_eventgrid, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    token = app.sim.rotate_token()  # random, so any trace of it is the app's doing
    write_kubeconfig(app, app.sim.url, token)
    reconfigure(app, monkeypatch)
    app.sim.put("jobs", "default", source_job("report", {"MODE": "full", "DB_PASSWORD": "x"},
                                              scenario="succeed:after=20"))
    app.sim.put("jobs", "default", source_job("forever", {"DB_PASSWORD": "x"}, scenario="run-forever"))
    secret = [{"name": "DB_PASSWORD", "value": PLANTED_SECRET, "dataType": "Secret"}]
    answers = []

    def call(method, path, body=None, **kw):
        answer = app.call(method, path, body, **kw)
        answers.append(answer)
        return answer

    done = call("POST", "/api/jobs/report/runs", {"parameters": [*secret, {"name": "MODE", "value": "delta"}]})
    cancelled = call("POST", "/api/jobs/forever/runs", {"parameters": secret, "idempotencyKey": "sec-1"})
    assert done.status == 202 and cancelled.status == 202, (done.body, cancelled.body)
    call("POST", "/api/jobs/forever/runs", {"parameters": secret, "idempotencyKey": "sec-1"})  # the same again
    bad = call("POST", "/api/jobs/report/runs", {"parameters": [{**secret[0], "value": PLANTED_SECRET + "\x00"}]})
    assert bad.status == 422
    app.sim.inject("POST", r"/secrets$", "status", times=None, status=403)  # RBAC without secrets/create
    broken = call("POST", "/api/jobs/report/runs", {"parameters": secret})
    assert broken.status == 502
    app.sim.clear_faults()
    for run_id in (done.json["runId"], cancelled.json["runId"]):
        call("GET", f"/api/runs/{run_id}")
        call("GET", f"/api/runs/{run_id}/poll")
    call("POST", f"/api/runs/{cancelled.json['runId']}/cancel")
    rerun = call("POST", f"/api/runs/{done.json['runId']}/rerun", {"parameters": {"DB_PASSWORD": PLANTED_SECRET}})
    assert rerun.status == 202, rerun.body
    call("GET", "/api/jobs")
    call("GET", "/api/jobs/report")
    call("GET", "/api/runs")
    call("GET", "/api/health", key=False)
    for _ in range(4):
        app.advance(10)
    call("GET", f"/api/runs/{done.json['runId']}")

    # The planted values were really used, so their absence below means something.
    assert app_eventgrid.events
    secrets = [s for s in app.sim.objects("secrets", "default") if s["metadata"]["name"].startswith("report-")]
    assert any(base64.b64decode(v).decode() == PLANTED_SECRET for s in secrets for v in (s.get("data") or {}).values())
    assert app.run(done.json["runId"])["status"] == "Success"

    planted = {"kubeconfig token": token, "account key": ACCOUNT_KEY,
               "connection string": app.service.settings.runs_table_connection_string,
               "topic key": app_eventgrid.key, "Secret parameter value": PLANTED_SECRET}
    places = {
        "logs": caplog.text + "\n".join(r.getMessage() for r in caplog.records),
        "tables": "\n".join(repr(dict(e)) for e in app.table_entities()),
        "answers": "\n".join(a.body.decode("utf-8", "replace") + repr(a.headers) for a in answers),
        "events": json.dumps(app_eventgrid.events),
        "job specs": json.dumps(app.sim.objects("jobs", "default")),
    }
    leaks = [f"{what} in {where}" for where, text in places.items() for what, value in planted.items()
             if value and value in text]
    assert not leaks, leaks


def test_a_broken_connection_string_is_reported_by_name_without_its_account_key(app, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    planted_key = base64.b64encode(b"planted-account-key-0c9e" * 2).decode()
    monkeypatch.setenv("RUNS_TABLE_CONNECTION_STRING", f"AccountName=x;AccountKey={planted_key};Nonsense")
    composition.reset()

    ready = app.get("/api/ready")
    runs = app.get("/api/runs")

    assert ready.status == 503
    assert runs.status == 500
    assert "RUNS_TABLE_CONNECTION_STRING" in runs.json["error"]["message"]
    for text in (ready.body.decode(), runs.body.decode(), caplog.text):
        assert planted_key not in text
        assert "planted-account-key" not in text


# ------------------------------------------------------------------- trimmed cluster errors


def dumped_job(planted: str) -> dict:
    """A whole Job as a misbehaving proxy or webhook might send back: a planted env value deep in
    it, after the kind of metadata every real object carries."""
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "report", "namespace": "default", "uid": "4c1a7a8e-0000-4000-8000-000000000000",
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{" + "x" * 2000 + "}"}},
        "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "registry.example/report:1.4",
                                                       "env": [{"name": "DB_PASSWORD", "value": planted}]}]}}},
    }


class DumpingCluster:
    """A loopback HTTP server standing in for the API server (or a proxy in front of it) that
    answers chosen requests with a given status and a body that is not a ``Status``."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], tuple[int, bytes]] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                status, body = outer.answers.get((self.command, self.path.split("?")[0]),
                                                 (404, b'{"kind":"Status","code":404,"reason":"NotFound"}'))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = _answer  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def dumping_cluster(app, monkeypatch):
    cluster = DumpingCluster()
    write_kubeconfig(app, cluster.url, app.sim.token)
    reconfigure(app, monkeypatch)
    yield cluster
    cluster.close()


JOB_PATH = "/apis/batch/v1/namespaces/default/jobs"


@pytest.mark.parametrize("status", [400, 403, 409, 422])
def test_a_non_status_error_body_reaches_the_caller_trimmed_without_the_object(app, dumping_cluster, caplog,
                                                                                 status):
    caplog.set_level(logging.DEBUG)
    dump = json.dumps(dumped_job(PLANTED_IN_DUMP)).encode()
    dumping_cluster.answers[("GET", f"{JOB_PATH}/report")] = (status, dump)

    answer = app.get("/api/jobs/report")

    assert 400 <= answer.status < 600
    message = answer.json["error"]["message"]
    assert str(status) in message
    assert len(message) <= 500
    assert PLANTED_IN_DUMP not in answer.body.decode()
    assert '"spec"' not in message and "DB_PASSWORD" not in message
    assert PLANTED_IN_DUMP not in caplog.text


def test_a_create_refused_with_a_dumped_object_fails_the_run_without_storing_the_object(app, dumping_cluster,
                                                                                         caplog):
    caplog.set_level(logging.DEBUG)
    dumping_cluster.answers[("GET", f"{JOB_PATH}/report")] = (200, json.dumps(source_job("report", {"MODE": "full"})).encode())
    dumping_cluster.answers[("POST", JOB_PATH)] = (400, json.dumps(dumped_job(PLANTED_IN_DUMP)).encode())

    answer = app.submit("report", {})

    assert answer.status == 502
    assert len(answer.json["error"]["message"]) <= 500
    run_id = answer.json["error"]["runId"]
    doc = app.run(run_id)
    assert (doc["status"], doc["reason"]) == ("Failed", "CreateFailed")
    for text in (answer.body.decode(), json.dumps(doc), repr(app.table_entities()), caplog.text):
        assert PLANTED_IN_DUMP not in text


def test_a_status_whose_message_quotes_a_whole_object_is_cut_before_it_reaches_the_caller(app, caplog):
    caplog.set_level(logging.DEBUG)
    app.sim.put("jobs", "default", source_job("report", {"MODE": "full"}))
    webhook_message = ('admission webhook "policy.example.com" denied the request: '
                       + json.dumps(dumped_job(PLANTED_IN_DUMP)))
    app.sim.inject("POST", JOB_PATH + "$", "status", times=None, status=400, message=webhook_message)

    answer = app.submit("report", {})

    assert answer.status == 502
    message = answer.json["error"]["message"]
    assert "admission webhook" in message  # the useful start is kept...
    assert len(message) <= 500  # ...and the rest cut
    assert PLANTED_IN_DUMP not in answer.body.decode()
    assert PLANTED_IN_DUMP not in repr(app.table_entities())
    assert PLANTED_IN_DUMP not in caplog.text


def test_a_2xx_page_that_is_not_json_is_a_502_that_does_not_quote_the_page(app, dumping_cluster, caplog):
    caplog.set_level(logging.DEBUG)
    page = f"<html><body>Sign in to the corporate proxy. session={PLANTED_IN_DUMP}</body></html>".encode()
    dumping_cluster.answers[("GET", f"{JOB_PATH}/report")] = (200, page)

    answer = app.get("/api/jobs/report")

    assert answer.status == 502
    assert "not JSON" in answer.json["error"]["message"]
    assert PLANTED_IN_DUMP not in answer.body.decode()
    assert PLANTED_IN_DUMP not in caplog.text
