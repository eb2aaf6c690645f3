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
  otherwise Failed/Lost instead of Unknown forever;
- a Job that has started but has no pod, no active pod, no counts and no condition is one whose
  pods Kubernetes refuses to create (ResourceQuota, Pod Security, a policy webhook): the job
  controller retries for ever and says why only in Warning ``FailedCreate`` events on the Job.
  It is Starting/Pending with reason ``FailedCreate`` and the API server's message when the
  caller passes those events, ``NoPods`` without them, and Stalled past ``stall_after_seconds``
  from its ``startTime`` - never Running;
- a Job suspended by an admission webhook at creation (Kueue with ``manageJobsWithoutQueueName``
  suspends Jobs without a queue label too) never started: Starting/Queued, not Cancelled. Only a
  Job suspended after it started and not known to Kueue is Cancelled (this app never suspends);
- a pod in ``ContainerCreating`` with ``FailedMount`` events (a volume's Secret, ConfigMap or PVC
  is missing) is Pending/Stalled with reason ``FailedMount``, like ``CreateContainerConfigError``;
- Indexed Jobs report per-index progress (``index_progress``); a Job with
  ``backoffLimitPerIndex`` has no meaningful global ``backoffLimit`` (it defaults to MaxInt32),
  so its retry message names the per-index limit.

Events, when they matter, are data the caller passes in (``events``: the Warning events of the
Job and its pods as the API returns them); the decoder never reads anything.

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

from shared.kube.jobspec import KUEUE_QUEUE_LABEL, RUN_ID_LABEL, is_kueue_managed, kueue_queue_name
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
FAILED_CREATE = "FailedCreate"
FAILED_MOUNT = "FailedMount"
CONTAINER_CREATING = "ContainerCreating"
DEFAULT_BACKOFF_LIMIT = 6
INDEXED = "Indexed"
_COMBINED = "(combined from similar events): "

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


def _never_started(status: dict) -> bool:
    return not status.get("startTime") and not status.get("succeeded") and not status.get("failed")


def _suspended(job: dict, cond: dict, status: dict, held_at_create: bool) -> RunState:
    reason = cond.get("reason") or "JobSuspended"
    detail = cond.get("message") or "Job suspended"
    if is_kueue_managed(job):
        queue = kueue_queue_name(job)
        where = f" in queue {queue!r}" if queue else ""
        return _state(Status.STARTING, Phase.QUEUED, reason,
                      f"Queued by Kueue{where}: waiting for admission ({detail})")
    if held_at_create or _never_started(status):
        # Suspended by an admission webhook when it was created (this app never suspends a run):
        # Kueue's manageJobsWithoutQueueName does so without any label on the Job.
        return _state(Status.STARTING, Phase.QUEUED, reason,
                      f"Suspended at creation by the cluster's admission (a queueing system such as Kueue): "
                      f"waiting to be admitted ({detail})")
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


def _event_message(event: dict) -> str:
    message = str(event.get("message") or event.get("note") or "")
    return message[len(_COMBINED):] if message.startswith(_COMBINED) else message


def _event_time(event: dict) -> datetime:
    return (parse_time((event.get("series") or {}).get("lastObservedTime")) or parse_time(event.get("lastTimestamp"))
            or parse_time(event.get("eventTime")) or parse_time((event.get("metadata") or {}).get("creationTimestamp"))
            or _EPOCH)


def _latest_warning(events: list[dict], reason: str, kind: str, name: str) -> dict | None:
    """The newest Warning event with ``reason`` about the object ``kind``/``name``."""
    found = [e for e in events if isinstance(e, dict) and e.get("type") == "Warning" and e.get("reason") == reason
             and ((e.get("involvedObject") or e.get("regarding") or {}).get("kind") == kind)
             and ((e.get("involvedObject") or e.get("regarding") or {}).get("name") == name)]
    return max(found, key=_event_time) if found else None


