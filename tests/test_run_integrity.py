"""A run's record stays true under conflicts and surprises: lost write races, a Job that comes back,
an API that refuses the Job, a name already taken, an Event Grid key reused, a finished run.

Through the entry points (HTTP, the sweep, the Event Grid submit) against Azurite and the
simulator. Where a test needs writes to lose their race again and again, the run store handed to
the use cases is wrapped so that its ``save`` answers ``StaleRun`` first - what Table Storage
answers when another writer's ETag won.
"""

from __future__ import annotations

import itertools
import logging
from datetime import UTC, datetime

import azure.functions as func
import pytest

from shared.adapters.eventgrid import handle_submit_event
from shared.kube import jobspec
from shared.runs.errors import StaleRun
from shared.runs.model import TERMINAL_PHASES, Phase, Run, RunState, Status, apply_state
from shared.usecases import sweeping
from tests.fixtures.app import source_job

T0 = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)


class LosingStore:
    """The app's run store, except that its next ``conflicts`` saves lose their race (StaleRun).
    ``before_conflict(n)`` runs before the n-th lost save (1-based): another writer's turn."""

    def __init__(self, store, conflicts: int, before_conflict=None):
        self._store = store
        self.conflicts = conflicts
        self.lost = 0
        self._before_conflict = before_conflict

    def __getattr__(self, name):
        return getattr(self._store, name)

    def save(self, run, **kwargs):
        if self.lost < self.conflicts:
            self.lost += 1
            if self._before_conflict is not None:
                self._before_conflict(self.lost)
            raise StaleRun(run.run_id)
        return self._store.save(run, **kwargs)

    def save_many(self, namespace, changes, **kwargs):
        """A transaction loses like a save: its runs come back unsaved, for the per-run saves."""
        if changes and self.lost < self.conflicts:
            self.lost += 1
            if self._before_conflict is not None:
                self._before_conflict(self.lost)
            return [change.run.run_id for change in changes]
        return self._store.save_many(namespace, changes, **kwargs)


def _running_run(app, name: str = "etl") -> str:
    app.sim.put("jobs", "default", source_job(name, {"MODE": "full"}, scenario="run-forever"))
    answer = app.submit(name, {"MODE": "delta"})
    assert answer.status == 202, answer.body
    run_id = answer.json["runId"]
    app.advance(5)
    assert app.run(run_id)["status"] == "Running"
    return run_id


def _deletes(app, run_id: str) -> list[dict]:
    return [e for e in app.sim.request_log if e["method"] == "DELETE" and e["path"].endswith(f"/jobs/{run_id}")]


# ------------------------------------------------------------------------------------ cancel


def test_a_cancel_whose_intent_cannot_be_recorded_deletes_nothing_and_says_so(app):
    run_id = _running_run(app)
    real = app.service.store
    app.service.store = LosingStore(real, conflicts=100)

    answer = app.post(f"/api/runs/{run_id}/cancel")

    assert answer.status == 409, answer.body
    assert answer.json["error"]["code"] == "conflict"
    assert "retry" in answer.json["error"]["message"]
    assert _deletes(app, run_id) == []
    assert app.sim.get("jobs", "default", run_id) is not None
    app.service.store = real
    doc = app.run(run_id)
    assert (doc["status"], doc["cancelRequestedAt"]) == ("Running", None)


def test_a_cancel_racing_the_run_to_its_end_leaves_it_finished_and_deletes_nothing(app):
    run_id = _running_run(app)
    real = app.service.store

    def sweep_finishes_it(lost: int) -> None:
        if lost == 5:  # the last conflicting write was the sweep recording the run's success
            run = real.get_run("default", run_id)
            real.save(apply_state(run, RunState(Status.SUCCESS, Phase.SUCCEEDED, "Completed"), app.sim.now()))

    app.service.store = LosingStore(real, conflicts=5, before_conflict=sweep_finishes_it)
    answer = app.post(f"/api/runs/{run_id}/cancel")

    assert answer.status == 200, answer.body
    assert answer.json["cancelled"] is False
    assert (answer.json["status"], answer.json["phase"]) == ("Success", "Succeeded")
    assert _deletes(app, run_id) == []


# --------------------------------------------------------------------- writes that give up


def test_a_sweep_write_that_keeps_losing_is_logged_and_counted(app, caplog):
    run_id = _running_run(app)
    app.sim.remove("jobs", "default", run_id)  # the sweep must note the missing Job
    real = app.service.store
    app.service.store = LosingStore(real, conflicts=100)
    caplog.set_level(logging.WARNING)

    summary = sweeping.sweep(app.service)

    assert summary.as_dict()["writesGivenUp"] == 1
    assert summary.changed == 0
    assert any(run_id in r.getMessage() and "gave up" in r.getMessage() for r in caplog.records)
    app.service.store = real
    assert sweeping.sweep(app.service).as_dict()["writesGivenUp"] == 0  # and the next sweep records it


def test_a_failure_that_cannot_be_recorded_is_logged_with_its_reason_never_dropped(app, caplog):
    # Kubernetes refuses the Job (a Job's pods may not restart Always); the row's Failed write loses.
    template = source_job("bad-policy", {"MODE": "full"})
    template["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    app.sim.put("jobs", "default", template)
    real = app.service.store
    app.service.store = LosingStore(real, conflicts=100)
    caplog.set_level(logging.WARNING)

    answer = app.submit("bad-policy", {})

    assert answer.status == 422, answer.body
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "JobRejected" in r.getMessage()]
    assert errors, caplog.text
    assert answer.json["error"]["runId"] in errors[0].getMessage()


