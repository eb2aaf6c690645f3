"""v1 Events as the kubelet, the scheduler and the job controller record them.

Repeats of the same event (same object, type, reason, message, source) are folded into one
Event whose ``count`` grows and ``lastTimestamp`` moves, as the client-go event correlator
does, so a pod stuck in back-off yields ``BackOff (x6 over 4m)`` rather than six objects.
Events live one hour of simulated time (the API server's default event TTL).

Deliberately not here: deciding which events happen; callers (``kubelet``, ``controller``) do.
"""

from __future__ import annotations

from .clock import rfc3339
from .store import Store

EVENT_TTL = 3600.0
NODE = "aks-nodepool1-26474418-vmss000000"


class Recorder:
    def __init__(self, store: Store, new_uid):
        self._store = store
        self._new_uid = new_uid
        self._index: dict[tuple, tuple[str, str]] = {}  # correlation key -> (namespace, event name)
        self._seq = 0

    def record(self, now: float, obj: dict, kind: str, api_version: str, type_: str, reason: str, message: str,
               component: str, field_path: str | None = None, host: str | None = None) -> dict:
        meta = obj["metadata"]
        ns = meta.get("namespace") or "default"
        corr = (meta.get("uid"), field_path, type_, reason, message, component)
        existing = self._index.get(corr)
        if existing is not None:
            event = self._store.get("events", *existing)
            if event is not None:
                event["count"] = event.get("count", 1) + 1
                event["lastTimestamp"] = rfc3339(now)
                return self._store.write("events", event)
        self._seq += 1
        name = f"{meta.get('name')}.{int(now * 1e9) + self._seq:x}"
        involved = {"kind": kind, "namespace": ns, "name": meta.get("name"), "uid": meta.get("uid"),
                    "apiVersion": api_version, "resourceVersion": meta.get("resourceVersion")}
        if field_path:
            involved["fieldPath"] = field_path
        source = {"component": component}
        if host:
            source["host"] = host
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ns, "uid": self._new_uid(),
                         "creationTimestamp": rfc3339(now)},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "source": source,
            "firstTimestamp": rfc3339(now),
            "lastTimestamp": rfc3339(now),
            "count": 1,
            "type": type_,
            "eventTime": None,
            "reportingComponent": component,
            "reportingInstance": host or "",
        }
        self._index[corr] = (ns, name)
        return self._store.insert("events", event)

    def expire(self, now: float, parse_time) -> None:
        """Drop events whose last occurrence is older than the TTL."""
        for event in list(self._store.all("events")):
            last = parse_time(event.get("lastTimestamp")) or parse_time(event["metadata"].get("creationTimestamp"))
            if last is not None and now - last > EVENT_TTL:
                self._store.remove("events", event["metadata"]["namespace"], event["metadata"]["name"])
        live = {(e["metadata"]["namespace"], e["metadata"]["name"]) for e in self._store.all("events")}
        self._index = {k: v for k, v in self._index.items() if v in live}
