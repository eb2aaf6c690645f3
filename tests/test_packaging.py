"""What `func azure functionapp publish` would upload, computed the way Core Tools computes it.

Core Tools (``FileSystemHelpers.GetLocalFiles`` and ``Common/GitIgnoreParser.cs`` in
azure-functions-core-tools) walks the project, skips the folders ``.git`` and ``.vscode`` and the
files ``.funcignore``, ``.gitignore``, ``local.settings.json`` and ``project.lock.json`` by name at
any depth, and keeps a file when ``.funcignore`` accepts its path relative to the project root
(``/`` separators). Its ``.funcignore`` reader is a port of the npm package gitignore-parser, and
NOT git's rules:

- each pattern becomes a regex anchored at the *start* of the path and not at its end;
- ``**`` means one or more of any character, ``*`` one or more characters other than ``/``;
  ``?``, ``[`` and ``]`` are literal; a leading ``/`` is dropped;
- a ``!`` pattern that matches always wins, wherever it stands in the file.

So ``__pycache__`` only matches at the root and ``local.settings*.json`` does not match
``local.settings.json``. ``azd deploy`` reads the same file with git's rules (last match wins; a
pattern without ``/`` matches a name at any depth); both readings are modelled here, since
docs/deploy.md offers both tools.

Deliberately not done: building the zip, running the remote build, following directory symlinks.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from datetime import timedelta
from functools import cache
from importlib import metadata
from pathlib import Path, PurePosixPath

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from shared.settings import SETTINGS

REPO = Path(__file__).resolve().parents[1]
FUNCIGNORE = REPO / ".funcignore"
HOST_JSON = REPO / "host.json"

APP_ENTRY_FILES = {"function_app.py", "host.json", "requirements.txt"}
APP_PACKAGE = "shared"
NEVER_UPLOADED = ("tests/", "tools/", "bench/", "infra/", "docs/", ".ci/", ".venv/", ".git/", "local.settings")

# Core Tools' fixed exclusions, applied before .funcignore.
CORE_TOOLS_SKIPPED_FOLDERS = {".git", ".vscode"}
CORE_TOOLS_SKIPPED_FILES = {".funcignore", ".gitignore", "local.settings.json", "project.lock.json"}


# ------------------------------------------------------------------------------ the upload


def test_core_tools_uploads_the_whole_app():
    uploaded = set(core_tools_upload(REPO))
    app_modules = {p for p in project_files(REPO) if p.startswith(f"{APP_PACKAGE}/") and p.endswith(".py")
                   and "__pycache__" not in p}
    assert app_modules and app_modules <= uploaded
    assert APP_ENTRY_FILES <= uploaded


def test_core_tools_uploads_nothing_but_the_app():
    outside = {p for p in core_tools_upload(REPO) if p not in APP_ENTRY_FILES and not p.startswith(f"{APP_PACKAGE}/")}
    assert outside == set()


def test_core_tools_leaves_out_tests_tools_infra_docs_and_local_files():
    leaked = {p for p in core_tools_upload(REPO) if p.startswith(NEVER_UPLOADED)}
    assert leaked == set()
    assert any(p.startswith(NEVER_UPLOADED) for p in project_files(REPO))  # they do exist here


def test_azd_uploads_the_same_app_without_bytecode():
    core = {p for p in core_tools_upload(REPO) if "__pycache__/" not in p}
    assert set(azd_upload(REPO)) == core


def test_stray_local_files_in_the_project_root_never_ship(tmp_path):
    app = ["function_app.py", "host.json", "requirements.txt", "shared/__init__.py", "shared/kube/client.py"]
    strays = [".env", "kubeconfig", "dev.kubeconfig", "local.settings.json", "local.settings.sample.json",
              ".azure/prod/.env", "id_rsa", "notes.txt", "scripts/deploy.sh", "requirements-dev.txt",
              "Makefile", "pyproject.toml", "azure.yaml", ".venv/lib/site.py", ".python_packages/x.py",
              "tools/azurite/node_modules/a/index.js", "tests/test_x.py", "bench/run.py", "infra/main.bicep",
              "docs/deploy.md", ".ci/run", ".pytest_cache/v/x", "shared/__pycache__/client.cpython-311.pyc"]
    for rel in [*app, *strays, ".funcignore"]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(FUNCIGNORE.read_text() if rel == ".funcignore" else "x")
    bytecode = {"shared/__pycache__/client.cpython-311.pyc"}  # harmless: the remote build recompiles
    assert set(core_tools_upload(tmp_path)) - bytecode == set(app)
    assert set(azd_upload(tmp_path)) == set(app)


def test_every_import_in_the_upload_is_uploaded_or_installed_by_requirements():
    uploaded = core_tools_upload(REPO)
    local = {PurePosixPath(p).parts[0].removesuffix(".py") for p in uploaded if p.endswith(".py")}
    installed = installed_top_level_modules(requirement_closure(REPO / "requirements.txt"))
    missing: dict[str, set[str]] = {}
    for rel in (p for p in uploaded if p.endswith(".py")):
        for module in top_level_imports((REPO / rel).read_text()):
            if module not in local and module not in sys.stdlib_module_names and module not in installed:
                missing.setdefault(module, set()).add(rel)
    assert missing == {}


def test_requirements_are_pinned_so_the_remote_build_is_reproducible():
    unpinned = [r for r in requirement_lines(REPO / "requirements.txt")
                if len(r.specifier) != 1 or next(iter(r.specifier)).operator != "=="]
    assert requirement_lines(REPO / "requirements.txt") and unpinned == []


# ------------------------------------------------------------------------------- host.json


def test_host_json_targets_functions_v4_with_the_v4_extension_bundle():
    host = json.loads(HOST_JSON.read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}


def test_host_json_bounds_every_invocation_well_above_one_kubernetes_request():
    timeout = parse_timespan(json.loads(HOST_JSON.read_text())["functionTimeout"])
    request_timeout = float(next(s.default for s in SETTINGS if s.name == "KUBE_REQUEST_TIMEOUT_SECONDS"))
    assert timedelta(seconds=10 * request_timeout) <= timeout <= timedelta(minutes=10)


def test_host_json_sampling_never_drops_requests():
    sampling = json.loads(HOST_JSON.read_text())["logging"]["applicationInsights"]["samplingSettings"]
    assert sampling["isEnabled"] is True
    assert "Request" in sampling["excludedTypes"].split(";")


def test_host_json_serves_http_routes_under_api():
    assert json.loads(HOST_JSON.read_text())["extensions"]["http"]["routePrefix"] == "api"


# ======================================================================= how the tools decide


def project_files(root: Path) -> list[str]:
    """Every file under root except Core Tools' fixed exclusions, as /-separated relative paths."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d.lower() not in CORE_TOOLS_SKIPPED_FOLDERS]
        base = Path(folder).relative_to(root)
        found += [(base / f).as_posix() for f in files if f.lower() not in CORE_TOOLS_SKIPPED_FILES]
    return sorted(found)


