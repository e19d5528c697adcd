"""Split text that arrives in small pieces into segments worth synthesizing.

An LLM streams a reply a few characters at a time; a TTS engine wants whole
sentences. ``Segmenter`` buffers the pieces and cuts a segment as soon as a
sentence is certainly complete (its end mark is followed by white space, so
"3.5" and "e.g." do not cut), at a line break, and at ``max_chars`` for
run-on text.

The first segment of a reply is cut shorter, because a voice such as piper
synthesizes a whole segment before its first sample: a short first piece is
heard sooner, and the rest of the sentence is synthesized while it plays.
That piece ends at a clause mark (, ; : —) once the clause has
``first_clause_min_chars``, else after ``first_words`` words (or a word or
two more, so it does not end on "the", "of" or "and": ``LEANING``). Either cut is
made only when at least ``MIN_REST_WORDS`` words of the same sentence follow
it (received, or known to come because the sentence has not ended), so no
piece is a lone word, which a voice speaks with odd prosody.

Offsets are Unicode code points in all text pushed since the segmenter was
made, so a client can map audio back to the exact text it sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SENTENCE_MARKS = ".!?…。！？"
CLAUSE_MARKS = ",;:—–、，；："
CLOSERS = "\"')]}”’»"
MIN_REST_WORDS = 2  # words of a sentence that must follow an early cut in it
# A word: white-space-separated text holding a letter or digit (its punctuation included).
_WORD = re.compile(r"\S*\w\S*")
# Words that lean on the next one: a first piece ending on one ("of the") sounds cut off, so it takes one more.
LEANING = frozenset(
    "a an the of to in on at for with from by as and or but nor so if than that this these those my your our "
    "their his her its is are was were be am".split()
)
# Lower-case words that end with a period without ending the sentence.
ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc e.g i.e fig no approx inc ltd co mt ave dept est".split()
)


@dataclass(frozen=True)
class Segment:
    """A piece of text to synthesize and where it lies in the stream's text."""

    index: int
    text: str
    char_start: int
    char_end: int
    # White space before it that belongs to its sentence: the previous segment ended inside that sentence
    # (an early cut, a Flush, a line break or max_chars). Billed with it, so what a sentence costs does not
    # depend on where it was cut.
    lead: int = 0

    @property
    def billed(self) -> int:
        """Characters this segment bills: its text and its ``lead``."""
        return len(self.text) + self.lead


