"""Truncation of assistant items at a heard position, and deletion of items (pure logic)."""

from __future__ import annotations

import pytest

from voicemesh.errors import InvalidInput
from voicemesh.services.llm.backend import Message
from voicemesh.services.realtime.conversation import Conversation, Item, SpokenSpan, heard_chars

TEXT = "The dog ran home. It slept by the fire all night."
FIRST_END = TEXT.index(".") + 1  # "The dog ran home."


def _spans() -> list[SpokenSpan]:
    return [SpokenSpan(0, 1000, 0, FIRST_END), SpokenSpan(1000, 3000, FIRST_END, len(TEXT))]


def test_a_cut_after_a_sentence_keeps_exactly_that_sentence():
    assert TEXT[:heard_chars(TEXT, _spans(), 1000)] == "The dog ran home."
    assert TEXT[:heard_chars(TEXT, _spans(), 1050)] == "The dog ran home."


def test_a_cut_inside_a_sentence_keeps_the_words_whose_middle_was_reached():
    # half of " It slept by the fire all night." (33 chars) is ~16.5 chars: "It slept by" (+ part of "the")
    cut = TEXT[:heard_chars(TEXT, _spans(), 2000)]
    assert cut == "The dog ran home. It slept by the"
    assert TEXT[:heard_chars(TEXT, _spans(), 3000)] == TEXT
    assert heard_chars(TEXT, _spans(), 0) == 0


def test_truncate_changes_the_history_and_refuses_bad_targets():
    conversation = Conversation()
    user = conversation.add_message(Message(role="user", content="Tell me a story."))
    item = conversation.add(Item(id=conversation.new_id(), role="assistant", text=TEXT, spans=_spans()))
    conversation.truncate(item.id, 1500)
    assert conversation.messages("Be brief.")[-1] == Message(role="assistant", content="The dog ran home. It slept")
    assert conversation.messages("Be brief.")[0] == Message(role="system", content="Be brief.")
    assert item.audio_ms == 1500
    with pytest.raises(InvalidInput, match="past the end"):
        conversation.truncate(item.id, 2000)
    with pytest.raises(InvalidInput) as unknown:
        conversation.truncate("item_nope", 10)
    assert unknown.value.reason == "ITEM_NOT_FOUND"
    with pytest.raises(InvalidInput) as wrong_role:
        conversation.truncate(user.id, 10)
    assert wrong_role.value.reason == "ITEM_NOT_ASSISTANT"


def test_delete_takes_an_item_out_of_the_history_and_ids_stay_unique():
    conversation = Conversation()
    first = conversation.add_message(Message(role="user", content="Forget this."), "item_mine")
    conversation.add_message(Message(role="user", content="Keep this."))
    assert conversation.delete(first.id) is first
    assert conversation.messages("") == (Message(role="user", content="Keep this."),)
    with pytest.raises(InvalidInput) as unknown:
        conversation.delete("item_mine")
    assert unknown.value.reason == "ITEM_NOT_FOUND"
    conversation.add_message(Message(role="user", content="Again."), "item_mine")  # free once deleted
    with pytest.raises(InvalidInput) as taken:
        conversation.add_message(Message(role="user", content="Twice."), "item_mine")
    assert taken.value.reason == "ITEM_ID_TAKEN"
