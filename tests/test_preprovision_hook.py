"""The azd preprovision hook that keeps one RUN_URL_SIGNING_KEY per environment, run as azd runs it,
with a stand-in `azd` on PATH that records its argv and keeps the environment's values in a file.

The stand-in answers `env get-value` as azd does (azd's cli/azd/cmd/env.go, envGetValueAction.Run):
the value and exit 0, or for a key the environment does not hold an error and exit 1; `env set`
stores the value. The tests check which commands the hook runs, what ends up stored, that the
stored key is what the deployment and the app then use, and that the key is never shown.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from shared.settings import load_settings
from tests.test_infra import bicepparam_values, deploy

REPO = Path(__file__).resolve().parents[1]
HOOK = REPO / "infra" / "hooks" / "keep_run_url_signing_key.py"
NAME = "RUN_URL_SIGNING_KEY"
GET = ["env", "get-value", NAME, "--no-prompt"]
# azd's error for a missing key: current wording, and the older one (seen on stdout in some releases).
MISSING = {
    "current": ("stderr", f"ERROR: key '{NAME}' not found in the environment values"),
    "older": ("stderr", f"ERROR: key not found in environment values: '{NAME}'"),
    "older-on-stdout": ("stdout", f"ERROR: key not found in environment values: '{NAME}'"),
}

FAKE_AZD = f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["AZD_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
values = json.load(open(os.environ["AZD_VALUES"]))
fail = os.environ.get("AZD_FAIL", "")
if args[:2] == ["env", "get-value"]:
    if fail == "get-value":
        print("ERROR: environment 'prod' does not exist. You can create it with \\"azd env new prod\\"",
              file=sys.stderr)
        sys.exit(1)
    if args[2] in values:
        print(values[args[2]])
        sys.exit(0)
    stream, message = json.loads(os.environ["AZD_MISSING"])
    print(message, file=sys.stdout if stream == "stdout" else sys.stderr)
    sys.exit(1)
if args[:2] == ["env", "set"]:
    if fail == "set":
        print("ERROR: saving environment: cannot write .azure/prod/.env (value " + args[3] + ")", file=sys.stderr)
        sys.exit(1)
    values[args[2]] = args[3]
    json.dump(values, open(os.environ["AZD_VALUES"], "w"))
    sys.exit(0)
print("unexpected azd command", args, file=sys.stderr)
sys.exit(2)
"""


class FakeAzd:
    """A stand-in `azd` on PATH, with one azd environment's values in a JSON file."""

    def __init__(self, tmp_path: Path):
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        (self.bin / "azd").write_text(FAKE_AZD)
        (self.bin / "azd").chmod(0o755)
        self.log, self.values_file = tmp_path / "azd.log", tmp_path / "values.json"
        self.values_file.write_text(json.dumps({"AZURE_ENV_NAME": "prod"}))

    @property
    def values(self) -> dict[str, str]:
        return json.loads(self.values_file.read_text())

    def run_hook(self, missing: str = "current", **extra_env: str):
        """Runs the hook once; returns its result and the azd commands it ran."""
        self.log.write_text("")
        environ = {"PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}", "AZD_LOG": str(self.log),
                   "AZD_VALUES": str(self.values_file), "AZD_MISSING": json.dumps(MISSING[missing]), **extra_env}
        done = subprocess.run([sys.executable, str(HOOK)], env=environ, capture_output=True, text=True, timeout=60)
        calls = [json.loads(line) for line in self.log.read_text().splitlines()]
        return done, calls


@pytest.fixture
def azd(tmp_path):
    return FakeAzd(tmp_path)


def stored_by(calls: list[list[str]]) -> list[list[str]]:
    return [c for c in calls if c[:2] == ["env", "set"]]


@pytest.mark.parametrize("missing", sorted(MISSING))
def test_without_a_key_the_hook_stores_one_new_32_byte_key_and_never_shows_it(azd, missing):
    done, calls = azd.run_hook(missing)
    assert done.returncode == 0, done.stderr
    key = azd.values[NAME]
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert calls == [GET, ["env", "set", NAME, key, "--no-prompt"]]
    shown = done.stdout + done.stderr
    assert key not in shown and "***" in shown


