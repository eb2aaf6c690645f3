"""Run events go out through an outbox: never lost while the topic is down, never sent twice."""

from __future__ import annotations

import threading
from datetime import timedelta

from shared.usecases import sweeping
from tests.fixtures.app import source_job


def _events_by_run(eventgrid) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {}
    for event in eventgrid.events:
        runs.setdefault(event["data"]["runId"], []).append(event)
    return runs


def test_every_transition_is_published_once_in_order_after_the_topic_was_down_for_three_sweeps(app, app_eventgrid):
    eventgrid = app_eventgrid
    app.sim.put("jobs", "default", source_job("etl", {"A": "1"}, scenario="succeed:after=20"))
    app.sim.put("jobs", "default", source_job("bad", {}, scenario="fail:exit=2:after=5", backoffLimit=0))
    ok = app.submit("etl", {}).json["runId"]
    bad = app.submit("bad", {}).json["runId"]

    eventgrid.fail(status=500)
    for _ in range(3):
        app.advance(15)
    assert not eventgrid.events
    assert app.run(ok)["status"] == "Success"
    assert app.run(bad)["status"] == "Failed"

    eventgrid.up()
    app.sweep()
    runs = _events_by_run(eventgrid)
    for run_id in (ok, bad):
        doc = app.run(run_id)
        published = [(e["data"]["status"], e["data"]["phase"]) for e in runs[run_id]]
        recorded = [(h["status"], h["phase"]) for h in doc["history"]]
        assert published == recorded
        assert runs[run_id][-1]["data"]["terminal"] is True
    ids = [e["id"] for e in eventgrid.events]
    assert len(ids) == len(set(ids))

    app.sweep()
    assert [e["id"] for e in eventgrid.events] == ids, "an event was published twice"


def test_no_parameter_value_reaches_an_event(app, app_eventgrid):
    app.sim.put("jobs", "default", source_job("etl", {"TOKEN": "x"}, scenario="succeed:after=5"))
    app.submit("etl", {"parameters": [{"name": "TOKEN", "value": "planted-secret-4711", "dataType": "Secret"},
                                      {"name": "PLAIN", "value": "planted-plain-0815"}]})
    for _ in range(3):
        app.advance(10)
    assert app_eventgrid.events
    text = repr(app_eventgrid.events)
    assert "planted-secret-4711" not in text
    assert "planted-plain-0815" not in text


def test_two_sweeps_at_once_publish_each_transition_exactly_once(app, app_eventgrid):
    app.sim.put("jobs", "default", source_job("etl", {}, scenario="succeed:after=5"))
    run_ids = [app.submit("etl", {}).json["runId"] for _ in range(5)]
    for _ in range(3):
        app.sim.advance(10)
        barrier = threading.Barrier(2)
        errors = []

        def sweep(barrier=barrier, errors=errors):
            barrier.wait()
            try:
                sweeping.sweep(app.service)
            except Exception as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=sweep) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
    app.sweep()
    ids = [e["id"] for e in app_eventgrid.events]
    assert len(ids) == len(set(ids))
    runs = _events_by_run(app_eventgrid)
    for run_id in run_ids:
        history = app.run(run_id)["history"]
        assert [(e["data"]["status"], e["data"]["phase"]) for e in runs[run_id]] == \
            [(h["status"], h["phase"]) for h in history]


# ------------------------------------------------------------------------ the publish lease


def _finished_runs(app, count: int) -> list[str]:
    app.sim.put("jobs", "default", source_job("etl", {}, scenario="succeed:after=5"))
    run_ids = [app.submit_run("etl") for _ in range(count)]
    return run_ids


def test_while_another_publisher_holds_the_lease_a_sweep_records_but_leaves_the_outbox_to_it(app, app_eventgrid):
    outbox = app.service.store.outbox
    run_ids = _finished_runs(app, 3)
    now = app.sim.now()
    assert outbox.take_lease("default", now, now + timedelta(seconds=60)) is not None  # another instance

    app.advance(10)
    assert all(app.run(r)["status"] == "Success" for r in run_ids)  # recorded
    assert app_eventgrid.events == []  # not published: the holder will
    assert len(outbox.waiting("default")) == 9  # Submitted, Running, Success for each run

    app.advance(60)  # the holder died: its lease ended
    assert len(app_eventgrid.events) == 9
    assert outbox.waiting("default") == []
    assert outbox.lease_until("default") <= app.sim.now()  # released once published


