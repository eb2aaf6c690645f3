"""Failure diagnostics: the evidence of a failing run, captured before Kubernetes throws it away.

Why this exists: a failed Job's pods go with its ``ttlSecondsAfterFinished``, with the Job when a
user deletes it, and - under ``restartPolicy: OnFailure`` - the moment the Job reaches its
``backoffLimit`` (k/k#74848). Peer runners read logs *after* the fact and find nothing. So the
sweep, when a run shows a failing signal, copies what an operator would look at into the run
record, where it outlives every object in the cluster:

- for each pod (at most ``MAX_PODS``, troubled ones first, then the newest): its phase, reason,
  scheduling problem, and for each container its state, reason, exit code, termination message,
  restart count, last termination, and the last ``LOG_TAIL_LINES`` lines of its log;
- the Warning events of each pod and of the Job (``BackoffLimitExceeded``, ``DeadlineExceeded``,
  ``Failed to pull image`` ...), the newest ``MAX_EVENTS_PER_OBJECT`` of each.

When (``capture_moment``): *early* at the first failing signal - Stalled, a crash loop, a pod
that failed while the Job retries - because that may be the last time the pod exists; and at the
*outcome* - Failing, Failed, Lost. An outcome first seen as Failing is captured once more when the
run is Failed: the job controller records its Warning event for the reason
(``BackoffLimitExceeded``, ``DeadlineExceeded``, ``PodFailurePolicy``) only with ``Failed``, after
every pod has terminated (``recordJobFinished``), so a capture at Failing cannot hold it. A run is
captured at most three times (early, Failing, Failed); a later capture that finds no pod any more
keeps the pods of the earlier one (``merge``). See docs/diagnostics.md.

The module has a pure half (pod, container and event summaries, selection, merging, the size
bound: plain dicts in and out, the clock passed in) and one I/O function, ``collect_diagnostics``,
which makes the bounded reads through the ``shared.kube.client`` facade and never raises for a
cluster error: what it could not read is listed under ``errors`` with the reason.

What it deliberately does not do: decide the run's state (``shared.kube.status``), save anything
(the service stores the capture with a second, ETag-guarded save after the transition, so a slow
or failing capture never holds up a state change), or keep whole Kubernetes objects (only the
fields above; the pod spec, its env and its volumes are never copied). Secret parameter *values*
are never known here; a log line or message that prints ``NAME=value`` (or ``NAME: value``) for a
Secret parameter's NAME has the value replaced by ``***``. A container that prints a secret in
another form puts it into its own logs - there is no way to recognise it without the value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime

from shared.kube import jobspec
from shared.kube.errors import KubeError
from shared.kube.status import parse_time
from shared.runs.model import Phase, Run, RunState, Status

MAX_PODS = 5
LOG_TAIL_LINES = 50
MAX_LOG_READS = 10  # per capture: pods x containers, so a 20-container pod can't fan out
MAX_EVENTS_PER_OBJECT = 10
MAX_LINE_CHARS = 1000
MAX_MESSAGE_CHARS = 2048  # Kubernetes caps a termination message at 4096 bytes
MAX_EVENT_MESSAGE_CHARS = 500
MAX_ERROR_CHARS = 300
# The whole capture as compact JSON. The run table's limit for one property is 64 KiB of UTF-16
# (32 K characters); staying well under it leaves the store's own trimming (fit_run) for the
# rare capture full of multi-byte text.
MAX_CAPTURE_CHARS = 24_000
_LOG_LINE_STEPS = (20, 5, 0)

EARLY = "early"
OUTCOME = "outcome"

# Reasons under which a run is still Running but a pod has already failed (status.decode_job_status).
FAILED_ATTEMPT_REASONS = frozenset({"CrashLoopBackOff", "PodRetrying"})
_TROUBLED_WAITING = frozenset({
    "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull", "InvalidImageName",
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
})
_EPOCH = datetime.min.replace(tzinfo=UTC)


# ------------------------------------------------------------------------------ when to capture


def capture_moment(state: RunState) -> str | None:
    """``OUTCOME`` for a run whose failure is known (Failing, Failed, Lost), ``EARLY`` for a
    failing signal that may still pass (Stalled, a crash loop, a failed pod being retried), else
    None. Cancelled runs are not diagnosed: the operator ended them."""
    if state.phase in (Phase.FAILING, Phase.LOST) or (state.phase == Phase.FAILED and state.status == Status.FAILED):
        return OUTCOME
    if state.phase == Phase.STALLED or (state.phase == Phase.RUNNING and state.reason in FAILED_ATTEMPT_REASONS):
        return EARLY
    return None


def _final(capture: dict) -> bool:
    """Whether a capture was taken once the run was Failed (not while it was still Failing)."""
    return (capture.get("trigger") or {}).get("status") == str(Status.FAILED)


def needs_capture(run: Run) -> bool:
    """Whether ``run`` (as just recorded) should be diagnosed now: it shows a failing signal and has
    no capture yet, it reached its outcome and has only an early capture, or it is Failed and its
    outcome capture was taken while it was Failing."""
    moment = capture_moment(run.state)
    if moment is None:
        return False
    existing = run.diagnostics
    if not existing:
        return True
    if existing.get("moment") != OUTCOME:
        return moment == OUTCOME
    return run.state.status == Status.FAILED and not _final(existing)


def supersedes(new: dict, existing: dict | None) -> bool:
    """Whether capture ``new`` should replace ``existing`` on the stored run (after a lost race)."""
    if not existing:
        return True
    if new.get("moment") != OUTCOME:
        return False
    return existing.get("moment") != OUTCOME or (_final(new) and not _final(existing))


def secret_parameter_names(run: Run) -> list[str]:
    """Names of the run's ``Secret`` parameters: their values are masked in captured text."""
    names = []
    for item in run.parameters:
        data_type = item.get("dataType") if isinstance(item, dict) else None
        if isinstance(data_type, str) and data_type.lower() == "secret" and isinstance(item.get("name"), str):
            names.append(item["name"])
    return names


