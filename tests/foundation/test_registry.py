import sys

import pytest

from tests.foundation import plugin
from voicemesh.backend import BackendCache, RemoteOptions
from voicemesh.descriptors import parse
from voicemesh.errors import InvalidInput, ModelNotFound
from voicemesh.registry import Registry, group


@pytest.fixture
def plugin_on_path(tmp_path, monkeypatch):
    plugin.install(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop(plugin.MODULE, None)


def test_builtin_providers_are_registered():
    assert {"faster-whisper", "openai"} <= set(Registry("stt").providers())
    assert {"llama.cpp", "openai"} <= set(Registry("llm").providers())
    assert {"piper", "openai"} <= set(Registry("tts").providers())


def test_unknown_provider_is_not_found_and_names_known_ones():
    with pytest.raises(ModelNotFound) as info:
        Registry("tts").backend_class("nosuch")
    assert "unknown tts provider 'nosuch'" in str(info.value)
    assert "piper" in str(info.value)
    assert "piper" in info.value.known


def test_unknown_modality():
    with pytest.raises(InvalidInput, match="unknown modality"):
        group("video")


def test_entry_point_of_a_third_party_package(plugin_on_path):
    registry = Registry("llm")
    assert "gated" in registry.providers()
    cls = registry.backend_class("gated")
    assert cls.__module__ == plugin.MODULE
    assert [c.descriptor for c in cls.catalog(None)] == ["gated/model"]


async def test_backend_cache_loads_once_and_rejects_unknown_models(plugin_on_path, monkeypatch):
    gate = plugin_on_path / "gate"
    gate.touch()
    monkeypatch.setenv("GATE_FILE", str(gate))
    cache = BackendCache(Registry("llm"), settings=None)
    first = await cache.get(parse("gated/model"))
    second = await cache.get(parse("gated/model"), RemoteOptions())
    assert first is second
    with pytest.raises(ModelNotFound, match="known models: gated/model"):
        await cache.get(parse("gated/other"))
    assert "gated/model" in [c.descriptor for c in cache.catalog()]
