"""Readers for extractive QA: the official SQuAD JSON, and JSON lines of question/context/answers.

Both make the same examples: `{"id", "question", "context", "answers": [{"text", "start"}],
"impossible", "line", "where"}`, where `start` is a character offset into `context` (Unicode
code points, as SQuAD counts them) and `where` names the question in messages (`line N` in JSON
lines; `data[i].paragraphs[j].qas[k] (id …)` in SQuAD JSON, whose questions have no useful
line). SQuAD JSON is `{"data": [{"paragraphs": [{"context", "qas": [{"id", "question",
"answers": [{"text", "answer_start"}], "is_impossible"}]}]}]}` (v1.1 and v2.0); a JSON-lines
record holds the fields the recipe names (`task.question`, `task.context`, `task.answers`), its
answers either as a list of `{"text", "answer_start"}` or in the Hugging Face datasets form
`{"text": [...], "answer_start": [...]}`, and an optional `id` and `is_impossible`.

Every answer must be found at its offset in its context: an answer that is not (a shifted
offset, a context edited after annotation) is a located error, not a silently wrong training
target. A question marked unanswerable is refused unless the recipe says the data has such
questions (`task.no_answer: true`), because a v1-style model would never learn to abstain.

Left out: SQuAD's `plausible_answers` (v2 keeps them for analysis; nothing trains on them).
"""

from __future__ import annotations

import codecs
import json

from graftwork.errors import DataError


def _bad(rows, order: int, where: str, problem: str, fix: str) -> None:
    """`Rows.bad` for a question named by `where` rather than by its line number."""
    message = f"{rows.shown}, {where}: {problem}"
    if not rows.skip:
        raise DataError(f"{message}. {fix} (or set data.on_bad_rows: skip to drop such rows)")
    rows.bad_lines.append((order, message))


def _answers(value, context: str) -> tuple[list[dict] | None, str]:
    """(answers as [{"text", "start"}], "") or (None, what is wrong with them)."""
    if isinstance(value, dict) and isinstance(value.get("text"), list):  # datasets' columns
        starts = value.get("answer_start")
        if not isinstance(starts, list) or len(starts) != len(value["text"]):
            return None, "answers.text and answers.answer_start must be lists of one length"
        value = [{"text": t, "answer_start": s} for t, s in zip(value["text"], starts, strict=True)]
    if not isinstance(value, list):
        return None, "answers must be a list of {text, answer_start}"
    out = []
    for i, answer in enumerate(value):
        text = answer.get("text") if isinstance(answer, dict) else None
        start = answer.get("answer_start") if isinstance(answer, dict) else None
        if not isinstance(text, str) or not text.strip():
            return None, f"answers[{i}] has no text"
        if isinstance(start, bool) or not isinstance(start, int):
            return None, f"answers[{i}] ({text[:40]!r}) has no answer_start (a character offset)"
        if start < 0:
            return None, (
                f"answers[{i}] ({text[:40]!r}): answer_start {start} is negative; it is the "
                "character offset where the answer begins in its context"
            )
        found = context[start : start + len(text)]
        if found != text:
            return None, (
                f"answers[{i}] {text[:60]!r} is not inside its context at answer_start {start} "
                f"(the context there reads {found[:60]!r})"
            )
        out.append({"text": text, "start": start})
    return out, ""


def _add(rows, order, where, qid, question, context, answers, impossible, task, require) -> None:
    """Check one question and append its example (or report it as bad)."""
    if not isinstance(question, str) or not question.strip():
        _bad(rows, order, where, "the question is missing or empty", "Fix the record")
        return
    if not isinstance(context, str) or not context.strip():
        _bad(rows, order, where, "the context is missing or empty", "Fix the record")
        return
    impossible = bool(impossible)
    if impossible and not task.no_answer:
        _bad(
            rows,
            order,
            where,
            "the question is marked unanswerable (is_impossible)",
            "Set task.no_answer: true to train and score SQuAD v2-style data",
        )
        return
    found: list[dict] = []
    if answers is not None and not (impossible and answers == []):
        found, problem = _answers(answers, context)
        if found is None:
            _bad(rows, order, where, problem, "Fix the answer's text or offset")
            return
    if require and not found and not impossible:
        _bad(rows, order, where, "the question has no answer", "Give at least one answer")
        return
    rows.result.examples.append(
        {
            "id": str(qid) if qid is not None else str(order),
            "question": question.strip(),
            "context": context,
            "answers": [] if impossible else found,
            "impossible": impossible,
            "line": order,
            "where": where,
        }
    )


