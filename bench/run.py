"""``python -m bench.run``: the benchmark of issue 7, printed as tables (and ``--json PATH``).

One run starts Azurite (in memory) and the Kubernetes simulator (its own process, every request
delayed by ``--latency``), then measures, in order: cold start (first, while nothing else runs),
sweeps of N active runs beside the per-run polling baseline, mass changes, the sweep fanned out to
consumer processes, polls racing a sweep, the outbox after a mass change, the sweep with finished
runs in the table, submits, and ARM credential requests. ``bench.reporting`` judges the figures against the
issue's targets. Progress goes to stderr; stdout holds only the report.

The exit status is 0 when the benchmark ran, whatever the verdicts (timings on a shared machine
are not a build gate); ``--strict`` makes a MISS exit 1.

What it deliberately does not do: install anything (``make setup`` does), or touch a real cluster,
real Azure, or any network but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.reporting import judge, render

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = {"sizes": "100,1000,5000", "mass_sizes": "1000,5000", "fanout": "10x1000", "race": 200, "outbox": 5000,
            "history": 50_000, "submits": 200}
QUICK = {"sizes": "100,1000", "mass_sizes": "1000", "fanout": "10x200", "race": 50, "outbox": 500, "history": 5_000,
         "submits": 50}
SECTIONS = ("cold", "sweep", "mass", "fanout", "race", "outbox", "history", "submit", "credentials")
BASELINE_REPEATS_ABOVE = 1000  # above this N the baseline is timed once (it takes seconds per sweep)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", help=f"active runs per sweep, comma-separated (default {DEFAULTS['sizes']})")
    parser.add_argument("--mass-sizes", help=f"runs changing at once, batched vs per-run writes, comma-separated "
                                             f"(default {DEFAULTS['mass_sizes']}; 0 skips)")
    parser.add_argument("--fanout", help=f"NAMESPACESxRUNS swept through the queue by one and two consumers "
                                         f"(default {DEFAULTS['fanout']}; 0 skips)")
    parser.add_argument("--race", type=int, help=f"finished runs polled while a sweep runs (default "
                                                 f"{DEFAULTS['race']}; 0 skips)")
    parser.add_argument("--race-pollers", type=int, default=8, help="threads polling every run during the race")
    parser.add_argument("--outbox", type=int, help=f"runs changing at once whose events are then published "
                                                   f"(default {DEFAULTS['outbox']:,}; 0 skips)")
    parser.add_argument("--only", help=f"comma-separated sections to run ({','.join(SECTIONS)}); default all")
    parser.add_argument("--history", type=int, help=f"finished runs for the history figure (default "
                                                    f"{DEFAULTS['history']:,})")
    parser.add_argument("--history-active", type=int, default=100, help="active runs beside the history")
    parser.add_argument("--submits", type=int, help=f"timed submits (default {DEFAULTS['submits']})")
    parser.add_argument("--latency", type=float, default=0.002, help="seconds added to every Kubernetes request")
    parser.add_argument("--repeats", type=int, default=3, help="timed steady sweeps per size (median)")
    parser.add_argument("--credential-ops", type=int, default=1000, help="Kubernetes operations per credential run")
    parser.add_argument("--cold-start-runs", type=int, default=7, help="fresh processes per import (median)")
    parser.add_argument("--quick", action="store_true",
                        help=f"sizes {QUICK['sizes']}, history {QUICK['history']:,}, {QUICK['submits']} submits")
    parser.add_argument("--json", metavar="PATH", help="also write every figure to this file")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else DEFAULTS
    for name, value in preset.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    try:
        args.sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
        args.mass_sizes = [int(s) for s in str(args.mass_sizes).split(",") if s.strip() and int(s) > 0]
    except ValueError:
        parser.error("--sizes and --mass-sizes take whole numbers separated by commas, e.g. 100,1000,5000")
    if str(args.fanout) in ("0", ""):
        args.fanout = None
    else:
        try:
            namespaces, runs = (int(n) for n in str(args.fanout).lower().split("x"))
        except ValueError:
            parser.error("--fanout takes NAMESPACESxRUNS, e.g. 10x1000")
        args.fanout = (namespaces, runs)
    args.only = set(SECTIONS if not args.only else (s.strip() for s in args.only.split(",") if s.strip()))
    if args.only - set(SECTIONS):
        parser.error(f"--only takes sections among {', '.join(SECTIONS)}")
    if args.race < 0 or args.outbox < 0:
        parser.error("--race and --outbox take a number of runs (0 skips)")
    for name in ("history", "history_active", "submits", "repeats", "credential_ops", "cold_start_runs",
                 "race_pollers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not args.sizes or min(args.sizes) < 1:
        parser.error("--sizes needs at least one size of 1 or more")
    return args


def function_timeout_seconds(host_json: Path = REPO_ROOT / "host.json") -> float:
    """``functionTimeout`` from host.json ("hh:mm:ss"); Flex Consumption's default when absent."""
    text = json.loads(host_json.read_text()).get("functionTimeout") or "00:30:00"
    hours, minutes, seconds = (float(p) for p in text.split(":"))
    return hours * 3600 + minutes * 60 + seconds


