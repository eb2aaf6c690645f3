"""The sweep's cost, through the timer: O(namespaces) Kubernetes requests, and Table writes only for
runs whose state changed, in transactions of up to 100 operations (three per run: run row, time
row, marker; the app here publishes no events)."""

from __future__ import annotations

import math
from collections import Counter

from shared.kube import jobspec
from shared.runs.model import Phase, Run, Status
from tests.fixtures.app import source_job

JOBS_LIST = ("GET", "/apis/batch/v1/namespaces/{namespace}/jobs")
READS = ("query", "get")
RUNS_PER_TRANSACTION = 100 // 3


def _seed_running_runs(app, count: int) -> list[str]:
    """Runs as a submit leaves them (row + created Job), without paying for `count` submits."""
    store = app.store
    now = app.sim.now()
    template = jobspec.clone_source_job(source_job("bulk", {"N": "0"}, scenario="run-forever"))
    ids = []
    for i in range(count):
        run_id = jobspec.run_job_name("bulk", f"key-{i}")
        rendered = jobspec.render_run_job(template, run_id=run_id, namespace="default", external_id="bulk",
                                          parameters=[], idempotency_key=None,
                                          ttl_seconds_after_finished=None)
        app.sim.put("jobs", "default", rendered.job)
        store.create_run(Run(run_id=run_id, namespace="default", external_id="bulk", status=Status.STARTING,
                             phase=Phase.PENDING, reason="JobCreated", created_at=now, updated_at=now))
        ids.append(run_id)
    return ids


def _timed_sweep(app) -> tuple[Counter, Counter]:
    """Fire the timer once; the Kubernetes requests and Table operations it made, by kind."""
    app.sim.reset_counters()
    table_before = Counter(app.store.requests)
    app.sweep()
    return Counter(app.sim.requests), Counter(app.store.requests) - table_before


def _writes(table_ops: Counter) -> int:
    return sum(n for op, n in table_ops.items() if op not in READS)


def _statuses(app, run_ids) -> Counter:
    return Counter((app.run(r)["status"], app.run(r)["phase"]) for r in run_ids)


def test_a_steady_sweep_of_1000_active_runs_costs_2_job_list_pages_and_no_table_writes(app):
    ids = _seed_running_runs(app, 1000)
    app.sim.advance(5)
    kube, table = _timed_sweep(app)
    # Pending -> Running, in transactions (one whose answer was lost on a busy machine is sent again).
    assert math.ceil(1000 / RUNS_PER_TRANSACTION) <= _writes(table) <= math.ceil(1000 / RUNS_PER_TRANSACTION) + 2
    assert table["get"] == 0  # decided from the markers: no run row read
    assert kube == {JOBS_LIST: 2}

    kube, table = _timed_sweep(app)
    assert kube == {JOBS_LIST: 2}  # 1,000 Jobs in two pages of 500; no pod LIST for running Jobs
    assert _writes(table) == 0, table
    assert set(table) <= {"query"}
    assert _statuses(app, ids[:3] + ids[-3:]) == {("Running", "Running"): 6}


def test_a_sweep_writes_exactly_one_row_per_changed_run_and_none_for_the_others(app):
    finishing = [jobspec.run_job_name("bulk", f"key-{i}") for i in range(2)]
    for run_id in finishing:
        app.sim.set_scenario(run_id, "succeed:after=20")
    ids = _seed_running_runs(app, 20)
    assert ids[:2] == finishing
    app.sim.advance(5)
    _timed_sweep(app)
    assert _statuses(app, ids) == {("Running", "Running"): 20}

    app.sim.advance(60)
    kube, table = _timed_sweep(app)
    assert _writes(table) == 1, table  # the two finished runs, one transaction; the 18 running ones are not written
    assert kube == {JOBS_LIST: 1}
    assert _statuses(app, finishing) == {("Success", "Succeeded"): 2}
    assert _statuses(app, ids[2:]) == {("Running", "Running"): 18}
    for run_id in finishing:
        assert [h["phase"] for h in app.run(run_id)["history"]] == ["Running", "Succeeded"]

    kube, table = _timed_sweep(app)  # terminal runs leave the sweep; nothing else changed
    assert _writes(table) == 0, table


