"""Shared fixtures: each real or stand-in service lives in its own plugin module under tests/fixtures."""

pytest_plugins = [
    "tests.fixtures.azurite",
    "tests.fixtures.kubesim",
    "tests.fixtures.arm",
    "tests.fixtures.app",
    "tests.fixtures.eventgrid",
    "tests.fixtures.entra",
]
