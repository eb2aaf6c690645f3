"""The app under faults: a throttling, failing, hanging or re-keyed cluster, a run table that goes
away in the middle of a sweep, and callers and timers racing each other.

Every test goes through the app's own entry points (the HTTP functions, the sweep timer, the
service's use cases) against the Kubernetes simulator and Azurite; faults are injected into the
simulator's wire or by stopping a private Azurite, never by mocking the app's code. Where a retry
would make a test sleep, the facade is built as the service builds it but with its waits recorded
instead of slept (``record_retry_waits``): the waits it *asked for* are what the tests check.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest
import urllib3

from shared import composition
from shared.errors import ServiceUnavailable
from shared.kube import jobspec
from shared.kube.client import KubeClient
from shared.kube.credentials import connector_for
from shared.kube.errors import KubeError
from shared.runs.store import RunStore
from shared.usecases import sweeping
from tests.fixtures.app import source_job
from tools.azurite import Azurite, free_port
from tools.devhost import simulator_kubeconfig

JOBS = r"/apis/batch/v1/namespaces/default/jobs$"
SOURCE_JOB = r"/apis/batch/v1/namespaces/default/jobs/etl$"
MAX_RETRIES = 3  # KubeClient's default: one attempt plus three retries


# ----------------------------------------------------------------------------------- helpers


def reconfigure(app, monkeypatch, **env: str) -> None:
    """Change app settings the way an operator does (app settings), then let the app reload."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    composition.reset()
    app.service.clock = app.sim.now


def record_retry_waits(app, **options) -> list[float]:
    """Install the facade exactly as ``shared.composition`` builds it (plus ``options``), except that
    the waits between retries are recorded, not slept. Returns the list the waits are appended to."""
    waits: list[float] = []
    svc = app.service
    svc.__dict__["kube"] = KubeClient(connector_for(svc.settings), timeout=svc.settings.kube_request_timeout_seconds,
                                      sleep=waits.append, **options)
    return waits


def requests_to(sim, method: str, path_suffix: str) -> list[dict]:
    return [e for e in sim.request_log if e["method"] == method and e["path"].endswith(path_suffix)]


def run_jobs(sim) -> list[dict]:
    return [j for j in sim.objects("jobs", "default")
            if (j["metadata"].get("labels") or {}).get("polysync.io/run-id")]


def rows(app, prefix: str) -> list[dict]:
    return [e for e in app.table_entities() if e["RowKey"].startswith(prefix)]


def phases(doc: dict) -> list[tuple[str, str]]:
    return [(h["status"], h["phase"]) for h in doc["history"]]


def seed_source(app, name: str = "etl", scenario: str = "run-forever") -> None:
    app.sim.put("jobs", "default", source_job(name, {"MODE": "full"}, scenario=scenario))


# ----------------------------------------------------------------------- 429 and Retry-After


def test_429_retry_after_is_what_the_facade_waits_before_retrying_the_create(app):
    seed_source(app)
    waits = record_retry_waits(app)
    # The API server sends Retry-After in whole seconds; each answer's own value is honoured.
    app.sim.inject("POST", JOBS, "status", times=1, status=429, retry_after=2)
    app.sim.inject("POST", JOBS, "status", times=1, status=429, retry_after=1)

    answer = app.submit("etl", {"MODE": "delta"})

    assert answer.status == 202, answer.body
    assert waits == [2.0, 1.0]  # the server's word, not the exponential backoff
    assert [e["status"] for e in requests_to(app.sim, "POST", "/jobs")] == [429, 429, 201]
    assert [j["metadata"]["name"] for j in run_jobs(app.sim)] == [answer.json["runId"]]


def test_a_long_retry_after_is_capped_and_retries_are_bounded_then_reported_as_503(app):
    seed_source(app)
    waits = record_retry_waits(app, max_retry_after=0.5)
    app.sim.inject("GET", SOURCE_JOB, "status", times=None, status=429, retry_after=2)

    answer = app.submit("etl", {})

    assert answer.status == 503
    assert answer.json["error"]["code"] == "unavailable"
    assert answer.header("Retry-After")
    assert waits == [0.5] * MAX_RETRIES  # capped: a server's hour never becomes a function's hour
    # Four attempts, no more: the HTTP library under the client must not retry (and sleep the
    # uncapped Retry-After) inside each of them.
    assert len(requests_to(app.sim, "GET", "/jobs/etl")) == MAX_RETRIES + 1
    assert not rows(app, "run|")
    assert not run_jobs(app.sim)


