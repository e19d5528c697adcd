"""The openai npm SDK against the gateway: tests/gateway/node/*.test.mjs under node's test runner."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_TESTS = Path(__file__).parent / "node"


def test_openai_npm_sdk(openai_mesh):
    if shutil.which("node") is None or not (NODE_TESTS / "node_modules" / "openai").is_dir():
        pytest.skip("node or the openai npm package is missing: scripts/dev setup installs tests/gateway/node")
    result = subprocess.run(["node", "--test", "--test-reporter=spec"], cwd=NODE_TESTS, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "VOICEMESH_GATEWAY_URL": openai_mesh})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# pass 4" in result.stdout or "ℹ pass 4" in result.stdout, result.stdout
