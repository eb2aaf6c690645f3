"""The simulator does what real AKS clusters do where a simple stand-in would not.

Each test names the Kubernetes source the behaviour comes from and talks to ``tools.kubesim``
through the official client, as ``tests/test_kubesim.py`` does: refused pods, late Warning
events, grace periods and exit codes, ``managedBy``, TTL 0, Kueue's ``manageJobsWithoutQueueName``,
FailedMount / CreateContainerConfigError, pod failure policies, Indexed Jobs with per-index
limits and success policies, pod deletion and eviction, events.k8s.io/v1 events, and validation.
"""

from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.fixtures.kubesim import api_client_for
from tests.test_kubesim import NS, body_of, cond, cond_types, job_body, pods_of
from tools.kubesim import KubeSim, Scenario


@pytest.fixture
def batch(kube_api_client) -> client.BatchV1Api:
    return client.BatchV1Api(kube_api_client)


@pytest.fixture
def core(kube_api_client) -> client.CoreV1Api:
    return client.CoreV1Api(kube_api_client)


def job_events(core: client.CoreV1Api, name: str, type_: str | None = None) -> list[client.CoreV1Event]:
    selector = f"involvedObject.kind=Job,involvedObject.name={name}"
    if type_:
        selector += f",type={type_}"
    return core.list_namespaced_event(NS, field_selector=selector).items


# --- 1. pods refused at creation --------------------------------------------------------------------


def test_refused_pods_leave_the_job_started_with_no_pod_and_failed_create_warnings_for_ever(batch, core, kubesim):
    # job_controller.go manageJob -> controller_utils createPods: "Error creating: %v" on the Job,
    # the sync retried with the work queue's back-off (1 s doubling to 60 s); startTime is set.
    batch.create_namespaced_job(NS, job_body("quota", scenario="refused"))
    kubesim.advance(3600)
    job = batch.read_namespaced_job("quota", NS)
    assert job.status.start_time is not None and not job.status.active and not job.status.conditions
    assert pods_of(core, "quota") == []
    warnings = job_events(core, "quota", "Warning")
    assert {e.reason for e in warnings} == {"FailedCreate"}
    assert warnings[0].message.startswith('Error creating: pods "quota-') and "exceeded quota" in warnings[0].message
    # Each retry names a new pod; after 10 different messages client-go folds them into one.
    combined = [e for e in warnings if e.message.startswith("Error creating: (combined from similar events)")
                or e.message.startswith("(combined from similar events)")]
    assert len(warnings) == 10 and len(combined) == 1 and combined[0].count > 50


def test_refused_pods_start_once_the_refusal_goes(batch, core, kubesim):
    batch.create_namespaced_job(NS, job_body("psa", scenario="refused:refusal=pod-security:recover=30:after=5"))
    kubesim.advance(20)
    assert "violates PodSecurity" in job_events(core, "psa", "Warning")[0].message
    kubesim.advance(120)
    assert ("Complete", "True") in cond_types(batch.read_namespaced_job("psa", NS))


def test_policy_webhook_refusal_reads_like_gatekeeper(batch, core, kubesim):
    batch.create_namespaced_job(NS, job_body("policy", scenario="refused:refusal=azure-policy"))
    kubesim.advance(1)
    message = job_events(core, "policy", "Warning")[0].message
    assert message.startswith('Error creating: admission webhook "validation.gatekeeper.sh" denied the request')


# --- 2. Warning events with Failed; grace periods ---------------------------------------------------


