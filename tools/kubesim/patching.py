"""PATCH bodies applied the way the API server applies them, on plain dicts.

* ``application/merge-patch+json`` (RFC 7386): objects merge recursively, ``null`` deletes a
  key, lists are replaced whole.
* ``application/strategic-merge-patch+json``: like a merge patch, except the lists Kubernetes
  declares with a merge key merge item by item (``conditions`` by ``type``, ``containers`` and
  ``env`` by ``name``, ``ownerReferences`` by ``uid``, ...), ``finalizers`` merge as a set, and an
  item ``{"$patch": "delete", <key>: ...}`` removes its match. This is the content type the
  official client picks for a dict body.
* ``application/json-patch+json`` (RFC 6902): ``add``/``remove``/``replace``/``test``/``copy``/``move``.

Deliberately not here: server-side apply (``apply-patch+yaml``), ``$retainKeys``,
``$setElementOrder`` and ``$deleteFromPrimitiveList``; the app does not send them.
"""

from __future__ import annotations

import copy
from typing import Any

from . import statuses

# Field name -> merge key, for the list fields of Job/Pod/Secret/Event the app could touch.
MERGE_KEYS: dict[str, str] = {
    "conditions": "type",
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "ownerReferences": "uid",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "containerStatuses": "name",
    "initContainerStatuses": "name",
    "tolerations": "",  # atomic in Kubernetes: replaced whole
}
SET_LISTS = {"finalizers"}

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


def apply(content_type: str, target: dict, patch: Any) -> dict:
    """Return a new dict: ``target`` with ``patch`` applied. Raises a 4xx ApiError when malformed."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype == MERGE:
        return merge(copy.deepcopy(target), _as_object(patch))
    if ctype == STRATEGIC:
        return strategic(copy.deepcopy(target), _as_object(patch))
    if ctype == JSON_PATCH:
        if not isinstance(patch, list):
            raise statuses.bad_request("json patch must be a list of operations")
        return json_patch(copy.deepcopy(target), patch)
    raise statuses.unsupported_media_type(ctype)


def _as_object(patch: Any) -> dict:
    if not isinstance(patch, dict):
        raise statuses.bad_request("the patch body must be a JSON object")
    return patch


def merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = merge(target.get(key), value)
    return target


def strategic(target: Any, patch: Any, field: str = "") -> Any:
    if isinstance(patch, list):
        return _strategic_list(target, patch, field)
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            target.pop(key, None)
        else:
            target[key] = strategic(target.get(key), value, key)
    return target


def _strategic_list(target: Any, patch: list, field: str) -> list:
    current = list(target) if isinstance(target, list) else []
    if field in SET_LISTS:
        out = list(current)
        for item in patch:
            if item not in out:
                out.append(item)
        return out
    key = MERGE_KEYS.get(field)
    if not key or not all(isinstance(i, dict) for i in patch + current):
        return copy.deepcopy(patch)
    out = [copy.deepcopy(i) for i in current]
    for item in patch:
        match = next((i for i, cur in enumerate(out) if cur.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            if match is not None:
                out.pop(match)
        elif match is None:
            out.append(strategic({}, item))
        else:
            out[match] = strategic(out[match], item)
    return out


# --- RFC 6902 --------------------------------------------------------------------------------------

def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise statuses.bad_request(f"invalid json pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str]) -> tuple[Any, str]:
    node = doc
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise statuses.ApiError(statuses.status(422, "Invalid", f"json patch path /{'/'.join(parts)} not found"))
    return node, parts[-1]


def _get(doc: Any, parts: list[str]) -> Any:
    node = doc
    for part in parts:
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError):
            raise statuses.ApiError(statuses.status(
                422, "Invalid", f"json patch path /{'/'.join(parts)} not found")) from None
    return node


def _remove(doc: Any, parts: list[str]) -> Any:
    parent, last = _parent(doc, parts)
    try:
        return parent.pop(int(last)) if isinstance(parent, list) else parent.pop(last)
    except (KeyError, IndexError, ValueError):
        raise statuses.ApiError(statuses.status(
            422, "Invalid", f"json patch remove: /{'/'.join(parts)} not found")) from None


def _add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent, last = _parent(doc, parts)
    if isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            parent.insert(int(last), value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise statuses.bad_request("json patch add: parent is not a container")
    return doc


def json_patch(doc: Any, ops: list) -> Any:
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise statuses.bad_request("json patch operation needs 'op' and 'path'")
        parts = _pointer(op["path"])
        kind = op["op"]
        if kind == "add":
            doc = _add(doc, parts, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            _remove(doc, parts)
        elif kind == "replace":
            _get(doc, parts)
            if parts:
                _remove(doc, parts)
            doc = _add(doc, parts, copy.deepcopy(op.get("value")))
        elif kind == "test":
            if _get(doc, parts) != op.get("value"):
                raise statuses.ApiError(statuses.status(422, "Invalid", f"json patch test failed at {op['path']}"))
        elif kind in ("copy", "move"):
            src = _pointer(op.get("from", ""))
            value = copy.deepcopy(_get(doc, src))
            if kind == "move":
                _remove(doc, src)
            doc = _add(doc, parts, value)
        else:
            raise statuses.bad_request(f"unknown json patch op {kind!r}")
    return doc
