"""Back-translation augmentation (`runs/augment.py`): labels aligned, duplicates, the filter.

Translators here are word-for-word dictionaries (exact, so each rule can be checked) and, for
the glue with a real model, a tiny random GPT-2 that "translates" by greedy continuation.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import DATA, head
from graftwork.errors import DataError, GraftError
from graftwork.runs.augment import back_translate, folded

EN_DE = {"a": "ein", "good": "guter", "film": "film", "bad": "schlechter", "movie": "film"}
DE_EN = {"ein": "a", "guter": "fine", "film": "film", "schlechter": "poor"}


def word_for_word(table: dict[str, str]):
    def translate(texts: list[str]) -> list[str]:
        return [" ".join(table.get(w, w) for w in t.split()) for t in texts]

    return translate


def rows(*pairs: tuple[str, str]) -> list[dict]:
    return [
        {"text": t, "text_pair": None, "label": lab, "line": i} for i, (t, lab) in enumerate(pairs)
    ]


def test_round_trips_keep_the_label_of_the_text_they_came_from():
    examples = rows(("a good film", "positive"), ("a bad movie", "negative"))
    done = back_translate(examples, word_for_word(EN_DE), word_for_word(DE_EN), 0.0, 0.99)
    assert [(e["text"], e["label"]) for e in done.examples] == [
        ("a fine film", "positive"),
        ("a poor film", "negative"),
    ]
    source = {e["text"]: e["label"] for e in examples}
    assert all(source[e["augmented_from"]] == e["label"] for e in done.examples)
    assert done.counts == {
        "empty": 0,
        "duplicate": 0,
        "too_different": 0,
        "too_similar": 0,
        "added": 2,
        "sent": 2,
    }


def test_a_round_trip_equal_to_a_training_text_or_a_kept_one_is_a_duplicate():
    examples = rows(("a good film", "positive"), ("A  fine film", "positive"), ("a good film", "x"))
    done = back_translate(examples, word_for_word(EN_DE), word_for_word(DE_EN), 0.0, 1.0)
    assert done.counts["sent"] == 2  # the repeated text is sent once (its first label)
    assert done.counts["duplicate"] == 2  # "a fine film" is a training text (case folded)
    assert done.examples == [] and folded(" A  Fine\tfilm ") == "a fine film"


def test_the_similarity_band_drops_drifted_and_near_copy_round_trips():
    examples = rows(("the plot is thin but the acting is superb", "positive"))
    unrelated = back_translate(
        examples, lambda t: t, lambda t: ["quarterly revenue grew"] * len(t), 0.3, 0.95
    )
    assert unrelated.counts["too_different"] == 1 and not unrelated.examples
    one_word = back_translate(
        examples, lambda t: t, lambda t: [s.replace("superb", "great") for s in t], 0.3, 0.6
    )
    assert one_word.counts["too_similar"] == 1 and not one_word.examples
    empty = back_translate(examples, lambda t: t, lambda t: ["  "] * len(t))
    assert empty.counts["empty"] == 1


def test_bad_translators_ner_examples_and_bad_bands_are_refused():
    examples = rows(("a good film", "positive"))
    with pytest.raises(GraftError, match="returned 0 text\\(s\\) for 1"):
        back_translate(examples, lambda t: [], lambda t: t)
    with pytest.raises(DataError, match="NER labels are per word"):
        back_translate([{"tokens": ["EU"], "tags": ["B-ORG"]}], str, str, task="ner")
    with pytest.raises(GraftError, match="min_similarity"):
        back_translate(examples, str, str, 0.9, 0.5)


def test_sentence_pairs_are_refused_before_anything_is_translated():
    pair = rows(("a good film", "positive"))[0] | {"text_pair": "a fine cast"}

    def never(texts):
        raise AssertionError("translated")

    with pytest.raises(DataError, match="sentence pairs"):
        back_translate([pair], never, never)


@pytest.fixture(scope="module")
def sst2_40(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bt") / "train.tsv"
    path.write_text("".join(head(DATA / "sst2" / "train.tsv", 41)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_gpt2(sst2_40, tmp_path_factory) -> Path:
    """A 1-layer GPT-2 with random weights and a word-level tokenizer: its "translations" are
    greedy continuations, enough to run the glue and check what comes back."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    texts = [line.split("\t", 1)[1] for line in sst2_40.read_text().splitlines()[1:]]
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]", "[EOS]"])
    tok.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]"
    )
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=tok.get_vocab_size(),
        n_embd=16,
        n_layer=1,
        n_head=2,
        n_positions=128,
        eos_token_id=2,
        bos_token_id=2,
        pad_token_id=1,
    )
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    GPT2LMHeadModel(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def test_a_tiny_causal_lm_as_translator_keeps_every_label_aligned(tiny_gpt2, sst2_40):
    from graftwork.runs.augment import generator_translator

    lines = [line.split("\t") for line in sst2_40.read_text().splitlines()[1:]]
    translate = generator_translator(tiny_gpt2, max_new_tokens=6)
    examples = rows(*[(t, lab) for lab, t in lines])
    done = back_translate(examples, translate, translate, 0.0, 0.99)
    assert sum(v for k, v in done.counts.items() if k != "sent") == done.counts["sent"] == 40
    assert done.counts["added"] == len(done.examples)
    source = {e["text"]: e["label"] for e in examples}
    assert all(source[e["augmented_from"]] == e["label"] for e in done.examples)


def test_graft_augment_writes_training_rows_then_round_trips_and_the_counts(
    tiny_gpt2, sst2_40, tmp_path
):
    import json

    import yaml
    from typer.testing import CliRunner

    from graftwork.cli import app

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"data": {"train": str(sst2_40)}}), encoding="utf-8")
    out = tmp_path / "bt.tsv"
    args = ["augment", str(recipe), "--back-translate", "--via", "xx", "--output", str(out)]
    args += ["--to-pivot", str(tiny_gpt2), "--from-pivot", str(tiny_gpt2), "--min-similarity", "0"]
    args += ["--max-new-tokens", "6"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    counts = json.loads((tmp_path / "bt.tsv.counts.json").read_text())
    written = out.read_text(encoding="utf-8").splitlines()
    assert written[0] == "label\tsentence" and counts["via"] == "xx"
    assert len(written) == 1 + 40 + counts["added"]
    assert written[1:41] == sst2_40.read_text(encoding="utf-8").splitlines()[1:]
    assert f"added {counts['added']}" in result.output
