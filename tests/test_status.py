"""decode_job_status: the seed's status table, refined by the Kubernetes facts peer runners got wrong.

Every test builds the Job (and pods) as the API server returns them and checks status, phase and
reason together, so a change to any row of the decoder fails the test for that row.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.kube.jobspec import RUN_ID_LABEL
from shared.kube.status import MAX_MESSAGE_CHARS, decode_job_status, job_for_decoding, pod_for_decoding
from shared.runs.model import Phase, RunState, Status

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
STALL = 300


def ts(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def cond(type_: str, status: object = "True", reason: str | None = None, message: str | None = None,
         seconds_ago: float = 10) -> dict:
    c = {"type": type_, "status": status, "lastProbeTime": ts(seconds_ago), "lastTransitionTime": ts(seconds_ago)}
    if reason is not None:
        c["reason"] = reason
    if message is not None:
        c["message"] = message
    return c


def job(*conditions: dict, labels: dict | None = None, spec: dict | None = None, **status) -> dict:
    body = {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "nightly-etl-abcdefghij", "namespace": "default", "labels": labels or {}},
            "spec": {"backoffLimit": 3, **(spec or {})},
            "status": dict(status)}
    if conditions:
        body["status"]["conditions"] = list(conditions)
    return body


def pod(name: str = "nightly-etl-abcdefghij-x7k2p", *, phase: str = "Pending", created_ago: float = 60,
        waiting: tuple[str, str] | None = None, init_waiting: tuple[str, str] | None = None,
        unschedulable_ago: float | None = None, deleting: bool = False, restarts: int = 0,
        last_terminated: dict | None = None) -> dict:
    p = {"metadata": {"name": name, "creationTimestamp": ts(created_ago)}, "status": {"phase": phase}}
    if deleting:
        p["metadata"]["deletionTimestamp"] = ts(1)
    if waiting:
        cs = {"name": "main", "restartCount": restarts,
              "state": {"waiting": {"reason": waiting[0], "message": waiting[1]}}}
        if last_terminated:
            cs["lastState"] = {"terminated": last_terminated}
        p["status"]["containerStatuses"] = [cs]
    if init_waiting:
        p["status"]["initContainerStatuses"] = [
            {"name": "fetch", "state": {"waiting": {"reason": init_waiting[0], "message": init_waiting[1]}}}]
    if unschedulable_ago is not None:
        p["status"]["conditions"] = [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available",
            "lastTransitionTime": ts(unschedulable_ago)}]
    return p


def decode(j, pods=(), **kw) -> RunState:
    """The decoded state; every case also proves that what the sweep keeps of a listed Job and its
    pods (``job_for_decoding``, ``pod_for_decoding``) decodes to the very same state."""
    kw.setdefault("now", NOW)
    kw.setdefault("stall_after_seconds", STALL)
    state = decode_job_status(j, pods, **kw)
    trimmed_pods = [pod_for_decoding(p) if isinstance(p, dict) else p for p in pods]
    trimmed = decode_job_status(None if j is None else job_for_decoding(j), trimmed_pods, **kw)
    assert trimmed == state, f"the trimmed Job decodes to {trimmed}, the whole Job to {state}"
    return state


def triple(state: RunState) -> tuple:
    return state.status, state.phase, state.reason


KUEUE = {"kueue.x-k8s.io/queue-name": "team-a"}


# ----------------------------------------------------------------------- the seed's status table


def test_complete_true_is_success():
    state = decode(job(cond("Complete", reason="CompletionsReached", message="Reached expected number of succeeded pods"),
                       succeeded=1, startTime=ts(100), completionTime=ts(5)))
    assert triple(state) == (Status.SUCCESS, Phase.SUCCEEDED, "CompletionsReached")
    assert state.message == "Reached expected number of succeeded pods"
    assert state.terminal


def test_failed_true_is_failed_with_the_conditions_reason_and_message():
    state = decode(job(cond("Failed", reason="BackoffLimitExceeded", message="Job has reached the specified backoff limit"),
                       failed=4, startTime=ts(100)))
    assert triple(state) == (Status.FAILED, Phase.FAILED, "BackoffLimitExceeded")
    assert state.message == "Job has reached the specified backoff limit"


def test_suspended_without_kueue_is_cancelled_as_the_seed_says():
    state = decode(job(cond("Suspended", reason="JobSuspended", message="Job suspended"), startTime=ts(100)))
    assert triple(state) == (Status.CANCELLED, Phase.CANCELLED, "JobSuspended")
    assert "Job suspended" in state.message


def test_active_pods_are_running():
    state = decode(job(active=2, startTime=ts(30)))
    assert triple(state) == (Status.RUNNING, Phase.RUNNING, "PodsActive")
    assert state.message == "2 pod(s) active"


def test_start_time_alone_with_no_pod_is_never_running():
    # The shape of refused pod creation: startTime, active 0, no pod, no condition.
    state = decode(job(startTime=ts(30)))
    assert triple(state) == (Status.STARTING, Phase.PENDING, "NoPods")
    assert "FailedCreate" in state.message
    assert triple(decode(job(startTime=ts(STALL + 1)))) == (Status.STARTING, Phase.STALLED, "NoPods")


QUOTA = ('Error creating: pods "nightly-etl-abcdefghij-x7k2p" is forbidden: exceeded quota: compute-quota, '
         'requested: limits.cpu=1, used: limits.cpu=8, limited: limits.cpu=8')


def failed_create(message: str = QUOTA, seconds_ago: float = 5, name: str = "nightly-etl-abcdefghij") -> dict:
    return {"type": "Warning", "reason": "FailedCreate", "message": message, "count": 3,
            "involvedObject": {"kind": "Job", "name": name}, "lastTimestamp": ts(seconds_ago)}


def test_refused_pods_are_pending_failed_create_with_the_api_servers_message_then_stalled():
    events = [failed_create("Error creating: older", seconds_ago=20), failed_create()]
    state = decode(job(startTime=ts(30)), events=events)
    assert triple(state) == (Status.STARTING, Phase.PENDING, "FailedCreate")
    assert state.message.endswith(QUOTA) and ts(30) in state.message
    stalled = decode(job(startTime=ts(STALL + 1)), events=[failed_create("(combined from similar events): " + QUOTA)])
    assert triple(stalled) == (Status.STARTING, Phase.STALLED, "FailedCreate") and stalled.message.endswith(QUOTA)


def test_failed_create_of_another_job_or_a_normal_event_is_not_evidence():
    events = [failed_create(name="other-job"), {**failed_create(), "type": "Normal"}]
    assert decode(job(startTime=ts(30)), events=events).reason == "NoPods"


def test_started_job_with_pods_or_counts_is_running_not_refused():
    assert decode(job(startTime=ts(30)), [pod(phase="Running")]).status == Status.RUNNING
    uncounted = job(startTime=ts(30), uncountedTerminatedPods={"succeeded": ["uid-1"]})
    assert triple(decode(uncounted)) == (Status.RUNNING, Phase.RUNNING, "JobStarted")
    assert triple(decode(job(startTime=ts(30), terminating=1))) == (Status.RUNNING, Phase.RUNNING, "JobStarted")


def test_no_conditions_and_no_start_time_is_starting():
    assert triple(decode(job())) == (Status.STARTING, Phase.PENDING, "NotStarted")


def test_a_job_without_any_status_is_starting():
    j = job()
    del j["status"]
    assert triple(decode(j)) == (Status.STARTING, Phase.PENDING, "NotStarted")


@pytest.mark.parametrize("status, reason", [
    pytest.param({"conditions": "Complete"}, "UnrecognizedStatus", id="conditions-not-a-list"),
    pytest.param(["Complete"], "UnrecognizedStatus", id="status-not-an-object"),
    pytest.param({"active": "1"}, "UnrecognizedStatus", id="counter-not-a-number"),
    pytest.param({"active": -1}, "UnrecognizedStatus", id="counter-negative"),
    pytest.param({"succeeded": 1}, "UnrecognizedStatus", id="pods-counted-but-never-started"),
    pytest.param({"conditions": [{"type": "Frobnicated", "status": "True"}]}, "UnrecognizedCondition",
                 id="unknown-condition-type"),
])
def test_anything_unrecognised_is_unknown(status, reason):
    j = job()
    j["status"] = status
    state = decode(j)
    assert (state.status, state.phase, state.reason) == (Status.UNKNOWN, Phase.UNKNOWN, reason)
    assert not state.terminal


# ------------------------------------------------- (B1) terminal means the *string* "True"


@pytest.mark.parametrize("value", ["False", "true", "TRUE", True, "Unknown", None],
                         ids=["False", "lowercase-true", "uppercase-TRUE", "json-true", "Unknown", "null"])
def test_only_the_string_True_makes_a_condition_count(value):
    state = decode(job(cond("Complete", status=value), cond("Failed", status=value), active=1, startTime=ts(30)))
    assert triple(state) == (Status.RUNNING, Phase.RUNNING, "PodsActive")


def test_success_criteria_met_is_still_running_as_succeeding():
    state = decode(job(cond("SuccessCriteriaMet", reason="CompletionsReached", message="Reached expected number of succeeded pods"),
                       succeeded=1, terminating=1, startTime=ts(30)))
    assert triple(state) == (Status.RUNNING, Phase.SUCCEEDING, "CompletionsReached")
    assert not state.terminal


def test_failure_target_is_still_running_as_failing_with_its_reason():
    state = decode(job(cond("FailureTarget", reason="BackoffLimitExceeded", message="Job has reached the specified backoff limit"),
                       failed=4, terminating=1, startTime=ts(30)))
    assert triple(state) == (Status.RUNNING, Phase.FAILING, "BackoffLimitExceeded")
    assert not state.terminal


def test_complete_after_success_criteria_met_is_success():
    state = decode(job(cond("SuccessCriteriaMet", reason="CompletionsReached", seconds_ago=20),
                       cond("Complete", reason="CompletionsReached", seconds_ago=5), succeeded=1, startTime=ts(60)))
    assert triple(state) == (Status.SUCCESS, Phase.SUCCEEDED, "CompletionsReached")


def test_failed_after_failure_target_is_failed():
    state = decode(job(cond("FailureTarget", reason="DeadlineExceeded", seconds_ago=20),
                       cond("Failed", reason="DeadlineExceeded", seconds_ago=5), startTime=ts(60)))
    assert triple(state) == (Status.FAILED, Phase.FAILED, "DeadlineExceeded")


def test_complete_and_failed_both_true_the_later_one_wins():
    later_success = job(cond("Failed", reason="BackoffLimitExceeded", seconds_ago=50),
                        cond("Complete", reason="CompletionsReached", seconds_ago=5))
    later_failure = job(cond("Complete", reason="CompletionsReached", seconds_ago=50),
                        cond("Failed", reason="BackoffLimitExceeded", seconds_ago=5))
    assert triple(decode(later_success)) == (Status.SUCCESS, Phase.SUCCEEDED, "CompletionsReached")
    assert triple(decode(later_failure)) == (Status.FAILED, Phase.FAILED, "BackoffLimitExceeded")


def test_complete_and_failed_at_the_same_instant_is_failed():
    state = decode(job(cond("Complete", reason="CompletionsReached", seconds_ago=5),
                       cond("Failed", reason="BackoffLimitExceeded", seconds_ago=5)))
    assert triple(state) == (Status.FAILED, Phase.FAILED, "BackoffLimitExceeded")


def test_a_condition_that_went_back_to_false_does_not_count():
    state = decode(job(cond("Suspended", status="False", reason="JobResumed", message="Job resumed"),
                       active=1, startTime=ts(30)))
    assert triple(state) == (Status.RUNNING, Phase.RUNNING, "PodsActive")


# --------------------------------------------------------------- (B2) Suspended is not Cancelled


def test_suspended_by_kueue_is_queued_not_cancelled():
    state = decode(job(cond("Suspended", reason="JobSuspended", message="Job suspended"), labels=KUEUE,
                       spec={"suspend": True}))
    assert triple(state) == (Status.STARTING, Phase.QUEUED, "JobSuspended")
    assert "team-a" in state.message
    assert not state.terminal


def test_preempted_by_kueue_after_running_is_queued_again():
    state = decode(job(cond("Suspended", reason="JobSuspended", message="Job suspended"), labels=KUEUE,
                       spec={"suspend": True}, startTime=ts(600), failed=0, active=0))
    assert triple(state) == (Status.STARTING, Phase.QUEUED, "JobSuspended")


def test_kueue_job_created_suspended_before_any_condition_is_queued():
    state = decode(job(labels=KUEUE, spec={"suspend": True}))
    assert triple(state) == (Status.STARTING, Phase.QUEUED, "JobSuspended")


def test_kueue_queue_named_by_an_annotation_is_queued_in_that_queue_also_from_what_the_sweep_keeps():
    annotated = job(cond("Suspended", reason="JobSuspended", message="Job suspended"), spec={"suspend": True})
    annotated["metadata"]["annotations"] = {**KUEUE, "team": "data"}  # Kueue's older way to name the queue
    state = decode(annotated)  # decode() also checks the trimmed Job decodes the same
    assert triple(state) == (Status.STARTING, Phase.QUEUED, "JobSuspended")
    assert "'team-a'" in state.message


def test_what_the_sweep_keeps_of_a_pod_still_carries_its_run_id_label():
    # The sweep matches each listed pod to its run by this label (shared.usecases.sweeping).
    listed = pod()
    listed["metadata"]["labels"] = {RUN_ID_LABEL: "nightly-etl-abcdefghij", "batch.kubernetes.io/job-name": "x"}
    kept = pod_for_decoding(listed)
    assert kept["metadata"]["labels"] == {RUN_ID_LABEL: "nightly-etl-abcdefghij"}
    assert kept["metadata"]["name"] == listed["metadata"]["name"]


def test_job_managed_by_multikueue_and_suspended_is_queued():
    state = decode(job(cond("Suspended", reason="JobSuspended"), spec={"managedBy": "kueue.x-k8s.io/multikueue"}))
    assert triple(state) == (Status.STARTING, Phase.QUEUED, "JobSuspended")


def test_kueue_job_admitted_and_resumed_is_running():
    state = decode(job(cond("Suspended", status="False", reason="JobResumed"), labels=KUEUE,
                       spec={"suspend": False}, active=1, startTime=ts(30)))
    assert triple(state) == (Status.RUNNING, Phase.RUNNING, "PodsActive")


# ---------------------------------------------------- (B3) failed pods are not a failed Job


def test_failed_pods_with_retries_left_are_still_running():
    state = decode(job(failed=2, active=1, startTime=ts(300)))
    assert triple(state) == (Status.RUNNING, Phase.RUNNING, "PodRetrying")
    assert "2 pod(s) failed, 1 active" in state.message and "backoffLimit 3" in state.message


def test_deadline_exceeded_fails_even_with_failures_under_the_backoff_limit():
    state = decode(job(cond("Failed", reason="DeadlineExceeded", message="Job was active longer than specified deadline"),
                       failed=1, active=0, startTime=ts(900)))
    assert triple(state) == (Status.FAILED, Phase.FAILED, "DeadlineExceeded")


def test_pod_failure_policy_fail_job_is_failed_with_its_reason():
    state = decode(job(cond("Failed", reason="PodFailurePolicy",
                            message="Container main for pod default/x exited with non-zero exit code 42 "
                                    "matching FailJob rule at index 0"), failed=1, startTime=ts(60)))
    assert triple(state) == (Status.FAILED, Phase.FAILED, "PodFailurePolicy")
    assert "exit code 42" in state.message


# ---------------------------------------------------------- (B4) stuck pods: pending vs stalled


@pytest.mark.parametrize("reason, message", [
    ("ImagePullBackOff", 'Back-off pulling image "registry.example/etl:9.9"'),
    ("ErrImagePull", 'failed to pull and unpack image "registry.example/etl:9.9": not found'),
    ("CreateContainerConfigError", 'secret "etl-creds" not found'),
    ("InvalidImageName", 'Failed to apply default image tag "Registry/ETL": invalid reference format'),
])
def test_a_pod_waiting_longer_than_the_stall_limit_is_stalled_with_its_reason(reason, message):
    state = decode(job(active=1, startTime=ts(400)), [pod(created_ago=STALL + 60, waiting=(reason, message))])
    assert triple(state) == (Status.STARTING, Phase.STALLED, reason)
    assert message in state.message and "nightly-etl-abcdefghij-x7k2p" in state.message


@pytest.mark.parametrize("reason", ["ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError", "InvalidImageName"])
def test_a_pod_waiting_shorter_than_the_stall_limit_is_pending_with_its_reason(reason):
    state = decode(job(active=1, startTime=ts(40)), [pod(created_ago=40, waiting=(reason, "..."))])
    assert triple(state) == (Status.STARTING, Phase.PENDING, reason)


def test_a_pod_waiting_exactly_the_stall_limit_is_not_stalled_yet():
    state = decode(job(active=1, startTime=ts(STALL)), [pod(created_ago=STALL, waiting=("ImagePullBackOff", "x"))])
    assert state.phase == Phase.PENDING


def test_an_init_container_stuck_on_its_image_stalls_the_run():
    state = decode(job(active=1, startTime=ts(900)),
                   [pod(created_ago=900, init_waiting=("ImagePullBackOff", 'Back-off pulling image "fetch:1"'))])
    assert triple(state) == (Status.STARTING, Phase.STALLED, "ImagePullBackOff")
    assert "fetch" in state.message


def test_an_unschedulable_pod_is_measured_from_its_condition_not_its_creation():
    # Created long ago, but only unschedulable since a node went away 60 s ago: not stalled yet.
    fresh = decode(job(active=1, startTime=ts(2000)), [pod(created_ago=2000, unschedulable_ago=60)])
    assert triple(fresh) == (Status.STARTING, Phase.PENDING, "Unschedulable")
    stale = decode(job(active=1, startTime=ts(2000)), [pod(created_ago=2000, unschedulable_ago=STALL + 1)])
    assert triple(stale) == (Status.STARTING, Phase.STALLED, "Unschedulable")
    assert "Insufficient cpu" in stale.message


def test_a_custom_stall_limit_is_honoured():
    p = [pod(created_ago=90, waiting=("ImagePullBackOff", "x"))]
    assert decode(job(active=1), p, stall_after_seconds=60).phase == Phase.STALLED
    assert decode(job(active=1), p, stall_after_seconds=120).phase == Phase.PENDING


def test_a_stalled_message_does_not_change_as_time_passes():
    j, p = job(active=1, startTime=ts(900)), [pod(created_ago=900, waiting=("ImagePullBackOff", "x"))]
    assert decode(j, p, now=NOW) == decode(j, p, now=NOW + timedelta(minutes=10))


def test_a_stuck_pod_without_a_timestamp_is_pending_not_stalled():
    p = pod(waiting=("ImagePullBackOff", "x"))
    del p["metadata"]["creationTimestamp"]
    assert triple(decode(job(active=1), [p])) == (Status.STARTING, Phase.PENDING, "ImagePullBackOff")


def test_a_long_kubelet_message_is_trimmed():
    state = decode(job(active=1), [pod(created_ago=900, waiting=("ErrImagePull", "x" * 5000))])
    assert state.phase == Phase.STALLED and len(state.message) <= MAX_MESSAGE_CHARS


def test_a_running_pod_keeps_the_run_running_beside_a_stuck_sibling():
    state = decode(job(active=2, startTime=ts(900)),
                   [pod("a", phase="Running"), pod("b", created_ago=900, unschedulable_ago=900)])
    assert triple(state) == (Status.RUNNING, Phase.RUNNING, "PodsActive")


def test_a_terminating_pod_does_not_stall_the_run():
    state = decode(job(active=1, startTime=ts(900)),
                   [pod(created_ago=900, waiting=("ImagePullBackOff", "x"), deleting=True)])
    assert triple(state) == (Status.RUNNING, Phase.RUNNING, "PodsActive")


def test_crash_loop_back_off_is_running_with_the_reason_and_last_exit():
    state = decode(job(active=1, startTime=ts(900), spec={"template": {"spec": {"restartPolicy": "OnFailure"}}}),
                   [pod(phase="Running", created_ago=900, restarts=4,
                        waiting=("CrashLoopBackOff", "back-off 1m20s restarting failed container=main"),
                        last_terminated={"exitCode": 137, "reason": "OOMKilled"})])
    assert triple(state) == (Status.RUNNING, Phase.RUNNING, "CrashLoopBackOff")
    assert "137" in state.message and "OOMKilled" in state.message and "restarts: 4" in state.message


def test_a_pod_creating_its_container_leaves_the_seed_rule_running():
    state = decode(job(active=1, startTime=ts(20)), [pod(waiting=("ContainerCreating", ""))])
    assert triple(state) == (Status.RUNNING, Phase.RUNNING, "PodsActive")


# --------------------------------------------------------------------- (B5) the Job vanished


def test_vanished_job_we_cancelled_is_cancelled_once_its_pods_are_gone():
    state = decode(None, [], cancel_requested=True)
    assert triple(state) == (Status.CANCELLED, Phase.CANCELLED, "CancelRequested")
    assert state.terminal


def test_vanished_job_we_cancelled_is_cancelling_while_pods_terminate():
    state = decode(None, [pod(phase="Running", deleting=True)], cancel_requested=True)
    assert triple(state) == (Status.RUNNING, Phase.CANCELLING, "CancelRequested")
    assert "1 pod(s)" in state.message
    assert not state.terminal


def test_vanished_job_nobody_here_cancelled_is_lost_not_unknown():
    state = decode(None, [])
    assert triple(state) == (Status.FAILED, Phase.LOST, "JobNotFound")
    assert "deleted outside this app" in state.message
    assert state.terminal


def test_cancel_requested_on_a_live_job_is_cancelling():
    state = decode(job(active=1, startTime=ts(30)), cancel_requested=True)
    assert triple(state) == (Status.RUNNING, Phase.CANCELLING, "CancelRequested")


def test_cancel_requested_after_success_criteria_met_is_cancelling():
    state = decode(job(cond("SuccessCriteriaMet"), startTime=ts(30)), cancel_requested=True)
    assert triple(state) == (Status.RUNNING, Phase.CANCELLING, "CancelRequested")


def test_cancel_requested_on_a_suspended_job_is_cancelling_not_queued():
    state = decode(job(cond("Suspended", reason="JobSuspended"), labels=KUEUE), cancel_requested=True)
    assert triple(state) == (Status.RUNNING, Phase.CANCELLING, "CancelRequested")


@pytest.mark.parametrize("condition, expected", [
    (cond("Complete", reason="CompletionsReached"), (Status.SUCCESS, Phase.SUCCEEDED, "CompletionsReached")),
    (cond("Failed", reason="BackoffLimitExceeded"), (Status.FAILED, Phase.FAILED, "BackoffLimitExceeded")),
], ids=["complete", "failed"])
def test_a_terminal_condition_already_there_wins_over_a_cancel(condition, expected):
    assert triple(decode(job(condition, startTime=ts(30)), cancel_requested=True)) == expected


# ----------------------------------------------------------------- (B12) counters after finish


def test_counters_after_complete_are_ignored():
    state = decode(job(cond("Complete", reason="CompletionsReached"), succeeded=1, active=1, ready=1, terminating=1,
                       failed=2, startTime=ts(60)),
                   [pod(phase="Running")])
    assert triple(state) == (Status.SUCCESS, Phase.SUCCEEDED, "CompletionsReached")


def test_counters_after_failed_are_ignored():
    state = decode(job(cond("Failed", reason="BackoffLimitExceeded"), active=1, ready=1, startTime=ts(60)),
                   [pod(created_ago=900, waiting=("ImagePullBackOff", "x"))])
    assert triple(state) == (Status.FAILED, Phase.FAILED, "BackoffLimitExceeded")


def test_a_naive_now_is_taken_as_utc():
    p = [pod(created_ago=900, waiting=("ImagePullBackOff", "x"))]
    assert decode(job(active=1), p, now=NOW.replace(tzinfo=None)) == decode(job(active=1), p, now=NOW)


# ------------------------------------------------------ admission holds, mounts, Indexed progress


def test_job_suspended_at_creation_without_any_kueue_label_is_queued_not_cancelled():
    # Kueue's manageJobsWithoutQueueName suspends every new Job: it never started.
    state = decode(job(cond("Suspended", reason="JobSuspended", message="Job suspended"), spec={"suspend": True}))
    assert triple(state) == (Status.STARTING, Phase.QUEUED, "JobSuspended")
    assert "admission" in state.message
    before_condition = decode(job(spec={"suspend": True}), held_at_create=True)
    assert triple(before_condition) == (Status.STARTING, Phase.QUEUED, "JobSuspended")
    preempted = decode(job(cond("Suspended", reason="JobSuspended"), startTime=ts(100)), held_at_create=True)
    assert triple(preempted) == (Status.STARTING, Phase.QUEUED, "JobSuspended")


def mount_event(pod_name: str = "nightly-etl-abcdefghij-x7k2p") -> dict:
    return {"type": "Warning", "reason": "FailedMount", "count": 4, "lastTimestamp": ts(10),
            "message": 'MountVolume.SetUp failed for volume "creds" : secret "db-creds" not found',
            "involvedObject": {"kind": "Pod", "name": pod_name}}


def test_pod_creating_with_failed_mount_events_is_pending_then_stalled_failed_mount():
    creating = pod(waiting=("ContainerCreating", ""), created_ago=60)
    state = decode(job(active=1, startTime=ts(60)), [creating], events=[mount_event()])
    assert triple(state) == (Status.STARTING, Phase.PENDING, "FailedMount")
    assert state.message.endswith('secret "db-creds" not found')
    old = pod(waiting=("ContainerCreating", ""), created_ago=STALL + 5)
    assert triple(decode(job(active=1, startTime=ts(STALL + 5)), [old], events=[mount_event()])) == (
        Status.STARTING, Phase.STALLED, "FailedMount")
    # Without the evidence a creating container is just a pod starting.
    assert decode(job(active=1, startTime=ts(60)), [creating]).reason == "PodsActive"


def test_indexed_job_reports_per_index_progress_and_a_true_retry_message():
    indexed = {"completionMode": "Indexed", "completions": 5, "backoffLimitPerIndex": 1, "backoffLimit": 2147483647}
    j = job(spec=indexed, active=2, failed=2, startTime=ts(60), completedIndexes="0,2", failedIndexes="4")
    state = decode(j)
    assert triple(state) == (Status.RUNNING, Phase.RUNNING, "PodRetrying")
    assert "2147483647" not in state.message
    assert "backoffLimitPerIndex 1" in state.message
    assert "indexes completed 2 of 5 (0,2), failed 1 (4)" in state.message
    from shared.kube.status import index_progress
    assert index_progress(j) == {"completions": 5, "completedIndexes": "0,2", "completed": 2,
                                 "failedIndexes": "4", "failed": 1}
    assert index_progress(job(active=1)) is None
