"""Local chat with llama.cpp (llama-cpp-python) on GGUF weights.

The weights come from an installed Python package (``MODELS``) or from the
models folder (``--models-dir``): any ``<stem>.gguf`` there is served as
``llama.cpp/<stem>``, with the chat template its metadata carries.

Each model keeps ``max_generations`` llama.cpp contexts ("slots"). A
generation takes a free slot, preferring the one its Chat stream used last:
llama.cpp then re-evaluates only the tokens after the longest common prefix,
so a conversation's earlier turns stay cached. Generation runs in a worker
thread that checks the cancel flag between tokens. After a reply that ends
on its own (or at max_tokens), the slot also evaluates the opening of the
next user message (the reply's end-of-turn and the user header: five tokens
with ChatML) right after ``Done``, before it is free again: the next turn's
prompt evaluation, on the critical path of a spoken reply, starts at the
user's words (``_cache_next_opening``). The stream that owns the slot waits
for it rather than take another slot without its cache. Forced tool calls
are decoded under a grammar built from the tool's JSON Schema, so their
arguments always parse.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicemesh.backend import LocalModelSettings, ModelCard
from voicemesh.errors import FailedPrecondition, InvalidInput, Unavailable, require_module
from voicemesh.services.llm.backend import (
    CancelToken,
    Done,
    FinishReason,
    GenerationRequest,
    LlmBackend,
    LlmEvent,
    LlmSettings,
    Message,
    Sampling,
    TextDelta,
    TokenUsage,
    ToolCallMade,
)
from voicemesh.models import size_of
from voicemesh.services.llm.backends.gguf import MODELS, available_models, check_gguf
from voicemesh.settings import setting
from voicemesh.tools import ToolCallScanner, call_schema, forced_call, render_tool_calls, tools_prompt

log = logging.getLogger(__name__)

# The longest opening of the next turn evaluated after a reply (more means the conversation changed).
MAX_OPENING_TOKENS = 24
_MARK = "\u2063voicemesh-next-user\u2063"  # stands for the next user message when the opening is rendered
# Used when a GGUF file carries no chat template.
_CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class _Slot:
    """One llama.cpp context and who used it last."""

    def __init__(self, llm: Any):
        self.llm = llm
        self.busy = False
        self.owner: int | None = None
        self.last_used = 0.0
        self.ticket: Any = None  # the admission slot of the generation running here
        self.opening = False  # evaluating the next turn's opening after Done; its owner waits for it


@dataclass(frozen=True)
class LlamaSettings(LlmSettings, LocalModelSettings):
    """The operator's settings of local llama.cpp models."""

    llama_threads: int = setting(
        1, "CPU threads of each llama.cpp generation (1 is fastest on a busy machine: llama.cpp threads spin)"
    )
    llama_context: int = setting(2048, "context window of local llama.cpp models, in tokens (prompt + reply)")
    max_tokens: int = setting(512, "tokens generated per turn when the request sets no max_tokens")
    temperature: float = setting(0.7, "sampling temperature when the request sets none (0 = greedy)")
    llama_gpu_layers: int = setting(
        0, "layers of each llama.cpp model offloaded to the GPU (-1: all); needs llama-cpp-python built with CUDA "
        "or Metal; 0: CPU only")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.llama_threads < 1:
            raise ValueError(f"llama_threads must be at least 1, got {self.llama_threads}")
        if self.llama_context < 128:
            raise ValueError(f"llama_context must be at least 128, got {self.llama_context}")