def _stuck(pod: dict, events: list[dict]) -> tuple[datetime | None, str, str] | None:
    """(since, reason, message) when a pending pod waits on something that may never come."""
    created = parse_time((pod.get("metadata") or {}).get("creationTimestamp"))
    for cs in _container_statuses(pod):
        waiting = _waiting(cs)
        if waiting.get("reason") in STALL_WAITING_REASONS:
            container = cs.get("name") or "?"
            detail = waiting.get("message") or waiting["reason"]
            return created, waiting["reason"], f"container {container}: {detail}"
    creating = [cs for cs in _container_statuses(pod) if _waiting(cs).get("reason") == CONTAINER_CREATING]
    if creating:
        mount = _latest_warning(events, FAILED_MOUNT, "Pod", _pod_name(pod))
        if mount is not None:
            return created, FAILED_MOUNT, _event_message(mount)
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if (isinstance(cond, dict) and cond.get("type") == "PodScheduled" and cond.get("status") == "False"
                and cond.get("reason") == UNSCHEDULABLE):
            since = parse_time(cond.get("lastTransitionTime")) or created
            return since, UNSCHEDULABLE, cond.get("message") or "no node can run the pod"
    return None


def _decode_pods(pods: list[dict], events: list[dict], now: datetime, stall_after_seconds: int) -> RunState | None:
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
        found = _stuck(pod, events)
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
                      stall_after_seconds: int = 300, cancel_requested: bool = False,
                      events: Iterable[dict] | None = None, held_at_create: bool = False) -> RunState:
    """The RunState of a run whose Job is ``job`` (None: not found) and whose pods are ``pods``.

    ``pods`` are the run's pods (listed by its run-id label); they only matter while no condition
    decides, and when a cancelled Job is gone. ``cancel_requested`` is this app's own cancel intent.
    ``events`` are Warning events of the Job and its pods (``FailedCreate``, ``FailedMount``), when
    the caller listed them; ``held_at_create`` says the create answer already had ``spec.suspend``
    set although this app did not ask for it (an admission webhook holds the Job).
    A naive ``now`` is taken as UTC.

    Long on purpose: it is a decision table read top to bottom (terminal conditions, cancel, suspension,
    pod troubles, running), whose order is the precedence; split, the precedence would hide in call
    order.
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    pods = [p for p in (pods or ()) if isinstance(p, dict)]
    event_list = [e for e in (events or ()) if isinstance(e, dict)]
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
        return _suspended(job, true["Suspended"], status, held_at_create)

    active, failed, succeeded = (_count(status, k) for k in ("active", "failed", "succeeded"))
    if active is None or failed is None or succeeded is None:
        return _unknown("UnrecognizedStatus", "The Job's pod counters are not whole numbers")

    decided = _decode_pods(pods, event_list, now, stall_after_seconds)
    if decided is not None:
        return decided

    spec = job.get("spec") or {}
    started = status.get("startTime")
    progress = _progress_note(job)
    if active > 0 or started:
        if failed > 0:
            return _state(Status.RUNNING, Phase.RUNNING, "PodRetrying",
                          f"{failed} pod(s) failed, {active} active; {_retry_note(spec, failed)}{progress}")
        if active > 0:
            return _state(Status.RUNNING, Phase.RUNNING, "PodsActive", f"{active} pod(s) active{progress}")
        uncounted = status.get("uncountedTerminatedPods") or {}
        finishing = sum(len(v) for v in uncounted.values() if isinstance(v, list)) if isinstance(uncounted, dict) else 0
        if finishing or succeeded or _count(status, "terminating") or any(not _deleting(p) for p in pods):
            return _state(Status.RUNNING, Phase.RUNNING, "JobStarted", f"The Job has started{progress}")
        return _no_pods(job, started, event_list, now, stall_after_seconds)

    if spec.get("suspend") is True and (is_kueue_managed(job) or held_at_create):
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


# ----------------------------------------------------------------------- no pods, Indexed progress


def _no_pods(job: dict, started: str, events: list[dict], now: datetime, stall_after_seconds: int) -> RunState:
    """Started, yet no pod, no count, no condition: Kubernetes refuses to create the pods."""
    name = str((job.get("metadata") or {}).get("name") or "")
    since = parse_time(started)
    stalled = since is not None and (now - since).total_seconds() > stall_after_seconds
    phase = Phase.STALLED if stalled else Phase.PENDING
    refused = _latest_warning(events, FAILED_CREATE, "Job", name)
    if refused is not None:
        return _state(Status.STARTING, phase, FAILED_CREATE,
                      f"Kubernetes refuses to create the Job's pods (since {started}): {_event_message(refused)}")
    return _state(Status.STARTING, phase, "NoPods",
                  f"The Job started at {started} but has no pod: Kubernetes may be refusing to create it "
                  "(see the Job's FailedCreate events)")


def _retry_note(spec: dict, failed: int) -> str:
    per_index = spec.get("backoffLimitPerIndex")
    if per_index is not None:
        return f"retrying each index up to backoffLimitPerIndex {per_index}"
    limit = spec.get("backoffLimit")
    limit = DEFAULT_BACKOFF_LIMIT if limit is None else limit
    if isinstance(limit, int) and failed > limit:
        # Seen on real clusters (kubernetes/kubernetes#62382): the controller keeps retrying past
        # the limit without a Failed condition; say so rather than claim it is within the limit.
        return f"past backoffLimit {limit}, and the Job controller has not failed the Job"
    return f"retrying within backoffLimit {limit}"


def _index_set(text: object) -> int:
    """How many indexes an interval list such as "0,2-4" names (0 when malformed)."""
    total = 0
    for part in str(text or "").split(","):
        first, _, last = part.strip().partition("-")
        if not first:
            continue
        try:
            total += int(last or first) - int(first) + 1
        except ValueError:
            return 0
    return total


def index_progress(job: dict | None) -> dict | None:
    """Per-index progress of an Indexed Job (None for any other): completions, the completed and
    failed indexes as Kubernetes writes them ("0,2-4") and how many each names."""
    if not isinstance(job, dict):
        return None
    spec, status = job.get("spec") or {}, job.get("status") or {}
    if spec.get("completionMode") != INDEXED:
        return None
    completed, failed = status.get("completedIndexes") or "", status.get("failedIndexes")
    progress = {"completions": spec.get("completions"), "completedIndexes": completed,
                "completed": _index_set(completed)}
    if failed is not None or spec.get("backoffLimitPerIndex") is not None:
        progress["failedIndexes"] = failed or ""
        progress["failed"] = _index_set(failed)
    return progress


def _progress_note(job: dict) -> str:
    progress = index_progress(job)
    if progress is None:
        return ""
    note = f"; indexes completed {progress['completed']} of {progress['completions']}"
    if progress["completed"]:
        note += f" ({progress['completedIndexes']})"
    if progress.get("failed"):
        note += f", failed {progress['failed']} ({progress['failedIndexes']})"
    return note

# ------------------------------------------------------------------------------ trimmed listings

_JOB_SPEC_READ = ("suspend", "managedBy", "backoffLimit", "backoffLimitPerIndex", "completionMode", "completions")
_POD_STATUS_READ = ("phase", "conditions", "initContainerStatuses", "containerStatuses")


def job_for_decoding(job: dict) -> dict:
    """What ``decode_job_status`` (and a sweep matching Jobs to runs) reads of a listed Job: its
    name, the run-id and Kueue queue label/annotation, ``spec.suspend``/``managedBy``/
    ``backoffLimit`` and ``status``. A sweep keeps only this of each Job of a 500-item page, so its
    memory follows the runs, not the size of their pod templates. Decoding it gives the same state
    as decoding the whole Job."""
    meta = _mapping(job.get("metadata"))
    spec = _mapping(job.get("spec"))
    trimmed: dict = {"metadata": {"name": meta.get("name"),
                                  "labels": _picked(meta.get("labels"), (RUN_ID_LABEL, KUEUE_QUEUE_LABEL)),
                                  "annotations": _picked(meta.get("annotations"), (KUEUE_QUEUE_LABEL,))},
                     "spec": _picked(spec, _JOB_SPEC_READ)}
    if "status" in job:
        trimmed["status"] = job["status"]
    return trimmed


def pod_for_decoding(pod: dict) -> dict:
    """What ``decode_job_status`` and the sweep read of a listed pod (name, run-id label,
    creation and deletion timestamps, phase, conditions, container statuses)."""
    meta = _mapping(pod.get("metadata"))
    return {"metadata": {**_picked(meta, ("name", "creationTimestamp", "deletionTimestamp")),
                         "labels": _picked(meta.get("labels"), (RUN_ID_LABEL,))},
            "status": _picked(pod.get("status"), _POD_STATUS_READ)}


def _mapping(value) -> dict:
    return value if isinstance(value, dict) else {}


def _picked(mapping, keys: tuple[str, ...]) -> dict:
    if not isinstance(mapping, dict):
        return {}
    return {k: mapping[k] for k in keys if k in mapping}
