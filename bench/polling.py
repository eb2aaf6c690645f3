"""The baseline: a sweep the seed's way, one ``ReadNamespacedJobStatus`` per run.

The AKS Job type as first described (and Airflow's and Dagster's Kubernetes job runners) polls
every run on its own: a GET of the Job's status, deserialised into the official client's typed
``V1Job`` model. To compare like with like, this baseline starts from the same list of active runs
(the store's ``list_active``, one Table query per 1,000 runs) and ends with the same decode
(``shared.kube.status.decode_job_status`` on the Job as a plain dict), so the only difference from
``shared.usecases.sweeping.sweep`` is how the Jobs are read: N typed GETs instead of one labelled LIST per 500.

What it deliberately does not do: write to the table (it is measured on sweeps where nothing
changed, where ours writes nothing either), read pods (the seed never did), retry, or publish.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.kube.status import decode_job_status
from shared.runs.store import RunStore


@dataclass
class PollSummary:
    runs_seen: int = 0
    jobs_read: int = 0
    jobs_missing: int = 0
    differing: int = 0  # runs whose decoded state differs from the stored one (0 when nothing changed)


def poll_each_run(store: RunStore, api_client, namespace: str, *, now: datetime, stall_after_seconds: int,
                  timeout: float) -> PollSummary:
    """Read every active run's Job with ``BatchV1Api.read_namespaced_job_status`` and decode it."""
    from kubernetes.client import BatchV1Api
    from kubernetes.client.exceptions import ApiException

    batch = BatchV1Api(api_client)
    summary = PollSummary()
    for marker in store.list_active(namespace):
        summary.runs_seen += 1
        try:
            model = batch.read_namespaced_job_status(marker.job_name, namespace, _request_timeout=timeout)
        except ApiException as err:
            if err.status != 404:
                raise
            job = None
            summary.jobs_missing += 1
        else:
            # The typed model back to the API's JSON shape: what the decoder reads.
            job = api_client.sanitize_for_serialization(model)
            summary.jobs_read += 1
        state = decode_job_status(job, (), now=now, stall_after_seconds=stall_after_seconds,
                                  cancel_requested=marker.cancel_requested_at is not None)
        if (state.status, state.phase, state.reason, state.message) != (
                marker.status, marker.phase, marker.reason, marker.message):
            summary.differing += 1
    return summary
