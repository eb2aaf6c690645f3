"""Subscribe the app's ``submit_from_event`` function to the submit topic (azd ``postdeploy`` hook).

The subscription can only be made once the code is published: its webhook URL carries the
Functions host's Event Grid system key (``eventgrid_extension``), which the host creates when it
first loads the Event Grid extension. So ``azure.yaml`` runs this after every deploy, with azd's
environment (the outputs of ``infra/main.bicep``) in its environment variables:

    AZURE_RESOURCE_GROUP, AZURE_FUNCTION_APP_NAME, AZURE_FUNCTION_APP_URL,
    SUBMIT_TOPIC_ID, SUBMIT_DEAD_LETTER_CONTAINER_ID

It runs two Azure CLI commands (docs/chaining.md shows the same by hand):

1. ``az functionapp keys list`` for the system key, asked again a few times while the freshly
   published host has not created it yet;
2. ``az eventgrid event-subscription create``: a webhook to the host's Event Grid endpoint,
   CloudEvents 1.0 delivery, an explicit retry policy, dead-lettering into the storage container
   with the topic's own identity. ``create`` is a create-or-update (PUT), so running this again
   changes nothing, or picks up a rotated key.

The key is never printed: the commands are echoed with it masked.

Deliberately not done: creating the topic or the container (``infra/main.bicep`` does), or any
publisher's role on the topic.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import quote

FUNCTION_NAME = "submit_from_event"
SUBSCRIPTION_NAME = "submit-runs"
SYSTEM_KEY_NAME = "eventgrid_extension"
MAX_DELIVERY_ATTEMPTS = 30  # Event Grid's maximum; with the TTL below: retry with backoff for a day
EVENT_TTL_MINUTES = 1440
REQUIRED = ("AZURE_RESOURCE_GROUP", "AZURE_FUNCTION_APP_NAME", "AZURE_FUNCTION_APP_URL", "SUBMIT_TOPIC_ID",
            "SUBMIT_DEAD_LETTER_CONTAINER_ID")

Runner = Callable[[Sequence[str]], str]


class HookError(Exception):
    """Something the person running azd must fix; the message says what."""


def az(args: Sequence[str]) -> str:
    """Runs one Azure CLI command and returns its standard output."""
    done = subprocess.run(["az", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise HookError(f"`az {' '.join(args[:3])}` failed: {done.stderr.strip()}")
    return done.stdout


def system_key_command(env: Mapping[str, str]) -> list[str]:
    return ["functionapp", "keys", "list", "--resource-group", env["AZURE_RESOURCE_GROUP"],
            "--name", env["AZURE_FUNCTION_APP_NAME"], "--query", f"systemKeys.{SYSTEM_KEY_NAME}", "--output", "tsv"]


def webhook_url(app_url: str, key: str) -> str:
    """The Functions host's Event Grid extension endpoint for one function (Microsoft's "How to work
    with Event Grid triggers and bindings in Azure Functions")."""
    return (f"{app_url.rstrip('/')}/runtime/webhooks/eventgrid?functionName={FUNCTION_NAME}"
            f"&code={quote(key, safe='')}")


def subscription_command(env: Mapping[str, str], key: str) -> list[str]:
    return ["eventgrid", "event-subscription", "create",
            "--name", SUBSCRIPTION_NAME,
            "--source-resource-id", env["SUBMIT_TOPIC_ID"],
            "--endpoint-type", "webhook",
            "--endpoint", webhook_url(env["AZURE_FUNCTION_APP_URL"], key),
            "--event-delivery-schema", "cloudeventschemav1_0",
            "--max-delivery-attempts", str(MAX_DELIVERY_ATTEMPTS),
            "--event-ttl", str(EVENT_TTL_MINUTES),
            "--deadletter-identity", "systemassigned",
            "--deadletter-identity-endpoint", env["SUBMIT_DEAD_LETTER_CONTAINER_ID"],
            "--output", "none"]


def subscribe(env: Mapping[str, str], run: Runner = az, *, attempts: int = 10, delay: float = 15.0,
              sleep: Callable[[float], None] = time.sleep, say: Callable[[str], None] = print) -> None:
    missing = [name for name in REQUIRED if not env.get(name)]
    if missing:
        raise HookError(f"missing environment variables {', '.join(missing)} (outputs of infra/main.bicep; "
                        "run `azd provision` first, or export them as docs/chaining.md shows)")
    key = ""
    for attempt in range(1, attempts + 1):
        say("az " + shlex.join(system_key_command(env)))
        key = run(system_key_command(env)).strip()
        if key:
            break
        if attempt < attempts:
            say(f"the host has not created its {SYSTEM_KEY_NAME} key yet; asking again in {delay:g}s")
            sleep(delay)
    if not key:
        raise HookError(f"no {SYSTEM_KEY_NAME} system key after {attempts} tries: is {FUNCTION_NAME} deployed "
                        f"and the app started? Re-run `azd hooks run postdeploy` later")
    command = subscription_command(env, key)
    masked = quote(key, safe="")
    say("az " + shlex.join(command).replace(masked, "***"))
    try:
        run(command)
    except HookError as err:
        raise HookError(str(err).replace(masked, "***").replace(key, "***")) from None
    say(f"{FUNCTION_NAME} is subscribed to {env['SUBMIT_TOPIC_ID'].rsplit('/', 1)[-1]} as {SUBSCRIPTION_NAME}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=10, help="tries to read the system key (default 10)")
    parser.add_argument("--delay", type=float, default=15.0, help="seconds between tries (default 15)")
    args = parser.parse_args(argv)
    try:
        subscribe(os.environ, attempts=args.attempts, delay=args.delay)
    except HookError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
