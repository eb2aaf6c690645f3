"""decode_job_status, whole: status, phase, reason *and* the message a user reads, for each rule,
including what is said when the API leaves a condition's reason or message out.

``test_status`` checks which row of the decoder applies; these check what that row says, so a
message that loses its subject, its count or its fallback fails here.
"""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest

from shared.kube.status import MAX_MESSAGE_CHARS, decode_job_status
from shared.runs.model import Phase, RunState, Status
from tests.test_status import KUEUE, NOW, STALL, cond, decode, job, pod, ts

RUNNING, STARTING = Status.RUNNING, Status.STARTING
POD = "nightly-etl-abcdefghij-x7k2p"


def bare(type_: str, seconds_ago: float = 10) -> dict:
    """A condition with no reason and no message (the API allows both to be absent)."""
    return cond(type_, seconds_ago=seconds_ago)


# ------------------------------------------------------------------------------ conditions


@pytest.mark.parametrize("condition, expected", [
    (bare("Complete"), RunState(Status.SUCCESS, Phase.SUCCEEDED, "Completed", None)),
    (bare("Failed"), RunState(Status.FAILED, Phase.FAILED, "Failed", None)),
    (bare("SuccessCriteriaMet"), RunState(RUNNING, Phase.SUCCEEDING, "SuccessCriteriaMet",
                                          "Success criteria met; waiting for the pods to terminate")),
    (bare("FailureTarget"), RunState(RUNNING, Phase.FAILING, "FailureTarget",
                                     "The Job will fail; waiting for the pods to terminate")),
    (bare("Suspended"), RunState(Status.CANCELLED, Phase.CANCELLED, "JobSuspended",
                                 "The Job was suspended: Job suspended")),
], ids=["complete", "failed", "success-criteria-met", "failure-target", "suspended"])
def test_a_condition_without_reason_or_message_gets_the_documented_defaults(condition, expected):
    assert decode(job(condition, startTime=ts(60))) == expected


@pytest.mark.parametrize("type_, status, phase", [
    ("Complete", Status.SUCCESS, Phase.SUCCEEDED),
    ("Failed", Status.FAILED, Phase.FAILED),
    ("SuccessCriteriaMet", RUNNING, Phase.SUCCEEDING),
    ("FailureTarget", RUNNING, Phase.FAILING),
])
def test_a_conditions_own_reason_and_message_are_what_the_run_says(type_, status, phase):
    state = decode(job(cond(type_, reason="ByTheController", message="as the controller put it"), startTime=ts(60)))
    assert state == RunState(status, phase, "ByTheController", "as the controller put it")


def test_a_suspended_job_keeps_the_conditions_reason_and_message():
    state = decode(job(cond("Suspended", reason="JobSuspended", message="Job suspended by the operator"),
                       startTime=ts(60)))
    assert state == RunState(Status.CANCELLED, Phase.CANCELLED, "JobSuspended",
                             "The Job was suspended: Job suspended by the operator")


def test_a_job_kueue_holds_names_its_queue():
    state = decode(job(bare("Suspended"), labels=KUEUE))
    assert state == RunState(STARTING, Phase.QUEUED, "JobSuspended",
                             "Queued by Kueue in queue 'team-a': waiting for admission (Job suspended)")


def test_a_job_kueue_holds_without_a_queue_name_says_so_without_one():
    held = job(cond("Suspended", reason="Preempted", message="Preempted to make room"),
               spec={"managedBy": "kueue.x-k8s.io/multikueue"})
    assert decode(held) == RunState(STARTING, Phase.QUEUED, "Preempted",
                                    "Queued by Kueue: waiting for admission (Preempted to make room)")


def test_a_job_created_suspended_for_kueue_is_queued_before_any_condition():
    assert decode(job(labels=KUEUE, spec={"suspend": True})) == RunState(
        STARTING, Phase.QUEUED, "JobSuspended", "Queued by Kueue in queue 'team-a': waiting for admission")
    multikueue = job(spec={"suspend": True, "managedBy": "kueue.x-k8s.io/multikueue"})
    assert decode(multikueue) == RunState(STARTING, Phase.QUEUED, "JobSuspended",
                                          "Queued by Kueue: waiting for admission")


