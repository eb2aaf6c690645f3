"""Discovery through the Kubernetes facade and the official client, against the simulator."""

from __future__ import annotations

import pytest

from shared.errors import NotFound
from shared.kube import discovery, jobspec
from shared.kube.client import KubeClient
from tests.fixtures.app import source_job
from tests.fixtures.kubesim import api_client_for


class _Connector:
    def __init__(self, sim):
        self.client = api_client_for(sim)

    def api_client(self):
        return self.client

    def refresh(self, stale=None):
        return self.client


@pytest.fixture
def kube(kubesim):
    return KubeClient(_Connector(kubesim), timeout=5)


def _seed(sim, sources: int, runs: int) -> None:
    for i in range(sources):
        sim.put("jobs", "default", source_job(f"source-{i:03d}", {"N": str(i)}))
    template = jobspec.clone_source_job(source_job("source-000", {"N": "0"}))
    for i in range(runs):
        run_id = jobspec.run_job_name("source-000", f"k{i}")
        sim.put("jobs", "default", jobspec.render_run_job(
            template, run_id=run_id, namespace="default", external_id="source-000", parameters=[],
            idempotency_key=None, ttl_seconds_after_finished=None).job)


def test_250_source_jobs_among_50_run_jobs_are_listed_once_each_in_3_requests(kubesim, kube):
    _seed(kubesim, 250, 50)
    kubesim.reset_counters()
    jobs = discovery.discover_source_jobs(kube, "default")
    assert [j["externalId"] for j in jobs] == [f"source-{i:03d}" for i in range(250)]
    lists = [r for r in kubesim.request_log if r["method"] == "GET"]
    assert len(lists) <= 3
    assert all(r["query"].get("limit") == "100" for r in lists)


def test_an_expired_continue_token_restarts_the_list_and_still_returns_each_job_once(kubesim, kube, monkeypatch):
    _seed(kubesim, 250, 50)
    real_page = kube._list_page
    pages = []

    def page_then_expire(*args):
        result = real_page(*args)
        pages.append(result)
        if len(pages) == 2:
            kubesim.expire_continue_tokens()  # the third page's token is now too old: 410 Expired
        return result

    monkeypatch.setattr(kube, "_list_page", page_then_expire)
    jobs = discovery.discover_source_jobs(kube, "default")
    names = [j["externalId"] for j in jobs]
    assert names == [f"source-{i:03d}" for i in range(250)]
    assert any(r["status"] == 410 for r in kubesim.request_log)


def test_parameters_keep_value_from_entries_marked_and_without_default(kubesim, kube):
    job = source_job("etl", {"BATCH": "500"})
    job["spec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}})
    kubesim.put("jobs", "default", job)
    (described,) = discovery.discover_source_jobs(kube, "default")
    params = {p["name"]: p for p in described["parameters"]}
    assert params["BATCH"] == {"name": "BATCH", "dataType": "String", "valueFrom": False, "default": "500"}
    assert params["DB_PASSWORD"]["valueFrom"] is True
    assert params["DB_PASSWORD"]["default"] is None
    assert params["DB_PASSWORD"]["valueSource"] == "secretKeyRef"


def test_advice_names_the_best_practices_a_source_job_misses(kubesim, kube):
    bare = source_job("bare", {"DAY": "x"})
    container = bare["spec"]["template"]["spec"]["containers"][0]
    del container["resources"]
    container["args"] = ["--date=2026-01-01"]
    del bare["spec"]["activeDeadlineSeconds"]
    kubesim.put("jobs", "default", bare)
    kubesim.put("jobs", "default", source_job("tidy", {"DAY": "x"}, args=None))
    by_id = {j["externalId"]: {a["code"] for a in j["advice"]} for j in discovery.discover_source_jobs(kube, "default")}
    assert by_id["bare"] == {"NoResourceRequestsOrLimits", "NoActiveDeadline", "ValuesInCommandLine"}
    assert by_id["tidy"] == set()


def test_a_run_job_is_not_a_source_job(kubesim, kube):
    _seed(kubesim, 1, 1)
    run_id = jobspec.run_job_name("source-000", "k0")
    with pytest.raises(NotFound) as caught:
        discovery.read_source_job(kube, "default", run_id)
    assert (caught.value.status, caught.value.field) == (404, "externalId")
    assert caught.value.message == f"{run_id!r} is a run Job created by this app, not a source Job"


def test_advice_names_a_foreign_managed_by_a_short_ttl_and_env_names_the_cluster_refuses(kubesim, kube):
    foreign = source_job("foreign", {"DAY": "x"}, managedBy="example.com/batch-operator", ttlSecondsAfterFinished=0)
    foreign["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "MY VAR", "value": "1"})
    kubesim.put("jobs", "default", foreign)
    (strict,) = discovery.discover_source_jobs(kube, "default")
    advice = {a["code"]: a["message"] for a in strict["advice"]}
    assert "example.com/batch-operator" in advice["ManagedByAnotherController"]
    assert "Runs drop it" in advice["ManagedByAnotherController"]
    assert "JOB_TTL_FLOOR_SECONDS" in advice["ShortTtlAfterFinished"]
    assert "'MY VAR'" in advice["EnvNamesNotAccepted"]
    assert {p["name"]: p.get("validName", True) for p in strict["parameters"]} == {"DAY": True, "MY VAR": False}
    # On a 1.32+ cluster the same name is valid, for discovery as for submit.
    (relaxed,) = discovery.discover_source_jobs(kube, "default", relaxed_env_names=True)
    assert "EnvNamesNotAccepted" not in {a["code"] for a in relaxed["advice"]}
    assert all(p.get("validName", True) for p in relaxed["parameters"])
