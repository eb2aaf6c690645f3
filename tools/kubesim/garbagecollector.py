"""The garbage collector (pkg/controller/garbagecollector): dependents of deleted owners.

Each pass, as kube-controller-manager's garbage collector does it:

* an owner being deleted with the ``orphan`` finalizer: its dependents lose their owner
  reference to it (``orphanDependents``), then the finalizer goes;
* an owner being deleted with ``foregroundDeletion``: its dependents are deleted (``Background``)
  and the finalizer goes once none is left;
* a dependent whose owners are all gone is deleted (``Background``); one that still has a living
  owner only loses the reference to the dead one. A pod whose Job is gone loses the job
  controller's tracking finalizer first, as the job controller releases pods it no longer owns.

Deliberately not here: how one object is deleted (``deleting``).
"""

from __future__ import annotations

from . import deleting
from .deleting import JOB_TRACKING
from .world import World


class GarbageCollector:
    def __init__(self, world: World):
        self.w = world

    def sweep(self, now: float) -> None:
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
