"""Causal-LM fine-tuning: a decoder taught to answer prompts, with the loss on the answer only.

Data, one example a JSON line, in any of these shapes (read per line):
- `{"prompt": …, "response": …}`;
- `{"instruction": …, "input": …, "output": …}` (Alpaca; the input, when not empty, follows the
  instruction after a blank line);
- `{"messages": [{"role": …, "content": …}, …]}`: a chat whose last message is the
  assistant's answer (the response); those before it are the prompt;
- `{SOURCE: …, TARGET: …}` with `task.source`/`task.target`, or two line-aligned files
  (`data.format: parallel`, e.g. `train.en`/`train.de`; `data.pairs`), the source as prompt.
`task.prefix` goes before every prompt that is not a chat (the instruction of a translation
recipe). A prompt is formatted with the tokenizer's chat template when it has one (the user
turn, then the assistant's), else as its text and a line break; the response ends with the end
of sequence token so the model learns to stop.

Encoding: prompt and response are tokenized apart and joined, so the boundary is exact; labels
are the next token at every position whose next token is the response's, and `IGNORE`
elsewhere (the prompt, and the last position): the shifted labels make the loop's summed
cross-entropy (`train.loop.summed_loss`) the causal-LM loss on the response only. Examples
longer than `data.max_length` tokens are cut at the end. Batches are grouped by length like any
task's.

Evaluation and prediction run `generate`'s forward: each batch scores the reference responses
(negative log-likelihood, for perplexity) when it has them and generates from the prompts
(`tasks.generation`, the recipe's `generation` settings). Metrics: `perplexity` of the
references, `chrf` (the headline) and `bleu` of the generated answers against them (sacrebleu),
a few samples.

Packing several examples into one sequence is not built: with the attention implementations
transformers gives these models on the CPU a packed row lets each example attend to the ones
before it, unless position ids and a block-diagonal mask are threaded through every model, so
length-grouped batches keep examples apart instead. Left out: windows (a prompt is cut, not
windowed), multi-turn losses (only the last assistant turn is learned), ONNX export.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from graftwork.data import pairs
from graftwork.data.encode import IGNORE
from graftwork.data.readers import _json_records
from graftwork.errors import DataError
from graftwork.tasks import generation as gen
from graftwork.tasks import losses
from graftwork.tasks.html import table

LABEL_KEY = ""  # no label vocabulary: the gold is each example's response text
HEADLINE = "chrf"
SHOWN = ("chrf", "bleu", "perplexity")
DEFAULT_FORMAT = "jsonl"
EXAMPLE = "Translate to German: A man is riding a bicycle."
# the methods whose training applies to a decoder's own language-model head (no new head:
# `frozen` would train nothing; adapters and IA3 are untested on decoders here), and peft's
# prompt learning, which leaves the head frozen and learns virtual tokens
METHODS = ("full", "lora", "dora", "prompt_tuning", "prefix", "ptuning")
OBJECTIVES = ()  # DANN's and EWC's losses are written for an encoder's classification head
SAMPLES = 5  # generated answers the metrics (and the report) show beside their references
SHAPES = (
    "give prompt and response, instruction (input) and output, messages (the last one the "
    "assistant's), or task.source and task.target"
)


class GenerationOutput(BaseModel):
    generated_text: str = Field(..., description="The generated answer (special tokens removed).")
    tokens: int = Field(..., description="Tokens generated (the end-of-sequence token aside).")


Output = GenerationOutput


def model_class():
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM


# ---------------------------------------------------------------- reading


def read(rows, fmt: str, task, data, require_labels: bool) -> None:
    if fmt == "parallel":
        pairs.read_parallel(rows, task, require_labels)
        rows.result.examples = [_from_pair(e, task) for e in rows.result.examples]
        return
    if fmt != "jsonl":
        raise _format_error(rows.shown, fmt)
    for number, record in _json_records(rows):
        example = record_example(record, task)
        if isinstance(example, str):
            rows.bad(number, example, f"Fix the record ({SHAPES})")
            continue
        if example["response"] is None and require_labels:
            field = f" (field '{task.target}', task.target)" if named_fields(task) else ""
            rows.bad(number, f"the response is missing{field}", f"Add it ({SHAPES})")
            continue
        if example["response"] is not None and not example["response"].strip():
            rows.bad(number, "empty response", "Remove the record or write the response")
            continue
        example["line"] = number
        rows.result.examples.append(example)


def _format_error(shown: str, fmt: str) -> DataError:
    return DataError(
        f"{shown}: task causal_lm reads JSON lines or two line-aligned files, not {fmt}; set "
        "data.format: jsonl or parallel"
    )


def _from_pair(example: dict, task) -> dict:
    prompt = [{"role": "user", "content": task.prefix + example["source"]}]
    return {"messages": prompt, "response": example["target"], "line": example["line"]}


def _text(record: dict, key: str):
    value = record.get(key)
    return value if isinstance(value, str) else None


def named_fields(task) -> bool:
    """Whether the recipe names the prompt's and response's fields (`task.source`/`target`):
    then every record must hold them, and no other shape is tried."""
    return task is not None and (task.source, task.target) != ("source", "target")


def record_example(record: dict, task) -> dict | str:
    """The example of one JSON record, or the problem with it (a message)."""
    prefix = task.prefix if task is not None else ""
    if named_fields(task) and task.source not in record:
        return (
            f"field '{task.source}' (task.source) is missing: the record has fields "
            f"{sorted(record)[:8]}; set task.source to the field holding the prompt"
        )
    if "messages" in record and not named_fields(task):
        return _chat(record["messages"])
    if ("prompt" in record or "instruction" in record) and not named_fields(task):
        if "instruction" in record:
            prompt, extra = _text(record, "instruction"), record.get("input") or ""
            if not isinstance(extra, str):
                return "field 'input' is not a string"
            prompt = prompt and (f"{prompt}\n\n{extra}" if extra.strip() else prompt)
            response_key = "output"
        else:
            prompt, response_key = _text(record, "prompt"), "response"
        if prompt is None or not prompt.strip():
            return "the prompt (prompt or instruction) is empty or not a string"
        response = record.get(response_key)
        if response is not None and not isinstance(response, str):
            return f"field '{response_key}' is not a string"
        return {"messages": [{"role": "user", "content": prefix + prompt}], "response": response}
    source = task.source if task is not None else "source"
    if source in record:
        if not (_text(record, source) or "").strip():
            return f"field '{source}' (task.source) is empty or not a string"
        target = record.get(task.target if task is not None else "target")
        if target is not None and not isinstance(target, str):
            return "the target field (task.target) is not a string"
        content = prefix + record[source]
        return {"messages": [{"role": "user", "content": content}], "response": target}
    return f"no prompt: the record has fields {sorted(record)[:8]}"


def _chat(messages) -> dict | str:
    if not isinstance(messages, list) or not messages:
        return "field 'messages' must be a non-empty list of {role, content} objects"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            return f"messages[{i}] needs a 'content' string"
        if message.get("role") not in ("system", "user", "assistant"):
            return f"messages[{i}]: role must be system, user or assistant"
    if messages[-1]["role"] != "assistant":
        return {"messages": messages, "response": None}
    if len(messages) == 1:
        return "messages holds only the assistant's answer; give the turns before it"
    return {"messages": messages[:-1], "response": messages[-1]["content"]}


def label_set(examples: list[dict], names: dict[str, str] | None = None) -> list[str]:
    return []  # responses are texts, not labels


def from_text(text: str, task=None) -> dict:
    prefix = task.prefix if task is not None else ""
    return {"messages": [{"role": "user", "content": prefix + text}], "response": None, "line": 0}


loss = losses.logits_loss  # the training loss (`tasks.base.Task.loss`)


def to_text(example: dict, task=None) -> str:
    """The last user message, without the `task.prefix` the reader put before it."""
    content = [m["content"] for m in example["messages"] if m["role"] == "user"][-1]
    prefix = task.prefix if task is not None else ""
    return content[len(prefix) :] if prefix and content.startswith(prefix) else content


# ---------------------------------------------------------------- encoding


def prompt_text(tokenizer, messages: list[dict]) -> str:
    """The prompt as the model reads it: the chat template up to the assistant's turn, or the
    user text and a line break for a tokenizer without a template."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n".join(m["content"] for m in messages) + "\n"


