"""The locks (requirements.txt, requirements-dev.txt) are complete and up to date with their inputs.

``make lock`` compiles requirements.in and requirements-dev.in with pip-tools; the remote build,
``make setup`` and CI install the compiled files. These tests need no network: they read the
``.in`` files, the locks, and the metadata of the packages installed in this environment (which
``make setup`` installed from the locks, as a test here checks), and fail when:

- a direct dependency is missing from its lock, or pinned to a version its ``.in`` excludes (the
  ``.in`` was edited and ``make lock`` not run);
- a pinned package needs a package the lock does not pin, or a version of it the pin excludes
  (the remote build would resolve it afresh, and run what the tests did not);
- the lock pins a package nothing needs any more (a dependency was removed from the ``.in``);
- a lock points pip at an index or a local folder, which the remote build must not use.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
RUNTIME = (REPO / "requirements.in", REPO / "requirements.txt")
DEV = (REPO / "requirements-dev.in", REPO / "requirements-dev.txt")


@dataclass(frozen=True)
class Lock:
    pins: dict[str, Version]  # canonical name -> pinned version
    option_lines: list[str]


def read_lock(path: Path) -> Lock:
    pins: dict[str, Version] = {}
    options = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-"):
            options.append(line)
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==" and not req.extras, f"{path.name}: not a pin: {raw}"
        pins[canonicalize_name(req.name)] = Version(specs[0].version)
    return Lock(pins, options)


def read_inputs(path: Path) -> tuple[list[Requirement], list[Path]]:
    """The requirements an .in file lists, and the files it names as constraints (``-c``)."""
    reqs, constraints = [], []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-c "):
            constraints.append(path.parent / line[3:].strip())
        elif line:
            assert not line.startswith("-"), f"{path.name}: unexpected option {line}"
            reqs.append(Requirement(line))
    return reqs, constraints


def dependencies(name: str, extras: frozenset[str]) -> list[Requirement]:
    """What the installed distribution `name` needs here, with the given extras requested."""
    needed = []
    for text in metadata.requires(name) or []:
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
            needed.append(req)
    return needed


def walk(roots: list[Requirement]) -> dict[str, list[Requirement]]:
    """Every distribution the roots need, transitively, each with the requirements placed on it."""
    placed: dict[str, list[Requirement]] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = list(roots)
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        placed.setdefault(name, []).append(req)
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            todo += dependencies(name, frozenset(req.extras))
        except metadata.PackageNotFoundError:
            pass  # reported by test_the_environment_has_exactly_the_locked_versions
    return placed


def lock_problems(source: Path, lock_file: Path) -> dict[str, list[str]]:
    """What makes `lock_file` not the compiled form of `source`; empty lists when it is."""
    pins = read_lock(lock_file).pins
    reqs, _ = read_inputs(source)
    needed = walk(reqs)
    return {
        # a direct dependency the lock lacks, or pins to a version the input excludes
        "missing": [str(r) for r in reqs if canonicalize_name(r.name) not in pins],
        "excluded": [f"{r} but {pins[canonicalize_name(r.name)]}" for r in reqs if canonicalize_name(r.name) in pins
                     and not r.specifier.contains(pins[canonicalize_name(r.name)], prereleases=True)],
        # a package some pinned package needs that the lock does not pin
        "unpinned": sorted(set(needed) - set(pins)),
        # a pin nothing needs any more
        "stale": sorted(set(pins) - set(needed)),
        # a pin that a requirement on it (from the input or another package) excludes
        "conflicts": sorted(f"{name}=={pins[name]} vs {r}" for name, placed in needed.items() if name in pins
                            for r in placed if not r.specifier.contains(pins[name], prereleases=True)),
    }


NO_PROBLEMS = {"missing": [], "excluded": [], "unpinned": [], "stale": [], "conflicts": []}


@pytest.mark.parametrize(("source", "lock_file"), [pytest.param(*RUNTIME, id="runtime"), pytest.param(*DEV, id="dev")])
def test_the_lock_is_complete_and_up_to_date_with_its_input(source, lock_file):
    assert read_inputs(source)[0], f"{source.name} lists nothing"
    assert lock_problems(source, lock_file) == NO_PROBLEMS, "run `make lock` (and `make setup`)"


def test_the_lock_check_reports_a_lock_that_lags_its_input(tmp_path):
    source, lock_file = tmp_path / "requirements.in", tmp_path / "requirements.txt"
    lock_file.write_text("azure-core==1.0\nPyYAML==6.0.4\nkubernetes==37.0.2\n")
    source.write_text("azure-core>=99\nPyYAML\nazure-functions\n")
    problems = lock_problems(source, lock_file)
    assert problems["missing"] == ["azure-functions"]  # added to the input, not compiled
    assert problems["excluded"] == ["azure-core>=99 but 1.0"]  # raised in the input, not compiled
    assert "kubernetes" in problems["stale"]  # dropped from the input, still pinned
    assert {"requests", "typing-extensions", "werkzeug"} <= set(problems["unpinned"])  # needed, not pinned


def test_the_lock_check_reports_a_pin_that_a_pinned_package_excludes(tmp_path):
    source, lock_file = tmp_path / "requirements.in", tmp_path / "requirements.txt"
    source.write_text("PyJWT[crypto]\n")
    lock_file.write_text("pyjwt==2.15.1\ncryptography==1.0\ncffi==2.1.1\npycparser==3.12\n")
    problems = lock_problems(source, lock_file)
    assert any(c.startswith("cryptography==1.0 vs cryptography>=") for c in problems["conflicts"])
    # the extra is followed: without [crypto], cryptography would be stale
    assert problems["stale"] == [] and problems["unpinned"] == []


def test_the_dev_lock_uses_the_runtime_locks_version_of_every_package_both_pin():
    runtime, dev = read_lock(RUNTIME[1]).pins, read_lock(DEV[1]).pins
    _, constraints = read_inputs(DEV[0])
    assert constraints == [RUNTIME[1]]
    differ = {name: (str(runtime[name]), str(dev[name])) for name in runtime.keys() & dev.keys()
              if runtime[name] != dev[name]}
    assert runtime.keys() & dev.keys() and differ == {}


def test_the_environment_has_exactly_the_locked_versions():
    """`make setup` installs the locks; the checks above read the metadata of what is installed."""
    locked = {**read_lock(RUNTIME[1]).pins, **read_lock(DEV[1]).pins}
    wrong = {}
    for name, version in locked.items():
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            wrong[name] = (str(version), str(installed))
    assert wrong == {}, "the environment differs from the locks: run `make setup`"


@pytest.mark.parametrize("lock_file", [RUNTIME[1], DEV[1]], ids=["runtime", "dev"])
def test_the_lock_names_no_index_or_local_folder(lock_file):
    """The remote build must use its own index; this machine's mirrors and wheel folders are not there."""
    assert read_lock(lock_file).option_lines == []
    assert "file://" not in lock_file.read_text()
