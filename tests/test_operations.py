"""What an operator relies on, through the entry points: liveness, readiness, and the metrics the
timer sweep and the submits (HTTP and Event Grid) record.

Outbound calls are counted where they would land: the Kubernetes simulator's request log, the run
store's Table request counter, the ARM stub's request count. Metrics are read from OpenTelemetry's
``InMemoryMetricReader``, installed as the app's meter provider for the test.
"""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from shared import composition, telemetry
from shared.adapters import http
from shared.settings import SETTINGS
from tests.fixtures.app import source_job
from tests.fixtures.metrics import points

LIST_JOBS = ("GET", "/apis/batch/v1/namespaces/{namespace}/jobs")


def table_requests(app) -> int:
    return sum(app.service.store.requests.values())


# ------------------------------------------------------------------------------------ liveness


def test_liveness_answers_a_constant_and_calls_nothing_outside_the_process(app):
    app.sim.reset_counters()
    tables_before = table_requests(app)
    answers = [app.get("/api/health", key=False) for _ in range(3)]
    assert [a.status for a in answers] == [200, 200, 200]
    assert {a.body for a in answers} == {json.dumps({"ok": True, "status": "alive"}).encode()}
    assert app.sim.request_log == [] and table_requests(app) == tables_before
    # No setting's name or value: nothing about the deployment.
    text = answers[0].body.decode()
    assert not [s.name for s in SETTINGS if s.name in text]
    assert not [v for v in app.env.values() if v and v in text]


def test_liveness_holds_when_every_dependency_is_down_and_reaches_none(app, armstub, monkeypatch):
    # Admin mode through the ARM stub, an unreachable table and a broken cluster: liveness must not
    # notice, because it asks none of them (not even building the clients).
    monkeypatch.setenv("AKS_CREDENTIAL_MODE", "admin")
    monkeypatch.setenv("AKS_SUBSCRIPTION_ID", armstub.subscription_id)
    monkeypatch.setenv("AKS_RESOURCE_GROUP", armstub.resource_group)
    monkeypatch.setenv("AKS_CLUSTER_NAME", armstub.cluster_name)
    monkeypatch.setenv("ARM_ENDPOINT", armstub.url)
    monkeypatch.setenv("RUNS_TABLE_CONNECTION_STRING",
                       "DefaultEndpointsProtocol=http;AccountName=x;AccountKey=eA==;TableEndpoint=http://127.0.0.1:9/x;")
    composition.reset()
    app.sim.reset_counters()
    answer = app.get("/api/health", key=False)
    assert (answer.status, answer.json) == (200, {"ok": True, "status": "alive"})
    assert armstub.total_requests == 0 and app.sim.request_log == []
    assert composition.collaborators.cache_info().currsize == 0  # no client was even built


# ----------------------------------------------------------------------------------- readiness


@pytest.fixture
def frozen_readiness_clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(http, "_monotonic", lambda: now[0])
    return now


def test_readiness_needs_the_key_and_checks_the_table_and_the_cluster(app, frozen_readiness_clock):
    assert app.get("/api/ready", key=False).status == 401
    answer = app.get("/api/ready")
    assert answer.status == 200, answer.body
    assert {name: check["ok"] for name, check in answer.json["checks"].items()} == {
        "settings": True, "runTable": True, "cluster": True}


def test_readiness_called_in_a_loop_checks_once_per_cache_window(app, frozen_readiness_clock):
    app.sim.reset_counters()
    tables_before = table_requests(app)
    answers = [app.get("/api/ready") for _ in range(20)]
    assert {a.status for a in answers} == {200}
    assert app.sim.requests[LIST_JOBS] == 1
    assert table_requests(app) - tables_before == 1
    frozen_readiness_clock[0] += http.READINESS_CACHE_SECONDS  # the window is over: one more real check
    assert app.get("/api/ready").status == 200
    assert app.sim.requests[LIST_JOBS] == 2
    assert table_requests(app) - tables_before == 2


def test_readiness_reports_a_broken_cluster_with_503_and_then_a_recovery(app, frozen_readiness_clock):
    app.sim.inject("GET", r"/namespaces/default/jobs$", "status", times=None, status=403)
    broken = app.get("/api/ready")
    assert broken.status == 503 and broken.json["checks"]["cluster"]["ok"] is False
    app.sim.clear_faults()
    assert app.get("/api/ready").status == 503  # cached: the cluster is not asked again yet
    frozen_readiness_clock[0] += http.READINESS_CACHE_SECONDS
    assert app.get("/api/ready").status == 200


# ---------------------------------------------------------------------------------- telemetry


@pytest.fixture
def metrics():
    reader = InMemoryMetricReader()
    telemetry.use_providers(MeterProvider(metric_readers=[reader]))
    try:
        yield reader
    finally:
        telemetry.reset()


