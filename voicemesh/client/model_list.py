"""``voicemesh models``: every model of running services, its size, whether it is loaded, and how fast it runs here.

The list comes from each service's ``Describe``. ``--measure`` sends one short
real request per model (a generation, a synthesis, a transcription of speech
that the first local voice made) and reports its speed on this machine; that
loads the model if it was not loaded. Remote models are listed, not measured.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time

import grpc

from voicemesh.mesh import DEFAULT_PORTS
from voicemesh.v1 import common_pb2, llm_pb2, llm_pb2_grpc, stt_pb2, stt_pb2_grpc, tts_pb2, tts_pb2_grpc

PROMPT = "Name three colours of the rainbow, in one short sentence."
SENTENCE = "The quick brown fox jumps over the lazy dog, then rests in the warm sun."
STT_RATE = 16000


def _rows(addresses: list[str], timeout: float, api_key: str | None) -> list[dict]:
    from voicemesh.client.describe import describe_address

    rows = []
    for address in addresses:
        try:
            descriptions = describe_address(address, timeout=timeout, api_key=api_key)
        except Exception as exc:  # one service down must not hide the others
            rows.append({"address": address, "error": str(exc) or type(exc).__name__})
            continue
        for description in descriptions:
            for model in description.models:
                rows.append({"address": address, "service": description.service, "model": model.descriptor,
                             "size_bytes": model.size_bytes, "loaded": model.loaded})
    return rows


def _measure_llm(channel: grpc.Channel, model: str, timeout: float) -> str:
    config = llm_pb2.ChatRequest(config=llm_pb2.ChatConfig(model=model, sampling=llm_pb2.Sampling(
        temperature=0, max_tokens=48)))
    generate = llm_pb2.ChatRequest(generate=llm_pb2.Generate(
        id="measure", messages=[llm_pb2.ChatMessage(role="user", content=PROMPT)]))
    start, first = time.monotonic(), None
    for response in llm_pb2_grpc.LlmServiceStub(channel).Chat(iter([config, generate]), timeout=timeout):
        kind = response.WhichOneof("event")
        if kind == "text_delta" and first is None:
            first = time.monotonic()
        if kind == "done":
            tokens = response.done.usage.output_tokens
            spent = time.monotonic() - (first or start)
            rate = f"{(tokens - 1) / spent:.0f} tokens/s" if tokens > 1 and spent > 0 else f"{tokens} tokens"
            return f"{rate}, first token {((first or start) - start) * 1000:.0f} ms (includes loading)"
    return "no answer"


def _synthesize(channel: grpc.Channel, voice: str, rate: int, timeout: float) -> tuple[bytes, float]:
    requests = [tts_pb2.SynthesizeRequest(config=tts_pb2.SynthesisConfig(voice=voice, sample_rate_hz=rate)),
                tts_pb2.SynthesizeRequest(text=SENTENCE), tts_pb2.SynthesizeRequest(flush=common_pb2.Flush())]
    start, audio = time.monotonic(), bytearray()
    for response in tts_pb2_grpc.TtsServiceStub(channel).Synthesize(iter(requests), timeout=timeout):
        if response.WhichOneof("event") == "audio":
            audio += response.audio.audio
    return bytes(audio), time.monotonic() - start


def _speed(audio_s: float, spent: float) -> str:
    return f"real-time factor {spent / audio_s:.3f} ({audio_s:.1f} s of audio in {spent:.2f} s)" if audio_s else "no audio"


def _measure_stt(channel: grpc.Channel, model: str, speech: bytes, timeout: float) -> str:
    def requests():
        yield stt_pb2.RecognizeRequest(config=stt_pb2.RecognitionConfig(model=model, sample_rate_hz=STT_RATE))
        for at in range(0, len(speech), 3200):
            yield stt_pb2.RecognizeRequest(audio=speech[at:at + 3200])
        yield stt_pb2.RecognizeRequest(audio=bytes(STT_RATE))  # half a second of silence ends the utterance

    start = time.monotonic()
    list(stt_pb2_grpc.SttServiceStub(channel).Recognize(requests(), timeout=timeout))
    return _speed(len(speech) / 2 / STT_RATE, time.monotonic() - start)


def _measure(rows: list[dict], timeout: float) -> None:
    # Local models only (they have a size on disk): a remote model's speed is the network's and costs money.
    local = [row for row in rows if "error" not in row and row["size_bytes"] > 0]
    voices = [row for row in local if row["service"] == "tts"]
    speech = b""
    if voices:
        with grpc.insecure_channel(voices[0]["address"]) as channel, contextlib.suppress(grpc.RpcError):
            speech, _ = _synthesize(channel, voices[0]["model"], STT_RATE, timeout)
    for row in local:
        try:
            with grpc.insecure_channel(row["address"]) as channel:
                if row["service"] == "llm":
                    row["speed"] = _measure_llm(channel, row["model"], timeout)
                elif row["service"] == "tts":
                    audio, spent = _synthesize(channel, row["model"], STT_RATE, timeout)
                    row["speed"] = _speed(len(audio) / 2 / STT_RATE, spent)
                elif row["service"] == "stt":
                    row["speed"] = (_measure_stt(channel, row["model"], speech, timeout) if speech
                                    else "not measured: needs a tts service to speak a test sentence")
        except grpc.RpcError as exc:
            row["speed"] = f"failed: {exc.code().name}: {exc.details()}"


def _format(row: dict) -> str:
    if "error" in row:
        return f"{row['address']}: {row['error']}"
    line = (f"{row['model']:<48} {row['size_bytes'] / 2**20:8.1f} MiB  "
            f"{'loaded' if row['loaded'] else 'not loaded':<10}  {row['service']} at {row['address']}")
    return line + (f"\n    {row['speed']}" if "speed" in row else "")


def _models(args: argparse.Namespace) -> int:
    host = "127.0.0.1"
    addresses = args.address or [f"{host}:{DEFAULT_PORTS[name]}" for name in ("stt", "llm", "tts")]
    rows = _rows(addresses, args.timeout, args.api_key)
    if args.measure:
        _measure(rows, max(args.timeout, 120.0))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(_format(row))
    return 1 if rows and all("error" in row for row in rows) else 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``models`` to the ``voicemesh`` command line."""
    models = commands.add_parser(
        "models",
        help="list the models of running services, their size, whether they are loaded, and their speed",
        description=__doc__,
    )
    models.add_argument("address", nargs="*", metavar="ADDRESS",
                        help="host:port of running services (default: the stt, llm and tts ports of `voicemesh up`)")
    models.add_argument("--measure", action="store_true",
                        help="run one short request per model and report its speed on this machine (loads it)")
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    models.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each service (default 10)")
    models.add_argument("--api-key", default=None, help="API key for servers with auth on (default as `describe`)")
    models.set_defaults(handler=_models)
