"""Benchmark of the LLM service: time to first token, tokens per second, cancel
latency, and the turn-2/turn-1 time-to-first-token ratio that the per-stream
prompt cache gives.

Starts `voicemesh serve llm` on a free loopback port (or uses --address),
prints the figures and saves them to bench/results/llm.json.

    .venv/bin/python bench/llm.py [--model llama.cpp/smollm2-135m-instruct] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from pathlib import Path

import grpc

from voicemesh.process import ServiceProcess
from voicemesh.v1 import common_pb2, llm_pb2, llm_pb2_grpc

RESULTS = Path(__file__).resolve().parent / "results" / "llm.json"
CONTEXT = (
    "You are the voice assistant of a small bakery in Lyon. The bakery opens at seven in the morning and closes "
    "at seven in the evening, every day but Monday. It sells baguettes, croissants, pains au chocolat, brioche, "
    "fruit tarts, macarons and a sourdough loaf baked on Saturdays only. Orders for cakes must be placed two days "
    "ahead. The owner is called Camille and the baker is called Hugo. Answer in one short sentence. "
)


class Stream:
    """One Chat stream driven from asyncio."""

    def __init__(self, stub: llm_pb2_grpc.LlmServiceStub, model: str):
        self.requests: asyncio.Queue = asyncio.Queue()
        config = llm_pb2.ChatConfig(model=model, sampling=llm_pb2.Sampling(temperature=0))
        self.requests.put_nowait(llm_pb2.ChatRequest(config=config))
        self.call = stub.Chat(self._requests())

    async def _requests(self):
        while (request := await self.requests.get()) is not None:
            yield request

    def generate(self, id: str, text: str, max_tokens: int, system: str = "") -> float:
        messages = [llm_pb2.ChatMessage(role="system", content=system)] if system else []
        messages.append(llm_pb2.ChatMessage(role="user", content=text))
        sampling = llm_pb2.Sampling(max_tokens=max_tokens)
        self.requests.put_nowait(llm_pb2.ChatRequest(generate=llm_pb2.Generate(id=id, messages=messages,
                                                                               sampling=sampling)))
        return time.perf_counter()

    def cancel(self) -> float:
        self.requests.put_nowait(llm_pb2.ChatRequest(cancel=common_pb2.Cancel()))
        return time.perf_counter()

    async def until_done(self, sent: float) -> dict:
        first = None
        while (response := await self.call.read()) is not grpc.aio.EOF:
            if response.WhichOneof("event") == "text_delta" and first is None:
                first = time.perf_counter()
            if response.WhichOneof("event") == "done":
                end = time.perf_counter()
                usage = response.done.usage
                return {"ttft_s": (first or end) - sent, "total_s": end - sent, "first": first, "end": end,
                        "output_tokens": usage.output_tokens, "input_tokens": usage.input_tokens,
                        "cached_tokens": usage.cached_tokens,
                        "reason": llm_pb2.FinishReason.Name(response.done.finish_reason)}
        raise RuntimeError("stream ended without Done")

    def close(self) -> None:
        self.requests.put_nowait(None)


async def bench(address: str, model: str, runs: int) -> dict:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = llm_pb2_grpc.LlmServiceStub(channel)
        warm = Stream(stub, model)
        await warm.until_done(warm.generate("warm", "Hello", 4))
        warm.close()
        turn1, turn2, ratios, rates, cancels = [], [], [], [], []
        for run in range(runs):
            stream = Stream(stub, model)
            system = f"Conversation {uuid.uuid4().hex}. " + CONTEXT  # unique: turn 1 is not cached
            one = await stream.until_done(stream.generate(f"a{run}", "When do you open?", 24, system))
            two = await stream.until_done(stream.generate(f"b{run}", "Who bakes the bread?", 120))
            turn1.append(one["ttft_s"])
            turn2.append(two["ttft_s"])
            ratios.append(two["ttft_s"] / one["ttft_s"])
            if two["output_tokens"] > 1 and two["end"] > two["first"]:
                rates.append((two["output_tokens"] - 1) / (two["end"] - two["first"]))
            sent = stream.generate(f"c{run}", "Count from 1 to 1000, separated by commas.", 1500)
            while (await stream.call.read()).WhichOneof("event") != "text_delta":
                pass
            cancelled_at = stream.cancel()
            done = await stream.until_done(sent)
            if done["reason"] == "FINISH_REASON_CANCELLED":
                cancels.append(done["end"] - cancelled_at)
            stream.close()
            print(f"run {run + 1}: turn-1 TTFT {one['ttft_s'] * 1000:.0f} ms ({one['input_tokens']} prompt tokens), "
                  f"turn-2 TTFT {two['ttft_s'] * 1000:.0f} ms ({two['cached_tokens']}/{two['input_tokens']} cached), "
                  f"cancel {cancels[-1] * 1000 if cancels else float('nan'):.1f} ms")
    return {
        "model": model,
        "runs": runs,
        "ttft_turn1_ms_median": statistics.median(turn1) * 1000,
        "ttft_turn2_ms_median": statistics.median(turn2) * 1000,
        "ttft_turn2_over_turn1_median": statistics.median(ratios),
        "tokens_per_s_median": statistics.median(rates) if rates else None,
        "cancel_latency_ms_median": statistics.median(cancels) * 1000 if cancels else None,
        "cancel_latency_ms_max": max(cancels) * 1000 if cancels else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="llama.cpp/smollm2-135m-instruct")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--address", help="use a running LLM service instead of starting one")
    parser.add_argument("--threads", type=int, default=1, help="--llama-threads of the started service")
    args = parser.parse_args()
    if args.address:
        figures = asyncio.run(bench(args.address, args.model, args.runs))
    else:
        service = ServiceProcess("llm", args=["--metrics-port", "-1", "--preload", args.model,
                                              "--llama-threads", str(args.threads)])
        with service:
            figures = asyncio.run(bench(service.address, args.model, args.runs))
        figures["llama_threads"] = args.threads
    with open("/proc/loadavg") as loadavg:
        figures["load_average_1m"] = float(loadavg.read().split()[0])
    print(json.dumps(figures, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"saved {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
