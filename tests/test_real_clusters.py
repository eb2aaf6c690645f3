"""What real AKS clusters do that a simple stand-in does not, proven through the app's entry points.

Each test drives the HTTP functions (submit, run document) and the sweep timer against Azurite and
the simulator, which models the behaviour as the Kubernetes source does (see
``tests/test_kubesim_world.py``): refused pods, managedBy, short TTLs, GitOps tracking metadata,
Kueue without labels, FailedMount / CreateContainerConfigError, pod failure policies and Indexed
Jobs, evictions, events.k8s.io/v1 events, and the API server's validation. (The late Warning event
is proven in ``tests/test_diagnostics.py``.)
"""

from __future__ import annotations

from tests.fixtures.app import source_job


def _state(doc: dict) -> tuple:
    return doc["status"], doc["phase"], doc["reason"]


def test_refused_pods_are_starting_failed_create_then_stalled_and_never_running(app):
    app.sim.put("jobs", "default", source_job("quota", {}, scenario="refused"))
    run_id = app.submit_run("quota")
    seen = set()
    doc = app.advance_until(run_id, lambda d: seen.add(_state(d)) or d["phase"] == "Stalled")
    assert all(status != "Running" for status, _, _ in seen)
    assert ("Starting", "Pending", "FailedCreate") in seen
    assert _state(doc) == ("Starting", "Stalled", "FailedCreate")
    assert "exceeded quota: compute-quota" in doc["message"]
    # Stalled is an early failing signal: the capture keeps the Job's FailedCreate events.
    assert {e["reason"] for e in doc["diagnostics"]["jobEvents"]} == {"FailedCreate"}


def test_a_source_managed_by_another_controller_runs_under_the_job_controller(app):
    app.sim.put("jobs", "default", source_job("operator-job", {}, scenario="succeed:after=5",
                                              managedBy="example.com/batch-operator"))
    run_id = app.submit_run("operator-job")
    assert "managedBy" not in app.sim.get("jobs", "default", run_id)["spec"]
    assert app.advance_until(run_id, lambda d: d["status"] != "Starting" and d["status"] != "Running")["status"] == "Success"


def test_a_run_of_a_ttl_zero_source_ends_success_not_lost(app):
    app.sim.put("jobs", "default", source_job("short", {}, scenario="succeed:after=5", ttlSecondsAfterFinished=0))
    run_id = app.submit_run("short")
    assert app.sim.get("jobs", "default", run_id)["spec"]["ttlSecondsAfterFinished"] == 300
    for _ in range(4):
        app.advance(10)
    doc = app.run(run_id)
    assert (doc["status"], doc["phase"]) == ("Success", "Succeeded")
    assert app.sim.get("jobs", "default", run_id) is not None  # outlives several sweeps


def test_gitops_tracking_metadata_of_the_source_does_not_reach_the_run_job(app):
    source = source_job("argo-managed", {}, scenario="succeed:after=5")
    source["metadata"]["labels"].update({"app.kubernetes.io/instance": "billing",
                                         "kustomize.toolkit.fluxcd.io/name": "apps"})
    source["metadata"]["annotations"].update({"argocd.argoproj.io/tracking-id": "billing:batch/Job:default/x",
                                              "meta.helm.sh/release-name": "billing"})
    app.sim.put("jobs", "default", source)
    run_id = app.submit_run("argo-managed")
    meta = app.sim.get("jobs", "default", run_id)["metadata"]
    keys = [*meta["labels"], *meta["annotations"]]
    assert not [k for k in keys if k == "app.kubernetes.io/instance"
                or k.startswith(("argocd.argoproj.io/", "kustomize.toolkit.fluxcd.io/", "meta.helm.sh/"))]
    assert meta["labels"]["team"] == "data"


def test_kueue_managing_jobs_without_queue_name_keeps_the_run_queued_until_admitted(app):
    app.sim.kueue_manage_all = True
    app.sim.put("jobs", "default", source_job("plain", {}, scenario="succeed:after=5"))
    run_id = app.submit_run("plain")
    for _ in range(6):
        app.advance(10)
        assert _state(app.run(run_id))[:2] == ("Starting", "Queued")
    app.sim.admit("default", run_id)
    assert app.advance_until(run_id, lambda d: d["status"] == "Success")["phase"] == "Succeeded"


