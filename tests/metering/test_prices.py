"""The price table: file checks, pattern matching, cost of units."""

from __future__ import annotations

import json

import pytest

from voicemesh.metering.prices import EXAMPLE, PriceTable
from voicemesh.metering.records import UNITS


def _write(tmp_path, data, name="prices.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data) if name.endswith(".json") else data)
    return path


def test_matching_order(tmp_path):
    table = PriceTable.load(_write(tmp_path, {"prices": {
        "openai/tts-1:alloy": {"characters": 3}, "openai/tts-1": {"characters": 2},
        "openai/*": {"characters": 1}, "*": {"characters": 0.5}}}))
    assert table.cost("openai/tts-1:alloy", {"characters": 10}) == 30
    assert table.cost("openai/tts-1:echo", {"characters": 10}) == 20
    assert table.cost("openai/tts-2:echo", {"characters": 10}) == 10
    assert table.cost("piper/en_US-joe-medium", {"characters": 10}) == 5
    narrow = PriceTable.load(_write(tmp_path, {"prices": {"piper/*": {"characters": 1}}}))
    assert narrow.cost("openai/tts-1", {"characters": 10}) is None


def test_cached_tokens_billed_at_their_price_or_as_input(tmp_path):
    table = PriceTable.load(_write(tmp_path, {"currency": "EUR", "prices": {
        "a/m": {"input_tokens": 1.0, "cached_tokens": 0.25, "output_tokens": 4.0},
        "b/m": {"input_tokens": 1.0, "output_tokens": 4.0}}}))
    units = {"input_tokens": 100, "cached_tokens": 40, "output_tokens": 10}
    assert table.cost("a/m", units) == 60 * 1.0 + 40 * 0.25 + 10 * 4.0
    assert table.cost("b/m", units) == 100 * 1.0 + 10 * 4.0
    assert table.currency == "EUR"


def test_toml_file(tmp_path):
    path = _write(tmp_path, 'currency = "USD"\n[prices."piper/*"]\ncharacters = 0.5\n', name="prices.toml")
    assert PriceTable.load(path).cost("piper/x", {"characters": 4, "audio_seconds_out": 9}) == 2.0


@pytest.mark.parametrize(("data", "message"), [
    ({}, "'prices' table"),
    ({"prices": {"a/b": {"tokens": 1}}}, "unknown unit 'tokens'"),
    ({"prices": {"a/b": {"characters": -1}}}, "must be a number >= 0"),
    ({"prices": {"a/b": {"characters": "cheap"}}}, "must be a number >= 0"),
    ({"prices": {"a/b": 3}}, "must be a table"),
])
def test_bad_files_name_the_problem(tmp_path, data, message):
    with pytest.raises(ValueError, match=message):
        PriceTable.load(_write(tmp_path, data))


def test_example_table_loads_and_prices_the_local_models():
    table = PriceTable.load(EXAMPLE)
    for model in ("faster-whisper/tiny.en:en", "llama.cpp/smollm2-135m-instruct", "piper/en_US-joe-medium"):
        assert table.cost(model, dict.fromkeys(UNITS, 1000)) > 0, model
