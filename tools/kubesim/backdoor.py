"""Objects behind the API's back: what a test or the dev host seeds, reads and removes directly.

``put`` seeds an object as if it had been created (server fields filled in, Jobs and pods get the
controllers' treatment) but without validation, so odd states can be seeded on purpose; ``get``
and ``objects`` read copies; ``remove`` deletes at once, no finalizers, no propagation, as if the
object had been taken out of etcd. None of these is a request: they are not counted and no fault
applies. Namespaces spring into existence when first used, the default ones from the start.

Deliberately not here: requests (``apiserver``).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from . import deleting, kinds

if TYPE_CHECKING:  # pragma: no cover
    from .sim import KubeSim

DEFAULT_NAMESPACES = ("default", "kube-system")


class Backdoor:
    def __init__(self, sim: KubeSim):
        self.sim = sim

    def put(self, kind: str, namespace: str, obj: dict) -> dict:
        """Seed an object directly (not a request). Server fields it lacks are filled in and Jobs
        get the controller's treatment like created ones; no validation, so odd states can be
        seeded on purpose. An object with the same name is replaced."""
        res = self._seedable(kind)
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not (meta.get("name") or meta.get("generateName")):
            raise ValueError("a seeded object needs metadata.name (or generateName)")
        meta["namespace"] = namespace
        with self.sim.lock:
            now = self.sim.clock.now()
            created, after = self.sim.apiserver.admit(res, obj, now, "kubesim", seed=True)
            self.ensure_namespace(namespace)
            old = self.sim.world.store.get(kind, namespace, created["metadata"]["name"])
            if old is not None:
                self.sim.world.forget(old)
            self.sim.world.store.insert(kind, created)
            after()
            return self.sim.world.store.copy(kind, created)

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        res = kinds.resource(kind)
        with self.sim.lock:
            obj = self.sim.world.store.get(res.plural, namespace if res.namespaced else "", name)
            return None if obj is None else self.sim.world.store.copy(res.plural, obj)

    def objects(self, kind: str, namespace: str | None = None) -> list[dict]:
        res = kinds.resource(kind)
        with self.sim.lock:
            store = self.sim.world.store
            return [store.copy(res.plural, o) for o in store.all(res.plural, namespace)]

    def remove(self, kind: str, namespace: str, name: str) -> bool:
        """Delete behind the app's back: gone at once, no finalizers, no propagation. (Dependents
        that point at it are then orphans, and the garbage collector treats them as on a real
        cluster: it deletes them at its next pass.)"""
        res = self._seedable(kind)
        with self.sim.lock:
            obj = self.sim.world.store.get(res.plural, namespace, name)
            if obj is None:
                return False
            deleting.remove(self.sim.world, res.plural, obj)
            return True

    @staticmethod
    def _seedable(kind: str):
        if kind not in kinds.SEEDABLE:
            raise ValueError(f"kind must be one of {kinds.SEEDABLE}, not {kind!r}")
        return kinds.resource(kind)

    def ensure_namespace(self, namespace: str) -> None:
        if namespace and self.sim.world.store.get("namespaces", "", namespace) is None:
            ns = {"metadata": {"name": namespace}}
            created, _ = self.sim.apiserver.admit(kinds.NAMESPACES, ns, self.sim.clock.now(), "kubesim", seed=True)
            self.sim.world.store.insert("namespaces", created)

    def ensure_namespaces(self) -> None:
        with self.sim.lock:
            for ns in DEFAULT_NAMESPACES:
                self.ensure_namespace(ns)
