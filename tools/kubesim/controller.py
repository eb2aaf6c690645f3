"""The control plane behind the API: job controller, kubelet driver, garbage collector, TTL.

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
  (0 included) deletes the finished Job with ``Foreground`` propagation, as the TTL-after-finished
  controller does (its pods go with it).

The garbage collector removes dependents whose owners are gone (``Background``), deletes
dependents first for a ``foregroundDeletion`` owner, and strips owner references for an
``orphan`` owner, then removes that finalizer.

Deliberately simplified: the pod-failure back-off is one per Job (Kubernetes keeps one per index
for ``backoffLimitPerIndex``), and ``FailIndex`` / per-index counting use the simulator's own
notes rather than the ``job-index-failure-count`` annotation hand-over between pods.
"""

from __future__ import annotations

import copy
import math

from . import admission, deleting, kubelet
from .clock import parse_time, rfc3339
from .deleting import JOB_TRACKING
from .events import NODE
from .kubelet import PodPlan
from .world import JobState, World

INF = math.inf
TERMINAL = ("Succeeded", "Failed")
POD_FAILURE_BACKOFF = 10.0
POD_FAILURE_BACKOFF_CAP = 600.0

API_BACKOFF = 1.0  # DefaultJobApiBackOff: a sync that failed (a refused pod) is retried
API_BACKOFF_CAP = 60.0  # MaxJobApiBackOff
JOB_CONTROLLER = "kubernetes.io/job-controller"
INDEX_KEY = "batch.kubernetes.io/job-completion-index"
INDEX_FAILURE_COUNT = "batch.kubernetes.io/job-index-failure-count"

BACKOFF_MESSAGE = "Job has reached the specified backoff limit"
MAX_FAILED_INDEXES_MESSAGE = "Job has exceeded the specified maximal number of failed indexes"
FAILED_INDEXES_MESSAGE = "Job has failed indexes"
DEADLINE_MESSAGE = "Job was active longer than specified deadline"
COMPLETIONS_MESSAGE = "Reached expected number of succeeded pods"


def condition(conditions: list[dict], type_: str) -> dict | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def is_true(conditions: list[dict], type_: str) -> bool:
    c = condition(conditions, type_)
    return c is not None and c.get("status") == "True"


def _set_condition(conditions: list[dict], type_: str, status: str, reason: str, message: str, now: float) -> bool:
    """Add or update a condition; returns True when something changed."""
    c = condition(conditions, type_)
    if c is not None and c.get("status") == status and c.get("reason") == reason:
        return False
    stamp = rfc3339(now)
    if c is None:
        conditions.append({"type": type_, "status": status, "lastProbeTime": stamp, "lastTransitionTime": stamp,
                           "reason": reason, "message": message})
    else:
        if c.get("status") != status:
            c["lastTransitionTime"] = stamp
        c.update(status=status, reason=reason, message=message, lastProbeTime=stamp)
    return True


def controller_uid(obj: dict) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("uid")
    return None


