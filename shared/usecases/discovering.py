"""Discover the source Jobs a namespace offers, and describe one's parameters."""

from __future__ import annotations

from shared.kube import discovery, jobspec
from shared.usecases.collaborators import Collaborators


def discover(c: Collaborators, namespace: str) -> list[dict]:
    return discovery.discover_source_jobs(c.kube, namespace, relaxed_env_names=_relaxed(c))


def describe(c: Collaborators, namespace: str, external_id: str) -> dict:
    job = discovery.read_source_job(c.kube, namespace, external_id)
    return discovery.describe_source_job(job, relaxed_env_names=_relaxed(c))


def _relaxed(c: Collaborators) -> bool:
    """The env-name rule of the cluster's version, the one submit applies (asked once per client)."""
    return jobspec.relaxed_env_names(c.kube.server_version())
