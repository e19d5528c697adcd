"""A mesh with an avatar service (as `voicemesh up --avatar` writes it) still lists its models through the gateway."""

from __future__ import annotations

import httpx
import pytest

from tests.gateway.test_gateway import running_gateway
from voicemesh.mesh import MeshConfig

pytestmark = pytest.mark.slow


def test_gateway_models_include_the_avatars(service_process, tmp_path):
    avatar = service_process("avatar")
    with running_gateway(MeshConfig({"avatar": {"*": [avatar.address]}}), tmp_path) as base:
        response = httpx.get(base + "/models", timeout=30)
    assert response.status_code == 200, response.text
    assert {"local/ada", "orb/pulse"} <= {m["id"] for m in response.json()["data"]}
