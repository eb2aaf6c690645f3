"""The command line: options, one function per command, and the exit code each one returns.

Every command is one or a few calls to the app's HTTP API (``calling``), rendered for a person
(``rendering``) or, with ``--json``, printed as the API sent it so scripts get the app's own
documents. Exit codes (documented in docs/cli.md): 0 Success, 1 Failed or Lost, 2 Cancelled -
these three from ``watch``, ``submit --watch`` and ``rerun --watch``; every other command exits 0 when the API
answered - 3 usage or API error, 4 watch timeout, 130 interrupted.

Output streams: results go to stdout; progress, errors and hints go to stderr whenever stdout is
reserved for JSON, so ``--json`` output always parses as exactly one document.

It deliberately does not read the app's settings or import the app's package: it is a client of
the HTTP API, and runs on a machine that has nothing but Python and the app's address and key.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from typing import TextIO

from aksjobs_cli.calling import Api, ApiError, path_segment
from aksjobs_cli.outcomes import STATUSES, ExitCode
from aksjobs_cli.rendering import (
    clean,
    job_details,
    jobs_table,
    run_details,
    runs_table,
    state_text,
)
from aksjobs_cli.submitting import UsageError, parse_parameter, parse_secret, rerun_body, submit_body
from aksjobs_cli.watching import watch_run

DEFAULT_URL = "http://127.0.0.1:7071"
URL_ENV = "AKSJOBS_URL"
KEY_ENV = "AKSJOBS_KEY"
DEFAULT_INTERVAL_SECONDS = 5.0
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200  # the API's own limit
PROG = "python -m aksjobs_cli"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is exit code 3 (argparse's own 2 means Cancelled here)."""

    def error(self, message: str):
        raise UsageError(f"{message}\n{self.format_usage().strip()}")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def _page_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= MAX_PAGE_SIZE:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_PAGE_SIZE}")
    return value


def _connection_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    # On each command too, so `runs --json` works like `--json runs`. There the defaults are
    # SUPPRESS: an option not repeated after the command keeps the value given before it.
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--url", default=default,
                        help=f"the app's base address (env {URL_ENV}; default {DEFAULT_URL})")
    parser.add_argument("--key", default=default,
                        help=f"the function key (env {KEY_ENV}; prefer the variable: command lines are "
                             "visible to other users)")
    parser.add_argument("--namespace", default=default,
                        help="the Kubernetes namespace (default: the app's AKS_NAMESPACE)")
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS if suppress else False,
                        help="print the API's JSON documents (for scripts)")


def _watch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--interval", type=_positive, default=DEFAULT_INTERVAL_SECONDS, metavar="SECONDS",
                        help=f"seconds between polls (default {DEFAULT_INTERVAL_SECONDS:g})")
    parser.add_argument("--timeout", type=_positive, default=None, metavar="SECONDS",
                        help="give up watching after this many seconds: exit code 4 (the run goes on)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Operate AKS Jobs for Polysync through the app's HTTP API.",
                     epilog="Exit codes: 0 Success, 1 Failed or Lost, 2 Cancelled (watch, submit/rerun --watch); "
                            "3 usage or API error; 4 watch timeout. See docs/cli.md.")
    _connection_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        _connection_options(sub, suppress=True)
        return sub

    command("jobs", "list the source Jobs: parameters and advice count")
    sub = command("job", "one source Job: its parameters and advice")
    sub.add_argument("external_id", metavar="EXTERNAL_ID")
    sub = command("runs", "list runs, newest first")
    sub.add_argument("--status", choices=STATUSES)
    sub.add_argument("--external-id", metavar="EXTERNAL_ID")
    sub.add_argument("--all", action="store_true", help="follow the continuation to the last page")
    sub.add_argument("--page-size", type=_page_size, default=DEFAULT_PAGE_SIZE, metavar="N",
                     help=f"runs per request (default {DEFAULT_PAGE_SIZE}, at most {MAX_PAGE_SIZE})")
    sub = command("submit", "start a run of a source Job")
    sub.add_argument("external_id", metavar="EXTERNAL_ID")
    sub.add_argument("-p", "--param", action="append", default=[], metavar="NAME=value",
                     help="a parameter (containers[0] env var); repeat for more")
    sub.add_argument("--secret", action="append", default=[], metavar="NAME=value|NAME",
                     help="a Secret parameter: sent through a Kubernetes Secret, never echoed; NAME alone "
                          "takes the value from the environment variable NAME")
    sub.add_argument("--image", help="fallback container image, used only if the source Job is gone")
    sub.add_argument("--command", dest="container_command", metavar="JSON|str",
                     help="fallback command: a JSON array of strings or a command line")
    sub.add_argument("--args", dest="container_args", metavar="JSON|str",
                     help="fallback args: a JSON array of strings or a command line")
    sub.add_argument("--idempotency-key", metavar="K",
                     help="the same key again returns the same run instead of starting another")
    sub.add_argument("--watch", action="store_true", help="then watch the run; exit code = its outcome")
    _watch_options(sub)
    sub = command("rerun", "start a new run from a run's stored spec (works after its source Job is gone)")
    sub.add_argument("run_id", metavar="RUN_ID")
    sub.add_argument("--secret", action="append", default=[], metavar="NAME=value|NAME",
                     help="the value of one of the run's Secret parameters (the app does not keep them, so a "
                          "rerun needs each again); NAME alone takes it from the environment variable NAME")
    sub.add_argument("--idempotency-key", metavar="K",
                     help="rerunning this run again with the same key returns the same rerun")
    sub.add_argument("--watch", action="store_true", help="then watch the rerun; exit code = its outcome")
    _watch_options(sub)
    sub = command("status", "one run: state, parameters, history, diagnostics")
    sub.add_argument("run_id", metavar="RUN_ID")
    sub = command("cancel", "cancel a run (delete its Job and pods)")
    sub.add_argument("run_id", metavar="RUN_ID")
    sub = command("watch", "follow a run until it ends; exit code = its outcome")
    sub.add_argument("run_id", metavar="RUN_ID")
    _watch_options(sub)
    command("health", "is the app up: settings, run table, cluster")
    return parser


