"""Inputs with nothing to read, and the one wording that refuses them.

A text is blank when it is empty or holds only spaces, line breaks, control characters or
invisible formatting (Unicode categories Zs, Zl, Zp, Cc, Cf); an extractive-QA input
(`{"question", "context"}`) is blank when either part is. A model would answer a blank input
all the same (a label, entities, an answer span, a continuation), so predict, eval's inputs,
generate and the server refuse it, each naming where it came from (`where`: a flag, a file's
line, `inputs[3]`) and which field it is (`blank_message`). Left out: texts that are not blank
but meaningless (a lone punctuation mark), which a model may fairly answer.
"""

from __future__ import annotations

import unicodedata

# what a text with nothing to read is: spaces, line breaks, controls, invisible formatting
BLANK = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf"})
# what each kind of input is for, said when a blank one is refused
NEEDS = {
    "text": "there is nothing in it to read, and a model would answer it all the same; remove "
    "it or give it text",
    "prompt": "there is nothing to continue from; remove it or write the prompt",
    "question": "there is nothing to look for in the context; give the question",
    "context": "there is no text to take the answer from; give the text the answer is in",
}


def is_blank(text) -> bool:
    rest = str(text).strip()
    return not rest or all(unicodedata.category(c) in BLANK for c in rest)


def blank_field(item) -> str | None:
    """Which part of one input has nothing to read: "text" (a plain text), or the key of a QA
    input's blank part ("question", "context"); None when it has text."""
    if isinstance(item, dict):
        return next((str(key) for key, part in item.items() if is_blank(part)), None)
    return "text" if is_blank(item) else None


def blank_text(texts: list) -> int | None:
    """The index of the first input with nothing to read (`blank_field`), or None."""
    return next((i for i, item in enumerate(texts) if blank_field(item) is not None), None)


def blank_message(where: str, field: str = "text") -> str:
    """The refusal of a blank input: `where` names it as its user gave it ("text 2",
    "--context", "inputs[0].question", "--input F, line 3: the prompt"), `field` says what it
    is for ("text", "prompt", "question", "context")."""
    return f"{where} is empty or only whitespace; {NEEDS.get(field, NEEDS['text'])}"


def blank_part(where: str, item) -> str:
    """`blank_message` for a blank item of a list named `where` (e.g. "texts[3]"): a QA
    input's blank part is named after it ("texts[3].context")."""
    field = blank_field(item) or "text"
    return blank_message(where if field == "text" else f"{where}.{field}", field)
