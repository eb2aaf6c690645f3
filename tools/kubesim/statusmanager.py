"""The simulated node's kubelet as the API server sees it: pod status written back, events, deletion.

``podstatus.observe`` knows what a pod looks like at any instant; this is what the kubelet's
status manager (pkg/kubelet/status/status_manager.go, ``syncPod``) does with that: it writes the
status into the pod object when it changed (the scheduler's ``spec.nodeName`` binding with it),
records the kubelet's and the scheduler's events since its last look, and once a deleted pod's
containers have stopped it finishes the deletion (``canBeDeleted`` then a delete with grace 0).

Deliberately not here: when a pod changes (``kubelet``), and counting pods into their Job
(``jobcontroller``).
"""

from __future__ import annotations

from . import deleting
from .events import NODE
from .jobrules import TERMINAL
from .podstatus import observe
from .world import World


class StatusManager:
    def __init__(self, world: World):
        self.w = world

    def sync_due(self, now: float) -> None:
        """Every pod whose timeline changed by ``now``, and every pod killed without a timeline."""
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

    def observe_pod(self, pod: dict, now: float) -> None:
        w = self.w
        meta = pod["metadata"]
        plan = w.pods.get(meta.get("uid", ""))
        if plan is None:
            if meta.get("deletionTimestamp"):
                deleting.finish(w, "pods", pod, now)
            return
        seen = observe(plan, pod, now)
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
