"""Decoding a run's Job (and its pods) into a RunState: what Polysync should be told, and why.

The job type's table (Complete -> Success, Failed -> Failed, Suspended -> Cancelled, active or
started -> Running, nothing yet -> Starting, anything else -> Unknown) is the base. Kubernetes
facts refine it, each the cause of a real bug in a peer runner:

- only ``status == "True"`` - the *string* - counts; ``"False"``, ``"true"`` or a JSON ``true``
  do not (a truthiness test turns ``"False"`` into a finished Job);
- since Kubernetes 1.31 ``Complete``/``Failed`` appear only after every pod has terminated;
  ``SuccessCriteriaMet``/``FailureTarget`` come first and mean "outcome known, pods still
  terminating": Running as Succeeding/Failing, so the sweep keeps looking;
- a Job Kueue holds (``kueue.x-k8s.io/queue-name``) is ``Suspended`` while it waits for admission
  or after preemption: Starting/Queued, not Cancelled;
- ``failed > 0`` while ``active > 0`` is a retry within ``backoffLimit``, not a failure; only
  conditions are authoritative, and once one is terminal the counters (a Job may finish with
  ``ready``/``terminating`` != 0) are ignored;
- a pod that waits on an image pull, a bad container config, or a node leaves the Job active with no
  condition: it is Starting/Pending with the pod's reason, and Starting/Stalled once it has waited
  longer than ``stall_after_seconds`` - it is not failed, because autoscalers add nodes and
  registries come back;
- a vanished Job is Cancelled if we asked for the cancel (Cancelling while its pods terminate),
  otherwise Failed/Lost instead of Unknown forever.

What it deliberately does not do: read the clock (pass ``now``), fetch anything, or remember. The
sweep owns memory: it applies Lost only after the Job was missing on two consecutive sweeps (a
single LIST can race a create), and ``apply_state`` keeps a run's first terminal state, so a Job
that finished and was then removed by its TTL stays Success or Failed. Decoded messages never depend
on ``now`` (a "since" is a timestamp, not an age), so an unchanged Job decodes to an equal state and
the sweep writes nothing.

CrashLoopBackOff (``restartPolicy: OnFailure``) is Running with that reason: the container did
start, and the Job's ``backoffLimit`` - which Kubernetes turns into ``Failed`` - decides the outcome.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from shared.kube.jobspec import is_kueue_managed, kueue_queue_name
from shared.runs.model import Phase, RunState, Status
from shared.text import trim

MAX_MESSAGE_CHARS = 500

# Waiting reasons that keep a container from ever starting until something outside changes.
STALL_WAITING_REASONS = frozenset({
    "ImagePullBackOff",
    "ErrImagePull",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",  # missing ConfigMap/Secret key, bad securityContext...
    "CreateContainerError",
})
UNSCHEDULABLE = "Unschedulable"
CRASH_LOOP = "CrashLoopBackOff"
DEFAULT_BACKOFF_LIMIT = 6

_TRUE = "True"
_EPOCH = datetime.min.replace(tzinfo=UTC)


def _state(status: Status, phase: Phase, reason: str | None, message: str | None) -> RunState:
    return RunState(status, phase, reason, trim(message, MAX_MESSAGE_CHARS))


def _unknown(reason: str, message: str) -> RunState:
    return _state(Status.UNKNOWN, Phase.UNKNOWN, reason, message)


def parse_time(value: object) -> datetime | None:
    """A Kubernetes timestamp as an aware datetime; None when absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _transition_time(condition: dict) -> datetime:
    return parse_time(condition.get("lastTransitionTime")) or _EPOCH


def _true_conditions(conditions: list) -> dict[str, dict]:
    """Conditions whose status is the string "True", by type (the latest if a type repeats)."""
    found: dict[str, dict] = {}
    for cond in conditions:
        if not isinstance(cond, dict) or cond.get("status") != _TRUE or not isinstance(cond.get("type"), str):
            continue
        earlier = found.get(cond["type"])
        if earlier is None or _transition_time(cond) >= _transition_time(earlier):
            found[cond["type"]] = cond
    return found


def _latest(success: dict | None, failure: dict | None) -> tuple[str, dict] | None:
    """Which of two contradicting conditions holds: the later one; on a tie, the failure."""
    if success and failure:
        return ("success", success) if _transition_time(success) > _transition_time(failure) else ("failure", failure)
    if success:
        return "success", success
    if failure:
        return "failure", failure
    return None


