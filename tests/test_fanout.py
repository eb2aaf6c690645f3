"""The sweep fanned out over a Storage Queue (Azurite): the timer enqueues one message per
namespace, the queue trigger sweeps one namespace per message, through function_app's functions."""

from __future__ import annotations

import threading
import uuid
from collections import Counter

import pytest

from shared.kube import jobspec
from shared.runs.model import Phase, Run, Status
from tests.fixtures.app import source_job

NAMESPACES = ("default", "team-a", "team-b", "team-c")


@pytest.fixture
def queued(app, azurite_queue, monkeypatch):
    """The ``app`` harness with a sweep queue (Azurite) and four allowed namespaces."""
    from shared import composition

    monkeypatch.setenv("SweepQueue", azurite_queue.connection_string)
    monkeypatch.setenv("SWEEP_QUEUE_NAME", f"sweep-{uuid.uuid4().hex[:12]}")
    monkeypatch.setenv("ALLOWED_NAMESPACES", ",".join(NAMESPACES))
    composition.reset()
    app.service.clock = app.sim.now
    return app


def seed_runs(app, namespace: str, count: int) -> list[str]:
    """Runs as a submit leaves them (row + created Job, Pending), without paying for submits."""
    store = app.service.store
    now = app.sim.now()
    template = jobspec.clone_source_job(source_job("bulk", {"N": "0"}, scenario="run-forever"))
    ids = []
    for i in range(count):
        run_id = jobspec.run_job_name("bulk", f"{namespace}-{i}")
        rendered = jobspec.render_run_job(template, run_id=run_id, namespace=namespace, external_id="bulk",
                                          parameters=[], idempotency_key=None, ttl_seconds_after_finished=None)
        app.sim.put("jobs", namespace, rendered.job)
        store.create_run(Run(run_id=run_id, namespace=namespace, external_id="bulk", status=Status.STARTING,
                             phase=Phase.PENDING, reason="JobCreated", created_at=now, updated_at=now))
        ids.append(run_id)
    return ids


def job_lists_by_namespace(app) -> Counter:
    return Counter(entry["path"].split("/")[5] for entry in app.sim.request_log
                   if entry["method"] == "GET" and entry["path"].endswith("/jobs")
                   and "labelSelector" in entry["query"])


def test_the_timer_only_enqueues_one_message_per_namespace(queued):
    ids = seed_runs(queued, "team-a", 10)
    queued.sim.advance(5)
    queued.sim.reset_counters()
    table_before = sum(queued.service.store.requests.values())

    queued.sweep()

    assert queued.sim.requests == Counter()  # no Kubernetes request
    assert sum(queued.service.store.requests.values()) == table_before  # no Table request
    assert queued.service.queue.depth() == len(NAMESPACES)
    stored = queued.service.store
    assert {stored.get_run("team-a", i).phase for i in ids} == {"Pending"}  # nothing swept yet

    assert queued.host.drain_queue("sweep_shard") == len(NAMESPACES)
    assert {queued.run(i)["phase"] for i in ids} == {"Running"}
    assert job_lists_by_namespace(queued) == Counter({"team-a": 1})  # empty namespaces list nothing


def test_two_consumers_at_once_decode_every_run_once_and_publish_every_transition_once(queued, app_eventgrid):
    runs = {ns: seed_runs(queued, ns, 15) for ns in NAMESPACES}
    queued.sim.advance(5)
    queued.sim.reset_counters()
    queued.sweep()

    taken: list[int] = []
    consumers = [threading.Thread(target=lambda: taken.append(queued.host.drain_queue("sweep_shard")))
                 for _ in range(2)]
    for consumer in consumers:
        consumer.start()
    for consumer in consumers:
        consumer.join(60)

    assert sum(taken) == len(NAMESPACES)
    # Each namespace was listed (its runs decoded) by exactly one consumer, once.
    assert job_lists_by_namespace(queued) == Counter({ns: 1 for ns in NAMESPACES})
    every_run = [run_id for ids in runs.values() for run_id in ids]
    assert {queued.run(run_id)["phase"] for run_id in every_run} == {"Running"}
    published = Counter(e["subject"] for e in app_eventgrid.received() if e["data"]["status"] == "Running")
    assert published == Counter({f"runs/{run_id}": 1 for run_id in every_run})


def test_duplicate_messages_are_harmless(queued, app_eventgrid):
    ids = seed_runs(queued, "team-b", 12)
    queued.sim.advance(5)
    queued.sweep()
    queued.sweep()  # the timer fired twice before any consumer ran: every namespace twice

    consumers = [threading.Thread(target=queued.host.drain_queue, args=("sweep_shard",)) for _ in range(2)]
    for consumer in consumers:
        consumer.start()
    for consumer in consumers:
        consumer.join(60)

    assert queued.service.queue.depth() == 0
    assert {queued.run(i)["phase"] for i in ids} == {"Running"}
    published = Counter(e["subject"] for e in app_eventgrid.received() if e["data"]["status"] == "Running")
    assert published == Counter({f"runs/{run_id}": 1 for run_id in ids})
    # The second shard of team-b found nothing to write, or lost its race and wrote nothing.
    assert all([h["phase"] for h in queued.run(i)["history"]] == ["Running"] for i in ids)


def test_a_message_that_is_not_a_shard_is_dropped_without_sweeping(queued):
    from shared.adapters.queue import run_sweep_shard

    queued.sim.reset_counters()
    for body in (b"not json", b"[1, 2]", b'{"kind": "sweep"}', b'{"kind": "sweep", "namespace": "kube-system"}'):
        assert run_sweep_shard(body) is None

    assert queued.sim.requests == Counter()