def response_text(tokenizer, messages: list[dict], response: str) -> str:
    """What follows the prompt when the response is written (its end-of-turn marks included)."""
    if getattr(tokenizer, "chat_template", None):
        prompt = prompt_text(tokenizer, messages)
        whole = tokenizer.apply_chat_template(
            [*messages, {"role": "assistant", "content": response}], tokenize=False
        )
        if whole.startswith(prompt):
            return whole[len(prompt) :]
    return response


def prompt_ids(tokenizer, examples: list[dict]) -> list[list[int]]:
    texts = [prompt_text(tokenizer, e["messages"]) for e in examples]
    special = not getattr(tokenizer, "chat_template", None)  # a template writes its own
    return tokenizer(texts, add_special_tokens=special)["input_ids"]


def response_ids(tokenizer, examples: list[dict]) -> list[list[int]]:
    texts = [response_text(tokenizer, e["messages"], e["response"]) for e in examples]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    return [row if eos is None or (row and row[-1] == eos) else [*row, eos] for row in ids]


def joined(tokenizer, examples: list[dict], max_length: int) -> list[tuple[list, list]]:
    """(prompt ids, response ids) per example, cut together at `max_length` tokens."""
    prompts = prompt_ids(tokenizer, examples)
    if any(e.get("response") is None for e in examples):
        return [(p[-max_length:], []) for p in prompts]
    responses = response_ids(tokenizer, examples)
    return [
        (p[:max_length], r[: max(0, max_length - len(p))])
        for p, r in zip(prompts, responses, strict=True)
    ]


