"""Inferred Secrets through the app's entry points: HTTP flat and list bodies, fallback Jobs,
Event Grid submits, reruns. An untyped value whose source env entry reads a Secret, or whose name
matches SECRET_PARAMETER_PATTERNS, lives only in the run's Kubernetes Secret."""

from __future__ import annotations

import base64
import json

from tests.fixtures.app import FUNCTION_KEY, source_job

VALUE = "inferred-secret-value-7c1d"
B64 = base64.b64encode(VALUE.encode()).decode()


def env_of(app, run_id: str) -> dict:
    job = app.sim.get("jobs", "default", run_id)
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


def secret_data(app, run_id: str) -> dict:
    secret = app.sim.get("secrets", "default", run_id)
    return secret["data"] if secret else {}


def assert_only_in_the_secret(app, run_id: str, name: str, answers=()) -> None:
    assert secret_data(app, run_id)[name] == B64
    assert env_of(app, run_id)[name] == {"secretKeyRef": {"name": run_id, "key": name}}
    assert VALUE not in repr(app.sim.get("jobs", "default", run_id))
    assert VALUE not in repr(app.table_entities()) and B64 not in repr(app.table_entities())
    assert all(VALUE not in a.body.decode() for a in answers)


def test_a_flat_value_named_like_a_token_is_a_secret(app):
    app.sim.put("jobs", "default", source_job("etl", {"LEVEL": "info"}))
    answer = app.submit("etl", {"API_TOKEN": VALUE, "LEVEL": "debug"})
    assert answer.status == 202
    run_id = answer.json["runId"]
    assert_only_in_the_secret(app, run_id, "API_TOKEN", [answer, app.get(f"/api/runs/{run_id}")])
    assert env_of(app, run_id)["LEVEL"] == "debug"
    assert {p["name"]: p["dataType"] for p in answer.json["parameters"]} == {"API_TOKEN": "Secret", "LEVEL": "String"}


def test_a_flat_value_the_source_reads_from_a_secret_stays_a_secret_reference(app):
    source = source_job("etl", {})
    source["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "DSN", "valueFrom": {"secretKeyRef": {"name": "etl-db", "key": "dsn"}}}]
    app.sim.put("jobs", "default", source)
    answer = app.submit("etl", {"DSN": VALUE})
    assert answer.status == 202
    assert_only_in_the_secret(app, answer.json["runId"], "DSN", [answer])
    assert answer.json["parameterChanges"] == [{"name": "DSN", "change": "overridden",
                                                "from": "valueFrom: secretKeyRef", "to": "***"}]


def test_an_explicit_string_type_keeps_the_value_plain(app):
    app.sim.put("jobs", "default", source_job("etl", {}))
    answer = app.submit("etl", {"parameters": [{"name": "TOKEN_URL_TOKEN", "value": "plain", "dataType": "String"}]})
    assert answer.status == 202
    assert env_of(app, answer.json["runId"])["TOKEN_URL_TOKEN"] == "plain"
    assert secret_data(app, answer.json["runId"]) == {}


def test_a_fallback_job_infers_secrets_by_name(app):
    answer = app.submit("gone-job", {"parameters": {"DB_PASSWORD": VALUE},
                                     "attributes": {"containerImage": "busybox:1.36", "containerCommand": "env"}})
    assert answer.status == 202, answer.body
    assert answer.json["source"] == "fallback"
    assert_only_in_the_secret(app, answer.json["runId"], "DB_PASSWORD", [answer])


def test_an_event_grid_submit_infers_secrets(app):
    app.sim.put("jobs", "default", source_job("etl", {"LEVEL": "info"}))
    event = [{"id": "evt-secret-1", "eventType": "SubmitRun", "subject": "s", "dataVersion": "1",
              "eventTime": "2026-11-26T02:00:00Z", "data": {"externalId": "etl", "parameters": {"API_KEY": VALUE}}}]
    status, _, _ = app.host.dispatch("POST", "/runtime/webhooks/eventgrid?functionName=submit_from_event",
                                     {"x-functions-key": FUNCTION_KEY, "content-type": "application/json",
                                      "aeg-event-type": "Notification"}, json.dumps(event).encode())
    assert status == 200
    [run_id] = [j["metadata"]["name"] for j in app.sim.objects("jobs", "default") if j["metadata"]["name"] != "etl"]
    assert_only_in_the_secret(app, run_id, "API_KEY")


def test_a_rerun_asks_for_an_inferred_secret_again(app):
    app.sim.put("jobs", "default", source_job("etl", {"LEVEL": "info"}, scenario="run-forever"))
    first = app.submit("etl", {"API_TOKEN": VALUE, "LEVEL": "debug"}).json["runId"]
    refused = app.post(f"/api/runs/{first}/rerun", {})
    assert refused.status == 422 and refused.json["error"]["missingSecretParameters"] == ["API_TOKEN"]
    again = app.post(f"/api/runs/{first}/rerun", {"parameters": {"API_TOKEN": "second-value-0001"}})
    assert again.status == 202
    assert secret_data(app, again.json["runId"]) == {"API_TOKEN": base64.b64encode(b"second-value-0001").decode()}
    assert env_of(app, again.json["runId"])["LEVEL"] == "debug"
