"""``cartesia.TTS(...)`` and ``elevenlabs.TTS(...)``: LiveKit-style plugin instances become model choices."""

from __future__ import annotations

from voicemesh.client import cartesia, elevenlabs
from voicemesh.client.models import to_choice

VOICE = "9626c31c-bec5-4cca-baa8-f8ba9e84c8bc"


def test_cartesia_and_elevenlabs_instances_name_their_descriptors_and_options():
    voice = to_choice(cartesia.TTS(model="sonic-2", voice=VOICE, language="fr", speed=1.1)).candidates[0]
    assert (voice.descriptor, round(voice.speed, 3)) == (f"cartesia/sonic-2:{VOICE}", 1.1)
    assert voice.backend.extra == {"language": "fr"}
    assert to_choice(cartesia.TTS()).candidates[0].descriptor == "cartesia/sonic-2"
    eleven = to_choice([elevenlabs.TTS(voice="21m00Tcm4TlvDq8ikWAM", base_url="http://127.0.0.1:9/", api_key="xi"),
                        "piper/en_US-joe-medium"]).candidates
    assert eleven[0].descriptor == "elevenlabs/eleven_flash_v2_5:21m00Tcm4TlvDq8ikWAM"
    assert (eleven[0].backend.base_url, eleven[0].backend.api_key) == ("http://127.0.0.1:9/", "xi")
    assert eleven[1].descriptor == "piper/en_US-joe-medium"
