"""Called the way Polysync calls: a flat typed body, route placeholders filled from parameters,
the status URL polled without headers until an answer that is not 202, any 4xx/5xx = Failed.

Each run goes over real HTTP (``served``: the dev host on a port), against Azurite and the
Kubernetes simulator, with ``tests.polysync_caller.PolysyncCaller``. The cluster moves one step
(10 simulated seconds and a sweep) per poll, so nothing here waits on a clock.
"""

from __future__ import annotations

import base64
import logging

import pytest

from tests.fixtures.app import FUNCTION_KEY, source_job
from tests.polysync_caller import Parameter, PolysyncCaller
from tools.azurite import Azurite

SECRET = "planted-polysync-secret-51c9"
TOKEN_VALUE = "planted-api-token-0d2e"
EXTERNAL_ID = "jobs/{externalId}/runs"


def step(app):
    """One step of the cluster per poll: what the sweep timer does every 30 s in Azure."""
    def on_poll(_):
        app.sim.advance(10)
        app.sweep()
    return on_poll


def caller(app, **auth) -> PolysyncCaller:
    return PolysyncCaller(f"{app.host.url}/api", EXTERNAL_ID, **({"function_key": FUNCTION_KEY} | auth))


def test_a_run_to_success_with_a_function_key(served):
    served.sim.put("jobs", "default", source_job("nightly-etl", {"BATCH_SIZE": "10", "DRY_RUN": "false"},
                                                 scenario="succeed:after=30"))
    outcome = caller(served).run([Parameter("externalId", "nightly-etl"), Parameter("BATCH_SIZE", 500, "Int"),
                                  Parameter("DRY_RUN", True, "Bool")], on_poll=step(served))
    assert outcome.status == "Success", outcome.statuses
    assert outcome.statuses[0] == 202 and set(outcome.statuses[1:-1]) <= {202} and outcome.statuses[-1] == 200
    assert outcome.polls >= 2
    out = outcome.outputs
    assert (out["_response.status"], out["_response.runtimeStatus"]) == ("Success", "Completed")
    assert out["_response.runId"].startswith("nightly-etl-")
    env = served.sim.get("jobs", "default", out["_response.runId"])["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {e["name"]: e.get("value") for e in env} == {"BATCH_SIZE": "500", "DRY_RUN": "true"}


def test_the_submit_answer_drops_the_route_parameter_and_says_so(served):
    served.sim.put("jobs", "default", source_job("nightly-etl", {"MODE": "full"}))
    answer = caller(served).session.post(f"{served.host.url}/api/jobs/nightly-etl/runs",
                                         json={"externalId": "nightly-etl", "MODE": "quick"},
                                         headers={"x-functions-key": FUNCTION_KEY}, timeout=10)
    assert answer.status_code == 202 and answer.json()["ignoredParameters"] == ["externalId"]
    assert [p["name"] for p in answer.json()["parameters"]] == ["MODE"]


def test_a_different_route_value_in_the_body_is_422_and_creates_nothing(served):
    served.sim.put("jobs", "default", source_job("nightly-etl", {"MODE": "full"}))
    answer = caller(served).session.post(f"{served.host.url}/api/jobs/nightly-etl/runs",
                                         json={"externalId": "other-job"},
                                         headers={"x-functions-key": FUNCTION_KEY}, timeout=10)
    assert answer.status_code == 422 and answer.json()["error"]["field"] == "parameters.externalId"
    assert [j["metadata"]["name"] for j in served.sim.objects("jobs", "default")] == ["nightly-etl"]


def test_a_failing_run_is_failed_for_polysync(served):
    served.sim.put("jobs", "default", source_job("report", {}, scenario="fail:exit=3:after=10"))
    outcome = caller(served).run([Parameter("externalId", "report")], on_poll=step(served))
    assert outcome.status == "Failed" and outcome.statuses[-1] == 409
    assert outcome.outputs["_response.status"] == "Failed"


def test_a_cancelled_run_is_failed_for_polysync(served):
    served.sim.put("jobs", "default", source_job("report", {}, scenario="run-forever"))
    cancelled = []

    def cancel_on_second_poll(n):
        if n == 1:
            run_id = served.service.store.list_active("default")[0].run_id
            assert served.post(f"/api/runs/{run_id}/cancel").status == 202
            cancelled.append(run_id)
        step(served)(n)

    outcome = caller(served).run([Parameter("externalId", "report")], on_poll=cancel_on_second_poll)
    assert cancelled and outcome.status == "Failed" and outcome.statuses[-1] == 409
    assert outcome.outputs["_response.runtimeStatus"] == "Terminated"


def test_a_run_across_a_table_outage_keeps_polling_and_ends_in_success(served, tmp_path, monkeypatch):
    from shared import composition

    own = Azurite(location=tmp_path / "azurite")  # the session's Azurite serves other tests: stop our own
    own.start()
    try:
        monkeypatch.setenv("RUNS_TABLE_CONNECTION_STRING", own.connection_string)
        composition.reset()
        served.service.clock = served.sim.now
        served.sim.put("jobs", "default", source_job("nightly-etl", {}, scenario="succeed:after=60"))
        during: list = []

        def outage(n):
            if n == 1:
                own.stop()
            if n == 4:
                own.restart()
            served.sim.advance(10)
            try:
                served.sweep()
            except Exception:  # the sweep fails while the table is down, as the timer would
                assert 1 <= n < 4
        outcome = caller(served).run([Parameter("externalId", "nightly-etl")], on_poll=outage)
        during = [a for a in outcome.answers[2:5]]
        assert outcome.status == "Success", outcome.statuses
        assert [a.status_code for a in during] == [202, 202, 202]
        assert all(a.headers.get("Retry-After") for a in during)
        assert all("note" in a.json() and a.json()["runId"] == outcome.outputs["_response.runId"] for a in during)
        assert during[0].json()["status"] in ("Starting", "Running")
    finally:
        own.close()


@pytest.mark.parametrize("auth", ["key", "entra"])
def test_a_secret_value_reaches_only_the_runs_kubernetes_secret(auth, request, caplog):
    caplog.set_level(logging.DEBUG)
    if auth == "entra":
        app = request.getfixturevalue("entra_app")
        stub = request.getfixturevalue("entrastub")
        app.host.start()
        polysync = PolysyncCaller(f"{app.host.url}/api", EXTERNAL_ID, token=stub.mint)
    else:
        app = request.getfixturevalue("served")
        polysync = caller(app)
    events = request.getfixturevalue("app_eventgrid")
    source = source_job("etl", {"LEVEL": "info"}, scenario="succeed:after=20")
    source["spec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "etl-db", "key": "password"}}})
    app.sim.put("jobs", "default", source)
    outcome = polysync.run([Parameter("externalId", "etl"), Parameter("DB_PASSWORD", SECRET, "Secret"),
                            Parameter("API_TOKEN", TOKEN_VALUE, "Secret"), Parameter("LEVEL", "debug")],
                           on_poll=step(app))
    assert outcome.status == "Success", outcome.statuses
    run_id = outcome.outputs["_response.runId"]
    [secret] = [s for s in app.sim.objects("secrets", "default") if s["metadata"]["name"] == run_id]
    assert secret["data"] == {"DB_PASSWORD": base64.b64encode(SECRET.encode()).decode(),
                              "API_TOKEN": base64.b64encode(TOKEN_VALUE.encode()).decode()}
    doc = app.run(run_id) if auth == "key" else outcome.final.json()
    assert {p["name"]: p["value"] for p in doc["parameters"]} == {"DB_PASSWORD": "***", "API_TOKEN": "***",
                                                                 "LEVEL": "debug"}
    changes = {c["name"]: c["to"] for c in doc["parameterChanges"]}
    assert changes == {"DB_PASSWORD": "***", "API_TOKEN": "***", "LEVEL": "debug"}

    def leaks(text: str) -> bool:
        return any(v in text or base64.b64encode(v.encode()).decode() in text for v in (SECRET, TOKEN_VALUE))

    cluster = [o for kind in ("jobs", "pods", "events") for o in app.sim.objects(kind, "default")]
    assert cluster and not leaks(repr(cluster))
    assert not leaks(repr(app.table_entities()))
    assert not leaks("".join(a.text for a in outcome.answers))
    assert events.events and not leaks(repr(events.events))
    assert caplog.records and not leaks(caplog.text)
    if auth == "entra":
        app.host.stop()


def test_an_instance_that_never_saw_the_run_answers_202_unknown_through_an_outage(served, tmp_path, monkeypatch):
    from shared import composition
    from shared.adapters import http

    own = Azurite(location=tmp_path / "azurite")
    own.start()
    try:
        monkeypatch.setenv("RUNS_TABLE_CONNECTION_STRING", own.connection_string)
        composition.reset()
        served.service.clock = served.sim.now
        served.sim.put("jobs", "default", source_job("nightly-etl", {}, scenario="succeed:after=20"))
        submitted = caller(served).session.post(f"{served.host.url}/api/jobs/nightly-etl/runs", json={},
                                                headers={"x-functions-key": FUNCTION_KEY}, timeout=10).json()
        monkeypatch.setattr(http, "_last_seen", type(http._last_seen)())  # as on another instance
        own.stop()
        blind = caller(served).session.get(submitted["statusQueryUrl"], timeout=10)
        assert blind.status_code == 202 and blind.headers["Retry-After"]
        doc = blind.json()
        assert (doc["runId"], doc["status"], doc["runtimeStatus"]) == (submitted["runId"], "Unknown", "Running")
        assert "note" in doc and doc["statusQueryUrl"] == submitted["statusQueryUrl"]
        own.restart()
        served.sim.advance(30)
        served.sweep()
        assert caller(served).session.get(submitted["statusQueryUrl"], timeout=10).status_code == 200
    finally:
        own.close()
