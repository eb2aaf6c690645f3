"""The azd postdeploy hook, run as azd runs it, with a stand-in `az` on PATH that records its argv.

No Azure: the stand-in answers `functionapp keys list` from a script of answers (an empty answer is
the host that has not created its key yet) and accepts `eventgrid event-subscription create`. The
tests check which commands the hook would run, with which arguments, and that it never shows the key.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.test_infra import deploy

REPO = Path(__file__).resolve().parents[1]
HOOK = REPO / "infra" / "hooks" / "subscribe_submit_events.py"
KEY = "k3y/With+Chars=="  # system keys are base64-ish: the URL must carry it encoded
ENV = {
    "AZURE_RESOURCE_GROUP": "rg-aksjobs",
    "AZURE_FUNCTION_APP_NAME": "func-aksjobs-x",
    "AZURE_FUNCTION_APP_URL": "https://func-aksjobs-x.azurewebsites.net",
    "SUBMIT_TOPIC_ID": "/subscriptions/s/resourceGroups/rg-aksjobs/providers/Microsoft.EventGrid/topics/evgt-submit",
    "SUBMIT_DEAD_LETTER_CONTAINER_ID": ("/subscriptions/s/resourceGroups/rg-aksjobs/providers/Microsoft.Storage/"
                                        "storageAccounts/st/blobServices/default/containers/submit-dead-letters"),
}

FAKE_AZ = f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["AZ_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[:3] == ["functionapp", "keys", "list"]:
    answers = json.load(open(os.environ["AZ_KEYS"]))
    answer = answers.pop(0) if answers else ""
    json.dump(answers, open(os.environ["AZ_KEYS"], "w"))
    print(answer)
elif os.environ.get("AZ_FAIL_CREATE") and args[:3] == ["eventgrid", "event-subscription", "create"]:
    print("(BadRequest) webhook validation failed for " + args[args.index("--endpoint") + 1], file=sys.stderr)
    sys.exit(1)
"""


@pytest.fixture
def fake_az(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "az").write_text(FAKE_AZ)
    (bin_dir / "az").chmod(0o755)

    def run(key_answers: list[str], env: dict | None = None, *args: str, **extra_env: str):
        log, keys = tmp_path / "az.log", tmp_path / "keys.json"
        log.write_text("")
        keys.write_text(json.dumps(key_answers))
        environ = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "AZ_LOG": str(log), "AZ_KEYS": str(keys),
                   **(ENV if env is None else env), **extra_env}
        done = subprocess.run([sys.executable, str(HOOK), "--delay", "0", *args], env=environ,
                              capture_output=True, text=True, timeout=60)
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        return done, calls

    return run


def _hook_module():
    spec = importlib.util.spec_from_file_location("subscribe_submit_events", HOOK)
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    return hook


def option(call: list[str], name: str) -> str:
    return call[call.index(name) + 1]


KEYS_LIST = ["functionapp", "keys", "list", "--resource-group", "rg-aksjobs", "--name", "func-aksjobs-x",
             "--query", "systemKeys.eventgrid_extension", "--output", "tsv"]


def test_hook_reads_the_event_grid_system_key_then_subscribes_the_function_with_cloudevents(fake_az):
    done, calls = fake_az([KEY])
    assert done.returncode == 0, done.stderr
    assert calls == [KEYS_LIST, calls[1]]
    create = calls[1]
    assert create[:3] == ["eventgrid", "event-subscription", "create"]
    assert option(create, "--name") == "submit-runs"
    assert option(create, "--source-resource-id") == ENV["SUBMIT_TOPIC_ID"]
    assert option(create, "--endpoint-type") == "webhook"
    assert option(create, "--endpoint") == (
        "https://func-aksjobs-x.azurewebsites.net/runtime/webhooks/eventgrid"
        "?functionName=submit_from_event&code=k3y%2FWith%2BChars%3D%3D")
    assert option(create, "--event-delivery-schema") == "cloudeventschemav1_0"
    assert (option(create, "--max-delivery-attempts"), option(create, "--event-ttl")) == ("30", "1440")
    assert option(create, "--deadletter-identity") == "systemassigned"
    assert option(create, "--deadletter-identity-endpoint") == ENV["SUBMIT_DEAD_LETTER_CONTAINER_ID"]