def test_a_run_held_at_create_without_a_label_is_queued_again_when_preempted_after_starting(app):
    app.sim.kueue_manage_all = True
    app.sim.put("jobs", "default", source_job("preemptible", {}, scenario="run-forever"))
    run_id = app.submit_run("preemptible")
    app.sim.admit("default", run_id)
    assert app.advance_until(run_id, lambda d: d["status"] == "Running")["phase"] == "Running"
    app.sim.preempt("default", run_id)
    for _ in range(6):
        app.advance(10)  # the timer sweep decodes the suspended Job; the poll reads the stored run
        assert _state(app.run(run_id))[:2] == ("Starting", "Queued")
    app.sim.admit("default", run_id)
    assert app.advance_until(run_id, lambda d: d["status"] == "Running")["phase"] == "Running"


def test_a_started_run_not_held_at_create_is_cancelled_when_its_job_is_suspended(app):
    app.sim.put("jobs", "default", source_job("plainly", {}, scenario="run-forever"))
    run_id = app.submit_run("plainly")
    assert app.advance_until(run_id, lambda d: d["status"] == "Running")["phase"] == "Running"
    app.sim.preempt("default", run_id)  # suspended by someone else, with no queue label
    assert _state(app.advance_until(run_id, lambda d: d["status"] != "Running")) == (
        "Cancelled", "Cancelled", "JobSuspended")


def test_a_missing_volume_secret_is_pending_then_stalled_failed_mount(app):
    source = source_job("mounts", {}, scenario="mount-error")
    source["spec"]["template"]["spec"]["volumes"] = [{"name": "creds", "secret": {"secretName": "db-creds"}}]
    app.sim.put("jobs", "default", source)
    run_id = app.submit_run("mounts")
    pending = app.advance_until(run_id, lambda d: d["reason"] == "FailedMount")
    assert (pending["status"], pending["phase"]) == ("Starting", "Pending")
    assert pending["message"].endswith('MountVolume.SetUp failed for volume "creds" : secret "db-creds" not found')
    assert _state(app.advance_until(run_id, lambda d: d["phase"] == "Stalled")) == ("Starting", "Stalled", "FailedMount")


def test_a_missing_env_secret_is_pending_then_stalled_create_container_config_error(app):
    env_source = source_job("cfg", {}, scenario="config-error")
    env_source["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api-token", "key": "token"}}}]
    app.sim.put("jobs", "default", env_source)
    run_id = app.submit_run("cfg")
    pending = app.advance_until(run_id, lambda d: d["reason"] == "CreateContainerConfigError")
    assert (pending["status"], pending["phase"]) == ("Starting", "Pending")
    assert 'secret "api-token" not found' in pending["message"]
    assert app.advance_until(run_id, lambda d: d["phase"] == "Stalled")["reason"] == "CreateContainerConfigError"


def test_indexed_run_shows_per_index_progress_and_ends_failed_indexes(app):
    app.sim.put("jobs", "default", source_job(
        "shards", {}, scenario="fail:indexes=1:after=20", completionMode="Indexed", completions=3, parallelism=3,
        backoffLimitPerIndex=1, backoffLimit=None))
    run_id = app.submit_run("shards")
    running = app.advance_until(run_id, lambda d: d["reason"] == "PodRetrying", step=5)
    assert "2147483647" not in running["message"] and "backoffLimitPerIndex 1" in running["message"]
    assert "indexes completed 2 of 3 (0,2)" in running["message"]
    doc = app.advance_until(run_id, lambda d: d["status"] == "Failed")
    assert (doc["reason"], doc["message"]) == ("FailedIndexes", "Job has failed indexes")


def test_a_fail_job_rule_ends_the_run_failed_with_the_policys_message(app):
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}
    app.sim.put("jobs", "default", source_job("fatal", {}, scenario="fail:exit=42:after=3", backoffLimit=6,
                                              podFailurePolicy=policy))
    run_id = app.submit_run("fatal")
    doc = app.advance_until(run_id, lambda d: d["status"] == "Failed")
    assert doc["reason"] == "PodFailurePolicy"
    assert doc["message"].endswith("failed with exit code 42 matching FailJob rule at index 0")
    assert [e["reason"] for e in doc["diagnostics"]["jobEvents"]] == ["PodFailurePolicy"]


