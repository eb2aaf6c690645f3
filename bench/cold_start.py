"""Cold-start figures: importing ``function_app`` against importing ``azure.functions`` alone.

A Functions worker imports ``function_app.py`` before it can answer anything, on every cold
start. The worker has ``azure.functions`` anyway, so the fair yardstick is that import: the
ratio says how much our module adds. Each import runs in a fresh interpreter (nothing cached in
``sys.modules``), the two kinds alternate so drift hits both alike, and one unmeasured run of each
first puts the bytecode caches and the page cache in the same warm state for both. Also checked
from the same processes: which heavy SDKs (``kubernetes``, ``azure.mgmt``, ``azure.data.tables``)
or the LIST parser (``ijson``) the import loaded - the design promises none.

The comparison runs twice: in the environment as it is, and with every module's bytecode cached
(``PYTHONPYCACHEPREFIX`` pointing at a private temporary folder), which shows what compiling our
own sources costs. One more process runs ``python -X importtime -c "import function_app"``; its top-level entries
say where the time beyond ``azure.functions`` goes.

What it deliberately does not do: measure the Functions host's own start, which no code here
controls, or import anything into the benchmark's process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.measuring import median

REPO_ROOT = Path(__file__).resolve().parents[1]
HEAVY_PREFIXES = ("kubernetes", "azure.mgmt", "azure.data.tables", "ijson")
APP_MODULE = "function_app"
YARDSTICK = "azure.functions"

_PROBE = """
import json, sys, time
started = time.perf_counter()
import {module}
elapsed = time.perf_counter() - started
heavy = sorted(m for m in sys.modules if m.startswith({heavy!r}))
print(json.dumps({{"importMs": elapsed * 1000, "heavy": heavy}}))
"""


def cold_start_figures(runs: int) -> dict:
    as_is = _compare(runs, os.environ)
    # Again with every module's bytecode cached, in a private folder (never in the repo): the
    # difference is what compiling our own sources costs when nothing caches their bytecode.
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached = _compare(runs, {**env, "PYTHONPYCACHEPREFIX": cache})
    return {
        "runs": runs,
        # Off: our modules are compiled on every import (as on a read-only package mount without
        # .pyc files), while the SDKs use the caches pip wrote when it installed them.
        "bytecodeCache": "off (PYTHONDONTWRITEBYTECODE)" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "on",
        **as_is,
        "allCached": {"importMs": cached["importMs"], "ratio": cached["ratio"]},
        "topLevelImportsMs": top_level_imports(),
    }


def _compare(runs: int, env) -> dict:
    for module in (YARDSTICK, APP_MODULE):
        _probe(module, env)  # warm-up, not counted
    samples: dict[str, list[dict]] = {YARDSTICK: [], APP_MODULE: []}
    for _ in range(runs):
        for module in (YARDSTICK, APP_MODULE):
            samples[module].append(_probe(module, env))
    app_ms = median([s["importMs"] for s in samples[APP_MODULE]])
    yardstick_ms = median([s["importMs"] for s in samples[YARDSTICK]])
    return {
        "importMs": {APP_MODULE: round(app_ms, 1), YARDSTICK: round(yardstick_ms, 1)},
        "processMs": {m: round(median([s["processMs"] for s in samples[m]]), 1) for m in samples},
        "importMsRuns": {m: [round(s["importMs"], 1) for s in samples[m]] for m in samples},
        "ratio": round(app_ms / yardstick_ms, 2) if yardstick_ms else None,
        "heavyModulesLoaded": sorted({m for s in samples[APP_MODULE] for m in s["heavy"]}),
    }


def _probe(module: str, env) -> dict:
    code = _PROBE.format(module=module, heavy=HEAVY_PREFIXES)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    process_ms = (time.perf_counter() - started) * 1000
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "processMs": process_ms}


def top_level_imports(limit: int = 6) -> dict[str, float]:
    """Cumulative ms of the modules ``function_app`` imports directly (``-X importtime``)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {APP_MODULE}"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120, check=True)
    children: dict[str, float] = {}
    entries: dict[str, float] = {}
    for line in done.stderr.splitlines():
        # "import time:  self [us] | cumulative | imported package", a child printed before its
        # parent and indented two more spaces; top-level modules have one space.
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        _, cumulative, name = line.split("|")
        if not cumulative.strip().isdigit():
            continue
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        if depth == 1:
            children[name.strip()] = round(int(cumulative) / 1000, 1)
        elif depth == 0:
            if name.strip() == APP_MODULE:
                entries = {APP_MODULE: round(int(cumulative) / 1000, 1), **children}
            children = {}
    ranked = sorted(entries.items(), key=lambda item: -item[1])
    return dict(ranked[:limit])
