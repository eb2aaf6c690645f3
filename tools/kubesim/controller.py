"""The control plane behind the API: kube-controller-manager and the node's kubelet, run in turns.

``Controller`` is the loop that drives them, as informers and work queues do on a real cluster:
it notes which Jobs changed (a write to one of their pods, or to the Job), and at each step runs,
until nothing changes any more, the kubelet's status manager (``statusmanager``: pods whose
timeline moved), the job controller (``jobcontroller``, with ``podcontrol``, ``jobfinishing`` and
``ttlafterfinished``) over changed and due Jobs, and the garbage collector (``garbagecollector``).
It also tells the clock when something is next due, so the simulation runs from one change to
the next.

Deliberately not here: what the controllers do; each lives in the module named above, and reads
side by side with its Kubernetes counterpart.
"""

from __future__ import annotations

import math

from .clock import Clock, parse_time
from .garbagecollector import GarbageCollector
from .jobcontroller import JobController
from .jobrules import (
    INDEX_FAILURE_COUNT,
    INDEX_KEY,
    JOB_CONTROLLER,
    TERMINAL,
    condition,
    controller_uid,
    format_indexes,
    is_true,
    match_pod_failure_policy,
    match_success_policy,
    parse_indexes,
)
from .statusmanager import StatusManager
from .ttlafterfinished import TTLAfterFinishedController
from .world import JobState, World

__all__ = ["Controller", "condition", "is_true", "controller_uid", "format_indexes", "parse_indexes",
           "match_success_policy", "match_pod_failure_policy", "JOB_CONTROLLER", "INDEX_KEY",
           "INDEX_FAILURE_COUNT", "TERMINAL"]

INF = math.inf


class Controller:
    def __init__(self, world: World):
        self.w = world
        self._dirty: set[str] = set()  # job uids whose pods or spec changed since their last sync
        self._events_swept = -INF
        self.kubelet = StatusManager(world)
        self.ttl = TTLAfterFinishedController(world)
        self.jobs = JobController(world, self.kubelet.observe_pod, self.ttl)
        self.gc = GarbageCollector(world)
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
            self.kubelet.sync_due(now)
            self._jobs_pass(now)
            self.gc.sweep(now)
            if store.revision == revision:
                break
        if now - self._events_swept >= 60.0:
            self._events_swept = now
            self.w.recorder.expire(now, parse_time)

    def run_until(self, clock: Clock, target: float) -> None:
        """Run every controller from ``clock``'s time up to ``target``, and leave the clock there."""
        # Step from one change to the next so every transition happens at its own instant,
        # however far the clock jumps.
        now = clock.now()
        if not clock.real_time:
            now = min(now, target)
        self.step(now)
        for _ in range(1_000_000):
            due = self.next_due(now)
            if due > target:
                break
            now = max(due, now) if due > now else now + 1e-3
            if now > target:
                break
            clock.set(now)
            self.step(now)
        clock.set(target)
        if now < target:
            self.step(target)

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
            self.jobs.sync_job(current, now)
            for _, pod in store.dependents(meta.get("uid", ""), "pods"):
                plan = self.w.pods.get(pod["metadata"].get("uid", ""))
                if plan is not None and plan.due <= now:
                    self.kubelet.observe_pod(pod, now)
            if store.revision == revision:
                return

    def _jobs_pass(self, now: float) -> None:
        store = self.w.store
        due = {uid for uid, st in self.w.jobs.items() if st.due <= now}
        todo = self._dirty | due
        self._dirty = set()
        for uid in todo:
            hit = store.by_uid(uid)
            if hit is not None and hit[0] == "jobs":
                self.jobs.sync_job(hit[1], now)

    # --- what the API server and the simulator ask of the parts --------------------------------
    def observe_pod(self, pod: dict, now: float) -> None:
        """The kubelet looks at ``pod`` now (a new pod, an eviction)."""
        self.kubelet.observe_pod(pod, now)

    def state_for(self, job: dict, now: float) -> JobState:
        """The job controller's private notes on ``job`` (created on first use)."""
        return self.jobs.state_for(job, now)

    def sync_job(self, job: dict, now: float) -> None:
        self.jobs.sync_job(job, now)
