"""The use cases: discover, submit, rerun, status, cancel, sweep.

Each use case is a method of ``RunService``, which holds the three things they need: the settings,
the run store (Table Storage) and a Kubernetes facade (built lazily: listing runs or reading one
never needs cluster credentials). The promises they keep, and how:

- **Submit is safe to receive twice.** An idempotency key gives a deterministic Job name and is
  claimed atomically together with the run row; a second submit with the key returns the first
  run. The row is written before the Job is created, so a crash never leaves a Job no row knows;
  a create that fails for good turns the row Failed with the reason; a create whose outcome is
  unknown (timeout) leaves the row ``Submitting`` and the sweep adopts the Job if it appears or
  gives up on it after two sweeps. A 409 on create for a Job carrying this run's label is our own
  earlier attempt and is adopted.
- **Cancel intent is recorded before the delete**, so the sweep tells our cancel from a Kueue
  suspension or a Job deleted behind our back.
- **The sweep costs O(namespaces), not O(runs)**: per namespace one query of the active markers,
  one labelled Job LIST (500 per page) and, only when some run needs it, one labelled pod LIST.
  It writes only the runs whose state changed, each with its ETag; a write that lost a race
  re-reads the run and re-applies, so racing sweeps and cancels never lose a transition.
- **Failure evidence outlives the cluster's cleanup.** A run the sweep records as failing
  (Stalled, crash-looping or retrying a failed pod, Failing, Failed, Lost) gets a bounded capture of
  its pods, logs and Warning events (``shared.diagnostics``) - only such runs, so healthy sweeps
  stay O(namespaces). The state is saved first; the capture follows with its own ETag-guarded
  save, best effort, so a failing capture never holds up or loses a transition.
- **Secret parameters stay in the cluster.** Their values go into a Secret created after the Job,
  owned by it (the garbage collector removes it with the Job); the Job, the run row and every
  answer carry only ``secretKeyRef``s and ``***``.
- **Runs are reproducible.** The run keeps its rendered Job (Secret values as references), its
  hash, and - as an annotation of that Job - which env vars it changed against the source's
  defaults. A rerun replays the rendered Job
  under a new name, even after the source Job is gone; Secret values are not kept, so a rerun
  must be given them again (or is refused, naming them).

Nothing here knows HTTP: ``shared.api`` parses requests and renders answers.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property, partial

from shared import diagnostics
from shared.errors import AppError, Conflict, NotFound, UpstreamError, ValidationFailed
from shared.kube import discovery, jobspec
from shared.kube.errors import KubeConflict, KubeError, KubeInvalid, KubeNotFound
from shared.kube.status import decode_job_status
from shared.runs.model import (
    PARAMETER_CHANGES_ANNOTATION,
    REDACTED,
    RERUN_OF_ANNOTATION,
    Phase,
    Run,
    RunState,
    Status,
    apply_state,
)
from shared.settings import Settings

log = logging.getLogger(__name__)

MISSING_SWEEPS_BEFORE_LOST = 2
SAVE_ATTEMPTS = 5
SWEEP_WRITE_WORKERS = 8  # concurrent per-run writes in one sweep (Table requests are network-bound)
POD_SELECTOR_MAX_RUNS = 50  # above this, list every run pod instead of naming runs in the selector
OUTBOX_LEASE_SECONDS = 20  # shorter than a sweep period: an event a dead sweep claimed goes out next time
# Each capture costs up to ~17 Kubernetes reads; a sweep in which more runs turn failing records
# the rest as "not captured" rather than run for minutes.
MAX_DIAGNOSED_PER_SWEEP = 20
MAX_SOURCE_VALUE_CHARS = 256  # a source default kept in the parameter-changes annotation
MAX_PARAMETER_CHANGES_CHARS = 16 * 1024  # annotations share 256 KiB per object
RERUN_KEY_PREFIX = "rerun:"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class SubmitRequest:
    external_id: str
    namespace: str
    parameters: list[jobspec.Parameter] = field(default_factory=list)
    ignored_parameters: list[str] = field(default_factory=list)
    attributes: dict = field(default_factory=dict)
    idempotency_key: str | None = None


@dataclass
class SubmitResult:
    run: Run
    created: bool  # False when an earlier submit with the same idempotency key is returned
    ignored_parameters: list[str] = field(default_factory=list)


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
            "durationMs": round(self.duration_ms, 1),
        }


class RunService:
    def __init__(self, settings: Settings, store, *, kube_factory: Callable[[], object] | None = None,
                 clock: Callable[[], datetime] = utcnow):
        self.settings = settings
        self.store = store
        self._kube_factory = kube_factory
        self.clock = clock
        self._diagnosed_lock = threading.Lock()

    @cached_property
    def kube(self):
        if self._kube_factory is not None:
            return self._kube_factory()
        from shared.kube.client import KubeClient
        from shared.kube.credentials import connector_for

        return KubeClient(connector_for(self.settings), timeout=self.settings.kube_request_timeout_seconds)

    @cached_property
    def publisher(self):
        """The Event Grid publisher, or None when no topic is configured (then no event is recorded)."""
        from shared.events import publisher_for

        return publisher_for(self.settings)

    # ------------------------------------------------------------ discovery

    def discover(self, namespace: str) -> list[dict]:
        return discovery.discover_source_jobs(self.kube, namespace)

    def describe(self, namespace: str, external_id: str) -> dict:
        return discovery.describe_source_job(discovery.read_source_job(self.kube, namespace, external_id))

    # --------------------------------------------------------------- submit

    def submit(self, req: SubmitRequest) -> SubmitResult:
        if req.idempotency_key:
            existing = self.store.get_run_by_idempotency_key(req.namespace, req.idempotency_key)
            if existing is not None:
                if existing.external_id != req.external_id:
                    # A reused key must not silently answer with another Job's run.
                    raise Conflict(f"idempotencyKey already belongs to run {existing.run_id} of "
                                   f"{existing.external_id!r}, not of {req.external_id!r}",
                                   field="idempotencyKey", details={"runId": existing.run_id})
                return self._resume_if_unconfirmed(existing, req)

        template, source, source_rv = self._template_for(req)
        _annotate(template, PARAMETER_CHANGES_ANNOTATION, recorded_parameter_changes(template, req.parameters))
        run_id = jobspec.run_job_name(req.external_id, req.idempotency_key, reserve=_index_reserve(template))
        rendered = jobspec.render_run_job(
            template, run_id=run_id, namespace=req.namespace, external_id=req.external_id,
            parameters=req.parameters, idempotency_key=req.idempotency_key,
            ttl_seconds_after_finished=self.settings.job_ttl_seconds_after_finished,
        )
        run = self._new_run(run_id, req.namespace, req.external_id, rendered,
                            idempotency_key=req.idempotency_key,
                            parameters=[p.to_record() for p in req.parameters],
                            attributes=req.attributes, source=source, source_resource_version=source_rv)
        return self._start(run, rendered, req.ignored_parameters)

    def _new_run(self, run_id: str, namespace: str, external_id: str, rendered, *, idempotency_key: str | None,
                 parameters: list[dict], attributes: dict, source: str, source_resource_version: str | None) -> Run:
        now = self.clock()
        return Run(
            run_id=run_id, namespace=namespace, external_id=external_id,
            status=Status.STARTING, phase=Phase.SUBMITTING, reason="Submitting",
            created_at=now, updated_at=now, idempotency_key=idempotency_key,
            parameters=parameters, attributes=dict(attributes),
            source=source, source_resource_version=source_resource_version, spec_hash=rendered.spec_hash,
            history=[{"at": now.isoformat(), "status": str(Status.STARTING), "phase": str(Phase.SUBMITTING),
                      "reason": "Submitting"}],
            rendered_job=rendered.job,  # Secret values are secretKeyRefs in it, never literals
        )

    def _start(self, run: Run, rendered, ignored_parameters: list[str]) -> SubmitResult:
        """Write the run row (claiming its idempotency key), then create its Job and Secret."""
        from shared.runs.store import IdempotencyKeyTaken

        try:
            run = self.store.create_run(run, outbox=self._outbox(None, run))
        except IdempotencyKeyTaken as taken:
            existing = self.store.get_run(run.namespace, taken.run_id)
            if existing is None:
                raise Conflict("A run with this idempotency key is being created; retry shortly",
                               field="idempotencyKey") from None
            if existing.external_id != run.external_id:
                raise Conflict(f"idempotencyKey already belongs to run {existing.run_id} of "
                               f"{existing.external_id!r}", field="idempotencyKey",
                               details={"runId": existing.run_id}) from None
            return SubmitResult(existing, created=False, ignored_parameters=ignored_parameters)
        run = self._create_job(run, rendered)
        return SubmitResult(run, created=True, ignored_parameters=ignored_parameters)

    # ---------------------------------------------------------------- rerun

    def rerun(self, run_id: str, namespace: str | None = None, *,
              secret_parameters: list[jobspec.Parameter] | None = None,
              idempotency_key: str | None = None) -> SubmitResult:
        """A new run from the same rendered spec as ``run_id``: a new name and run labels, the same
        containers, env and settings - even when the source Job no longer exists.

        Secret values are not kept anywhere but the first run's Secret (gone with its Job), so every
        Secret parameter of the run must be given again in ``secret_parameters`` (and nothing else:
        other values are replayed as they were); otherwise ValidationFailed names the missing ones.
        ``idempotency_key`` is scoped to the rerun of this run (``rerun:<runId>:<key>``): the same
        key again returns the same rerun, and never collides with a submit's key.
        """
        original = self.get_run(run_id, namespace)
        secrets = _rerun_secrets(original, secret_parameters or [])
        key = f"{RERUN_KEY_PREFIX}{original.run_id}:{idempotency_key}" if idempotency_key else None
        request = SubmitRequest(external_id=original.external_id, namespace=original.namespace,
                                parameters=secrets, attributes=dict(original.attributes), idempotency_key=key)
        if key:
            existing = self.store.get_run_by_idempotency_key(original.namespace, key)
            if existing is not None:
                return self._resume_if_unconfirmed(existing, request)

        parameters = _replayed_parameters(original, secrets)
        if original.rendered_job:
            template = copy.deepcopy(original.rendered_job)  # its parameter changes come along
        else:
            # The rendered Job was too large to keep in the run table (fit_run dropped it): render
            # from the source Job (or the fallback attributes) again, with the recorded values.
            template, _, _ = self._template_for(request)
            _annotate(template, PARAMETER_CHANGES_ANNOTATION, recorded_parameter_changes(template, parameters))
        _annotate(template, RERUN_OF_ANNOTATION, original.run_id)
        new_id = jobspec.run_job_name(original.external_id, key, reserve=_index_reserve(template))
        rendered = jobspec.render_run_job(
            template, run_id=new_id, namespace=original.namespace, external_id=original.external_id,
            parameters=parameters, idempotency_key=key,
            ttl_seconds_after_finished=self.settings.job_ttl_seconds_after_finished,
        )
        run = self._new_run(new_id, original.namespace, original.external_id, rendered, idempotency_key=key,
                            parameters=copy.deepcopy(original.parameters), attributes=original.attributes,
                            source="rerun", source_resource_version=original.source_resource_version)
        return self._start(run, rendered, [])

    def _template_for(self, req: SubmitRequest) -> tuple[dict, str, str | None]:
        """The source Job cloned, or the fallback spec when it is gone and attributes allow one."""
        try:
            source = discovery.read_source_job(self.kube, req.namespace, req.external_id)
        except NotFound:
            if not req.attributes:
                raise NotFound(
                    f"Source Job {req.external_id!r} not found in namespace {req.namespace!r}, and no "
                    "fallback attributes were given: set containerImage / containerCommand / "
                    "containerArgs to run it without a source Job",
                    field="externalId") from None
            return jobspec.fallback_job(req.external_id, req.attributes), "fallback", None
        return jobspec.clone_source_job(source), "job", (source.get("metadata") or {}).get("resourceVersion")

    def _create_job(self, run: Run, rendered) -> Run:
        """Create the Job for a written run row; the row ends Starting, Failed, or (outcome unknown)
        Submitting for the sweep to settle."""
        try:
            job = self.kube.create_job(run.namespace, rendered.job)
        except KubeConflict:
            job = self._adoptable_job(run)
            if job is None:
                return self._fail(run, "NameConflict",
                                  f"A Job named {run.run_id!r} exists and does not belong to this run")
        except KubeInvalid as err:
            self._fail(run, "JobRejected", _invalid_message(err))
            raise ValidationFailed(f"Kubernetes rejected the Job: {_invalid_message(err)}",
                                   field=_invalid_field(err), details={"runId": run.run_id}) from err
        except KubeError as err:
            if err.retryable:
                # Outcome unknown: the create may have landed. Keep the row Submitting; a retried
                # submit with the same key, or the sweep, settles it.
                log.warning("create of Job %s not confirmed: %s", run.run_id, err.message)
                raise UpstreamError(f"The cluster did not confirm the Job's creation ({err.message}); "
                                    "retry with the same idempotency key", details={"runId": run.run_id}) from err
            self._fail(run, "CreateFailed", err.message)
            raise UpstreamError(f"The cluster refused the Job: {err.message}",
                                details={"runId": run.run_id}) from err
        if rendered.secret is not None:
            self._create_secret(run, rendered.secret, job)
        return self._transition(run, RunState(Status.STARTING, Phase.PENDING, "JobCreated",
                                              f"Job {run.run_id} created in namespace {run.namespace}"))

    def _create_secret(self, run: Run, secret: dict, job: dict) -> None:
        owned = dict(secret)
        owned["metadata"] = {**secret.get("metadata", {}),
                             "ownerReferences": [jobspec.secret_owner_reference(job)]}
        try:
            self.kube.create_secret(run.namespace, owned)
        except KubeConflict:
            # Our own earlier attempt: the Secret is named after the run (its random run id), and is
            # only created once this run's Job exists, so a Secret of that name is one a previous
            # try of this same submit created before it was interrupted, from the same parameters.
            # Deliberately not read back to compare: that would need `get` on Secrets, which lets
            # the identity read every Secret in the namespace (infra/k8s/rbac.yaml grants create).
            pass
        except KubeError as err:
            # Without its Secret the pod can't start; remove the Job rather than leave it stuck.
            self._delete_quietly(run)
            self._fail(run, "SecretCreateFailed", err.message)
            raise UpstreamError(f"Could not create the run's Secret: {err.message}",
                                details={"runId": run.run_id}) from err

    def _adoptable_job(self, run: Run) -> dict | None:
        try:
            job = self.kube.get_job(run.namespace, run.run_id)
        except KubeNotFound:
            return None
        labels = (job.get("metadata") or {}).get("labels") or {}
        return job if labels.get(jobspec.RUN_ID_LABEL) == run.run_id else None

    def _resume_if_unconfirmed(self, run: Run, req: SubmitRequest) -> SubmitResult:
        """A retried submit for a run whose create was never confirmed tries the create again
        (same name, so at most one Job); any other state is simply returned."""
        if run.phase == Phase.SUBMITTING and run.rendered_job:
            rendered = jobspec.RenderedRun(job=run.rendered_job, secret=None, spec_hash=run.spec_hash or "")
            if any(p.data_type == "Secret" for p in req.parameters):
                rendered = jobspec.render_run_job(
                    run.rendered_job, run_id=run.run_id, namespace=run.namespace,
                    external_id=run.external_id, parameters=req.parameters,
                    idempotency_key=run.idempotency_key,
                    ttl_seconds_after_finished=self.settings.job_ttl_seconds_after_finished)
            run = self._create_job(run, rendered)
        return SubmitResult(run, created=False, ignored_parameters=req.ignored_parameters)

    # ------------------------------------------------------- status, cancel

    def get_run(self, run_id: str, namespace: str | None = None) -> Run:
        for ns in ([namespace] if namespace else self.settings.allowed_namespaces):
            run = self.store.get_run(ns, run_id)
            if run is not None:
                return run
        raise NotFound(f"No run {run_id!r}", field="runId")

    def list_runs(self, namespace: str, *, status: str | None = None, external_id: str | None = None,
                  page_size: int = 50, continuation: str | None = None):
        return self.store.list_runs(namespace, status=status, external_id=external_id,
                                    page_size=page_size, continuation=continuation)

    def cancel(self, run_id: str, namespace: str | None = None) -> tuple[Run, bool]:
        """Record the cancel intent, then delete the Job (Background). Returns (run, changed)."""
        run = self.get_run(run_id, namespace)
        for _ in range(SAVE_ATTEMPTS):
            if run.terminal:
                return run, False
            if run.cancel_requested_at is not None:
                break
            now = self.clock()
            wanted = replace(run, cancel_requested_at=now)
            updated = apply_state(wanted, RunState(Status.RUNNING, Phase.CANCELLING, "CancelRequested",
                                                   "Cancel requested; the Job is being deleted"), now) or wanted
            try:
                run = self.store.save(updated, outbox=self._outbox(run, updated))
                break
            except self._stale():
                run = self.get_run(run_id, run.namespace)
        self._delete_quietly(run)
        return run, True

    def _delete_quietly(self, run: Run) -> None:
        try:
            self.kube.delete_job(run.namespace, run.run_id, propagation="Background")
        except KubeNotFound:
            pass

    # ---------------------------------------------------------------- sweep

    def sweep(self) -> SweepSummary:
        started = time.perf_counter()
        kube_before = self._kube_request_total()
        table_before = self._table_request_total()
        summary = SweepSummary()
        for namespace in self.settings.allowed_namespaces:
            active = self.store.list_active(namespace)
            summary.namespaces += 1
            if not active:
                continue
            summary.runs_seen += len(active)
            self._sweep_namespace(namespace, active, summary)
        for namespace in self.settings.allowed_namespaces:
            summary.published += self.publish_pending(namespace)
        summary.kube_requests = self._kube_request_total() - kube_before
        summary.table_operations = self._table_request_total() - table_before
        summary.duration_ms = (time.perf_counter() - started) * 1000
        log.info("sweep: %s", summary.as_dict())
        return summary

    def _sweep_namespace(self, namespace: str, active: list, summary: SweepSummary) -> None:
        now = self.clock()
        jobs = {job["metadata"]["name"]: job
                for job in self.kube.list_jobs(namespace, label_selector=jobspec.run_selector(), limit=500)}
        need_pods = [a for a in active if self._needs_pods(a, jobs.get(a.run_id), now)]
        pods_by_run: dict[str, list[dict]] = {}
        if need_pods:
            selector = jobspec.run_selector()
            if len(need_pods) <= POD_SELECTOR_MAX_RUNS:
                selector += f",{jobspec.RUN_ID_LABEL} in ({','.join(a.run_id for a in need_pods)})"
            for pod in self.kube.list_pods(namespace, label_selector=selector, limit=500):
                run_label = ((pod.get("metadata") or {}).get("labels") or {}).get(jobspec.RUN_ID_LABEL)
                if run_label:
                    pods_by_run.setdefault(run_label, []).append(pod)

        work = []
        for marker in active:
            job = jobs.get(marker.run_id)
            pods = pods_by_run.get(marker.run_id, [])
            if job is None and marker.cancel_requested_at is None:
                if marker.phase == Phase.SUBMITTING and _age(marker.created_at, now) < 60:
                    continue  # the create may still be in flight
                if marker.missing_sweeps + 1 < MISSING_SWEEPS_BEFORE_LOST:
                    work.append(partial(self._note_missing, namespace, marker.run_id, summary))
                    continue
            state = decode_job_status(job, pods, now=now, stall_after_seconds=self.settings.stall_after_seconds,
                                      cancel_requested=marker.cancel_requested_at is not None)
            if (marker.status, marker.phase, marker.reason, marker.message) == (
                    state.status, state.phase, state.reason, state.message) and marker.missing_sweeps == 0:
                continue
            work.append(partial(self._record, namespace, marker.run_id, job, pods, now, summary))
        summary.changed += sum(1 for recorded in _run_concurrently(work) if recorded is True)

    def _needs_pods(self, marker, job: dict | None, now: datetime) -> bool:
        """Pods cost a LIST; fetch them only when they can change the decoded state."""
        if marker.cancel_requested_at is not None:
            return True  # Cancelling ends when no pod of the run remains
        if job is None:
            return False
        status = job.get("status") or {}
        if any(c.get("status") == "True" for c in status.get("conditions") or []):
            return False
        if status.get("ready") or status.get("succeeded"):
            return False
        # Not a single ready pod: maybe waiting on an image or a node. Pods tell which.
        return _age(marker.created_at, now) >= min(self.settings.stall_after_seconds, 30)

    def _note_missing(self, namespace: str, run_id: str, summary: SweepSummary) -> None:
        for _ in range(SAVE_ATTEMPTS):
            run = self.store.get_run(namespace, run_id)
            if run is None or run.terminal:
                return
            try:
                self.store.save(replace(run, missing_sweeps=run.missing_sweeps + 1))
                return
            except self._stale():
                continue

    def _record(self, namespace: str, run_id: str, job: dict | None, pods: list[dict], now: datetime,
                summary: SweepSummary) -> bool:
        """Apply the decoded state to the stored run, re-reading and re-deciding on a lost race."""
        for _ in range(SAVE_ATTEMPTS):
            run = self.store.get_run(namespace, run_id)
            if run is None:
                return False
            state = decode_job_status(job, pods, now=now, stall_after_seconds=self.settings.stall_after_seconds,
                                      cancel_requested=run.cancel_requested_at is not None)
            updated = apply_state(run, state, now)
            if updated is None:
                if run.missing_sweeps and job is not None and not run.terminal:
                    updated = replace(run, missing_sweeps=0)
                else:
                    return False
            try:
                saved = self.store.save(updated, outbox=self._outbox(run, updated))
            except self._stale():
                continue
            summary.transitions.append({"runId": run_id, "from": str(run.status), "to": str(updated.status),
                                        "phase": str(updated.phase)})
            if diagnostics.needs_capture(saved):
                self._diagnose(saved, now, summary)
            return True
        log.warning("run %s: gave up after %d conflicting writes; the next sweep retries", run_id, SAVE_ATTEMPTS)
        return False

    # ---------------------------------------------------------- diagnostics

    def _diagnose(self, run: Run, now: datetime, summary: SweepSummary) -> None:
        """Capture the failing run's evidence and attach it: best effort, after its state is saved."""
        with self._diagnosed_lock:
            over_budget = summary.diagnosed >= MAX_DIAGNOSED_PER_SWEEP
            if not over_budget:
                summary.diagnosed += 1
        if over_budget:
            log.warning("run %s: diagnostics not captured, %d runs were diagnosed in this sweep already",
                        run.run_id, MAX_DIAGNOSED_PER_SWEEP)
            capture = {**diagnostics.new_capture(run.state, now),
                       "errors": [f"not captured: more than {MAX_DIAGNOSED_PER_SWEEP} runs turned failing in "
                                  "one sweep"]}
        else:
            try:
                capture = diagnostics.collect_diagnostics(
                    self.kube, run.namespace, run.run_id, state=run.state, now=now,
                    secret_names=diagnostics.secret_parameter_names(run))
            except Exception as err:  # a bug here must not cost the sweep its other runs
                log.warning("run %s: collecting diagnostics failed: %s", run.run_id, type(err).__name__)
                capture = {**diagnostics.new_capture(run.state, now),
                           "errors": [f"collecting diagnostics failed: {type(err).__name__}"]}
        self._attach_diagnostics(run, capture)

    def _attach_diagnostics(self, run: Run, capture: dict) -> None:
        for _ in range(SAVE_ATTEMPTS):
            if capture.get("moment") == diagnostics.OUTCOME and run.diagnostics:
                attached = diagnostics.merge(run.diagnostics, capture)
            else:
                attached = capture
            try:
                self.store.save(replace(run, diagnostics=attached))
                return
            except self._stale():
                fresh = self.store.get_run(run.namespace, run.run_id)
                if fresh is None or not diagnostics.supersedes(capture, fresh.diagnostics):
                    return
                run = fresh
            except AppError as err:  # the table refused or is down: the transition is saved already
                log.warning("run %s: diagnostics not saved: %s", run.run_id, err.message)
                return

    # --------------------------------------------------------------- events

    def _outbox(self, before: Run | None, after: Run) -> list[dict]:
        """The outbox row announcing ``after``, written in the same batch as the state itself, for a
        change of status or phase (a reason-only change is not a transition)."""
        if self.publisher is None:
            return []
        if before is not None and (before.status, before.phase) == (after.status, after.phase):
            return []
        from shared.events import transition_event
        from shared.runs.store import outbox_row

        at = after.updated_at or after.created_at or self.clock()
        event = transition_event(after, str(before.status) if before is not None else None,
                                 settings=self.settings, at=at)
        return [outbox_row(after.namespace, after.run_id, event, at, sequence=len(after.history))]

    def publish_pending(self, namespace: str) -> int:
        """Publish recorded events, oldest first per run; what fails stays for the next sweep.

        Entries are claimed (ETag-guarded, with a lease) before publishing, so two sweeps running
        at once never both publish one event; a publisher that died leaves a claim that expires.
        """
        if self.publisher is None:
            return 0
        from shared.events import PublishFailed

        now = self.clock()
        entries = [e for e in self.store.list_outbox(namespace)
                   if e.claimed_until is None or e.claimed_until <= now]
        if not entries:
            return 0
        entries = self.store.claim_outbox(namespace, entries, now + timedelta(seconds=OUTBOX_LEASE_SECONDS))
        if not entries:
            return 0
        try:
            self.publisher.publish([e.event for e in entries])
            delivered = len(entries)
        except PublishFailed as err:
            delivered = err.delivered
            log.warning("publishing run events failed after %d of %d: %s; the next sweep retries",
                        delivered, len(entries), err.message)
        if delivered:
            self.store.delete_outbox(namespace, [e.row_key for e in entries[:delivered]])
        if delivered < len(entries):
            self.store.claim_outbox(namespace, entries[delivered:], None)  # release for the next sweep
        return delivered

    # -------------------------------------------------------------- helpers

    def _transition(self, run: Run, state: RunState) -> Run:
        for _ in range(SAVE_ATTEMPTS):
            updated = apply_state(run, state, self.clock())
            if updated is None:
                return run
            try:
                return self.store.save(updated, outbox=self._outbox(run, updated))
            except self._stale():
                fresh = self.store.get_run(run.namespace, run.run_id)
                if fresh is None:
                    return run
                run = fresh
        return run

    def _fail(self, run: Run, reason: str, message: str) -> Run:
        return self._transition(run, RunState(Status.FAILED, Phase.FAILED, reason, message))

    @staticmethod
    def _stale():
        from shared.runs.store import StaleRun

        return StaleRun

    def _kube_request_total(self) -> int:
        kube = self.__dict__.get("kube")
        return sum(getattr(kube, "requests", {}).values()) if kube is not None else 0

    def _table_request_total(self) -> int:
        return sum(getattr(self.store, "requests", {}).values())