class LlamaCppBackend(LlmBackend):
    """``llama.cpp/<model>``: llama-cpp-python with bounded threads and a context per slot."""

    provider = "llama.cpp"
    settings_type = LlamaSettings
    settings: LlamaSettings

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.context_tokens = self.settings.llama_context
        self._slots: list[_Slot] = []
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._formatter: Any = None

    @classmethod
    def catalog(cls, settings: LlamaSettings) -> list[ModelCard]:
        return [
            ModelCard(
                descriptor=f"{cls.provider}/{name}",
                languages=("en",),
                context_tokens=settings.llama_context,
                capabilities={"streaming": True, "tool_calls": True},
                description=model.description,
                size_bytes=size_of(path),
            )
            for name, model in available_models(settings).items()
            if (path := model.path()) is not None
        ]

    async def load(self) -> None:
        require_module("llama_cpp", "llm")
        model = available_models(self.settings).get(self.model)
        path = model.path() if model is not None else None
        if path is None:
            raise FailedPrecondition(f"the weights of {self.descriptor} are no longer installed")
        await asyncio.to_thread(check_gguf, path)
        try:
            self._slots = await asyncio.to_thread(self._open, path)
        except (ValueError, RuntimeError, OSError) as exc:  # llama.cpp's own words are vague: name the file
            raise FailedPrecondition(f"llama.cpp cannot load the model file {path}: {exc}") from None
        self._executor = ThreadPoolExecutor(max_workers=len(self._slots), thread_name_prefix="llama-cpp")
        log.info("%s loaded: %d slot(s), context %d, %d thread(s) each", self.descriptor, len(self._slots),
                 self.context_tokens, self.settings.llama_threads)

    async def warm_up(self) -> None:
        """A two-token generation on every slot (each is its own llama.cpp context), so the first turn does not
        pay the first prompt evaluation's allocations."""
        started, tokens = time.monotonic(), 0
        request = GenerationRequest(messages=(Message("user", "Hello."),), sampling=Sampling(max_tokens=2))
        for _ in self._slots:  # a new session object each time: the least recently used slot is taken
            async for event in self.generate(request, session=object(), cancel=CancelToken()):
                if isinstance(event, Done):
                    tokens += event.usage.output_tokens
        log.info("warmed up %s: %d slot(s), %d token(s) in %.0f ms", self.descriptor, len(self._slots), tokens,
                 (time.monotonic() - started) * 1000)

    def _open(self, path: Path) -> list[_Slot]:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        threads = self.settings.llama_threads
        slots = [
            _Slot(Llama(str(path), n_ctx=self.context_tokens, n_threads=threads, n_threads_batch=threads,
                        n_gpu_layers=self.settings.llama_gpu_layers, verbose=False))
            for _ in range(self.admission.limit)
        ]
        llm = slots[0].llm
        self._formatter = Jinja2ChatFormatter(
            template=llm.metadata.get("tokenizer.chat_template") or _CHATML,
            eos_token=llm.detokenize([llm.token_eos()], special=True).decode(errors="replace"),
            bos_token=llm.detokenize([llm.token_bos()], special=True).decode(errors="replace"),
        )
        return slots

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
        for slot in self._slots:
            slot.llm.close()
        self._slots = []

    async def generate(
        self, request: GenerationRequest, *, session: object, cancel: CancelToken
    ) -> AsyncIterator[LlmEvent]:
        if self._executor is None:
            raise Unavailable(f"{self.descriptor} is not loaded or is shutting down")
        ticket = await self.slot(cancel)
        if ticket is None:
            yield Done(FinishReason.CANCELLED, TokenUsage())
            return
        try:
            slot = self._take_slot(id(session))
            while slot is None:  # a slot still evaluates a turn's opening (a few tokens): it is free in a moment
                await asyncio.sleep(0.002)
                slot = self._take_slot(id(session))
        except BaseException:
            ticket.release()
            raise
        slot.ticket = ticket
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def emit(item: object) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:
                log.warning("event loop closed; dropped a %s of %s", type(item).__name__, self.descriptor)

        try:
            self._executor.submit(self._work, slot, request, cancel, emit)
        except RuntimeError:
            self._release(slot)
            raise Unavailable(f"{self.descriptor} is shutting down") from None
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, Done):
                    return
        finally:
            cancel.cancel()  # a consumer that stops early (client gone) stops the worker too

    def _take_slot(self, owner: int) -> _Slot | None:
        """A free slot, the owner's own if free; None while the owner's is evaluating its next opening, or while
        the only slots left are (their tickets are back already: one is free within a few tokens)."""
        with self._lock:
            if any(slot.opening and slot.owner == owner for slot in self._slots):
                return None
            free = [slot for slot in self._slots if not slot.busy]
            if not free:
                return None
            mine = [slot for slot in free if slot.owner == owner]
            slot = mine[0] if mine else min(free, key=lambda s: s.last_used)
            slot.busy, slot.owner = True, owner
            return slot

    def _release(self, slot: _Slot, *, opening: bool = False) -> None:
        """Give the slot's admission back; the slot itself too, unless it goes on to evaluate an opening."""
        with self._lock:
            slot.busy, slot.opening, slot.last_used = opening, opening, time.monotonic()
            ticket, slot.ticket = slot.ticket, None
        if ticket is not None:
            ticket.release()

    def _work(self, slot: _Slot, request: GenerationRequest, cancel: CancelToken, emit: Callable) -> None:
        try:
            done, reply = self._generate(slot.llm, request, cancel, emit)
        except Exception as exc:  # handed to the async side, which raises it
            self._release(slot)
            emit(exc)
            return
        # Admission is given back before Done, so a generation sent when the client hears of it is admitted.
        opening = done.reason in (FinishReason.STOP, FinishReason.LENGTH)
        self._release(slot, opening=opening)
        emit(done)
        if not opening:
            return
        try:
            self._cache_next_opening(slot.llm, request, reply)
        except Exception:  # noqa: BLE001 (the next turn evaluates it itself)
            log.warning("could not evaluate the next turn's opening on %s", self.descriptor, exc_info=True)
        finally:
            self._release(slot)

    def _generate(self, llm: Any, request: GenerationRequest, cancel: CancelToken,
                  emit: Callable) -> tuple[Done, str]:
        """Run one generation; its Done and the reply's text as sent."""
        import llama_cpp

        tokens = self._prompt_tokens(llm, request)
        n_ctx = llm.n_ctx()
        if len(tokens) >= n_ctx:
            raise InvalidInput(
                f"the conversation takes {len(tokens)} tokens but the context of {self.descriptor} holds {n_ctx} "
                "tokens (prompt and reply together); send replace_history with a shorter history"
            )
        cached = _reusable_prefix(llm, tokens)
        sampling = request.sampling
        max_tokens = min(sampling.max_tokens or self.settings.max_tokens, n_ctx - len(tokens))
        temperature = self.settings.temperature if sampling.temperature is None else sampling.temperature
        forced = request.tool_choice.forced and bool(request.tools)
        llm.set_seed(llama_cpp.LLAMA_DEFAULT_SEED if sampling.seed is None else sampling.seed & 0xFFFFFFFF)
        output = _Output(request, emit, forced)
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        reason, produced = FinishReason.LENGTH, 0
        generator = llm.generate(
            tokens,
            temp=temperature,
            top_p=sampling.top_p or 0.95,
            top_k=40,
            min_p=0.05,
            repeat_penalty=1.0,
            grammar=self._grammar(request) if forced else None,
        )
        try:
            for token in generator:
                if cancel.is_set():
                    reason = FinishReason.CANCELLED
                    break
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    reason = FinishReason.STOP
                    break
                produced += 1
                if output.feed(decoder.decode(llm.detokenize([token]))):
                    reason = FinishReason.STOP
                    break
                if produced >= max_tokens:
                    break
                if cancel.is_set():
                    reason = FinishReason.CANCELLED
                    break
        finally:
            generator.close()
        reason = output.finish(decoder.decode(b"", final=True), reason)
        usage = TokenUsage(input_tokens=len(tokens), output_tokens=produced, cached_tokens=cached)
        return Done(reason, usage), "".join(output.sent)

    def _cache_next_opening(self, llm: Any, request: GenerationRequest, reply: str) -> None:
        """Evaluate the conversation up to the next user message's words (the reply as sent, its end-of-turn
        and the user header) into the context, as the next turn's prompt will start."""
        messages = [*self._prompt_messages(request), {"role": "assistant", "content": reply},
                    {"role": "user", "content": _MARK}]
        formatted = self._formatter(messages=messages)
        cut = formatted.prompt.find(_MARK)
        if cut < 0:
            return
        tokens = llm.tokenize(formatted.prompt[:cut].encode(), add_bos=not formatted.added_special, special=True)
        prefix = _common_prefix(llm, tokens)
        if prefix == len(tokens) or len(tokens) - prefix > MAX_OPENING_TOKENS or prefix == 0:
            return  # nothing to add, or not this conversation's continuation
        if prefix < llm.n_tokens:
            if not llm._ctx.kv_cache_seq_rm(-1, prefix, -1):  # as llama-cpp-python's own prefix reuse does
                return
            llm.n_tokens = prefix
        llm.eval(tokens[prefix:])

    def _prompt_tokens(self, llm: Any, request: GenerationRequest) -> list[int]:
        formatted = self._formatter(messages=self._prompt_messages(request))
        return llm.tokenize(formatted.prompt.encode(), add_bos=not formatted.added_special, special=True)

    def _prompt_messages(self, request: GenerationRequest) -> list[dict[str, str]]:
        messages = [_chat_dict(message) for message in request.messages]
        if request.tools and request.tool_choice.mode != "none":
            # In the first system message, where small models follow it best (they parrot it when it
            # comes last); tools that stay the same from turn to turn keep the prefix cached.
            block = tools_prompt(request.tools, request.tool_choice)
            if messages[0]["role"] == "system":
                messages[0] = {"role": "system", "content": f"{messages[0]['content']}\n\n{block}"}
            else:
                messages.insert(0, {"role": "system", "content": block})
        return messages

    def _grammar(self, request: GenerationRequest) -> Any:
        from llama_cpp import LlamaGrammar

        schema = call_schema(request.tools, request.tool_choice)
        try:
            return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        except Exception as exc:  # the converter raises plain exceptions on schemas it cannot express
            raise InvalidInput(f"cannot build a decoding grammar from the tool schema: {exc}") from None


