"""Disruptions of a running pod: the Eviction API, the scheduler's preemption, the kubelet's eviction.

``api`` (the Eviction API, as a node drain or the cluster autoscaler's scale-down uses) and
``preemption`` (the scheduler making room for a higher-priority pod) add the ``DisruptionTarget``
condition and delete the pod gracefully; ``kubelet`` (node-pressure eviction,
pkg/kubelet/eviction) kills its containers at once and leaves it ``Failed`` with reason
``Evicted``, a Warning ``Evicted`` event and the same condition (reason ``TerminationByKubelet``).
What the Job then makes of it is the job controller's (``podFailurePolicy`` rules on
``DisruptionTarget``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import deleting
from .clock import rfc3339

if TYPE_CHECKING:  # pragma: no cover
    from .sim import KubeSim

DISRUPTIONS = {
    "api": ("EvictionByEvictionAPI", "Eviction API: evicting"),
    "preemption": ("PreemptionByScheduler",
                   "default-scheduler: preempting to accommodate a higher priority pod"),
    "kubelet": ("TerminationByKubelet", "The node was low on resource: memory. Threshold quantity: 100Mi, "
                                        "available: 88944Ki. "),
}


class Disruptions:
    def __init__(self, sim: KubeSim):
        self.sim = sim

    def evict(self, namespace: str, pod_name: str, by: str = "api") -> dict:
        """Disrupt a pod: ``api`` (the Eviction API, as a node drain or autoscaler scale-down uses)
        and ``preemption`` (the scheduler) add ``DisruptionTarget`` and delete the pod gracefully;
        ``kubelet`` (node-pressure eviction) kills its containers at once and leaves it ``Failed``
        with reason ``Evicted`` and the same condition (reason ``TerminationByKubelet``)."""
        if by not in DISRUPTIONS:
            raise ValueError(f"by must be one of {sorted(DISRUPTIONS)}")
        reason, message = DISRUPTIONS[by]
        with self.sim.lock:
            now = self.sim.clock.now()
            pod = self.sim.world.store.get("pods", namespace, pod_name)
            if pod is None:
                raise KeyError(f"no pod {namespace}/{pod_name}")
            plan = self.sim.world.pods.get(pod["metadata"].get("uid", ""))
            stamp = rfc3339(now)
            cond = {"type": "DisruptionTarget", "status": "True", "lastProbeTime": None,
                    "lastTransitionTime": stamp, "reason": reason, "message": message}
            if plan is not None:
                plan.disruption = cond
                plan.due = now
            if by == "kubelet":
                if plan is not None:
                    plan.evicted = message
                    plan.kill_at, plan.kill_code = now, 137
                self.sim.world.recorder.record(now, pod, "Pod", "v1", "Warning", "Evicted", message, "kubelet",
                                           host=(pod.get("spec") or {}).get("nodeName"))
                self.sim.controller.observe_pod(pod, now)
            else:
                self.sim.controller.observe_pod(pod, now)
                deleting.request(self.sim.world, "pods", pod, now)
            self.sim.controller.run_until(self.sim.clock, now)
            return self.sim.world.store.copy("pods", pod)
