"""What of the agent's reply the user has heard, and audio sent at real time.

Pure logic. A reply's text goes to a TTS stream; its audio comes back in
chunks tagged with the character span of the segment they speak. The
session sends that audio to the client paced at real time, so the audio
the client has played is about the audio sent, bounded by the wall time
since the first chunk went out. On an interruption the reply is cut to the
text of that audio: whole segments played, plus the words of the segment in
progress in proportion to the part of it played (``cut``). The realtime
cascade's conversation cuts its items with the same rule (``heard_chars``).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass

LEAD_S = 0.08  # audio sent ahead of real time, so the client's playback never starves


@dataclass
class _Segment:
    char_start: int
    char_end: int
    first_sample: int  # position of its first sample in the stream's audio
    samples: int = 0  # received so far (or all, once done)
    done: bool = False


class Playout:
    """Audio of one TTS stream as sent to the client, mapped back to text.

    ``text`` is all text sent to the TTS stream (the chunks' character spans
    index into it). Sample counts are at the stream's output rate.
    """

    def __init__(self, rate: int, seconds_per_char: float = 0.07):
        self.rate = rate
        self.seconds_per_char = seconds_per_char  # speaking rate guess for a segment still arriving
        self.text = ""
        self._segments: dict[int, _Segment] = {}
        self.received_samples = 0
        self.sent_samples = 0
        self.first_sent_at: float | None = None  # wall clock (monotonic seconds)
        self.play_end = 0.0  # when the client will have played everything sent

    def add_text(self, text: str) -> None:
        self.text += text

    def chunk(self, *, segment_id: int, char_start: int, char_end: int, offset_samples: int, samples: int) -> None:
        """Record an audio chunk received from TTS."""
        segment = self._segments.get(segment_id)
        if segment is None:
            segment = self._segments[segment_id] = _Segment(char_start, char_end, offset_samples)
        segment.samples += samples
        self.received_samples = max(self.received_samples, offset_samples + samples)

    def segment_done(self, *, segment_id: int, char_start: int, char_end: int, samples: int) -> None:
        segment = self._segments.get(segment_id)
        if segment is None:
            segment = self._segments[segment_id] = _Segment(char_start, char_end, self.received_samples)
        segment.samples = samples
        segment.done = True

    def sent(self, samples: int, now: float) -> None:
        """Record audio handed to the client at ``now``; it plays after what the client still holds."""
        if self.first_sent_at is None:
            self.first_sent_at = now
        self.play_end = max(self.play_end, now) + samples / self.rate  # an underrun restarts the clock
        self.sent_samples += samples

    def played_samples(self, now: float) -> int:
        """Audio the client has played by ``now``: what was sent minus what it still holds."""
        if self.first_sent_at is None:
            return 0
        held = max(0.0, self.play_end - now) * self.rate
        return max(0, round(self.sent_samples - held))

    def spoken_chars(self, played: int) -> int:
        """Characters of ``text`` spoken by the first ``played`` samples (cut at a word boundary)."""
        kept = 0
        for segment in sorted(self._segments.values(), key=lambda s: s.first_sample):
            if segment.samples <= 0 or played <= segment.first_sample:
                break
            heard = played - segment.first_sample
            if heard >= segment.samples and segment.done:
                kept = segment.char_end
                continue
            text = self.text[segment.char_start : segment.char_end]
            total = segment.samples if segment.done else max(segment.samples, self._guess(len(text)))
            kept = max(kept, segment.char_start + cut(text, heard / total))
            break
        return kept

    def _guess(self, chars: int) -> int:
        """Samples of a segment of ``chars`` characters whose audio is not all here: from the done segments'
        rate, else from ``seconds_per_char``."""
        done = [s for s in self._segments.values() if s.done and s.char_end > s.char_start]
        if done:
            per_char = sum(s.samples for s in done) / sum(s.char_end - s.char_start for s in done)
        else:
            per_char = self.seconds_per_char * self.rate
        return int(chars * per_char)

    def spoken_text(self, played: int) -> str:
        return self.text[: self.spoken_chars(played)].strip()


class Pacer:
    """Audio handed to the client at real time plus ``LEAD_S``; after a stall it goes on from now, no burst."""

    def __init__(self, rate: int):
        self.rate = rate
        self.play_end = 0.0  # when the client will have played all audio handed over so far

    async def wait(self) -> None:
        """Sleep until the next chunk is due."""
        self.play_end = max(self.play_end, time.monotonic())
        ahead = self.play_end - time.monotonic() - LEAD_S
        if ahead > 0:
            await asyncio.sleep(ahead)

    def advance(self, samples: int) -> None:
        """A chunk of ``samples`` was handed over now."""
        self.play_end = max(self.play_end, time.monotonic()) + samples / self.rate


# Speaking time of a character relative to a letter: voices pause at punctuation.
_PAUSE = {",": 4.0, ";": 5.0, ":": 5.0, "—": 4.0, "–": 4.0, ".": 7.0, "!": 7.0, "?": 7.0, "…": 7.0}


def cut(text: str, fraction: float) -> int:
    """Characters of ``text`` spoken in ``fraction`` of its audio, ending after a whole word.

    Time is spread over the characters with longer weights for punctuation
    (pauses), and only words whose end falls within the fraction are kept.
    """
    if fraction >= 1.0:
        return len(text)
    weights = [_PAUSE.get(c, 1.0) for c in text]
    limit = fraction * sum(weights)
    end, spent, position = 0, 0.0, 0
    for match in re.finditer(r"\S+", text):
        spent += sum(weights[position:match.end()])
        position = match.end()
        if spent > limit:
            break
        end = match.end()
    return end


@dataclass(frozen=True)
class SpokenSpan:
    """Audio ``[start_ms, end_ms)`` of an item speaks its text ``[char_start, char_end)``."""

    start_ms: int
    end_ms: int
    char_start: int
    char_end: int


def heard_chars(text: str, spans: list[SpokenSpan], audio_end_ms: int) -> int:
    """How many characters of ``text`` the audio up to ``audio_end_ms`` speaks (``cut`` inside the span
    playing at that time, whole spans before it)."""
    heard = 0
    for span in spans:
        if span.end_ms <= audio_end_ms:
            heard = span.char_end
            continue
        if span.start_ms < audio_end_ms:
            fraction = (audio_end_ms - span.start_ms) / (span.end_ms - span.start_ms)
            heard = max(heard, span.char_start + cut(text[span.char_start:span.char_end], fraction))
        break
    return heard
