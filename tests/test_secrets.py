"""Secret parameters: the value lives in a Kubernetes Secret owned by the run's Job, and nowhere else.

Everything goes through the app's HTTP functions and timer, against Azurite, the Kubernetes
simulator and (where events are checked) the Event Grid stub. A scan looks for the value both as
text and base64-encoded (how a Secret's ``data`` holds it), so an accidental copy of the Secret
object is caught too.
"""

from __future__ import annotations

import base64
import json
import logging

from shared import composition
from shared.runs.model import parameter_changes
from shared.usecases import reading
from tests.fixtures.app import source_job

SECRET = "planted-secret-9f3a71c2"
SECRET_B64 = base64.b64encode(SECRET.encode()).decode()


def _leaks(text: str) -> bool:
    return SECRET in text or SECRET_B64 in text


def _secret_submit(app, external_id: str, **extra) -> tuple[str, list]:
    body = {"parameters": [{"name": "DB_PASSWORD", "value": SECRET, "dataType": "Secret"},
                           {"name": "LEVEL", "value": "debug"}], **extra}
    answer = app.submit(external_id, body)
    assert answer.status == 202, answer.body
    return answer.json["runId"], [answer]


def _env(job: dict) -> list[dict]:
    return job["spec"]["template"]["spec"]["containers"][0]["env"]


def test_a_secret_value_is_in_the_kubernetes_secret_and_nowhere_else(app, app_eventgrid, caplog):
    caplog.set_level(logging.DEBUG)
    app.sim.put("jobs", "default", source_job("etl", {"DB_PASSWORD": "dev-default", "LEVEL": "info"},
                                              scenario="succeed:after=15"))
    run_id, answers = _secret_submit(app, "etl")
    for _ in range(4):
        app.advance(10)
    answers += [app.get(f"/api/runs/{run_id}"), app.get(f"/api/runs/{run_id}/poll"), app.get("/api/runs"),
                app.post(f"/api/runs/{run_id}/cancel")]
    assert app.run(run_id)["status"] == "Success"

    [secret] = app.sim.objects("secrets", "default")
    assert secret["metadata"]["name"] == run_id
    assert secret["data"] == {"DB_PASSWORD": SECRET_B64}
    job = app.sim.get("jobs", "default", run_id)
    env = _env(job)
    assert env[0] == {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": run_id, "key": "DB_PASSWORD"}}}
    assert env[1] == {"name": "LEVEL", "value": "debug"}

    cluster = [o for kind in ("jobs", "pods", "events") for o in app.sim.objects(kind, "default")]
    assert cluster and not _leaks(repr(cluster))
    entities = app.table_entities()
    assert any(e["RowKey"] == f"run|{run_id}" for e in entities)
    assert not _leaks(repr(entities))
    assert all(not _leaks(a.body.decode()) for a in answers)
    assert app_eventgrid.events and not _leaks(repr(app_eventgrid.events))
    assert caplog.records and not _leaks(caplog.text)
    assert not _leaks(repr([(r.msg, r.args) for r in caplog.records]))


def test_a_secret_overriding_a_plain_source_default_is_redacted_and_its_default_is_not_echoed(app):
    app.sim.put("jobs", "default", source_job("etl", {"DB_PASSWORD": "dev-default", "LEVEL": "info"}))
    run_id, _ = _secret_submit(app, "etl")
    params = {p["name"]: p for p in app.run(run_id)["parameters"]}
    assert params["DB_PASSWORD"] == {"name": "DB_PASSWORD", "value": "***", "dataType": "Secret",
                                     "direction": "Input"}
    assert parameter_changes(reading.get_run(app.service, run_id)) == [
        {"name": "DB_PASSWORD", "change": "overridden", "from": "***", "to": "***"},
        {"name": "LEVEL", "change": "overridden", "from": "info", "to": "debug"}]
    annotations = app.sim.get("jobs", "default", run_id)["metadata"]["annotations"]
    assert "dev-default" not in json.dumps(annotations)


def test_the_secret_is_owned_by_the_job_and_goes_when_a_cancel_deletes_it(app):
    app.sim.put("jobs", "default", source_job("etl", {}, scenario="run-forever"))
    run_id, _ = _secret_submit(app, "etl")
    job = app.sim.get("jobs", "default", run_id)
    secret = app.sim.get("secrets", "default", run_id)
    assert secret["metadata"]["ownerReferences"] == [{
        "apiVersion": "batch/v1", "kind": "Job", "name": run_id, "uid": job["metadata"]["uid"],
        "controller": False, "blockOwnerDeletion": False}]
    assert secret["metadata"]["labels"]["polysync.io/run-id"] == run_id
    app.advance(5)

    assert app.post(f"/api/runs/{run_id}/cancel").status == 202
    app.advance(5)
    app.advance(5)
    assert app.sim.get("jobs", "default", run_id) is None
    assert app.sim.get("secrets", "default", run_id) is None
    # Cancelled once the pod is gone: run-forever ignores SIGTERM, so that takes its 30 s grace period.
    for _ in range(5):
        app.advance(5)
    assert app.run(run_id)["status"] == "Cancelled"


def test_the_secret_goes_when_the_ttl_deletes_the_finished_job(app, monkeypatch):
    monkeypatch.setenv("JOB_TTL_SECONDS_AFTER_FINISHED", "20")
    monkeypatch.setenv("JOB_TTL_FLOOR_SECONDS", "0")
    composition.reset()
    app.service.clock = app.sim.now
    app.sim.put("jobs", "default", source_job("etl", {}, scenario="succeed:after=5"))
    run_id, _ = _secret_submit(app, "etl")
    app.advance(10)
    assert app.run(run_id)["status"] == "Success"
    assert app.sim.get("secrets", "default", run_id) is not None
    for _ in range(3):
        app.advance(10)
    assert app.sim.get("jobs", "default", run_id) is None
    assert app.sim.get("secrets", "default", run_id) is None
    assert app.run(run_id)["status"] == "Success"


def test_a_secret_printed_by_the_failing_container_is_masked_in_the_stored_diagnostics(app):
    # The container prints NAME=value in its termination message and last log line (a rule, not an
    # annotation, so the value is in no object the app clones).
    app.sim.set_scenario("leaky", f"fail:exit=2:after=2:message=DB_PASSWORD={SECRET}")
    app.sim.put("jobs", "default", source_job("leaky", {}, backoffLimit=0))
    run_id, _ = _secret_submit(app, "leaky")
    for _ in range(2):
        app.advance(10)
    doc = app.run(run_id)
    assert doc["status"] == "Failed"
    [container] = doc["diagnostics"]["pods"][0]["containers"]
    assert container["terminationMessage"] == "DB_PASSWORD=***"
    assert container["log"][-1].endswith("error: DB_PASSWORD=***")
    assert not _leaks(repr(app.table_entities()))
    assert not _leaks(app.get(f"/api/runs/{run_id}").body.decode())


def test_a_run_without_secret_parameters_creates_no_secret(app):
    app.sim.put("jobs", "default", source_job("etl", {"LEVEL": "info"}))
    answer = app.submit("etl", {"LEVEL": "debug"})
    assert answer.status == 202
    assert app.sim.objects("secrets", "default") == []
    env = _env(app.sim.get("jobs", "default", answer.json["runId"]))
    assert env == [{"name": "LEVEL", "value": "debug"}]
