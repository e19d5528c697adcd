"""Split text that arrives in small pieces into segments worth synthesizing.

An LLM streams a reply a few characters at a time; a TTS engine wants whole
sentences. ``Segmenter`` buffers the pieces and cuts a segment as soon as a
sentence is certainly complete (its end mark is followed by white space, so
"3.5" and "e.g." do not cut), at a line break, at a clause mark for the first
segment of a reply when that clause is long enough (a short first clause
reaches the listener sooner), and at ``max_chars`` for run-on text.

Offsets are Unicode code points in all text pushed since the segmenter was
made, so a client can map audio back to the exact text it sent.
"""

from __future__ import annotations

from dataclasses import dataclass

SENTENCE_MARKS = ".!?…。！？"
CLAUSE_MARKS = ",;:—–、，；："
CLOSERS = "\"')]}”’»"
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


class Segmenter:
    """Incremental sentence splitter (pure logic, no I/O).

    ``push`` takes the next piece of text and returns the segments it
    completed; ``flush`` returns what is left; ``clear`` drops the buffer.
    A segment holds at least one letter or digit: text of only spaces and
    punctuation is never a segment.
    """

    def __init__(self, *, max_chars: int = 250, first_clause_min_chars: int = 16):
        if max_chars < 8:
            raise ValueError("max_chars must be at least 8")
        self.max_chars = max_chars
        self.first_clause_min_chars = first_clause_min_chars
        self._buffer = ""
        self._start = 0  # offset of _buffer[0] in all text received
        self._next_index = 0
        self._early = True  # the next segment opens a reply and may be a clause

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
        return dropped

    def _find_cut(self) -> int | None:
        """Index just past the end of the first complete segment, if there is one."""
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
                    break  # the next piece decides
                i = end
                continue
            if (
                self._early
                and char in CLAUSE_MARKS
                and i + 1 < len(text)
                and text[i + 1].isspace()
                and len(text[: i + 1].strip()) >= self.first_clause_min_chars
            ):
                return i + 1
            i += 1
        if len(text) > self.max_chars:
            return self._overflow_cut()
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
        lead = len(raw) - len(raw.lstrip())
        segment = Segment(self._next_index, text, start + lead, start + lead + len(text))
        self._next_index += 1
        self._early = False
        return [segment]


def _skip(text: str, i: int, chars: str) -> int:
    while i < len(text) and text[i] in chars:
        i += 1
    return i


def _is_abbreviation(text: str, mark: int) -> bool:
    """Whether the period at ``mark`` ends an abbreviation such as "Dr." or "e.g."."""
    if text[mark] != ".":
        return False
    start = mark
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    word = text[start:mark].lstrip("\"'([{“‘«").lower()
    return word in ABBREVIATIONS
