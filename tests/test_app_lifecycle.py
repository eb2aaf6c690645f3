"""A run's whole life through the HTTP functions and the timer, against Azurite and the simulator."""

from __future__ import annotations

from tests.fixtures.app import source_job


def _submit(app, external_id="nightly-report", body=None, **kw):
    answer = app.submit(external_id, body, **kw)
    assert answer.status == 202, answer.body
    return answer


def test_discover_submit_and_follow_a_run_to_success(app):
    app.sim.put("jobs", "default", source_job("nightly-report", {"REPORT_DATE": "2026-01-01", "LEVEL": "info"},
                                              scenario="succeed:after=20"))
    jobs = app.get("/api/jobs").json["jobs"]
    assert [j["externalId"] for j in jobs] == ["nightly-report"]
    assert {p["name"]: p["default"] for p in jobs[0]["parameters"]} == {"REPORT_DATE": "2026-01-01", "LEVEL": "info"}

    answer = _submit(app, body={"REPORT_DATE": "2026-11-26"})
    run = answer.json
    run_id = run["runId"]
    assert run["status"] == "Starting"
    assert f"/api/signed/runs/{run_id}/poll?" in answer.header("Location")
    assert answer.header("Retry-After")
    assert run["statusQueryGetUri"] == answer.header("Location")
    job = app.sim.get("jobs", "default", run_id)
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env == {"REPORT_DATE": "2026-11-26", "LEVEL": "info"}

    app.advance(5)
    assert app.run(run_id)["status"] == "Running"
    app.advance(30)
    doc = app.run(run_id)
    assert (doc["status"], doc["phase"]) == ("Success", "Succeeded")
    assert [h["status"] for h in doc["history"]][0] == "Starting"
    assert doc["history"][-1]["status"] == "Success"
    assert doc["finishedAt"]


def test_failing_job_ends_failed_with_backoff_limit_exceeded_and_its_message(app):
    app.sim.put("jobs", "default", source_job("flaky", {"X": "1"}, scenario="fail:exit=3:after=2:message=boom",
                                              backoffLimit=1))
    run_id = _submit(app, "flaky").json["runId"]
    for _ in range(12):
        app.advance(10)
    doc = app.run(run_id)
    assert (doc["status"], doc["phase"], doc["reason"]) == ("Failed", "Failed", "BackoffLimitExceeded")
    assert doc["message"]


def test_deadline_exceeded_is_failed_with_that_reason(app):
    app.sim.put("jobs", "default", source_job("slow", {}, scenario="run-forever", activeDeadlineSeconds=30))
    run_id = _submit(app, "slow").json["runId"]
    for _ in range(8):
        app.advance(10)
    doc = app.run(run_id)
    assert (doc["status"], doc["reason"]) == ("Failed", "DeadlineExceeded")


def test_cancel_deletes_the_job_and_its_pods_and_ends_cancelled(app):
    app.sim.put("jobs", "default", source_job("long", {}, scenario="run-forever"))
    run_id = _submit(app, "long").json["runId"]
    app.advance(5)
    assert app.run(run_id)["status"] == "Running"

    answer = app.post(f"/api/runs/{run_id}/cancel")
    assert answer.status == 202
    assert answer.json["cancelled"] is True
    assert app.sim.get("jobs", "default", run_id) is None
    app.advance(5)
    # The pod terminates over its grace period (30 s: run-forever ignores SIGTERM): Cancelling till then.
    assert (app.run(run_id)["status"], app.run(run_id)["phase"]) == ("Running", "Cancelling")
    for _ in range(6):
        app.advance(5)
    doc = app.run(run_id)
    assert (doc["status"], doc["phase"]) == ("Cancelled", "Cancelled")
    assert not [p for p in app.sim.objects("pods", "default")
                if p["metadata"]["labels"].get("job-name") == run_id]


def test_cancel_after_success_changes_nothing_and_says_so(app):
    app.sim.put("jobs", "default", source_job("quick", {}, scenario="succeed:after=1"))
    run_id = _submit(app, "quick").json["runId"]
    for _ in range(3):
        app.advance(10)
    assert app.run(run_id)["status"] == "Success"
    answer = app.post(f"/api/runs/{run_id}/cancel")
    assert answer.status == 200
    assert answer.json["cancelled"] is False
    assert answer.json["status"] == "Success"
    assert "already finished" in answer.json["detail"]


def test_deleted_source_job_runs_from_the_fallback_attributes(app):
    body = {"parameters": {"GREETING": "hi"},
            "attributes": {"containerImage": "busybox:1.36", "containerCommand": ["sh", "-c", "echo $GREETING"]}}
    run_id = _submit(app, "gone-job", body).json["runId"]
    job = app.sim.get("jobs", "default", run_id)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "busybox:1.36"
    assert container["command"] == ["sh", "-c", "echo $GREETING"]
    assert app.run(run_id)["source"] == "fallback"


