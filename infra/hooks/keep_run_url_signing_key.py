"""Keep one run-URL signing key per azd environment (azd ``preprovision`` hook).

The app signs the status, run and cancel URLs it hands out with ``RUN_URL_SIGNING_KEY``; Polysync
and Logic Apps keep polling those URLs while a run goes on. ``infra/main.bicepparam`` reads the key
from the environment, and when it is empty ``infra/main.bicep`` falls back to a new GUID per
deployment, so every ``azd provision`` would break the URLs of the runs in flight. ``azure.yaml``
therefore runs this before each provision:

1. ``azd env get-value RUN_URL_SIGNING_KEY``: when the environment holds a key, nothing changes.
   For a key the environment does not hold, azd exits 1 with an error such as
   ``ERROR: key 'RUN_URL_SIGNING_KEY' not found in the environment values`` (older releases:
   ``key not found in environment values: 'RUN_URL_SIGNING_KEY'``); an empty value counts as unset,
   as it does for Bicep. Any other failure stops the provision with azd's message.
2. Otherwise ``azd env set RUN_URL_SIGNING_KEY <key>``: a key exported in the shell that runs azd
   (hooks see it in their environment) is kept, so the key this deployment signs with becomes the
   stored one; else a new one, 32 random bytes from ``secrets`` as 64 hex characters.

Running it again changes nothing. The key is never printed: commands are echoed with it masked, and
azd's messages too. Rotating is still done by hand (docs/deploy.md).
"""

from __future__ import annotations

import os
import secrets
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence

NAME = "RUN_URL_SIGNING_KEY"
KEY_BYTES = 32
# azd's error for a key the environment does not hold, in its current and older wording.
MISSING_KEY_HINTS = ("not found in the environment values", "not found in environment values")


class HookError(Exception):
    """Something the person running azd must fix; the message says what."""


Runner = Callable[[Sequence[str]], tuple[int, str, str]]


def azd(args: Sequence[str]) -> tuple[int, str, str]:
    """Runs one azd command; returns its exit code, standard output and standard error."""
    done = subprocess.run(["azd", *args], capture_output=True, text=True)
    return done.returncode, done.stdout, done.stderr


def current_key(run: Runner) -> str:
    """The environment's key, or "" when it holds none (or an empty one)."""
    code, out, err = run(["env", "get-value", NAME, "--no-prompt"])
    if code == 0:
        return out.strip()
    said = f"{out}\n{err}".strip()
    if any(hint in said.lower() for hint in MISSING_KEY_HINTS):
        return ""
    raise HookError(f"`azd env get-value {NAME}` failed (exit {code}): {said or 'no message'}")


def keep_key(run: Runner, env: Mapping[str, str], say: Callable[[str], None] = print) -> None:
    if current_key(run):
        say(f"{NAME} is set in this azd environment; the deployment keeps it")
        return
    exported = env.get(NAME, "").strip()
    key = exported or secrets.token_hex(KEY_BYTES)
    command = ["env", "set", NAME, key, "--no-prompt"]
    say("azd " + shlex.join(command).replace(key, "***"))
    code, out, err = run(command)
    if code != 0:
        said = f"{out}\n{err}".strip().replace(key, "***")
        raise HookError(f"`azd env set {NAME}` failed (exit {code}): {said or 'no message'}")
    source = "the one exported in this shell" if exported else "a new random key"
    say(f"{NAME} stored in this azd environment ({source}); later deployments sign with the same key")


def main() -> int:
    try:
        keep_key(azd, os.environ)
    except HookError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except FileNotFoundError:
        print("error: `azd` is not on PATH; this hook runs under azd (azure.yaml hooks.preprovision)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
