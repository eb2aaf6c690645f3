"""Reproducible runs: the stored rendered spec, the parameter changes, and ``POST /api/runs/{runId}/rerun``.

Through the app's HTTP functions and timer against Azurite and the Kubernetes simulator, and the
operator CLI over a real socket to the dev host.
"""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import replace

from aksjobs_cli import ExitCode, main
from shared.kube.jobspec import spec_hash
from shared.runs.model import parameter_changes
from shared.usecases import reading
from tests.fixtures.app import cluster_moving, source_job

# Metadata that names one run or one object instance, not what runs: everything else must match.
_INSTANCE_META = ("name", "uid", "resourceVersion", "creationTimestamp", "generation", "managedFields")
_RUN_ANNOTATIONS = ("polysync.io/idempotency-key", "polysync.io/spec-hash", "polysync.io/rerun-of")
_SERVER_TEMPLATE_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid")


def _comparable(job: dict) -> dict:
    """A created Job without its name, run labels, run annotations, uid and server-set fields."""
    job = copy.deepcopy(job)
    run_id = job["metadata"]["name"]
    for key in _INSTANCE_META:
        job["metadata"].pop(key, None)
    job.pop("status", None)
    job["metadata"]["labels"].pop("polysync.io/run-id")
    for key in _RUN_ANNOTATIONS:
        job["metadata"]["annotations"].pop(key, None)
    job["spec"].pop("selector", None)
    template_labels = job["spec"]["template"]["metadata"]["labels"]
    template_labels.pop("polysync.io/run-id")
    for key in _SERVER_TEMPLATE_LABELS:
        template_labels.pop(key, None)
    # job-name labels and a Secret's secretKeyRef carry the run's name: the name is what may differ.
    return json.loads(json.dumps(job).replace(run_id, "<run>"))


def _submit(app, external_id: str, body) -> str:
    answer = app.submit(external_id, body)
    assert answer.status == 202, answer.body
    return answer.json["runId"]


def _run_jobs(app) -> list[dict]:
    return [j for j in app.sim.objects("jobs", "default") if "polysync.io/run-id" in j["metadata"]["labels"]]


