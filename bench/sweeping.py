"""Sweep figures: our sweep (one labelled LIST per 500 Jobs) beside the per-run polling baseline.

For N active runs in one namespace (rows and Jobs seeded by ``bench.seeding``, pods Running):

- the *first* sweep after every run started: each run goes Pending -> Running, so it must write
  exactly N times (one batch per changed run) with at most ceil(N/500)+1 Kubernetes requests;
- *steady* sweeps where nothing changed: no Table write at all, the same Kubernetes bound; timed
  ``repeats`` times (median) and once more under tracemalloc for the memory peak;
- the *baseline* (``bench.polling``) over the same runs, timed and traced the same way.

Kubernetes requests are counted twice: by the app's facade (``SweepSummary.kube_requests``) and by
the simulator (what reached the server). The baseline bypasses the facade, so only the simulator
counts it. ``history_figures`` then adds finished runs to the partition and compares Table reads.

What it deliberately does not do: print (``bench.reporting`` does) or judge targets.
"""

from __future__ import annotations

import math
from collections import Counter
from functools import partial

from bench.measuring import Measured, measure, median
from bench.polling import poll_each_run
from bench.seeding import seed_active_runs, seed_finished_runs
from bench.world import World
from shared import composition
from shared.kube.credentials import connector_for
from shared.runs.store import RunStore
from shared.settings import Settings
from shared.usecases import sweeping
from shared.usecases.collaborators import Collaborators

STARTUP_SECONDS = 5  # simulated seconds after which every seeded run's pod is Running and ready
LIST_PAGE = 500  # the sweep's page size for the labelled Job LIST
READ_OPERATIONS = ("query", "get")


def request_bound(runs: int) -> int:
    """The target: Kubernetes requests per namespace per sweep."""
    return math.ceil(runs / LIST_PAGE) + 1


def sweep_figures(world: World, runs: int, *, repeats: int, baseline_repeats: int) -> dict:
    namespace = f"sweep-{runs}"
    settings = world.settings(namespace)
    with world.table(settings) as store:
        return _sweep_figures(world, settings, store, namespace, runs, repeats, baseline_repeats)


def _sweep_figures(world: World, settings: Settings, store: RunStore, namespace: str, runs: int,
                   repeats: int, baseline_repeats: int) -> dict:
    seed_active_runs(world.cluster, store, namespace, runs, now=world.cluster.now())
    world.cluster.advance(STARTUP_SECONDS)
    now = world.cluster.now()  # the simulator's clock stands still while nothing advances it
    service = composition.build(settings, store, clock=lambda: now)
    api_client = connector_for(settings).api_client()  # built (SDK imported) before anything is measured

    first = _ours(world, service, store)
    steady = [_ours(world, service, store) for _ in range(repeats)]
    steady_traced = _ours(world, service, store, trace=True)

    baseline_args = dict(now=now, stall_after_seconds=settings.stall_after_seconds,
                         timeout=settings.kube_request_timeout_seconds)
    baseline = [_baseline(world, store, api_client, namespace, baseline_args) for _ in range(baseline_repeats)]
    baseline_traced = _baseline(world, store, api_client, namespace, baseline_args, trace=True)

    ours_ms = median([s["wallMs"] for s in steady])
    base_ms = median([b["wallMs"] for b in baseline])
    return {
        "runs": runs,
        "requestBound": request_bound(runs),
        "first": first,
        "steady": _merge(steady, steady_traced),
        "baseline": _merge(baseline, baseline_traced),
        "ratios": {
            "kubeRequests": _ratio(baseline[0]["kubeRequests"], steady[0]["kubeRequests"]),
            "wallTime": _ratio(base_ms, ours_ms),
            "tracedPeak": _ratio(baseline_traced["tracedPeakKiB"], steady_traced["tracedPeakKiB"]),
        },
    }


