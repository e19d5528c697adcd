"""Hypothesis strategies for request streams of every VoiceMesh service, built from the proto descriptors.

A case is a short list of requests: either wholly random (any oneof kind first, configs out of
order) or a valid config followed by random requests, so the fuzz reaches past the config check.
Field values lean on what breaks services: odd byte lengths, empty and huge strings, NaN and
negative rates, unknown models. Remote base URLs only ever point at loopback ports nothing serves.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

# How a stream may end: the documented status codes (never INTERNAL or UNKNOWN).
ALLOWED = {
    grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
}
ALLOWED_NAMES = {code.name for code in ALLOWED}

DESCRIPTORS = [
    "faster-whisper/tiny.en:en", "faster-whisper/tiny.en", "llama.cpp/smollm2-135m-instruct", "piper/en_US-joe-medium",
    "voicemesh/cascade", "openai/gpt-4o-mini", "openai/tts-1:alloy", "openai/whisper-1", "nobody/unknown-model",
    "piper/no-such-voice", "faster-whisper/huge-v9:xx", "", "/", ":", "a/b:c:d", "llama.cpp/", "/model",
]
BASE_URLS = ["", "http://127.0.0.1:1/v1", "not a url", "ftp://127.0.0.1:9/x", "http://[::1]:1", "http://127.0.0.1:0"]
RATES = [0, -1, 1, 7999, 8000, 16000, 22050, 24000, 44100, 48000, 192001, 2**31 - 1, -(2**31)]

_huge_text = st.just("ä" * 70_000)
# NUL is left out: piper fails on it with INTERNAL (test_fuzz.py::test_nul_in_text_is_invalid_input, xfail).
_chars = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))
_text = st.one_of(st.text(_chars, max_size=40), st.just(""), st.text(alphabet="\x01\ud7ff\ufffe\n\t{}\"\\", max_size=20),
                  _huge_text)
_bytes = st.one_of(
    st.binary(max_size=3201),  # odd and even lengths, random noise as PCM
    st.integers(0, 20).map(lambda n: bytes(2 * n + 1)),
    st.just(b""),
    st.just(bytes(64_001)),  # two seconds of silence at 16 kHz plus one stray byte
)


def _string(f: FieldDescriptor) -> st.SearchStrategy:
    name = f.name
    if name in ("model", "descriptor", "voice"):
        return st.one_of(st.sampled_from(DESCRIPTORS), _text)
    if name == "base_url":
        return st.sampled_from(BASE_URLS)
    if name in ("parameters_json", "arguments_json"):
        return st.one_of(st.sampled_from(["{}", '{"type":"object"}', "[", "null", '{"type":"nope"}']), _text)
    if name in ("role", "mode"):
        return st.one_of(st.sampled_from(["user", "assistant", "system", "tool", "auto", "none", "required"]), _text)
    if name in ("modalities",):
        return st.sampled_from(["text", "audio", "video", ""])
    if name in ("content", "text", "instructions"):
        return st.one_of(st.text(_chars, max_size=60), _huge_text, st.just(""))
    return _text


def _scalar(f: FieldDescriptor) -> st.SearchStrategy:
    t = f.type
    if t == FieldDescriptor.TYPE_STRING:
        return _string(f)
    if t == FieldDescriptor.TYPE_BYTES:
        return _bytes
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return st.one_of(st.sampled_from([0.0, -1.0, 0.5, 1.0, 2.0, 1e9]), st.floats(width=32))
    if t in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_UINT32,
             FieldDescriptor.TYPE_INT64):
        if "rate" in f.name:
            return st.sampled_from(RATES)
        if f.name == "max_tokens":  # bounded so a fuzz case never generates for minutes
            return st.integers(-3, 24)
        return st.one_of(st.sampled_from([0, -1, 1, 10, 300, 100_000]), st.integers(-(2**31), 2**31 - 1))
    raise NotImplementedError(f"no strategy for field {f.full_name} of type {t}")


@st.composite
def message(draw, cls: type[Message], depth: int = 0) -> Message:
    """A message of ``cls`` with a random subset of its fields set (one member per oneof)."""
    msg = cls()
    desc = cls.DESCRIPTOR
    for oneof in desc.oneofs:
        if oneof.name.startswith("_"):
            continue  # proto3 optional: handled as a plain field below
        choice = draw(st.sampled_from([None, *oneof.fields]))
        if choice is not None:
            _set(draw, msg, choice, depth, force=True)
    for f in desc.fields:
        if f.containing_oneof is not None and not f.containing_oneof.name.startswith("_"):
            continue
        if draw(st.booleans()):
            _set(draw, msg, f, depth)
    return msg


def _set(draw, msg: Message, f: FieldDescriptor, depth: int, force: bool = False) -> None:
    if f.message_type is not None and f.message_type.GetOptions().map_entry:
        entries = draw(st.dictionaries(st.text(_chars, max_size=8), st.text(_chars, max_size=8), max_size=2))
        getattr(msg, f.name).update(entries)
        return
    if f.message_type is not None:
        if depth >= 3 and not force:
            return
        cls = _class_of(msg, f)
        if f.is_repeated:
            for item in draw(st.lists(message(cls, depth + 1), max_size=3)):
                getattr(msg, f.name).add().CopyFrom(item)
        else:
            getattr(msg, f.name).CopyFrom(draw(message(cls, depth + 1)) if depth < 3 else cls())
        return
    if f.is_repeated:
        getattr(msg, f.name).extend(draw(st.lists(_scalar(f), max_size=3)))
    else:
        setattr(msg, f.name, draw(_scalar(f)))


def _class_of(msg: Message, f: FieldDescriptor) -> type[Message]:
    return message_factory.GetMessageClass(f.message_type)


def sequences(cls: type[Message], valid_first: Message, max_size: int = 6) -> st.SearchStrategy[list[Message]]:
    """Random request lists: wholly random, or ``valid_first`` followed by random requests."""
    anything = st.lists(message(cls), min_size=0, max_size=max_size)
    after_valid = st.lists(message(cls), min_size=1, max_size=max_size).map(lambda rest: [valid_first, *rest])
    return st.one_of(anything, after_valid, after_valid)


@dataclass
class Outcome:
    code: grpc.StatusCode | None  # None: the stream did not end in time (a hang)
    details: str
    responses: list = field(default_factory=list)

    def error_codes(self) -> list[str]:
        """Status code names inside in-band error events (realtime and agent sessions)."""
        return [r.error.code for r in self.responses if r.WhichOneof("event") == "error"]


async def run_stream(method, requests: list[Message], timeout: float) -> Outcome:
    """Write ``requests``, half-close, read until the server ends the stream (code None after ``timeout``).

    Writes are explicit: once the server has ended the stream, a write fails and the client stops,
    then reads the server's status. (A request iterator that goes on writing makes grpc-python report
    "Internal error from Core" in place of the server's status: grpc/grpc#36066.)
    """
    responses: list = []
    call = method()

    async def read() -> None:
        while (response := await call.read()) is not grpc.aio.EOF:
            responses.append(response)

    async def write() -> None:
        for request in requests:
            if call.done():
                return
            await call.write(request)
        await call.done_writing()

    try:
        async with asyncio.timeout(timeout):
            reader = asyncio.ensure_future(read())
            try:
                await write()
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                pass  # the server ended the stream first; its status is read below
            try:
                await reader
            except grpc.aio.AioRpcError:
                pass
            code = await call.code()
            details = await call.details()
    except TimeoutError:
        return Outcome(None, f"the stream did not end {timeout:g} s after the client half-closed", responses)
    finally:
        call.cancel()
    return Outcome(code, details or "", responses)
