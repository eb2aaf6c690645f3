"""The run record's rules, as plain data: how a run moves to a new state (``apply_state``), what its
rendered Job says about where it came from (``parameter_changes``, ``rerun_of``)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.runs.model import (
    HISTORY_LIMIT,
    PARAMETER_CHANGES_ANNOTATION,
    RERUN_OF_ANNOTATION,
    Phase,
    Run,
    RunState,
    Status,
    apply_state,
    parameter_changes,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PENDING = RunState(Status.STARTING, Phase.PENDING, "JobCreated")
RUNNING = RunState(Status.RUNNING, Phase.RUNNING, "PodRunning", "1 pod running")
SUCCEEDED = RunState(Status.SUCCESS, Phase.SUCCEEDED, "Completed", "done")


def new_run(**fields) -> Run:
    return Run(run_id="etl-abc", namespace="default", external_id="etl", created_at=T0, **fields)


def moved(run: Run, *states_and_times) -> Run:
    for state, at in states_and_times:
        run = apply_state(run, state, at)
        assert run is not None
    return run


# ------------------------------------------------------------------------------ apply_state


def test_a_move_takes_the_whole_state_and_stamps_the_time():
    run = apply_state(new_run(), RUNNING, T0 + timedelta(seconds=5))

    assert (run.status, run.phase, run.reason, run.message) == (
        Status.RUNNING, Phase.RUNNING, "PodRunning", "1 pod running")
    assert run.state == RUNNING
    assert run.updated_at == T0 + timedelta(seconds=5)
    assert run.history == [{"at": "2026-03-01T12:00:05+00:00", "status": "Running", "phase": "Running",
                            "reason": "PodRunning"}]
    assert (run.run_id, run.namespace, run.external_id, run.created_at) == ("etl-abc", "default", "etl", T0)


def test_the_same_state_again_is_no_change():
    run = apply_state(new_run(), RUNNING, T0)
    assert apply_state(run, RUNNING, T0 + timedelta(minutes=1)) is None


@pytest.mark.parametrize("changed", [
    RunState(Status.RUNNING, Phase.RUNNING, "PodRunning", "2 pods running"),  # the message only
    RunState(Status.RUNNING, Phase.RUNNING, "CrashLoopBackOff", "1 pod running"),  # the reason only
    RunState(Status.RUNNING, Phase.STALLED, "PodRunning", "1 pod running"),  # the phase only
])
def test_any_part_of_the_state_that_changes_is_a_change(changed):
    run = apply_state(new_run(), RUNNING, T0)
    after = apply_state(run, changed, T0 + timedelta(seconds=1))
    assert after is not None and after.state == changed
    assert len(after.history) == 2


@pytest.mark.parametrize("terminal", [
    SUCCEEDED,
    RunState(Status.FAILED, Phase.FAILED, "BackoffLimitExceeded"),
    RunState(Status.CANCELLED, Phase.CANCELLED, "Cancelled"),
    RunState(Status.FAILED, Phase.LOST, "JobNotFound"),
])
def test_a_terminal_run_never_changes_again(terminal):
    done = moved(new_run(), (RUNNING, T0), (terminal, T0 + timedelta(minutes=1)))
    assert done.terminal

    for later in (RUNNING, PENDING, SUCCEEDED, RunState(Status.FAILED, Phase.FAILED, "DeadlineExceeded"),
                  RunState(Status.UNKNOWN, Phase.UNKNOWN)):
        assert apply_state(done, later, T0 + timedelta(hours=1)) is None


def test_a_run_is_terminal_by_its_phase():
    assert [p for p in Phase if new_run(phase=p).terminal] == [
        Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED, Phase.LOST]
    assert [p for p in Phase if RunState(Status.UNKNOWN, p).terminal] == [
        Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED, Phase.LOST]


def test_started_at_is_the_first_time_a_pod_ran_and_stays():
    queued = apply_state(new_run(), PENDING, T0)
    assert queued.started_at is None
    running = apply_state(queued, RUNNING, T0 + timedelta(seconds=7))
    assert running.started_at == T0 + timedelta(seconds=7)
    stalled = apply_state(running, RunState(Status.RUNNING, Phase.STALLED, "ImagePullBackOff"),
                          T0 + timedelta(seconds=9))
    done = apply_state(stalled, SUCCEEDED, T0 + timedelta(seconds=30))
    assert done.started_at == T0 + timedelta(seconds=7)


@pytest.mark.parametrize("phase", [Phase.RUNNING, Phase.SUCCEEDING, Phase.FAILING, Phase.SUCCEEDED, Phase.FAILED])
def test_a_phase_that_needed_a_pod_sets_started_at_when_it_is_the_first_seen(phase):
    run = apply_state(new_run(), RunState(Status.RUNNING, phase), T0 + timedelta(seconds=3))
    assert run.started_at == T0 + timedelta(seconds=3)


@pytest.mark.parametrize("phase", [Phase.PENDING, Phase.QUEUED, Phase.STALLED, Phase.CANCELLING,
                                   Phase.CANCELLED, Phase.LOST, Phase.UNKNOWN])
def test_a_phase_without_a_running_pod_leaves_started_at_unset(phase):
    run = apply_state(new_run(), RunState(Status.STARTING, phase), T0 + timedelta(seconds=3))
    assert run.started_at is None


def test_finished_at_is_set_by_a_terminal_phase_only():
    running = apply_state(new_run(), RUNNING, T0)
    assert running.finished_at is None
    lost = apply_state(running, RunState(Status.FAILED, Phase.LOST, "JobNotFound"), T0 + timedelta(minutes=2))
    assert lost.finished_at == T0 + timedelta(minutes=2)


def test_a_move_resets_the_missing_count():
    run = replace(apply_state(new_run(), PENDING, T0), missing_sweeps=1)
    assert apply_state(run, RUNNING, T0 + timedelta(seconds=1)).missing_sweeps == 0


def test_history_keeps_the_newest_entries_up_to_its_limit():
    run = new_run()
    states = [RunState(Status.RUNNING, Phase.RUNNING, f"R{i}") for i in range(HISTORY_LIMIT + 5)]
    for i, state in enumerate(states):
        run = apply_state(run, state, T0 + timedelta(seconds=i))

    assert len(run.history) == HISTORY_LIMIT == 50
    assert [h["reason"] for h in run.history] == [f"R{i}" for i in range(5, HISTORY_LIMIT + 5)]
    assert run.history[-1]["at"] == (T0 + timedelta(seconds=HISTORY_LIMIT + 4)).isoformat()


def test_a_move_leaves_the_run_it_was_given_unchanged():
    run = apply_state(new_run(), RUNNING, T0)
    before = replace(run, history=list(run.history))
    apply_state(run, SUCCEEDED, T0 + timedelta(minutes=1))
    assert run == before


# ------------------------------------------------------------------- rendered Job annotations


def rendered(annotations) -> dict:
    return {"metadata": {"name": "etl-abc", "annotations": annotations}}


def test_rerun_of_is_read_from_the_rendered_jobs_annotation():
    assert new_run(rendered_job=rendered({RERUN_OF_ANNOTATION: "etl-first"})).rerun_of == "etl-first"


@pytest.mark.parametrize("rendered_job", [
    None, {}, {"metadata": None}, {"metadata": {"annotations": None}}, rendered(["not", "a", "dict"]),
    rendered({RERUN_OF_ANNOTATION: ""}), rendered({RERUN_OF_ANNOTATION: 7}), rendered({"other": "x"}),
])
def test_a_run_that_is_no_rerun_or_cannot_tell_says_none(rendered_job):
    assert new_run(rendered_job=rendered_job).rerun_of is None


def with_changes(recorded, parameters=()) -> Run:
    raw = recorded if isinstance(recorded, str) else json.dumps(recorded)
    return new_run(rendered_job=rendered({PARAMETER_CHANGES_ANNOTATION: raw}), parameters=list(parameters))


def test_parameter_changes_pair_each_recorded_change_with_the_runs_value():
    run = with_changes(
        [{"name": "DAY", "change": "overridden", "from": "today"},
         {"name": "EXTRA", "change": "added"},
         {"name": "TOKEN", "change": "overridden", "from": "***", "secret": True}],
        [{"name": "DAY", "value": "2026-03-01", "dataType": "String"},
         {"name": "EXTRA", "value": "1", "dataType": "String"},
         {"name": "TOKEN", "value": "***", "dataType": "Secret"}])

    assert parameter_changes(run) == [
        {"name": "DAY", "change": "overridden", "from": "today", "to": "2026-03-01"},
        {"name": "EXTRA", "change": "added", "from": None, "to": "1"},
        {"name": "TOKEN", "change": "overridden", "from": "***", "to": "***"},
    ]


def test_a_secret_change_never_shows_the_runs_value():
    run = with_changes([{"name": "TOKEN", "change": "added", "secret": True}],
                       [{"name": "TOKEN", "value": "leaked-if-shown"}])
    assert parameter_changes(run) == [{"name": "TOKEN", "change": "added", "from": None, "to": "***"}]


def test_a_change_for_a_parameter_the_run_does_not_list_has_no_value():
    assert parameter_changes(with_changes([{"name": "GONE", "change": "added"}], ["junk"])) == [
        {"name": "GONE", "change": "added", "from": None, "to": None}]


def test_entries_that_are_not_changes_are_left_out():
    run = with_changes([{"name": "A", "change": "removed"}, "not a dict", {"name": "B"},
                        {"name": "C", "change": "added"}], [{"name": "C", "value": "c"}])
    assert parameter_changes(run) == [{"name": "C", "change": "added", "from": None, "to": "c"}]


@pytest.mark.parametrize("recorded", [{"name": "A", "change": "added"}, "just text", 3])
def test_a_recorded_value_that_is_not_a_list_means_no_changes(recorded):
    assert parameter_changes(with_changes(json.dumps(recorded))) == []


@pytest.mark.parametrize("run", [
    new_run(),  # made before changes were recorded
    new_run(rendered_job=rendered({})),  # rendered Job without the annotation
    new_run(rendered_job=rendered({PARAMETER_CHANGES_ANNOTATION: ["not", "text"]})),
    new_run(rendered_job=rendered({PARAMETER_CHANGES_ANNOTATION: "{not json"})),
])
def test_a_run_that_does_not_know_its_changes_says_none(run):
    assert parameter_changes(run) is None