def history_figures(world: World, active: int, finished: int) -> dict:
    """Table reads of the same steady sweep with no finished runs, then with ``finished`` of them
    in the same partition (run row + time row each, inserted 100 rows per batch)."""
    namespace = "history"
    settings = world.settings(namespace)
    with world.table(settings) as store:
        return _history_figures(world, settings, store, namespace, active, finished)


def _history_figures(world: World, settings: Settings, store: RunStore, namespace: str, active: int,
                     finished: int) -> dict:
    seeded_at = world.cluster.now()
    seed_active_runs(world.cluster, store, namespace, active, now=seeded_at, prefix="history")
    world.cluster.advance(STARTUP_SECONDS)
    now = world.cluster.now()
    service = composition.build(settings, store, clock=lambda: now)
    connector_for(settings).api_client()
    _ours(world, service, store)  # every run starts: the sweeps below change nothing

    without = _ours(world, service, store)
    batches = seed_finished_runs(store, namespace, finished, now=seeded_at)
    with_history = _ours(world, service, store)
    return {"active": active, "finished": finished, "seedBatches": batches,
            "without": without, "with": with_history}


def _ours(world: World, service: Collaborators, store: RunStore, *, trace: bool = False) -> dict:
    table_before = Counter(store.requests)
    kube_before = world.cluster.request_total()
    measured = measure(partial(sweeping.sweep, service), trace=trace)
    summary = measured.result
    table = Counter(store.requests)
    table.subtract(table_before)
    return {
        "runsSeen": summary.runs_seen,
        "changed": summary.changed,
        "kubeRequests": world.cluster.request_total() - kube_before,
        "kubeRequestsCounted": summary.kube_requests,
        "tableReads": sum(table[op] for op in READ_OPERATIONS),
        "tableWrites": sum(n for op, n in table.items() if op not in READ_OPERATIONS),
        "tableOperations": {op: n for op, n in sorted(table.items()) if n},
        **_memory(measured, trace),
    }


def _baseline(world: World, store: RunStore, api_client, namespace: str, args: dict, *,
              trace: bool = False) -> dict:
    table_before = Counter(store.requests)
    kube_before = world.cluster.request_total()
    measured = measure(lambda: poll_each_run(store, api_client, namespace, **args), trace=trace)
    summary = measured.result
    table = Counter(store.requests)
    table.subtract(table_before)
    return {
        "runsSeen": summary.runs_seen,
        "differing": summary.differing,
        "jobsMissing": summary.jobs_missing,
        "kubeRequests": world.cluster.request_total() - kube_before,
        "tableReads": sum(table[op] for op in READ_OPERATIONS),
        "tableWrites": sum(n for op, n in table.items() if op not in READ_OPERATIONS),
        **_memory(measured, trace),
    }


def _memory(measured: Measured, trace: bool) -> dict:
    if trace:  # a traced call's time is inflated by tracemalloc: keep only its memory peak
        return {"tracedPeakKiB": round(measured.traced_peak_kib or 0.0, 1)}
    return {"wallMs": round(measured.wall_ms, 1), "rssPeakDeltaKiB": measured.rss_peak_delta_kib}


def _merge(timed: list[dict], traced: dict) -> dict:
    """The timed runs' figures (wall time: median; counts: the largest) plus the traced peak."""
    merged = dict(timed[0])
    for key in ("changed", "differing", "kubeRequests", "kubeRequestsCounted", "tableReads", "tableWrites"):
        if key in merged:
            merged[key] = max(t[key] for t in timed)
    merged["wallMs"] = round(median([t["wallMs"] for t in timed]), 1)
    merged["wallMsRuns"] = [t["wallMs"] for t in timed]
    rss = [t["rssPeakDeltaKiB"] for t in timed if t["rssPeakDeltaKiB"] is not None]
    merged["rssPeakDeltaKiB"] = max(rss) if rss else None
    merged["tracedPeakKiB"] = traced["tracedPeakKiB"]
    return merged


def _ratio(numerator: float, denominator: float) -> float | None:
    if not denominator:
        return None
    return round(numerator / denominator, 1)
