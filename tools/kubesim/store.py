"""The simulated etcd: objects by kind and key, one resourceVersion counter, and paged lists.

What it promises, as the real API server does: every write bumps one global ``resourceVersion``
(a decimal string); lists come back in key order (namespace, name); ``limit`` + ``continue``
pages with opaque tokens that carry the list's resourceVersion; a token older than the
compaction window (``continue_ttl`` seconds of *simulated* time, 5 minutes by default, or made
stale at once by ``expire_tokens``) is refused with 410 ``Expired`` plus a token that finishes
the list inconsistently, like the real server offers. ``remainingItemCount`` is only reported
for lists without selectors, as in Kubernetes.

Deliberately not here: MVCC history. A continued list reads the *current* objects after the
token's key (the real server reads the snapshot at the token's revision); the
``resourceVersion`` it reports is still the first page's. Also not here: defaulting, validation
and controllers; the store stores what it is given.

Its two indexes are parts of their own: ``OwnerIndex`` (which objects name an owner uid, what the
garbage collector's graph builder keeps) and ``ContinueTokens`` (k8s.io/apiserver's
``continue`` encoding, and what compaction makes stale).

Objects are plain dicts mutated in place under the simulator's lock; ``write`` must follow every
mutation so the revision, the owner index and the cached JSON stay true. Readers outside the
lock get copies (``copy``).
"""

from __future__ import annotations

import base64
import bisect
import json
from collections import defaultdict

from . import selectors, statuses
from .kinds import RESOURCES

Key = tuple[str, str]  # (namespace or "", name)

_SEP = (",", ":")


def key_of(obj: dict) -> Key:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


class Store:
    def __init__(self, continue_ttl: float = 300.0):
        self._rv = 0
        self._objects: dict[str, dict[Key, dict]] = {p: {} for p in RESOURCES}
        self._keys: dict[str, list[Key]] = {p: [] for p in RESOURCES}
        self._json: dict[tuple[str, Key], bytes] = {}
        self._uids: dict[str, tuple[str, Key]] = {}
        self.owners = OwnerIndex()
        self.tokens = ContinueTokens(continue_ttl)
        # called with (plural, obj) after every write and removal (the controllers' informer)
        self.listener = None

    # --- revisions -----------------------------------------------------------------------------
    @property
    def revision(self) -> int:
        return self._rv

    def _bump(self) -> str:
        self._rv += 1
        return str(self._rv)

    # --- reads ---------------------------------------------------------------------------------
    def get(self, plural: str, namespace: str, name: str) -> dict | None:
        return self._objects[plural].get((namespace or "", name))

    def by_uid(self, uid: str) -> tuple[str, dict] | None:
        hit = self._uids.get(uid)
        if hit is None:
            return None
        plural, key = hit
        return plural, self._objects[plural][key]

    def alive(self, uid: str) -> bool:
        return uid in self._uids

    def dependents(self, owner_uid: str, plural: str | None = None) -> list[tuple[str, dict]]:
        out = []
        for p, key in self.owners.dependents_of(owner_uid):
            if plural is None or p == plural:
                obj = self._objects[p].get(key)
                if obj is not None:
                    out.append((p, obj))
        return out

    def owner_uids(self) -> list[str]:
        return self.owners.owner_uids()

    def all(self, plural: str, namespace: str | None = None) -> list[dict]:
        keys = self._keys[plural]
        if namespace is None:
            return [self._objects[plural][k] for k in keys]
        lo = bisect.bisect_left(keys, (namespace, ""))
        hi = bisect.bisect_left(keys, (namespace + "\x00", ""))
        return [self._objects[plural][k] for k in keys[lo:hi]]

    def namespaces_in_use(self) -> set[str]:
        return {k[0] for p, keys in self._keys.items() if p != "namespaces" for k in keys}

    def encode(self, plural: str, obj: dict) -> bytes:
        key = key_of(obj)
        cached = self._json.get((plural, key))
        if cached is None:
            cached = json.dumps(obj, separators=_SEP).encode()
            self._json[(plural, key)] = cached
        return cached

    def copy(self, plural: str, obj: dict) -> dict:
        return json.loads(self.encode(plural, obj))

    # --- writes --------------------------------------------------------------------------------
    def insert(self, plural: str, obj: dict) -> dict:
        key = key_of(obj)
        objects = self._objects[plural]
        if key not in objects:
            bisect.insort(self._keys[plural], key)
        else:
            self._forget_uid(objects[key])
        objects[key] = obj
        uid = obj["metadata"].get("uid")
        if uid:
            self._uids[uid] = (plural, key)
        return self.write(plural, obj)

    def write(self, plural: str, obj: dict) -> dict:
        """Record an in-place change: new resourceVersion, fresh owner index, stale JSON dropped."""
        key = key_of(obj)
        obj["metadata"]["resourceVersion"] = self._bump()
        self._json.pop((plural, key), None)
        self.owners.index(plural, key, obj)
        if self.listener is not None:
            self.listener(plural, obj)
        return obj

    def remove(self, plural: str, namespace: str, name: str) -> dict | None:
        key = (namespace or "", name)
        obj = self._objects[plural].pop(key, None)
        if obj is None:
            return None
        keys = self._keys[plural]
        i = bisect.bisect_left(keys, key)
        if i < len(keys) and keys[i] == key:
            keys.pop(i)
        self._json.pop((plural, key), None)
        self._forget_uid(obj)
        self.owners.index(plural, key, None)
        self._bump()  # a delete is a write: list revisions move on
        if self.listener is not None:
            self.listener(plural, obj)
        return obj

    def _forget_uid(self, obj: dict) -> None:
        uid = obj["metadata"].get("uid")
        if uid:
            self._uids.pop(uid, None)

    # --- lists and continue tokens -------------------------------------------------------------
    def expire_tokens(self) -> None:
        """Compact: every continue token handed out so far is now too old."""
        self.tokens.compact(self._rv + 1)
        self._bump()

    def list(self, plural: str, namespace: str | None, label_selector: str | None = None,
             field_selector: str | None = None, limit: int | None = None, continue_token: str | None = None,
             now: float = 0.0) -> tuple[list[dict], dict]:
        """One page of a LIST: (items, list metadata) exactly as the API server pages them."""
        labels = selectors.parse_labels(label_selector)
        fields = selectors.parse_fields(plural, field_selector)
        keys = self._keys[plural]
        if namespace is None:
            lo, hi = 0, len(keys)
        else:
            lo = bisect.bisect_left(keys, (namespace, ""))
            hi = bisect.bisect_left(keys, (namespace + "\x00", ""))
        rv = self._rv
        start = lo
        if continue_token:
            rv, start_key = self.tokens.decode(continue_token)
            start = max(lo, bisect.bisect_right(keys, self.tokens.start_to_key(start_key, namespace), lo, hi))
            if self.tokens.expired(rv, now):
                # Offer what the real server offers: a token at the current revision that
                # resumes after the same key (an inconsistent but complete continuation).
                raise statuses.expired(self.tokens.issue(self._rv, start_key, now))
        objects = self._objects[plural]
        items: list[dict] = []
        last: Key | None = None
        i = start
        filtering = bool(labels or fields)
        while i < hi:
            if limit and len(items) >= limit:
                break
            k = keys[i]
            obj = objects[k]
            i += 1
            if filtering and not (selectors.labels_match(labels, obj["metadata"].get("labels"))
                                  and selectors.fields_match(fields, obj)):
                continue
            items.append(obj)
            last = k
        meta: dict = {"resourceVersion": str(rv)}
        if limit and len(items) >= limit and last is not None and i < hi:
            meta["continue"] = self.tokens.issue(rv, self.tokens.key_to_start(last, namespace), now)
            if not filtering:
                meta["remainingItemCount"] = hi - i
        return items, meta