def test_no_source_and_no_attributes_is_404_naming_the_external_id_and_creates_nothing(app):
    app.sim.reset_counters()
    answer = app.submit("no-such-job", {"A": "1"})
    assert answer.status == 404
    assert "no-such-job" in answer.json["error"]["message"]
    assert "containerImage" in answer.json["error"]["message"]
    assert not app.sim.objects("jobs", "default")
    assert not [e for e in app.table_entities() if e["RowKey"].startswith("run|")]


def test_same_idempotency_key_twice_is_one_run_and_one_job(app):
    app.sim.put("jobs", "default", source_job("nightly-report", {"D": "x"}))
    first = _submit(app, body={"parameters": {"D": "1"}, "idempotencyKey": "polysync-run-42"})
    second = _submit(app, body={"parameters": {"D": "1"}}, headers={"Idempotency-Key": "polysync-run-42"})
    assert first.json["runId"] == second.json["runId"]
    assert second.json["created"] is False
    runs = [j for j in app.sim.objects("jobs", "default") if j["metadata"]["name"] != "nightly-report"]
    assert len(runs) == 1


def test_kueue_suspended_run_is_queued_then_running(app):
    app.sim.put("jobs", "default", source_job("queued", {}, scenario="run-forever:kueue:admit-after=60"))
    job = app.sim.get("jobs", "default", "queued")
    job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] = "team-a"
    app.sim.put("jobs", "default", job)
    run_id = _submit(app, "queued").json["runId"]
    app.advance(10)
    doc = app.run(run_id)
    assert (doc["status"], doc["phase"]) == ("Starting", "Queued")
    app.advance(60)
    app.advance(5)
    assert app.run(run_id)["status"] == "Running"


def test_image_pull_backoff_shows_stalled_with_the_reason(app):
    app.sim.put("jobs", "default", source_job("bad-image", {}, scenario="pull-backoff"))
    run_id = _submit(app, "bad-image").json["runId"]
    app.advance(30)
    assert app.run(run_id)["phase"] in ("Pending", "Stalled")
    for _ in range(5):
        app.advance(30)
    doc = app.run(run_id)
    assert (doc["status"], doc["phase"]) == ("Starting", "Stalled")
    assert doc["reason"] in ("ImagePullBackOff", "ErrImagePull")


def test_job_deleted_behind_our_back_is_lost_after_two_sweeps(app):
    app.sim.put("jobs", "default", source_job("victim", {}, scenario="run-forever"))
    run_id = _submit(app, "victim").json["runId"]
    app.advance(5)
    assert app.run(run_id)["status"] == "Running"
    app.sim.remove("jobs", "default", run_id)
    app.advance(5)
    assert app.run(run_id)["status"] == "Running"
    app.advance(5)
    doc = app.run(run_id)
    assert (doc["status"], doc["phase"], doc["reason"]) == ("Failed", "Lost", "JobNotFound")


def test_unknown_run_is_404(app):
    answer = app.get("/api/runs/never-was-abcde")
    assert answer.status == 404
    assert answer.json["error"]["code"] == "not_found"


def test_poll_route_follows_the_asynchronous_pattern(app):
    app.sim.put("jobs", "default", source_job("ok", {}, scenario="succeed:after=1"))
    app.sim.put("jobs", "default", source_job("bad", {}, scenario="fail:exit=1:after=1", backoffLimit=0))
    ok = _submit(app, "ok").json["runId"]
    bad = _submit(app, "bad").json["runId"]
    cancelled = _submit(app, "ok").json["runId"]
    poll = app.get(f"/api/runs/{ok}/poll")
    assert poll.status == 202
    assert f"/api/signed/runs/{ok}/poll?" in poll.header("Location")
    assert int(poll.header("Retry-After")) > 0
    assert poll.json["runtimeStatus"] == "Pending"
    app.post(f"/api/runs/{cancelled}/cancel")
    for _ in range(4):
        app.advance(10)
    done = app.get(f"/api/runs/{ok}/poll")
    assert (done.status, done.json["runtimeStatus"]) == (200, "Completed")
    failed = app.get(f"/api/runs/{bad}/poll")
    assert (failed.status, failed.json["runtimeStatus"]) == (409, "Failed")
    stopped = app.get(f"/api/runs/{cancelled}/poll")
    assert (stopped.status, stopped.json["runtimeStatus"]) == (409, "Terminated")


def test_an_idempotency_key_reused_for_another_job_is_409_and_creates_nothing(app):
    app.sim.put("jobs", "default", source_job("first", {}))
    app.sim.put("jobs", "default", source_job("second", {}))
    run_id = _submit(app, "first", {"idempotencyKey": "k-1"}).json["runId"]
    before = len(app.sim.objects("jobs", "default"))
    answer = app.submit("second", {"idempotencyKey": "k-1"})
    assert answer.status == 409
    assert answer.json["error"]["field"] == "idempotencyKey"
    assert answer.json["error"]["runId"] == run_id
    assert len(app.sim.objects("jobs", "default")) == before