def _terminal(true: dict[str, dict]) -> RunState | None:
    decided = _latest(true.get("Complete"), true.get("Failed"))
    if decided is None:
        return None
    kind, cond = decided
    if kind == "success":
        return _state(Status.SUCCESS, Phase.SUCCEEDED, cond.get("reason") or "Completed", cond.get("message"))
    return _state(Status.FAILED, Phase.FAILED, cond.get("reason") or "Failed", cond.get("message"))


def _interim(true: dict[str, dict]) -> RunState | None:
    decided = _latest(true.get("SuccessCriteriaMet"), true.get("FailureTarget"))
    if decided is None:
        return None
    kind, cond = decided
    if kind == "success":
        return _state(Status.RUNNING, Phase.SUCCEEDING, cond.get("reason") or "SuccessCriteriaMet",
                      cond.get("message") or "Success criteria met; waiting for the pods to terminate")
    return _state(Status.RUNNING, Phase.FAILING, cond.get("reason") or "FailureTarget",
                  cond.get("message") or "The Job will fail; waiting for the pods to terminate")


def _suspended(job: dict, cond: dict) -> RunState:
    reason = cond.get("reason") or "JobSuspended"
    detail = cond.get("message") or "Job suspended"
    if is_kueue_managed(job):
        queue = kueue_queue_name(job)
        where = f" in queue {queue!r}" if queue else ""
        return _state(Status.STARTING, Phase.QUEUED, reason,
                      f"Queued by Kueue{where}: waiting for admission ({detail})")
    return _state(Status.CANCELLED, Phase.CANCELLED, reason, f"The Job was suspended: {detail}")


def _vanished(pods: list[dict], cancel_requested: bool) -> RunState:
    if cancel_requested:
        if pods:
            return _state(Status.RUNNING, Phase.CANCELLING, "CancelRequested",
                          f"Cancel requested; the Job is deleted, {len(pods)} pod(s) still terminating")
        return _state(Status.CANCELLED, Phase.CANCELLED, "CancelRequested",
                      "Cancelled: the Job and its pods are deleted")
    return _state(Status.FAILED, Phase.LOST, "JobNotFound",
                  "The Job was deleted outside this app (its TTL, or a user) before a terminal state was seen")


def _count(status: dict, key: str) -> int | None:
    value = status.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


# ------------------------------------------------------------------------------------------- pods


def _deleting(pod: dict) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def _container_statuses(pod: dict) -> list[dict]:
    status = pod.get("status") or {}
    found = []
    for key in ("initContainerStatuses", "containerStatuses"):
        found.extend(cs for cs in status.get(key) or [] if isinstance(cs, dict))
    return found


def _waiting(cs: dict) -> dict:
    return ((cs.get("state") or {}).get("waiting")) or {}


def _pod_name(pod: dict) -> str:
    return str((pod.get("metadata") or {}).get("name") or "?")


def _stuck(pod: dict) -> tuple[datetime | None, str, str] | None:
    """(since, reason, message) when a pending pod waits on something that may never come."""
    created = parse_time((pod.get("metadata") or {}).get("creationTimestamp"))
    for cs in _container_statuses(pod):
        waiting = _waiting(cs)
        if waiting.get("reason") in STALL_WAITING_REASONS:
            container = cs.get("name") or "?"
            detail = waiting.get("message") or waiting["reason"]
            return created, waiting["reason"], f"container {container}: {detail}"
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if (isinstance(cond, dict) and cond.get("type") == "PodScheduled" and cond.get("status") == "False"
                and cond.get("reason") == UNSCHEDULABLE):
            since = parse_time(cond.get("lastTransitionTime")) or created
            return since, UNSCHEDULABLE, cond.get("message") or "no node can run the pod"
    return None


