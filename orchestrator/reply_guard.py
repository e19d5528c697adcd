"""The reply-length guard of a spoken reply: a cap in tokens and in seconds of speech, and loop detection.

A small model at temperature 0 can repeat one line until its token limit;
played at real time that is a minute of speech nobody asked for. The guard
sits between the LLM's text and the voice: every text delta passes through
``admit``, which returns the part to speak and, once a limit is reached,
nothing more. The reply then cancels the generation. Pure logic: no I/O.

Tokens are counted as streamed text deltas (a delta carries at least one
token; llama.cpp sends one per token). Seconds are estimated from the text
at the voice's speaking rate, before the audio exists, so the cut comes
before the voice spends time on text that will not be played.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_MAX_SECONDS = 30.0
# A repeat shorter than this is ordinary speech ("No, no.", a refrain of two words).
MIN_REPEAT_CHARS = 12
TAIL_CHARS = 32  # a stretch this long seen twice before the end of the text: a loop without sentence ends
_SENTENCE_END = re.compile(r"[.!?\n]+")
_WORDS = re.compile(r"[^\w]+")


@dataclass(frozen=True)
class ReplyLimits:
    """How long one spoken reply may be (``agent.proto`` ``ReplyLimits``, resolved)."""

    max_tokens: int = 0  # 0: no cap of the guard's own (the orchestrator's --max-tokens still bounds the LLM)
    max_seconds: float = DEFAULT_MAX_SECONDS
    stop_repetition: bool = True


class ReplyGuard:
    """Counts one reply's text and says when to stop it (``cut``: why, or "" while it may go on)."""

    def __init__(self, limits: ReplyLimits):
        self.limits = limits
        self.tokens = 0
        self.text = ""  # the text admitted so far
        self.cut = ""  # "max_tokens", "max_seconds" or "repetition" once the guard stopped the reply
        self._sentences: set[str] = set()
        self._checked = 0  # text before this offset has been split into sentences already

    @property
    def stopped(self) -> bool:
        return bool(self.cut)

    def admit(self, delta: str, seconds_per_char: float) -> str:
        """The part of ``delta`` to speak ("" once stopped)."""
        if self.cut or not delta:
            return ""
        self.tokens += 1
        limits = self.limits
        if limits.max_seconds > 0 and seconds_per_char > 0:
            room = int(limits.max_seconds / seconds_per_char) - len(self.text)
            if room < len(delta):
                # Over the budget: end at the last word boundary that still fits.
                kept = delta[:max(0, room)]
                if kept and not delta[len(kept)].isspace():  # the cut falls inside a word: drop the piece
                    kept = kept[: kept.rfind(" ") + 1]
                self.cut = "max_seconds"
                self.text += kept
                return kept
        self.text += delta
        if limits.stop_repetition and self._repeating():
            self.cut = "repetition"
        elif limits.max_tokens > 0 and self.tokens >= limits.max_tokens:
            self.cut = "max_tokens"
        return delta

    def _repeating(self) -> bool:
        """A whole sentence said before, or the same stretch of text three times over."""
        ends = list(_SENTENCE_END.finditer(self.text, self._checked))
        for end in ends:
            sentence = _WORDS.sub(" ", self.text[self._checked:end.start()]).strip().lower()
            self._checked = end.end()
            if len(sentence) < MIN_REPEAT_CHARS:
                continue
            if sentence in self._sentences:
                return True
            self._sentences.add(sentence)
        tail = self.text[-TAIL_CHARS:]
        return len(tail) == TAIL_CHARS and self.text.count(tail) >= 3

    def report(self) -> tuple[str, int]:
        """(why the reply was cut, or ""; text deltas counted) for the turn's metrics."""
        return self.cut, self.tokens