@cache
def _uploads(root: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    text = (root / ".funcignore").read_text()
    files = project_files(root)
    core, git = core_tools_accepts(text), git_accepts(text)
    return tuple(p for p in files if core(p)), tuple(p for p in files if git(p))


def core_tools_upload(root: Path) -> tuple[str, ...]:
    return _uploads(root)[0]


def azd_upload(root: Path) -> tuple[str, ...]:
    return _uploads(root)[1]


def core_tools_accepts(funcignore: str) -> Callable[[str], bool]:
    positive, negative = [], []
    for line in funcignore.split("\n"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        line = line[1:] if negated else line
        line = line[1:] if line.startswith("/") else line
        (negative if negated else positive).append(_core_tools_regex(line))

    def compiled(patterns: list[str]) -> re.Pattern[str] | None:
        return re.compile("^((" + ")|(".join(patterns) + "))") if patterns else None

    deny, allow = compiled(positive), compiled(negative)
    return lambda path: bool(allow and allow.match(path)) or not (deny and deny.match(path))


def _core_tools_regex(pattern: str) -> str:
    escaped = re.sub(r"[-\[\]/{}()+?.\\^$|]", lambda m: "\\" + m.group(0), pattern)
    return escaped.replace("**", "(.+)").replace("*", "([^/]+)")


def git_accepts(funcignore: str) -> Callable[[str], bool]:
    rules: list[tuple[bool, bool, bool, re.Pattern[str]]] = []
    for line in funcignore.splitlines():
        line = line.rstrip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        line = line[1:] if negated else line
        folder_only = line.endswith("/")
        line = line.rstrip("/")
        anchored = "/" in line
        rules.append((negated, folder_only, anchored, re.compile(_git_glob(line.lstrip("/")))))

    def decides_ignored(path: str, is_folder: bool) -> bool:
        state = False  # the last pattern that matches the path itself decides
        for negated, folder_only, anchored, regex in rules:
            if folder_only and not is_folder:
                continue
            if regex.fullmatch(path if anchored else path.rsplit("/", 1)[-1]):
                state = not negated
        return state

    def ignored(path: str) -> bool:
        # A file under an ignored folder stays ignored whatever comes later: git never looks inside.
        parts = path.split("/")
        return any(decides_ignored("/".join(parts[:depth]), depth < len(parts)) for depth in range(1, len(parts) + 1))

    return lambda path: not ignored(path)


def _git_glob(pattern: str) -> str:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return out


# ------------------------------------------------------------------------ what the app imports


def top_level_imports(source: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def requirement_lines(path: Path) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line and not line.startswith("-")]


def requirement_closure(path: Path) -> set[str]:
    """Distributions requirements.txt installs: its own and, transitively, their dependencies."""
    todo = [r for r in requirement_lines(path) if r.marker is None or r.marker.evaluate()]
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        for dep in metadata.requires(req.name) or []:
            dep_req = Requirement(dep)
            if dep_req.marker is None or dep_req.marker.evaluate({"extra": ""}):
                todo.append(dep_req)
    return seen


def installed_top_level_modules(distributions: Iterable[str]) -> set[str]:
    wanted = set(distributions)
    return {module for module, dists in metadata.packages_distributions().items()
            if any(canonicalize_name(d) in wanted for d in dists)}


def parse_timespan(text: str) -> timedelta:
    hours, minutes, seconds = (int(part) for part in text.split(":"))
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def test_importing_function_app_leaves_sdks_use_cases_and_jobspec_for_the_first_request():
    # Every cold start imports function_app.py before it can answer: what it loads is paid on each.
    probe = ("import sys, function_app; print(sorted(m for m in sys.modules if m.startswith(("
             "'kubernetes', 'azure.mgmt', 'azure.data.tables', 'azure.identity', 'ijson', "
             "'shared.usecases.submitting', 'shared.usecases.sweeping', 'shared.kube.jobspec', "
             "'shared.kube.client', 'shared.runs.store'))))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