def test_a_kueue_job_that_is_not_suspended_and_has_not_started_is_pending():
    assert decode(job(labels=KUEUE, spec={"suspend": False})) == RunState(
        STARTING, Phase.PENDING, "NotStarted", "The Job has not started a pod yet")


def test_the_later_of_two_contradicting_conditions_decides_and_a_tie_goes_to_the_failure():
    success_later = job(cond("SuccessCriteriaMet", seconds_ago=5), cond("FailureTarget", seconds_ago=20),
                        startTime=ts(60))
    assert decode(success_later).phase == Phase.SUCCEEDING
    failure_later = job(cond("SuccessCriteriaMet", seconds_ago=20), cond("FailureTarget", seconds_ago=5),
                        startTime=ts(60))
    assert decode(failure_later).phase == Phase.FAILING
    tie = job(cond("SuccessCriteriaMet", seconds_ago=5), cond("FailureTarget", seconds_ago=5), startTime=ts(60))
    assert decode(tie).phase == Phase.FAILING


def test_a_repeated_condition_type_counts_its_latest_entry_and_on_a_tie_the_last_listed():
    older, newer = cond("Failed", reason="Older", seconds_ago=30), cond("Failed", reason="Newer", seconds_ago=5)
    assert decode(job(newer, older, startTime=ts(60))).reason == "Newer"
    assert decode(job(older, newer, startTime=ts(60))).reason == "Newer"
    first, second = cond("Failed", reason="First", seconds_ago=5), cond("Failed", reason="Second", seconds_ago=5)
    assert decode(job(first, second, startTime=ts(60))).reason == "Second"


def test_entries_that_are_not_true_conditions_are_skipped_not_the_end_of_the_list():
    conditions = ["junk", {"status": "True"}, cond("Complete", status="False"), cond("Complete", reason="Done")]
    assert decode(job(*conditions, startTime=ts(60))).reason == "Done"


def test_a_transition_time_without_a_zone_is_utc_and_a_malformed_one_is_the_oldest():
    naive = cond("FailureTarget", seconds_ago=5)
    naive["lastTransitionTime"] = (NOW - timedelta(seconds=5)).replace(tzinfo=None).isoformat()
    assert decode(job(cond("SuccessCriteriaMet", seconds_ago=20), naive, startTime=ts(60))).phase == Phase.FAILING
    for broken in ("yesterday", "", None):
        failure = cond("FailureTarget", seconds_ago=5)
        failure["lastTransitionTime"] = broken
        assert decode(job(cond("SuccessCriteriaMet", seconds_ago=3600), failure, startTime=ts(60))).phase \
            == Phase.SUCCEEDING


def test_unrecognised_conditions_on_a_job_that_has_not_started_are_named_in_order():
    state = decode(job(cond("Zeta"), cond("Alpha")))
    assert state == RunState(Status.UNKNOWN, Phase.UNKNOWN, "UnrecognizedCondition",
                             "The Job has condition(s) Alpha, Zeta and has not started")


# ------------------------------------------------------------------------------- counters


def test_counters_and_start_time_say_what_runs():
    assert decode(job(active=1)) == RunState(RUNNING, Phase.RUNNING, "PodsActive", "1 pod(s) active")
    assert decode(job(active=0, succeeded=1, startTime=ts(5))) == RunState(RUNNING, Phase.RUNNING, "JobStarted",
                                                                           "The Job has started")
    assert decode(job(active=1, failed=1, startTime=ts(60))) == RunState(
        RUNNING, Phase.RUNNING, "PodRetrying", "1 pod(s) failed, 1 active; retrying within backoffLimit 3")


def test_a_job_is_within_its_backoff_limit_until_more_pods_failed_than_the_limit():
    # The Job controller (syncJob in pkg/controller/job/job_controller.go) fails a Job once
    # failed > backoffLimit: with backoffLimit 3 the fourth pod is still a retry.
    assert decode(job(active=1, failed=3, startTime=ts(60))).message == \
        "3 pod(s) failed, 1 active; retrying within backoffLimit 3"
    assert decode(job(active=1, failed=4, startTime=ts(60))).message == \
        "4 pod(s) failed, 1 active; past backoffLimit 3, and the Job controller has not failed the Job"


