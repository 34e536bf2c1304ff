"""Causal-LM fine-tuning (`tasks/causal_lm.py`): reading, prompt masking, training and reload.

Mechanics on the tiny Llama of conftest (ChatML template, WordPiece vocabulary); the data are
real Multi30k captions. Generation itself is tested in test_generate.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import build_tiny_llama, tiny_recipe
from graftwork import registry
from graftwork.config.recipe import TaskConfig, load_recipe
from graftwork.data.encode import IGNORE
from graftwork.data.readers import read_examples
from graftwork.errors import DataError, RecipeError
from graftwork.runs.finetune import train
from graftwork.tasks import causal_lm

TASK = TaskConfig(type="causal_lm")


def write_jsonl(path: Path, records: list) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read(path: Path, require: bool = True, **data):
    recipe = load_recipe({"task": {"type": "causal_lm"}, "data": data})
    return read_examples(path, recipe.task, recipe.data, require_labels=require).examples


@pytest.fixture(scope="module")
def tokenizer(tiny_llama):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama)


def test_every_record_shape_reads_as_a_prompt_and_a_response(tmp_path):
    path = write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            {"prompt": "Say hi", "response": "hi"},
            {"instruction": "Translate", "input": "a dog", "output": "ein Hund"},
            {"instruction": "Count to two", "input": "", "output": "one two"},
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Name a colour"},
                    {"role": "assistant", "content": "blue"},
                ]
            },
            {"source": "a cat", "target": "eine Katze"},
        ],
    )
    examples = read(path)
    assert [e["response"] for e in examples] == ["hi", "ein Hund", "one two", "blue", "eine Katze"]
    assert examples[0]["messages"] == [{"role": "user", "content": "Say hi"}]
    assert examples[1]["messages"][0]["content"] == "Translate\n\na dog"
    assert examples[2]["messages"][0]["content"] == "Count to two"
    assert [m["role"] for m in examples[3]["messages"]] == ["system", "user"]
    assert [e["line"] for e in examples] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    "record, message",
    [
        ({"prompt": "Say hi"}, "line 2: the response is missing"),
        ({"prompt": "Say hi", "response": "  "}, "line 2: empty response"),
        ({"prompt": "", "response": "x"}, "line 2: the prompt .* is empty"),
        ({"response": "x"}, r"line 2: no prompt: the record has fields \['response'\]"),
        ({"messages": [{"role": "assistant", "content": "x"}]}, "line 2: messages holds only"),
        ({"messages": [{"role": "robot", "content": "x"}]}, r"line 2: messages\[0\]: role"),
        ({"prompt": "Say hi", "response": 3}, "line 2: field 'response' is not a string"),
    ],
)
def test_a_bad_record_is_a_located_error(tmp_path, record, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "ok", "response": "fine"}, record])
    with pytest.raises(DataError, match=f"bad.jsonl, {message}"):
        read(path)


def test_a_source_field_no_record_has_is_a_located_error_not_another_field(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", [{"prompt": "Say hi", "response": "hi"}])
    recipe = load_recipe({"task": {"type": "causal_lm", "source": "question", "target": "answer"}})
    with pytest.raises(
        DataError,
        match=r"qa.jsonl, line 1: field 'question' \(task.source\) is missing: the record has "
        r"fields \['prompt', 'response'\]",
    ):
        read_examples(path, recipe.task, recipe.data)


def test_named_source_and_target_fields_are_read_before_any_other_shape(tmp_path):
    record = {"prompt": "ignored", "question": "Who?", "answer": "Ann"}
    path = write_jsonl(tmp_path / "qa.jsonl", [record, {"question": "Why?"}])
    recipe = load_recipe({"task": {"type": "causal_lm", "source": "question", "target": "answer"}})
    with pytest.raises(DataError, match=r"line 2: the response is missing \(field 'answer'"):
        read_examples(path, recipe.task, recipe.data)
    [example] = read_examples(path, recipe.task, recipe.data, require_labels=False).examples[:1]
    assert example["messages"][0]["content"] == "Who?" and example["response"] == "Ann"


def test_bad_records_can_be_skipped_and_counted(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "a", "response": "b"}, {"prompt": "c"}])
    recipe = load_recipe({"task": {"type": "causal_lm"}, "data": {"on_bad_rows": "skip"}})
    result = read_examples(path, recipe.task, recipe.data)
    assert len(result.examples) == 1 and "line 2" in result.skipped[0]


def test_prompts_need_no_response_when_labels_are_not_required(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Say hi"}])
    assert read(path, require=False)[0]["response"] is None


def test_the_prompt_is_masked_and_the_labels_are_the_next_response_tokens(tokenizer):
    example = {"messages": [{"role": "user", "content": "a dog runs"}], "response": "ein hund"}
    features, labels = causal_lm.encode(tokenizer, [example], {}, 64, "x")
    ids, label = features[0]["input_ids"], labels[0]
    prompt = tokenizer.apply_chat_template(
        example["messages"], tokenize=False, add_generation_prompt=True
    )
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert tokenizer.decode(ids[:n_prompt]) == tokenizer.decode(tokenizer(prompt)["input_ids"])
    # no loss on any position whose next token is the prompt's, nor on the last position
    assert label[: n_prompt - 1] == [IGNORE] * (n_prompt - 1)
    assert label[-1] == IGNORE
    # every other position predicts the next token, which is the response's
    assert label[n_prompt - 1 : -1] == ids[n_prompt:]
    response = tokenizer.decode(ids[n_prompt:])
    assert response.startswith("ein hund")  # the answer's end-of-turn mark is learned too
    assert ids[n_prompt:].count(tokenizer.eos_token_id) == 1


def test_a_tokenizer_without_a_chat_template_reads_the_prompt_then_a_line_break(tmp_path):
    from transformers import AutoTokenizer

    plain = AutoTokenizer.from_pretrained(build_tiny_llama(tmp_path / "plain", chat=False))
    example = {"messages": [{"role": "user", "content": "a dog"}], "response": "ein hund"}
    features, labels = causal_lm.encode(plain, [example], {}, 64, "x")
    ids, label = features[0]["input_ids"], labels[0]
    first = next(i for i, v in enumerate(label) if v != IGNORE)
    assert plain.decode(ids[: first + 1]) == "a dog"
    assert ids[-1] == plain.eos_token_id and label[-2] == plain.eos_token_id


def test_long_examples_are_cut_at_max_length(tokenizer):
    example = {"messages": [{"role": "user", "content": "dog " * 50}], "response": "cat " * 50}
    features, labels = causal_lm.encode(tokenizer, [example], {}, 40, "x")
    assert len(features[0]["input_ids"]) == len(labels[0]) == 40


def test_the_loss_counts_response_tokens_only(tiny_llama, tokenizer):
    """The loop's summed cross-entropy over the shifted labels equals transformers' own causal-LM
    loss with the prompt's labels set to -100 (which shifts inside the model)."""
    from transformers import AutoModelForCausalLM

    from graftwork.data.batching import collate
    from graftwork.train.loop import summed_loss

    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    examples = [
        {"messages": [{"role": "user", "content": "a dog"}], "response": "ein hund"},
        {"messages": [{"role": "user", "content": "two men ride"}], "response": "zwei"},
    ]
    features, labels = causal_lm.encode(tokenizer, examples, {}, 64, "x")
    batch = collate(features, tokenizer.pad_token_id, labels)
    counted = int((batch["labels"] != IGNORE).sum())
    ours = summed_loss(model, dict(batch)) / counted
    hf_labels = batch["input_ids"].clone()
    hf_labels[:, 1:][batch["labels"][:, :-1] == IGNORE] = IGNORE
    hf_labels[:, 0] = IGNORE
    theirs = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=hf_labels
    ).loss
    torch.testing.assert_close(ours, theirs)