# --------------------------------------------------------------------- the sweep's memory


def test_a_job_that_comes_back_resets_the_missing_count(app):
    run_id = _running_run(app)
    job = app.sim.get("jobs", "default", run_id)

    app.sim.remove("jobs", "default", run_id)
    app.sweep()  # missing once: not Lost yet
    app.sim.put("jobs", "default", job)
    app.sweep()  # back: the count starts again
    app.sim.remove("jobs", "default", run_id)
    app.sweep()  # missing once again
    assert app.run(run_id)["phase"] != "Lost"

    app.sweep()  # missing twice in a row
    assert (app.run(run_id)["status"], app.run(run_id)["phase"]) == ("Failed", "Lost")


# -------------------------------------------------------------------------- the create


def test_a_job_the_api_refuses_ends_the_run_failed_job_rejected_with_the_field_message(app):
    template = source_job("bad-policy", {"MODE": "full"})
    template["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    app.sim.put("jobs", "default", template)

    answer = app.submit("bad-policy", {})

    assert answer.status == 422, answer.body
    error = answer.json["error"]
    assert error["field"] == "spec.template.spec.restartPolicy"
    doc = app.run(error["runId"])
    assert (doc["status"], doc["phase"], doc["reason"]) == ("Failed", "Failed", "JobRejected")
    assert doc["message"].startswith("spec.template.spec.restartPolicy: ")  # the API's field message
    assert error["message"] == f"Kubernetes rejected the Job: {doc['message']}"
    assert app.sim.get("jobs", "default", error["runId"]) is None


def test_a_409_for_a_job_carrying_this_runs_label_adopts_it(app):
    app.sim.put("jobs", "default", source_job("etl", {"MODE": "full"}, scenario="run-forever"))
    name = jobspec.run_job_name("etl", "key-1")
    # An earlier attempt of this very submit created the Job; its answer never arrived.
    earlier = source_job(name, {"MODE": "delta"}, scenario="run-forever", suspend=False)
    earlier["metadata"]["labels"] = {jobspec.RUN_ID_LABEL: name}
    uid = app.sim.put("jobs", "default", earlier)["metadata"]["uid"]

    answer = app.submit("etl", {"parameters": {"MODE": "delta"}, "idempotencyKey": "key-1"})

    assert answer.status == 202, answer.body
    assert answer.json["runId"] == name
    assert (answer.json["status"], answer.json["phase"], answer.json["reason"]) == ("Starting", "Pending",
                                                                                     "JobCreated")
    assert app.sim.get("jobs", "default", name)["metadata"]["uid"] == uid


def test_a_409_for_a_strangers_job_of_that_name_is_a_clear_error_and_leaves_it_alone(app):
    app.sim.put("jobs", "default", source_job("etl", {"MODE": "full"}, scenario="run-forever"))
    name = jobspec.run_job_name("etl", "key-1")
    stranger = app.sim.put("jobs", "default", source_job(name, {"OTHER": "1"}, scenario="run-forever"))

    answer = app.submit("etl", {"parameters": {"MODE": "delta"}, "idempotencyKey": "key-1"})

    assert answer.status == 409, answer.body
    error = answer.json["error"]
    assert name in error["message"] and "not this run's" in error["message"]
    assert error["runId"] == name
    assert app.sim.get("jobs", "default", name)["metadata"]["uid"] == stranger["metadata"]["uid"]
    assert _deletes(app, name) == []
    doc = app.run(name)
    assert (doc["status"], doc["reason"]) == ("Failed", "NameConflict")


# --------------------------------------------------------------------------- Event Grid


def test_an_event_whose_id_belongs_to_another_jobs_run_is_dropped_not_retried(app, caplog):
    for name in ("first-job", "second-job"):
        app.sim.put("jobs", "default", source_job(name, {"MODE": "full"}))

    def event(external_id: str) -> func.EventGridEvent:
        return func.EventGridEvent(id="evt-reused-1", data={"externalId": external_id}, topic="/chain",
                                   subject="chain/next", event_type="Polysync.AksJob.SubmitRun", event_time=None,
                                   data_version="1")

    handle_submit_event(event("first-job"))
    caplog.set_level(logging.WARNING, logger="shared.adapters.eventgrid")
    handle_submit_event(event("second-job"))  # returns: Event Grid must not redeliver it for a day

    assert "evt-reused-1" in caplog.text and "dropped" in caplog.text
    runs = app.get("/api/runs").json["runs"]
    assert [r["externalId"] for r in runs] == ["first-job"]


# -------------------------------------------------------------------------- the model


@pytest.mark.parametrize("final", sorted(TERMINAL_PHASES))
def test_a_terminal_run_never_changes_again(final):
    status = {Phase.SUCCEEDED: Status.SUCCESS, Phase.CANCELLED: Status.CANCELLED}.get(final, Status.FAILED)
    run = Run(run_id="etl-abc", namespace="default", external_id="etl", status=status, phase=final,
              reason="Done", created_at=T0, updated_at=T0, finished_at=T0)
    for new_status, new_phase in itertools.product(Status, Phase):
        for reason in ("Done", "Other"):
            assert apply_state(run, RunState(new_status, new_phase, reason), T0) is None, (new_status, new_phase)
