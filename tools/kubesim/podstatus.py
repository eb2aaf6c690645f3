"""The pod status the kubelet reports, at any instant of a pod's timeline.

What the kubelet's ``generateAPIPodStatus`` and ``convertToAPIContainerStatuses`` make of a pod
(pkg/kubelet/kubelet_pods.go): the phase, the five pod conditions (``PodScheduled``,
``PodReadyToStartContainers``, ``Initialized``, ``ContainersReady``, ``Ready``), host and pod IPs,
and each container's state (waiting with its reason: ``ContainerCreating``, ``ErrImagePull``,
``ImagePullBackOff``, ``CreateContainerConfigError``, ``CrashLoopBackOff``; running; terminated
with exit code, reason and message, ``FallbackToLogsOnError`` included), ``lastState`` and
``restartCount``; plus ``DisruptionTarget`` and the kubelet's ``Evicted``. ``observe`` is one look
by the kubelet: the status now, the events since its last look, and when the pod next changes.

Deliberately not here: when things happen (``kubelet.Timeline``), and writing the status into the
pod object (``statusmanager``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .clock import rfc3339
from .containerlogs import ContainerLogs
from .kubelet import (
    HOST_IP,
    INF,
    RESTART_BACKOFF_CAP,
    UNSCHEDULABLE_MESSAGE,
    EventSpec,
    PodPlan,
    Run,
    Timeline,
    container_hex,
    image_id,
    normalize_image,
    pod_ip,
)


class PodStatusGenerator:
    def __init__(self, timeline: Timeline):
        self.tl = timeline

    def status_at(self, t: float, base_status: dict) -> dict:
        status: dict = {"phase": "Pending"}
        if "qosClass" in base_status:
            status["qosClass"] = base_status["qosClass"]
        not_ready = "containers with unready status: [" + " ".join(self.tl.names) + "]"
        if t < self.tl.scheduled and t < self.tl.kill:
            status["conditions"] = [_cond("PodScheduled", "False", self.tl.t0, "Unschedulable", UNSCHEDULABLE_MESSAGE)]
            return status
        if t >= self.tl.kill and self.tl.scheduled > self.tl.kill:
            status["phase"] = "Failed"
            status["conditions"] = [_cond("PodScheduled", "False", self.tl.t0, "Unschedulable", UNSCHEDULABLE_MESSAGE)]
            return self._disrupted(status, t)
        sched = self.tl.scheduled
        status.update({"hostIP": HOST_IP, "hostIPs": [{"ip": HOST_IP}], "podIP": pod_ip(self.tl.uid),
                       "podIPs": [{"ip": pod_ip(self.tl.uid)}], "startTime": rfc3339(sched)})
        runs = self.tl.runs_until(t)
        last = runs[-1] if runs else None
        finished = last is not None and last.end is not None and t >= last.end and (
            last.exit_code == 0 or not self.tl.on_failure or last.killed)
        if finished or t >= self.tl.kill:
            succeeded = last is not None and last.exit_code == 0 and not last.killed
            status["phase"] = "Succeeded" if succeeded else "Failed"
            since = last.end if last is not None else self.tl.kill
            reason = "PodCompleted" if succeeded else "PodFailed"
            status["conditions"] = [
                _cond("PodReadyToStartContainers", "False", since),
                _cond("Initialized", "True", sched, "PodCompleted" if succeeded else None),
                _cond("Ready", "False", since, reason),
                _cond("ContainersReady", "False", since, reason),
                _cond("PodScheduled", "True", sched),
            ]
        elif last is not None and (last.end is None or t < last.end):
            status["phase"] = "Running"
            status["conditions"] = [
                _cond("PodReadyToStartContainers", "True", sched),
                _cond("Initialized", "True", sched),
                _cond("Ready", "True", last.start),
                _cond("ContainersReady", "True", last.start),
                _cond("PodScheduled", "True", sched),
            ]
        else:
            # Not started yet, or OnFailure waiting to restart: both are "not ready".
            status["phase"] = "Running" if last is not None else "Pending"
            since = last.end if last is not None else sched
            # Volumes are mounted before the sandbox is made: a mount error keeps it from starting.
            sandbox = "False" if self.tl.s.outcome == "mount-error" and t < self.tl.unblock else "True"
            status["conditions"] = [
                _cond("PodReadyToStartContainers", sandbox, sched),
                _cond("Initialized", "True", sched),
                _cond("Ready", "False", since, "ContainersNotReady", not_ready),
                _cond("ContainersReady", "False", since, "ContainersNotReady", not_ready),
                _cond("PodScheduled", "True", sched),
            ]
        status["containerStatuses"] = [self._container_status(c, t, runs) for c in self.tl.containers]
        return self._disrupted(status, t)

    def _disrupted(self, status: dict, t: float) -> dict:
        """``DisruptionTarget`` once disrupted; ``Evicted`` when the kubelet evicted the pod."""
        cond = self.tl.plan.disruption
        if cond is not None:
            status.setdefault("conditions", []).insert(0, dict(cond))
        if self.tl.plan.evicted is not None and t >= self.tl.kill:
            status["phase"] = "Failed"
            status["reason"] = "Evicted"
            status["message"] = self.tl.plan.evicted
        return status

    def _terminated(self, c: dict, run: Run) -> dict:
        state = {"exitCode": run.exit_code, "reason": run.reason,
                 "startedAt": rfc3339(run.start), "finishedAt": rfc3339(run.end or run.start),
                 "containerID": self._container_id(c, run)}
        message = run.message if not run.killed else ""
        if not message and run.exit_code != 0 and c.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            message = "".join(ContainerLogs(self.tl).lines(run, run.end or run.start, c.get("name", ""))[-80:])[-2048:]
        if message:
            state["message"] = message
        return {"terminated": state}

    def _container_id(self, c: dict, run: Run) -> str:
        return "containerd://" + container_hex(self.tl.uid, c.get("name"), run.index)

    def _container_status(self, c: dict, t: float, runs: list[Run]) -> dict:
        image = c.get("image", "")
        cs: dict = {"name": c.get("name", ""), "image": normalize_image(image) if image else "",
                    "imageID": "", "ready": False, "restartCount": 0, "started": False,
                    "state": {}, "lastState": {}}
        if not runs:
            if t >= self.tl.kill:
                cs["state"] = {"terminated": {"exitCode": 137, "reason": "ContainerStatusUnknown",
                                              "message": "The container could not be located when the pod was "
                                                         "terminated", "startedAt": None,
                                              "finishedAt": rfc3339(self.tl.kill)}}
            elif self.tl.pulling and t < self.tl.unblock:
                cs["state"] = {"waiting": self._pull_waiting(t, image)}
            elif self.tl.s.outcome == "config-error" and t < self.tl.unblock and t >= self.tl.scheduled + 1.0:
                cs["state"] = {"waiting": {"reason": "CreateContainerConfigError", "message": self.tl.config_error()}}
            else:
                cs["state"] = {"waiting": {"reason": "ContainerCreating"}}
            return cs
        last = runs[-1]
        failed_before = [r for r in runs if r.end is not None and r.exit_code != 0 and r.end <= t and not r.killed]
        cs["imageID"] = image_id(image) if image else ""
        cs["restartCount"] = len(failed_before) if self.tl.on_failure else 0
        if len(runs) > 1:
            cs["lastState"] = self._terminated(c, runs[-2])
        if last.end is None or t < last.end:
            cs.update(ready=True, started=True, containerID=self._container_id(c, last))
            cs["state"] = {"running": {"startedAt": rfc3339(last.start)}}
        elif self.tl.on_failure and last.exit_code != 0 and not last.killed and t < self.tl.kill:
            backoff = min(10.0 * 2 ** min(len(runs) - 1, 16), RESTART_BACKOFF_CAP)
            cs["lastState"] = self._terminated(c, last)
            cs["state"] = {"waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {int(backoff)}s restarting failed container={c.get('name')} "
                           f"pod={self.tl.pod_name}_{self.tl.namespace}({self.tl.uid})"}}
            cs["containerID"] = self._container_id(c, last)
        else:
            cs["containerID"] = self._container_id(c, last)
            cs["state"] = self._terminated(c, last)
        if cs["state"].get("terminated", {}).get("startedAt") is None and "terminated" in cs["state"]:
            cs["state"]["terminated"].pop("startedAt", None)
        return cs

    def _pull_waiting(self, t: float, image: str) -> dict:
        last = None
        for a in self.tl.pull_attempts():
            if a > t:
                break
            last = a
        if last is None:
            return {"reason": "ContainerCreating"}
        if t < last + 1.0:
            return {"reason": "ErrImagePull", "message": self.tl.pull_error(image)}
        return {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{image}"'}


def _cond(type_: str, status: str, since: float, reason: str | None = None, message: str | None = None) -> dict:
    cond: dict = {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": rfc3339(since)}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


@dataclass
class Observation:
    status: dict
    events: list[tuple[float, EventSpec]] = field(default_factory=list)
    next_change: float = INF


def observe(plan: PodPlan, pod: dict, now: float) -> Observation:
    """Where the pod is at ``now``, the events since the last look, and when it next changes."""
    timeline = Timeline(plan, pod)
    events: list[tuple[float, EventSpec]] = []
    nxt = INF
    for t, specs in timeline.points():
        if t > now:
            nxt = t
            break
        if t > plan.watermark:
            events.extend((t, spec) for spec in specs)
    plan.watermark = now
    plan.due = nxt
    return Observation(PodStatusGenerator(timeline).status_at(now, pod.get("status") or {}), events, nxt)