# -------------------------------------------------------------------------- 5xx and backoff


def test_5xx_is_retried_with_growing_backoff_and_the_run_is_created_once(app):
    seed_source(app)
    waits = record_retry_waits(app)
    app.sim.inject("POST", JOBS, "status", times=1, status=500)
    app.sim.inject("POST", JOBS, "status", times=1, status=503)

    answer = app.submit("etl", {})

    assert answer.status == 202, answer.body
    assert (answer.json["status"], answer.json["phase"]) == ("Starting", "Pending")
    assert len(waits) == 2
    assert 0.25 <= waits[0] <= 0.375 and 0.5 <= waits[1] <= 0.75  # 0.25 s doubling, with jitter
    assert len(run_jobs(app.sim)) == 1


def test_persistent_5xx_on_create_is_a_502_naming_the_run_and_a_retried_submit_finishes_it(app):
    seed_source(app)
    waits = record_retry_waits(app)
    app.sim.inject("POST", JOBS, "status", times=None, status=503)
    body = {"parameters": {"MODE": "delta"}, "idempotencyKey": "polysync-run-7"}

    failed = app.submit("etl", body)

    assert failed.status == 502
    error = failed.json["error"]
    assert error["code"] == "upstream_error"
    assert "retry with the same idempotency key" in error["message"]
    run_id = error["runId"]
    assert len(waits) == MAX_RETRIES
    assert len(requests_to(app.sim, "POST", "/jobs")) == MAX_RETRIES + 1
    assert (app.run(run_id)["status"], app.run(run_id)["phase"]) == ("Starting", "Submitting")

    app.sim.clear_faults()  # the cluster recovers
    again = app.submit("etl", body)

    assert again.status == 202, again.body
    assert again.json["runId"] == run_id
    assert again.json["created"] is False
    assert app.run(run_id)["phase"] == "Pending"
    assert [j["metadata"]["name"] for j in run_jobs(app.sim)] == [run_id]
    assert len(rows(app, "run|")) == 1


def test_a_run_whose_create_never_landed_is_left_alone_for_the_create_grace_then_settled(app):
    seed_source(app)
    record_retry_waits(app)
    app.sim.inject("POST", JOBS, "status", times=None, status=500)
    run_id = app.submit("etl", {}).json["error"]["runId"]
    app.sim.clear_faults()

    def missing_sweeps() -> int:
        [row] = [r for r in rows(app, "run|") if run_id in r["RowKey"]]
        return int(row.get("missing_sweeps") or 0)

    def writes() -> int:
        return sum(n for op, n in app.store.requests.items() if op not in ("query", "get"))

    before = writes()
    app.advance(30)  # the create may still be in flight this young: left alone
    app.advance(29)  # 59 s: still inside the 60 s create grace
    assert (missing_sweeps(), writes() - before) == (0, 0)
    assert app.run(run_id)["phase"] == "Submitting"

    app.advance(2)  # 61 s: past the grace, missing once (noted on the row only)
    assert (missing_sweeps(), writes() - before) == (1, 1)
    assert app.run(run_id)["phase"] == "Submitting"
    app.advance(30)  # missing twice: given up

    doc = app.run(run_id)
    assert (doc["status"], doc["phase"], doc["reason"]) == ("Failed", "Lost", "JobNotFound")
    assert doc["terminal"] is True
    assert not rows(app, "active|")
    assert not run_jobs(app.sim)


# ------------------------------------------------------------------ dropped connections


def test_dropped_connections_on_create_are_retried_and_make_exactly_one_job(app):
    seed_source(app)
    waits = record_retry_waits(app)
    app.sim.inject("POST", JOBS, "drop", times=2)

    answer = app.submit("etl", {})

    assert answer.status == 202, answer.body
    assert len(waits) == 2
    assert len(requests_to(app.sim, "POST", "/jobs")) == 3
    assert [j["metadata"]["name"] for j in run_jobs(app.sim)] == [answer.json["runId"]]