def test_deadline_warning_is_recorded_with_failed_after_the_grace_period_not_at_failure_target(batch, core, kubesim):
    # recordJobFinished runs from enactJobFinished, once no pod is terminating: a container that
    # ignores SIGTERM is killed (137) when terminationGracePeriodSeconds (30) ends.
    batch.create_namespaced_job(NS, job_body("slow", scenario="run-forever", activeDeadlineSeconds=10))
    kubesim.advance(10)
    job = batch.read_namespaced_job("slow", NS)
    assert cond_types(job) == [("FailureTarget", "True")] and job.status.terminating == 1
    assert job_events(core, "slow", "Warning") == []
    kubesim.advance(29)
    assert job_events(core, "slow", "Warning") == []
    kubesim.advance(1)
    job = batch.read_namespaced_job("slow", NS)
    assert cond_types(job) == [("FailureTarget", "True"), ("Failed", "True")]
    assert [e.reason for e in job_events(core, "slow", "Warning")] == ["DeadlineExceeded"]
    terminated = pods_of(core, "slow") or []
    assert terminated == []  # gone with its grace period


def test_container_that_handles_sigterm_exits_143_within_the_grace_period(core, kubesim):
    kubesim.set_scenario("term-", Scenario("run-forever", terminate=4))
    kubesim.set_scenario("kill-", Scenario("run-forever"))
    for name, grace in (("term-1", 30), ("kill-1", 5)):
        core.create_namespaced_pod(NS, {"metadata": {"name": name}, "spec": {
            "terminationGracePeriodSeconds": grace, "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox"}]}})
    kubesim.advance(3)
    finalizer = {"metadata": {"finalizers": ["example.com/hold"]}}
    for name in ("term-1", "kill-1"):
        core.patch_namespaced_pod(name, NS, finalizer)
        core.delete_namespaced_pod(name, NS)
    kubesim.advance(10)
    codes = {p.metadata.name: p.status.container_statuses[0].state.terminated.exit_code
             for p in core.list_namespaced_pod(NS).items}
    assert codes == {"term-1": 143, "kill-1": 137}


# --- 3. managedBy -----------------------------------------------------------------------------------


def test_job_managed_by_another_controller_is_left_alone(batch, core, kubesim):
    # syncJob skips a Job whose spec.managedBy is not kubernetes.io/job-controller (1.32+).
    batch.create_namespaced_job(NS, job_body("foreign", managedBy="example.com/other-controller"))
    batch.create_namespaced_job(NS, job_body("ours", managedBy="kubernetes.io/job-controller"))
    kubesim.advance(600)
    foreign = batch.read_namespaced_job("foreign", NS)
    assert foreign.status.start_time is None and not foreign.status.conditions and pods_of(core, "foreign") == []
    assert ("Complete", "True") in cond_types(batch.read_namespaced_job("ours", NS))
    with pytest.raises(ApiException) as err:
        batch.patch_namespaced_job("foreign", NS, {"spec": {"managedBy": "kubernetes.io/job-controller"}})
    assert err.value.status == 422 and "field is immutable" in body_of(err.value)["message"]


# --- 4. TTL 0 ---------------------------------------------------------------------------------------


def test_ttl_zero_deletes_the_finished_job_and_its_pods_at_once(batch, core, kubesim):
    # ttlafterfinished_controller: expires at the finish time + TTL, deletes with Foreground.
    batch.create_namespaced_job(NS, job_body("gone", scenario="succeed:after=5", ttlSecondsAfterFinished=0))
    kubesim.advance(4)
    assert batch.read_namespaced_job("gone", NS).status.active == 1
    kubesim.advance(2)
    with pytest.raises(ApiException) as err:
        batch.read_namespaced_job("gone", NS)
    assert err.value.status == 404 and pods_of(core, "gone") == []


# --- 6. Kueue manageJobsWithoutQueueName ------------------------------------------------------------


def test_kueue_managing_jobs_without_queue_name_suspends_every_new_job_in_the_create_answer():
    with KubeSim(seed=3, kueue_manage_all=True) as sim:
        api = api_client_for(sim)
        try:
            batch = client.BatchV1Api(api)
            created = batch.create_namespaced_job(NS, job_body("plain", scenario="succeed:after=5"))
            assert created.spec.suspend is True and not (created.metadata.labels or {})
            sim.advance(60)
            job = batch.read_namespaced_job("plain", NS)
            assert (cond(job, "Suspended").status, job.status.start_time) == ("True", None)
            sim.admit(NS, "plain")
            sim.advance(10)
            assert ("Complete", "True") in cond_types(batch.read_namespaced_job("plain", NS))
        finally:
            api.close()



