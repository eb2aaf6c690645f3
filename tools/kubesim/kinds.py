"""The resources the simulator serves, and the names the API server uses for each.

The API server spells one resource four ways (``jobs`` in URLs and NotFound details, ``Job`` in
Invalid details, ``jobs.batch`` in messages, ``JobList`` in list bodies); getting one of them
wrong is exactly the kind of drift that makes a client pass against a stand-in and fail on AKS.
This module only names things; it holds no objects and knows no behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resource:
    plural: str  # "jobs": URL segment, NotFound/AlreadyExists details.kind
    kind: str  # "Job": object kind, Invalid details.kind
    group: str  # "batch", or "" for the core group
    version: str = "v1"
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def qualified(self) -> str:
        """``jobs.batch`` / ``pods``: how messages name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        """``Job.batch`` / ``Pod``: how Invalid messages name the kind."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def prefix(self) -> str:
        """URL prefix of the group/version: ``/apis/batch/v1`` or ``/api/v1``."""
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"


JOBS = Resource("jobs", "Job", "batch")
PODS = Resource("pods", "Pod", "")
EVENTS = Resource("events", "Event", "")
SECRETS = Resource("secrets", "Secret", "")
NAMESPACES = Resource("namespaces", "Namespace", "", namespaced=False)

RESOURCES: dict[str, Resource] = {r.plural: r for r in (JOBS, PODS, EVENTS, SECRETS, NAMESPACES)}

# Kinds a caller may seed with ``KubeSim.put`` and read with ``get`` / ``objects``.
SEEDABLE = ("jobs", "pods", "events", "secrets")


def resource(plural: str) -> Resource:
    try:
        return RESOURCES[plural]
    except KeyError:
        raise ValueError(f"unknown kind {plural!r}; expected one of {sorted(RESOURCES)}") from None
