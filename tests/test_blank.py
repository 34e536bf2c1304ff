"""Blank inputs: what counts as blank, and one wording per field that says what it is for."""

from __future__ import annotations

from graftwork.data.blank import blank_field, blank_message, blank_part, blank_text


def test_a_qa_input_names_its_blank_part():
    assert blank_field({"question": "Who?", "context": " \u200b"}) == "context"
    assert blank_field({"question": "", "context": "Ann."}) == "question"
    assert blank_field("a fine film") is None and blank_field("\u3000") == "text"
    assert blank_text(["ok", {"question": "Who?", "context": "\n"}]) == 1


def test_each_field_is_refused_in_its_own_words():
    qa = blank_part("texts[2]", {"question": "Who?", "context": " "})
    assert qa.startswith("texts[2].context is empty or only whitespace; there is no text to take")
    prompt = blank_message("prompts[0]", "prompt")
    assert prompt == (
        "prompts[0] is empty or only whitespace; there is nothing to continue from; remove it or "
        "write the prompt"
    )
    for message in (qa, prompt, blank_part("texts[0]", "")):
        assert "label" not in message and "None" not in message
