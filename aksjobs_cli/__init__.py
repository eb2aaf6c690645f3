"""The operator CLI for AKS Jobs for Polysync: ``python -m aksjobs_cli [options] COMMAND``.

It lists source Jobs and runs, submits runs with ``-p NAME=value``, reruns a run from its stored
spec, cancels them, and watches a run with a live status line until it ends, its exit code
reflecting the outcome - all through the app's HTTP API with its function key, exactly as
Polysync or a script would call it.

Standard library only, so it runs on any machine with Python 3.11; it is a client of the
deployed app and deliberately shares no code with it (``shared`` is the app's package, deployed
to Azure; this one is not). See docs/cli.md.

Modules, one concern each: ``calling`` (HTTP), ``submitting`` (the submit and rerun bodies),
``rendering`` (documents as text), ``watching`` (the poll loop and live line), ``outcomes`` (exit
codes), ``commands`` (options and the commands themselves).
"""

from aksjobs_cli.commands import main
from aksjobs_cli.outcomes import ExitCode

__all__ = ["ExitCode", "main"]
