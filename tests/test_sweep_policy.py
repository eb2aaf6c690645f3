"""Policy numbers: the sweep's period read from SWEEP_SCHEDULE and what follows from it (Retry-After,
the outbox lease), and the two sweep settings, SUBMIT_GRACE_SECONDS and POD_CHECK_AFTER_SECONDS.

The period function is checked against croniter (a well-kept cron library, test-only here) over
many schedules; the settings through the app's entry points (HTTP, the sweep) on the simulator.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import composition
from shared.errors import SettingsError
from shared.kube.client import KubeClient
from shared.kube.credentials import connector_for
from shared.schedule import outbox_lease_seconds, period_seconds, retry_after_seconds
from shared.settings import load_settings
from shared.usecases import sweeping
from tests.fixtures.app import source_job

BASE = {"AKS_CREDENTIAL_MODE": "kubeconfig", "KUBECONFIG": "/dev/null", "RUNS_TABLE_CONNECTION_STRING": "x"}
PODS = "/api/v1/namespaces/default/pods"


def reconfigure(app, monkeypatch, **env: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    composition.reset()
    app.service.clock = app.sim.now


# ------------------------------------------------------------------------- the period


@pytest.mark.parametrize(("schedule", "period"), [
    ("*/30 * * * * *", 30),
    ("0 */5 * * * *", 300),
    ("0 0 * * * *", 3600),
    ("0 30 9 * * 1-5", 86400),  # weekdays: the period within a day that has sweeps
    ("15,45 * * * * *", 30),
    ("0 0,1 * * * *", 60),  # uneven: the shortest gap
    ("*/7 * * * * *", 4),  # 56 -> 0 of the next minute
    ("10-20/5 * * * * *", 5),
    ("30/15 * * * * *", 15),
])
def test_period_is_the_shortest_gap_between_two_sweeps(schedule, period):
    assert period_seconds(schedule) == period


def _croniter_period(schedule: str) -> int:
    """The shortest gap over two days of firings, as croniter lists them."""
    it = croniter(schedule, datetime(2026, 1, 5, tzinfo=UTC), second_at_beginning=True)
    times = [it.get_next(datetime) for _ in range(400)]
    horizon = times[0].timestamp() + 2 * 86400
    times = [t for t in times if t.timestamp() <= horizon]
    return int(min((b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)))


def _field(size: int):
    value = st.integers(0, size - 1)
    return st.one_of(
        st.just("*"), value.map(str),
        st.integers(1, size).map(lambda s: f"*/{s}"),
        # low < high: croniter reads a one-value range such as "0-0/1" as every value
        st.tuples(value, value, st.integers(1, 10)).filter(lambda t: t[0] != t[1])
        .map(lambda t: f"{min(t[:2])}-{max(t[:2])}/{t[2]}"),
        st.lists(value, min_size=1, max_size=4).map(lambda vs: ",".join(map(str, vs))),
    )


@settings(max_examples=150, deadline=None)
@given(second=_field(60), minute=_field(60), hour=_field(24))
def test_period_agrees_with_croniter(second, minute, hour):
    schedule = f"{second} {minute} {hour} * * *"
    expected = _croniter_period(schedule)
    if expected < 86400:  # croniter lists 400 firings: enough to see every gap shorter than a day
        assert period_seconds(schedule) == expected


@pytest.mark.parametrize("schedule", ["*/0 * * * * *", "61 * * * * *", "a * * * * *", "* * 24 * * *", "5-1 * * * * *"])
def test_a_schedule_that_cannot_be_read_is_a_settings_error_naming_it(schedule):
    with pytest.raises(SettingsError, match="SWEEP_SCHEDULE"):
        load_settings({**BASE, "SWEEP_SCHEDULE": schedule})


def test_lease_and_retry_after_follow_the_period():
    assert (outbox_lease_seconds(30), retry_after_seconds(30)) == (20, 10)
    assert (outbox_lease_seconds(300), retry_after_seconds(300)) == (200, 100)
    assert retry_after_seconds(86400) == 300  # polling a daily sweep every 8 hours helps no one
    assert (outbox_lease_seconds(1), retry_after_seconds(1)) == (1, 1)
    s = load_settings({**BASE, "SWEEP_SCHEDULE": "0 */5 * * * *"})
    assert (s.sweep_period_seconds, s.outbox_lease_seconds, s.retry_after_seconds) == (300, 200, 100)


@pytest.mark.parametrize("name", ["SUBMIT_GRACE_SECONDS", "POD_CHECK_AFTER_SECONDS"])
def test_the_sweep_settings_must_be_whole_non_negative_numbers(name):
    assert getattr(load_settings({**BASE, name: "7"}), name.lower()) == 7
    for bad in ("soon", "-1"):
        with pytest.raises(SettingsError, match=name):
            load_settings({**BASE, name: bad})


# ----------------------------------------------------------------- through the app


def test_retry_after_of_a_submit_follows_the_sweep_schedule(app, monkeypatch):
    app.sim.put("jobs", "default", source_job("etl", {}, scenario="run-forever"))
    assert app.submit("etl", {}).header("Retry-After") == "10"  # the harness sweeps every 30 s
    reconfigure(app, monkeypatch, SWEEP_SCHEDULE="0 */5 * * * *")
    answer = app.submit("etl", {})
    assert answer.status == 202
    assert answer.header("Retry-After") == "100"
    assert app.get(f"/api/runs/{answer.json['runId']}/poll").header("Retry-After") == "100"


def test_the_outbox_lease_follows_the_sweep_schedule(app, monkeypatch):
    reconfigure(app, monkeypatch, SWEEP_SCHEDULE="0 */5 * * * *")
    leases = []

    class Recording:
        """A publisher that sees the publish lease the sweep holds while it publishes."""

        def publish(self, events):
            now = app.sim.now()
            leases.append((app.service.store.outbox.lease_until("default") - now).total_seconds())

    app.service.__dict__["publisher"] = Recording()
    app.sim.put("jobs", "default", source_job("etl", {}, scenario="run-forever"))
    assert app.submit("etl", {}).status == 202
    sweeping.sweep(app.service)
    assert leases == [200.0]
    assert app.service.store.outbox.lease_until("default") <= app.sim.now()  # released once published


def _create_never_confirmed(app) -> str:
    app.sim.put("jobs", "default", source_job("etl", {}, scenario="run-forever"))
    app.sim.inject("POST", r"/apis/batch/v1/namespaces/default/jobs$", "status", times=None, status=500)
    settings = app.service.settings  # the app's own facade, its retry waits not slept
    app.service.__dict__["kube"] = KubeClient(connector_for(settings), timeout=settings.kube_request_timeout_seconds,
                                              sleep=lambda seconds: None)
    run_id = app.submit("etl", {}).json["error"]["runId"]
    app.sim.clear_faults()
    return run_id


def test_submit_grace_is_how_long_a_run_may_wait_for_its_job(app, monkeypatch):
    reconfigure(app, monkeypatch, SUBMIT_GRACE_SECONDS="100")
    run_id = _create_never_confirmed(app)

    app.advance(90)  # within the grace: left alone
    assert app.run(run_id)["phase"] == "Submitting"
    app.advance(20)  # past it: missing once
    assert app.run(run_id)["phase"] == "Submitting"
    app.advance(30)  # missing twice
    assert (app.run(run_id)["phase"], app.run(run_id)["reason"]) == ("Lost", "JobNotFound")


@pytest.mark.parametrize(("check_after", "listed_at_12s"), [("10", True), ("30", False)])
def test_pods_of_a_waiting_run_are_listed_from_pod_check_after_seconds(app, monkeypatch, check_after,
                                                                       listed_at_12s):
    reconfigure(app, monkeypatch, POD_CHECK_AFTER_SECONDS=check_after)
    app.sim.put("jobs", "default", source_job("bad-image", {}, scenario="pull-backoff"))
    assert app.submit("bad-image", {}).status == 202
    app.sim.advance(12)
    before = len([e for e in app.sim.request_log if e["method"] == "GET" and e["path"] == PODS])
    app.sweep()
    after = len([e for e in app.sim.request_log if e["method"] == "GET" and e["path"] == PODS])
    assert (after > before) is listed_at_12s
