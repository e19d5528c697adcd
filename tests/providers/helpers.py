"""What the provider tests share: the STT double in a child process."""

from __future__ import annotations

import subprocess
import sys

from voicemesh.process import free_port

KEY = "dg-aai-test-key-0123"


class SttDouble:
    """tests/providers/stt_double.py in a child process on a free loopback port."""

    def __init__(self, *args: str):
        self.port = free_port()
        self.base_url = f"ws://127.0.0.1:{self.port}"
        self._proc = subprocess.Popen([sys.executable, "-m", "tests.providers.stt_double", "--port", str(self.port),
                                       "--api-key", KEY, *args], stdout=subprocess.PIPE, text=True)
        line = self._proc.stdout.readline()
        if line.strip() != "READY":
            self.stop()
            raise RuntimeError(f"the STT double did not start: {line!r}")

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(10)