def azurite_version() -> str:
    package = REPO_ROOT / "tools" / "azurite" / "node_modules" / "azurite" / "package.json"
    try:
        return str(json.loads(package.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "(version unknown)"


def progress_printer(started: float) -> Callable[[str], None]:
    """Progress lines on stderr, stamped with the seconds since ``started``."""

    def progress(message: str) -> None:
        load = os.getloadavg()[0]
        print(f"[bench {time.perf_counter() - started:6.1f} s, load {load:.1f}] {message}", file=sys.stderr,
              flush=True)

    return progress


def main(argv: list[str] | None = None) -> int:
    """Measure the chosen sections in one world, print figures and targets, optionally save JSON.

    Long on purpose: one ``if`` per section, in the order they run, all sharing one started world
    and one load-average record; each section's work lives in its own module.
    """
    args = parse_args(argv)
    from bench.cold_start import cold_start_figures
    from bench.credentials import credential_figures
    from bench.fanout import fanout_figures
    from bench.mass import mass_change_figures
    from bench.outbox import outbox_figures
    from bench.racing import race_figures
    from bench.submitting import submit_figures
    from bench.sweeping import history_figures, sweep_figures
    from bench.world import started_world

    started = time.perf_counter()
    progress = progress_printer(started)
    command = "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:])
    figures: dict = {
        "command": command.strip(),
        "latencyMs": args.latency * 1000,
        "azurite": f"{azurite_version()} in memory",
        "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()}",
        "functionTimeoutSeconds": function_timeout_seconds(),
    }

    # The 1-minute load average before each section: timings on a machine others use are only
    # comparable when it stays near the benchmark's own load (about 2: this process and Azurite).
    load: dict[str, float] = {}
    figures["loadAverageBefore"] = load

    def begin(section: str, message: str) -> None:
        load[section] = round(os.getloadavg()[0], 2)
        progress(message)

    if "cold" in args.only:
        begin("cold start", f"cold start: {args.cold_start_runs} fresh processes per import")
        figures["coldStart"] = cold_start_figures(args.cold_start_runs)

    with tempfile.TemporaryDirectory(prefix="aksjobs-bench-") as workdir, \
            started_world(args.latency, Path(workdir)) as world:
        if "sweep" in args.only:
            figures["sweep"] = []
            for runs in args.sizes:
                begin(f"sweep N={runs}", f"sweep: seeding {runs:,} active runs, then our sweeps and the baseline's")
                baseline_repeats = args.repeats if runs <= BASELINE_REPEATS_ABOVE else 1
                figures["sweep"].append(sweep_figures(world, runs, repeats=args.repeats,
                                                      baseline_repeats=baseline_repeats))
        if "mass" in args.only and args.mass_sizes:
            figures["massChange"] = []
            for runs in args.mass_sizes:
                begin(f"mass change N={runs}", f"mass change: {runs:,} runs changing at once, batched, then per run")
                figures["massChange"].append(mass_change_figures(world, runs))
        if "fanout" in args.only and args.fanout:
            namespaces, runs = args.fanout
            begin("fan-out", f"fan-out: {namespaces} namespaces x {runs:,} active runs through the sweep queue")
            figures["fanout"] = fanout_figures(world, namespaces, runs)
        if "race" in args.only and args.race:
            begin("race", f"race: {args.race:,} finished runs polled by {args.race_pollers} threads while a sweep "
                          "runs")
            figures["race"] = race_figures(world, args.race, pollers=args.race_pollers)
        if "outbox" in args.only and args.outbox:
            begin("outbox", f"outbox: a mass change of {args.outbox:,} runs, then sweeps until every event is "
                            "published (the mass change takes minutes at 5,000: Azurite scans the partition)")
            figures["outbox"] = outbox_figures(world, args.outbox)
        if "history" in args.only:
            begin("history", f"history: {args.history:,} finished runs beside {args.history_active:,} active "
                             "ones (seeding takes a while: Azurite scans the whole partition on every insert)")
            figures["history"] = history_figures(world, args.history_active, args.history)
        if "submit" in args.only:
            begin("submit", f"submit: {args.submits} submits")
            figures["submit"] = submit_figures(world, args.submits)
        if "credentials" in args.only:
            begin("credentials", f"credentials: {args.credential_ops:,} operations, twice")
            figures["credentials"] = credential_figures(world, args.credential_ops)

    figures["elapsedSeconds"] = round(time.perf_counter() - started, 1)
    targets = judge(figures, figures["functionTimeoutSeconds"])
    figures["targets"] = [t.as_dict() for t in targets]
    sys.stdout.write(render(figures, targets))
    sys.stdout.write(f"\nwhole run: {figures['elapsedSeconds']:.0f} s\n")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str) + "\n")
        progress(f"figures written to {args.json}")
    missed = [t for t in targets if t.passed is False]
    return 1 if (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
