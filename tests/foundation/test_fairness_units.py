"""Pure logic of fair shares: the runtime's admission (slots shared among keys, a bounded wait, a retry
hint) and the intake that drops client audio beyond 2x real time."""

from __future__ import annotations

import asyncio

import pytest

from voicemesh.errors import ResourceExhausted
from voicemesh.runtime.admission import Admission
from voicemesh.runtime.intake import AudioIntake


def test_one_key_leaves_a_slot_for_the_others():
    admission = Admission(3, "generation slots")
    first, second = admission.acquire("a"), admission.acquire("a")
    with pytest.raises(ResourceExhausted, match="holds 2 of the 3 generation slots") as info:
        admission.acquire("a")
    assert info.value.retry_after_s >= 1 and "retry in about" in info.value.message
    admission.acquire("b")  # the slot kept for another key
    assert admission.open == 3 and admission.held("a") == 2
    first.release()
    first.release()  # once only
    assert admission.open == 2 and admission.held("a") == 1
    second.release()


async def test_without_keys_every_slot_may_be_taken_and_the_rest_wait_their_turn():
    admission = Admission(2, "slots", queue=1, wait_s=10.0)
    first = admission.acquire("")
    admission.acquire("")  # no share is kept back when there are no keys
    third = asyncio.create_task(admission.wait(""))
    await asyncio.sleep(0.01)
    with pytest.raises(ResourceExhausted, match="2 of 2 slots"):
        await admission.wait("")  # the queue (1) is full: refused at once
    first.release()
    assert (await asyncio.wait_for(third, 1)).owner == ""


async def test_a_freed_slot_goes_to_the_waiting_key_that_holds_fewest():
    admission = Admission(2, "generation slots", queue=4, wait_s=5.0)
    hog = admission.acquire("a")
    other = admission.acquire("b")
    hog_again = asyncio.create_task(admission.wait("a"))  # the hog asked first
    await asyncio.sleep(0.01)
    newcomer = asyncio.create_task(admission.wait("c"))
    await asyncio.sleep(0.01)
    other.release()
    ticket = await asyncio.wait_for(newcomer, 1)
    assert ticket.owner == "c" and not hog_again.done(), "the key holding nothing goes first"
    hog.release()
    assert (await asyncio.wait_for(hog_again, 1)).owner == "a"


async def test_a_wait_is_bounded_and_a_full_queue_refuses_at_once():
    admission = Admission(1, "slots", queue=1, wait_s=0.2)
    admission.acquire("a")
    waiting = asyncio.create_task(admission.wait("b"))
    await asyncio.sleep(0.01)
    with pytest.raises(ResourceExhausted, match="1 request\\(s\\) waiting"):
        await admission.wait("c")
    with pytest.raises(ResourceExhausted, match="after waiting 0.2 s"):
        await waiting


async def test_a_cancelled_waiter_takes_no_slot():
    admission = Admission(1, "slots", queue=2, wait_s=5.0)
    held = admission.acquire("a")
    waiting = asyncio.create_task(admission.wait("b"))
    await asyncio.sleep(0.01)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    held.release()
    assert admission.open == 0
    admission.acquire("c")


def test_audio_beyond_twice_real_time_is_dropped_and_counted():
    now = [0.0]
    intake = AudioIntake(16000, clock=lambda: now[0])
    chunk = 1600  # 100 ms
    accepted = sum(intake.admit(chunk) for _ in range(6000))  # ten minutes at once
    assert accepted == 50, "only the 5 s burst gets through"
    assert intake.dropped_s == pytest.approx(595.0)
    for _ in range(600):  # then a minute at real time: all of it
        now[0] += 0.1
        assert intake.admit(chunk)
    accepted = 0
    for _ in range(900):  # then 90 s of audio at 3x real time (30 s of wall time)
        now[0] += 0.1 / 3
        accepted += intake.admit(chunk)
    assert 640 <= accepted <= 651, accepted  # the 5 s burst + 2 x 30 s = 65 s of the 90 s sent


async def test_a_generation_cancelled_while_it_waits_for_a_slot_gives_up_its_place():
    from voicemesh.backend import RemoteOptions
    from voicemesh.runtime import admission as runtime_admission
    from voicemesh.services.llm.backend import CancelToken, LlmBackend, LlmSettings

    class Waiting(LlmBackend):
        provider = "test"

        async def generate(self, request, *, session, cancel):  # only slot() is exercised here
            raise NotImplementedError

    backend = Waiting(model="m", options=RemoteOptions(), settings=LlmSettings(max_generations=1))
    held = backend.admission.acquire("a")
    runtime_admission.owner.set("b")  # as the runtime binds the caller's key
    token = CancelToken()
    waiting = asyncio.create_task(backend.slot(token))
    await asyncio.sleep(0.05)
    token.cancel()
    assert await asyncio.wait_for(waiting, 1) is None, "a Cancel ends the wait at once"
    held.release()
    assert backend.admission.open == 0, "the cancelled waiter took no slot"
