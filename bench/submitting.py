"""Submit figures: requests per submit and latency, through the submit use case.

Each submit goes the way an HTTP submit goes after routing: the body is parsed and validated by
``shared.adapters.submits.submit_request`` (the parser the HTTP route uses; the Event Grid
trigger shares its rules) and handed to ``shared.usecases.submitting.submit``. What is left out is the Functions host's own
HTTP handling, which no code of ours controls. Every submit carries its own idempotency key, as
Polysync's retried submits should; the key costs one Table point read.

The first submit builds its Kubernetes client (reads the kubeconfig, opens the first
connections; in a fresh process it also imports the SDK): it is reported on its own and left out
of the percentiles, which describe a warm instance.

What it deliberately does not do: run the created Jobs (the simulator's clock does not move
here), or put a Secret value anywhere but into the request body.
"""

from __future__ import annotations

from collections import Counter

from bench.measuring import measure, median, percentile
from bench.seeding import EXTERNAL_ID, source_job
from bench.world import World
from shared import composition
from shared.adapters.submits import submit_request
from shared.usecases import submitting
from shared.usecases.collaborators import Collaborators


def submit_figures(world: World, submits: int, *, secret_submits: int = 10) -> dict:
    namespace = "submit"
    settings = world.settings(namespace)
    world.cluster.put_jobs(namespace, [source_job(scenario="succeed:after=60")])
    with world.table(settings) as store:
        return _submit_figures(world, composition.build(settings, store), namespace, submits, secret_submits)


def _submit_figures(world: World, service: Collaborators, namespace: str, submits: int, secret_submits: int) -> dict:
    first = _submit(world, service, namespace, _body("first", secrets=0))
    plain = [_submit(world, service, namespace, _body(f"plain-{i}", secrets=0)) for i in range(submits)]
    one_secret = [_submit(world, service, namespace, _body(f"one-secret-{i}", secrets=1))
                  for i in range(secret_submits)]
    three_secrets = [_submit(world, service, namespace, _body(f"three-secrets-{i}", secrets=3))
                     for i in range(secret_submits)]
    latencies = [s["latencyMs"] for s in plain]
    return {
        "submits": submits,
        "via": "submitting.submit with shared.adapters.submits.submit_request (no HTTP host)",
        "firstSubmitMs": first["latencyMs"],
        "plain": _summary(plain),
        "oneSecret": _summary(one_secret),
        "threeSecrets": _summary(three_secrets),
        "latencyMs": {"p50": round(percentile(latencies, 0.50), 1), "p95": round(percentile(latencies, 0.95), 1),
                      "median": round(median(latencies), 1), "max": round(max(latencies), 1)},
    }


def _body(key: str, *, secrets: int) -> dict:
    parameters: list[dict] = [{"name": "REPORT_DATE", "value": "2024-02-01"}, {"name": "REGION", "value": "us"}]
    # Bench-only placeholder values: they exist to make the Secret path run, nothing reads them.
    parameters += [{"name": f"API_TOKEN_{i}", "value": f"placeholder-{key}-{i}", "dataType": "Secret"}
                   for i in range(secrets)]
    return {"parameters": parameters, "idempotencyKey": f"bench-{key}"}


def _submit(world: World, service: Collaborators, namespace: str, body: dict) -> dict:
    table_before = Counter(service.store.requests)
    kube_before = world.cluster.request_total()
    verbs_before = Counter(service.kube.requests) if "kube" in service.__dict__ else Counter()

    def submit():
        return submitting.submit(service, submit_request(body, EXTERNAL_ID, namespace))

    measured = measure(submit)
    if not measured.result.created:
        raise RuntimeError("a benchmark submit was answered with an earlier run: idempotency keys collide")
    table = Counter(service.store.requests)
    table.subtract(table_before)
    verbs = Counter(service.kube.requests)
    verbs.subtract(verbs_before)
    return {
        "latencyMs": measured.wall_ms,
        "kubeRequests": world.cluster.request_total() - kube_before,
        "kubeVerbs": {verb: n for verb, n in verbs.items() if n},
        "tableOperations": {op: n for op, n in table.items() if n},
    }


def _summary(records: list[dict]) -> dict:
    """Per-submit counts; ``uniform`` says whether every submit made the same requests."""
    kube = [r["kubeRequests"] for r in records]
    table = [sum(r["tableOperations"].values()) for r in records]
    verbs = [tuple(sorted(r["kubeVerbs"].items())) for r in records]
    ops = [tuple(sorted(r["tableOperations"].items())) for r in records]
    return {
        "count": len(records),
        "kubeRequestsMax": max(kube),
        "kubeRequestsMin": min(kube),
        "kubeVerbs": dict(verbs[0]),
        "tableOperationsMax": max(table),
        "tableOperations": dict(ops[0]),
        "uniform": len(set(verbs)) == 1 and len(set(ops)) == 1 and len(set(kube)) == 1,
    }