def test_a_key_the_environment_holds_is_kept_untouched_and_not_shown(azd):
    existing = "f" * 40 + ",old-key-still-verifying-0123456789"
    azd.values_file.write_text(json.dumps({NAME: existing}))
    done, calls = azd.run_hook()
    assert done.returncode == 0, done.stderr
    assert calls == [GET] and azd.values[NAME] == existing
    assert existing not in done.stdout + done.stderr and "f" * 40 not in done.stdout + done.stderr


def test_running_the_hook_again_keeps_the_first_key(azd):
    azd.run_hook()
    first = azd.values[NAME]
    again, calls = azd.run_hook()
    assert again.returncode == 0, again.stderr
    assert azd.values[NAME] == first and stored_by(calls) == []


def test_an_empty_value_counts_as_unset_as_it_does_for_bicep(azd):
    azd.values_file.write_text(json.dumps({NAME: ""}))
    done, calls = azd.run_hook()
    assert done.returncode == 0, done.stderr
    assert len(stored_by(calls)) == 1 and re.fullmatch(r"[0-9a-f]{64}", azd.values[NAME])


def test_a_key_exported_in_the_shell_running_azd_is_the_one_stored(azd):
    """That key is what this deployment signs with (main.bicepparam reads the environment), so it
    is the one later deployments must keep."""
    exported = "e" * 48
    done, calls = azd.run_hook(**{NAME: exported})
    assert done.returncode == 0, done.stderr
    assert azd.values[NAME] == exported and len(stored_by(calls)) == 1
    assert exported not in done.stdout + done.stderr


def test_every_deployment_after_the_hook_signs_with_the_stored_key_and_the_app_accepts_it(azd):
    """azd exports the environment's values to main.bicepparam: the key goes through the template
    into the app setting, the same on each provision."""
    deployed = []
    for _ in range(2):
        assert azd.run_hook()[0].returncode == 0
        environ = {"AKS_RESOURCE_GROUP": "rg-k8s", "AKS_CLUSTER_NAME": "aks-eu", **azd.values}
        settings = load_settings(deploy(**bicepparam_values(environ)).app_settings)
        deployed.append(settings.run_url_signing_keys)
    assert deployed[0] == deployed[1] == (azd.values[NAME],)


def test_an_azd_failure_other_than_a_missing_key_stops_the_provision_and_stores_nothing(azd):
    done, calls = azd.run_hook(AZD_FAIL="get-value")
    assert done.returncode == 1
    assert calls == [GET] and NAME not in azd.values
    assert f"`azd env get-value {NAME}` failed" in done.stderr and "environment 'prod' does not exist" in done.stderr


def test_a_failed_store_stops_the_provision_without_showing_the_key(azd):
    done, calls = azd.run_hook(AZD_FAIL="set")
    assert done.returncode == 1
    key = stored_by(calls)[0][3]
    assert f"`azd env set {NAME}` failed" in done.stderr and "cannot write .azure/prod/.env" in done.stderr
    assert key not in done.stdout + done.stderr and "(value ***)" in done.stderr


def test_without_azd_on_path_the_hook_says_so(tmp_path):
    done = subprocess.run([sys.executable, str(HOOK)], env={"PATH": str(tmp_path)}, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1 and "`azd` is not on PATH" in done.stderr


def test_azd_runs_the_hook_before_each_provision_on_posix_and_windows():
    hooks = yaml.safe_load((REPO / "azure.yaml").read_text())["hooks"]["preprovision"]
    assert hooks["posix"]["shell"] == "sh" and hooks["windows"]["shell"] == "pwsh"
    for platform in ("posix", "windows"):
        assert hooks[platform]["run"].split()[1:] == ["infra/hooks/keep_run_url_signing_key.py"]


def test_deploy_guide_says_azd_keeps_the_key_and_the_plain_path_must_pass_the_same_one():
    guide = (REPO / "docs" / "deploy.md").read_text()
    step_1 = guide.split("### 1. Say where things go", 1)[1].split("### 2.", 1)[0]
    assert f"export {NAME}=" in step_1 and "same" in step_1
    azd_section = guide.split("### Or: `azd up`", 1)[1].split("\n## ", 1)[0]
    assert "`preprovision`" in azd_section and "infra/hooks/keep_run_url_signing_key.py" in azd_section
