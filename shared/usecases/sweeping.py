"""Sweep: decode every active run's Job and record what changed; then publish the recorded events.

The sweep costs O(namespaces), not O(runs): per namespace one query of the active markers, one
labelled Job LIST (500 per page, of which it keeps only what the decoder reads) and, only when
some run needs it, one labelled pod LIST. It writes only the runs whose state changed: decided
from the markers alone (they carry the run's state columns) and saved in Table transactions of up
to 100 operations (``RunStore.save_many``), each run guarded by its marker's ETag. A run whose
transaction lost a race is read, decided again and saved on its own, so racing sweeps and
cancels never lose a transition. A transaction the run table does not answer (a timeout under
load, a 5xx) does not fail the sweep: its runs are counted in ``writesGivenUp`` and left for the
next sweep, which sees from their markers whether it landed after all. A run whose Job is
missing is Lost only after ``MISSING_SWEEPS_BEFORE_LOST`` sweeps in a row did not find it.

Fan-out: with a sweep queue configured (``shared.sweepqueue``), the timer does constant work -
``fan_out`` enqueues one message per allowed namespace - and the queue trigger sweeps one
namespace per message (``sweep_namespace``: its runs, then its recorded events), so Azure
Functions spreads namespaces over as many instances as it scales the queue consumers to. A
duplicate or redelivered message is harmless: the second sweep of a namespace decodes again and
writes nothing (markers' ETags), and only the sweep holding the namespace's publish lease
publishes its events. Without a queue, ``sweep`` does every namespace in process.
"""

from __future__ import annotations

import contextvars
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial

from shared import diagnostics, telemetry
from shared.kube import jobspec
from shared.kube.errors import KubeNotFound
from shared.kube.status import decode_job_status, job_for_decoding, pod_for_decoding
from shared.runs.errors import StaleRun
from shared.runs.markers import StateChange, run_from_marker
from shared.runs.model import TERMINAL_PHASES, Phase, Run, RunState, apply_state
from shared.usecases.collaborators import Collaborators
from shared.usecases.diagnosing import Budget, diagnose
from shared.usecases.publishing import outbox_rows, publish_pending
from shared.usecases.recording import SAVE_ATTEMPTS, count_if_finished, record

log = logging.getLogger(__name__)

MISSING_SWEEPS_BEFORE_LOST = 2
SWEEP_WRITE_WORKERS = 8  # concurrent per-run writes in one sweep (Table requests are network-bound)
POD_SELECTOR_MAX_RUNS = 50  # above this, list every run pod instead of naming runs in the selector
# A shard message outlives one sweep period or two, not more: a backlog (consumers down, or slower
# than the timer) expires instead of piling up, and the next tick enqueues every namespace afresh.
SHARD_MESSAGE_TTL_SECONDS = 120

# What one per-run write of a sweep came to.
RECORDED, UNCHANGED, GAVE_UP = "recorded", "unchanged", "gave up"


@dataclass
class SweepSummary:
    namespaces: int = 0
    runs_seen: int = 0
    changed: int = 0
    kube_requests: int = 0
    table_operations: int = 0
    duration_ms: float = 0.0
    published: int = 0
    diagnosed: int = 0
    # runs whose write lost its race SAVE_ATTEMPTS times, or whose transaction got no answer: the
    # next sweep decides them again
    writes_given_up: int = 0
    transitions: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "namespaces": self.namespaces,
            "runsSeen": self.runs_seen,
            "changed": self.changed,
            "kubeRequests": self.kube_requests,
            "tableOperations": self.table_operations,
            "eventsPublished": self.published,
            "diagnosed": self.diagnosed,
            "writesGivenUp": self.writes_given_up,
            "durationMs": round(self.duration_ms, 1),
        }


# Phases a run can be in while active: each is reported after every sweep, zeros included, so a
# phase that emptied (the last Stalled run started) shows as 0 rather than as its last count.
ACTIVE_PHASES = tuple(p for p in Phase if p not in TERMINAL_PHASES)


def sweep(c: Collaborators, *, per_run_writes: bool = False) -> SweepSummary:
    """Sweep every allowed namespace. ``per_run_writes``: the writes before batching (a read and a
    save per changed run), kept for the benchmark's comparison; the app never sets it."""
    with telemetry.span("sweep", namespaces=len(c.settings.allowed_namespaces)):
        summary = _sweep(c, per_run_writes)
    telemetry.sweep_finished(duration_s=summary.duration_ms / 1000, kube_requests=summary.kube_requests,
                             table_requests=summary.table_operations)
    return summary