def test_publishing_costs_a_delete_per_event_and_a_few_lease_writes_not_a_claim_per_event(app, app_eventgrid):
    app.sim.put("jobs", "default", source_job("etl", {}, scenario="run-forever"))
    for _ in range(120):
        app.submit_run("etl")  # each records its events with the run (Submitted, then Pending)
    store = app.service.store
    assert len(store.outbox.waiting("default")) == 240
    before = dict(store.requests)

    published = sweeping.publish_pending(app.service, "default")

    spent = {k: v - before.get(k, 0) for k, v in store.requests.items() if v - before.get(k, 0)}
    assert published == 240 and len(app_eventgrid.events) == 240
    # one query to see there is work, the lease read, one query under the lease; 3 delete
    # transactions (100 per transaction), the lease taken and released
    assert spent == {"query": 2, "get": 1, "batch": 5}
    assert store.outbox.waiting("default") == []


def test_an_empty_outbox_costs_one_query_and_no_write(app, app_eventgrid):
    run_ids = _finished_runs(app, 2)
    app.advance(10)
    app.advance(10)
    assert all(app.run(r)["status"] == "Success" for r in run_ids)
    store = app.service.store
    before = dict(store.requests)
    published = sweeping.publish_pending(app.service, "default")
    spent = {k: v - before.get(k, 0) for k, v in store.requests.items() if v - before.get(k, 0)}
    assert (published, spent) == (0, {"query": 1})


def test_a_publisher_that_loses_its_lease_between_pages_stops_and_nothing_goes_out_twice(app, app_eventgrid,
                                                                                        monkeypatch):
    from shared.usecases import publishing

    monkeypatch.setattr(publishing, "OUTBOX_PAGE", 2)
    outbox = app.service.store.outbox
    real_publish = app.service.publisher.publish
    stolen = []

    def publish_then_lose_the_lease(events):
        real_publish(events)
        if not stolen:  # another instance takes the lease over after the first page
            now = app.sim.now()
            stolen.append(outbox.take_lease("default", now + timedelta(hours=1), now + timedelta(hours=2)))

    monkeypatch.setattr(app.service.publisher, "publish", publish_then_lose_the_lease)
    app.sim.put("jobs", "default", source_job("etl", {}, scenario="run-forever"))
    app.submit_run("etl")
    app.submit_run("etl")
    app.submit_run("etl")
    waiting_before = len(outbox.waiting("default"))  # two events of each of the three runs
    assert waiting_before == 6
    published = sweeping.publish_pending(app.service, "default")

    assert stolen[0] is not None  # the other instance holds the lease now
    assert published == 2  # the first page only
    assert len(outbox.waiting("default")) == waiting_before - 2
    ids = [e["id"] for e in app_eventgrid.events]
    assert len(ids) == len(set(ids)) == 2
    assert outbox.lease_until("default") == stolen[0].until  # the loser did not release the winner's lease


def test_a_lease_release_the_table_does_not_answer_leaves_the_lease_to_end_and_the_publish_stands(app, app_eventgrid,
                                                                                                 monkeypatch, caplog):
    from shared.errors import ServiceUnavailable

    outbox = app.service.store.outbox
    app.sim.put("jobs", "default", source_job("etl", {}, scenario="run-forever"))
    app.submit_run("etl")

    def unanswered(namespace, lease):
        raise ServiceUnavailable("run table unreachable")

    monkeypatch.setattr(outbox, "release_lease", unanswered)
    assert sweeping.publish_pending(app.service, "default") == 2
    assert len(app_eventgrid.events) == 2 and outbox.waiting("default") == []
    assert "releasing the publish lease failed" in caplog.text
    assert outbox.lease_until("default") > app.sim.now()  # still held: it ends on its own