def test_a_read_that_keeps_dropping_is_retried_only_by_the_facade_then_reported_as_503(app):
    seed_source(app)
    waits = record_retry_waits(app)
    app.sim.inject("GET", SOURCE_JOB, "drop", times=None)

    answer = app.submit("etl", {})

    assert answer.status == 503
    assert "connection to the cluster failed" in answer.json["error"]["message"]
    assert len(waits) == MAX_RETRIES
    # Not 16: the HTTP library under the client must not retry inside each of our attempts.
    assert len(requests_to(app.sim, "GET", "/jobs/etl")) == MAX_RETRIES + 1
    assert not rows(app, "run|")


def test_an_unreachable_cluster_says_so_rather_than_claiming_a_timeout(app, monkeypatch):
    kubeconfig = simulator_kubeconfig(f"http://127.0.0.1:{free_port()}", app.sim.token)
    with open(app.env["KUBECONFIG"], "w") as fh:
        json.dump(kubeconfig, fh)
    reconfigure(app, monkeypatch)
    record_retry_waits(app)

    answer = app.get("/api/jobs")

    assert answer.status == 503
    message = answer.json["error"]["message"]
    assert "connection refused or unreachable" in message
    assert "did not answer" not in message


# --------------------------------------------------------------------------- hung requests


def test_a_hung_request_times_out_with_a_clear_error_instead_of_hanging_the_function(app, monkeypatch):
    seed_source(app)
    reconfigure(app, monkeypatch, KUBE_REQUEST_TIMEOUT_SECONDS="0.3")
    waits = record_retry_waits(app)
    app.sim.inject("GET", SOURCE_JOB, "hang", times=None, seconds=30)

    started = time.monotonic()
    answer = app.submit("etl", {})
    elapsed = time.monotonic() - started

    assert answer.status == 503
    message = answer.json["error"]["message"]
    assert "did not answer within 0.3 s" in message
    assert "KUBE_REQUEST_TIMEOUT_SECONDS" in message
    assert len(waits) == MAX_RETRIES
    assert len(requests_to(app.sim, "GET", "/jobs/etl")) == MAX_RETRIES + 1
    # Four timeouts of 0.3 s (~1.2 s; waits between retries are recorded, not slept). The bound is
    # 10x that, for a loaded runner, and still fails on the 5 s default (20 s) or the 30 s hang.
    assert elapsed < 12
    assert not rows(app, "run|")


def test_a_sweep_whose_job_list_answer_is_cut_off_marks_no_run_missing_and_the_next_sweep_records_all(app):
    seed_source(app)
    run_ids = [app.submit("etl", {"MODE": str(i)}).json["runId"] for i in range(3)]
    app.sim.advance(5)  # every run's pod is running: the next sweep has three transitions to record
    whole = urllib3.PoolManager(retries=False).request(
        "GET", app.sim.url + "/apis/batch/v1/namespaces/default/jobs",
        fields={"labelSelector": jobspec.run_selector(), "limit": "500"},
        headers={"Authorization": f"Bearer {app.sim.token}"}).data
    items_start = whole.index(b'"items":[') + len(b'"items":[')
    after_first_job = whole.index(b'{"apiVersion"', items_start + 1)
    # A proxy passes on the first Job of the page as if it were the whole answer, every time.
    app.sim.inject("GET", JOBS, "cut", times=None, keep=after_first_job, framed=True)

    with pytest.raises(KubeError, match="ended in the middle of its JSON"):
        app.sweep()

    stored = [app.service.store.get_run("default", run_id) for run_id in run_ids]
    assert [(r.phase, r.missing_sweeps) for r in stored] == [("Pending", 0)] * 3  # none taken for gone
    app.sim.clear_faults()
    app.sweep()
    assert [app.run(r)["phase"] for r in run_ids] == ["Running"] * 3


