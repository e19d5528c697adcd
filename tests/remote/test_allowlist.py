"""How an operator's allowlist matches the base_url a client names (pure logic, no server)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from voicemesh.backend import RemoteOptions
from voicemesh.errors import InvalidInput, PermissionDenied
from voicemesh.targets import Allowlist, resolve, split

LIST = Allowlist.parse("https://api.example.com/v1, http://127.0.0.1:*")


@pytest.mark.parametrize("url", ["https://api.example.com/v1", "https://api.example.com/v1/", "https://API.example.com/v1",
                                 "https://api.example.com:443/v1", "https://api.example.com/v1/deployments/x",
                                 "wss://api.example.com/v1", "http://127.0.0.1:9/v1", "http://127.0.0.1"])
def test_listed(url):
    assert LIST.allows(split(url))


@pytest.mark.parametrize("url", ["https://api.example.com/v10", "https://api.example.com", "http://api.example.com/v1",
                                 "https://api.example.com:8443/v1", "https://api.example.com.evil.net/v1",
                                 "https://evil.net/api.example.com/v1", "http://localhost:9/v1", "http://[::1]:9/v1",
                                 "http://169.254.169.254/latest"])
def test_not_listed(url):
    assert not LIST.allows(split(url))


@pytest.mark.parametrize("url", ["not a url", "ftp://api.example.com/v1", "https://user:pw@api.example.com/v1",
                                 "https://api.example.com/v1/../admin", "https://api.example.com/v1/%2e%2e/admin",
                                 "https://api.example.com/v1?x=1", "http://127.0.0.1:99999/v1"])
def test_malformed_urls_are_invalid_argument(url):
    with pytest.raises(InvalidInput):
        split(url)


def test_a_bad_allowlist_entry_is_a_settings_error():
    with pytest.raises(ValueError, match="VOICEMESH_ALLOWED_BASE_URLS"):
        Allowlist.parse("https://ok.example.com, file:///etc")


def test_the_operator_key_goes_only_to_the_operator_url(monkeypatch):
    monkeypatch.setenv("VOICEMESH_ACME_BASE_URL", "https://llm.internal/v1")
    monkeypatch.setenv("VOICEMESH_ACME_API_KEY", "sk-operator")
    args = {"provider": "acme", "default_base_url": "https://acme.example/v1", "default_timeout_s": 30.0,
            "allowlist": LIST}
    own = resolve(RemoteOptions(), **args)
    assert (own.base_url, own.api_key, own.timeout_s) == ("https://llm.internal/v1", "sk-operator", 30.0)
    assert resolve(RemoteOptions(api_key="sk-client"), **args).api_key == "sk-client"
    chosen = resolve(RemoteOptions(base_url="https://api.example.com/v1"), **args)
    assert (chosen.base_url, chosen.api_key) == ("https://api.example.com/v1", "")
    same = resolve(RemoteOptions(base_url="https://llm.internal/v1/"), **args)  # the operator's URL, named
    assert same.api_key == ""
    with pytest.raises(PermissionDenied, match="--allowed-base-urls"):
        resolve(RemoteOptions(base_url="https://elsewhere.example/v1", api_key="sk-client"), **args)
    with pytest.raises(InvalidInput):
        resolve(RemoteOptions(timeout_s=-1), **args)


def test_a_bad_allowlist_entry_is_a_usage_error_not_a_traceback():
    result = subprocess.run([sys.executable, "-m", "voicemesh.cli", "serve", "tts", "--port", "0",
                             "--allowed-base-urls", "http://127.0.0.1:*,ftp://files.example"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--allowed-base-urls" in result.stderr and "'ftp://files.example'" in result.stderr
    assert "Traceback" not in result.stderr