def test_a_vanished_job_is_noted_on_its_row_once_then_its_run_is_lost(app):
    ids = _seed_running_runs(app, 20)
    app.sim.advance(5)
    _timed_sweep(app)
    gone = ids[:2]
    for run_id in gone:
        app.sim.remove("jobs", "default", run_id)

    kube, table = _timed_sweep(app)  # missing once: noted on each row, not yet Lost
    assert _writes(table) == 1, table  # both rows, one transaction
    assert kube == {JOBS_LIST: 1}
    assert _statuses(app, gone) == {("Running", "Running"): 2}

    _timed_sweep(app)  # missing twice: Lost
    assert _statuses(app, gone) == {("Failed", "Lost"): 2}
    assert _statuses(app, ids[2:]) == {("Running", "Running"): 18}
    for run_id in gone:
        assert [h["phase"] for h in app.run(run_id)["history"]] == ["Running", "Lost"]

    kube, table = _timed_sweep(app)
    assert _writes(table) == 0, table


def test_a_cancel_landing_while_the_sweep_decides_is_kept(app, monkeypatch):
    ids = _seed_running_runs(app, 40)
    app.sim.advance(5)
    save_many = app.store.save_many

    def cancel_first(namespace, changes, **kw):
        # A caller cancels one run after the sweep read the markers, before its transactions.
        assert app.post(f"/api/runs/{ids[7]}/cancel").status in (200, 202)
        return save_many(namespace, changes, **kw)

    monkeypatch.setattr(app.store, "save_many", cancel_first)
    _timed_sweep(app)

    cancelled = app.store.get_run("default", ids[7])
    assert (cancelled.status, cancelled.phase) == (Status.RUNNING, Phase.CANCELLING)
    assert {app.store.get_run("default", r).phase for r in ids if r != ids[7]} == {Phase.RUNNING}


def test_transactions_the_table_does_not_answer_are_left_for_the_next_sweep_and_the_rest_recorded(
        app, monkeypatch, caplog):
    from azure.core.exceptions import ServiceResponseError

    from shared.usecases import sweeping

    ids = _seed_running_runs(app, 100)
    app.sim.advance(5)  # every run Pending -> Running: three transactions and a bit
    table = app.store.table
    real_submit = table.submit_transaction
    unanswered: set[str] = set()

    def times_out_for_one_run(operations, **kw):
        in_it = {op[1]["RowKey"].removeprefix("run|") for op in operations if op[1]["RowKey"].startswith("run|")}
        if ids[40] in in_it:  # that run's transaction never gets an answer (sent twice)
            unanswered.update(in_it)
            raise ServiceResponseError("read timeout")
        return real_submit(operations, **kw)

    monkeypatch.setattr(table, "submit_transaction", times_out_for_one_run)
    caplog.set_level("WARNING")

    summary = sweeping.sweep(app.service)

    assert 1 < len(unanswered) < 100
    assert summary.writes_given_up == len(unanswered)
    assert summary.changed == 100 - len(unanswered)
    assert any("not recorded" in r.getMessage() and str(len(unanswered)) in r.getMessage() for r in caplog.records)
    stored = {r: app.store.get_run("default", r) for r in ids}  # as stored (a poll would read through)
    assert Counter((stored[r].status, stored[r].phase) for r in unanswered) == {
        (Status.STARTING, Phase.PENDING): len(unanswered)}
    assert Counter((stored[r].status, stored[r].phase) for r in set(ids) - unanswered) == {
        (Status.RUNNING, Phase.RUNNING): 100 - len(unanswered)}

    monkeypatch.setattr(table, "submit_transaction", real_submit)
    again = sweeping.sweep(app.service)

    assert (again.changed, again.writes_given_up) == (len(unanswered), 0)
    assert _statuses(app, ids) == {("Running", "Running"): 100}
