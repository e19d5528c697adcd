"""Shared fixtures: service processes on free loopback ports, test speech."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from voicemesh.process import ServiceProcess

ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# The tests' doubles of paid APIs listen on loopback ports picked at run time: as their operator, the test
# suite lets clients name them as base_url (voicemesh.targets). Tests of the allowlist itself set their own.
LOOPBACK_BASE_URLS = "http://127.0.0.1:*,http://[::1]:*"
os.environ.setdefault("VOICEMESH_ALLOWED_BASE_URLS", LOOPBACK_BASE_URLS)


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001
    """On CI a skipped test is a failure: everything must run there."""
    skipped = terminalreporter.stats.get("skipped", [])
    if ON_CI and skipped:
        terminalreporter.write_line(f"CI: {len(skipped)} test(s) skipped; every test must run on CI", red=True)


def pytest_sessionfinish(session, exitstatus):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if ON_CI and reporter is not None and reporter.stats.get("skipped") and exitstatus == 0:
        session.exitstatus = 1


@pytest.fixture
def service_process(tmp_path: Path) -> Iterator:
    """Factory: ``service_process("tts", args=[...])`` starts a server and waits for SERVING."""
    started: list[ServiceProcess] = []

    def start(service: str, *, args=(), env=None, wait: bool = True) -> ServiceProcess:
        proc = ServiceProcess(service, args=["--metrics-port", "-1", *args], env=env,
                              log_path=tmp_path / f"{service}-{len(started)}.log")
        started.append(proc.start())
        if wait:
            proc.wait_serving()
        return proc

    yield start
    for proc in started:
        proc.stop()