def test_kueue_managing_jobs_without_queue_name_can_preempt_a_started_job_without_a_label():
    # Kueue's jobframework reconciler stops a preempted workload by setting spec.suspend again; the
    # Job controller (syncJob, suspend branch) then deletes the active pods and sets Suspended.
    with KubeSim(seed=3, kueue_manage_all=True) as sim:
        api = api_client_for(sim)
        try:
            batch = client.BatchV1Api(api)
            core = client.CoreV1Api(api)
            batch.create_namespaced_job(NS, job_body("plain", scenario="run-forever"))
            sim.admit(NS, "plain")
            sim.advance(10)
            started = batch.read_namespaced_job("plain", NS)
            assert started.status.start_time is not None and started.status.active == 1
            sim.preempt(NS, "plain")
            sim.advance(60)
            job = batch.read_namespaced_job("plain", NS)
            assert job.spec.suspend is True and not (job.metadata.labels or {}).get("kueue.x-k8s.io/queue-name")
            assert cond(job, "Suspended").status == "True" and pods_of(core, "plain") == []
            sim.admit(NS, "plain")
            sim.advance(5)
            assert batch.read_namespaced_job("plain", NS).status.active == 1
        finally:
            api.close()

# --- 7. FailedMount and CreateContainerConfigError --------------------------------------------------


def test_missing_volume_secret_keeps_the_pod_container_creating_with_failed_mount_events(batch, core, kubesim):
    body = job_body("mount", scenario="mount-error")
    body["spec"]["template"]["spec"]["volumes"] = [{"name": "creds", "secret": {"secretName": "db-creds"}}]
    batch.create_namespaced_job(NS, body)
    kubesim.advance(300)
    pod = pods_of(core, "mount")[0]
    assert pod.status.phase == "Pending"
    assert pod.status.container_statuses[0].state.waiting.reason == "ContainerCreating"
    events = core.list_namespaced_event(NS, field_selector=f"involvedObject.name={pod.metadata.name},"
                                                           "reason=FailedMount").items
    assert len(events) == 1 and events[0].count > 2
    assert events[0].message == 'MountVolume.SetUp failed for volume "creds" : secret "db-creds" not found'
    assert batch.read_namespaced_job("mount", NS).status.active == 1


def test_missing_env_secret_is_create_container_config_error(batch, core, kubesim):
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api-token", "key": "token"}}}]
    batch.create_namespaced_job(NS, job_body("cfg", scenario="config-error:recover=60:after=5", env=env))
    kubesim.advance(30)
    waiting = pods_of(core, "cfg")[0].status.container_statuses[0].state.waiting
    assert (waiting.reason, waiting.message) == ("CreateContainerConfigError", 'secret "api-token" not found')
    kubesim.advance(60)
    assert ("Complete", "True") in cond_types(batch.read_namespaced_job("cfg", NS))


# --- 8. podFailurePolicy, Indexed, backoffLimitPerIndex, successPolicy ------------------------------


def test_fail_job_rule_ends_the_job_with_pod_failure_policy_at_the_first_match(batch, kubesim):
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}
    batch.create_namespaced_job(NS, job_body("fatal", scenario="fail:exit=42:after=3", backoffLimit=6,
                                             podFailurePolicy=policy))
    kubesim.advance(30)
    job = batch.read_namespaced_job("fatal", NS)
    failed = cond(job, "Failed")
    assert failed.reason == "PodFailurePolicy" and job.status.failed == 1
    assert failed.message.startswith("Container main for pod default/fatal-")
    assert failed.message.endswith("failed with exit code 42 matching FailJob rule at index 0")