def test_hook_run_again_issues_the_same_create_or_update_and_deletes_nothing(fake_az):
    first = fake_az([KEY])[1]
    again = fake_az([KEY])[1]
    assert first == again
    assert not [c for c in first + again if "delete" in c]


def test_hook_waits_for_the_host_to_create_its_key(fake_az):
    done, calls = fake_az(["", "", KEY])
    assert done.returncode == 0, done.stderr
    assert calls[:3] == [KEYS_LIST] * 3 and calls[3][:3] == ["eventgrid", "event-subscription", "create"]


def test_hook_gives_up_without_a_key_and_subscribes_nothing(fake_az):
    done, calls = fake_az([], None, "--attempts", "3")
    assert done.returncode == 1
    assert calls == [KEYS_LIST] * 3
    assert "eventgrid_extension" in done.stderr and "azd hooks run postdeploy" in done.stderr


def test_hook_without_the_deployment_outputs_calls_nothing_and_names_what_is_missing(fake_az):
    env = {k: v for k, v in ENV.items() if k != "SUBMIT_TOPIC_ID"}
    done, calls = fake_az([KEY], env)
    assert done.returncode == 1 and calls == []
    assert "SUBMIT_TOPIC_ID" in done.stderr


def test_hook_never_shows_the_system_key(fake_az):
    ok, _ = fake_az([KEY])
    failed, _ = fake_az([KEY], None, AZ_FAIL_CREATE="1")
    assert failed.returncode == 1 and "webhook validation failed" in failed.stderr
    for done in (ok, failed):
        shown = done.stdout + done.stderr
        assert "***" in shown
        assert KEY not in shown and "k3y%2FWith%2BChars%3D%3D" not in shown


def test_azd_runs_the_hook_after_deploy_and_the_deployment_outputs_everything_it_reads():
    hooks = yaml.safe_load((REPO / "azure.yaml").read_text())["hooks"]["postdeploy"]
    for platform in ("posix", "windows"):
        assert hooks[platform]["run"].split()[1:] == ["infra/hooks/subscribe_submit_events.py"]
    outputs = deploy().outputs
    provided = set(outputs) | {"AZURE_RESOURCE_GROUP"}  # azd's own environment value
    hook = _hook_module()
    assert set(hook.REQUIRED) == set(ENV) and set(hook.REQUIRED) <= provided
    d = deploy()
    assert outputs["SUBMIT_TOPIC_ID"].endswith(f"/Microsoft.EventGrid/topics/{d.module_params('submitEvents')['name']}")
    container = d.module_params("storage")["deadLetterContainerName"]
    assert outputs["SUBMIT_DEAD_LETTER_CONTAINER_ID"].endswith(
        f"/storageAccounts/{outputs['AZURE_STORAGE_ACCOUNT_NAME']}/blobServices/default/containers/{container}")


def test_the_webhook_the_hook_subscribes_passes_event_grids_cloudevents_handshake_and_submits(app):
    """The URL the hook builds, served the way the Functions host serves it (the dev host): the
    OPTIONS handshake of a CloudEvents subscription, then a CloudEvent delivered to submit_from_event."""
    from urllib.parse import urlsplit

    from tests.fixtures.app import FUNCTION_KEY, source_job

    hook = _hook_module()
    url = urlsplit(hook.webhook_url("https://func-aksjobs-x.azurewebsites.net", FUNCTION_KEY))
    path = f"{url.path}?{url.query}"
    status, headers, _ = app.host.dispatch("OPTIONS", path, {"WebHook-Request-Origin": "eventgrid.azure.net"})
    assert status == 200 and headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
    wrong_key = path.replace(f"code={FUNCTION_KEY}", "code=wrong")
    assert app.host.dispatch("OPTIONS", wrong_key, {"WebHook-Request-Origin": "eventgrid.azure.net"})[0] == 401

    app.sim.put("jobs", "default", source_job("report"))
    event = {"specversion": "1.0", "id": "evt-7", "source": "/pipelines/nightly", "type": "Polysync.AksJob.SubmitRun",
             "datacontenttype": "application/json", "data": {"externalId": "report"}}
    status, _, _ = app.host.dispatch("POST", path, {"content-type": "application/cloudevents+json"},
                                     json.dumps(event).encode())
    assert status == 200
    runs = app.get("/api/runs").json["runs"]
    assert [r["externalId"] for r in runs] == ["report"]
