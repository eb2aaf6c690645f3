"""The job controller (pkg/controller/job): a Job's pods counted, kept running, suspended.

The job controller follows Kubernetes >= 1.31 (``JobManagedBy``/``JobSuccessPolicy`` era;
``syncJob``, ``manageJob``, ``trackJobStatusAndRemoveFinalizers`` and ``enactJobFinished`` in
pkg/controller/job/job_controller.go):

* creates pods ``<job>-<5 chars>`` from the template (labels copied, controller
  ``ownerReference``, finalizer ``batch.kubernetes.io/job-tracking``) and counts each finished
  pod exactly once into ``succeeded`` / ``failed`` before dropping that finalizer. As
  ``isPodFailed`` does, a pod with a ``deletionTimestamp`` counts as failed at once unless the Job
  only replaces failed pods (``podReplacementPolicy: Failed``, or a ``podFailurePolicy``); pods it
  deletes itself for a suspend or a success never count;
* a refused pod creation (ResourceQuota, Pod Security, a policy webhook: scenario ``refused``)
  creates nothing: ``startTime`` is set, ``active`` stays 0, no condition, and a Warning
  ``FailedCreate`` event "Error creating: ..." is recorded on the Job at every retry (the work
  queue's back-off: 1 s doubling to 60 s), for ever;
* re-creates failed pods after the pod-failure back-off (10 s doubling, capped at 10 min) until
  ``failed > backoffLimit`` (``Never``) or the containers' restarts reach it (``OnFailure``):
  then ``FailureTarget=True`` reason ``BackoffLimitExceeded`` at once, the remaining pods are
  deleted, and ``Failed=True`` (same reason and message) only once no pod is left running or
  terminating - and only then the Warning event with that reason (``recordJobFinished``);
  ``activeDeadlineSeconds`` the same way with ``DeadlineExceeded``;
* ``podFailurePolicy`` (``matchPodFailurePolicy``): rules on exit codes and pod conditions
  (``DisruptionTarget``), first match wins; ``FailJob`` ends the Job with reason
  ``PodFailurePolicy``, ``Ignore`` does not count the failure, ``Count`` counts it, ``FailIndex``
  fails the pod's index;
* ``completionMode: Indexed``: one pod per index (annotation and label
  ``batch.kubernetes.io/job-completion-index``, hostname ``<job>-<index>``), ``completedIndexes``;
  with ``backoffLimitPerIndex`` each index has its own limit, ``failedIndexes`` lists the lost
  ones, ``maxFailedIndexes`` ends the Job early (``MaxFailedIndexesExceeded``), otherwise it ends
  ``FailedIndexes`` once every index succeeded or failed; ``successPolicy`` rules end it with
  ``SuccessCriteriaMet`` reason ``SuccessPolicy`` ("Matched rules at index N");
* on success ``SuccessCriteriaMet=True`` then ``Complete=True`` (reason ``CompletionsReached``)
  with ``completionTime``, again only after all pods terminated;
* ``spec.suspend=true`` (a user's patch, or Kueue holding a queued Job) deletes active pods and
  sets ``Suspended=True`` reason ``JobSuspended``; resuming flips it to ``False`` reason
  ``JobResumed`` and restarts the ``startTime`` (so ``activeDeadlineSeconds`` counts from resume);
* a Job whose ``spec.managedBy`` names another controller is left alone entirely (no
  ``startTime``, no pods, no status), as the built-in controller does from 1.32;
* keeps ``active``, ``ready``, ``terminating`` current, and after ``ttlSecondsAfterFinished``
  (0 included) the TTL-after-finished controller deletes the finished Job with ``Foreground``
  propagation (its pods go with it).

Its parts: ``podcontrol`` makes and removes pods, ``jobfinishing`` picks and enacts the finished
condition, ``jobrules`` holds the Job API's pure rules, and ``ttlafterfinished`` expires finished
Jobs.

Deliberately simplified: the pod-failure back-off is one per Job (Kubernetes keeps one per index
for ``backoffLimitPerIndex``), and ``FailIndex`` / per-index counting use the simulator's own
notes rather than the ``job-index-failure-count`` annotation hand-over between pods.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from . import deleting
from .clock import parse_time, rfc3339
from .deleting import JOB_TRACKING
from .jobfinishing import JobFinisher
from .jobrules import (
    JOB_CONTROLLER,
    TERMINAL,
    controller_uid,
    format_indexes,
    is_true,
    match_pod_failure_policy,
    only_replace_failed,
    pod_index,
    pod_ready,
    set_condition,
)
from .podcontrol import PodControl
from .ttlafterfinished import TTLAfterFinishedController
from .world import JobState, World

INF = math.inf
POD_FAILURE_BACKOFF = 10.0
POD_FAILURE_BACKOFF_CAP = 600.0


class JobController:
    def __init__(self, world: World, observe_pod: Callable[[dict, float], None],
                 ttl: TTLAfterFinishedController):
        self.w = world
        self.ttl = ttl
        self.pods = PodControl(world, observe_pod)
        self.finishing = JobFinisher(world, ttl)

    def state_for(self, job: dict, now: float) -> JobState:
        uid = job["metadata"].get("uid", "")
        st = self.w.jobs.get(uid)
        if st is None:
            meta = job["metadata"]
            scenario, problem = self.w.scenarios.choose(
                meta.get("name", ""), meta.get("annotations"),
                ((job.get("spec") or {}).get("template") or {}).get("metadata", {}).get("annotations"))
            created = parse_time(meta.get("creationTimestamp")) or now
            st = self.w.jobs[uid] = JobState(scenario, created, problem=problem)
        return st

    def sync_job(self, job: dict, now: float) -> None:
        """One pass of the job controller over ``job``: count its finished pods (tracking
        finalizers, pod failure policy, per-index backoff), then suspend, resume, finish or run it
        (``JobFinisher.decide`` / ``_manage``), and write its status and conditions when they changed.

        Long on purpose: it follows Kubernetes' ``syncJob`` in its order (managedBy, pod counting,
        suspension, terminal target, status update), so it can be read side by side with it.
        """
        w, store = self.w, self.w.store
        meta, spec = job["metadata"], job.setdefault("spec", {})
        uid = meta.get("uid", "")
        st = self.state_for(job, now)
        st.due = INF
        old_status = job.get("status") or {}
        if spec.get("managedBy") not in (None, JOB_CONTROLLER):
            # syncJob: "Skip syncing of the job it is managed by another controller" (JobManagedBy).
            return
        status = dict(old_status)
        conds = [dict(c) for c in status.get("conditions") or []]
        spec_changed = False
        indexed = spec.get("completionMode") == "Indexed"
        per_index = spec.get("backoffLimitPerIndex")
        only_failed = only_replace_failed(spec)

        pods = [p for _, p in store.dependents(uid, "pods") if controller_uid(p) == uid]
        succeeded, failed = int(status.get("succeeded") or 0), int(status.get("failed") or 0)
        for pod in pods:
            pmeta = pod["metadata"]
            if JOB_TRACKING not in (pmeta.get("finalizers") or []):
                continue
            phase = (pod.get("status") or {}).get("phase")
            plan = w.pods.get(pmeta.get("uid", ""))
            index = pod_index(pod)
            if phase == "Succeeded":
                if indexed:
                    if index is not None:
                        st.succeeded_indexes.add(index)
                else:
                    succeeded += 1
                st.failures = 0
            elif plan is not None and plan.by_controller:
                pass  # deleteJobPods drops the finalizer first: suspended or surplus pods never count
            elif phase == "Failed" or (pmeta.get("deletionTimestamp") and not only_failed):
                counted, action, message = match_pod_failure_policy(spec.get("podFailurePolicy"), pod)
                if action == "FailJob" and st.fail_message is None:
                    st.fail_message = message
                if counted:
                    failed += 1
                    st.failures += 1
                    st.last_failure = now
                    if indexed and index is not None and per_index is not None:
                        st.index_failures[index] = st.index_failures.get(index, 0) + 1
                        if action == "FailIndex" or st.index_failures[index] > int(per_index):
                            st.failed_indexes.add(index)
            else:
                continue
            deleting.drop_finalizer(w, "pods", pod, JOB_TRACKING, now)
        if indexed:
            succeeded = len(st.succeeded_indexes)
        pods = [p for p in pods if store.get("pods", p["metadata"]["namespace"], p["metadata"]["name"]) is p]

        def split() -> tuple[list[dict], list[dict]]:
            alive = [p for p in pods if store.get("pods", p["metadata"]["namespace"], p["metadata"]["name"]) is p]
            active = [p for p in alive if (p.get("status") or {}).get("phase") not in TERMINAL
                      and not p["metadata"].get("deletionTimestamp")]
            terminating = [p for p in alive if (p.get("status") or {}).get("phase") not in TERMINAL
                           and p["metadata"].get("deletionTimestamp")]
            return active, terminating

        active, terminating = split()
        finished = is_true(conds, "Complete") or is_true(conds, "Failed")
        if finished:
            self.ttl.sync(job, st, conds, now)
        elif not meta.get("deletionTimestamp"):
            if spec.get("suspend") and st.held and st.scenario.admit_after is not None:
                admit_at = st.created + st.scenario.admit_after
                if now >= admit_at:
                    spec["suspend"], st.held = False, False
                    spec_changed = True
                else:
                    st.due = min(st.due, admit_at)
            if spec.get("suspend"):
                if set_condition(conds, "Suspended", "True", "JobSuspended", "Job suspended", now):
                    w.recorder.record(now, job, "Job", "batch/v1", "Normal", "Suspended", "Job suspended",
                                      "job-controller")
                self.pods.delete(job, active, now, by_controller=True)
            else:
                if is_true(conds, "Suspended"):
                    set_condition(conds, "Suspended", "False", "JobResumed", "Job resumed", now)
                    w.recorder.record(now, job, "Job", "batch/v1", "Normal", "Resumed", "Job resumed",
                                      "job-controller")
                    status["startTime"] = rfc3339(now)
                if not status.get("startTime"):
                    status["startTime"] = rfc3339(now)
                self._manage(job, st, status, conds, active, terminating, succeeded, failed, now)
            active, terminating = split()
            if (target := self.finishing.target(conds)) is not None:
                if not active and not terminating:
                    settle_at = (st.target_at if st.target_at is not None else now) + st.scenario.settle
                    if now >= settle_at:
                        self.finishing.finish(job, st, status, conds, target, now)
                    else:
                        st.due = min(st.due, settle_at)

        status["conditions"] = conds
        if not conds:
            status.pop("conditions")
        for key, value in (("active", len(active)), ("succeeded", succeeded), ("failed", failed)):
            if value:
                status[key] = value
            else:
                status.pop(key, None)
        if indexed:
            status["completedIndexes"] = format_indexes(st.succeeded_indexes)
            if per_index is not None:
                status["failedIndexes"] = format_indexes(st.failed_indexes)
        status["ready"] = sum(1 for p in active if pod_ready(p))
        status["terminating"] = len(terminating)
        status["uncountedTerminatedPods"] = {}
        if status != old_status or spec_changed:
            if spec_changed:
                meta["generation"] = int(meta.get("generation") or 1) + 1
            job["status"] = status
            store.write("jobs", job)

    def _manage(self, job: dict, st: JobState, status: dict, conds: list[dict], active: list[dict],
                terminating: list[dict], succeeded: int, failed: int, now: float) -> None:
        """``manageJob``: decide success / failure, or keep the wanted number of pods running."""
        spec = job["spec"]
        target = self.finishing.target(conds)
        if target is None:
            target = self.finishing.decide(job, st, status, conds, active, succeeded, failed, now)
        if target is not None:
            self.pods.delete(job, active, now, by_controller=target["type"] == "SuccessCriteriaMet")
            return
        parallelism = int(spec.get("parallelism") if spec.get("parallelism") is not None else 1)
        completions = spec.get("completions")
        busy = len(active) + (len(terminating) if only_replace_failed(spec) else 0)
        if spec.get("completionMode") == "Indexed":
            taken = {pod_index(p) for p in active}
            if only_replace_failed(spec):
                taken |= {pod_index(p) for p in terminating}
            todo = [i for i in range(int(completions or 0)) if i not in st.succeeded_indexes
                    and i not in st.failed_indexes and i not in taken]
            indexes: list[int | None] = list(todo[:max(parallelism - busy, 0)])
        else:
            wanted = min(parallelism, completions - succeeded) if completions is not None else (
                parallelism if succeeded == 0 else 0)
            indexes = [None] * max(wanted - busy, 0)
        if not indexes:
            return
        if st.create_retry_at is not None and now < st.create_retry_at:
            st.due = min(st.due, st.create_retry_at)
            return
        if st.failures and st.last_failure is not None:
            ready_at = st.last_failure + min(POD_FAILURE_BACKOFF * 2 ** min(st.failures - 1, 16), POD_FAILURE_BACKOFF_CAP)
            if now < ready_at:
                st.due = min(st.due, ready_at)
                return
        for index in indexes:
            if not self.pods.create(job, st, now, index):
                return
