"""Who may call the simulated API server, and what it was asked: bearer tokens and the audit trail.

``TokenAuthenticator`` is kube-apiserver's token authentication as the app meets it: one current
bearer token (``rotate`` issues a new one, and the old one gets 401 from then on) plus tokens
accepted besides it. ``RequestAudit`` is what an audit log would show: each request counted by
(method, route template), the log of requests with the status they got, and the RBAC question
each one asks (``apiserver.authorization_attributes``); it has its own lock, as HTTP threads
write it while the test thread reads it. ``kubeconfig_for`` is how a client is told to present
the token.

Deliberately not here: answering requests (``apiserver``) and the HTTP side (``server``).
"""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from typing import Any

from .apiserver import authorization_attributes


class TokenAuthenticator:
    def __init__(self, token: str):
        self.token = token
        self._extra_tokens: set[str] = set()

    def rotate(self) -> str:
        """Issue a new token; the previous one is refused (401) from now on."""
        self.token = secrets.token_urlsafe(24)
        return self.token

    def accept(self, token: str) -> None:
        self._extra_tokens.add(token)

    def revoke(self, token: str) -> None:
        self._extra_tokens.discard(token)

    def authorized(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        return scheme.lower() == "bearer" and bool(token) and (
            secrets.compare_digest(token, self.token) or token in self._extra_tokens)


class RequestAudit:
    def __init__(self):
        self.requests: Counter = Counter()
        self.request_log: list[dict] = []
        # What RBAC would be asked for each request: (apiGroup, resource, verb) -> count.
        self.authorizations: Counter = Counter()
        self._lock = threading.Lock()

    def record(self, method: str, template: str, path: str, query: dict) -> dict:
        entry = {"method": method, "path": path, "query": dict(query), "status": None}
        with self._lock:
            self.requests[(method, template)] += 1
            self.request_log.append(entry)
            attributes = authorization_attributes(method, path, query)
            if attributes is not None:
                self.authorizations[attributes] += 1
        return entry

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.request_log.clear()
            self.authorizations.clear()


def kubeconfig_for(url: str, token: str, namespace: str, ca_file: str | None) -> dict:
    """A kubeconfig (as a dict) for ``url`` with a bearer ``token``: the CA file when given, else
    no TLS verification for an https URL."""
    cluster: dict[str, Any] = {"server": url}
    if ca_file:
        cluster["certificate-authority"] = ca_file
    elif url.startswith("https"):
        cluster["insecure-skip-tls-verify"] = True
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "kubesim",
        "clusters": [{"name": "kubesim", "cluster": cluster}],
        "users": [{"name": "kubesim", "user": {"token": token}}],
        "contexts": [{"name": "kubesim", "context": {"cluster": "kubesim", "user": "kubesim",
                                                     "namespace": namespace}}],
    }
