"""SubRip (srt) and WebVTT (vtt) text from timed cues, as OpenAI's transcription formats."""

from __future__ import annotations


def _stamp(ms: int, separator: str) -> str:
    hours, rest = divmod(max(ms, 0), 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


def srt(cues: list[tuple[int, int, str]]) -> str:
    """Numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, a blank line after each."""
    return "".join(f"{i}\n{_stamp(start, ',')} --> {_stamp(end, ',')}\n{text}\n\n"
                   for i, (start, end, text) in enumerate(cues, 1))


def vtt(cues: list[tuple[int, int, str]]) -> str:
    """A ``WEBVTT`` header, then cues with ``HH:MM:SS.mmm`` times."""
    return "WEBVTT\n\n" + "".join(f"{_stamp(start, '.')} --> {_stamp(end, '.')}\n{text}\n\n"
                                  for start, end, text in cues)