# -------------------------------------------------------------------------------- pure: text


def redact(text: str, secret_names: Iterable[str]) -> str:
    """``text`` with the value after ``NAME=`` / ``NAME:`` replaced by ``***`` for each name."""
    for name in secret_names:
        # A name is an env var name ([-._a-zA-Z0-9]); escaped, it is a literal in the pattern.
        pattern = re.compile(rf"(?<![-._A-Za-z0-9])({re.escape(name)}\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|\S+)")
        text = pattern.sub(lambda m: f"{m.group(1)}***", text)
    return text


def _cut(text: object, limit: int, secret_names: Iterable[str] = ()) -> str | None:
    """A message kept to its *end* (where the cause usually is), with secrets masked."""
    if text is None:
        return None
    text = redact(str(text).strip(), secret_names)
    return text if len(text) <= limit else "…" + text[-(limit - 1):]


def log_tail(text: str, secret_names: Iterable[str] = (), lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of a container log, each cut to ``MAX_LINE_CHARS``, secrets masked."""
    names = list(secret_names)
    tail = text.splitlines()[-lines:] if lines > 0 else []
    out = []
    for line in tail:
        line = redact(line, names)
        out.append(line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS - 1] + "…")
    return out


def _error_text(err: Exception) -> str:
    if isinstance(err, KubeError):
        head = f"HTTP {err.status}" if err.status else type(err).__name__
        return _cut(f"{head}: {err.message}", MAX_ERROR_CHARS) or head
    return type(err).__name__  # not str(err): an unexpected error's text may quote an object


# -------------------------------------------------------------------------------- pure: pods


def _container_statuses(pod: dict) -> list[tuple[dict, bool]]:
    status = pod.get("status") or {}
    found = [(cs, True) for cs in status.get("initContainerStatuses") or [] if isinstance(cs, dict)]
    found += [(cs, False) for cs in status.get("containerStatuses") or [] if isinstance(cs, dict)]
    return found


def _failed_exit(terminated: dict | None) -> bool:
    return bool(terminated) and terminated.get("exitCode") not in (0, None)


def pod_troubled(pod: dict) -> bool:
    """A pod that failed, had a container fail, or waits on something that may never come."""
    status = pod.get("status") or {}
    if status.get("phase") == "Failed":
        return True
    for cs, _ in _container_statuses(pod):
        state, last = cs.get("state") or {}, cs.get("lastState") or {}
        if _failed_exit(state.get("terminated")) or _failed_exit(last.get("terminated")):
            return True
        if (state.get("waiting") or {}).get("reason") in _TROUBLED_WAITING:
            return True
    return any(isinstance(c, dict) and c.get("type") == "PodScheduled" and c.get("status") == "False"
               for c in status.get("conditions") or [])


def select_pods(pods: Iterable[dict], limit: int = MAX_PODS) -> tuple[list[dict], int]:
    """(the pods to diagnose, how many were left out): troubled first, then the newest."""
    pods = [p for p in pods if isinstance(p, dict)]

    def key(pod: dict):
        created = parse_time((pod.get("metadata") or {}).get("creationTimestamp")) or _EPOCH
        name = str((pod.get("metadata") or {}).get("name") or "")
        return (not pod_troubled(pod), -created.timestamp() if created != _EPOCH else 0.0, name)

    ordered = sorted(pods, key=key)
    return ordered[:limit], max(len(ordered) - limit, 0)


def _termination(terminated: dict, secret_names: list[str]) -> dict:
    out = {"exitCode": terminated.get("exitCode"), "reason": terminated.get("reason")}
    if terminated.get("signal") is not None:
        out["signal"] = terminated.get("signal")
    if terminated.get("message"):
        out["terminationMessage"] = _cut(terminated["message"], MAX_MESSAGE_CHARS, secret_names)
    for key in ("startedAt", "finishedAt"):
        if terminated.get(key):
            out[key] = terminated[key]
    return out


def container_summary(cs: dict, *, init: bool = False, secret_names: Iterable[str] = ()) -> dict:
    """One container's state as the capture keeps it (no image digests, no ids)."""
    names = list(secret_names)
    state = cs.get("state") or {}
    out: dict = {"name": cs.get("name"), "restartCount": cs.get("restartCount", 0)}
    if init:
        out["init"] = True
    if state.get("terminated"):
        out["state"] = "terminated"
        out.update(_termination(state["terminated"], names))
    elif state.get("waiting"):
        waiting = state["waiting"]
        out["state"] = "waiting"
        out["reason"] = waiting.get("reason")
        if waiting.get("message"):
            out["message"] = _cut(waiting["message"], MAX_EVENT_MESSAGE_CHARS, names)
    elif state.get("running"):
        out["state"] = "running"
        out["startedAt"] = state["running"].get("startedAt")
    else:
        out["state"] = "unknown"
    last = (cs.get("lastState") or {}).get("terminated")
    if last:
        out["lastTermination"] = _termination(last, names)
    return out


def container_has_log(cs: dict) -> bool:
    """Whether the kubelet has a log for this container: it runs, ran, or ran before a restart.
    (A container that never started answers 400 "waiting to start": not worth a request.)"""
    state = cs.get("state") or {}
    return bool(state.get("running") or state.get("terminated") or (cs.get("lastState") or {}).get("terminated"))


def pod_summary(pod: dict, *, secret_names: Iterable[str] = ()) -> dict:
    """One pod as the capture keeps it: phase, reason, scheduling problem, containers."""
    names = list(secret_names)
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    out: dict = {"name": meta.get("name"), "phase": status.get("phase"), "createdAt": meta.get("creationTimestamp")}
    if status.get("reason"):
        out["reason"] = status["reason"]  # Evicted, DeadlineExceeded, ...
    if status.get("message"):
        out["message"] = _cut(status["message"], MAX_EVENT_MESSAGE_CHARS, names)
    if meta.get("deletionTimestamp"):
        out["deleting"] = True
    for cond in status.get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            out["unschedulable"] = _cut(cond.get("message") or cond.get("reason"), MAX_EVENT_MESSAGE_CHARS, names)
    out["containers"] = [container_summary(cs, init=init, secret_names=names) for cs, init in _container_statuses(pod)]
    return out


# ------------------------------------------------------------------------------ pure: events


def warning_events(events: Iterable[dict], *, secret_names: Iterable[str] = (),
                   limit: int = MAX_EVENTS_PER_OBJECT) -> list[dict]:
    """The newest ``limit`` Warning events, oldest first, each as a small dict."""
    names = list(secret_names)
    warnings = [e for e in events if isinstance(e, dict) and e.get("type") == "Warning"]

    def last_seen(event: dict) -> datetime:
        return (parse_time(_series(event).get("lastObservedTime")) or parse_time(event.get("lastTimestamp"))
                or parse_time(event.get("eventTime"))
                or parse_time((event.get("metadata") or {}).get("creationTimestamp")) or _EPOCH)

    newest = sorted(warnings, key=last_seen)[-limit:] if limit > 0 else []
    out = []
    for event in newest:
        involved = event.get("involvedObject") or {}
        # Events written through events.k8s.io/v1 (the scheduler's) read back through core v1 with
        # eventTime and series {count, lastObservedTime}, a null lastTimestamp and no count.
        series = _series(event)
        item = {"reason": event.get("reason"), "message": _cut(event.get("message"), MAX_EVENT_MESSAGE_CHARS, names),
                "count": series.get("count") or event.get("count") or 1,
                "lastSeen": series.get("lastObservedTime") or event.get("lastTimestamp") or event.get("eventTime"),
                "object": f"{involved.get('kind', '?')}/{involved.get('name', '?')}"}
        field_path = involved.get("fieldPath")
        if isinstance(field_path, str) and field_path.startswith("spec.containers{"):
            item["container"] = field_path[len("spec.containers{"):].rstrip("}")
        out.append(item)
    return out


def _series(event: dict) -> dict:
    series = event.get("series")
    return series if isinstance(series, dict) else {}


# ------------------------------------------------------------------------- pure: the capture


def new_capture(state: RunState, now: datetime) -> dict:
    """An empty capture for a run in ``state``, to be filled by ``collect_diagnostics``."""
    return {
        "moment": capture_moment(state) or OUTCOME,
        "capturedAt": now.isoformat(),
        "trigger": {"status": str(state.status), "phase": str(state.phase), "reason": state.reason},
        "pods": [],
        "jobEvents": [],
    }


def capture_size(doc: dict) -> int:
    return len(json.dumps(doc, separators=(",", ":"), ensure_ascii=False, default=str))


def bounded(doc: dict, max_chars: int = MAX_CAPTURE_CHARS) -> dict:
    """``doc`` cut until its JSON fits ``max_chars``: log tails of later pods first, then of the
    first pod, then event lists, then later pods. Marked ``"truncated": true`` when anything went."""
    if capture_size(doc) <= max_chars:
        return doc
    doc = json.loads(json.dumps(doc, default=str))  # a deep copy of plain JSON
    doc["truncated"] = True
    pods = doc.get("pods") or []

    def logs(pod_list: list[dict], keep: int) -> None:
        for pod in pod_list:
            for container in pod.get("containers") or []:
                if isinstance(container.get("log"), list) and len(container["log"]) > keep:
                    container["log"] = container["log"][-keep:] if keep else []

    for keep in _LOG_LINE_STEPS:
        logs(pods[1:], keep)
        if capture_size(doc) <= max_chars:
            return doc
    for keep in _LOG_LINE_STEPS:
        logs(pods[:1], keep)
        if capture_size(doc) <= max_chars:
            return doc
    for keep in (3, 1):
        for holder in [doc, *pods]:
            for key in ("jobEvents", "events"):
                if isinstance(holder.get(key), list):
                    holder[key] = holder[key][-keep:]
        if capture_size(doc) <= max_chars:
            return doc
    while len(pods) > 1 and capture_size(doc) > max_chars:
        pods.pop()
        doc["podsOmitted"] = int(doc.get("podsOmitted") or 0) + 1
    return doc


def merge(earlier: dict | None, later: dict) -> dict:
    """The outcome capture ``later``, keeping the pods of an ``earlier`` (early) capture when the
    pods were gone by the outcome (OnFailure back-off, TTL, a user's delete)."""
    if not earlier:
        return later
    merged = dict(later)
    merged["firstSignal"] = earlier.get("firstSignal") or {"capturedAt": earlier.get("capturedAt"),
                                                          "trigger": earlier.get("trigger")}
    if not later.get("pods") and earlier.get("pods"):
        merged["pods"] = earlier["pods"]
        merged["podsCapturedAt"] = earlier.get("podsCapturedAt") or earlier.get("capturedAt")
        merged["note"] = ("The run's pods were deleted before its outcome was seen; they are shown as "
                          "captured earlier, at podsCapturedAt.")
    return bounded(merged)


# ---------------------------------------------------------------------------------------- I/O


def collect_diagnostics(kube, namespace: str, run_id: str, *, state: RunState, now: datetime,
                        secret_names: Iterable[str] = ()) -> dict:
    """Read the run's pods, their logs and Warning events, and the Job's Warning events; return
    the bounded capture. Costs at most 1 pod LIST + ``MAX_LOG_READS`` log reads + ``MAX_PODS`` + 1
    event LISTs. A cluster error is recorded under ``errors``, never raised."""
    names = list(secret_names)
    doc = new_capture(state, now)
    errors: list[str] = []
    try:
        pods = kube.list_pods(namespace, label_selector=jobspec.run_pods_selector(run_id), limit=100)
    except KubeError as err:
        pods = []
        errors.append(f"listing the run's pods: {_error_text(err)}")
    chosen, omitted = select_pods(pods)
    doc["podsFound"] = len(pods)
    if omitted:
        doc["podsOmitted"] = omitted
    log_reads = 0
    for pod in chosen:
        summary = pod_summary(pod, secret_names=names)
        pod_name = summary["name"]
        by_name = {cs.get("name"): cs for cs, _ in _container_statuses(pod)}
        for container in summary["containers"]:
            cs = by_name.get(container["name"]) or {}
            if not container_has_log(cs):
                continue
            if log_reads >= MAX_LOG_READS:
                container["logError"] = f"not read: at most {MAX_LOG_READS} logs are read per capture"
                continue
            log_reads += 1
            try:
                text = kube.read_pod_log(namespace, pod_name, container=container["name"], tail_lines=LOG_TAIL_LINES)
                container["log"] = log_tail(text, names)
            except KubeError as err:
                container["logError"] = _error_text(err)
        summary["events"] = _object_warnings(kube, namespace, "Pod", pod_name, names, errors)
        doc["pods"].append(summary)
    doc["jobEvents"] = _object_warnings(kube, namespace, "Job", run_id, names, errors)
    if errors:
        doc["errors"] = errors
    return bounded(doc)


def _object_warnings(kube, namespace: str, kind: str, name: str, secret_names: list[str],
                     errors: list[str]) -> list[dict]:
    selector = f"involvedObject.kind={kind},involvedObject.name={name},type=Warning"
    try:
        events = kube.list_events(namespace, field_selector=selector, limit=100)
    except KubeError as err:
        errors.append(f"listing events of {kind} {name}: {_error_text(err)}")
        return []
    return warning_events(events, secret_names=secret_names)


__all__ = [
    "EARLY", "OUTCOME", "bounded", "capture_moment", "collect_diagnostics", "container_summary", "log_tail",
    "merge", "needs_capture", "pod_summary", "redact", "secret_parameter_names", "select_pods", "supersedes",
    "warning_events",
]