# ----------------------------------------------------------------------------- commands


class _Out:
    """Where each kind of output goes for this invocation."""

    def __init__(self, as_json: bool):
        self.json = as_json
        self.stdout: TextIO = sys.stdout
        self.stderr: TextIO = sys.stderr
        self.progress: TextIO = sys.stderr if as_json else sys.stdout  # stdout holds the JSON

    def doc(self, doc) -> None:
        self.stdout.write(json.dumps(doc, indent=2) + "\n")

    def text(self, text: str) -> None:
        self.stdout.write(text + "\n")


def _jobs(api: Api, args, out: _Out) -> ExitCode:
    doc = api.get("jobs").doc or {}
    if out.json:
        out.doc(doc)
        return ExitCode.SUCCESS
    jobs = [j for j in doc.get("jobs") or [] if isinstance(j, dict)]
    if not jobs:
        out.text(f"No source Jobs in namespace {clean(doc.get('namespace'))}.")
    else:
        out.text(jobs_table(jobs))
    return ExitCode.SUCCESS


def _job(api: Api, args, out: _Out) -> ExitCode:
    doc = api.get(f"jobs/{path_segment(args.external_id)}").doc or {}
    if out.json:
        out.doc(doc)
    else:
        out.text(job_details(doc))
    return ExitCode.SUCCESS


def _runs(api: Api, args, out: _Out) -> ExitCode:
    query = {"status": args.status, "externalId": args.external_id, "pageSize": str(args.page_size)}
    runs: list = []
    namespace = None
    token: str | None = None
    seen_tokens: set[str] = set()
    while True:
        doc = api.get("runs", {**query, "continuation": token}).doc or {}
        namespace = doc.get("namespace", namespace)
        runs += doc.get("runs") or []
        token = doc.get("continuation") or None
        # A token seen before would loop forever; stop rather than trust the server blindly.
        if not args.all or token is None or token in seen_tokens:
            break
        seen_tokens.add(token)
    if out.json:
        out.doc({"namespace": namespace, "runs": runs, "continuation": None if args.all else token})
        return ExitCode.SUCCESS
    rows = [r for r in runs if isinstance(r, dict)]
    out.text(runs_table(rows) if rows else f"No runs in namespace {clean(namespace)}.")
    if token and not args.all:
        out.text("(more runs: add --all to list every page)")
    return ExitCode.SUCCESS


def _submit(api: Api, args, out: _Out) -> ExitCode:
    assignments = [parse_parameter(p) for p in args.param] + [parse_secret(s, os.environ) for s in args.secret]
    body = submit_body(assignments, image=args.image, command=args.container_command, args=args.container_args,
                       idempotency_key=args.idempotency_key)
    try:
        answer = api.post(f"jobs/{path_segment(args.external_id)}/runs", body)
    except ApiError as err:
        if err.transient and err.reached:  # the app may have created the run before the answer was lost
            err.message += (" - the run may exist: submit again with the same --idempotency-key, which "
                            "returns it instead of starting another" if args.idempotency_key else
                            " - the run may exist: check `runs` before submitting again (an "
                            "--idempotency-key makes a retry safe)")
        raise
    doc = answer.doc or {}
    run_id = doc.get("runId")
    if not isinstance(run_id, str):
        raise ApiError("the app accepted the submit but named no runId", status=answer.status)
    if args.watch:
        if not out.json:
            out.text(_submitted(doc))
        return _follow(api, run_id, args, out, first=doc)
    if out.json:
        out.doc(doc)
    else:
        out.text(_submitted(doc))
        out.text(f"follow it with: {PROG} watch {run_id}")
    return ExitCode.SUCCESS