def _sweep(c: Collaborators, per_run_writes: bool = False) -> SweepSummary:
    started = time.perf_counter()
    kube_before, table_before = c.kube_requests(), c.table_requests()
    summary = SweepSummary()
    budget = Budget()
    for namespace in c.settings.allowed_namespaces:
        active = c.store.list_active(namespace)
        summary.namespaces += 1
        phases = {a.run_id: a.phase for a in active}
        first = len(summary.transitions)
        if active:
            summary.runs_seen += len(active)
            _sweep_namespace(c, namespace, active, summary, budget, per_run_writes)
        for change in summary.transitions[first:]:
            phases[change["runId"]] = Phase(change["phase"])
        by_phase = {str(p): 0 for p in ACTIVE_PHASES}
        for phase in phases.values():
            if phase not in TERMINAL_PHASES:
                by_phase[str(phase)] += 1
        telemetry.active_runs(namespace, by_phase)
    for namespace in c.settings.allowed_namespaces:
        summary.published += publish_pending(c, namespace)
    summary.diagnosed = budget.used
    summary.kube_requests = c.kube_requests() - kube_before
    summary.table_operations = c.table_requests() - table_before
    summary.duration_ms = (time.perf_counter() - started) * 1000
    log.info("sweep: %s", summary.as_dict())
    return summary


def sweep_namespace(c: Collaborators, namespace: str) -> SweepSummary:
    """One shard of a fanned-out sweep: the namespace's active runs, then its recorded events."""
    started = time.perf_counter()
    kube_before, table_before = c.kube_requests(), c.table_requests()
    summary = SweepSummary(namespaces=1)
    budget = Budget()
    active = c.store.list_active(namespace)
    if active:
        summary.runs_seen = len(active)
        _sweep_namespace(c, namespace, active, summary, budget)
    summary.published = publish_pending(c, namespace)
    summary.diagnosed = budget.used
    summary.kube_requests = c.kube_requests() - kube_before
    summary.table_operations = c.table_requests() - table_before
    summary.duration_ms = (time.perf_counter() - started) * 1000
    log.info("sweep of %s: %s", namespace, summary.as_dict())
    return summary


def fan_out(c: Collaborators, queue) -> int:
    """The timer's part when a sweep queue is configured: one message per allowed namespace
    (no Table or Kubernetes request). Returns how many were sent."""
    for namespace in c.settings.allowed_namespaces:
        queue.send({"kind": "sweep", "namespace": namespace}, ttl_seconds=SHARD_MESSAGE_TTL_SECONDS)
    log.info("sweep fanned out: %d namespace(s) enqueued on %s", len(c.settings.allowed_namespaces), queue.name)
    return len(c.settings.allowed_namespaces)


def _sweep_namespace(c: Collaborators, namespace: str, active: list, summary: SweepSummary, budget: Budget,
                     per_run_writes: bool = False) -> None:
    """One namespace's sweep: list its run Jobs (and pods, events where needed), decide every
    active run, save the changes in transactions, then run the per-run work concurrently."""
    now = c.clock()
    jobs = {job["metadata"]["name"]: job
            for job in c.kube.list_jobs(namespace, label_selector=jobspec.run_selector(), limit=500,
                                        keep=job_for_decoding)}
    need_pods = [a for a in active if _needs_pods(c, a, jobs.get(a.run_id), now)]
    pods_by_run = _pods_by_run(c, namespace, need_pods)
    events_by_run = _events_by_run(c, namespace, [(a.run_id, jobs.get(a.run_id), pods_by_run.get(a.run_id, []))
                                                  for a in need_pods])
    observed = {a.run_id: _Observed(jobs.get(a.run_id), pods_by_run.get(a.run_id, []), events_by_run.get(a.run_id))
                for a in active}
    work, changes, missed = _decide(c, namespace, active, observed, now, summary, budget, per_run_writes)
    work += _save_changes(c, namespace, changes, missed, observed, now, summary, budget)
    outcomes = _run_concurrently(work)
    summary.changed += outcomes.count(RECORDED)
    summary.writes_given_up += outcomes.count(GAVE_UP)