def test_one_hung_request_costs_one_configured_timeout_and_the_retry_succeeds(app, monkeypatch):
    seed_source(app)
    reconfigure(app, monkeypatch, KUBE_REQUEST_TIMEOUT_SECONDS="0.3")
    waits = record_retry_waits(app)
    app.sim.inject("GET", SOURCE_JOB, "hang", times=1, seconds=30)

    started = time.monotonic()
    answer = app.submit("etl", {})
    elapsed = time.monotonic() - started

    assert answer.status == 202, answer.body
    assert len(waits) == 1
    assert len(requests_to(app.sim, "GET", "/jobs/etl")) == 2
    # One 0.3 s timeout (the wait before the retry is recorded, not slept). The bound is over 10x
    # that, for a loaded runner, and still fails on the 5 s default timeout or the 30 s hang.
    assert elapsed < 4.5


# ---------------------------------------------------------------------------- credentials


def test_a_rotated_token_costs_one_401_and_one_credential_refresh(app):
    seed_source(app)
    assert app.get("/api/jobs").status == 200  # the app now holds a client with the old token
    new_token = app.sim.rotate_token()
    with open(app.env["KUBECONFIG"], "w") as fh:  # the operator rolls the kubeconfig
        json.dump(simulator_kubeconfig(app.sim.url, new_token), fh)
    app.sim.reset_counters()

    answer = app.submit("etl", {})

    assert answer.status == 202, answer.body
    assert [e["status"] for e in app.sim.request_log].count(401) == 1
    assert [e["status"] for e in requests_to(app.sim, "GET", "/jobs/etl")] == [401, 200]
    assert len(run_jobs(app.sim)) == 1


def test_credentials_still_refused_after_one_refresh_are_a_502_that_names_no_token(app):
    seed_source(app)
    old_token = app.sim.token
    assert app.get("/api/jobs").status == 200
    new_token = app.sim.rotate_token()  # the file the app reads still holds the old token
    app.sim.reset_counters()

    answer = app.submit("etl", {})

    assert answer.status == 502
    assert "401" in answer.json["error"]["message"]
    assert [e["status"] for e in app.sim.request_log] == [401, 401]  # one refresh, then give up
    assert old_token not in answer.body.decode() and new_token not in answer.body.decode()
    assert not rows(app, "run|")


# ---------------------------------------------------------------- the run table goes away


@pytest.fixture
def private_azurite(app, monkeypatch, tmp_path):
    """An Azurite of this test's own (the session's is shared and must stay up), the app on it."""
    server = Azurite(location=tmp_path / "azurite")
    server.start()
    reconfigure(app, monkeypatch, RUNS_TABLE_CONNECTION_STRING=server.connection_string)
    try:
        yield server
    finally:
        server.close()


def test_azurite_stopped_mid_sweep_and_started_again_loses_no_transition(app, app_eventgrid, private_azurite,
                                                                          monkeypatch):
    seed_source(app, scenario="succeed:after=20")
    run_ids = [app.submit("etl", {"MODE": str(i)}).json["runId"] for i in range(6)]
    app.sim.advance(5)  # every Job now has a running pod: the next sweep has six writes to make

    store = app.service.store
    real_save_many = store.save_many

    def save_after_the_table_goes(namespace, changes, **kw):
        private_azurite.stop()  # the sweep's transactions meet a dead table
        return real_save_many(namespace, changes, **kw)

    monkeypatch.setattr(store, "save_many", save_after_the_table_goes)
    with pytest.raises(ServiceUnavailable):
        app.sweep()
    monkeypatch.setattr(store, "save_many", real_save_many)
    jobs_before = len(run_jobs(app.sim))
    during = app.submit("etl", {})  # the row comes before the Job: no row, no Job
    assert during.status == 503
    assert "run table unreachable" in during.json["error"]["message"]
    assert len(run_jobs(app.sim)) == jobs_before
    private_azurite.restart()  # same port, same data

    # The sweep writes runs in transactions: whichever landed before the stop survived it whole
    # (Running); the others are untouched (Pending). Nothing is half-written.
    phases_after_restart = [app.service.store.get_run("default", run_id).phase for run_id in run_ids]
    assert set(phases_after_restart) <= {"Running", "Pending"}
    assert "Pending" in phases_after_restart

    app.sweep()
    assert all(app.run(r)["phase"] == "Running" for r in run_ids)
    for _ in range(3):
        app.advance(10)

    runs_by_id = {r["runId"]: r for r in app.get("/api/runs?pageSize=50").json["runs"]}
    assert set(runs_by_id) == set(run_ids)
    assert {j["metadata"]["name"] for j in run_jobs(app.sim)} == set(run_ids)  # no Job the store lacks
    published: dict[str, list[tuple[str, str]]] = {}
    for event in app_eventgrid.events:
        published.setdefault(event["data"]["runId"], []).append((event["data"]["status"], event["data"]["phase"]))
    for run_id in run_ids:
        doc = app.run(run_id)
        assert phases(doc) == [("Starting", "Submitting"), ("Starting", "Pending"), ("Running", "Running"),
                               ("Success", "Succeeded")]
        assert published[run_id] == phases(doc)
    assert not rows(app, "active|")
    assert not rows(app, "outbox|")


