"""Mass-change figures: one sweep in which every one of N active runs changes, batched against per-run.

For N runs in one namespace (seeded ``Starting/Pending``, Jobs running by the time the sweep
looks), the first sweep moves each run to Running exactly once. It is measured twice in the same
benchmark run, on two namespaces seeded alike:

- *batched* (the app as shipped): the states are decided from the active markers and saved with
  ``RunStore.save_many``, up to 100 operations per transaction, with no run row read;
- *per run* (``sweep(..., per_run_writes=True)``, the sweep before batching): a point read and
  one ETag-guarded transaction per changed run, on a few threads.

Table operations are counted by the store (one query page, one transaction, one point read each
count 1), against the target N/50 + N/100 + a few.

What it deliberately does not do: print (``bench.reporting`` does) or judge targets.
"""

from __future__ import annotations

from collections import Counter
from functools import partial

from bench.measuring import measure
from bench.seeding import seed_active_runs
from bench.sweeping import READ_OPERATIONS, STARTUP_SECONDS
from bench.world import World
from shared import composition
from shared.kube.credentials import connector_for
from shared.usecases import sweeping

SLACK_OPERATIONS = 5  # "a few": the marker query's pages and the odd partly filled transaction


def operation_budget(runs: int) -> int:
    """The target: Table operations for a mass change of ``runs`` runs."""
    return runs // 50 + runs // 100 + SLACK_OPERATIONS


def mass_change_figures(world: World, runs: int) -> dict:
    batched = _one_mass_change(world, runs, per_run=False)
    per_run = _one_mass_change(world, runs, per_run=True)
    return {
        "runs": runs,
        "operationBudget": operation_budget(runs),
        "batched": batched,
        "perRun": per_run,
        "speedup": round(per_run["wallMs"] / batched["wallMs"], 1) if batched["wallMs"] else None,
    }


def _one_mass_change(world: World, runs: int, *, per_run: bool) -> dict:
    namespace = f"mass-{'old' if per_run else 'new'}-{runs}"
    settings = world.settings(namespace)
    with world.table(settings) as store:
        seed_active_runs(world.cluster, store, namespace, runs, now=world.cluster.now(), prefix=namespace)
        world.cluster.advance(STARTUP_SECONDS)
        now = world.cluster.now()
        collaborators = composition.build(settings, store, clock=lambda: now)
        connector_for(settings).api_client()  # built (SDK imported) before anything is measured
        kube_before = world.cluster.request_total()
        measured = measure(partial(sweeping.sweep, collaborators, per_run_writes=per_run))
        table = Counter(store.requests)
        summary = measured.result
        return {
            "changed": summary.changed,
            "wallMs": round(measured.wall_ms, 1),
            "kubeRequests": world.cluster.request_total() - kube_before,
            "tableReads": sum(table[op] for op in READ_OPERATIONS),
            "tableWrites": sum(n for op, n in table.items() if op not in READ_OPERATIONS),
            "tableOperations": {op: n for op, n in sorted(table.items()) if n},
        }
