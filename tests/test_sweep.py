"""The sweep's cost: O(namespaces) Kubernetes requests and no Table writes when nothing changed."""

from __future__ import annotations

from shared.kube import jobspec
from shared.runs.model import Phase, Run, Status
from shared.usecases import sweeping
from tests.fixtures.app import source_job


def _seed_running_runs(app, count: int) -> list[str]:
    """Runs as a submit leaves them (row + created Job), without paying for `count` submits."""
    store = app.service.store
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


def test_sweep_of_1000_active_runs_costs_at_most_3_kube_requests_and_no_writes_when_unchanged(app):
    _seed_running_runs(app, 1000)
    app.sim.advance(5)
    first = sweeping.sweep(app.service)
    assert first.runs_seen == 1000
    assert first.changed == 1000  # Pending -> Running, once each

    app.sim.reset_counters()
    second = sweeping.sweep(app.service)
    assert second.runs_seen == 1000
    assert second.changed == 0
    assert second.kube_requests <= 3
    assert sum(app.sim.requests.values()) == second.kube_requests
    writes = {op: n for op, n in app.service.store.requests.items() if op not in ("query", "get", "list")}
    before = dict(writes)
    sweeping.sweep(app.service)
    after = {op: n for op, n in app.service.store.requests.items() if op not in ("query", "get", "list")}
    assert after == before, "an unchanged sweep wrote to the table"


def test_sweep_writes_exactly_one_transition_per_changed_run(app):
    ids = _seed_running_runs(app, 20)
    app.sim.advance(5)
    sweeping.sweep(app.service)
    # Two runs finish; the rest keep running.
    for run_id in ids[:2]:
        app.sim.remove("jobs", "default", run_id)
        job = app.sim.get("jobs", "default", run_id)
        assert job is None
    summary = sweeping.sweep(app.service)
    assert summary.changed == 0  # missing once: noted on the row, not yet Lost
    summary = sweeping.sweep(app.service)
    assert summary.changed == 2
    for run_id in ids[:2]:
        assert app.run(run_id)["phase"] == "Lost"
    assert all(app.run(r)["status"] == "Running" for r in ids[2:5])
