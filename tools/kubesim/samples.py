"""Sample source Jobs for the dev host: what an operator would have in a namespace.

Each is seeded as a Job that already ran once and completed (so it starts no pods of its own),
carrying a scenario annotation that Jobs cloned from it inherit. Together they cover what the
app's discovery and runs must handle: env vars with defaults, a ``valueFrom`` secret reference,
resources set or missing, ``activeDeadlineSeconds`` on some, a Kueue queue label, and outcomes
from success to image-pull back-off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .clock import rfc3339
from .scenarios import ANNOTATION

if TYPE_CHECKING:  # pragma: no cover
    from .sim import KubeSim


def _job(name: str, image: str, env: list[dict], scenario: str, *, command: list[str] | None = None,
         args: list[str] | None = None, resources: dict | None = None, deadline: int | None = None,
         labels: dict | None = None, backoff_limit: int | None = None, ran_at: float = 0.0) -> dict:
    container: dict = {"name": "main", "image": image, "env": env}
    if command:
        container["command"] = command
    if args:
        container["args"] = args
    if resources:
        container["resources"] = resources
    spec: dict = {
        "template": {"metadata": {"labels": {"app": name}},
                     "spec": {"restartPolicy": "Never", "containers": [container]}},
    }
    if deadline is not None:
        spec["activeDeadlineSeconds"] = deadline
    if backoff_limit is not None:
        spec["backoffLimit"] = backoff_limit
    finished = rfc3339(ran_at)
    started = rfc3339(ran_at - 20)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"app": name, **(labels or {})},
                     "annotations": {ANNOTATION: scenario}},
        "spec": spec,
        "status": {
            "startTime": started, "completionTime": finished, "succeeded": 1, "ready": 0, "terminating": 0,
            "uncountedTerminatedPods": {},
            "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
                 "message": "Reached expected number of succeeded pods", "lastProbeTime": finished,
                 "lastTransitionTime": finished},
                {"type": "Complete", "status": "True", "reason": "CompletionsReached",
                 "message": "Reached expected number of succeeded pods", "lastProbeTime": finished,
                 "lastTransitionTime": finished},
            ],
        },
    }


def seed_samples(sim: KubeSim, namespace: str = "default") -> list[str]:
    """Add sample source Jobs (and the Secret one of them reads); returns the Job names."""
    ran_at = sim.clock.now() - 3600
    sim.put("secrets", namespace, {
        "metadata": {"name": "etl-db"}, "type": "Opaque",
        "stringData": {"password": "kubesim-sample-not-a-secret"},
    })
    jobs = [
        _job("nightly-etl", "busybox:1.36",
             [{"name": "SOURCE_URL", "value": "https://example.org/data.csv"},
              {"name": "BATCH_SIZE", "value": "500"},
              {"name": "DRY_RUN", "value": "false"},
              {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "etl-db", "key": "password"}}}],
             "succeed:after=20:logs=5", command=["sh", "-c", "echo etl $SOURCE_URL"],
             resources={"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}},
             deadline=3600, ran_at=ran_at),
        _job("report-builder", "busybox:1.36",
             [{"name": "REPORT_DATE", "value": "2024-01-01"}, {"name": "FORMAT", "value": "pdf"}],
             "fail:exit=3:after=5:message=report template missing", command=["sh", "-c", "exit 3"],
             backoff_limit=1, ran_at=ran_at),
        _job("model-train", "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest",
             [{"name": "EPOCHS", "value": "3"}, {"name": "LEARNING_RATE", "value": "0.01"}],
             "kueue:admit-after=30:after=60",
             resources={"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
             deadline=7200, labels={"kueue.x-k8s.io/queue-name": "training"}, ran_at=ran_at),
        _job("image-typo", "busybox:does-not-exist",
             [{"name": "GREETING", "value": "hello"}], "pull-backoff", ran_at=ran_at),
        _job("queue-worker", "busybox:1.36",
             [{"name": "QUEUE", "value": "orders"}], "run-forever:terminate=15",
             args=["--queue", "orders"], deadline=120,
             resources={"requests": {"cpu": "50m", "memory": "32Mi"}}, ran_at=ran_at),
    ]
    for job in jobs:
        sim.put("jobs", namespace, job)
    return [j["metadata"]["name"] for j in jobs]
