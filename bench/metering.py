"""Metering benchmark: what API keys, quotas and the ledger add to a stream.

Measures, on a SQLite ledger in a temporary folder (WAL, synchronous=FULL):

* usage write: latency of one committed usage record (``Ledger.record``, the
  commit a Usage message waits for before it is sent), p50/p95, with the
  ledger already holding ``--records`` records;
* admission: round trip of a unary RPC and of a stream's first response on an
  in-process gRPC server, without a guard and with one (key check + quota
  check of a key with two quotas), p50/p95, with ``--records`` usage records
  of that key already in the ledger;
* quota check alone and ``voicemesh usage`` summarizing at that ledger size.

Prints the figures and saves them to bench/results/metering.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from voicemesh.metering import keys, quotas, report  # noqa: E402
from voicemesh.metering.ledger import Ledger, open_store, sqlite_path  # noqa: E402
from voicemesh.metering.records import Quota, UsageRecord  # noqa: E402
from voicemesh.runtime import auth  # noqa: E402
from voicemesh.runtime.interceptor import ServiceInterceptor  # noqa: E402
from voicemesh.v1 import common_pb2, tts_pb2, tts_pb2_grpc  # noqa: E402


class EchoTts(tts_pb2_grpc.TtsServiceServicer):
    async def Describe(self, request, context):
        return tts_pb2.TtsServiceDescribeResponse()

    async def Synthesize(self, requests, context):
        async for _request in requests:
            yield tts_pb2.SynthesizeResponse(usage=common_pb2.Usage(model="bench/voice", characters=1))
            return


def pct(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 3),
            "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 3)}


async def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - start)
    return out


async def admission(url: str, key: str | None, n: int) -> dict:
    guard = await auth.Guard(service="tts", ledger=Ledger(url)).open() if key else None
    server = grpc.aio.server(interceptors=[ServiceInterceptor("tts", guard)])
    tts_pb2_grpc.add_TtsServiceServicer_to_server(EchoTts(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    metadata = [("authorization", f"Bearer {key}")] if key else []
    config = tts_pb2.SynthesizeRequest(config=tts_pb2.SynthesisConfig(voice="bench/voice"))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = tts_pb2_grpc.TtsServiceStub(channel)
        await stub.Describe(tts_pb2.TtsServiceDescribeRequest(), metadata=metadata)  # warm up the channel

        async def unary():
            await stub.Describe(tts_pb2.TtsServiceDescribeRequest(), metadata=metadata)

        async def stream():
            call = stub.Synthesize(iter([config]), metadata=metadata)
            async for _ in call:
                pass

        figures = {"unary": pct(await timed(unary, n)), "stream": pct(await timed(stream, n))}
    await server.stop(None)
    if guard:
        await guard.close()
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20000, help="usage records of the key in the ledger")
    parser.add_argument("--trials", type=int, default=200, help="timed calls per figure")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="vm-bench-metering-"))
    url = f"sqlite:///{folder}/ledger.db"

    store = open_store(url)
    record, key = keys.create_key(store, "bench", quotas=[Quota("characters", 1e12, "day"),
                                                          Quota("audio_seconds_out", 1e12, "month")])
    store.close()
    # Bulk fill in one transaction (benchmark setup, not a code path); reopening builds the per-day totals.
    now = time.time()
    with sqlite3.connect(sqlite_path(url)) as db:
        db.executemany("INSERT INTO usage VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                       [(f"fill-{n}", now - n, record.id, f"s{n % 500}", "tts", f"m{n % 5}", 0, 0, 1.5, 0, 0, 0, 40)
                        for n in range(args.records)])
        db.execute("DELETE FROM usage_daily")
    store = open_store(url)

    ledger = await Ledger(url).open()
    writes = await timed(lambda: ledger.record(UsageRecord(key_id=record.id, session_id="s", service="tts",
                                                           model="m", characters=1)), args.trials)
    await ledger.close()

    checks = []
    for _ in range(args.trials):
        start = time.perf_counter()
        quotas.check(store, record, None)
        checks.append(time.perf_counter() - start)
    start = time.perf_counter()
    rows, _total = report.summarize(store.usage(), "day", None)
    summary_s = time.perf_counter() - start
    store.close()

    results = {
        "usage_write": pct(writes),
        "quota_check": pct(checks),
        "usage_report_by_day_s": round(summary_s, 3),
        "without_auth": await admission(url, None, args.trials),
        "with_auth": await admission(url, key, args.trials),
        "records": args.records,
        "trials": args.trials,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    print(f"usage write (commit before the Usage is sent): p50 {results['usage_write']['p50_ms']} ms, "
          f"p95 {results['usage_write']['p95_ms']} ms")
    print(f"quota check with {args.records} records: p50 {results['quota_check']['p50_ms']} ms, "
          f"p95 {results['quota_check']['p95_ms']} ms")
    print(f"usage report by day over {args.records} records: {summary_s:.3f} s")
    for kind in ("unary", "stream"):
        a, b = results["without_auth"][kind], results["with_auth"][kind]
        print(f"{kind} round trip: without auth p50 {a['p50_ms']} ms / p95 {a['p95_ms']} ms; "
              f"with auth p50 {b['p50_ms']} ms / p95 {b['p95_ms']} ms")
    out = Path(__file__).parent / "results" / "metering.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"saved {out}")


if __name__ == "__main__":
    asyncio.run(main())
