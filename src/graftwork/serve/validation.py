"""Reading a request's validation errors: which union member an input meant, its characters,
and one message that names the first problem (with the input's index) plus every problem.

The example body is shown only when the body's shape is wrong (not JSON, not an object, no or
a malformed `inputs`, an unknown key); a problem with one field's value (`max_new_tokens`,
`temperature`, `inputs[3]`) is named alone, as a hint about `inputs` would not help there."""

from __future__ import annotations

EXAMPLE = '{"inputs": ["some text"]}'

# the members of an input's union (a text, or a QA object), as pydantic names them in `loc`
MEMBERS = ("constrained-str", "QuestionInput")


def wrong_member(error: dict) -> bool:
    """A union member's error about an input of the other kind: the text member's about an
    object, the QA member's about a text (the error that names the real problem remains)."""
    loc = [part for part in error.get("loc", ()) if part != "body"]
    if len(loc) < 3 or loc[0] != "inputs" or loc[2] not in MEMBERS:
        return False
    value = error.get("input")
    if loc[2] == MEMBERS[0]:
        return isinstance(value, dict)
    return len(loc) == 3 and not isinstance(value, dict)


def input_text(item) -> str:
    """An input's characters: the text, or a QA input's question and context."""
    return item if isinstance(item, str) else "\n".join(item.values())


def describe_validation(errors: list[dict]) -> tuple[str, dict]:
    """A message naming the first problem (and the input's index), plus every problem."""
    first = errors[0]
    loc = [part for part in first.get("loc", ()) if part != "body"]
    extra: dict = {
        "errors": [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in errors[:10]
        ]
    }
    if first.get("type") == "json_invalid":
        reason = first.get("ctx", {}).get("error", "invalid JSON")
        return f"the body is not valid JSON ({reason}); send {EXAMPLE}", extra
    if not loc and first.get("type") == "model_attributes_type":
        return f"the body must be a JSON object (Content-Type: application/json): {EXAMPLE}", extra
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    if len(loc) >= 2 and loc[0] == "inputs" and isinstance(loc[1], int):
        extra["index"] = loc[1]
    reason = str(first.get("msg")).removeprefix("Value error, ")
    shape = not loc or loc == ["inputs"] or first.get("type") == "extra_forbidden"
    return f"{where or 'the body'}: {reason}" + (f"; send {EXAMPLE}" if shape else ""), extra