def test_a_rerun_after_the_source_job_is_deleted_has_the_same_spec_apart_from_name_and_run_labels(app):
    app.sim.put("jobs", "default", source_job("report", {"REPORT_DATE": "2026-01-01", "LEVEL": "info"},
                                              scenario="succeed:after=5"))
    first = _submit(app, "report", {"parameters": {"REPORT_DATE": "2026-11-26"}, "idempotencyKey": "polysync-7"})
    app.advance(10)
    assert app.run(first)["status"] == "Success"
    app.sim.remove("jobs", "default", "report")

    answer = app.post(f"/api/runs/{first}/rerun")
    assert answer.status == 202, answer.body
    rerun = answer.json
    assert rerun["runId"] != first
    assert (rerun["rerunOf"], rerun["source"], rerun["created"]) == (first, "rerun", True)
    assert f"/api/signed/runs/{rerun['runId']}/poll?" in answer.header("Location")
    assert rerun["parameterChanges"] == [
        {"name": "REPORT_DATE", "change": "overridden", "from": "2026-01-01", "to": "2026-11-26"}]

    original_job = app.sim.get("jobs", "default", first)
    rerun_job = app.sim.get("jobs", "default", rerun["runId"])
    assert rerun_job["metadata"]["annotations"]["polysync.io/rerun-of"] == first
    assert _comparable(rerun_job) == _comparable(original_job)
    env = {e["name"]: e["value"] for e in rerun_job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env == {"REPORT_DATE": "2026-11-26", "LEVEL": "info"}

    app.advance(10)
    assert app.run(rerun["runId"])["status"] == "Success"


def test_a_run_stores_its_spec_hash_rendered_job_and_parameter_changes(app):
    app.sim.put("jobs", "default", source_job("report", {"REPORT_DATE": "2026-01-01", "LEVEL": "info"}))
    run_id = _submit(app, "report", {"REPORT_DATE": "2026-11-26", "LEVEL": "info", "EXTRA": "1"})
    doc = app.run(run_id)
    job = app.sim.get("jobs", "default", run_id)
    assert doc["specHash"] == job["metadata"]["annotations"]["polysync.io/spec-hash"]
    stored = reading.get_run(app.service, run_id)
    assert spec_hash(stored.rendered_job) == doc["specHash"]
    assert stored.rendered_job["spec"]["template"]["spec"] == job["spec"]["template"]["spec"]
    assert parameter_changes(stored) == [
        {"name": "REPORT_DATE", "change": "overridden", "from": "2026-01-01", "to": "2026-11-26"},
        {"name": "EXTRA", "change": "added", "from": None, "to": "1"},
    ]
    # The same record travels with the Job, where kubectl shows it next to the env it explains.
    assert json.loads(job["metadata"]["annotations"]["polysync.io/parameter-changes"]) == [
        {"name": "REPORT_DATE", "change": "overridden", "from": "2026-01-01"},
        {"name": "EXTRA", "change": "added", "from": None},
    ]
    assert [p["name"] for p in doc["parameters"]] == ["REPORT_DATE", "LEVEL", "EXTRA"]


def test_a_rerun_needs_the_secret_values_again_and_names_the_missing_ones(app):
    app.sim.put("jobs", "default", source_job("etl", {"LEVEL": "info"}, scenario="run-forever"))
    first = _submit(app, "etl", {"parameters": [
        {"name": "DB_PASSWORD", "value": "first-value-1234", "dataType": "Secret"},
        {"name": "API_TOKEN", "value": "token-value-5678", "dataType": "Secret"}]})
    assert app.post(f"/api/runs/{first}/cancel").status == 202  # its Job and Secret go
    app.advance(5)
    assert app.sim.get("secrets", "default", first) is None
    jobs_before = len(_run_jobs(app))

    refused = app.post(f"/api/runs/{first}/rerun", {"parameters": {"DB_PASSWORD": "x"}})
    assert refused.status == 422
    assert refused.json["error"]["missingSecretParameters"] == ["API_TOKEN"]
    assert "API_TOKEN" in refused.json["error"]["message"]
    not_a_secret = app.post(f"/api/runs/{first}/rerun", {"parameters": {"DB_PASSWORD": "x", "API_TOKEN": "y",
                                                                        "LEVEL": "debug"}})
    assert not_a_secret.status == 422
    assert not_a_secret.json["error"]["field"] == "parameters.LEVEL"
    assert len(_run_jobs(app)) == jobs_before

    answer = app.post(f"/api/runs/{first}/rerun", {"parameters": {"API_TOKEN": "token-value-2",
                                                                  "DB_PASSWORD": "second-value-9999"}})
    assert answer.status == 202, answer.body
    rerun_id = answer.json["runId"]
    secret = app.sim.get("secrets", "default", rerun_id)
    assert base64.b64decode(secret["data"]["DB_PASSWORD"]).decode() == "second-value-9999"
    env = app.sim.get("jobs", "default", rerun_id)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert [e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e] == [
        {"name": rerun_id, "key": "DB_PASSWORD"}, {"name": rerun_id, "key": "API_TOKEN"}]
    assert "second-value-9999" not in repr(app.table_entities())
    assert {p["name"]: p["value"] for p in answer.json["parameters"]} == {"DB_PASSWORD": "***", "API_TOKEN": "***"}
    assert answer.json["parameterChanges"] == [
        {"name": "DB_PASSWORD", "change": "added", "from": None, "to": "***"},
        {"name": "API_TOKEN", "change": "added", "from": None, "to": "***"}]


def test_the_same_rerun_idempotency_key_returns_the_same_rerun_and_never_the_submit_of_that_key(app):
    app.sim.put("jobs", "default", source_job("report", {"D": "x"}))
    first = _submit(app, "report", {"parameters": {"D": "1"}, "idempotencyKey": "k1"})
    one = app.post(f"/api/runs/{first}/rerun", {"idempotencyKey": "k1"})
    again = app.post(f"/api/runs/{first}/rerun", headers={"Idempotency-Key": "k1"})
    assert (one.status, again.status) == (202, 202)
    assert one.json["runId"] not in (first, None)
    assert again.json["runId"] == one.json["runId"]
    assert (one.json["created"], again.json["created"]) == (True, False)
    assert len(_run_jobs(app)) == 2

    unkeyed = [app.post(f"/api/runs/{first}/rerun").json["runId"] for _ in range(2)]
    assert len(set(unkeyed) | {first, one.json["runId"]}) == 4


def test_a_run_whose_rendered_job_was_not_kept_reruns_from_its_source_with_the_recorded_values(app):
    app.sim.put("jobs", "default", source_job("report", {"D": "x", "LEVEL": "info"}))
    first = _submit(app, "report", {"D": "1"})
    store = app.service.store
    stored = reading.get_run(app.service, first)
    store.save(replace(stored, rendered_job=None))  # as fit_run leaves a run whose spec was too large

    answer = app.post(f"/api/runs/{first}/rerun")
    assert answer.status == 202, answer.body
    job = app.sim.get("jobs", "default", answer.json["runId"])
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env == {"D": "1", "LEVEL": "info"}

    app.sim.remove("jobs", "default", "report")
    gone = app.post(f"/api/runs/{first}/rerun")
    assert gone.status == 404
    assert "report" in gone.json["error"]["message"]


def test_rerun_of_an_unknown_run_is_404_and_a_bad_body_is_422(app):
    assert app.post("/api/runs/no-such-run/rerun").status == 404
    app.sim.put("jobs", "default", source_job("report", {}))
    first = _submit(app, "report", {})
    answer = app.post(f"/api/runs/{first}/rerun", {"attributes": {"containerImage": "x"}})
    assert answer.status == 422
    assert answer.json["error"]["field"] == "attributes"


# --------------------------------------------------------------------------------------- CLI


def test_cli_rerun_watch_exits_with_the_reruns_outcome(served, capsys):
    served.sim.put("jobs", "default", source_job("report", {}, scenario="fail:exit=3:after=2", backoffLimit=0))
    first = _submit(served, "report", {})
    with cluster_moving(served, every=0.1):
        code = main(["--json", "rerun", first, "--watch", "--interval", "0.1", "--timeout", "30"])
    assert code == ExitCode.FAILED
    doc = json.loads(capsys.readouterr().out)
    assert doc["runId"] != first
    assert (doc["status"], doc["source"]) == ("Failed", "rerun")


def test_cli_rerun_takes_secret_values_from_the_environment_and_explains_missing_ones(served, capsys, monkeypatch):
    served.sim.put("jobs", "default", source_job("etl", {}))
    first = _submit(served, "etl", {"parameters": [{"name": "DB_PASSWORD", "value": "v1", "dataType": "Secret"}]})
    assert main(["rerun", first]) == ExitCode.ERROR
    err = capsys.readouterr().err
    assert "HTTP 422" in err and "DB_PASSWORD" in err and "--secret NAME" in err

    monkeypatch.setenv("DB_PASSWORD", "from-the-environment")
    assert main(["rerun", first, "--secret", "DB_PASSWORD", "--idempotency-key", "r1"]) == ExitCode.SUCCESS
    out = capsys.readouterr().out
    assert f"rerun of {first} started run" in out
    assert "from-the-environment" not in out
    assert main(["rerun", first, "--secret", "DB_PASSWORD", "--idempotency-key", "r1"]) == ExitCode.SUCCESS
    assert "already started with this idempotency key" in capsys.readouterr().out