def recorded_parameter_changes(template: dict, parameters: list[jobspec.Parameter]) -> str:
    """The parameter-changes annotation (JSON) for a run of ``template`` - the cloned source Job or
    the fallback spec, before the overlay - with ``parameters``.

    One entry per variable the run adds (``"change": "added"``) or sets to another value than the
    source's (``"overridden"``, with ``from``: the source's literal cut to ``MAX_SOURCE_VALUE_CHARS``,
    or ``valueFrom: <kind>`` when the source read it from a Secret, ConfigMap or field). Secret
    parameters are marked ``"secret": true``, never compared (``unchanged`` would confirm a guess),
    and their source literal is ``***``. Recorded at submit, because the source Job may change or
    vanish before anyone asks; kept under ``MAX_PARAMETER_CHANGES_CHARS`` (``from`` values go first).
    """
    spec = ((template.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = spec.get("containers") or []
    env = containers[0].get("env") if containers and isinstance(containers[0], dict) else None
    source: dict[str, dict] = {}
    for item in env or []:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            source[item["name"]] = item  # a repeated name: the last entry is the one the container sees
    changes: list[dict] = []
    for p in parameters:
        before = source.get(p.name)
        entry: dict = {"name": p.name, "change": "overridden"}
        if before is None:
            entry = {"name": p.name, "change": "added", "from": None}
        elif isinstance(before.get("valueFrom"), dict):
            entry["from"] = f"valueFrom: {next(iter(before['valueFrom']), '?')}"
        elif p.secret:
            entry["from"] = REDACTED
        else:
            value = str(before.get("value") or "")
            if value == p.value:
                continue
            entry["from"] = value if len(value) <= MAX_SOURCE_VALUE_CHARS else value[:MAX_SOURCE_VALUE_CHARS - 1] + "…"
        if p.secret:
            entry["secret"] = True
        changes.append(entry)
    text = json.dumps(changes, separators=(",", ":"), ensure_ascii=False)
    if len(text) > MAX_PARAMETER_CHANGES_CHARS:
        changes = [{k: v for k, v in c.items() if k != "from"} for c in changes]
        text = json.dumps(changes, separators=(",", ":"), ensure_ascii=False)
    while len(text) > MAX_PARAMETER_CHANGES_CHARS and changes:
        changes = changes[: len(changes) // 2]
        text = json.dumps([*changes, {"truncated": True}], separators=(",", ":"), ensure_ascii=False)
    return text


def _annotate(job: dict, key: str, value: str) -> None:
    meta = job.setdefault("metadata", {})
    if not isinstance(meta.get("annotations"), dict):
        meta["annotations"] = {}
    meta["annotations"][key] = value


def _is_secret_record(record: dict) -> bool:
    return str(record.get("dataType") or "").lower() == "secret"


def _rerun_secrets(original: Run, given: list[jobspec.Parameter]) -> list[jobspec.Parameter]:
    """The Secret values a rerun of ``original`` was given, checked against what it needs."""
    needed = [r.get("name") for r in original.parameters if isinstance(r, dict) and _is_secret_record(r)]
    for p in given:
        if p.name not in needed:
            raise ValidationFailed(
                f"Parameter {p.name[:80]!r} is not a Secret parameter of run {original.run_id}: a rerun replays "
                "the run's other values unchanged, and takes only the values of its Secret parameters",
                field=f"parameters.{p.name[:80]}")
    missing = [name for name in needed if name not in {p.name for p in given}]
    if missing:
        raise ValidationFailed(
            f"Run {original.run_id} has Secret parameter(s) {', '.join(missing)}, whose values are not kept "
            "once its Job is gone: give them again as {\"parameters\": {NAME: value}} to rerun it",
            field="parameters", details={"missingSecretParameters": missing})
    by_name = {p.name: replace(p, data_type="Secret") for p in given}
    return [by_name[name] for name in needed]


def _replayed_parameters(original: Run, secrets: list[jobspec.Parameter]) -> list[jobspec.Parameter]:
    """The original run's parameters in their order, Secret values from ``secrets``."""
    by_name = {p.name: p for p in secrets}
    replayed = []
    for record in original.parameters:
        if not isinstance(record, dict) or not isinstance(record.get("name"), str):
            continue
        if _is_secret_record(record):
            replayed.append(by_name[record["name"]])
        else:
            replayed.append(jobspec.Parameter(record["name"], str(record.get("value") or ""),
                                              record.get("dataType") or "String", record.get("direction") or "Input"))
    return replayed


def _run_concurrently(work: list) -> list:
    """Run the sweep's per-run writes on a few threads: each is a Table read and an ETag-guarded
    batch (network-bound, independent per run), so a mass transition of thousands of runs takes
    seconds, not minutes. Order does not matter; every write is still guarded by its run's ETag."""
    if len(work) <= 1:
        return [task() for task in work]
    with ThreadPoolExecutor(max_workers=min(SWEEP_WRITE_WORKERS, len(work)),
                            thread_name_prefix="sweep-write") as pool:
        futures = [pool.submit(task) for task in work]
        return [f.result() for f in futures]


def _age(created_at: datetime | None, now: datetime) -> float:
    if created_at is None:
        return float("inf")
    return (now - created_at) / timedelta(seconds=1)


def _index_reserve(template: dict) -> int:
    spec = template.get("spec") or {}
    if spec.get("completionMode") == "Indexed":
        return len(f"-{max(int(spec.get('completions') or 1) - 1, 0)}")
    return 0


def _invalid_message(err: KubeInvalid) -> str:
    causes = "; ".join(f"{c.get('field', '')}: {c.get('message', '')}".strip(": ") for c in err.causes[:5])
    return causes or err.message


def _invalid_field(err: KubeInvalid) -> str | None:
    for cause in err.causes:
        if cause.get("field"):
            return cause["field"]
    return None


__all__ = ["AppError", "RunService", "SubmitRequest", "SubmitResult", "SweepSummary"]
