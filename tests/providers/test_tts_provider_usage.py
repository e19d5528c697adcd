"""What the streaming TTS providers share in a real TTS service: Describe lists them with their flags, and
their usage lands in the ledger in characters (the unit they bill)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from tests.metering.helpers import recorded_usage
from tests.providers.cartesia_double import CartesiaDouble
from tests.providers.deepgram_aura_double import DeepgramAuraDouble
from tests.providers.elevenlabs_double import ElevenLabsDouble
from tests.tts.helpers import config, stub, text
from voicemesh import metering
from voicemesh.metering import keys
from voicemesh.metering.ledger import open_store
from voicemesh.metering.prices import PriceTable
from voicemesh.v1 import tts_pb2

pytestmark = pytest.mark.slow

PROVIDERS = {
    "cartesia/sonic-2:9626c31c-bec5-4cca-baa8-f8ba9e84c8bc": (CartesiaDouble, "sk-cartesia-test"),
    "elevenlabs/eleven_flash_v2_5:21m00Tcm4TlvDq8ikWAM": (ElevenLabsDouble, "xi-test"),
    "deepgram/aura-2-thalia-en": (DeepgramAuraDouble, "dg-test"),
}


async def test_describe_lists_the_streaming_providers_with_their_flags(service_process):
    server = service_process("tts")
    async with grpc.aio.insecure_channel(server.address) as channel:
        description = (await stub(channel).Describe(tts_pb2.TtsServiceDescribeRequest())).description
    models = {m.descriptor: m for m in description.models}
    assert {"cartesia", "elevenlabs", "deepgram"} <= set(description.providers)
    for descriptor, alignment in (("cartesia/sonic-2", True), ("elevenlabs/eleven_flash_v2_5", True),
                                  ("deepgram/aura-2-thalia-en", False)):
        card = models[descriptor]
        assert card.capabilities.streaming and card.capabilities.alignment is alignment, descriptor
        assert 16000 in card.sample_rates_hz and 24000 in card.sample_rates_hz
        assert card.capabilities.word_times is descriptor.startswith("cartesia/"), descriptor


@pytest.mark.parametrize("descriptor", list(PROVIDERS))
async def test_provider_usage_lands_in_the_ledger_in_characters(service_process, tmp_path, descriptor):
    double_type, api_key = PROVIDERS[descriptor]
    double = double_type(api_key=api_key).start()
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    store = open_store(url)
    record, key = keys.create_key(store, "provider-usage")
    server = service_process("tts", env={"VOICEMESH_LEDGER": url})
    line = "Turn off the lights in the kitchen."
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            requests = [config(descriptor, rate=16000, base_url=double.base_url, api_key=api_key), text(line)]
            call = stub(channel).Synthesize(iter(requests), metadata=[("authorization", f"Bearer {key}")])
            responses = [r async for r in call]
    finally:
        double.stop()
    assert responses[-1].usage.characters == len(line)
    records = await recorded_usage(store, record.id)
    assert [(r.service, r.model, r.characters) for r in records] == [("tts", descriptor, len(line))]
    assert records[0].audio_seconds_out > 1.0
    # The example price table bills it per character.
    prices = PriceTable.load(Path(metering.__file__).parent / "prices.example.json")
    assert prices.price_of(descriptor) and "characters" in prices.price_of(descriptor)


async def test_a_provider_without_any_key_is_unauthenticated_before_connecting(service_process):
    double = CartesiaDouble().start()
    try:
        server = service_process("tts", env={"VOICEMESH_CARTESIA_BASE_URL": double.base_url})
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async with grpc.aio.insecure_channel(server.address) as channel:
                requests = [config("cartesia/sonic-2:9626c31c-bec5-4cca-baa8-f8ba9e84c8bc"), text("Hello.")]
                [r async for r in stub(channel).Synthesize(iter(requests))]
    finally:
        double.stop()
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "CARTESIA_API_KEY" in caught.value.details()
    assert double.headers == [], "a stream without a key still connected"
