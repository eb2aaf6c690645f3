"""Failure diagnostics: captured by the sweep when a run turns failing, kept after the cluster cleans up.

The integration tests drive the app's timer and HTTP functions against Azurite and the Kubernetes
simulator; the unit tests prove the pure rules of ``shared.diagnostics`` with plain dicts.
"""

from __future__ import annotations

import json

import pytest

from shared import diagnostics
from shared.runs.model import Phase, RunState, Status
from shared.usecases import sweeping
from tests.fixtures.app import source_job


def _requests(app, suffix: str) -> list[dict]:
    return [r for r in app.sim.request_log if r["method"] == "GET" and r["path"].endswith(suffix)]


# ------------------------------------------------------------------------------------ the app


def test_failed_run_keeps_exit_code_message_and_log_tail_after_ttl_and_source_deletion(app):
    app.sim.put("jobs", "default", source_job("nightly", {"DAY": "1"}, backoffLimit=0, ttlSecondsAfterFinished=30,
                                              scenario="fail:exit=3:after=2:logs=80:message=boom"))
    run_id = app.submit_run("nightly")
    doc = app.advance_until(run_id, lambda d: d["status"] == "Failed")
    captured = doc["diagnostics"]
    assert captured["moment"] == "outcome"
    assert captured["trigger"]["reason"] == "BackoffLimitExceeded"
    [pod] = captured["pods"]
    [container] = pod["containers"]
    assert (pod["phase"], container["state"], container["exitCode"]) == ("Failed", "terminated", 3)
    assert container["terminationMessage"] == "boom"
    assert len(container["log"]) == diagnostics.LOG_TAIL_LINES
    assert container["log"][-1].endswith("error: boom")
    assert container["log"][0].startswith("main: step 32 of 80")  # the tail, not the head
    assert [e["reason"] for e in captured["jobEvents"]] == ["BackoffLimitExceeded"]

    for _ in range(4):  # past the TTL (raised to JOB_TTL_FLOOR_SECONDS, 300 s): the Job and its pods go
        app.advance(90)
    assert app.sim.get("jobs", "default", run_id) is None
    assert not app.sim.pods_of("default", run_id)
    app.sim.remove("jobs", "default", "nightly")
    app.advance(10)

    after = app.run(run_id)
    assert (after["status"], after["reason"]) == ("Failed", "BackoffLimitExceeded")
    assert after["diagnostics"] == captured


def test_deadline_warning_recorded_with_failed_is_captured_when_the_run_is_failed(app):
    # The job controller records the DeadlineExceeded Warning with Failed (recordJobFinished), once
    # the pod that ignores SIGTERM is killed at the end of its 30 s grace period - not at FailureTarget.
    app.sim.put("jobs", "default", source_job("hang", {}, activeDeadlineSeconds=20, scenario="run-forever"))
    run_id = app.submit_run("hang")
    failing = app.advance_until(run_id, lambda d: d["phase"] == "Failing", step=5)
    assert failing["diagnostics"]["moment"] == "outcome" and failing["diagnostics"]["jobEvents"] == []
    doc = app.advance_until(run_id, lambda d: d["status"] == "Failed", step=10)
    captured = doc["diagnostics"]
    assert [e["reason"] for e in captured["jobEvents"]] == ["DeadlineExceeded"]
    assert captured["trigger"]["status"] == "Failed"
    assert captured["firstSignal"]["trigger"]["phase"] == "Failing"
    app.advance(30)
    assert app.run(run_id)["diagnostics"] == captured  # captured once more, not at every sweep