class Controller:
    def __init__(self, world: World):
        self.w = world
        self._dirty: set[str] = set()  # job uids whose pods or spec changed since their last sync
        self._events_swept = -INF
        world.store.listener = self._on_change

    # --- change tracking -----------------------------------------------------------------------
    def _on_change(self, plural: str, obj: dict) -> None:
        if plural == "pods":
            owner = controller_uid(obj)
            if owner:
                self._dirty.add(owner)

    def touch(self, job: dict) -> None:
        self._dirty.add(job["metadata"].get("uid", ""))

    # --- the loop ------------------------------------------------------------------------------
    def next_due(self, now: float) -> float:
        if self._dirty:
            return now
        due = min((p.due for p in self.w.pods.values()), default=INF)
        return min(due, min((s.due for s in self.w.jobs.values()), default=INF))

    def step(self, now: float) -> None:
        """Run every controller at ``now`` until nothing changes any more."""
        store = self.w.store
        for _ in range(12):
            revision = store.revision
            self._kubelet_pass(now)
            self._jobs_pass(now)
            self._gc_pass(now)
            if store.revision == revision:
                break
        if now - self._events_swept >= 60.0:
            self._events_swept = now
            self.w.recorder.expire(now, parse_time)

    def kick(self, job: dict, now: float) -> None:
        """React to a write to one Job right away (the real controllers take milliseconds)."""
        store = self.w.store
        meta = job["metadata"]
        for _ in range(8):
            current = store.get("jobs", meta.get("namespace", ""), meta["name"])
            if current is None or current["metadata"].get("uid") != meta.get("uid"):
                return
            revision = store.revision
            self._dirty.discard(meta.get("uid", ""))
            self.sync_job(current, now)
            for _, pod in store.dependents(meta.get("uid", ""), "pods"):
                plan = self.w.pods.get(pod["metadata"].get("uid", ""))
                if plan is not None and plan.due <= now:
                    self.observe_pod(pod, now)
            if store.revision == revision:
                return

    def _kubelet_pass(self, now: float) -> None:
        store = self.w.store
        for uid, plan in list(self.w.pods.items()):
            if plan.due <= now:
                hit = store.by_uid(uid)
                if hit is None:
                    self.w.pods.pop(uid, None)
                else:
                    self.observe_pod(hit[1], now)
        for uid in list(self.w.kills):
            hit = store.by_uid(uid)
            if hit is None:
                self.w.kills.pop(uid, None)
            else:
                deleting.finish(self.w, "pods", hit[1], now)

    def _jobs_pass(self, now: float) -> None:
        store = self.w.store
        due = {uid for uid, st in self.w.jobs.items() if st.due <= now}
        todo = self._dirty | due
        self._dirty = set()
        for uid in todo:
            hit = store.by_uid(uid)
            if hit is not None and hit[0] == "jobs":
                self.sync_job(hit[1], now)

    # --- kubelet -------------------------------------------------------------------------------
    def observe_pod(self, pod: dict, now: float) -> None:
        w = self.w
        meta = pod["metadata"]
        plan = w.pods.get(meta.get("uid", ""))
        if plan is None:
            if meta.get("deletionTimestamp"):
                deleting.finish(w, "pods", pod, now)
            return
        seen = kubelet.observe(plan, pod, now)
        changed = False
        if "hostIP" in seen.status and not pod["spec"].get("nodeName"):
            pod["spec"]["nodeName"] = NODE  # the scheduler's binding
            changed = True
        if seen.status != pod.get("status"):
            pod["status"] = seen.status
            changed = True
        if seen.status.get("phase") in TERMINAL and plan.finished_at is None:
            plan.finished_at = now
        if changed:
            w.store.write("pods", pod)
        for t, spec in seen.events:
            field_path = f"spec.containers{{{spec.container}}}" if spec.container else None
            w.recorder.record(t, pod, "Pod", "v1", spec.type, spec.reason, spec.message, spec.component,
                              field_path=field_path, host=NODE if spec.component == "kubelet" else None)
        if meta.get("deletionTimestamp"):
            deleting.finish(w, "pods", pod, now)

    # --- job controller ------------------------------------------------------------------------
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

    def _refusal(self, job: dict, st: JobState, name: str, now: float) -> str | None:
        """Why the API server refuses this Job's next pod now (scenario ``refused``), or None."""
        sc = st.scenario
        if sc.outcome != "refused" or (sc.recover is not None and now >= st.created + sc.recover):
            return None
        containers = ((job["spec"].get("template") or {}).get("spec") or {}).get("containers") or [{}]
        first = containers[0] if isinstance(containers[0], dict) else {}
        cname, image = first.get("name", "main"), first.get("image", "")
        if sc.refusal == "pod-security":
            return (f'pods "{name}" is forbidden: violates PodSecurity "restricted:latest": '
                    f'allowPrivilegeEscalation != false (container "{cname}" must set '
                    f'securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container '
                    f'"{cname}" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or '
                    f'container "{cname}" must set securityContext.runAsNonRoot=true), seccompProfile (pod or '
                    f'container "{cname}" must set securityContext.seccompProfile.type to "RuntimeDefault" or '
                    f'"Localhost")')
        if sc.refusal == "azure-policy":
            return ('admission webhook "validation.gatekeeper.sh" denied the request: '
                    '[azurepolicy-k8sazurev2containerallowedimages-6e7b1b0c1a2f3d4e5b6a] '
                    f'Container image {image} for container {cname} has not been allowed.')
        return (f'pods "{name}" is forbidden: exceeded quota: compute-quota, requested: limits.cpu=1, '
                f'used: limits.cpu=8, limited: limits.cpu=8')

    def _create_pod(self, job: dict, st: JobState, now: float, index: int | None = None) -> bool:
        """Create one pod; False when the API server refused it (FailedCreate)."""
        w = self.w
        meta, template = job["metadata"], job["spec"].get("template") or {}
        tmeta = template.get("metadata") or {}
        ns = meta.get("namespace", "")
        base = meta["name"] + "-" + (f"{index}-" if index is not None else "")
        name = w.generate_name("pods", ns, base)
        refused = self._refusal(job, st, name, now)
        if refused is not None:
            # manageJob -> createPods: the error becomes a Warning on the Job, and the sync is retried
            # with the work queue's back-off (ItemExponentialFailureRateLimiter(1s, 60s)).
            w.recorder.record(now, job, "Job", "batch/v1", "Warning", "FailedCreate", f"Error creating: {refused}",
                              "job-controller")
            st.create_failures += 1
            st.create_retry_at = now + min(API_BACKOFF * 2 ** min(st.create_failures - 1, 16), API_BACKOFF_CAP)
            st.due = min(st.due, st.create_retry_at)
            return False
        st.create_failures, st.create_retry_at = 0, None
        uid = w.new_uid()
        pmeta: dict = {"name": name, "generateName": base, "namespace": ns, "uid": uid,
                       "creationTimestamp": rfc3339(now), "labels": dict(tmeta.get("labels") or {})}
        if tmeta.get("annotations"):
            pmeta["annotations"] = dict(tmeta["annotations"])
        spec = copy.deepcopy(template.get("spec") or {})
        attempt = st.pods_created
        if index is not None:
            # Indexed: the index in an annotation and a label, the hostname and JOB_COMPLETION_INDEX.
            pmeta.setdefault("annotations", {})[INDEX_KEY] = str(index)
            pmeta["labels"][INDEX_KEY] = str(index)
            if job["spec"].get("backoffLimitPerIndex") is not None:
                pmeta["annotations"][INDEX_FAILURE_COUNT] = str(st.index_failures.get(index, 0))
            spec.setdefault("hostname", f"{meta['name']}-{index}")
            for c in spec.get("containers") or []:
                if isinstance(c, dict):
                    c["env"] = [*(c.get("env") or []), {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
                        "fieldPath": f"metadata.labels['{INDEX_KEY}']"}}}]
            attempt = st.index_pods.get(index, 0)
            st.index_pods[index] = attempt + 1
        pmeta["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
                                     "uid": meta.get("uid"), "controller": True, "blockOwnerDeletion": True}]
        pmeta["finalizers"] = [JOB_TRACKING]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": pmeta, "spec": spec}
        admission.default_pod(pod)
        pod["status"] = {"phase": "Pending", "qosClass": admission.qos_class(pod["spec"])}
        w.pods[uid] = PodPlan(st.scenario, now, attempt=attempt, index=index)
        st.pods_created += 1
        w.store.insert("pods", pod)
        w.recorder.record(now, job, "Job", "batch/v1", "Normal", "SuccessfulCreate", f"Created pod: {name}",
                          "job-controller")
        self.observe_pod(pod, now)
        return True

    def _delete_pods(self, job: dict, pods: list[dict], now: float, by_controller: bool) -> None:
        for pod in pods:
            deleting.request(self.w, "pods", pod, now, by_controller=by_controller)
            self.w.recorder.record(now, job, "Job", "batch/v1", "Normal", "SuccessfulDelete",
                                   f"Deleted pod: {pod['metadata']['name']}", "job-controller")

    def sync_job(self, job: dict, now: float) -> None:
        """One pass of the job controller over ``job``: count its finished pods (tracking
        finalizers, pod failure policy, per-index backoff), then suspend, resume, finish or run it
        (``_decide`` / ``_run``), and write its status and conditions when they changed.

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
        only_failed = _only_replace_failed(spec)

        pods = [p for _, p in store.dependents(uid, "pods") if controller_uid(p) == uid]
        succeeded, failed = int(status.get("succeeded") or 0), int(status.get("failed") or 0)
        for pod in pods:
            pmeta = pod["metadata"]
            if JOB_TRACKING not in (pmeta.get("finalizers") or []):
                continue
            phase = (pod.get("status") or {}).get("phase")
            plan = w.pods.get(pmeta.get("uid", ""))
            index = _pod_index(pod)
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
            self._ttl(job, st, conds, now)
        elif not meta.get("deletionTimestamp"):
            if spec.get("suspend") and st.held and st.scenario.admit_after is not None:
                admit_at = st.created + st.scenario.admit_after
                if now >= admit_at:
                    spec["suspend"], st.held = False, False
                    spec_changed = True
                else:
                    st.due = min(st.due, admit_at)
            if spec.get("suspend"):
                if _set_condition(conds, "Suspended", "True", "JobSuspended", "Job suspended", now):
                    w.recorder.record(now, job, "Job", "batch/v1", "Normal", "Suspended", "Job suspended",
                                      "job-controller")
                self._delete_pods(job, active, now, by_controller=True)
            else:
                if is_true(conds, "Suspended"):
                    _set_condition(conds, "Suspended", "False", "JobResumed", "Job resumed", now)
                    w.recorder.record(now, job, "Job", "batch/v1", "Normal", "Resumed", "Job resumed",
                                      "job-controller")
                    status["startTime"] = rfc3339(now)
                if not status.get("startTime"):
                    status["startTime"] = rfc3339(now)
                self._run(job, st, status, conds, active, terminating, succeeded, failed, now)
            active, terminating = split()
            if (target := self._target(conds)) is not None:
                if not active and not terminating:
                    settle_at = (st.target_at if st.target_at is not None else now) + st.scenario.settle
                    if now >= settle_at:
                        self._finish(job, st, status, conds, target, now)
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
        status["ready"] = sum(1 for p in active if _pod_ready(p))
        status["terminating"] = len(terminating)
        status["uncountedTerminatedPods"] = {}
        if status != old_status or spec_changed:
            if spec_changed:
                meta["generation"] = int(meta.get("generation") or 1) + 1
            job["status"] = status
            store.write("jobs", job)

    @staticmethod
    def _target(conds: list[dict]) -> dict | None:
        for type_ in ("FailureTarget", "SuccessCriteriaMet"):
            c = condition(conds, type_)
            if c is not None and c.get("status") == "True":
                return c
        return None

    def _decide(self, job: dict, st: JobState, status: dict, conds: list[dict], active: list[dict],
                succeeded: int, failed: int, now: float) -> dict | None:
        """The order of ``syncJob``: pod failure policy, backoff limit, deadline, failed indexes,
        success policy, completions."""
        spec = job["spec"]
        start = parse_time(status.get("startTime")) or now
        deadline = spec.get("activeDeadlineSeconds")
        backoff_limit = int(spec.get("backoffLimit") if spec.get("backoffLimit") is not None else 6)
        completions = spec.get("completions")
        indexed = spec.get("completionMode") == "Indexed"
        if st.fail_message is not None:
            return self._fail(st, conds, "PodFailurePolicy", st.fail_message, now)
        if failed > backoff_limit or _past_backoff_on_failure(job, active, backoff_limit):
            return self._fail(st, conds, "BackoffLimitExceeded", BACKOFF_MESSAGE, now)
        if deadline is not None and now >= start + deadline:
            return self._fail(st, conds, "DeadlineExceeded", DEADLINE_MESSAGE, now)
        if deadline is not None:
            st.due = min(st.due, start + deadline)
        if indexed and spec.get("backoffLimitPerIndex") is not None:
            max_failed = spec.get("maxFailedIndexes")
            if max_failed is not None and len(st.failed_indexes) > int(max_failed):
                return self._fail(st, conds, "MaxFailedIndexesExceeded", MAX_FAILED_INDEXES_MESSAGE, now)
            if st.failed_indexes and len(st.failed_indexes) + len(st.succeeded_indexes) >= int(completions or 0):
                return self._fail(st, conds, "FailedIndexes", FAILED_INDEXES_MESSAGE, now)
        if indexed and (matched := match_success_policy(spec.get("successPolicy"), st.succeeded_indexes)):
            return self._succeed(st, conds, "SuccessPolicy", matched, now)
        done = succeeded >= completions if completions is not None else succeeded > 0
        if done and not active:
            return self._succeed(st, conds, "CompletionsReached", COMPLETIONS_MESSAGE, now)
        return None

    def _run(self, job: dict, st: JobState, status: dict, conds: list[dict], active: list[dict],
             terminating: list[dict], succeeded: int, failed: int, now: float) -> None:
        """Decide success / failure, or keep the wanted number of pods running."""
        spec = job["spec"]
        target = self._target(conds)
        if target is None:
            target = self._decide(job, st, status, conds, active, succeeded, failed, now)
        if target is not None:
            self._delete_pods(job, active, now, by_controller=target["type"] == "SuccessCriteriaMet")
            return
        parallelism = int(spec.get("parallelism") if spec.get("parallelism") is not None else 1)
        completions = spec.get("completions")
        busy = len(active) + (len(terminating) if _only_replace_failed(spec) else 0)
        if spec.get("completionMode") == "Indexed":
            taken = {_pod_index(p) for p in active}
            if _only_replace_failed(spec):
                taken |= {_pod_index(p) for p in terminating}
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
            if not self._create_pod(job, st, now, index):
                return

    @staticmethod
    def _fail(st: JobState, conds: list[dict], reason: str, message: str, now: float) -> dict | None:
        # No event here: the Warning is recorded with Failed, in _finish (recordJobFinished).
        _set_condition(conds, "FailureTarget", "True", reason, message, now)
        st.target_at = now
        return condition(conds, "FailureTarget")

    @staticmethod
    def _succeed(st: JobState, conds: list[dict], reason: str, message: str, now: float) -> dict | None:
        _set_condition(conds, "SuccessCriteriaMet", "True", reason, message, now)
        st.target_at = now
        return condition(conds, "SuccessCriteriaMet")

    def _finish(self, job: dict, st: JobState, status: dict, conds: list[dict], target: dict, now: float) -> None:
        if target["type"] == "SuccessCriteriaMet":
            _set_condition(conds, "Complete", "True", target.get("reason", ""), target.get("message", ""), now)
            status["completionTime"] = rfc3339(now)
            self.w.recorder.record(now, job, "Job", "batch/v1", "Normal", "Completed", "Job completed",
                                   "job-controller")
        else:
            _set_condition(conds, "Failed", "True", target.get("reason", ""), target.get("message", ""), now)
            # recordJobFinished: the Warning comes with Failed, after every pod has terminated.
            self.w.recorder.record(now, job, "Job", "batch/v1", "Warning", target.get("reason", ""),
                                   target.get("message", ""), "job-controller")
        st.finished_at = now
        self._ttl(job, st, conds, now)

    def _ttl(self, job: dict, st: JobState, conds: list[dict], now: float) -> None:
        ttl = job["spec"].get("ttlSecondsAfterFinished")
        if ttl is None or job["metadata"].get("deletionTimestamp"):
            return
        if st.finished_at is None:
            done = condition(conds, "Complete") or condition(conds, "Failed") or {}
            st.finished_at = parse_time(done.get("lastTransitionTime")) or now
        expire_at = st.finished_at + float(ttl)
        if now >= expire_at:
            # The TTL-after-finished controller deletes with Foreground propagation.
            deleting.request(self.w, "jobs", job, now, policy="Foreground")
        else:
            st.due = min(st.due, expire_at)

    # --- garbage collector ---------------------------------------------------------------------
    def _gc_pass(self, now: float) -> None:
        w, store = self.w, self.w.store
        for plural in ("jobs", "secrets", "pods"):
            for owner in [o for o in store.all(plural) if o["metadata"].get("deletionTimestamp")]:
                finalizers = owner["metadata"].get("finalizers") or []
                uid = owner["metadata"].get("uid", "")
                if deleting.ORPHAN in finalizers:
                    for dp, dep in store.dependents(uid):
                        _drop_owner(w, dp, dep, uid, now)
                    deleting.drop_finalizer(w, plural, owner, deleting.ORPHAN, now)
                elif deleting.FOREGROUND in finalizers:
                    for dp, dep in store.dependents(uid):
                        if not dep["metadata"].get("deletionTimestamp"):
                            deleting.request(w, dp, dep, now, policy="Background")
                    if not store.dependents(uid):
                        deleting.drop_finalizer(w, plural, owner, deleting.FOREGROUND, now)
        for owner_uid in store.owner_uids():
            if store.alive(owner_uid):
                continue
            for dp, dep in store.dependents(owner_uid):
                refs = dep["metadata"].get("ownerReferences") or []
                if any(store.alive(r.get("uid", "")) for r in refs):
                    _drop_owner(w, dp, dep, owner_uid, now)
                    continue
                if dp == "pods":
                    deleting.drop_finalizer(w, dp, dep, JOB_TRACKING, now)
                    if store.get(dp, dep["metadata"]["namespace"], dep["metadata"]["name"]) is not dep:
                        continue
                if not dep["metadata"].get("deletionTimestamp"):
                    deleting.request(w, dp, dep, now, policy="Background")
                else:
                    deleting.finish(w, dp, dep, now)


def _drop_owner(w: World, plural: str, obj: dict, owner_uid: str, now: float) -> None:
    meta = obj["metadata"]
    refs = [r for r in meta.get("ownerReferences") or [] if r.get("uid") != owner_uid]
    if refs:
        meta["ownerReferences"] = refs
    else:
        meta.pop("ownerReferences", None)
    finalizers = meta.get("finalizers") or []
    if plural == "pods" and JOB_TRACKING in finalizers and not any(r.get("controller") for r in refs):
        # The job controller releases pods it no longer owns.
        finalizers = [f for f in finalizers if f != JOB_TRACKING]
        if finalizers:
            meta["finalizers"] = finalizers
        else:
            meta.pop("finalizers", None)
    w.store.write(plural, obj)
    deleting.finish(w, plural, obj, now)


def _pod_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _past_backoff_on_failure(job: dict, active: list[dict], backoff_limit: int) -> bool:
    """``pastBackoffLimitOnFailure``: container restarts of running pods count against the limit."""
    if (job["spec"].get("template") or {}).get("spec", {}).get("restartPolicy") != "OnFailure":
        return False
    restarts = sum(cs.get("restartCount", 0) for p in active
                   for cs in (p.get("status") or {}).get("containerStatuses") or [])
    return restarts > 0 if backoff_limit == 0 else restarts >= backoff_limit



def _only_replace_failed(spec: dict) -> bool:
    """``onlyReplaceFailedPods``: terminating pods are neither failed nor replaced yet."""
    return spec.get("podReplacementPolicy") == "Failed" or spec.get("podFailurePolicy") is not None


def _pod_index(pod: dict) -> int | None:
    """``getCompletionIndex``: the completion index annotation, or None."""
    raw = (pod["metadata"].get("annotations") or {}).get(INDEX_KEY)
    try:
        index = int(raw) if raw is not None else None
    except ValueError:
        return None
    return index if index is not None and index >= 0 else None


def format_indexes(indexes: set[int]) -> str:
    """``orderedIntervals.String``: "1,3-5,7" (consecutive indexes joined into intervals)."""
    out: list[str] = []
    ordered = sorted(indexes)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)


def parse_indexes(text: str | None) -> set[int]:
    found: set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        first, _, last = part.partition("-")
        try:
            found.update(range(int(first), int(last or first) + 1))
        except ValueError:
            return set()
    return found


def match_success_policy(policy: dict | None, succeeded: set[int]) -> str | None:
    """``matchSuccessPolicy``: "Matched rules at index N" for the first rule met, else None."""
    if not policy or not succeeded:
        return None
    for i, rule in enumerate(policy.get("rules") or []):
        count = rule.get("succeededCount")
        if rule.get("succeededIndexes") is not None:
            required = parse_indexes(rule["succeededIndexes"])
            if not required:
                continue
            have = len(required & succeeded)
            if (count is None and have == len(required)) or (count is not None and have >= int(count)):
                return f"Matched rules at index {i}"
        elif count is not None and len(succeeded) >= int(count):
            return f"Matched rules at index {i}"
    return None


def match_pod_failure_policy(policy: dict | None, pod: dict) -> tuple[bool, str | None, str | None]:
    """``matchPodFailurePolicy``: (count the failure?, action of the matching rule, FailJob message)."""
    if not policy:
        return True, None, None
    meta, status = pod["metadata"], pod.get("status") or {}
    where = f"{meta.get('namespace')}/{meta.get('name')}"
    for i, rule in enumerate(policy.get("rules") or []):
        action = rule.get("action")
        message = None
        on_codes = rule.get("onExitCodes")
        if on_codes:
            op, values = on_codes.get("operator"), set(on_codes.get("values") or [])
            for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
                code = ((cs.get("state") or {}).get("terminated") or {}).get("exitCode")
                if code in (None, 0) or (on_codes.get("containerName") not in (None, cs.get("name"))):
                    continue
                if (op == "In" and code in values) or (op == "NotIn" and code not in values):
                    message = (f"Container {cs.get('name')} for pod {where} failed with exit code {code} "
                               f"matching {action} rule at index {i}")
                    break
        for pattern in rule.get("onPodConditions") or []:
            if message is not None:
                break
            for c in status.get("conditions") or []:
                if c.get("type") == pattern.get("type") and c.get("status") == (pattern.get("status") or "True"):
                    message = f"Pod {where} has condition {c.get('type')} matching {action} rule at index {i}"
                    break
        if message is None:
            continue
        if action == "Ignore":
            return False, action, None
        if action == "FailJob":
            return True, action, message
        if action in ("Count", "FailIndex"):
            return True, action, None
    return True, None, None