def by_attributes(got: dict, name: str, **attributes) -> list:
    return [value for attrs, value in got.get(name, []) if all(attrs.get(k) == v for k, v in attributes.items())]


def test_the_sweep_records_its_duration_requests_and_active_runs_by_phase(app, metrics):
    app.sim.put("jobs", "default", source_job("report", scenario="run-forever"))
    assert app.submit("report").status == 202
    app.sim.reset_counters()
    app.sweep()
    got = points(metrics)
    ((_, (sweeps, seconds)),) = got["aksjobs.sweep.duration"]
    assert sweeps == 1 and seconds > 0
    # The Kubernetes requests of that sweep, as the simulator counted them.
    assert got["aksjobs.sweep.kube_requests"] == [({}, (1, len(app.sim.request_log)))]
    ((_, (_, tables)),) = got["aksjobs.sweep.table_requests"]
    assert tables >= 1
    phases = {attrs["phase"]: value for attrs, value in got["aksjobs.runs.active"] if attrs["namespace"] == "default"}
    assert sum(phases.values()) == 1 and phases["Stalled"] == 0


def test_runs_finished_are_counted_once_by_status(app, metrics):
    app.sim.put("jobs", "default", source_job("report"))
    run_id = app.submit("report").json["runId"]
    for _ in range(6):
        app.advance(10)
    assert app.run(run_id)["status"] == "Success"
    app.sweep()
    got = points(metrics)
    assert got["aksjobs.runs.started"] == [({"namespace": "default", "source": "job"}, 1)]
    assert got["aksjobs.runs.finished"] == [({"namespace": "default", "status": "Success"}, 1)]


def test_a_stalled_run_shows_in_the_active_runs_gauge(app, metrics):
    app.sim.put("jobs", "default", source_job("report", scenario="pull-backoff"))
    run_id = app.submit("report").json["runId"]
    for _ in range(15):
        app.advance(10)
    assert app.run(run_id)["phase"] == "Stalled"
    got = points(metrics)
    assert by_attributes(got, "aksjobs.runs.active", namespace="default", phase="Stalled") == [1]


def test_the_outbox_backlog_grows_while_the_topic_is_down_and_drains_after(app, app_eventgrid, metrics):
    app.sim.put("jobs", "default", source_job("report", scenario="run-forever"))
    app_eventgrid.fail(500)
    app.submit("report")
    app.sweep()
    waiting = by_attributes(points(metrics), "aksjobs.outbox.backlog", namespace="default")
    assert waiting and waiting[-1] >= 1
    app_eventgrid.up()
    app.sweep()
    assert by_attributes(points(metrics), "aksjobs.outbox.backlog", namespace="default")[-1] == 0


def test_each_submit_records_its_latency_by_outcome_through_http_and_event_grid(app, metrics):
    app.sim.put("jobs", "default", source_job("report"))
    assert app.submit("report", {"idempotencyKey": "k-1"}).status == 202
    assert app.submit("report", {"idempotencyKey": "k-1"}).status in (200, 202)  # the same run again
    assert app.submit("no-such-job").status == 404
    event = [{"id": "evt-1", "eventType": "SubmitRun", "subject": "s", "dataVersion": "1",
              "eventTime": "2026-11-26T02:00:00Z", "data": {"externalId": "report"}}]
    status, _, _ = app.host.dispatch("POST", "/runtime/webhooks/eventgrid?functionName=submit_from_event",
                                     {"x-functions-key": "test-function-key", "content-type": "application/json",
                                      "aeg-event-type": "Notification"}, json.dumps(event).encode())
    assert status == 200
    got = points(metrics)
    counts = {attrs["outcome"]: count for attrs, (count, _) in got["aksjobs.submit.duration"]}
    assert counts == {"created": 2, "existing": 1, "rejected": 1}
    assert got["aksjobs.runs.started"] == [({"namespace": "default", "source": "job"}, 2)]


def test_log_lines_of_the_sweeps_parallel_writes_keep_the_sweeps_correlation_id(app, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    for name in ("first", "second", "third"):
        app.sim.put("jobs", "default", source_job(name, scenario="succeed:after=5"))
        assert app.submit(name).status == 202
    app.sim.advance(30)
    # The transaction of the three changes loses its race: the runs are written one by one.
    monkeypatch.setattr(app.service.store, "save_many", lambda namespace, changes, **kw: [
        change.run.run_id for change in changes])
    caplog.clear()
    app.sweep()  # three runs change at once: their writes run on the sweep's worker threads
    sweep_ids = {r.correlation_id for r in caplog.records if r.getMessage().startswith("[cid=") and "sweep:" in r.getMessage()}
    from_workers = [r for r in caplog.records if r.threadName.startswith("sweep-write")]
    assert len(sweep_ids) == 1 and None not in sweep_ids
    assert from_workers, "no line was logged on a worker thread: the check would prove nothing"
    assert {r.correlation_id for r in from_workers} == sweep_ids
