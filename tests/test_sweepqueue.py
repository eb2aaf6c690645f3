"""The sweep queue port against Azurite's queue service, and its settings."""

from __future__ import annotations

import base64
import json

import pytest
from azure.storage.queue import QueueClient

from shared.errors import SettingsError
from shared.settings import Settings, load_settings
from shared.sweepqueue import SweepQueue

BASE = {"RUNS_TABLE_ENDPOINT": "https://acct.table.core.windows.net", "AKS_CREDENTIAL_MODE": "kubeconfig",
        "KUBECONFIG": "/kube/config"}


def test_a_message_sent_comes_back_once_until_deleted(sweep_queue):
    sweep_queue.send({"kind": "sweep", "namespace": "team-a"})

    [received] = list(sweep_queue.receive(visibility_timeout=30))
    assert received.body == {"kind": "sweep", "namespace": "team-a"}
    assert received.dequeue_count == 1
    assert list(sweep_queue.receive()) == []  # hidden while the first receiver works on it

    sweep_queue.delete(received)
    assert sweep_queue.depth() == 0
    assert sweep_queue.sent == 1


def test_messages_are_base64_json_as_the_functions_queue_trigger_reads_them(sweep_queue, azurite_queue):
    sweep_queue.send({"kind": "sweep", "namespace": "team-b"})

    raw = QueueClient.from_connection_string(azurite_queue.connection_string, sweep_queue.name)
    [message] = list(raw.receive_messages())
    assert json.loads(base64.b64decode(message.content)) == {"kind": "sweep", "namespace": "team-b"}


def test_no_queue_configured_means_no_queue():
    assert SweepQueue.from_settings(Settings()) is None


def test_queue_settings_follow_the_identity_based_connection_names():
    settings = load_settings({**BASE, "SweepQueue__queueServiceUri": "https://acct.queue.core.windows.net/"})

    assert settings.sweep_queue_name == "aksjobs-sweep"
    assert settings.sweep_queue_service_uri == "https://acct.queue.core.windows.net/"
    queue = SweepQueue.from_settings(settings)  # managed identity: no network until the first send
    assert queue is not None and queue.name == "aksjobs-sweep"


@pytest.mark.parametrize("env, named", [
    ({"SWEEP_QUEUE_NAME": "Sweep_Queue"}, "SWEEP_QUEUE_NAME"),
    ({"SWEEP_QUEUE_NAME": "a--b"}, "SWEEP_QUEUE_NAME"),
    ({"SweepQueue__queueServiceUri": "acct.queue.core.windows.net"}, "SweepQueue__queueServiceUri"),
])
def test_malformed_queue_settings_are_named(env, named):
    with pytest.raises(SettingsError) as refused:
        load_settings({**BASE, **env})
    assert named in str(refused.value)


def test_a_malformed_connection_string_is_named_without_echoing_it():
    settings = Settings(sweep_queue_connection_string="AccountKey=c2VjcmV0;nonsense")
    with pytest.raises(SettingsError) as refused:
        SweepQueue.from_settings(settings)
    assert "SweepQueue" in str(refused.value) and "c2VjcmV0" not in str(refused.value)
