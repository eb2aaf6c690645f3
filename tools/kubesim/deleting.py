"""Deleting an object the way the API server does it: finalizers, grace periods, propagation.

* An object without finalizers is removed at once (``Background`` adds none: its dependents are
  left to the garbage collector's next pass).
* ``Foreground`` / ``Orphan`` add the ``foregroundDeletion`` / ``orphan`` finalizer and set
  ``deletionTimestamp``; the object stays, readable, until the garbage collector has dealt with
  its dependents and removed the finalizer.
* A pod is deleted gracefully: ``deletionTimestamp`` = now + grace period (the pod spec's
  ``terminationGracePeriodSeconds`` unless the request says otherwise; 0 for a pod that never
  reached a node or already finished). The kubelet sends SIGTERM: a container that handles it
  exits 143 after the scenario's ``terminate`` seconds, one that does not is killed with SIGKILL
  (137) when the grace period ends. The object goes once they have stopped and no finalizer (e.g.
  the Job controller's ``batch.kubernetes.io/job-tracking``) is left.

Deliberately not here: choosing the default policy per resource or answering the request
(``apiserver``), and walking dependents (``garbagecollector``).
"""

from __future__ import annotations

from .clock import rfc3339
from .world import World

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
JOB_TRACKING = "batch.kubernetes.io/job-tracking"


def request(world: World, plural: str, obj: dict, now: float, *, policy: str | None = None,
            grace: int | None = None, by_controller: bool = False) -> bool:
    """Start deleting ``obj``. Returns True when it is gone already."""
    if plural == "pods":
        return _pod(world, obj, now, grace, by_controller)
    meta = obj["metadata"]
    if meta.get("deletionTimestamp"):
        return False
    finalizers = list(meta.get("finalizers") or [])
    if policy == "Foreground" and FOREGROUND not in finalizers:
        finalizers.append(FOREGROUND)
    elif policy == "Orphan" and ORPHAN not in finalizers:
        finalizers.append(ORPHAN)
    if finalizers:
        meta["finalizers"] = finalizers
        meta["deletionTimestamp"] = rfc3339(now)
        meta["deletionGracePeriodSeconds"] = 0
        world.store.write(plural, obj)
        return False
    remove(world, plural, obj)
    return True


def _pod(world: World, pod: dict, now: float, grace: int | None, by_controller: bool) -> bool:
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    uid = meta.get("uid", "")
    plan = world.pods.get(uid)
    if plan is not None and by_controller and plan.deleted_at is None:
        plan.by_controller = True
    if grace is None:
        grace = int(spec.get("terminationGracePeriodSeconds", 30))
    if status.get("phase") in ("Succeeded", "Failed") or not spec.get("nodeName"):
        grace = 0  # nothing runs on a node: the API server deletes such pods at once
    if meta.get("deletionTimestamp"):
        # A second delete may only shorten the remaining grace period.
        if plan is not None and plan.kill_at is not None and now + grace < plan.kill_at:
            plan.kill_at = now + grace
            plan.due = now
        return False
    if grace == 0 and not meta.get("finalizers"):
        remove(world, "pods", pod)
        return True
    meta["deletionTimestamp"] = rfc3339(now + grace)
    meta["deletionGracePeriodSeconds"] = grace
    if plan is not None:
        plan.deleted_at = now
        stop = plan.scenario.terminate
        if stop is None or stop >= grace:
            # Ignores SIGTERM (a shell as PID 1): SIGKILL when the grace period ends.
            plan.kill_at, plan.kill_code = now + grace, 137
        else:
            plan.kill_at, plan.kill_code = now + stop, 143
        plan.due = now
        if status.get("phase") == "Running":
            for container in spec.get("containers") or []:
                name = container.get("name", "")
                world.recorder.record(now, pod, "Pod", "v1", "Normal", "Killing", f"Stopping container {name}",
                                      "kubelet", field_path=f"spec.containers{{{name}}}", host=spec.get("nodeName"))
    else:
        world.kills[uid] = now
    world.store.write("pods", pod)
    return False


def finish(world: World, plural: str, obj: dict, now: float) -> bool:
    """Remove an object whose deletion has nothing left to wait for. Returns True if removed."""
    meta = obj["metadata"]
    if not meta.get("deletionTimestamp") or meta.get("finalizers"):
        return False
    if plural == "pods":
        uid = meta.get("uid", "")
        plan = world.pods.get(uid)
        kill = plan.kill_at if plan is not None else world.kills.get(uid, now)
        if kill is not None and now < kill:
            return False
    remove(world, plural, obj)
    return True


def drop_finalizer(world: World, plural: str, obj: dict, finalizer: str, now: float) -> None:
    meta = obj["metadata"]
    finalizers = [f for f in meta.get("finalizers") or [] if f != finalizer]
    if finalizers == (meta.get("finalizers") or []):
        return
    if finalizers:
        meta["finalizers"] = finalizers
    else:
        meta.pop("finalizers", None)
    world.store.write(plural, obj)
    finish(world, plural, obj, now)


def remove(world: World, plural: str, obj: dict) -> None:
    meta = obj["metadata"]
    world.store.remove(plural, meta.get("namespace") or "", meta["name"])
    world.forget(obj)
