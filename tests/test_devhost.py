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