# ---------------------------------------------------------------------------------- races


def _all_at_once(count: int, action) -> list:
    """Run ``action(i)`` in ``count`` threads released together; their results (or exceptions)."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = action(i)
        except Exception as exc:  # returned to the test, which asserts on it
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_fifty_concurrent_submits_with_one_idempotency_key_make_one_job_and_one_run(app):
    seed_source(app)
    body = {"parameters": {"MODE": "delta"}, "idempotencyKey": "polysync-retry-storm"}

    answers = _all_at_once(50, lambda _: app.submit("etl", body))

    assert all(not isinstance(a, Exception) for a in answers), answers
    assert {a.status for a in answers} == {202}, [a.body for a in answers if a.status != 202]
    assert len({a.json["runId"] for a in answers}) == 1
    assert [a.json["created"] for a in answers].count(True) == 1
    run_id = answers[0].json["runId"]
    assert [j["metadata"]["name"] for j in run_jobs(app.sim)] == [run_id]
    assert len(rows(app, "run|")) == 1
    assert len(rows(app, "idem|")) == 1
    assert [r["runId"] for r in app.get("/api/runs").json["runs"]] == [run_id]
    assert phases(app.run(run_id)) == [("Starting", "Submitting"), ("Starting", "Pending")]


def test_a_cancel_racing_a_sweep_ends_cancelled_every_time(app):
    seed_source(app)
    run_ids = []
    for _ in range(100):
        run_id = app.submit("etl", {}).json["runId"]
        run_ids.append(run_id)
        app.sim.advance(2)  # its pod runs: the sweep wants to write Pending -> Running right now
        outcomes = _all_at_once(2, lambda i, r=run_id: app.post(f"/api/runs/{r}/cancel") if i == 0 else app.sweep())
        assert not any(isinstance(o, Exception) for o in outcomes), outcomes
        assert outcomes[0].status == 202, outcomes[0].body
    for _ in range(6):
        app.advance(10)

    for run_id in run_ids:
        doc = app.run(run_id)
        assert (doc["status"], doc["phase"]) == ("Cancelled", "Cancelled"), (run_id, phases(doc))
        assert phases(doc).count(("Cancelled", "Cancelled")) == 1
        assert doc["cancelRequestedAt"]
    assert not rows(app, "active|")


def test_two_sweeps_at_once_record_every_transition_exactly_once(app):
    seed_source(app, scenario="succeed:after=25")
    run_ids = [app.submit("etl", {"MODE": str(i)}).json["runId"] for i in range(8)]
    # A second instance of the app (scale-out, or a timer run overlapping the previous one).
    other = composition.build(app.service.settings, RunStore.from_settings(app.service.settings), clock=app.sim.now)
    recorded = Counter()
    for _ in range(5):
        app.sim.advance(7)
        summaries = _all_at_once(2, lambda i: sweeping.sweep(app.service if i == 0 else other))
        assert not any(isinstance(s, Exception) for s in summaries), summaries
        for summary in summaries:
            recorded.update(t["runId"] for t in summary.transitions)

    for run_id in run_ids:
        history = phases(app.run(run_id))
        assert len(history) == len(set(history)), history  # no transition twice
        assert history[0] == ("Starting", "Submitting") and history[-1] == ("Success", "Succeeded")
        # Each transition written by exactly one of the two sweeps (two come from the submit).
        assert recorded[run_id] == len(history) - 2