def shifted_labels(prompt: list[int], response: list[int]) -> list[int]:
    """The label of each position: the next token where that token is the response's."""
    ids = prompt + response
    return [ids[t + 1] if t + 1 >= len(prompt) else IGNORE for t in range(len(ids) - 1)] + [IGNORE]


def encode(tokenizer, examples, label2id, max_length: int, path: Path | str):
    parts = joined(tokenizer, examples, max_length)
    features = [{"input_ids": p + r} for p, r in parts]
    if any(e.get("response") is None for e in examples):
        return features, None
    return features, [shifted_labels(p, r) for p, r in parts]


def split_windows(tokenizer, examples: list[dict], window: int, stride: int) -> list[list[dict]]:
    """One window per example: its prompt (token type 0) and, when it has one, its reference
    response (token type 1), which `generate`'s forward scores and does not generate from."""
    return [
        [{"input_ids": p + r, "token_type_ids": [0] * len(p) + [1] * len(r)}]
        for p, r in joined(tokenizer, examples, window)
    ]


def merge_windows(features: list[dict], logits: list, aggregate: str = "mean") -> tuple:
    return features[0], logits[0]


# ---------------------------------------------------------------- model work


def reference_nll(model, batch: dict, rows: int = 8):
    """Per row: (summed negative log-likelihood of the token-type-1 tokens, their count); the
    model runs `rows` rows at a time (a large vocabulary's logits are big)."""
    import torch

    ids, mask, kind = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
    target = ids[:, 1:].clone()
    target[(kind[:, 1:] == 0) | (mask[:, 1:] == 0)] = IGNORE
    nll: list[float] = []
    for start in range(0, len(ids), rows):
        part = slice(start, start + rows)
        logits = model(input_ids=ids[part], attention_mask=mask[part]).logits[:, :-1]
        losses = torch.nn.functional.cross_entropy(
            logits.float().transpose(1, 2), target[part], ignore_index=IGNORE, reduction="none"
        )
        nll += losses.sum(dim=1).tolist()
    return nll, (target != IGNORE).sum(dim=1).tolist()


def generate(model, tokenizer, generation=None):
    """The forward of a generating task: a collated batch → an object array (batch, 1) of
    `{"generated_text", "tokens", "nll", "scored"}` (the references' summed negative
    log-likelihood and token count; 0 when the batch has none)."""
    import torch

    settings = gen.settings(generation)
    model.eval()
    device = next(model.parameters()).device

    @torch.inference_mode()
    def forward(batch: dict) -> np.ndarray:
        batch = {k: v.to(device) for k, v in batch.items()}
        kind = batch.get("token_type_ids")
        rows = len(batch["input_ids"])
        nll, scored = ([0.0] * rows, [0] * rows)
        if kind is not None and bool((kind == 1).any()):
            nll, scored = reference_nll(model, batch)
        prompt_mask = batch["attention_mask"].bool() & ((kind == 0) if kind is not None else True)
        prompts = [row[m].tolist() for row, m in zip(batch["input_ids"], prompt_mask, strict=True)]
        new = gen.generate_ids(model, tokenizer, prompts, settings)
        answers = np.empty((rows, 1), dtype=object)
        for i, tokens in enumerate(new):
            text = tokenizer.decode(tokens, skip_special_tokens=True).strip()
            answers[i, 0] = {
                "generated_text": text,
                "tokens": len(tokens),
                "nll": nll[i],
                "scored": scored[i],
            }
        return answers

    return forward


def evaluate(examples, features, logits, labels, id2label) -> dict:
    outputs = [row[0]["generated_text"] for row in logits]
    references = [e["response"] for e in examples]
    scored = sum(row[0]["scored"] for row in logits)
    nll = sum(row[0]["nll"] for row in logits)
    metrics = gen.text_scores(outputs, references)
    metrics["perplexity"] = float(np.exp(nll / scored)) if scored else float("nan")
    metrics["reference_tokens"] = int(scored)
    metrics["examples"] = len(examples)
    metrics["samples"] = [
        {"prompt": e["messages"][-1]["content"], "reference": e["response"], "output": out}
        for e, out in list(zip(examples, outputs, strict=True))[:SAMPLES]
    ]
    return metrics


def decode(examples, features, logits, id2label, top_k: int = 1) -> list[dict]:
    return [
        {"generated_text": row[0]["generated_text"], "tokens": row[0]["tokens"]} for row in logits
    ]


def report_sections(metrics: dict) -> list[str]:
    if not metrics.get("samples"):
        return []
    rows = [[s["prompt"], s["reference"], s["output"]] for s in metrics["samples"]]
    return [table(["prompt", "reference", "output"], rows)]