@dataclass(frozen=True)
class _Observed:
    """What the sweep's lists showed of one run: its Job (None: not listed), pods and Warning events."""
    job: dict | None
    pods: list
    events: list[dict] | None


def _decide(c: Collaborators, namespace: str, active: list, observed: dict[str, _Observed], now: datetime,
            summary: SweepSummary, budget: Budget, per_run_writes: bool) -> tuple[list, list[StateChange], set[str]]:
    """Decide every active run from its marker and what was observed. Returns the per-run work
    (a read, then an ETag-guarded save), the changes to save in transactions (markers that carry
    the whole state; none when ``per_run_writes``) and which of those only count a missed sweep."""
    work: list = []
    changes: list[StateChange] = []
    missed: set[str] = set()
    for marker in active:
        seen = observed[marker.run_id]
        batched = marker.complete and not per_run_writes
        if seen.job is None and marker.cancel_requested_at is None:
            if marker.phase == Phase.SUBMITTING and _age(marker.created_at, now) < c.settings.submit_grace_seconds:
                continue  # the create may still be in flight
            if marker.missing_sweeps + 1 < MISSING_SWEEPS_BEFORE_LOST:
                if batched:
                    before = run_from_marker(marker)
                    changes.append(StateChange(marker, replace(before, missing_sweeps=before.missing_sweeps + 1)))
                    missed.add(marker.run_id)
                else:
                    work.append(partial(_note_missing, c, namespace, marker.run_id))
                continue
        state = decode_job_status(seen.job, seen.pods, now=now, stall_after_seconds=c.settings.stall_after_seconds,
                                  cancel_requested=marker.cancel_requested_at is not None, events=seen.events,
                                  held_at_create=marker.held_at_create)
        if (marker.status, marker.phase, marker.reason, marker.message) == (
                state.status, state.phase, state.reason, state.message) and marker.missing_sweeps == 0:
            continue
        if batched:
            before = run_from_marker(marker)
            after = apply_state(before, state, now)
            if after is None:  # the same state, seen again after a missed sweep
                after = replace(before, missing_sweeps=0)
            changes.append(StateChange(marker, after, tuple(outbox_rows(c, before, after))))
        else:
            work.append(partial(_record, c, namespace, marker.run_id, seen.job, seen.pods, now, summary, budget,
                                seen.events))
    return work, changes, missed


def _save_changes(c: Collaborators, namespace: str, changes: list[StateChange], missed: set[str],
                  observed: dict[str, _Observed], now: datetime, summary: SweepSummary, budget: Budget) -> list:
    """Save the decided changes in transactions and count what landed. Returns the per-run work
    left: a run whose transaction lost a race is read and decided again; a saved failing run is
    diagnosed. A transaction with no answer leaves its runs for the next sweep."""
    if not changes:
        return []
    unreached: list[str] = []  # transactions with no answer: left as they were, for the next sweep
    unsaved = set(c.store.save_many(namespace, changes, unavailable=unreached))
    if unreached:
        log.warning("sweep of %s: %d run(s) not recorded (the run table did not answer their transactions); "
                    "the next sweep decides them again", namespace, len(unreached))
        summary.writes_given_up += len(unreached)
    not_recorded = set(unreached)
    work: list = []
    for change in changes:
        run_id = change.run.run_id
        if run_id in not_recorded:
            continue
        if run_id in missed:  # a missed sweep counted
            if run_id in unsaved:
                work.append(partial(_note_missing, c, namespace, run_id))
            continue
        if run_id in unsaved:  # lost a race (or cannot be merged): read, decide again, save
            seen = observed[run_id]
            work.append(partial(_record, c, namespace, run_id, seen.job, seen.pods, now, summary, budget, seen.events))
            continue
        summary.changed += 1
        after = change.run
        count_if_finished(run_from_marker(change.marker), after)
        summary.transitions.append({"runId": run_id, "from": str(change.marker.status), "to": str(after.status),
                                    "phase": str(after.phase)})
        if diagnostics.capture_moment(after.state) is not None:
            work.append(partial(_diagnose_saved, c, namespace, run_id, now, budget))
    return work


