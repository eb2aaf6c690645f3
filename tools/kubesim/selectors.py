"""Label and field selectors, parsed and matched the way the API server does.

Label selectors (``k8s.io/apimachinery/pkg/labels``): equality (``=``, ``==``, ``!=``), set-based
(``in``, ``notin``), existence (``key`` / ``!key``) and ``gt``/``lt`` (``key>3``), comma-joined
(AND). ``!=`` and ``notin`` also match objects that lack the key, as in Kubernetes. Field
selectors support ``=``, ``==`` and ``!=`` on the fields each resource indexes; any other field
is a 400 ``field label not supported``, as the real server answers.

Deliberately not here: looking objects up (``store``) or the ``LabelSelector`` object form other
than matching it (``matches_selector_object``) for Job selector validation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from . import statuses

# One requirement of a label selector: (key, operator, values).
#   operators: "=", "!=", "in", "notin", "exists", "!", "gt", "lt"


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        has = self.key in labels
        value = labels.get(self.key)
        if self.op in ("=", "in"):
            return has and value in self.values
        if self.op in ("!=", "notin"):
            return not has or value not in self.values
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        if self.op in ("gt", "lt"):
            try:
                number = int(value) if has else None
            except (TypeError, ValueError):
                return False
            if number is None:
                return False
            return number > int(self.values[0]) if self.op == "gt" else number < int(self.values[0])
        return False


_KEY = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_VALUE = r"(?:(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
_SET = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s*\(([^()]*)\)\s*$")
_EQ = re.compile(rf"^\s*({_KEY})\s*(==|=|!=)\s*({_VALUE})\s*$")
_CMP = re.compile(rf"^\s*({_KEY})\s*([<>])\s*(-?[0-9]+)\s*$")
_EXISTS = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")
_VALUE_ONLY = re.compile(rf"^{_VALUE}$")


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside ``( ... )`` value sets."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def parse_labels(text: str | None) -> tuple[Requirement, ...]:
    """Parse a ``labelSelector`` query value; a malformed one raises a 400 ApiError."""
    if text is None or not text.strip():
        return ()
    reqs = []
    for part in _split_top_level(text):
        if m := _SET.match(part):
            inner = m.group(3).strip()
            # ``parseValues``: an empty ``()`` is the set holding only the empty string, so
            # ``key in ()`` selects objects whose label is present and empty.
            values = tuple(v.strip() for v in inner.split(",")) if inner else ("",)
            if not all(_VALUE_ONLY.match(v) for v in values):
                raise statuses.bad_request(f"unable to parse requirement: values of {m.group(1)!r} are not valid")
            reqs.append(Requirement(m.group(1), m.group(2), values))
        elif m := _EQ.match(part):
            reqs.append(Requirement(m.group(1), "!=" if m.group(2) == "!=" else "=", (m.group(3),)))
        elif m := _CMP.match(part):
            reqs.append(Requirement(m.group(1), "gt" if m.group(2) == ">" else "lt", (m.group(3),)))
        elif m := _EXISTS.match(part):
            reqs.append(Requirement(m.group(2), "!" if m.group(1) else "exists"))
        else:
            raise statuses.bad_request(f"unable to parse requirement: found {part.strip()!r}, "
                                       f"expected: in, notin, =, ==, !=, gt, lt")
    return tuple(reqs)


def labels_match(reqs: tuple[Requirement, ...], labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    return all(r.matches(labels) for r in reqs)


def matches_selector_object(selector: dict | None, labels: dict[str, str]) -> bool:
    """Does a ``LabelSelector`` object (matchLabels + matchExpressions) select these labels?"""
    if not selector:
        return False  # an empty/nil selector selects nothing for controllers
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        op = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}.get(expr.get("operator"))
        if op is None or not Requirement(expr.get("key", ""), op, tuple(expr.get("values") or ())).matches(labels):
            return False
    return True


# --- field selectors -------------------------------------------------------------------------------

def _path(*keys: str) -> Callable[[dict], str]:
    def get(obj: dict) -> str:
        value: object = obj
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)
    return get


_COMMON = {
    "metadata.name": _path("metadata", "name"),
    "metadata.namespace": _path("metadata", "namespace"),
}

FIELDS: dict[str, dict[str, Callable[[dict], str]]] = {
    "jobs": {**_COMMON, "status.successful": _path("status", "succeeded")},
    "pods": {
        **_COMMON,
        "spec.nodeName": _path("spec", "nodeName"),
        "spec.restartPolicy": _path("spec", "restartPolicy"),
        "spec.schedulerName": _path("spec", "schedulerName"),
        "spec.serviceAccountName": _path("spec", "serviceAccountName"),
        "status.phase": _path("status", "phase"),
        "status.podIP": _path("status", "podIP"),
        "status.nominatedNodeName": _path("status", "nominatedNodeName"),
    },
    "events": {
        **_COMMON,
        "involvedObject.kind": _path("involvedObject", "kind"),
        "involvedObject.namespace": _path("involvedObject", "namespace"),
        "involvedObject.name": _path("involvedObject", "name"),
        "involvedObject.uid": _path("involvedObject", "uid"),
        "involvedObject.apiVersion": _path("involvedObject", "apiVersion"),
        "involvedObject.resourceVersion": _path("involvedObject", "resourceVersion"),
        "involvedObject.fieldPath": _path("involvedObject", "fieldPath"),
        "reason": _path("reason"),
        "reportingComponent": _path("reportingComponent"),
        "source": _path("source", "component"),
        "type": _path("type"),
    },
    "secrets": {**_COMMON, "type": _path("type")},
    "namespaces": {"metadata.name": _path("metadata", "name"), "status.phase": _path("status", "phase")},
}

FieldRequirement = tuple[Callable[[dict], str], bool, str]  # (getter, equal?, value)


def parse_fields(plural: str, text: str | None) -> tuple[FieldRequirement, ...]:
    if text is None or not text.strip():
        return ()
    supported = FIELDS.get(plural, _COMMON)
    reqs = []
    for part in text.split(","):
        m = re.match(r"^\s*([^=!\s]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not m:
            raise statuses.bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        name, op, value = m.groups()
        getter = supported.get(name)
        if getter is None:
            raise statuses.bad_request(f'field label not supported: {name}')
        reqs.append((getter, op != "!=", value))
    return tuple(reqs)


def fields_match(reqs: tuple[FieldRequirement, ...], obj: dict) -> bool:
    return all((getter(obj) == value) == equal for getter, equal, value in reqs)