def _decode_pods(pods: list[dict], now: datetime, stall_after_seconds: int) -> RunState | None:
    live = [p for p in pods if not _deleting(p)]
    running = [p for p in live if (p.get("status") or {}).get("phase") == "Running"]
    if running:
        # A running pod means the Job runs; a stuck sibling (parallel Jobs) does not make it Starting.
        for pod in running:
            for cs in _container_statuses(pod):
                waiting = _waiting(cs)
                if waiting.get("reason") == CRASH_LOOP:
                    last = ((cs.get("lastState") or {}).get("terminated")) or {}
                    exit_note = ""
                    if last:
                        exit_note = f"; last exit code {last.get('exitCode')} ({last.get('reason') or 'Error'})"
                    return _state(Status.RUNNING, Phase.RUNNING, CRASH_LOOP,
                                  f"Pod {_pod_name(pod)} container {cs.get('name') or '?'} restarts after "
                                  f"failing (restarts: {cs.get('restartCount', 0)}){exit_note}: "
                                  f"{waiting.get('message') or ''}".rstrip(": "))
        return None

    stuck = []
    for pod in live:
        if (pod.get("status") or {}).get("phase") not in (None, "Pending"):
            continue
        found = _stuck(pod)
        if found is not None:
            stuck.append((found[0] or now, found, pod))
    if not stuck:
        return None
    _, (since, reason, detail), pod = min(stuck, key=lambda s: s[0])
    since_text = f" (waiting since {since.isoformat()})" if since else ""
    message = f"Pod {_pod_name(pod)}{since_text}: {detail}"
    # No timestamp means the wait can't be measured: report Pending rather than guess Stalled.
    if since is not None and (now - since).total_seconds() > stall_after_seconds:
        return _state(Status.STARTING, Phase.STALLED, reason, message)
    return _state(Status.STARTING, Phase.PENDING, reason, message)


# ----------------------------------------------------------------------------------------- decode


def decode_job_status(job: dict | None, pods: Iterable[dict] = (), *, now: datetime,
                      stall_after_seconds: int = 300, cancel_requested: bool = False) -> RunState:
    """The RunState of a run whose Job is ``job`` (None: not found) and whose pods are ``pods``.

    ``pods`` are the run's pods (listed by its run-id label); they only matter while no condition
    decides, and when a cancelled Job is gone. ``cancel_requested`` is this app's own cancel intent.
    A naive ``now`` is taken as UTC.
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    pods = [p for p in (pods or ()) if isinstance(p, dict)]
    if job is None:
        return _vanished(pods, cancel_requested)

    status = job.get("status")
    status = {} if status is None else status
    conditions = status.get("conditions") if isinstance(status, dict) else None
    conditions = [] if conditions is None else conditions
    if not isinstance(status, dict) or not isinstance(conditions, list):
        return _unknown("UnrecognizedStatus", "The Job's status has a shape this app does not know")
    true = _true_conditions(conditions)

    decided = _terminal(true)  # a terminal condition wins over everything, cancel intent included
    if decided is not None:
        return decided
    if cancel_requested:
        return _state(Status.RUNNING, Phase.CANCELLING, "CancelRequested",
                      "Cancel requested; the Job is being deleted")
    decided = _interim(true)
    if decided is not None:
        return decided
    if "Suspended" in true:
        return _suspended(job, true["Suspended"])

    active, failed, succeeded = (_count(status, k) for k in ("active", "failed", "succeeded"))
    if active is None or failed is None or succeeded is None:
        return _unknown("UnrecognizedStatus", "The Job's pod counters are not whole numbers")

    decided = _decode_pods(pods, now, stall_after_seconds)
    if decided is not None:
        return decided

    started = status.get("startTime")
    if active > 0 or started:
        if failed > 0:
            limit = (job.get("spec") or {}).get("backoffLimit", DEFAULT_BACKOFF_LIMIT)
            return _state(Status.RUNNING, Phase.RUNNING, "PodRetrying",
                          f"{failed} pod(s) failed, {active} active; retrying within backoffLimit {limit}")
        if active > 0:
            return _state(Status.RUNNING, Phase.RUNNING, "PodsActive", f"{active} pod(s) active")
        return _state(Status.RUNNING, Phase.RUNNING, "JobStarted", "The Job has started")

    spec = job.get("spec") or {}
    if spec.get("suspend") is True and is_kueue_managed(job):
        # Created suspended for Kueue; the controller has not written the Suspended condition yet.
        queue = kueue_queue_name(job)
        where = f" in queue {queue!r}" if queue else ""
        return _state(Status.STARTING, Phase.QUEUED, "JobSuspended", f"Queued by Kueue{where}: waiting for admission")
    if true:
        kinds = ", ".join(sorted(true))
        return _unknown("UnrecognizedCondition", f"The Job has condition(s) {kinds} and has not started")
    if failed or succeeded:
        return _unknown("UnrecognizedStatus",
                        f"The Job has not started but counts {succeeded} succeeded and {failed} failed pod(s)")
    return _state(Status.STARTING, Phase.PENDING, "NotStarted", "The Job has not started a pod yet")
