"""Signed run URLs (shared.auth.signing): a signature opens one run, one verb, in one namespace."""

from __future__ import annotations

import logging

import pytest

from shared.auth import signing
from shared.settings import Settings, load_settings

KEY = "k" * 40
OTHER = "o" * 40


def settings(*keys: str) -> Settings:
    return Settings(run_url_signing_keys=keys)


def test_a_signature_verifies_for_its_run_namespace_and_verb_only():
    s = settings(KEY)
    sig = signing.sign(s, "report-abc12", "default", "poll")
    assert signing.verify(s, "report-abc12", "default", "poll", sig)
    assert not signing.verify(s, "report-abc13", "default", "poll", sig)
    assert not signing.verify(s, "report-abc12", "batch", "poll", sig)
    assert not signing.verify(s, "report-abc12", "default", "cancel", sig)
    assert not signing.verify(s, "report-abc12", "default", "run", sig)


@pytest.mark.parametrize("tamper", [
    lambda sig: sig[:-1] + ("A" if sig[-1] != "A" else "B"),
    lambda sig: sig[:-1],
    lambda sig: sig + "A",
    lambda sig: "",
    lambda sig: None,
    lambda sig: "é" * len(sig),
])
def test_a_tampered_signature_is_refused(tamper):
    s = settings(KEY)
    assert not signing.verify(s, "r-1", "default", "poll", tamper(signing.sign(s, "r-1", "default", "poll")))


def test_another_key_signs_differently_and_rotation_keeps_old_links_working():
    old = signing.sign(settings(OTHER), "r-1", "default", "poll")
    assert not signing.verify(settings(KEY), "r-1", "default", "poll", old)
    rotated = settings(KEY, OTHER)
    assert signing.verify(rotated, "r-1", "default", "poll", old)
    assert signing.sign(rotated, "r-1", "default", "poll") == signing.sign(settings(KEY), "r-1", "default", "poll")


def test_without_a_key_the_process_key_signs_and_a_warning_says_so(caplog, monkeypatch):
    monkeypatch.setattr(signing, "_process_key", None)
    caplog.set_level(logging.WARNING)
    s = settings()
    sig = signing.sign(s, "r-1", "default", "poll")
    assert signing.verify(s, "r-1", "default", "poll", sig)
    assert not signing.verify(settings(KEY), "r-1", "default", "poll", sig)
    assert [r.getMessage() for r in caplog.records if "RUN_URL_SIGNING_KEY" in r.getMessage()] != []


def test_the_setting_takes_several_keys_and_refuses_short_ones():
    base = {"AKS_CREDENTIAL_MODE": "kubeconfig", "KUBECONFIG": "/dev/null", "RUNS_TABLE_NAME": "runs",
            "RUNS_TABLE_CONNECTION_STRING": "UseDevelopmentStorage=true"}
    assert load_settings({**base, "RUN_URL_SIGNING_KEY": f"{KEY}, {OTHER}"}).run_url_signing_keys == (KEY, OTHER)
    with pytest.raises(Exception) as err:
        load_settings({**base, "RUN_URL_SIGNING_KEY": f"{KEY},short-key"})
    assert "RUN_URL_SIGNING_KEY" in str(err.value) and "short-key" not in str(err.value)