def test_ignore_rule_on_disruption_does_not_count_the_evicted_pod(batch, core, kubesim):
    policy = {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}
    batch.create_namespaced_job(NS, job_body("drained", scenario="succeed:after=60", backoffLimit=0,
                                             podFailurePolicy=policy))
    kubesim.advance(5)
    pod = pods_of(core, "drained")[0]
    kubesim.evict(NS, pod.metadata.name)
    kubesim.advance(31)
    job = batch.read_namespaced_job("drained", NS)
    assert not job.status.failed and job.status.active == 1 and not job.status.conditions
    kubesim.advance(120)
    assert ("Complete", "True") in cond_types(batch.read_namespaced_job("drained", NS))


def test_indexed_job_with_backoff_limit_per_index_reports_failed_indexes(batch, core, kubesim):
    created = batch.create_namespaced_job(NS, job_body(
        "idx", scenario="fail:indexes=1:after=3", completionMode="Indexed", completions=4, parallelism=4,
        backoffLimitPerIndex=1))
    assert created.spec.backoff_limit == 2147483647  # SetDefaults_Job with backoffLimitPerIndex
    kubesim.advance(1)
    pods = pods_of(core, "idx")
    assert sorted(p.metadata.annotations["batch.kubernetes.io/job-completion-index"] for p in pods) == \
        ["0", "1", "2", "3"]
    kubesim.advance(600)
    job = batch.read_namespaced_job("idx", NS)
    assert (job.status.completed_indexes, job.status.failed_indexes) == ("0,2-3", "1")
    assert cond(job, "Failed").reason == "FailedIndexes" and job.status.failed == 2
    assert cond(job, "Failed").message == "Job has failed indexes"


def test_max_failed_indexes_ends_the_job_early(batch, kubesim):
    batch.create_namespaced_job(NS, job_body(
        "maxidx", scenario="fail:indexes=0,1:after=3", completionMode="Indexed", completions=3, parallelism=1,
        backoffLimitPerIndex=0, maxFailedIndexes=1))
    kubesim.advance(600)
    job = batch.read_namespaced_job("maxidx", NS)
    assert cond(job, "Failed").reason == "MaxFailedIndexesExceeded"
    assert job.status.failed_indexes == "0-1" and job.status.completed_indexes == ""


def test_success_policy_completes_with_success_criteria_met_reason_success_policy(batch, kubesim):
    batch.create_namespaced_job(NS, job_body(
        "leader", scenario="succeed:after=5", completionMode="Indexed", completions=3, parallelism=3,
        successPolicy={"rules": [{"succeededIndexes": "0"}]}))
    kubesim.set_scenario("never-", Scenario("run-forever"))
    kubesim.advance(60)
    job = batch.read_namespaced_job("leader", NS)
    met = cond(job, "SuccessCriteriaMet")
    assert (met.reason, met.message) == ("SuccessPolicy", "Matched rules at index 0")
    assert ("Complete", "True") in cond_types(job)


# --- 9. pod deletion and eviction -------------------------------------------------------------------


def test_deleted_pod_counts_as_failed_at_once_and_is_replaced(batch, core, kubesim):
    # isPodFailed: under the default podReplacementPolicy a pod with a deletionTimestamp is failed.
    batch.create_namespaced_job(NS, job_body("victim", scenario="succeed:after=60"))
    kubesim.advance(5)
    victim = pods_of(core, "victim")[0].metadata.name
    core.delete_namespaced_pod(victim, NS)
    kubesim.advance(1)
    job = batch.read_namespaced_job("victim", NS)
    assert job.status.failed == 1 and not job.status.active and job.status.terminating == 1
    # The replacement comes after the pod-failure back-off (10 s), while the victim still terminates.
    kubesim.advance(10)
    job = batch.read_namespaced_job("victim", NS)
    assert job.status.failed == 1 and job.status.active == 1 and job.status.terminating == 1
    assert len(pods_of(core, "victim")) == 2


