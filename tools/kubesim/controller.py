"""The control plane behind the API: job controller, kubelet driver, garbage collector, TTL.

The job controller follows Kubernetes >= 1.31 (``JobManagedBy``/``JobSuccessPolicy`` era):

* creates pods ``<job>-<5 chars>`` from the template (labels copied, controller
  ``ownerReference``, finalizer ``batch.kubernetes.io/job-tracking``) and counts each finished
  pod exactly once into ``succeeded`` / ``failed`` before dropping that finalizer;
* re-creates failed pods after the pod-failure back-off (10 s doubling, capped at 10 min) until
  ``failed > backoffLimit`` (``Never``) or the containers' restarts reach it (``OnFailure``):
  then ``FailureTarget=True`` reason ``BackoffLimitExceeded`` at once, the remaining pods are
  deleted, and ``Failed=True`` (same reason and message) only once no pod is left running or
  terminating; ``activeDeadlineSeconds`` the same way with ``DeadlineExceeded``;
* on success ``SuccessCriteriaMet=True`` then ``Complete=True`` (reason ``CompletionsReached``)
  with ``completionTime``, again only after all pods terminated;
* ``spec.suspend=true`` (a user's patch, or Kueue holding a queued Job) deletes active pods and
  sets ``Suspended=True`` reason ``JobSuspended``; resuming flips it to ``False`` reason
  ``JobResumed`` and restarts the ``startTime`` (so ``activeDeadlineSeconds`` counts from resume);
* keeps ``active``, ``ready``, ``terminating`` current, and after ``ttlSecondsAfterFinished``
  deletes the finished Job with ``Foreground`` propagation, as the TTL controller does.

The garbage collector removes dependents whose owners are gone (``Background``), deletes
dependents first for a ``foregroundDeletion`` owner, and strips owner references for an
``orphan`` owner, then removes that finalizer.

Deliberately not here: Indexed completion, pod failure policies, success policies and
``backoffLimitPerIndex``; the app does not use them (an Indexed Job runs as NonIndexed).
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

BACKOFF_MESSAGE = "Job has reached the specified backoff limit"
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

    def _create_pod(self, job: dict, st: JobState, now: float) -> None:
        w = self.w
        meta, template = job["metadata"], job["spec"].get("template") or {}
        tmeta = template.get("metadata") or {}
        ns = meta.get("namespace", "")
        name = w.generate_name("pods", ns, meta["name"] + "-")
        uid = w.new_uid()
        pmeta: dict = {"name": name, "generateName": meta["name"] + "-", "namespace": ns, "uid": uid,
                       "creationTimestamp": rfc3339(now), "labels": dict(tmeta.get("labels") or {})}
        if tmeta.get("annotations"):
            pmeta["annotations"] = dict(tmeta["annotations"])
        pmeta["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
                                     "uid": meta.get("uid"), "controller": True, "blockOwnerDeletion": True}]
        pmeta["finalizers"] = [JOB_TRACKING]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": pmeta,
               "spec": copy.deepcopy(template.get("spec") or {})}
        admission.default_pod(pod)
        pod["status"] = {"phase": "Pending", "qosClass": admission.qos_class(pod["spec"])}
        w.pods[uid] = PodPlan(st.scenario, now, attempt=st.pods_created)
        st.pods_created += 1
        w.store.insert("pods", pod)
        w.recorder.record(now, job, "Job", "batch/v1", "Normal", "SuccessfulCreate", f"Created pod: {name}",
                          "job-controller")
        self.observe_pod(pod, now)

    def _delete_pods(self, job: dict, pods: list[dict], now: float, by_controller: bool) -> None:
        for pod in pods:
            deleting.request(self.w, "pods", pod, now, by_controller=by_controller)
            self.w.recorder.record(now, job, "Job", "batch/v1", "Normal", "SuccessfulDelete",
                                   f"Deleted pod: {pod['metadata']['name']}", "job-controller")

    def sync_job(self, job: dict, now: float) -> None:
        w, store = self.w, self.w.store
        meta, spec = job["metadata"], job.setdefault("spec", {})
        uid = meta.get("uid", "")
        st = self.state_for(job, now)
        st.due = INF
        old_status = job.get("status") or {}
        status = dict(old_status)
        conds = [dict(c) for c in status.get("conditions") or []]
        spec_changed = False

        pods = [p for _, p in store.dependents(uid, "pods") if controller_uid(p) == uid]
        succeeded, failed = int(status.get("succeeded") or 0), int(status.get("failed") or 0)
        for pod in pods:
            phase = (pod.get("status") or {}).get("phase")
            if phase in TERMINAL and JOB_TRACKING in (pod["metadata"].get("finalizers") or []):
                plan = w.pods.get(pod["metadata"].get("uid", ""))
                if phase == "Succeeded":
                    succeeded += 1
                    st.failures = 0
                elif not (plan is not None and plan.by_controller):
                    failed += 1
                    st.failures += 1
                    st.last_failure = now
                deleting.drop_finalizer(w, "pods", pod, JOB_TRACKING, now)
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
                self._run(job, st, status, conds, pods, active, succeeded, failed, now)
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

    def _run(self, job: dict, st: JobState, status: dict, conds: list[dict], pods: list[dict],
             active: list[dict], succeeded: int, failed: int, now: float) -> None:
        """Decide success / failure, or keep the wanted number of pods running."""
        spec = job["spec"]
        target = self._target(conds)
        if target is None:
            start = parse_time(status.get("startTime")) or now
            deadline = spec.get("activeDeadlineSeconds")
            backoff_limit = int(spec.get("backoffLimit") if spec.get("backoffLimit") is not None else 6)
            completions = spec.get("completions")
            if deadline is not None and now >= start + deadline:
                target = self._fail(job, st, conds, "DeadlineExceeded", DEADLINE_MESSAGE, now)
            elif failed > backoff_limit or _past_backoff_on_failure(job, active, backoff_limit):
                target = self._fail(job, st, conds, "BackoffLimitExceeded", BACKOFF_MESSAGE, now)
            elif (completions is not None and succeeded >= completions) or (
                    completions is None and succeeded > 0 and not active):
                _set_condition(conds, "SuccessCriteriaMet", "True", "CompletionsReached", COMPLETIONS_MESSAGE, now)
                st.target_at = now
                target = condition(conds, "SuccessCriteriaMet")
            elif deadline is not None:
                st.due = min(st.due, start + deadline)
        if target is not None:
            self._delete_pods(job, active, now, by_controller=target["type"] == "SuccessCriteriaMet")
            return
        parallelism = int(spec.get("parallelism") if spec.get("parallelism") is not None else 1)
        completions = spec.get("completions")
        wanted = min(parallelism, completions - succeeded) if completions is not None else (
            parallelism if succeeded == 0 else 0)
        need = wanted - len(active)
        if need <= 0:
            return
        if st.failures and st.last_failure is not None:
            ready_at = st.last_failure + min(POD_FAILURE_BACKOFF * 2 ** min(st.failures - 1, 16), POD_FAILURE_BACKOFF_CAP)
            if now < ready_at:
                st.due = min(st.due, ready_at)
                return
        for _ in range(need):
            self._create_pod(job, st, now)

    def _fail(self, job: dict, st: JobState, conds: list[dict], reason: str, message: str, now: float) -> dict | None:
        _set_condition(conds, "FailureTarget", "True", reason, message, now)
        st.target_at = now
        self.w.recorder.record(now, job, "Job", "batch/v1", "Warning", reason, message, "job-controller")
        return condition(conds, "FailureTarget")

    def _finish(self, job: dict, st: JobState, status: dict, conds: list[dict], target: dict, now: float) -> None:
        if target["type"] == "SuccessCriteriaMet":
            _set_condition(conds, "Complete", "True", target.get("reason", ""), target.get("message", ""), now)
            status["completionTime"] = rfc3339(now)
            self.w.recorder.record(now, job, "Job", "batch/v1", "Normal", "Completed", "Job completed",
                                   "job-controller")
        else:
            _set_condition(conds, "Failed", "True", target.get("reason", ""), target.get("message", ""), now)
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

