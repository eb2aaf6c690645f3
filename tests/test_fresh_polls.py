"""Fresh polls: the poll route and the run document read an unfinished run's Job when its stored
state is older than POLL_READ_THROUGH_SECONDS, without waiting for a sweep; concurrent polls of
one run share one Kubernetes read."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from tests.fixtures.app import source_job

ONE_JOB = r"/apis/batch/v1/namespaces/default/jobs/[^/]+$"


def submitted(app, scenario: str) -> str:
    app.sim.put("jobs", "default", source_job("etl", {"MODE": "full"}, scenario=scenario))
    answer = app.submit("etl", {"MODE": "quick"})
    assert answer.status == 202, answer.body
    return answer.json["runId"]


def job_gets(app) -> int:
    return sum(n for (method, template), n in app.sim.requests.items()
               if method == "GET" and template.endswith("/jobs/{name}"))


def test_a_job_that_completed_is_success_at_the_next_poll_without_a_sweep(app):
    run_id = submitted(app, "succeed:after=20")
    app.sim.advance(30)  # the Job completed in the cluster; no sweep ran
    assert app.service.store.get_run("default", run_id).status == "Starting"

    app.sim.reset_counters()
    answer = app.get(f"/api/runs/{run_id}/poll")

    assert answer.status == 200
    assert (answer.json["status"], answer.json["runtimeStatus"]) == ("Success", "Completed")
    assert job_gets(app) == 1
    stored = app.service.store.get_run("default", run_id)
    assert stored.status == "Success" and app.service.store.list_active("default") == []


def test_fifty_concurrent_polls_of_one_run_cause_at_most_one_kubernetes_read(app):
    run_id = submitted(app, "run-forever")
    app.sim.advance(10)
    app.sim.reset_counters()
    answers: list[int] = []
    start = threading.Barrier(50)

    def poll():
        start.wait()
        answers.append(app.get(f"/api/runs/{run_id}/poll").status)

    pollers = [threading.Thread(target=poll) for _ in range(50)]
    for poller in pollers:
        poller.start()
    for poller in pollers:
        poller.join(60)

    assert answers == [202] * 50
    assert job_gets(app) <= 1
    assert sum(app.sim.requests.values()) <= 2  # the Job GET and, at most, the run's pods


def test_a_run_read_moments_ago_is_answered_from_the_table(app):
    run_id = submitted(app, "run-forever")
    app.sim.advance(10)
    app.get(f"/api/runs/{run_id}")  # reads through (and records Running)
    app.sim.reset_counters()

    for _ in range(5):
        assert app.get(f"/api/runs/{run_id}").json["status"] == "Running"

    assert job_gets(app) == 0


def test_finished_runs_are_never_read_through(app):
    run_id = submitted(app, "succeed:after=5")
    app.advance(10)  # the sweep records Success
    app.sim.advance(60)
    app.sim.reset_counters()

    assert app.get(f"/api/runs/{run_id}/poll").status == 200
    assert app.sim.requests == Counter()


def test_read_through_can_be_turned_off(app, monkeypatch):
    from shared import composition

    monkeypatch.setenv("POLL_READ_THROUGH_SECONDS", "0")
    composition.reset()
    app.service.clock = app.sim.now
    run_id = submitted(app, "succeed:after=5")
    app.sim.advance(30)
    app.sim.reset_counters()

    assert app.get(f"/api/runs/{run_id}/poll").status == 202
    assert app.sim.requests == Counter()


@pytest.mark.parametrize("status", [503, 500])
def test_an_unreachable_cluster_leaves_the_poll_answering_from_the_table(app, status):
    run_id = submitted(app, "succeed:after=5")
    app.sim.advance(30)
    app.sim.inject("GET", ONE_JOB, "status", times=10, status=status)

    answer = app.get(f"/api/runs/{run_id}/poll")

    assert answer.status == 202 and answer.json["status"] == "Starting"
