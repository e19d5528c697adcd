"""How finished a transcript looks as a spoken turn (pure logic, no model)."""

from __future__ import annotations

import re

from voicemesh.speech.segmenter import CLOSERS

TERMINAL = ".?!…。？！"
# Words after which an utterance is almost never complete.
OPEN_WORDS = frozenset(
    """and or but because since although though if when while whereas unless until than which whose the a an my
    your his her our their these those to of in on at for with from by about into as um uh er erm""".split()
)


def has_words(text: str) -> bool:
    """Whether a transcript holds a word (not only punctuation, as STT gives for noise)."""
    return re.search(r"\w", text) is not None


def completeness(text: str) -> float:
    """How finished ``text`` looks as a spoken turn: 1.0 finished, 0.0 clearly not.

    A heuristic on the transcript: terminal punctuation is needed; a trailing
    colon, dash or ellipsis, or a last word that opens a clause (a
    conjunction, article, preposition or filler) before a period means the
    user is still going (0.0). A trailing comma or semicolon is a doubt (0.2),
    as is no closing mark at all (0.3): the STT writes one where a finished
    sentence was cut by a pause ("... arrive in Lyon,"), so a policy that
    hears the audio may overrule it. A question or exclamation mark ends
    the turn.
    """
    stripped = text.strip()
    if not stripped:
        return 0.0
    if stripped.endswith(("...", "…", ":", "-", "—", "–")):
        return 0.0
    last = _last_mark(stripped)
    if last in ("?", "？", "!", "！"):
        return 1.0  # a question or an exclamation is complete whatever its last word
    words = re.findall(r"[\w']+", stripped.lower())
    if words and words[-1] in OPEN_WORDS:
        return 0.0
    if last and last in TERMINAL:
        return 1.0
    return 0.2 if last in (",", ";", "，", "；") else 0.3


def asks(text: str) -> bool:
    """Whether the transcript ends in a question mark (the STT heard a question)."""
    return _last_mark(text.strip()) in ("?", "？")


def _last_mark(text: str) -> str:
    """The last character of ``text`` before any closing quotes or brackets."""
    return text.rstrip(CLOSERS)[-1:]


def looks_finished(text: str) -> bool:
    """Whether the transcript reads as a complete turn."""
    return completeness(text) >= 0.5


def same_words(a: str, b: str) -> bool:
    """Whether two transcripts say the same words (case and punctuation aside)."""
    def words(text: str) -> list[str]:
        return re.findall(r"[\w']+", text.lower())
    return bool(words(a)) and words(a) == words(b)
