"""The avatar service gets keys and metering from the shared runtime: a stream needs a key and lands in the ledger."""

from __future__ import annotations

import grpc
import pytest

from tests.avatar.helpers import REPLY_END, Live, chunks, config, render
from tests.metering.helpers import recorded_usage
from tests.speech import speak
from voicemesh.metering import keys
from voicemesh.metering.ledger import open_store

pytestmark = pytest.mark.slow


async def test_a_stream_needs_a_key_and_its_usage_is_recorded(service_process, tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    server = service_process("avatar", env={"VOICEMESH_LEDGER": url})
    store = open_store(url)
    record, key = keys.create_key(store, "avatar")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await render(server.address, [config(unpaced=True)])
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED

    pcm = speak("Hi there.")
    live = Live(server.address, metadata=(("authorization", f"Bearer {key}"), ("x-session-id", "face-1")))
    await live.send(config(unpaced=True), *chunks(pcm), REPLY_END)
    usage = (await live.finish()).usage()
    assert usage.audio_seconds_in == pytest.approx(len(pcm) / 2 / 16000)
    records = await recorded_usage(store, record.id)
    assert [(r.service, r.model, r.session_id) for r in records] == [("avatar", "local/ada", "face-1")]
    assert records[0].audio_seconds_in == pytest.approx(usage.audio_seconds_in)
    assert usage.video_seconds_out > 0 and records[0].video_seconds_out == pytest.approx(usage.video_seconds_out)
    assert store.totals(record.id, None)["local/ada"]["video_seconds_out"] == pytest.approx(usage.video_seconds_out)
    store.close()