class Segmenter:
    """Incremental sentence splitter (pure logic, no I/O).

    ``push`` takes the next piece of text and returns the segments it
    completed; ``flush`` returns what is left; ``clear`` drops the buffer.
    A segment holds at least one letter or digit: text of only spaces and
    punctuation is never a segment.
    """

    def __init__(self, *, max_chars: int = 250, first_clause_min_chars: int = 16, first_words: int = 4):
        if max_chars < 8:
            raise ValueError("max_chars must be at least 8")
        if first_words < 2:
            raise ValueError("first_words must be at least 2 (a one-word piece sounds odd)")
        self.max_chars = max_chars
        self.first_clause_min_chars = first_clause_min_chars
        self.first_words = first_words
        self._buffer = ""
        self._start = 0  # offset of _buffer[0] in all text received
        self._next_index = 0
        self._early = True  # the next segment opens a reply and may be a clause
        self._open = False  # the last segment ended inside a sentence (the next one gets a lead)

    @property
    def buffered(self) -> int:
        """Characters received but not yet in a segment."""
        return len(self._buffer)

    @property
    def received(self) -> int:
        """Characters received in total."""
        return self._start + len(self._buffer)

    def push(self, text: str) -> list[Segment]:
        """Add a piece of text; return the segments it completed."""
        self._buffer += text
        segments: list[Segment] = []
        while (cut := self._find_cut()) is not None:
            segments.extend(self._take(cut))
        return segments

    def flush(self) -> list[Segment]:
        """Cut everything buffered into segments; the next segment opens a new reply."""
        segments: list[Segment] = []
        while len(self._buffer) > self.max_chars:
            segments.extend(self._take(self._overflow_cut()))
        segments.extend(self._take(len(self._buffer)))
        self._early = True
        return segments

    def clear(self) -> int:
        """Drop the buffer; return how many non-blank characters were dropped."""
        dropped = len(self._buffer.strip())
        self._start += len(self._buffer)
        self._buffer = ""
        self._early = True
        self._open = False
        return dropped

    def _find_cut(self) -> int | None:
        """Index just past the end of the first complete segment, if there is one."""
        end = self._sentence_end()
        if self._early:
            early = self._early_cut(self._buffer[:end] if end is not None else self._buffer, ended=end is not None)
            if early is not None:
                return early
        if end is not None:
            return end
        if len(self._buffer) > self.max_chars:
            return self._overflow_cut()
        return None

    def _sentence_end(self) -> int | None:
        """Index just past the first sentence (or line) that is certainly complete."""
        text = self._buffer
        i = 0
        while i < len(text):
            char = text[i]
            if char == "\n" and text[:i].strip():
                return i + 1
            if char in SENTENCE_MARKS:
                end = _skip(text, i + 1, SENTENCE_MARKS + CLOSERS)
                if end < len(text) and text[end].isspace() and not _is_abbreviation(text, i):
                    return end
                if end >= len(text):
                    return None  # the next piece decides
                i = end
                continue
            i += 1
        return None

    def _early_cut(self, sentence: str, *, ended: bool) -> int | None:
        """Where the first piece of a reply ends within its first ``sentence``, if it is cut early.

        ``ended``: the sentence is complete, so the words after a cut are all
        known; otherwise a cut also waits until enough words follow it.
        """
        words = [(m.start(), m.end()) for m in _WORD.finditer(sentence)]
        # A word is complete once white space follows it (or the sentence ended).
        complete = [w for w in words if ended or w[1] < len(sentence)]
        for n, (_, word_end) in enumerate(complete, start=1):
            clause = (sentence[word_end - 1] in CLAUSE_MARKS
                      and len(sentence[:word_end].strip()) >= self.first_clause_min_chars)
            if not clause and (n < self.first_words or _bare(sentence, word_end).lower() in LEANING):
                continue
            if len(words) - n < MIN_REST_WORDS:
                return None  # too few words follow yet (or ever, when the sentence ended)
            return word_end
        return None

    def _overflow_cut(self) -> int:
        """Where to cut text longer than ``max_chars``: a clause mark, else a space, else anywhere."""
        window = self._buffer[: self.max_chars]
        for marks in (CLAUSE_MARKS, " \t"):
            best = max(window.rfind(mark) for mark in marks)
            if best >= self.max_chars // 3:
                return best + 1
        return self.max_chars

    def _take(self, cut: int) -> list[Segment]:
        raw, self._buffer = self._buffer[:cut], self._buffer[cut:]
        start, self._start = self._start, self._start + cut
        text = raw.strip()
        if not any(c.isalnum() for c in text):
            return []
        space = len(raw) - len(raw.lstrip())
        segment = Segment(self._next_index, text, start + space, start + space + len(text),
                          lead=space if self._open else 0)
        self._next_index += 1
        self._early = False
        self._open = not ends_sentence(text)
        return [segment]


def ends_sentence(text: str) -> bool:
    """Whether ``text`` ends with a sentence mark (closing quotes or brackets after it allowed)."""
    stripped = text.rstrip().rstrip(CLOSERS)
    return bool(stripped) and stripped[-1] in SENTENCE_MARKS


def _skip(text: str, i: int, chars: str) -> int:
    while i < len(text) and text[i] in chars:
        i += 1
    return i


def _bare(text: str, end: int) -> str:
    """The word ending at ``end`` without its punctuation."""
    start = end
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    return text[start:end].strip(SENTENCE_MARKS + CLAUSE_MARKS + CLOSERS + "\"'([{“‘«")


def _is_abbreviation(text: str, mark: int) -> bool:
    """Whether the period at ``mark`` ends an abbreviation such as "Dr." or "e.g."."""
    if text[mark] != ".":
        return False
    start = mark
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    word = text[start:mark].lstrip("\"'([{“‘«").lower()
    return word in ABBREVIATIONS