def test_replacement_waits_for_termination_under_pod_replacement_policy_failed(batch, core, kubesim):
    batch.create_namespaced_job(NS, job_body("patient", scenario="succeed:after=60", podReplacementPolicy="Failed"))
    kubesim.advance(5)
    core.delete_namespaced_pod(pods_of(core, "patient")[0].metadata.name, NS)
    kubesim.advance(1)
    job = batch.read_namespaced_job("patient", NS)
    assert not job.status.failed and not job.status.active and job.status.terminating == 1
    kubesim.advance(30)
    job = batch.read_namespaced_job("patient", NS)
    assert job.status.failed == 1 and not job.status.terminating
    kubesim.advance(10)
    assert batch.read_namespaced_job("patient", NS).status.active == 1


def test_node_pressure_eviction_leaves_a_failed_evicted_pod_with_disruption_target(batch, core, kubesim):
    batch.create_namespaced_job(NS, job_body("pressure", scenario="succeed:after=60", backoffLimit=0))
    kubesim.advance(5)
    name = pods_of(core, "pressure")[0].metadata.name
    kubesim.evict(NS, name, by="kubelet")
    pod = core.read_namespaced_pod(name, NS)
    assert (pod.status.phase, pod.status.reason) == ("Failed", "Evicted")
    disruption = [c for c in pod.status.conditions if c.type == "DisruptionTarget"][0]
    assert (disruption.status, disruption.reason) == ("True", "TerminationByKubelet")
    assert pod.status.container_statuses[0].state.terminated.exit_code == 137
    kubesim.advance(1)
    assert cond(batch.read_namespaced_job("pressure", NS), "Failed").reason == "BackoffLimitExceeded"


# --- 9. events.k8s.io/v1 events -----------------------------------------------------------------------


def test_scheduler_events_read_back_with_event_time_and_series_and_no_count(batch, core, kubesim):
    batch.create_namespaced_job(NS, job_body("huge", scenario="unschedulable"))
    kubesim.advance(1000)
    events = core.list_namespaced_event(NS, field_selector="reason=FailedScheduling").items
    assert len(events) == 1
    event = events[0]
    assert event.count is None and event.first_timestamp is None and event.last_timestamp is None
    assert event.event_time is not None and event.series.count == 4 and event.series.last_observed_time
    assert (event.reporting_component, event.action) == ("default-scheduler", "Scheduling")


# --- 10. validation as the API server does it --------------------------------------------------------


def test_active_deadline_zero_is_a_valid_job_that_fails_at_once(batch, kubesim):
    batch.create_namespaced_job(NS, job_body("zero", scenario="run-forever:terminate=0", activeDeadlineSeconds=0))
    kubesim.advance(1)
    assert cond(batch.read_namespaced_job("zero", NS), "Failed").reason == "DeadlineExceeded"


@pytest.mark.parametrize(("version", "accepted"), [("1.31.2", False), ("1.32.0", True), ("1.34.1", True)])
def test_relaxed_env_names_follow_the_cluster_version(version, accepted):
    with KubeSim(seed=5, version=version) as sim:
        api = api_client_for(sim)
        try:
            batch = client.BatchV1Api(api)
            assert client.VersionApi(api).get_code().minor == version.split(".")[1]
            body = job_body("envs", env=[{"name": "MY VAR:1", "value": "x"}])
            if accepted:
                batch.create_namespaced_job(NS, body)
            else:
                with pytest.raises(ApiException) as err:
                    batch.create_namespaced_job(NS, body)
                assert err.value.status == 422
            with pytest.raises(ApiException) as err:
                batch.create_namespaced_job(NS, job_body("eq", env=[{"name": "A=B", "value": "x"}]))
            assert err.value.status == 422
        finally:
            api.close()


def test_empty_in_selector_is_accepted_and_matches_empty_values(batch, kubesim):
    batch.create_namespaced_job(NS, job_body("blank", labels={"team": ""}))
    batch.create_namespaced_job(NS, job_body("named", labels={"team": "a"}))
    names = [j.metadata.name for j in batch.list_namespaced_job(NS, label_selector="team in ()").items]
    assert names == ["blank"]