def test_methods_the_task_cannot_train_with_are_refused_in_the_recipe():
    with pytest.raises(RecipeError, match="task causal_lm trains with method full or lora"):
        load_recipe({"task": {"type": "causal_lm"}, "method": "frozen"})


@pytest.fixture(scope="module")
def lora_run(tiny_llama, instructions_small, tmp_path_factory):
    recipe = tiny_recipe(
        tiny_llama,
        instructions_small,
        tmp_path_factory.mktemp("lora"),
        task="causal_lm",
        method="lora",  # its default targets: the layout's q_proj and v_proj
        train={"lr": 1e-2, "threads": 1, "batch_size": 16},
        generation={"max_new_tokens": 6},
    )
    return train(recipe)


def test_training_lowers_the_held_out_perplexity_and_reports_the_metrics(lora_run):
    metrics = lora_run.metrics["eval"]
    assert set(causal_lm.SHOWN) <= set(metrics)
    assert metrics["examples"] == 60 and metrics["reference_tokens"] > 60
    history = lora_run.metrics["train"]["loss_history"]
    assert history[-1][1] < history[0][1]
    vocab = json.loads((lora_run.bundle / "config.json").read_text())["vocab_size"]
    assert metrics["perplexity"] < vocab  # better than a uniform guess over the vocabulary


def test_a_lora_bundle_loads_in_plain_transformers_and_peft_and_generates_the_same(lora_run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import graftwork

    bundle = lora_run.bundle
    tokenizer = AutoTokenizer.from_pretrained(bundle)
    plain = AutoModelForCausalLM.from_pretrained(bundle).eval()
    backbone = lora_run.recipe.backbone.name
    wrapped = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(backbone), bundle / "adapter"
    ).eval()
    messages = [{"role": "user", "content": "Translate to German: A dog runs on the beach."}]
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    a = plain.generate(**inputs, max_new_tokens=6, do_sample=False)
    b = wrapped.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert a.tolist() == b.tolist()
    ours = graftwork.load(bundle, backend="torch").predict([messages[0]["content"]])[0]
    new = a[0, inputs["input_ids"].shape[1] :].tolist()
    end = new.index(tokenizer.eos_token_id) if tokenizer.eos_token_id in new else len(new)
    assert ours["generated_text"] == tokenizer.decode(new[:end], skip_special_tokens=True).strip()


def test_the_task_is_registered_and_names_its_methods():
    task = registry.task("causal_lm")
    assert set(task.METHODS) <= set(registry.METHODS) and "frozen" not in task.METHODS


def test_two_line_aligned_files_read_as_prompts_after_the_prefix(tmp_path):
    (tmp_path / "train.en").write_text("A dog runs.\nTwo men sit.\n", encoding="utf-8")
    (tmp_path / "train.de").write_text("Ein Hund rennt.\nZwei Männer sitzen.\n", encoding="utf-8")
    recipe = load_recipe(
        {
            "task": {"type": "causal_lm", "source": "en", "target": "de", "prefix": "To German: "},
            "data": {"format": "parallel"},
        }
    )
    examples = read_examples(tmp_path / "train", recipe.task, recipe.data).examples
    assert [e["messages"] for e in examples] == [
        [{"role": "user", "content": "To German: A dog runs."}],
        [{"role": "user", "content": "To German: Two men sit."}],
    ]
    assert [e["response"] for e in examples] == ["Ein Hund rennt.", "Zwei Männer sitzen."]
    (tmp_path / "train.de").write_text("Ein Hund rennt.\n \n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.de, line 2: empty target"):
        read_examples(tmp_path / "train", recipe.task, recipe.data)
