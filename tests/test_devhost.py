"""The dev host serves function_app over real HTTP, with function keys, and fires the timer."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.fixtures.app import FUNCTION_KEY, source_job


def _http(method, url, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json",
                                                                         **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@pytest.fixture
def served(app):
    url = app.host.start()
    yield app, url
    app.host.stop()


def test_a_run_from_submit_to_success_over_real_http(served):
    app, url = served
    app.sim.put("jobs", "default", source_job("etl", {"DAY": "mon"}, scenario="succeed:after=10"))
    status, headers, body = _http("POST", f"{url}/api/jobs/etl/runs?code={FUNCTION_KEY}", {"DAY": "tue"})
    assert status == 202
    location = headers["Location"]
    # A signed status URL: it works without the key, which never appears in it.
    assert location.startswith(f"{url}/api/signed/runs/") and "code=" not in location
    status, _, _ = _http("GET", location)
    assert status == 202
    app.sim.advance(30)
    app.host.fire_timer("sweep")
    app.sim.advance(30)
    app.host.fire_timer("sweep")
    status, _, body = _http("GET", location)
    assert status == 200
    assert json.loads(body)["status"] == "Success"


def test_function_routes_need_the_key_and_health_does_not(served):
    _, url = served
    status, _, _ = _http("GET", f"{url}/api/runs")
    assert status == 401
    status, _, _ = _http("GET", f"{url}/api/runs", headers={"x-functions-key": "wrong"})
    assert status == 401
    status, _, body = _http("GET", f"{url}/api/health")
    assert status == 200, body
    assert json.loads(body)["ok"] is True


def test_every_answer_carries_a_correlation_id(served):
    _, url = served
    status, headers, _ = _http("GET", f"{url}/api/runs/nope-12345?code={FUNCTION_KEY}")
    assert status == 404
    assert headers.get("x-correlation-id")
    status, headers, _ = _http("GET", f"{url}/api/runs?code={FUNCTION_KEY}", headers={"x-correlation-id": "abc-123"})
    assert headers.get("x-correlation-id") == "abc-123"


def test_embedded_stack_sweeps_through_its_queue_with_no_settings(monkeypatch):
    """`make run` on a fresh machine: no setting at all, so the dev host embeds Azurite (tables and
    the sweep queue) and the simulator; the timer fans out onto the queue and the queue trigger,
    whose queue name is a %SETTING% binding expression, must find its queue and sweep the run."""
    import os
    import time

    import function_app
    from shared import composition
    from shared.settings import SETTINGS
    from tools.devhost import DevHost, LocalStack

    for spec in SETTINGS:
        monkeypatch.delenv(spec.name, raising=False)
    for name in ("SweepQueue", "SweepQueue__queueServiceUri", "KUBECONFIG"):
        monkeypatch.delenv(name, raising=False)
    saved_environ = dict(os.environ)  # LocalStack writes the settings it embeds
    stack = LocalStack()
    function_app.app.functions_bindings = None  # a second get_functions() would raise otherwise
    try:
        stack.start()
        composition.reset()
        host = DevHost(function_app.app, port=0, function_key=FUNCTION_KEY, timers=False)
        url = host.start()
        try:
            stack.sim.put("jobs", "default", source_job("etl", {"DAY": "mon"}, scenario="succeed:after=1"))
            status, _, body = _http("POST", f"{url}/api/jobs/etl/runs?code={FUNCTION_KEY}", {"DAY": "tue"})
            assert status == 202, body
            run_id = json.loads(body)["runId"]
            assert host.drain_queue("sweep_shard") == 0  # no queue before the timer's first message: empty
            deadline = time.monotonic() + 30
            doc = {}
            while time.monotonic() < deadline:
                host.fire_timer("sweep")
                assert host.drain_queue("sweep_shard") == 1  # the queue name resolved; one message per namespace
                status, _, body = _http("GET", f"{url}/api/runs/{run_id}?code={FUNCTION_KEY}")
                doc = json.loads(body)
                if doc["status"] == "Success":
                    break
                time.sleep(0.5)
            assert doc["status"] == "Success", doc
            assert os.environ["SWEEP_QUEUE_NAME"] == next(s.default for s in SETTINGS if s.name == "SWEEP_QUEUE_NAME")
        finally:
            host.stop()
    finally:
        stack.stop()
        os.environ.clear()
        os.environ.update(saved_environ)
        composition.reset()
        function_app.app.functions_bindings = None