def squad_document(rows, task) -> dict | None:
    """The file as one SQuAD JSON document (`{"data": [...]}`), or None if it is JSON lines.

    One JSON object without `data` is refused as not SQuAD JSON, unless it is one line holding
    the task's question or context field (a JSON-lines file of one question)."""
    content = rows.result.path.read_bytes().removeprefix(codecs.BOM_UTF8)
    if not content.lstrip().startswith(b"{"):
        return None
    try:
        document = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None  # JSON lines (or broken): the line reader reports the line
    if not isinstance(document, dict) or "data" in document:
        return document if isinstance(document, dict) else None
    one_line = len(content.strip().splitlines()) == 1
    if one_line and {task.question, task.context} & set(document):
        return None
    keys = ", ".join(sorted(map(str, document))[:8]) or "none"
    raise DataError(
        f"{rows.shown}: one JSON object, but not SQuAD JSON (no 'data' list; its keys: {keys}); "
        f'give SQuAD\'s {{"data": [{{"paragraphs": [...]}}]}} or JSON lines of '
        f"{task.question}, {task.context} and {task.answers}, one question a line"
    )


def read_squad(rows, document: dict, task, require_labels: bool) -> None:
    """Questions of an official SQuAD JSON document, in file order."""
    if not isinstance(document["data"], list):
        raise DataError(f"{rows.shown}: 'data' must be a list of articles (SQuAD JSON)")
    order = 0
    for a, article in enumerate(document["data"]):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise DataError(f"{rows.shown}, data[{a}]: no 'paragraphs' list (SQuAD JSON)")
        for p, paragraph in enumerate(paragraphs):
            qas = paragraph.get("qas") if isinstance(paragraph, dict) else None
            if not isinstance(qas, list):
                raise DataError(f"{rows.shown}, data[{a}].paragraphs[{p}]: no 'qas' list")
            for q, qa in enumerate(qas):
                order += 1
                qa = qa if isinstance(qa, dict) else {}
                where = f"data[{a}].paragraphs[{p}].qas[{q}]"
                if qa.get("id") is not None:
                    where += f" (id {qa['id']})"
                answers = qa.get("answers")
                if answers is None and require_labels:
                    _bad(rows, order, where, "the question has no 'answers'", "Add its answers")
                    continue
                _add(
                    rows,
                    order,
                    where,
                    qa.get("id"),
                    qa.get("question"),
                    paragraph.get("context"),
                    answers,
                    qa.get("is_impossible", False),
                    task,
                    require_labels,
                )


def read_qa_jsonl(rows, records, task, require_labels: bool) -> None:
    """Questions of JSON lines (`records`: (line number, object) pairs), fields named by `task`."""
    for number, record in records:
        where = f"line {number}"
        answers = record.get(task.answers)
        if answers is None and require_labels and not record.get("is_impossible"):
            _bad(rows, number, where, f"field '{task.answers}' is missing", "Add the answers")
            continue
        for name in (task.question, task.context):
            if name not in record:
                break
        else:
            name = None
        if name is not None:
            _bad(rows, number, where, f"field '{name}' is missing", "Fix the record")
            continue
        _add(
            rows,
            number,
            where,
            record.get("id"),
            record.get(task.question),
            record.get(task.context),
            answers,
            record.get("is_impossible", False),
            task,
            require_labels,
        )
