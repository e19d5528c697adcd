"""Debian's chromium, headless, driven over the DevTools protocol (a WebSocket, through ``websockets``).

The microphone is a WAV file (``--use-file-for-fake-audio-capture``, played once) and the permission
prompt is answered yes; autoplay needs no gesture, so the page's AudioContext runs as soon as it is made.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import websockets

from voicemesh.process import free_port


def chromium() -> str | None:
    return shutil.which("chromium")


class Browser:
    """One headless chromium process and its first page."""

    def __init__(self, folder: Path, microphone: Path):
        self.port = free_port()
        self.log = open(folder / "chromium.log", "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-dev-shm-usage", f"--user-data-dir={folder / 'profile'}",
             f"--remote-debugging-port={self.port}", "--remote-allow-origins=*",
             "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
             f"--use-file-for-fake-audio-capture={microphone}%noloop",
             "--autoplay-policy=no-user-gesture-required", "--window-size=1280,900", "about:blank"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.ws = None
        self._ids = itertools.count(1)

    async def open(self) -> Browser:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=2) as r:
                    pages = [t for t in json.load(r) if t["type"] == "page"]
                if pages:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not open its DevTools port (exit {self.proc.poll()})")
            await asyncio.sleep(0.2)
        self.ws = await websockets.connect(pages[0]["webSocketDebuggerUrl"], max_size=64 * 2**20)
        return self

    async def call(self, method: str, **params) -> dict:
        call_id = next(self._ids)
        await self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:  # events arrive in between; nothing here waits on them
            message = json.loads(await self.ws.recv())
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    async def eval(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)
        await self.until("document.readyState === 'complete' && !!window.vmConsole", 15)

    async def until(self, expression: str, timeout: float, what: str = ""):
        """Poll ``expression`` until it is truthy; fail with the page's state after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.eval(expression)
            if value:
                return value
            await asyncio.sleep(0.25)
        state = await self.eval("JSON.stringify(window.vmConsole || null)")
        raise AssertionError(f"timed out after {timeout} s waiting for {what or expression}; page state: {state}")

    async def screenshot(self, path: Path) -> None:
        data = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(data["data"]))

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
