"""A ledger database that goes away: key checks fail with UNAVAILABLE (retryable), and work again after."""

from __future__ import annotations

import time

import grpc
import pytest

from tests.metering.helpers import run_sql
from voicemesh.metering import keys
from voicemesh.metering.ledger import open_store
from voicemesh.process import ServiceProcess
from voicemesh.v1 import tts_pb2, tts_pb2_grpc

pytestmark = pytest.mark.slow


def describe(address: str, key: str) -> grpc.StatusCode:
    with grpc.insecure_channel(address) as channel:
        try:
            tts_pb2_grpc.TtsServiceStub(channel).Describe(tts_pb2.TtsServiceDescribeRequest(), timeout=30,
                                                          metadata=[("authorization", f"Bearer {key}")])
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def test_key_checks_are_unavailable_while_the_postgres_ledger_is_down(postgres_url, tmp_path):
    store = open_store(postgres_url)
    _, key = keys.create_key(store, "outage")
    store.close()
    database = postgres_url.rsplit("/", 1)[1]
    proc = ServiceProcess("tts", args=["--metrics-port", "-1"], log_path=tmp_path / "tts.log",
                          env={"VOICEMESH_LEDGER": postgres_url, "VOICEMESH_AUTH": "1"}).start()
    try:
        proc.wait_serving()
        assert describe(proc.address, key) == grpc.StatusCode.OK
        # The database goes away under the running service: its connection is cut and no new one is let in.
        run_sql(postgres_url.rsplit("/", 1)[0] + "/postgres",
                f"ALTER DATABASE {database} ALLOW_CONNECTIONS false")
        run_sql(postgres_url.rsplit("/", 1)[0] + "/postgres",
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'")
        assert describe(proc.address, key) == grpc.StatusCode.UNAVAILABLE
        assert describe(proc.address, key) == grpc.StatusCode.UNAVAILABLE  # reconnecting fails too
        run_sql(postgres_url.rsplit("/", 1)[0] + "/postgres", f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
        deadline = time.monotonic() + 30
        while describe(proc.address, key) != grpc.StatusCode.OK:
            assert time.monotonic() < deadline, "the service did not reconnect to the ledger"
            time.sleep(0.2)
    finally:
        proc.stop()
    assert "the usage ledger" in (tmp_path / "tts.log").read_text()
    assert postgres_url.split(":")[2].split("@")[0] not in (tmp_path / "tts.log").read_text()  # no password