def test_an_evicted_pod_fails_the_run_and_its_diagnostics_say_evicted(app):
    app.sim.put("jobs", "default", source_job("evictee", {}, scenario="succeed:after=120", backoffLimit=0))
    run_id = app.submit_run("evictee")
    app.advance(5)
    [pod] = app.sim.pods_of("default", run_id)
    app.sim.evict("default", pod["metadata"]["name"], by="kubelet")
    doc = app.advance_until(run_id, lambda d: d["status"] == "Failed", step=5)
    assert doc["reason"] == "BackoffLimitExceeded"
    [captured] = doc["diagnostics"]["pods"]
    assert (captured["phase"], captured["reason"]) == ("Failed", "Evicted")
    assert captured["containers"][0]["exitCode"] == 137


def test_scheduler_events_are_counted_from_their_series(app, monkeypatch):
    # The scheduler tries an unschedulable pod again every 5 minutes: stall after 7 so the capture
    # sees a repeat, which events.k8s.io/v1 records as series.count (core v1 count stays empty).
    from shared import composition

    monkeypatch.setenv("STALL_AFTER_SECONDS", "420")
    composition.reset()
    app.service.clock = app.sim.now
    app.sim.put("jobs", "default", source_job("huge", {}, scenario="unschedulable"))
    run_id = app.submit_run("huge")
    doc = app.advance_until(run_id, lambda d: d["phase"] == "Stalled", step=30)
    [pod] = doc["diagnostics"]["pods"]
    [scheduling] = [e for e in pod["events"] if e["reason"] == "FailedScheduling"]
    [event] = [e for e in app.sim.objects("events", "default") if e["reason"] == "FailedScheduling"]
    assert scheduling["count"] == event["series"]["count"] > 1
    assert scheduling["lastSeen"] == event["series"]["lastObservedTime"]


def test_active_deadline_zero_is_accepted_and_the_run_fails_deadline_exceeded(app):
    app.sim.put("jobs", "default", source_job("instant", {}, scenario="run-forever:terminate=0",
                                              activeDeadlineSeconds=0))
    run_id = app.submit_run("instant")
    doc = app.advance_until(run_id, lambda d: d["status"] == "Failed")
    assert doc["reason"] == "DeadlineExceeded"
    assert [e["reason"] for e in doc["diagnostics"]["jobEvents"]] == ["DeadlineExceeded"]


def test_a_healthy_steady_sweep_lists_no_events(app):
    for i in range(3):
        app.sim.put("jobs", "default", source_job(f"steady-{i}", {}, scenario="run-forever"))
        app.submit_run(f"steady-{i}")
    app.advance(60)
    app.sim.reset_counters()
    app.advance(30)
    assert not [key for key in app.sim.requests if "events" in key[1]]
    assert sum(app.sim.requests.values()) == 1  # one LIST of the run Jobs


def test_env_names_follow_the_clusters_version_in_submit_and_discovery(app):
    source = source_job("spaced", {"PLAIN": "1"}, scenario="succeed:after=5")
    source["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "MY VAR", "value": "x"})
    app.sim.put("jobs", "default", source)  # seeded: the strict 1.31 rule would refuse it on create
    # A 1.31 cluster: the strict rule. Discovery says so, and submit refuses the name - no Job, no row.
    [described] = [j for j in app.get("/api/jobs").json["jobs"] if j["externalId"] == "spaced"]
    assert {p["name"]: p.get("validName", True) for p in described["parameters"]} == {"PLAIN": True, "MY VAR": False}
    refused = app.submit("spaced", {"parameters": {"MY VAR": "y"}})
    assert refused.status == 422 and refused.json["error"]["field"] == "parameters.MY VAR"
    assert "is not a valid Kubernetes environment variable name" in refused.json["error"]["message"]
    assert [j["metadata"]["name"] for j in app.sim.objects("jobs", "default")] == ["spaced"]
    assert app.get("/api/runs").json["runs"] == []


def test_relaxed_env_names_are_accepted_on_a_1_32_cluster(app):
    app.sim.version = "1.32.1"
    source = source_job("spaced", {}, scenario="succeed:after=5")
    source["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "MY VAR", "value": "x"})
    app.sim.put("jobs", "default", source)
    [described] = [j for j in app.get("/api/jobs").json["jobs"] if j["externalId"] == "spaced"]
    assert all(p.get("validName", True) for p in described["parameters"])
    run_id = app.submit_run("spaced", {"parameters": {"MY VAR": "y"}})
    env = app.sim.get("jobs", "default", run_id)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "MY VAR", "value": "y"} in env
    assert app.advance_until(run_id, lambda d: d["status"] == "Success")["phase"] == "Succeeded"