def test_a_retry_without_a_backoff_limit_names_the_kubernetes_default():
    retrying = job(active=1, failed=2, startTime=ts(60))
    del retrying["spec"]["backoffLimit"]
    assert decode(retrying).message == "2 pod(s) failed, 1 active; retrying within backoffLimit 6"


def test_a_job_that_has_not_started_says_so():
    expected = RunState(STARTING, Phase.PENDING, "NotStarted", "The Job has not started a pod yet")
    assert decode(job()) == expected
    assert decode(job(active=0, failed=0, succeeded=0)) == expected  # zero is a count, not a bad value


def test_counts_without_a_start_are_unknown_and_say_which():
    assert decode(job(succeeded=1)) == RunState(
        Status.UNKNOWN, Phase.UNKNOWN, "UnrecognizedStatus",
        "The Job has not started but counts 1 succeeded and 0 failed pod(s)")


@pytest.mark.parametrize("counters", [{"active": -1}, {"failed": "1"}, {"succeeded": 1.5}, {"failed": True}])
def test_a_counter_that_is_not_a_whole_number_is_unknown(counters):
    assert decode(job(startTime=ts(60), **counters)) == RunState(
        Status.UNKNOWN, Phase.UNKNOWN, "UnrecognizedStatus", "The Job's pod counters are not whole numbers")


@pytest.mark.parametrize("status", [["not", "an", "object"], {"conditions": {"type": "Complete"}}])
def test_a_status_of_an_unknown_shape_is_unknown_and_says_so(status):
    odd = job()
    odd["status"] = status
    assert decode(odd) == RunState(Status.UNKNOWN, Phase.UNKNOWN, "UnrecognizedStatus",
                                   "The Job's status has a shape this app does not know")


# ------------------------------------------------------------------------- cancel, vanished


def test_cancel_and_vanish_messages():
    assert decode(job(active=1), cancel_requested=True) == RunState(
        RUNNING, Phase.CANCELLING, "CancelRequested", "Cancel requested; the Job is being deleted")
    assert decode(None, [pod("a", deleting=True), pod("b", deleting=True)], cancel_requested=True) == RunState(
        RUNNING, Phase.CANCELLING, "CancelRequested", "Cancel requested; the Job is deleted, 2 pod(s) still terminating")
    assert decode(None, [], cancel_requested=True) == RunState(
        Status.CANCELLED, Phase.CANCELLED, "CancelRequested", "Cancelled: the Job and its pods are deleted")
    assert decode(None, [pod()]) == RunState(
        Status.FAILED, Phase.LOST, "JobNotFound",
        "The Job was deleted outside this app (its TTL, or a user) before a terminal state was seen")


# ------------------------------------------------------------------------------------ pods


def test_a_stuck_container_is_named_with_its_pod_and_since_when():
    state = decode(job(active=1), [pod(created_ago=60, waiting=("ErrImagePull", "manifest unknown"))])
    assert state == RunState(STARTING, Phase.PENDING, "ErrImagePull",
                             f"Pod {POD} (waiting since {(NOW - timedelta(seconds=60)).isoformat()}): "
                             "container main: manifest unknown")


def test_a_stuck_container_without_a_message_or_names_says_what_it_knows():
    p = pod(created_ago=60, waiting=("ImagePullBackOff", ""))
    del p["metadata"]["name"]
    del p["status"]["containerStatuses"][0]["name"]
    p["status"]["containerStatuses"][0]["state"]["waiting"] = {"reason": "ImagePullBackOff"}
    assert decode(job(active=1), [p]).message == (
        f"Pod ? (waiting since {(NOW - timedelta(seconds=60)).isoformat()}): container ?: ImagePullBackOff")


def test_a_pod_without_a_timestamp_says_no_since():
    p = pod(waiting=("ImagePullBackOff", "x"))
    del p["metadata"]["creationTimestamp"]
    assert decode(job(active=1), [p]).message == f"Pod {POD}: container main: x"