def _chat_dict(message: Message) -> dict[str, str]:
    content = message.content
    if message.tool_calls:
        content += render_tool_calls(message.tool_calls)
    return {"role": message.role, "content": content}


def _common_prefix(llm: Any, tokens: Sequence[int]) -> int:
    """How many of ``tokens`` the context holds already, from the start."""
    prefix = 0
    for old, new in zip(llm.input_ids[: llm.n_tokens], tokens):
        if old != new:
            break
        prefix += 1
    return prefix


def _reusable_prefix(llm: Any, tokens: Sequence[int]) -> int:
    """Prompt tokens llama.cpp will take from the context instead of evaluating them."""
    return min(_common_prefix(llm, tokens), len(tokens) - 1) if llm.n_tokens else 0


class _Output:
    """Turns generated text into events: stop sequences, then either the text
    (with ``<tool_call>`` blocks taken out) or, for a forced call, the call."""

    def __init__(self, request: GenerationRequest, emit: Callable, forced: bool):
        self.request = request
        self.emit = emit
        self.forced = forced
        self.stops = tuple(request.sampling.stop)
        self.held = ""
        self.collected: list[str] = []
        self.sent: list[str] = []  # the text emitted, as the conversation keeps it
        use_tools = request.tools and request.tool_choice.mode == "auto"
        self.scanner = ToolCallScanner(request.tools if use_tools else ())

    def feed(self, piece: str) -> bool:
        """Take a piece of text; True when a stop sequence was reached."""
        if self.forced:
            self.collected.append(piece)
            return False
        self.held += piece
        hits = [index for index in (self.held.find(stop) for stop in self.stops) if index >= 0]
        if hits:
            self._text(self.held[: min(hits)])
            self.held = ""
            return True
        keep = max((_overlap(self.held, stop) for stop in self.stops), default=0)
        self._text(self.held[: len(self.held) - keep])
        self.held = self.held[len(self.held) - keep :]
        return False

    def finish(self, tail: str, reason: FinishReason) -> FinishReason:
        """Flush what is held; returns the finish reason (TOOL_CALLS when calls were made)."""
        if self.forced:
            if reason is FinishReason.CANCELLED:
                return reason
            call = forced_call("".join(self.collected) + tail, self.request.tools, self.request.tool_choice)
            if call is None:
                return FinishReason.LENGTH
            self.emit(ToolCallMade(call))
            return FinishReason.TOOL_CALLS
        self._text(self.held + tail)
        self.held = ""
        text, calls = self.scanner.finish()
        if text:
            self._say(text)
        for call in calls:
            self.emit(ToolCallMade(call))
        return FinishReason.TOOL_CALLS if calls and reason is not FinishReason.CANCELLED else reason

    def _text(self, text: str) -> None:
        if text and (text := self.scanner.feed(text)):
            self._say(text)

    def _say(self, text: str) -> None:
        self.sent.append(text)
        self.emit(TextDelta(text))


def _overlap(text: str, stop: str) -> int:
    """Length of the longest end of ``text`` that begins ``stop``."""
    for size in range(min(len(stop) - 1, len(text)), 0, -1):
        if text.endswith(stop[:size]):
            return size
    return 0
