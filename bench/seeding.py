"""Seeding runs fast: the rows and Jobs that N submits would leave, without paying for N submits.

Why: a sweep over 5,000 active runs needs 5,000 run rows and 5,000 live Jobs, and the history
figure needs 50,000 finished runs. Submitting them one by one would take longer than everything
measured. Here the Jobs are rendered by ``shared.kube.jobspec`` exactly as a submit renders them
and put into the simulator (``ClusterControl.put_jobs``, not API requests), and the rows are
built by the store's own row functions (``prepare_run``, ``new_run_rows``) and inserted in
entity-group batches of up to 100 rows, straight through the table client, so none of it shows in
the store's request counters.

What it deliberately does not do: measure anything, or write rows the store would not write
(every row here is one ``RunStore.create_run`` would have written for the same run).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from bench.cluster import ClusterControl
from shared.kube import jobspec
from shared.runs.model import Phase, Run, Status
from shared.runs.rows import new_run_rows, prepare_run
from shared.runs.store import RunStore

EXTERNAL_ID = "nightly-report"
BATCH_ROWS = 100  # Table Storage's limit for one entity group transaction
SCENARIO_ANNOTATION = "kubesim.polysync.io/scenario"


def source_job(name: str = EXTERNAL_ID, *, scenario: str = "run-forever") -> dict:
    """A source Job as operators write them: env defaults, resources, a deadline, suspended."""
    annotations = {SCENARIO_ANNOTATION: scenario}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"team": "data"}, "annotations": dict(annotations)},
        "spec": {
            "backoffLimit": 2,
            "activeDeadlineSeconds": 3600,
            "suspend": True,  # a template that never runs itself
            "template": {
                "metadata": {"annotations": dict(annotations)},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "main",
                        "image": "registry.example/report:1.4",
                        "command": ["python", "-m", "report"],
                        "env": [{"name": "REPORT_DATE", "value": "today"}, {"name": "REGION", "value": "eu"}],
                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                                      "limits": {"cpu": "1", "memory": "512Mi"}},
                    }],
                },
            },
        },
    }


def _parameters(i: int) -> list[jobspec.Parameter]:
    return [jobspec.Parameter("REPORT_DATE", f"2024-01-{1 + i % 28:02d}"), jobspec.Parameter("REGION", "eu")]


def seed_active_runs(cluster: ClusterControl, store: RunStore, namespace: str, count: int, *, now: datetime,
                     prefix: str = "active", scenario: str = "run-forever") -> list[str]:
    """``count`` runs as a submit leaves them: a row ``Starting/Pending`` and its Job, just created.

    Their Jobs run forever (scenario ``run-forever``, unless another is given): advance the cluster's clock a few seconds
    and every pod is Running, so the next sweep changes every run exactly once. The runs carry no
    idempotency key (Polysync's flat submit body has none), so each has three rows: run, time
    index and active marker; the key only names the Job deterministically.
    """
    template = jobspec.clone_source_job(source_job(scenario=scenario))
    jobs: list[dict] = []
    rows: list[dict] = []
    run_ids: list[str] = []
    for i in range(count):
        key = f"{prefix}-{i}"
        run_id = jobspec.run_job_name(EXTERNAL_ID, key)
        parameters = _parameters(i)
        rendered = jobspec.render_run_job(template, run_id=run_id, namespace=namespace, external_id=EXTERNAL_ID,
                                          parameters=parameters, idempotency_key=None,
                                          ttl_seconds_after_finished=86400)
        jobs.append(rendered.job)
        run = Run(run_id=run_id, namespace=namespace, external_id=EXTERNAL_ID, status=Status.STARTING,
                  phase=Phase.PENDING, reason="JobCreated", message=f"Job {run_id} created",
                  created_at=now, updated_at=now,
                  parameters=[p.to_record() for p in parameters], spec_hash=rendered.spec_hash,
                  history=[{"at": now.isoformat(), "status": "Starting", "phase": "Pending",
                            "reason": "JobCreated"}],
                  rendered_job=rendered.job)
        rows.extend(new_run_rows(prepare_run(run)))
        run_ids.append(run_id)
    for chunk in _chunks(jobs, 500):
        cluster.put_jobs(namespace, chunk)
    insert_rows(store, rows)
    return run_ids


def seed_finished_runs(store: RunStore, namespace: str, count: int, *, now: datetime) -> int:
    """``count`` runs that finished long ago: run row and time row each, no active marker.

    Returns the number of batch requests it took. The rows are kept small (no rendered Job):
    what matters here is how many there are, not their size.
    """
    rows: list[dict] = []
    for i in range(count):
        created = now - timedelta(days=30, seconds=i)
        run = Run(run_id=jobspec.run_job_name(EXTERNAL_ID, f"done-{i}"), namespace=namespace,
                  external_id=EXTERNAL_ID, status=Status.SUCCESS, phase=Phase.SUCCEEDED, reason="Completed",
                  message="Job completed", created_at=created, updated_at=created + timedelta(minutes=5),
                  started_at=created, finished_at=created + timedelta(minutes=5),
                  parameters=[p.to_record() for p in _parameters(i)])
        rows.extend(new_run_rows(prepare_run(run)))  # run row + time row: it is terminal
    return insert_rows(store, rows)


def insert_rows(store: RunStore, rows: list[dict]) -> int:
    """Insert rows of one partition in batches of ``BATCH_ROWS``; returns the batch count."""
    batches = 0
    for chunk in _chunks(rows, BATCH_ROWS):
        store.table.submit_transaction([("create", row) for row in chunk])
        batches += 1
    return batches


def _chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
