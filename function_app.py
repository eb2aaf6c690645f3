"""AKS Jobs for Polysync: the Functions app's triggers, and nothing else.

Each function delegates to its inbound adapter (``shared.adapters``: HTTP, Event Grid, timer).
Importing this module touches no network and loads neither the kubernetes, the azure-mgmt nor the
Table SDKs: they load at first use, so cold starts stay close to the Functions runtime's own.
"""

import os

import azure.functions as func

from shared.adapters import eventgrid, http
from shared.adapters.queue import run_sweep_shard
from shared.adapters.timer import run_sweep

# AUTH_MODE=key: the host checks function keys. AUTH_MODE=entra: the host would refuse a bearer
# token without a key, so every route is anonymous at the host and the app checks the token
# itself (shared/auth/access.py). Read once, at import, as the host indexes the functions then.
ENTRA = (os.environ.get("AUTH_MODE") or "key").strip().lower() == "entra"
app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS if ENTRA else func.AuthLevel.FUNCTION)


@app.route(route="jobs", methods=["GET"])
def list_jobs(req: func.HttpRequest) -> func.HttpResponse:
    """Discovery: the source Jobs in the namespace with their parameters and advice."""
    return http.handle(req, http.list_jobs)


@app.route(route="jobs/{externalId}", methods=["GET"])
def get_job(req: func.HttpRequest) -> func.HttpResponse:
    """One source Job's parameter schema."""
    return http.handle(req, http.get_job)


@app.route(route="jobs/{externalId}/runs", methods=["POST"])
def submit_run(req: func.HttpRequest) -> func.HttpResponse:
    """Submit a run: clone the source Job, overlay env, create it. 202 + Location."""
    return http.handle(req, http.submit_run)


@app.route(route="runs", methods=["GET"])
def list_runs(req: func.HttpRequest) -> func.HttpResponse:
    """Runs, newest first, filtered by status / externalId, paged."""
    return http.handle(req, http.list_runs)


@app.route(route="runs/{runId}", methods=["GET"])
def get_run(req: func.HttpRequest) -> func.HttpResponse:
    """The run document."""
    return http.handle(req, http.get_run)


@app.route(route="runs/{runId}/poll", methods=["GET"])
def poll_run(req: func.HttpRequest) -> func.HttpResponse:
    """Asynchronous pattern: 202 while running, 200 on Success, 409 on Failed/Cancelled."""
    return http.handle(req, http.poll_run)


@app.route(route="runs/{runId}/cancel", methods=["POST"])
def cancel_run(req: func.HttpRequest) -> func.HttpResponse:
    """Cancel: record the intent, delete the Job with propagationPolicy=Background."""
    return http.handle(req, http.cancel_run)


@app.route(route="runs/{runId}/rerun", methods=["POST"])
def rerun_run(req: func.HttpRequest) -> func.HttpResponse:
    """Rerun: a new run from the run's stored rendered Job (Secret values given again). 202 + Location."""
    return http.handle(req, http.rerun_run)


@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """Liveness, for anyone: a constant answer, no outbound call."""
    return http.handle(req, http.liveness, public=True)


@app.route(route="ready", methods=["GET"])
def ready(req: func.HttpRequest) -> func.HttpResponse:
    """Readiness (keyed): settings, run table and cluster reachability, cached for a few seconds."""
    return http.handle(req, http.readiness)


# The URLs handed out in 202 answers: anonymous at the host in both modes, each opened by its own
# per-run signature (?sig=) for its verb only, so pollers need no key or token.
@app.route(route="signed/runs/{runId}/poll", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def poll_run_signed(req: func.HttpRequest) -> func.HttpResponse:
    """The status URL (statusQueryGetUri, Location): poll without a key."""
    return http.handle_signed(req, "poll", http.poll_run)


@app.route(route="signed/runs/{runId}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def get_run_signed(req: func.HttpRequest) -> func.HttpResponse:
    """The run document (runUri) without a key."""
    return http.handle_signed(req, "run", http.get_run)


@app.route(route="signed/runs/{runId}/cancel", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def cancel_run_signed(req: func.HttpRequest) -> func.HttpResponse:
    """cancelPostUri / terminatePostUri: cancel this run without a key."""
    return http.handle_signed(req, "cancel", http.cancel_run)


@app.timer_trigger(schedule="%SWEEP_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=False)
def sweep(timer: func.TimerRequest) -> None:
    """With a sweep queue: enqueue one message per namespace (``sweep_shard`` sweeps each). Without:
    decode every active run's Job with one labelled LIST per namespace and write what changed."""
    run_sweep()


@app.queue_trigger(arg_name="message", queue_name="%SWEEP_QUEUE_NAME%", connection="SweepQueue")
def sweep_shard(message: func.QueueMessage) -> None:
    """One namespace of the sweep, from the queue the timer fans out to (identity-based connection
    SweepQueue: ``SweepQueue__queueServiceUri`` deployed, a connection string locally)."""
    run_sweep_shard(message.get_body())


@app.event_grid_trigger(arg_name="event")
def submit_from_event(event: func.EventGridEvent) -> None:
    """Submit a run from an Event Grid event (data: externalId, parameters, attributes, namespace);
    the event's id is the idempotency key, so a redelivered event never creates a second Job."""
    eventgrid.handle_submit_event(event)
