"""Run events go out through an outbox: never lost while the topic is down, never sent twice."""

from __future__ import annotations

import threading

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