def _diagnose_saved(c: Collaborators, namespace: str, run_id: str, now: datetime, budget: Budget) -> None:
    """Diagnose a failing run saved in a transaction: the capture needs the whole run (parameters)."""
    run = c.store.get_run(namespace, run_id)
    if run is not None and diagnostics.needs_capture(run):
        diagnose(c, run, now, budget)


def observe_run(c: Collaborators, run: Run) -> Run:
    """One run read through to its Job outside the sweep (a poll): one Job GET, its pods (and the
    Warning events the sweep would read) only when they can change the answer, the sweep's decoder, and the same ETag-guarded write (re-read and
    re-decided on a lost race). A missing Job is left to the sweep (it is Lost only after
    ``MISSING_SWEEPS_BEFORE_LOST`` sweeps); the stored run is returned unchanged then."""
    try:
        job = c.kube.get_job(run.namespace, run.run_id)
    except KubeNotFound:
        return run
    job = job_for_decoding(job)
    now = c.clock()
    pods: list[dict] = []
    events = None
    if _needs_pods(c, run, job, now):
        pods = _pods_by_run(c, run.namespace, [run]).get(run.run_id, [])
        events = _events_by_run(c, run.namespace, [(run.run_id, job, pods)]).get(run.run_id)
    def decide(current: Run) -> RunState:
        return decode_job_status(job, pods, now=now, stall_after_seconds=c.settings.stall_after_seconds,
                                 cancel_requested=current.cancel_requested_at is not None, events=events,
                                 held_at_create=current.held_at_create)

    saved, written = record(c, run, decide, now)
    if written and diagnostics.needs_capture(saved):
        diagnose(c, saved, now, Budget(limit=1))
    return saved


def _pods_by_run(c: Collaborators, namespace: str, need_pods: list) -> dict[str, list[dict]]:
    """The pods of the runs in ``need_pods``, by run id: one labelled LIST (none when none is needed)."""
    pods_by_run: dict[str, list[dict]] = {}
    if not need_pods:
        return pods_by_run
    selector = jobspec.run_selector()
    if len(need_pods) <= POD_SELECTOR_MAX_RUNS:
        selector += f",{jobspec.RUN_ID_LABEL} in ({','.join(a.run_id for a in need_pods)})"
    for pod in c.kube.list_pods(namespace, label_selector=selector, limit=500, keep=pod_for_decoding):
        run_label = ((pod.get("metadata") or {}).get("labels") or {}).get(jobspec.RUN_ID_LABEL)
        if run_label:
            pods_by_run.setdefault(run_label, []).append(pod)
    return pods_by_run


def _refused_shape(job: dict | None, pods: list[dict]) -> bool:
    """Started, yet no pod, no count, no condition: the shape of pods Kubernetes refuses to create,
    whose only evidence is the Job's FailedCreate events."""
    if job is None or pods:
        return False
    status = job.get("status") or {}
    uncounted = status.get("uncountedTerminatedPods") or {}
    return bool(status.get("startTime")) and not status.get("conditions") and not any(
        status.get(k) for k in ("active", "succeeded", "failed", "terminating")) and not any(
        uncounted.get(k) for k in ("succeeded", "failed"))


def _creating(pods: list[dict]) -> list[str]:
    """Names of the pods whose containers still wait in ContainerCreating (a FailedMount suspect)."""
    return [p["metadata"]["name"] for p in pods
            if (p.get("status") or {}).get("phase") == "Pending" and not (p.get("metadata") or {}).get(
                "deletionTimestamp") and any(((cs.get("state") or {}).get("waiting") or {}).get("reason")
                                             == "ContainerCreating"
                                             for cs in (p.get("status") or {}).get("containerStatuses") or [])]


def _events_by_run(c: Collaborators, namespace: str, candidates: list[tuple[str, dict | None, list[dict]]]
                   ) -> dict[str, list[dict]]:
    """Warning events that can change a decoded state, by run id - listed only for runs whose pods
    were listed and show a shape only events explain: no pod at all (FailedCreate on the Job) or a
    pod stuck in ContainerCreating (FailedMount on the pod). At most one LIST per reason; healthy
    runs cost nothing."""
    refused = [run_id for run_id, job, pods in candidates if _refused_shape(job, pods)]
    creating = {name: run_id for run_id, _, pods in candidates for name in _creating(pods)}
    found: dict[str, list[dict]] = {run_id: [] for run_id in refused}
    if refused:
        for event in c.kube.list_events(namespace, field_selector="involvedObject.kind=Job,reason=FailedCreate,"
                                                                  "type=Warning", limit=500):
            name = (event.get("involvedObject") or {}).get("name")
            if name in found:
                found[name].append(event)
    if creating:
        for event in c.kube.list_events(namespace, field_selector="involvedObject.kind=Pod,reason=FailedMount,"
                                                                  "type=Warning", limit=500):
            run_id = creating.get((event.get("involvedObject") or {}).get("name"))
            if run_id is not None:
                found.setdefault(run_id, []).append(event)
    return found