class OwnerIndex:
    """Which objects name an owner uid in their ``ownerReferences``: the graph the garbage
    collector's graph builder keeps (pkg/controller/garbagecollector/graph_builder.go), kept true
    at every write."""

    def __init__(self):
        # owner uid -> {(plural, key)} of objects whose ownerReferences name it
        self._dependents: dict[str, set[tuple[str, Key]]] = defaultdict(set)
        self._owners_of: dict[tuple[str, Key], tuple[str, ...]] = {}

    def dependents_of(self, owner_uid: str) -> list[tuple[str, Key]]:
        return sorted(self._dependents.get(owner_uid, ()))

    def owner_uids(self) -> list[str]:
        return [uid for uid, deps in self._dependents.items() if deps]

    def index(self, plural: str, key: Key, obj: dict | None) -> None:
        ref = (plural, key)
        if obj is not None:
            owners = tuple(o.get("uid") for o in obj["metadata"].get("ownerReferences") or () if o.get("uid"))
            if owners == self._owners_of.get(ref, ()):
                return
        before = self._owners_of.pop(ref, ())
        for uid in before:
            deps = self._dependents.get(uid)
            if deps is not None:
                deps.discard(ref)
                if not deps:
                    del self._dependents[uid]
        if obj is None:
            return
        if owners:
            self._owners_of[ref] = owners
            for uid in owners:
                self._dependents[uid].add(ref)


class ContinueTokens:
    """``continue`` tokens as kube-apiserver encodes them (k8s.io/apiserver/pkg/storage/continue.go:
    the list's resourceVersion and the key to resume after, base64 JSON), and when one is too
    old: before the last compaction, or handed out more than ``ttl`` seconds of simulated time
    ago."""

    def __init__(self, ttl: float):
        self.ttl = ttl
        # revision -> simulated time a token at it was first handed out
        self._issued: dict[int, float] = {}
        self._compacted_rv = 0

    def compact(self, below: int) -> None:
        """Every token at a revision below ``below`` is too old from now on."""
        self._compacted_rv = below
        self._issued.clear()

    def expired(self, rv: int, now: float) -> bool:
        issued = self._issued.get(rv)
        return rv < self._compacted_rv or issued is None or now - issued > self.ttl

    def issue(self, rv: int, start: str, now: float) -> str:
        self._issued.setdefault(rv, now)
        raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start}, separators=_SEP).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @staticmethod
    def decode(token: str) -> tuple[int, str]:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            doc = json.loads(raw)
            if doc.get("v") != "meta.k8s.io/v1":
                raise ValueError("version")
            return int(doc["rv"]), str(doc["start"])
        except (ValueError, KeyError, TypeError) as exc:
            raise statuses.bad_request(f"continue key is not valid: {exc.__class__.__name__}") from None

    @staticmethod
    def key_to_start(key: Key, namespace: str | None) -> str:
        return key[1] if namespace is not None else f"{key[0]}/{key[1]}"

    @staticmethod
    def start_to_key(start: str, namespace: str | None) -> Key:
        if namespace is not None:
            return (namespace, start)
        ns, _, name = start.partition("/")
        return (ns, name) if name else ("", ns)
