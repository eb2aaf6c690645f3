"""The node side: what the scheduler and the kubelet make of a pod, as a function of time.

A pod's whole life follows from its scenario, its creation time, its restart policy and (once
deleted) the time its containers are killed, so ``Timeline`` computes the pod status *at any
instant* rather than stepping a state machine. That makes ``advance(3600)`` exact however
coarsely it is stepped, and lets the controller ask "when does this pod next change?" to run
the simulation from one change to the next.

What a pod goes through (times from its creation t0):

* ``unschedulable``: Pending, ``PodScheduled=False`` reason ``Unschedulable`` and a Warning
  ``FailedScheduling`` event (repeated every 5 min) until ``recover`` (if any);
* ``pull-backoff``: scheduled, container waiting ``ErrImagePull`` then ``ImagePullBackOff`` with
  the kubelet's back-off (10 s doubling to 5 min) and its events (``Pulling``, Warning ``Failed``,
  ``BackOff``, Warning ``Failed: Error: ImagePullBackOff``) until ``recover`` (if any);
* otherwise ``ContainerCreating`` for up to 1 s, Running, and the container exits ``after``
  seconds after t0 (0 / ``Completed``, or the scenario's code and reason with its termination
  message). ``restartPolicy: OnFailure`` restarts a failed container in place (``restartCount``,
  ``CrashLoopBackOff`` with back-off, ``lastState``) while ``Never`` ends the pod ``Failed``;
* ``config-error``: scheduled, container waiting ``CreateContainerConfigError`` (``secret "x" not
  found``, the Secret its env names) with the kubelet's Warning ``Failed`` events, until ``recover``;
* ``mount-error``: scheduled, waiting ``ContainerCreating`` with Warning ``FailedMount`` events
  (``MountVolume.SetUp failed for volume ...``) retried with the kubelet's back-off, until ``recover``;
* deleted: containers get SIGTERM; one that handles it stops ``terminate`` seconds later (exit
  143), one that ignores it (the default: a shell as PID 1) is killed when the grace period ends
  (exit 137). The pod object goes once that has happened and no finalizer is left;
* disrupted (``KubeSim.evict``): an API eviction or preemption adds ``DisruptionTarget`` and then
  deletes the pod; a node-pressure eviction by the kubelet kills the containers (137) and leaves the
  pod ``Failed`` with reason ``Evicted``, as ``TerminationByKubelet``.

``Timeline`` says *when* each of this happens, with the events recorded then; the status the
kubelet reports at an instant is ``podstatus`` (with ``observe``, one look by the kubelet), and
what the containers wrote is ``containerlogs``.

Deliberately not here: counting pods into Job status (``jobcontroller``) or deciding to delete
(``deleting``). Init containers are not run; every container of a pod shares one timeline.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

from .events import NODE
from .scenarios import Scenario

INF = math.inf
HOST_IP = "10.224.0.4"
PULL_BACKOFF_CAP = 300.0
RESTART_BACKOFF_CAP = 300.0
RESCHEDULE_EVERY = 300.0
SIGTERM_EXIT = 143
SIGKILL_EXIT = 137
MOUNT_BACKOFF_CAP = 122.0  # the volume manager's exponential back-off tops out at 2m2s

UNSCHEDULABLE_MESSAGE = ("0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: "
                         "3 No preemption victims found for incoming pod.")


@dataclass
class PodPlan:
    """The simulator's private notes on a pod it drives (never part of the API object)."""

    scenario: Scenario
    created: float
    attempt: int = 0  # index of this pod among its Job's pods (for ``times=N``)
    deleted_at: float | None = None
    kill_at: float | None = None
    by_controller: bool = False  # deleted by the Job controller for suspend/success: not a failure
    watermark: float = -INF  # events up to this time have been recorded
    due: float = 0.0  # next time the pod changes
    finished_at: float | None = None
    index: int | None = None  # completion index (Indexed Jobs)
    kill_code: int = SIGKILL_EXIT  # 143 when the container stops on SIGTERM, 137 when killed
    disruption: dict | None = None  # the DisruptionTarget condition, once disrupted
    evicted: str | None = None  # node-pressure eviction message (the pod ends Failed/Evicted)


@dataclass(frozen=True)
class Run:
    """One execution of the pod's containers: [start, end) and how it ended."""

    index: int
    start: float
    end: float | None
    exit_code: int
    reason: str
    message: str
    killed: bool = False


@dataclass(frozen=True)
class EventSpec:
    type: str
    reason: str
    message: str
    component: str = "kubelet"
    container: str | None = None