def test_crash_loop_evidence_survives_the_pod_deleted_at_the_backoff_limit(app):
    # restartPolicy OnFailure restarts in place; at the backoff limit the Job deletes the pod, so by
    # the time the run is Failed there is nothing left to read (k/k#74848).
    job = source_job("crashy", {}, backoffLimit=3, scenario="fail:exit=3:after=20:message=boom")
    job["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    app.sim.put("jobs", "default", job)
    run_id = app.submit_run("crashy")

    early = app.advance_until(run_id, lambda d: d["diagnostics"] is not None)
    assert (early["status"], early["reason"]) == ("Running", "CrashLoopBackOff")
    assert early["diagnostics"]["moment"] == "early"

    doc = app.advance_until(run_id, lambda d: d["status"] == "Failed")
    assert not app.sim.pods_of("default", run_id)
    captured = doc["diagnostics"]
    assert captured["moment"] == "outcome"
    assert captured["podsFound"] == 0
    assert captured["firstSignal"]["trigger"]["reason"] == "CrashLoopBackOff"
    assert "deleted before its outcome" in captured["note"]
    [container] = captured["pods"][0]["containers"]
    assert container["lastTermination"]["exitCode"] == 3
    assert container["lastTermination"]["terminationMessage"] == "boom"
    assert container["log"][-1].endswith("error: boom")
    assert [e["reason"] for e in captured["jobEvents"]] == ["BackoffLimitExceeded"]


def test_stalled_run_captures_the_image_pull_warnings_without_reading_a_log(app):
    app.sim.put("jobs", "default", source_job("bad-image", {}, scenario="pull-backoff"))
    run_id = app.submit_run("bad-image")
    doc = app.advance_until(run_id, lambda d: d["phase"] == "Stalled", step=30)
    captured = doc["diagnostics"]
    assert captured["moment"] == "early"
    [pod] = captured["pods"]
    assert pod["containers"][0]["state"] == "waiting"
    assert pod["containers"][0]["reason"] in ("ImagePullBackOff", "ErrImagePull")
    assert "log" not in pod["containers"][0]
    assert any(e["reason"] == "Failed" and "Failed to pull image" in e["message"] for e in pod["events"])
    assert not _requests(app, "/log")  # a container that never started has no log to ask for


def test_a_run_is_captured_once_however_many_sweeps_see_it_failing(app):
    app.sim.put("jobs", "default", source_job("bad-image", {}, scenario="pull-backoff"))
    run_id = app.submit_run("bad-image")
    first = app.advance_until(run_id, lambda d: d["phase"] == "Stalled", step=30)["diagnostics"]
    app.sim.reset_counters()
    for _ in range(10):
        app.advance(30)
    doc = app.run(run_id)
    assert doc["phase"] == "Stalled"
    assert doc["diagnostics"] == first
    assert not _requests(app, "/events")


def test_healthy_runs_cost_no_diagnostic_reads(app):
    app.sim.put("jobs", "default", source_job("fine", {}, scenario="succeed:after=20"))
    run_id = app.submit_run("fine")
    doc = app.advance_until(run_id, lambda d: d["status"] == "Success")
    assert doc["diagnostics"] is None
    assert not _requests(app, "/log")
    assert not _requests(app, "/events")


def test_a_capture_that_cannot_read_logs_still_records_the_failure_and_says_why(app):
    app.sim.put("jobs", "default", source_job("nightly", {}, backoffLimit=0, scenario="fail:exit=3:after=2"))
    run_id = app.submit_run("nightly")
    app.sim.inject("GET", r"/log$", "status", times=None, status=403, message="pods/log is forbidden")
    doc = app.advance_until(run_id, lambda d: d["status"] == "Failed")
    [container] = doc["diagnostics"]["pods"][0]["containers"]
    assert container["exitCode"] == 3
    assert "log" not in container
    assert container["logError"].startswith("HTTP 403")
    assert "forbidden" in container["logError"]


def test_a_capture_that_cannot_list_pods_never_holds_up_the_transition(app):
    app.sim.put("jobs", "default", source_job("nightly", {}, backoffLimit=0, scenario="fail:exit=3:after=2"))
    run_id = app.submit_run("nightly")
    app.sim.inject("GET", r"/namespaces/default/pods$", "status", times=None, status=403)
    app.advance(10)
    doc = app.run(run_id)
    assert (doc["status"], doc["phase"]) == ("Failed", "Failed")
    captured = doc["diagnostics"]
    assert captured["pods"] == []
    assert any(e.startswith("listing the run's pods: HTTP 403") for e in captured["errors"])
    assert [e["reason"] for e in captured["jobEvents"]] == ["BackoffLimitExceeded"]


def test_sweep_summary_counts_the_runs_it_diagnosed(app):
    app.sim.put("jobs", "default", source_job("nightly", {}, backoffLimit=0, scenario="fail:after=2"))
    app.submit_run("nightly")
    app.sim.advance(10)
    summary = sweeping.sweep(app.service).as_dict()
    assert summary["diagnosed"] == 1
    assert sweeping.sweep(app.service).as_dict()["diagnosed"] == 0


# ---------------------------------------------------------------------------- the pure rules


def _pod(name: str, created: str, *, phase: str = "Running", exit_code: int | None = None) -> dict:
    state = {"running": {"startedAt": created}} if exit_code is None else {
        "terminated": {"exitCode": exit_code, "reason": "Error" if exit_code else "Completed"}}
    return {"metadata": {"name": name, "creationTimestamp": created},
            "status": {"phase": phase, "containerStatuses": [{"name": "main", "state": state}]}}


def test_troubled_pods_come_first_then_the_newest_and_at_most_five():
    pods = [_pod(f"ok-{i}", f"2026-01-01T00:0{i}:00Z") for i in range(6)]
    pods.append(_pod("failed-old", "2025-12-31T00:00:00Z", phase="Failed", exit_code=3))
    chosen, omitted = diagnostics.select_pods(pods)
    assert [p["metadata"]["name"] for p in chosen] == ["failed-old", "ok-5", "ok-4", "ok-3", "ok-2"]
    assert omitted == 2


@pytest.mark.parametrize(("state", "moment"), [
    (RunState(Status.RUNNING, Phase.FAILING, "BackoffLimitExceeded"), "outcome"),
    (RunState(Status.FAILED, Phase.FAILED, "DeadlineExceeded"), "outcome"),
    (RunState(Status.FAILED, Phase.LOST, "JobNotFound"), "outcome"),
    (RunState(Status.STARTING, Phase.STALLED, "ImagePullBackOff"), "early"),
    (RunState(Status.RUNNING, Phase.RUNNING, "CrashLoopBackOff"), "early"),
    (RunState(Status.RUNNING, Phase.RUNNING, "PodRetrying"), "early"),
    (RunState(Status.RUNNING, Phase.RUNNING, "PodsActive"), None),
    (RunState(Status.STARTING, Phase.PENDING, "ImagePullBackOff"), None),
    (RunState(Status.CANCELLED, Phase.CANCELLED, "CancelRequested"), None),
    (RunState(Status.SUCCESS, Phase.SUCCEEDED, "CompletionsReached"), None),
])
def test_only_failing_signals_are_diagnosed(state, moment):
    assert diagnostics.capture_moment(state) == moment


def test_secret_parameter_values_printed_as_assignments_are_masked():
    text = 'connecting with DB_PASSWORD=hunter2 and DB_PASSWORD: "two words" but MY_DB_PASSWORD=kept USER=bob'
    masked = diagnostics.redact(text, ["DB_PASSWORD"])
    assert "hunter2" not in masked and "two words" not in masked
    assert "DB_PASSWORD=***" in masked and "DB_PASSWORD: ***" in masked
    assert "MY_DB_PASSWORD=kept" in masked and "USER=bob" in masked


def test_a_capture_is_cut_to_its_bound_keeping_the_first_pods_log_end():
    line = "x" * 400
    pods = []
    for i in range(5):
        pods.append({"name": f"p{i}", "containers": [{"name": "main", "log": [f"{line} {n}" for n in range(50)]}],
                     "events": []})
    doc = {"moment": "outcome", "pods": pods, "jobEvents": []}
    cut = diagnostics.bounded(doc)
    assert diagnostics.capture_size(cut) <= diagnostics.MAX_CAPTURE_CHARS
    assert cut["truncated"] is True
    first_log = cut["pods"][0]["containers"][0]["log"]
    assert first_log[-1].endswith(" 49")
    assert len(first_log) > len(cut["pods"][1]["containers"][0]["log"])
    assert diagnostics.capture_size(doc) > diagnostics.MAX_CAPTURE_CHARS  # the input is not modified


def test_an_outcome_capture_without_pods_keeps_the_pods_of_the_first_signal():
    early = {"moment": "early", "capturedAt": "t1", "trigger": {"reason": "CrashLoopBackOff"},
             "pods": [{"name": "p", "containers": []}], "jobEvents": []}
    outcome = {"moment": "outcome", "capturedAt": "t2", "trigger": {"reason": "BackoffLimitExceeded"},
               "pods": [], "jobEvents": [{"reason": "BackoffLimitExceeded"}]}
    merged = diagnostics.merge(early, outcome)
    assert merged["pods"] == early["pods"]
    assert merged["podsCapturedAt"] == "t1"
    assert merged["jobEvents"] == outcome["jobEvents"]
    with_pods = diagnostics.merge(early, {**outcome, "pods": [{"name": "q", "containers": []}]})
    assert [p["name"] for p in with_pods["pods"]] == ["q"]


def test_warning_events_are_the_newest_few_oldest_first():
    events = [{"type": "Warning", "reason": f"R{i}", "message": "m", "lastTimestamp": f"2026-01-01T00:00:{i:02d}Z",
               "involvedObject": {"kind": "Pod", "name": "p"}} for i in range(15)]
    events.append({"type": "Normal", "reason": "Pulled", "lastTimestamp": "2026-01-01T00:01:00Z"})
    kept = diagnostics.warning_events(events)
    assert [e["reason"] for e in kept] == [f"R{i}" for i in range(5, 15)]
    assert kept[0] == {"reason": "R5", "message": "m", "count": 1, "lastSeen": "2026-01-01T00:00:05Z",
                       "object": "Pod/p"}
    assert json.loads(json.dumps(kept)) == kept  # plain JSON: survives the round trip unchanged


def test_events_api_events_are_counted_from_their_series():
    # Written through events.k8s.io/v1 (the scheduler), read through core v1: no count, no
    # lastTimestamp; series.count and series.lastObservedTime say how often and when last.
    scheduler = {"type": "Warning", "reason": "FailedScheduling", "message": "0/3 nodes are available",
                 "eventTime": "2026-01-01T00:00:00.000000Z", "lastTimestamp": None, "firstTimestamp": None,
                 "series": {"count": 7, "lastObservedTime": "2026-01-01T00:30:00.000000Z"},
                 "involvedObject": {"kind": "Pod", "name": "p"}}
    kubelet = {"type": "Warning", "reason": "BackOff", "message": "Back-off", "count": 3,
               "lastTimestamp": "2026-01-01T00:10:00Z", "involvedObject": {"kind": "Pod", "name": "p"}}
    kept = diagnostics.warning_events([scheduler, kubelet])
    assert [(e["reason"], e["count"], e["lastSeen"]) for e in kept] == [
        ("BackOff", 3, "2026-01-01T00:10:00Z"), ("FailedScheduling", 7, "2026-01-01T00:30:00.000000Z")]
