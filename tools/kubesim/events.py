"""Events as the kubelet, the scheduler and the job controller record them, read through core v1.

The kubelet and the job controller use the legacy recorder (core v1,
``k8s.io/client-go/tools/record``): repeats of the same event (same object, type, reason,
message, source) are folded into one Event whose ``count`` grows and ``lastTimestamp`` moves, as
the event correlator does, so a pod stuck in back-off yields ``BackOff (x6 over 4m)`` rather than
six objects; and once 10 events of one object differ only in their message within 10 minutes
(a Job's ``FailedCreate`` names a new pod each time), further ones are folded into one
"(combined from similar events): ..." Event (``EventAggregate``).

The scheduler writes through ``events.k8s.io/v1`` (``k8s.io/client-go/tools/events``). Read back
through core v1 (``Convert_v1_Event_To_core_Event``) such an Event has ``eventTime`` (microseconds),
``reportingComponent``/``reportingInstance`` and ``action``, an empty ``source``, null
``firstTimestamp``/``lastTimestamp`` and no ``count``; a repeat (same object, action, reason) sets
``series: {count, lastObservedTime}`` on the first Event instead of writing a new one.

Events live one hour of simulated time (the API server's default event TTL).

Deliberately not here: deciding which events happen; callers (``kubelet``, ``statusmanager``, ``jobcontroller``) do.
"""

from __future__ import annotations

from .clock import rfc3339, rfc3339_nano
from .store import Store

EVENT_TTL = 3600.0
AGGREGATE_MAX = 10  # EventAggregatorByReasonFunc: maxEvents
AGGREGATE_WINDOW = 600.0  # ... within this many seconds
AGGREGATE_PREFIX = "(combined from similar events): "
NEW_API_COMPONENTS = frozenset({"default-scheduler"})  # recorders on events.k8s.io/v1
NODE = "aks-nodepool1-26474418-vmss000000"


class Recorder:
    def __init__(self, store: Store, new_uid):
        self._store = store
        self._new_uid = new_uid
        self._index: dict[tuple, tuple[str, str]] = {}  # correlation key -> (namespace, event name)
        self._similar: dict[tuple, tuple[float, set[str]]] = {}  # aggregate key -> (last seen, messages)
        self._seq = 0

    def record(self, now: float, obj: dict, kind: str, api_version: str, type_: str, reason: str, message: str,
               component: str, field_path: str | None = None, host: str | None = None) -> dict:
        meta = obj["metadata"]
        ns = meta.get("namespace") or "default"
        if component in NEW_API_COMPONENTS:
            return self._record_series(now, obj, kind, api_version, type_, reason, message, component, host)
        aggregate = (meta.get("uid"), field_path, type_, reason, component)
        last, messages = self._similar.get(aggregate, (now, set()))
        if now - last > AGGREGATE_WINDOW:  # measured from the previous similar event
            messages = set()
        messages.add(message)
        self._similar[aggregate] = (now, messages)
        corr: tuple = (meta.get("uid"), field_path, type_, reason, message, component)
        if len(messages) >= AGGREGATE_MAX:
            message = AGGREGATE_PREFIX + message
            corr = (*aggregate, AGGREGATE_PREFIX)
        existing = self._index.get(corr)
        if existing is not None:
            event = self._store.get("events", *existing)
            if event is not None:
                event["count"] = event.get("count", 1) + 1
                event["lastTimestamp"] = rfc3339(now)
                event["message"] = message
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

    def _record_series(self, now: float, obj: dict, kind: str, api_version: str, type_: str, reason: str,
                       message: str, component: str, host: str | None) -> dict:
        """An events.k8s.io/v1 Event as core v1 shows it; a repeat becomes ``series``."""
        meta = obj["metadata"]
        ns = meta.get("namespace") or "default"
        action = "Scheduling" if component == "default-scheduler" else reason
        corr = ("series", meta.get("uid"), action, reason, component)
        existing = self._index.get(corr)
        if existing is not None:
            event = self._store.get("events", *existing)
            if event is not None:
                series = event.get("series") or {"count": 1}
                event["series"] = {"count": int(series.get("count") or 1) + 1, "lastObservedTime": rfc3339_nano(now)}
                return self._store.write("events", event)
        self._seq += 1
        name = f"{meta.get('name')}.{int(now * 1e9) + self._seq:x}"
        involved = {"kind": kind, "namespace": ns, "name": meta.get("name"), "uid": meta.get("uid"),
                    "apiVersion": api_version, "resourceVersion": meta.get("resourceVersion")}
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ns, "uid": self._new_uid(), "creationTimestamp": rfc3339(now)},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "source": {},
            "firstTimestamp": None,
            "lastTimestamp": None,
            "type": type_,
            "eventTime": rfc3339_nano(now),
            "action": action,
            "reportingComponent": component,
            "reportingInstance": f"{component}-{host or 'aks-control-plane'}",
        }
        self._index[corr] = (ns, name)
        return self._store.insert("events", event)

    def expire(self, now: float, parse_time) -> None:
        """Drop events whose last occurrence is older than the TTL."""
        for event in list(self._store.all("events")):
            last = (parse_time(event.get("lastTimestamp")) or parse_time((event.get("series") or {}).get(
                "lastObservedTime")) or parse_time(event.get("eventTime"))
                or parse_time(event["metadata"].get("creationTimestamp")))
            if last is not None and now - last > EVENT_TTL:
                self._store.remove("events", event["metadata"]["namespace"], event["metadata"]["name"])
        live = {(e["metadata"]["namespace"], e["metadata"]["name"]) for e in self._store.all("events")}
        self._index = {k: v for k, v in self._index.items() if v in live}
        self._similar = {k: v for k, v in self._similar.items() if now - v[0] <= AGGREGATE_WINDOW}
