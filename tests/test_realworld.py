"""Job (and pod) objects from public places, decoded to the state the status contract implies.

Each file in ``tests/realworld/`` names its source (repository + path + commit, or URL) and says
whether it is published as-is (``reconstruction: false``), only partly (``"job only"``: a
published pod inside a reconstructed Job shape), or a reconstruction from the Kubernetes source
or documentation named in ``source``. ``now``, ``events`` and ``stall_after_seconds`` are the
decoder's inputs; ``expect`` is what the contract implies for that object.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from shared.kube.status import decode_job_status

CORPUS = Path(__file__).parent / "realworld"
FILES = sorted(CORPUS.glob("*.json"))
REQUIRED_CATEGORIES = {
    "Complete", "BackoffLimitExceeded", "DeadlineExceeded", "Indexed with failed indexes",
    "FailureTarget with pods still terminating", "Kueue-suspended", "plainly suspended", "uncounted terminated pods",
    "CrashLoopBackOff", "ImagePullBackOff", "Unschedulable", "CreateContainerConfigError", "FailedCreate",
    "FailedMount",
}


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_each_object_decodes_to_the_state_the_contract_implies(path):
    doc = _load(path)
    assert doc["source"] and doc["reconstruction"] in (True, False, "job only")
    now = datetime.fromisoformat(doc["now"].replace("Z", "+00:00"))
    state = decode_job_status(doc["job"], doc.get("pods", []), now=now, events=doc.get("events"),
                              stall_after_seconds=doc.get("stall_after_seconds", 300))
    expect = doc["expect"]
    assert (str(state.status), str(state.phase), state.reason) == (expect["status"], expect["phase"], expect["reason"])
    if "message" in expect:
        assert state.message == expect["message"]
    if "message_contains" in expect:
        assert expect["message_contains"] in state.message
    assert "2147483647" not in (state.message or "")


def test_the_corpus_covers_every_required_shape_with_at_least_25_objects():
    docs = [_load(p) for p in FILES]
    assert len(docs) >= 25
    assert REQUIRED_CATEGORIES <= {d["category"] for d in docs}
    assert sum(1 for d in docs if d["reconstruction"] is not True) >= 25  # published objects, not only reconstructions
