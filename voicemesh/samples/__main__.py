"""Regenerate the shipped sample audio: ``python -m voicemesh.samples [PATH]``."""

import sys

from voicemesh.samples import QUESTION_TEXT, regenerate

if __name__ == "__main__":
    written = regenerate(sys.argv[1] if len(sys.argv) > 1 else None)
    print(f"wrote {written}: {QUESTION_TEXT!r}")
