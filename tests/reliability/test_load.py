"""bench/load.py run small: concurrent real-time sessions through the mesh, no errors, every chunk arrives.

Figures (overhead p99 against the 5 ms budget, memory per session) are the benchmark's job; this test
only proves the harness and the mesh hold a few concurrent sessions without losing audio or failing.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_small_load_run_has_no_errors_and_every_chunk_arrives(tmp_path):
    out = tmp_path / "load.json"
    subprocess.run([sys.executable, str(ROOT / "bench/load.py"), "--sessions", "3", "--seconds", "4",
                    "--out", str(out), "--logs", str(tmp_path / "logs")], check=True, timeout=300, cwd=ROOT)
    summary = json.loads(out.read_text())
    (level,) = summary["levels"]
    assert level["sessions"] == 3
    assert level["errors"] == []
    assert level["chunks_not_arrived"] == 0
    assert level["chunks"] == 3 * 4000 // 20  # every 20 ms chunk of every session was seen by the probe
    assert math.isfinite(level["overhead_p99_ms"]) and level["overhead_p50_ms"] > 0
    assert level["orchestrator_rss_peak_mb"] >= level["orchestrator_rss_before_mb"] > 0
