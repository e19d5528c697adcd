"""``describe`` → ``info``: the mesh's STT models and TTS voices as Wyoming programs.

Every STT and TTS address of the mesh config is asked for ``Describe``; each
model becomes a Wyoming ASR model or TTS voice named by its descriptor (what
``transcribe``/``synthesize`` then name), a TTS voice with several speakers
lists them.
"""

from __future__ import annotations

import logging

import grpc
from wyoming.info import AsrModel, AsrProgram, Attribution, Info, TtsProgram, TtsVoice, TtsVoiceSpeaker

from voicemesh import __version__
from voicemesh.edges.link import MeshLink
from voicemesh.errors import error_for_code
from voicemesh.v1 import common_pb2, stt_pb2, stt_pb2_grpc, tts_pb2, tts_pb2_grpc

log = logging.getLogger(__name__)

_DESCRIBE = {"stt": (stt_pb2_grpc.SttServiceStub, stt_pb2.SttServiceDescribeRequest),
             "tts": (tts_pb2_grpc.TtsServiceStub, tts_pb2.TtsServiceDescribeRequest)}
_REFUSED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


async def models(link: MeshLink, modality: str, timeout_s: float = 10.0) -> list[common_pb2.ModelInfo]:
    """The models every address of ``modality`` lists (first listing of a descriptor wins).

    An address that does not answer is skipped (logged); a refused key is raised, since every
    other call would be refused too.
    """
    stub_cls, request_cls = _DESCRIBE[modality]
    found: dict[str, common_pb2.ModelInfo] = {}
    addresses = sorted({a for addrs in link.mesh.routes.get(modality, {}).values() for a in addrs})
    for address in addresses:
        try:
            response = await stub_cls(link.clients.channel(address)).Describe(
                request_cls(), timeout=timeout_s, metadata=link.metadata())
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _REFUSED:
                raise error_for_code(exc.code().name, f"the {modality} service at {address} refused this "
                                     f"server's key: {exc.details()}") from None
            log.warning("%s service at %s did not answer Describe: %s", modality, address, exc.details())
            continue
        for model in response.description.models:
            found.setdefault(model.descriptor, model)
    return list(found.values())


def _attribution(model: common_pb2.ModelInfo) -> Attribution:
    return Attribution(name=model.provider, url="")


def asr_program(stt_models: list[common_pb2.ModelInfo]) -> AsrProgram:
    return AsrProgram(
        name="voicemesh-stt", attribution=Attribution(name="VoiceMesh", url=""), installed=True,
        description="VoiceMesh speech-to-text", version=__version__,
        models=[AsrModel(name=m.descriptor, attribution=_attribution(m), installed=True,
                         description=m.description or None, version=None, languages=list(m.languages))
                for m in stt_models],
        supports_transcript_streaming=True,
        # The STT service finds the end of speech itself, but Home Assistant's own VAD ends the audio.
        requires_external_vad=True,
    )


def tts_program(tts_models: list[common_pb2.ModelInfo]) -> TtsProgram:
    voices = []
    for m in tts_models:
        # A single-speaker voice lists its own name as its only voice; that is no speaker to choose.
        speakers = [v for v in m.voices if v != m.model]
        voices.append(TtsVoice(name=m.descriptor, attribution=_attribution(m), installed=True,
                               description=m.description or None, version=None, languages=list(m.languages),
                               speakers=[TtsVoiceSpeaker(name=s) for s in speakers] or None))
    return TtsProgram(name="voicemesh-tts", attribution=Attribution(name="VoiceMesh", url=""), installed=True,
                      description="VoiceMesh text-to-speech", version=__version__, voices=voices,
                      supports_synthesize_streaming=True)


async def describe(link: MeshLink) -> Info:
    """The ``info`` answer: one ASR program and one TTS program (each only if the mesh has that modality)."""
    info = Info()
    if link.mesh.routes.get("stt"):
        info.asr.append(asr_program(await models(link, "stt")))
    if link.mesh.routes.get("tts"):
        info.tts.append(tts_program(await models(link, "tts")))
    return info