def normalize_image(image: str) -> str:
    name, _, digest = image.partition("@")
    first = name.split("/", 1)[0]
    if "/" not in name or ("." not in first and ":" not in first and first != "localhost"):
        name = "docker.io/" + (name if "/" in name else "library/" + name)
    if ":" not in name.rsplit("/", 1)[-1] and not digest:
        name += ":latest"
    return f"{name}@{digest}" if digest else name


def image_id(image: str) -> str:
    normalized = normalize_image(image)
    repo = normalized.split("@", 1)[0]
    last = repo.rsplit("/", 1)
    if ":" in last[-1]:
        repo = repo[: repo.rfind(":")]
    return f"{repo}@sha256:{hashlib.sha256(normalized.encode()).hexdigest()}"


def container_hex(*parts: object) -> str:
    return hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()


def pod_ip(uid: str) -> str:
    digest = hashlib.sha256(uid.encode()).digest()
    return f"10.244.{digest[0]}.{max(2, digest[1])}"


class Timeline:
    def __init__(self, plan: PodPlan, pod: dict):
        self.plan = plan
        self.s = plan.scenario
        self.t0 = plan.created
        spec = pod.get("spec") or {}
        self.on_failure = spec.get("restartPolicy") == "OnFailure"
        self.containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
        self.names = [c.get("name", "") for c in self.containers]
        self.pod_name = pod["metadata"].get("name", "")
        self.namespace = pod["metadata"].get("namespace", "")
        self.uid = pod["metadata"].get("uid", "")
        blocked = self.s.outcome in ("pull-backoff", "unschedulable", "config-error", "mount-error")
        if blocked:
            self.unblock = self.t0 + self.s.recover if self.s.recover is not None else INF
        else:
            self.unblock = self.t0
        self.scheduled = self.unblock if self.s.outcome == "unschedulable" else self.t0
        self.pulling = self.s.outcome == "pull-backoff"
        self.volumes = spec.get("volumes") or []
        self.kill = plan.kill_at if plan.kill_at is not None else INF
        self._runs: list[Run] = []

    # --- runs ----------------------------------------------------------------------------------
    def _run(self, index: int, start: float, end: float | None) -> Run:
        fails = self.s.fails_attempt(self.plan.attempt + index, self.plan.index)
        code = self.s.exit_code if fails else 0
        reason = self.s.reason if fails else "Completed"
        return Run(index, start, end, code, reason, self.s.message)

    def _raw_run(self, k: int) -> Run | None:
        """Run ``k`` as the scenario alone would have it (no kill), created lazily: an always
        failing ``OnFailure`` container restarts forever."""
        if self.unblock == INF:
            return None
        while len(self._runs) <= k:
            if not self._runs:
                after = self.s.after
                end = None if self.s.outcome == "run-forever" else self.unblock + after
                self._runs.append(self._run(0, self.unblock + min(1.0, after), end))
                continue
            last = self._runs[-1]
            if last.end is None or last.exit_code == 0 or not self.on_failure or last.end >= self.kill:
                return None
            n = len(self._runs)
            start = last.end + min(10.0 * 2 ** min(n - 1, 16), RESTART_BACKOFF_CAP)
            self._runs.append(self._run(n, start, start + self.s.after))
        return self._runs[k]

    def run(self, k: int) -> Run | None:
        """Run ``k`` as it really happens: one that was still going when the pod was killed ends
        at the kill with SIGTERM's exit code."""
        raw = self._raw_run(k)
        if raw is None or raw.start >= self.kill:
            return None
        if raw.end is None or raw.end > self.kill:
            return Run(raw.index, raw.start, self.kill, self.plan.kill_code, "Error", "", killed=True)
        return raw

    def runs_until(self, horizon: float) -> list[Run]:
        """Runs that started at or before ``horizon``."""
        out: list[Run] = []
        while (run := self.run(len(out))) is not None and run.start <= horizon:
            out.append(run)
        return out

    def pull_attempts(self) -> Iterator[float]:
        """Times the kubelet tries to pull a missing image: 1 s after scheduling, then back-off."""
        t, k = self.scheduled + 1.0, 0
        while t < self.unblock:
            yield t
            t += 1.0 + min(10.0 * 2 ** min(k, 16), PULL_BACKOFF_CAP)
            k += 1

    def retries(self, cap: float) -> Iterator[float]:
        """The kubelet's tries while blocked: 1 s after scheduling, then a doubling back-off."""
        t, k = self.scheduled + 1.0, 0
        while t < self.unblock:
            yield t
            t += min(2.0 * 2 ** min(k, 16), cap)
            k += 1

    def missing_secret(self) -> str:
        """The Secret a config error names: the first one the first container's env refers to."""
        for c in self.containers:
            for env in c.get("env") or []:
                ref = ((env or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
                if ref.get("name"):
                    return ref["name"]
            for source in c.get("envFrom") or []:
                ref = (source or {}).get("secretRef") or {}
                if ref.get("name"):
                    return ref["name"]
        return "app-settings"

    def missing_volume(self) -> tuple[str, str]:
        """(volume, what is missing) for a mount error: the first Secret / ConfigMap / PVC volume."""
        for v in self.volumes:
            if not isinstance(v, dict):
                continue
            if (v.get("secret") or {}).get("secretName"):
                return v.get("name", ""), f'secret "{v["secret"]["secretName"]}" not found'
            if (v.get("configMap") or {}).get("name"):
                return v.get("name", ""), f'configmap "{v["configMap"]["name"]}" not found'
            if (v.get("persistentVolumeClaim") or {}).get("claimName"):
                return v.get("name", ""), (f'persistentvolumeclaim "{v["persistentVolumeClaim"]["claimName"]}" '
                                           "not found")
        return "config", 'secret "app-config" not found'

    def config_error(self) -> str:
        return f'secret "{self.missing_secret()}" not found'

    # --- change points and their events --------------------------------------------------------
    def _base_points(self) -> Iterator[tuple[float, list[EventSpec]]]:
        image = self.containers[0].get("image", "") if self.containers else ""
        if self.s.outcome == "unschedulable":
            t = self.t0
            while t < self.scheduled:
                yield t, [EventSpec("Warning", "FailedScheduling", UNSCHEDULABLE_MESSAGE, "default-scheduler")]
                t += RESCHEDULE_EVERY
        if self.scheduled == INF:
            return
        yield self.scheduled, [EventSpec(
            "Normal", "Scheduled", f"Successfully assigned {self.namespace}/{self.pod_name} to {NODE}",
            "default-scheduler")]
        if self.pulling:
            first = self.names[0] if self.names else None
            for a in self.pull_attempts():
                yield a, [
                    EventSpec("Normal", "Pulling", f'Pulling image "{image}"', container=first),
                    EventSpec("Warning", "Failed", f'Failed to pull image "{image}": {self.pull_error(image)}',
                              container=first),
                    EventSpec("Warning", "Failed", "Error: ErrImagePull", container=first),
                ]
                if a + 1.0 < self.unblock:
                    yield a + 1.0, [
                        EventSpec("Normal", "BackOff", f'Back-off pulling image "{image}"', container=first),
                        EventSpec("Warning", "Failed", "Error: ImagePullBackOff", container=first),
                    ]
        if self.s.outcome == "config-error":
            first = self.names[0] if self.names else None
            for a in self.retries(PULL_BACKOFF_CAP):
                yield a, [EventSpec("Warning", "Failed", f"Error: {self.config_error()}", container=first)]
        if self.s.outcome == "mount-error":
            volume, missing = self.missing_volume()
            for a in self.retries(MOUNT_BACKOFF_CAP):
                yield a, [EventSpec("Warning", "FailedMount",
                                    f'MountVolume.SetUp failed for volume "{volume}" : {missing}')]
        k = 0
        while (run := self.run(k)) is not None:
            started = []
            for c in self.containers:
                name, img = c.get("name", ""), c.get("image", "")
                started += [
                    EventSpec("Normal", "Pulled", f'Container image "{img}" already present on machine',
                              container=name),
                    EventSpec("Normal", "Created", f"Created container: {name}", container=name),
                    EventSpec("Normal", "Started", f"Started container {name}", container=name),
                ]
            yield run.start, started
            if run.end is None:
                return
            ending: list[EventSpec] = []
            if self.on_failure and run.exit_code != 0 and not run.killed:
                ending = [EventSpec("Warning", "BackOff",
                                    f"Back-off restarting failed container {n} in pod "
                                    f"{self.pod_name}_{self.namespace}({self.uid})", container=n)
                          for n in self.names]
            yield run.end, ending
            k += 1

    def points(self) -> Iterator[tuple[float, list[EventSpec]]]:
        """Every instant the pod changes, in order, with the events recorded then. (``Killing``
        is recorded by ``deleting`` when the stop is asked for, not here.)"""
        for t, events in self._base_points():
            if t >= self.kill:
                break
            yield t, events
        if self.kill < INF:
            yield self.kill, []

    def pull_error(self, image: str) -> str:
        ref = normalize_image(image)
        return (f'rpc error: code = NotFound desc = failed to pull and unpack image "{ref}": failed to resolve '
                f'reference "{ref}": {ref}: not found')

    def next_change(self, now: float) -> float:
        for t, _ in self.points():
            if t > now:
                return t
        return INF