def _submitted(doc: dict) -> str:
    verb = "submitted" if doc.get("created", True) else "already submitted with this idempotency key:"
    text = f"{verb} run {clean(doc.get('runId'))} of {clean(doc.get('externalId'))}: {state_text(doc)}"
    ignored = doc.get("ignoredParameters") or []
    if ignored:
        text += f"\nignored Output parameters (AKS Jobs have no outputs): {', '.join(clean(n) for n in ignored)}"
    return text


def _rerun(api: Api, args, out: _Out) -> ExitCode:
    body = rerun_body([parse_secret(s, os.environ) for s in args.secret], idempotency_key=args.idempotency_key)
    try:
        answer = api.post(f"runs/{path_segment(args.run_id)}/rerun", body)
    except ApiError as err:
        missing = err.details.get("missingSecretParameters")
        if err.status == 422 and isinstance(missing, list) and missing:
            err.message += " - give each with --secret NAME (the value from the environment variable NAME) " \
                           "or --secret NAME=value"
        elif err.transient and err.reached:
            err.message += (" - the rerun may exist: rerun again with the same --idempotency-key, which returns "
                            "it instead of starting another" if args.idempotency_key else
                            " - the rerun may exist: check `runs` before rerunning again")
        raise
    doc = answer.doc or {}
    run_id = doc.get("runId")
    if not isinstance(run_id, str):
        raise ApiError("the app accepted the rerun but named no runId", status=answer.status)
    if args.watch:
        if not out.json:
            out.text(_rerun_started(doc, args.run_id))
        return _follow(api, run_id, args, out, first=doc)
    if out.json:
        out.doc(doc)
    else:
        out.text(_rerun_started(doc, args.run_id))
        out.text(f"follow it with: {PROG} watch {run_id}")
    return ExitCode.SUCCESS


def _rerun_started(doc: dict, original: str) -> str:
    verb = "started" if doc.get("created", True) else "already started with this idempotency key:"
    return f"rerun of {clean(original)} {verb} run {clean(doc.get('runId'))}: {state_text(doc)}"


def _status(api: Api, args, out: _Out) -> ExitCode:
    doc = api.get(f"runs/{path_segment(args.run_id)}").doc or {}
    if out.json:
        out.doc(doc)
    else:
        out.text(run_details(doc, datetime.now(UTC)))
    return ExitCode.SUCCESS


def _cancel(api: Api, args, out: _Out) -> ExitCode:
    doc = api.post(f"runs/{path_segment(args.run_id)}/cancel").doc or {}
    if out.json:
        out.doc(doc)
    elif doc.get("cancelled"):
        out.text(f"cancel requested for run {clean(doc.get('runId'))}: {state_text(doc)}")
    else:
        out.text(clean(doc.get("detail")) if doc.get("detail")
                 else f"run {clean(doc.get('runId'))} is {state_text(doc)}; nothing was changed")
    return ExitCode.SUCCESS


def _watch(api: Api, args, out: _Out) -> ExitCode:
    return _follow(api, args.run_id, args, out)


def _follow(api: Api, run_id: str, args, out: _Out, first: dict | None = None) -> ExitCode:
    result = watch_run(api, run_id, interval=args.interval, timeout=args.timeout, progress=out.progress,
                       live=_is_tty(out.progress), first=first)
    if out.json and result.doc is not None:
        out.doc(result.doc)
    (out.stderr if out.json or result.exit_code == ExitCode.TIMEOUT else out.stdout).write(result.message + "\n")
    return result.exit_code


def _health(api: Api, args, out: _Out) -> ExitCode:
    doc = api.get("ready", accept=(503,)).doc or {}  # 503 carries the checks that failed
    if out.json:
        out.doc(doc)
    else:
        for name, check in (doc.get("checks") or {}).items():
            state = "ok" if isinstance(check, dict) and check.get("ok") else "FAILED"
            detail = check.get("message") if isinstance(check, dict) else None
            out.text(f"{clean(name)}: {state}" + (f" ({clean(detail)})" if detail else ""))
    return ExitCode.SUCCESS if doc.get("ok") else ExitCode.ERROR


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


COMMANDS = {
    "jobs": _jobs, "job": _job, "runs": _runs, "submit": _submit, "rerun": _rerun, "status": _status,
    "cancel": _cancel, "watch": _watch, "health": _health,
}


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (``python -m aksjobs_cli`` exits with it)."""
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as done:  # --help, --version: argparse printed and wants to exit
            return int(done.code or 0)
        out = _Out(args.json)
        try:
            api = Api(args.url or os.environ.get(URL_ENV) or DEFAULT_URL, args.key or os.environ.get(KEY_ENV),
                      namespace=args.namespace)
        except ValueError as err:
            raise UsageError(str(err)) from None
        return int(COMMANDS[args.command](api, args, out))
    except UsageError as err:
        sys.stderr.write(f"usage error: {err}\n")
        return int(ExitCode.ERROR)
    except ApiError as err:
        sys.stderr.write(f"error: {err.describe()}\n")
        return int(ExitCode.ERROR)
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted (the run, if any, goes on)\n")
        return int(ExitCode.INTERRUPTED)
