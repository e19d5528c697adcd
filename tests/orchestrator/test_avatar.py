"""A session with an avatar: AgentVideo frames in sync with AgentAudio, an MP4 from ``talk``, barge-in, a dead avatar.

Real processes throughout: the STT, LLM and TTS services of the module's
mesh, a real avatar service (local/ada on CPU) and an orchestrator routed to it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.orchestrator.client import RATE, AgentClient, session_config
from voicemesh.process import ServiceProcess
from voicemesh.samples import question_path
from voicemesh.v1 import agent_pb2

pytestmark = pytest.mark.slow

FPS = 25
STEP = RATE // FPS  # agent-audio samples per frame
AVATAR = agent_pb2.AvatarChoice(avatar="local/ada", width=128, height=128, fps=FPS, encoding="i420")
STORY = ("Once upon a time a small dog lived by the sea. Every morning it ran along the sand and barked at the "
         "waves, and every evening it slept by the fire while the wind sang over the roof.")


def _orchestrator(mesh, folder, avatar: ServiceProcess) -> ServiceProcess:
    path = folder / "mesh.json"
    mesh.config(avatar={"*": [avatar.address]}).write(path)
    proc = ServiceProcess("orchestrator", args=["--metrics-port", "-1", "--mesh", str(path), "--max-tokens", "60"],
                          log_path=folder / "orchestrator.log").start()
    return proc.wait_serving()


@pytest.fixture(scope="module")
def avatar_mesh(mesh, tmp_path_factory) -> Iterator[ServiceProcess]:
    """An orchestrator over ``mesh`` and an avatar service."""
    folder = tmp_path_factory.mktemp("avatar")
    avatar = ServiceProcess("avatar", args=["--metrics-port", "-1"], log_path=folder / "avatar.log").start()
    try:
        avatar.wait_serving()
        orchestrator = _orchestrator(mesh, folder, avatar)
        try:
            yield orchestrator
        finally:
            orchestrator.stop()
    finally:
        avatar.stop()


def speech_frames(client: AgentClient) -> list[agent_pb2.AgentVideo]:
    return [v for v in client.of("agent_video") if v.audio_offset_samples >= 0]


async def test_talk_writes_the_spoken_answer_as_an_mp4_with_matching_audio_and_video(avatar_mesh, tmp_path):
    import av

    out = tmp_path / "answer.mp4"
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "voicemesh.cli", "talk", "--in", str(question_path()), "--out", str(out),
                         "--address", avatar_mesh.address, "--no-start", "--avatar", "local/ada",
                         "--avatar-size", "128"],
        capture_output=True, text=True, timeout=240, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "avatar stopped" not in result.stdout
    with av.open(str(out)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.average_rate == FPS
        assert (video.width, video.height) == (128, 128)
        frames = sum(1 for _ in container.decode(video=0))
        video_s = frames / FPS
        audio_s = float(audio.duration * audio.time_base)
    print(f"answer.mp4: {frames} frames = {video_s:.3f} s of video, {audio_s:.3f} s of audio")
    assert audio_s > 0.5
    assert abs(video_s - audio_s) <= 0.040, (video_s, audio_s)
    assert frames == pytest.approx(audio_s * FPS, abs=1)


async def test_frames_follow_the_agent_audio_on_one_timeline(avatar_mesh):
    async with AgentClient(avatar_mesh.address, session_config(avatar=AVATAR)) as s:
        s.send(say=agent_pb2.Say(text="Hello there. This is the agent speaking with a face."))
        await s.turn_done(1)
        s.close()
        await s.ended(30)
    sent = len(s.agent_audio(1)) // 2
    frames = speech_frames(s)
    offsets = [f.audio_offset_samples for f in frames]
    assert offsets == sorted(offsets) and offsets[0] == 0
    assert {f.turn_id for f in frames} == {1}
    assert all(b - a == STEP for a, b in zip(offsets, offsets[1:], strict=False)), "a frame per frame interval"
    # Every sample the client heard is shown, and no frame shows audio it did not get.
    assert offsets[-1] < sent <= offsets[-1] + STEP, (offsets[-1], sent)
    assert max(f.frame.mouth_open for f in frames) > 0.2
    # In sync on the wall clock too: a frame comes soon after the audio it shows went out (paced, not bunched).
    starts, ends = [], 0
    for e in s.events:
        if e.kind == "agent_audio":
            starts.append((ends, e.at))
            ends += len(e.event.audio) // 2

    def heard_at(offset: int) -> float:  # when the client got the sample at ``offset``, at real time within a chunk
        start, at = next((start, at) for start, at in reversed(starts) if start <= offset)
        return at + (offset - start) / RATE

    lags = sorted(e.at - heard_at(e.event.audio_offset_samples)
                  for e in s.events if e.kind == "agent_video" and e.event.audio_offset_samples >= 0)
    print(f"frame after its audio sample: median {1000 * lags[len(lags) // 2]:.0f} ms, "
          f"min {1000 * lags[0]:.0f} ms, max {1000 * lags[-1]:.0f} ms")
    assert lags[len(lags) // 2] <= 0.2, lags
    assert any(u.service == "avatar" and u.usage.video_seconds_out > 0 for u in s.of("usage"))


@pytest.mark.flaky(reruns=2)  # "within 3 frame intervals" is measured on a wall clock shared with other processes
async def test_barge_in_clears_the_avatar_at_once(avatar_mesh):
    async with AgentClient(avatar_mesh.address, session_config(avatar=AVATAR)) as s:
        s.send(say=agent_pb2.Say(text=STORY))
        await s.wait_for(lambda e: len(s.agent_audio(1)) >= int(1.5 * RATE) * 2, timeout=60)
        await s.wait_for(lambda e: e.kind == "agent_video" and e.event.audio_offset_samples >= RATE, timeout=10)
        s.send(interrupt=agent_pb2.Interrupt())
        asked = time.monotonic()
        done = await s.turn_done(1)
        assert done.interrupted
        idle = await s.wait_for(lambda e: e.kind == "agent_video" and e.at > asked
                                and e.event.audio_offset_samples < 0, timeout=5)
        await asyncio.sleep(1.0)  # frames that would still show the reply
        heard = len(s.agent_audio(1)) // 2
        later = [e for e in s.events if e.kind == "agent_video" and e.at > idle.at]
    shown_after = [e for e in s.events
                   if e.kind == "agent_video" and e.at > asked and e.event.audio_offset_samples >= 0]
    print(f"first idle frame {1000 * (idle.at - asked):.0f} ms after the interrupt; "
          f"{len(shown_after)} speech frames after it")
    # Without a Clear the avatar would show the audio it already had (the playout's lead and its own buffer).
    assert idle.at - asked <= 3 / FPS
    assert len(shown_after) <= 1
    assert later and all(e.event.audio_offset_samples < 0 for e in later), "speech frames after the clear"
    # What was shown is what was heard: no frame shows audio the client never got.
    assert max(f.audio_offset_samples for f in speech_frames(s)) < heard


async def test_a_dead_avatar_leaves_the_session_on_audio(mesh, tmp_path):
    avatar = ServiceProcess("avatar", args=["--metrics-port", "-1"], log_path=tmp_path / "avatar.log").start()
    orchestrator = None
    try:
        avatar.wait_serving()
        orchestrator = _orchestrator(mesh, tmp_path, avatar)
        async with AgentClient(orchestrator.address, session_config(avatar=AVATAR)) as s:
            s.send(say=agent_pb2.Say(text=STORY))
            await s.wait_for(lambda e: e.kind == "agent_video" and e.event.audio_offset_samples >= RATE // 2,
                             timeout=60)
            avatar.proc.kill()
            killed_at = time.monotonic()
            stopped = await s.wait_for(lambda e: e.kind == "avatar_stopped", timeout=10)
            done = await s.turn_done(1)
            assert not done.interrupted and done.text
            after = sum(len(e.event.audio) for e in s.events if e.kind == "agent_audio" and e.at > killed_at) / 2
            # The session goes on: a second turn speaks, without video.
            s.send(say=agent_pb2.Say(text="Still here."))
            await s.turn_done(2)
            assert s.of("agent_audio", 2)
            assert not [v for v in s.of("agent_video") if v.turn_id == 2]
        print(f"avatar stopped {1000 * (stopped.at - killed_at):.0f} ms after the kill "
              f"({stopped.event.code}); {after / RATE:.1f} s of audio after it")
        assert stopped.event.avatar == "local/ada" and stopped.event.code == "UNAVAILABLE"
        assert after >= RATE, "the reply's audio went on after the avatar died"
        assert not s.of("error")
    finally:
        if orchestrator is not None:
            orchestrator.stop()
        avatar.stop()


async def test_a_bad_avatar_config_is_refused_with_a_clear_status(avatar_mesh):
    import grpc

    for choice, words in ((agent_pb2.AvatarChoice(avatar="local/ada", fps=1000), "avatar.fps"),
                          (agent_pb2.AvatarChoice(avatar="local/ada", width=100001), "avatar.width")):
        async with AgentClient(avatar_mesh.address, session_config(avatar=choice)) as s:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await s.ended(30)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in caught.value.details()


async def test_an_unknown_avatar_stops_the_video_not_the_session(avatar_mesh):
    choice = agent_pb2.AvatarChoice(avatar="local/nobody", width=128, fps=FPS)
    async with AgentClient(avatar_mesh.address, session_config(avatar=choice)) as s:
        stopped = await s.wait_for(lambda e: e.kind == "avatar_stopped", timeout=30)
        s.send(say=agent_pb2.Say(text="Hello."))
        await s.turn_done(1)
    assert stopped.event.code in ("INVALID_ARGUMENT", "NOT_FOUND") and "nobody" in stopped.event.message
    assert s.of("agent_audio", 1)



async def test_a_realtime_session_drives_the_avatar_switched_on_mid_session(mesh, tmp_path):
    from tests.speech import silence, speak

    avatar = ServiceProcess("avatar", args=["--metrics-port", "-1"], log_path=tmp_path / "avatar.log").start()
    realtime = ServiceProcess("realtime", args=["--metrics-port", "-1", "--max-response-tokens", "40"],
                              log_path=tmp_path / "realtime.log").start()
    orchestrator = None
    try:
        avatar.wait_serving()
        realtime.wait_serving()
        path = tmp_path / "mesh.json"
        mesh.config(avatar={"*": [avatar.address]}, realtime={"*": [realtime.address]}).write(path)
        orchestrator = ServiceProcess("orchestrator", args=["--metrics-port", "-1", "--mesh", str(path)],
                                      log_path=tmp_path / "orchestrator.log").start().wait_serving()
        config = agent_pb2.SessionConfig(
            instructions="You are a helpful assistant. Answer in one short sentence.",
            realtime=agent_pb2.ModelChoice(candidates=[agent_pb2.ModelSpec(descriptor="voicemesh/cascade")]),
            input_sample_rate_hz=RATE, output_sample_rate_hz=RATE)
        async with AgentClient(orchestrator.address, config) as s:
            s.start_audio()
            s.send(update_models=agent_pb2.UpdateModels(avatar=AVATAR))
            s.say(speak("What is the capital of France?") + silence(0.3))
            await s.turn_done(1, timeout=120)
            s.close()
            await s.ended(30)
        heard = len(s.agent_audio(1)) // 2
        frames = speech_frames(s)
        offsets = [f.audio_offset_samples for f in frames]
        print(f"realtime turn: {heard / RATE:.2f} s of audio, {len(frames)} speech frames")
        assert heard > RATE // 2 and {f.turn_id for f in frames} == {1}
        assert offsets == sorted(offsets) and offsets[0] == 0 and offsets[-1] < heard <= offsets[-1] + STEP
        assert not s.of("avatar_stopped")
    finally:
        if orchestrator is not None:
            orchestrator.stop()
        realtime.stop()
        avatar.stop()