def test_an_unschedulable_pod_without_a_message_says_no_node_can_run_it():
    p = pod(created_ago=60, unschedulable_ago=30)
    del p["status"]["conditions"][0]["message"]
    assert decode(job(active=1), [p]).message == (
        f"Pod {POD} (waiting since {(NOW - timedelta(seconds=30)).isoformat()}): no node can run the pod")


@pytest.mark.parametrize("condition", [
    {"type": "PodScheduled", "status": "True", "reason": "Unschedulable"},
    {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"},
    {"type": "Ready", "status": "False", "reason": "Unschedulable"},
    "junk",
])
def test_only_a_pod_the_scheduler_could_not_place_counts_as_unschedulable(condition):
    p = pod(created_ago=900)
    p["status"]["conditions"] = [condition]
    assert decode(job(active=1), [p]).reason == "PodsActive"


def test_the_pod_waiting_longest_is_the_one_reported():
    newer = pod("newer", created_ago=30, waiting=("ErrImagePull", "new"))
    older = pod("older", created_ago=400, waiting=("ImagePullBackOff", "old"))
    for pods in ([newer, older], [older, newer]):
        state = decode(job(active=2), pods)
        assert (state.phase, state.reason) == (Phase.STALLED, "ImagePullBackOff")
        assert state.message.startswith("Pod older ")


def test_a_stuck_pod_without_a_timestamp_is_counted_as_waiting_since_now():
    undated = pod("undated", waiting=("ImagePullBackOff", "x"))
    del undated["metadata"]["creationTimestamp"]
    dated = pod("dated", created_ago=60, waiting=("ErrImagePull", "y"))
    assert decode(job(active=2), [undated, dated]).message.startswith("Pod dated ")


def test_only_pending_pods_can_be_stuck_and_one_that_is_not_does_not_hide_the_next():
    done = pod("done", phase="Succeeded", created_ago=900, waiting=("ImagePullBackOff", "old"))
    stuck = pod("stuck", created_ago=900, waiting=("ErrImagePull", "y"))
    del stuck["status"]["phase"]  # a pod the kubelet has not reported on yet is pending too
    state = decode(job(active=1), [done, stuck])
    assert (state.phase, state.reason) == (Phase.STALLED, "ErrImagePull")
    assert state.message.startswith("Pod stuck ")


def test_the_default_stall_limit_is_five_minutes():
    def phase_after(seconds):
        pods = [pod(created_ago=seconds, waiting=("ImagePullBackOff", "x"))]
        return decode_job_status(job(active=1), pods, now=NOW).phase  # no stall_after_seconds given

    assert (phase_after(300), phase_after(301)) == (Phase.PENDING, Phase.STALLED)


def test_a_crash_loop_says_which_container_how_often_and_how_it_last_ended():
    looping = pod(phase="Running", restarts=4, waiting=("CrashLoopBackOff", "back-off 1m20s"),
                  last_terminated={"exitCode": 137, "reason": "OOMKilled"})
    assert decode(job(active=1), [looping]) == RunState(
        RUNNING, Phase.RUNNING, "CrashLoopBackOff",
        f"Pod {POD} container main restarts after failing (restarts: 4); last exit code 137 (OOMKilled): "
        "back-off 1m20s")


def test_a_crash_loop_with_little_detail_still_reads_well():
    looping = pod(phase="Running", waiting=("CrashLoopBackOff", ""), last_terminated={"exitCode": 1})
    cs = looping["status"]["containerStatuses"][0]
    del cs["name"], cs["restartCount"]
    assert decode(job(active=1), [looping]).message == (
        f"Pod {POD} container ? restarts after failing (restarts: 0); last exit code 1 (Error)")
    first = pod(phase="Running", restarts=1, waiting=("CrashLoopBackOff", "back-off 10s"))
    assert decode(job(active=1), [first]).message == (
        f"Pod {POD} container main restarts after failing (restarts: 1): back-off 10s")


def test_a_message_of_the_limit_is_kept_whole_and_a_longer_one_is_cut_to_it():
    def said(text):
        return decode(job(cond("Failed", reason="R", message=text), startTime=ts(60))).message

    exact = "x" * MAX_MESSAGE_CHARS
    assert said(exact) == exact
    cut = said("y" * (MAX_MESSAGE_CHARS + 1))
    assert cut == "y" * (MAX_MESSAGE_CHARS - 1) + "…" and len(cut) == MAX_MESSAGE_CHARS


def test_a_stall_is_measured_against_the_limit_given():
    p = [pod(created_ago=STALL + 1, waiting=("ImagePullBackOff", "x"))]
    assert decode(job(active=1), p, stall_after_seconds=STALL).phase == Phase.STALLED
    assert decode(job(active=1), p, stall_after_seconds=STALL + 1).phase == Phase.PENDING


# --------------------------------------------------------- refused pods: FailedCreate events

JOB_NAME = "nightly-etl-abcdefghij"


def warning(reason: str, message: str, *, kind: str = "Job", name: str = JOB_NAME, **times) -> dict:
    return {"type": "Warning", "reason": reason, "message": message,
            "involvedObject": {"kind": kind, "name": name}, **times}


def refused(events, started_ago: float = 60, **kw) -> RunState:
    return decode(job(active=0, startTime=ts(started_ago)), events=events, **kw)


def test_a_started_job_without_pods_or_events_says_kubernetes_may_be_refusing_them():
    assert refused([]) == RunState(STARTING, Phase.PENDING, "NoPods",
                                   f"The Job started at {ts(60)} but has no pod: Kubernetes may be refusing "
                                   "to create it (see the Job's FailedCreate events)")
    assert refused([], started_ago=STALL + 1).phase == Phase.STALLED
    assert refused([], started_ago=STALL).phase == Phase.PENDING


def test_the_newest_failed_create_event_of_the_job_says_why():
    events = [
        warning("FailedCreate", "older", lastTimestamp=ts(5)),
        warning("FailedCreate", "(combined from similar events): newest", lastTimestamp=ts(50),
                series={"lastObservedTime": ts(1)}),
        warning("FailedCreate", "other job", name="another-job", lastTimestamp=ts(0)),
        warning("FailedCreate", "about a pod", kind="Pod", lastTimestamp=ts(0)),
        warning("FailedMount", "not this reason", lastTimestamp=ts(0)),
        {**warning("FailedCreate", "normal, not a warning", lastTimestamp=ts(0)), "type": "Normal"},
        "junk",
    ]
    assert refused(events) == RunState(STARTING, Phase.PENDING, "FailedCreate",
                                       f"Kubernetes refuses to create the Job's pods (since {ts(60)}): newest")


@pytest.mark.parametrize("newer", [
    {"lastTimestamp": ts(1)},
    {"eventTime": ts(1)},
    {"metadata": {"creationTimestamp": ts(1)}},
    {"series": {"lastObservedTime": ts(1)}, "lastTimestamp": ts(100)},
], ids=["lastTimestamp", "eventTime", "creationTimestamp", "series"])
def test_an_events_time_is_its_latest_observation_whichever_field_holds_it(newer):
    events = [warning("FailedCreate", "old", lastTimestamp=ts(30), eventTime=ts(30)),
              warning("FailedCreate", "new", **newer),
              warning("FailedCreate", "undated")]
    assert refused(events).message.endswith("): new")


def test_an_events_k8s_io_event_names_its_object_as_regarding_and_its_text_as_note():
    event = {"type": "Warning", "reason": "FailedCreate", "note": "quota exceeded",
             "regarding": {"kind": "Job", "name": JOB_NAME}, "eventTime": ts(3)}
    assert refused([event]).message.endswith("): quota exceeded")


def test_a_mount_that_fails_names_the_event_of_the_pod():
    p = pod(created_ago=60, waiting=("ContainerCreating", ""))
    events = [warning("FailedMount", "MountVolume.SetUp failed for volume \"creds\"", kind="Pod", name=POD,
                      lastTimestamp=ts(2))]
    assert decode(job(active=1), [p], events=events) == RunState(
        STARTING, Phase.PENDING, "FailedMount",
        f"Pod {POD} (waiting since {(NOW - timedelta(seconds=60)).isoformat()}): "
        "MountVolume.SetUp failed for volume \"creds\"")


# ------------------------------------------------------------------- held at creation, Indexed


@pytest.mark.parametrize("counts, expected_phase", [
    ({}, Phase.QUEUED), ({"succeeded": 1}, Phase.CANCELLED), ({"failed": 1}, Phase.CANCELLED),
    ({"startTime": ts(60)}, Phase.CANCELLED),
], ids=["never-started", "succeeded-once", "failed-once", "started"])
def test_only_a_suspended_job_that_never_ran_is_held_rather_than_cancelled(counts, expected_phase):
    assert decode(job(bare("Suspended"), **counts)).phase == expected_phase


def test_a_job_held_by_admission_at_create_says_so():
    state = decode(job(bare("Suspended")))
    assert state == RunState(STARTING, Phase.QUEUED, "JobSuspended",
                             "Suspended at creation by the cluster's admission (a queueing system such as "
                             "Kueue): waiting to be admitted (Job suspended)")


def indexed(**status) -> dict:
    return job(spec={"completionMode": "Indexed", "completions": 10}, **status)


def test_index_progress_counts_the_indexes_kubernetes_lists():
    from shared.kube.status import index_progress

    assert index_progress(indexed(completedIndexes="0,2-4", failedIndexes="5")) == {
        "completions": 10, "completedIndexes": "0,2-4", "completed": 4, "failedIndexes": "5", "failed": 1}
    assert index_progress(indexed()) == {"completions": 10, "completedIndexes": "", "completed": 0}
    per_index = job(spec={"completionMode": "Indexed", "completions": 3, "backoffLimitPerIndex": 1})
    assert index_progress(per_index) == {"completions": 3, "completedIndexes": "", "completed": 0,
                                         "failedIndexes": "", "failed": 0}
    assert index_progress(indexed(completedIndexes="0,x-3"))["completed"] == 0  # malformed: no guess
    assert index_progress(indexed(completedIndexes="1, ,7-8"))["completed"] == 3
    assert index_progress(job()) is None and index_progress(None) is None


def test_a_running_indexed_job_says_how_far_it_got():
    state = decode(indexed(active=2, startTime=ts(60), completedIndexes="0,2-4", failedIndexes="5"))
    assert state.message == "2 pod(s) active; indexes completed 4 of 10 (0,2-4), failed 1 (5)"
    assert decode(indexed(active=1, startTime=ts(60))).message == "1 pod(s) active; indexes completed 0 of 10"


def test_a_failed_create_event_without_text_says_so_plainly():
    assert refused([warning("FailedCreate", "", lastTimestamp=ts(1))]).message == (
        f"Kubernetes refuses to create the Job's pods (since {ts(60)}):")  # trimmed


def test_transition_times_with_an_offset_or_of_the_wrong_type_are_read_safely():
    local = cond("FailureTarget")
    local["lastTransitionTime"] = (NOW - timedelta(seconds=5)).astimezone(timezone(timedelta(hours=-2))).isoformat()
    assert decode(job(cond("SuccessCriteriaMet", seconds_ago=20), local, startTime=ts(60))).phase == Phase.FAILING
    odd = cond("FailureTarget")
    odd["lastTransitionTime"] = 1735689600  # not a string: read as no time
    assert decode(job(cond("SuccessCriteriaMet", seconds_ago=20), odd, startTime=ts(60))).phase == Phase.SUCCEEDING


def test_a_crash_loop_message_keeps_its_last_character():
    looping = pod(phase="Running", restarts=2, waiting=("CrashLoopBackOff", "restarting container=MAX"))
    assert decode(job(active=1), [looping]).message.endswith(": restarting container=MAX")


def test_two_pods_stuck_alike_since_the_same_instant_report_the_first():
    twins = [pod("twin-a", created_ago=60, waiting=("ErrImagePull", "same")),
             pod("twin-b", created_ago=60, waiting=("ErrImagePull", "same"))]
    for p in twins:
        p["metadata"]["name"] = POD  # identical but for identity: nothing left to tell them apart
    twins[1]["metadata"]["uid"] = "b"
    assert decode(job(active=2), twins).reason == "ErrImagePull"


def test_objects_with_null_sections_are_trimmed_and_decoded_without_error():
    from shared.kube.status import job_for_decoding

    assert job_for_decoding({"metadata": None, "spec": None, "status": {}}) == {
        "metadata": {"name": None, "labels": {}, "annotations": {}}, "spec": {}, "status": {}}