def _needs_pods(c: Collaborators, marker, job: dict | None, now: datetime) -> bool:
    """Pods cost a LIST; fetch them only when they can change the decoded state."""
    if marker.cancel_requested_at is not None:
        return True  # Cancelling ends when no pod of the run remains
    if job is None:
        return False
    status = job.get("status") or {}
    if any(cond.get("status") == "True" for cond in status.get("conditions") or []):
        return False
    if status.get("ready") or status.get("succeeded"):
        return False
    # Not a single ready pod: maybe waiting on an image or a node. Pods tell which.
    return _age(marker.created_at, now) >= min(c.settings.stall_after_seconds, c.settings.pod_check_after_seconds)


def _note_missing(c: Collaborators, namespace: str, run_id: str) -> str:
    """Count one more sweep that did not find the run's Job."""
    for _ in range(SAVE_ATTEMPTS):
        run = c.store.get_run(namespace, run_id)
        if run is None or run.terminal:
            return UNCHANGED
        try:
            c.store.save(replace(run, missing_sweeps=run.missing_sweeps + 1))
            return UNCHANGED  # not a transition
        except StaleRun:
            continue
    log.warning("run %s: gave up noting its missing Job after %d conflicting writes; the next sweep retries",
                run_id, SAVE_ATTEMPTS)
    return GAVE_UP


def _record(c: Collaborators, namespace: str, run_id: str, job: dict | None, pods: list[dict], now: datetime,
            summary: SweepSummary, budget: Budget, events: list[dict] | None = None) -> str:
    """Apply the decoded state to the stored run, re-reading and re-deciding on a lost race."""
    for _ in range(SAVE_ATTEMPTS):
        run = c.store.get_run(namespace, run_id)
        if run is None:
            return UNCHANGED
        state = decode_job_status(job, pods, now=now, stall_after_seconds=c.settings.stall_after_seconds,
                                  cancel_requested=run.cancel_requested_at is not None, events=events,
                                  held_at_create=run.held_at_create)
        updated = apply_state(run, state, now)
        if updated is None:
            if run.missing_sweeps and job is not None and not run.terminal:
                updated = replace(run, missing_sweeps=0)
            else:
                return UNCHANGED
        try:
            saved = c.store.save(updated, outbox=outbox_rows(c, run, updated))
        except StaleRun:
            continue
        count_if_finished(run, saved)
        summary.transitions.append({"runId": run_id, "from": str(run.status), "to": str(updated.status),
                                    "phase": str(updated.phase)})
        if diagnostics.needs_capture(saved):
            diagnose(c, saved, now, budget)
        return RECORDED
    log.warning("run %s: gave up after %d conflicting writes; the next sweep retries", run_id, SAVE_ATTEMPTS)
    return GAVE_UP


def _run_concurrently(work: list) -> list:
    """Run the sweep's per-run writes on a few threads: each is a Table read and an ETag-guarded
    batch (network-bound, independent per run), so a mass transition of thousands of runs takes
    seconds, not minutes. Order does not matter; every write is still guarded by its run's ETag."""
    if len(work) <= 1:
        return [task() for task in work]
    with ThreadPoolExecutor(max_workers=min(SWEEP_WRITE_WORKERS, len(work)),
                            thread_name_prefix="sweep-write") as pool:
        # Each task in a copy of this context: its log lines keep the sweep's correlation id.
        futures = [pool.submit(contextvars.copy_context().run, task) for task in work]
        return [f.result() for f in futures]


def _age(created_at: datetime | None, now: datetime) -> float:
    if created_at is None:
        return float("inf")
    return (now - created_at) / timedelta(seconds=1)
