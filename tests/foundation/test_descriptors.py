import pytest

from voicemesh.descriptors import Descriptor, parse
from voicemesh.errors import InvalidInput


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("faster-whisper/tiny.en:en", Descriptor("faster-whisper", "tiny.en", "en")),
        ("llama.cpp/smollm2-135m-instruct", Descriptor("llama.cpp", "smollm2-135m-instruct", None)),
        ("piper/en_US-joe-medium", Descriptor("piper", "en_US-joe-medium", None)),
        ("openai/tts-1:alloy", Descriptor("openai", "tts-1", "alloy")),
        # provider ends at the first '/', the variant starts after the last ':'
        ("openrouter/meta/llama-3:8b:q4", Descriptor("openrouter", "meta/llama-3:8b", "q4")),
    ],
)
def test_parse_valid(text, expected):
    parsed = parse(text)
    assert parsed == expected
    assert str(parsed) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("tiny.en", "no '/'"),
        ("/tiny.en", "invalid provider"),
        ("faster-whisper/", "names no model"),
        ("faster-whisper/:en", "names no model"),
        ("faster-whisper/tiny.en:", "names no variant"),
        ("faster whisper/tiny.en", "whitespace"),
        (" piper/x", "whitespace"),
        ("pi$per/x", "invalid provider"),
    ],
)
def test_parse_invalid(text, message):
    with pytest.raises(InvalidInput, match=message):
        parse(text)


def test_descriptor_is_frozen_and_variant_can_change():
    d = parse("faster-whisper/tiny.en:en")
    with pytest.raises(AttributeError):
        d.model = "base"  # type: ignore[misc]
    assert str(d.with_variant("de")) == "faster-whisper/tiny.en:de"
    assert str(d.with_variant(None)) == "faster-whisper/tiny.en"
