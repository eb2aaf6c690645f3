"""Discover the source Jobs a namespace offers, and describe one's parameters."""

from __future__ import annotations

from shared.kube import discovery
from shared.usecases.collaborators import Collaborators


def discover(c: Collaborators, namespace: str) -> list[dict]:
    return discovery.discover_source_jobs(c.kube, namespace)


def describe(c: Collaborators, namespace: str, external_id: str) -> dict:
    return discovery.describe_source_job(discovery.read_source_job(c.kube, namespace, external_id))
