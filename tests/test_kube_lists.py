"""Lists through the Kubernetes facade: read as they arrive, trimmed item by item, paged, and never
taken whole when the answer is cut off or is not a JSON object.

The facade's tests run against the simulator over HTTP; the cut and not-JSON answers are the
simulator's own faults (``cut``: a connection lost mid-answer, or half an answer passed on as if
whole; ``body``: a proxy's page). ``listing.read_list`` is also checked on its own for what the
simulator never sends: a list whose ``metadata`` comes after its items, and bodies that arrive a
few bytes at a time.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared.kube import jobspec, listing
from shared.kube.client import KubeClient
from shared.kube.errors import KubeError, KubeUnavailable
from shared.kube.status import job_for_decoding
from tests.fixtures.app import source_job
from tests.fixtures.kubesim import api_client_for

NS = "default"
JOBS = r"/apis/batch/v1/namespaces/default/jobs$"
MAX_RETRIES = 3  # KubeClient's default


class _Connector:
    def __init__(self, sim):
        self.client = api_client_for(sim)
        self.refreshes = 0

    def api_client(self):
        return self.client

    def refresh(self, stale=None):
        self.refreshes += 1
        return self.client


@pytest.fixture
def kube(kubesim):
    return KubeClient(_Connector(kubesim), timeout=5, sleep=lambda seconds: None)


def _seed_runs(sim, count: int) -> list[str]:
    """``count`` run Jobs as the app renders them (pod template, labels, annotations), in name order."""
    template = jobspec.clone_source_job(source_job("report", {"DAY": "1"}))
    names = []
    for i in range(count):
        run_id = jobspec.run_job_name("report", f"k{i}")
        sim.put("jobs", NS, jobspec.render_run_job(
            template, run_id=run_id, namespace=NS, external_id="report", parameters=[],
            idempotency_key=None, ttl_seconds_after_finished=None).job)
        names.append(run_id)
    return sorted(names)


def _list_requests(sim) -> list[dict]:
    return [r for r in sim.request_log if r["method"] == "GET" and r["path"].endswith("/jobs")]


def _whole_answer(sim) -> bytes:
    import urllib3

    return urllib3.PoolManager(retries=False).request(
        "GET", sim.url + "/apis/batch/v1/namespaces/default/jobs",
        headers={"Authorization": f"Bearer {sim.token}"}).data


# ----------------------------------------------------------------------------- whole answers


def test_a_paged_list_keeps_of_each_job_what_keep_returns_and_follows_every_continue_token(kubesim, kube):
    names = _seed_runs(kubesim, 7)
    kubesim.advance(5)  # the Jobs have status: pods running
    read_one_by_one = [kube.get_job(NS, name) for name in names]
    kubesim.reset_counters()

    listed = kube.list_jobs(NS, label_selector=jobspec.run_selector(), limit=3, keep=job_for_decoding)

    assert listed == [job_for_decoding(job) for job in read_one_by_one]
    assert all(job["status"]["active"] == 1 for job in listed)
    pages = _list_requests(kubesim)
    assert [r["query"]["limit"] for r in pages] == ["3", "3", "3"]
    assert ["continue" in r["query"] for r in pages] == [False, True, True]


def test_an_untrimmed_list_is_each_job_exactly_as_a_get_reads_it(kubesim, kube):
    names = _seed_runs(kubesim, 4)
    kubesim.advance(5)

    listed = kube.list_jobs(NS, limit=500)

    assert listed == [kube.get_job(NS, name) for name in names]
    items, token = kube.list_jobs_page(NS, limit=2)
    assert [j["metadata"]["name"] for j in items] == names[:2] and token


def test_an_empty_list_is_an_empty_list(kube):
    assert kube.list_jobs(NS, keep=job_for_decoding) == []
    assert kube.list_jobs_page(NS) == ([], None)


# ------------------------------------------------------------------------------- cut answers


def test_a_list_whose_connection_drops_mid_answer_is_asked_again_and_returned_whole(kubesim, kube):
    names = _seed_runs(kubesim, 5)
    kubesim.inject("GET", JOBS, "cut", keep=len(_whole_answer(kubesim)) // 2)
    kubesim.reset_counters()

    listed = kube.list_jobs(NS, keep=job_for_decoding)

    assert [j["metadata"]["name"] for j in listed] == names
    assert [r["status"] for r in _list_requests(kubesim)] == [200, 200]  # the cut one, then the whole one


def test_a_list_that_keeps_dropping_mid_answer_is_unavailable_not_short(kubesim, kube):
    _seed_runs(kubesim, 5)
    kubesim.inject("GET", JOBS, "cut", times=None, keep=300)
    kubesim.reset_counters()

    with pytest.raises(KubeUnavailable):
        kube.list_jobs(NS, keep=job_for_decoding)
    assert len(_list_requests(kubesim)) == 1 + MAX_RETRIES


def _cut_points(whole: bytes) -> dict[str, int]:
    """Where half an answer may end: byte counts of the answer ``whole`` (a list of 2+ items)."""
    items_start = whole.index(b'"items":[') + len(b'"items":[')
    second_item = whole.index(b'{"apiVersion"', items_start + 1)
    return {"empty": 0, "in the list's metadata": whole.index(b'"metadata"') + 15,
            "inside an item": items_start + 100, "after an item": second_item,
            "one byte short": len(whole) - 1}


@pytest.mark.parametrize("where", ["empty", "in the list's metadata", "inside an item", "after an item",
                                   "one byte short"])
def test_half_an_answer_passed_on_as_whole_is_a_clear_error_never_a_shorter_list(kubesim, kube, where):
    _seed_runs(kubesim, 3)
    keep = _cut_points(_whole_answer(kubesim))[where]
    kubesim.inject("GET", JOBS, "cut", keep=keep, framed=True)
    kubesim.reset_counters()

    with pytest.raises(KubeError) as err:
        kube.list_jobs(NS, keep=job_for_decoding)

    assert str(err.value) == "HTTP 200: the answer ended in the middle of its JSON (cut off on the way?)"
    assert len(_list_requests(kubesim)) == 1  # a whole answer that is wrong is not asked again
    assert kube.list_jobs(NS, keep=job_for_decoding)  # the connection is fine for the next request


# ------------------------------------------------------------------------- answers not a list

PLANTED = "session=planted-5f1c"


@pytest.mark.parametrize(("body", "problem"), [
    (f"<html><body>Sign in to the proxy. {PLANTED}</body></html>", "the answer is not JSON"),
    (json.dumps({"kind": "JobList", "metadata": {}, "items": []}) + f"<p>{PLANTED}</p>", "the answer is not JSON"),
    (json.dumps([{"metadata": {"name": PLANTED}}]), "the answer is not a JSON object"),
    (json.dumps(PLANTED), "the answer is not a JSON object"),
])
def test_a_2xx_that_is_not_a_json_object_is_a_clear_error_that_does_not_quote_the_body(kubesim, kube, body,
                                                                                      problem):
    _seed_runs(kubesim, 2)
    kubesim.inject("GET", JOBS, "body", body=body, content_type="application/json")

    with pytest.raises(KubeError) as err:
        kube.list_jobs(NS, keep=job_for_decoding)

    assert str(err.value).startswith(f"HTTP 200: {problem}")
    assert PLANTED not in str(err.value)
    assert len(kube.list_jobs(NS)) == 2


def test_a_list_refused_with_401_is_asked_again_once_with_fresh_credentials(kubesim, kube):
    # (An expired continue token mid-list is tests/test_discovery.py's: the same path.)
    names = _seed_runs(kubesim, 7)
    kubesim.inject("GET", JOBS, "status", status=401)
    kubesim.reset_counters()

    listed = kube.list_jobs(NS, limit=3, keep=job_for_decoding)

    assert [j["metadata"]["name"] for j in listed] == names
    assert [r["status"] for r in _list_requests(kubesim)] == [401, 200, 200, 200]
    assert kube._connector.refreshes == 1


# ------------------------------------------------------------------ the reader on its own


class _Trickle(io.RawIOBase):
    """A body that arrives at most ``step`` bytes per read, as a slow network delivers it."""

    def __init__(self, data: bytes, step: int):
        self._data, self._step, self._at = data, step, 0

    def read(self, size: int = -1) -> bytes:
        size = self._step if size is None or size < 0 else min(size, self._step)
        chunk = self._data[self._at:self._at + size]
        self._at += len(chunk)
        return chunk


LIST = {"kind": "JobList", "apiVersion": "batch/v1",
        "metadata": {"resourceVersion": "42", "continue": "token-2"},
        "items": [{"metadata": {"name": f"job-{i}", "labels": {"a": "b"}}, "spec": {"parallelism": 1},
                   "status": {"active": 1, "ratio": 0.5, "ready": None, "ok": True}} for i in range(40)]}


@pytest.mark.parametrize("order", [("kind", "metadata", "items"), ("items", "metadata", "kind"),
                                   ("apiVersion", "items", "kind", "metadata")])
@pytest.mark.parametrize("step", [1, 7, 4096, 1 << 20])
def test_the_reader_gives_what_json_loads_gives_whatever_the_key_order_and_read_sizes(order, step):
    doc = {key: LIST[key] for key in (*order, *LIST) if key in LIST}
    body = json.dumps(doc).encode()

    items, token = listing.read_list(_Trickle(body, step))

    assert (items, token) == (json.loads(body)["items"], "token-2")


def test_the_reader_passes_each_item_through_keep_and_reads_a_list_without_continue():
    body = json.dumps({"metadata": {"resourceVersion": "1"}, "items": LIST["items"][:3]}).encode()
    kept, token = listing.read_list(io.BytesIO(body), keep=lambda item: item["metadata"]["name"])
    assert (kept, token) == (["job-0", "job-1", "job-2"], None)
    assert listing.read_list(io.BytesIO(b'{"metadata": {"continue": ""}, "items": null}')) == ([], None)


@pytest.mark.parametrize(("body", "problem"), [
    (b"", listing.UnreadableList.TRUNCATED),
    (json.dumps(LIST).encode()[:-2], listing.UnreadableList.TRUNCATED),
    (b'{"items": [}', listing.UnreadableList.NOT_JSON),
    (b"\xff\xfe{}", listing.UnreadableList.NOT_JSON),
    (b"[]", listing.UnreadableList.NOT_AN_OBJECT),
    (b"null", listing.UnreadableList.NOT_AN_OBJECT),
])
def test_the_reader_names_what_is_wrong_with_a_body_it_cannot_read_whole(body, problem):
    with pytest.raises(listing.UnreadableList) as err:
        listing.read_list(_Trickle(body, 3))
    assert err.value.problem == problem


def test_importing_the_facade_loads_neither_the_client_library_nor_the_parser():
    # function_app reaches the facade through the composition root: a cold start must not pay for them.
    probe = "import sys, shared.kube.client; print(sorted(m for m in ('kubernetes', 'ijson') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
