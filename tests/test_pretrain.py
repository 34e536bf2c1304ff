"""Continued masked-LM pretraining and vocabulary extension: tiny BERT, real SST-2 text."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

import graftwork
from conftest import DATA, head, tiny_recipe
from graftwork.cli import app
from graftwork.config.recipe import BackboneConfig
from graftwork.data.encode import IGNORE
from graftwork.errors import BundleError, DataError, GraftError, RecipeError
from graftwork.runs.corpus import DynamicMasks, encode_documents, mask_features, maskable
from graftwork.runs.finetune import train
from graftwork.runs.pretrain import load_mlm_model, load_pretrain_recipe, pretrain
from graftwork.runs.vocab import MineConfig, extend, mine_terms, tokens_per_word, words

RECIPE = Path(__file__).parents[1] / "recipes" / "pretrain-sst2.yaml"


def pretrain_recipe(backbone: Path, data: dict[str, Path], out: Path, **over) -> dict:
    recipe = {
        "name": "tiny-mlm",
        "backbone": str(backbone),
        "data": {"train": str(data["train"]), "eval": str(data["eval"]), "max_length": 32},
        "mlm": {"mask_ratio": 0.15, "head_warmup_steps": 10},
        "train": {"epochs": 1, "batch_size": 16, "lr": 1e-3, "seed": 3, "log_every": 10},
        "output_dir": str(out),
    }
    for section, values in over.items():
        recipe[section] = {**recipe.get(section, {}), **values}
    return recipe


@pytest.fixture(scope="module")
def tokenizer(tiny_bert):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_bert))


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    return [line.split("\t", 1)[1].strip() for line in head(DATA / "sst2" / "dev.tsv", 801)[1:]]


def masks(tokenizer, sentences, ratio: float, whole_word: bool = True, seed: int = 0):
    features = encode_documents(tokenizer, sentences, 64)
    masked, labels = mask_features(features, tokenizer, ratio, whole_word, seed)
    return features, masked, labels


def test_pretraining_runs_end_to_end_and_its_output_fine_tunes_as_a_backbone(
    tiny_bert, sst2_small, tmp_path
):
    from transformers import AutoModel, AutoModelForMaskedLM

    result = pretrain(pretrain_recipe(tiny_bert, sst2_small, tmp_path))
    ppl = result.metrics["perplexity"]
    assert ppl["after"] < ppl["before_head_warmup"] < ppl["before"]
    train_metrics = result.metrics["train"]
    assert 700 < train_metrics["sequences"] < 800  # a few short phrases got no masked token
    assert train_metrics["steps"] == -(-train_metrics["sequences"] // 16)
    assert json.loads((result.run_dir / "metrics.json").read_text())["perplexity"] == ppl
    manifest = json.loads((result.bundle / "graftwork.json").read_text())
    assert manifest["task"] == "mlm" and manifest["mask_ratio"] == 0.15

    mlm = AutoModelForMaskedLM.from_pretrained(str(result.bundle))
    assert mlm.get_output_embeddings().weight is mlm.get_input_embeddings().weight
    encoder = AutoModel.from_pretrained(str(result.bundle))
    original = AutoModel.from_pretrained(str(tiny_bert))
    layer, original_layer = encoder.encoder.layer[0], original.encoder.layer[0]
    assert not torch.equal(layer.output.dense.weight, original_layer.output.dense.weight)
    assert torch.equal(encoder.pooler.dense.weight, original.pooler.dense.weight)  # carried over

    recipe = tiny_recipe(result.bundle, sst2_small, tmp_path / "fine-tuned", train={"epochs": 0.5})
    fine_tuned = train(recipe)
    assert 0 <= fine_tuned.metrics["eval"]["accuracy"] <= 1
    with pytest.raises(BundleError, match="not a task model.*fine-tune from it"):
        graftwork.load(result.bundle)


def test_the_decoder_of_a_new_mlm_head_is_the_word_embedding_tensor(tiny_bert):
    model = load_mlm_model(tiny_bert, BackboneConfig(name=str(tiny_bert)))
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight


def test_new_vocabulary_embeddings_are_exactly_the_mean_of_their_pieces(tiny_bert, tokenizer):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))  # a copy this test may change
    model = load_mlm_model(tiny_bert, BackboneConfig(name=str(tiny_bert)))
    old = model.get_input_embeddings().weight.detach().clone()
    old_bias = model.get_output_embeddings().bias.detach().clone()
    terms = ["Cinematography", "screenwriter", "melodramatic", "film"]
    pieces = {t.lower(): tokenizer(t, add_special_tokens=False)["input_ids"] for t in terms}
    assert len(pieces["melodramatic"]) >= 3 and len(pieces["film"]) == 1

    added = extend(model, tokenizer, terms)

    assert added == ["cinematography", "screenwriter", "melodramatic"]  # lower-cased; film known
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer) == len(old) + 3
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    for term in added:
        new_id = tokenizer.convert_tokens_to_ids(term)
        assert torch.equal(model.get_input_embeddings().weight[new_id], old[pieces[term]].mean(0))
        assert model.get_output_embeddings().bias[new_id] == old_bias[pieces[term]].mean()
    assert torch.equal(model.get_input_embeddings().weight[: len(old)], old)
    assert tokenizer.tokenize("The Melodramatic screenwriter.") == [
        "the",
        "melodramatic",
        "screenwriter",
        ".",
    ]
    unchanged = AutoTokenizer.from_pretrained(str(tiny_bert)).tokenize("unmelodramatic")
    assert tokenizer.tokenize("unmelodramatic") == unchanged  # whole words only


def test_mined_terms_are_frequent_lowercased_words_split_into_3_or_more_pieces(
    tokenizer, sentences
):
    cfg = MineConfig(min_count=5, min_pieces=3, max_terms=10)
    mined = mine_terms(tokenizer, sentences, cfg)
    assert 0 < len(mined) <= 10
    counts = {w: sum(words(tokenizer, s).count(w) for s in sentences) for w in mined}
    for term in mined:
        assert term == term.lower() and counts[term] >= 5
        assert len(tokenizer.tokenize(term)) >= 3
    assert [counts[t] for t in mined] == sorted(counts.values(), reverse=True)
    assert len(mine_terms(tokenizer, sentences, MineConfig(min_count=5, max_terms=2))) == 2


def test_vocabulary_extension_lowers_tokens_per_word_on_held_out_text(
    tiny_bert, tokenizer, sentences
):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    model = load_mlm_model(tiny_bert, BackboneConfig(name=str(tiny_bert)))
    domain, held_out = sentences[:600], sentences[600:]
    before = tokens_per_word(tokenizer, held_out)
    extend(model, tokenizer, mine_terms(tokenizer, domain, MineConfig(min_count=3)))
    assert tokens_per_word(tokenizer, held_out) < before


def word_states(features: list[dict], labels: list[list[int]]) -> list[set[bool]]:
    """For every word: the set of "masked?" values of its pieces ({True} or {False}: agreed)."""
    out = []
    for feature, label in zip(features, labels, strict=True):
        states: dict[int, set[bool]] = {}
        for word, target in zip(feature["word_ids"], label, strict=True):
            if word is not None:
                states.setdefault(word, set()).add(target != IGNORE)
        out += states.values()
    return out


def test_whole_word_masking_masks_every_piece_of_a_word_together(tokenizer, sentences):
    features, _, labels = masks(tokenizer, sentences, 0.3)
    assert all(len(states) == 1 for states in word_states(features, labels))
    pieces = [f["word_ids"].count(w) for f in features for w in set(f["word_ids"]) - {None}]
    assert sum(n > 1 for n in pieces) > 500  # the tiny vocabulary splits many words: the test bites

    features, _, labels = masks(tokenizer, sentences, 0.3, whole_word=False)
    assert any(len(states) == 2 for states in word_states(features, labels))  # words split


@pytest.mark.parametrize("ratio", [0.15, 0.3])
def test_mask_ratio_is_the_fraction_of_words_and_tokens_masked(tokenizer, sentences, ratio):
    features, masked, labels = masks(tokenizer, sentences, ratio)
    tokens = sum(w is not None for f in features for w in f["word_ids"])
    picked = sum(x != IGNORE for lab in labels for x in lab)
    assert picked / tokens == pytest.approx(ratio, abs=0.015)
    words_masked = [states == {True} for states in word_states(features, labels)]
    assert sum(words_masked) / len(words_masked) == pytest.approx(ratio, abs=0.01)

    mask_id = tokenizer.mask_token_id
    outcomes = [
        "mask" if new == mask_id else "same" if new == old else "random"
        for m, lab in zip(masked, labels, strict=True)
        for new, old in zip(m["input_ids"], lab, strict=True)
        if old != IGNORE
    ]
    assert outcomes.count("mask") / len(outcomes) == pytest.approx(0.8, abs=0.03)
    assert outcomes.count("same") / len(outcomes) == pytest.approx(0.1, abs=0.03)


def test_masks_are_a_function_of_the_seed(tokenizer, sentences):
    assert masks(tokenizer, sentences, 0.15, seed=1) == masks(tokenizer, sentences, 0.15, seed=1)
    assert masks(tokenizer, sentences, 0.15, seed=1) != masks(tokenizer, sentences, 0.15, seed=2)


def dynamic(tokenizer, sentences, seed: int = 1) -> DynamicMasks:
    return DynamicMasks(tokenizer, sentences, 64, 0.15, True, seed)


def test_dynamic_masks_differ_between_epochs_and_repeat_for_a_seed(tokenizer, sentences):
    first, again = dynamic(tokenizer, sentences), dynamic(tokenizer, sentences)
    epoch0 = (list(first.features), list(first.labels))
    features, labels = first.features, first.labels  # the lists the loop holds
    first.for_epoch(1)
    assert features is first.features and labels is first.labels  # refilled in place
    assert labels != epoch0[1] and features != epoch0[0]
    assert [len(f["input_ids"]) for f in features] == [len(f["input_ids"]) for f in epoch0[0]]
    again.for_epoch(1)
    assert (again.features, again.labels) == (features, labels)
    first.for_epoch(0)  # an epoch's masks are rebuilt from (seed, epoch) alone (resume)
    assert (first.features, first.labels) == epoch0
    assert (dynamic(tokenizer, sentences, seed=2).labels) != epoch0[1]


def test_dynamic_masking_epoch_zero_is_the_static_mask_of_the_seed(tokenizer, sentences):
    static = mask_features(
        maskable(encode_documents(tokenizer, sentences, 64)), tokenizer, 0.15, True, 1
    )
    masks = dynamic(tokenizer, sentences)
    assert (masks.features, masks.labels) == static


class Interrupted(Exception):
    """Stands for the process dying."""


def test_a_dynamic_masking_run_remasks_each_epoch_repeats_for_a_seed_and_resumes_exactly(
    tiny_bert, sst2_small, tmp_path, monkeypatch
):
    from safetensors.torch import load_file

    import graftwork.runs.pretrain as module

    def recipe(name: str) -> dict:
        out = pretrain_recipe(tiny_bert, sst2_small, tmp_path / name)
        out["data"]["max_documents"] = 64
        out["mlm"].update(masking="dynamic", head_warmup_steps=0)
        out["train"].update(epochs=2, log_every=1, checkpoint_every=2)
        return out

    seen: list[torch.Tensor] = []  # the labels of every training batch, in order
    real_loss = module.mlm_loss

    def recording_loss(model, batch, frozen_encoder=False):
        if model.training:
            seen.extend(row[row != IGNORE] for row in batch["labels"])
        return real_loss(model, batch, frozen_encoder)

    with monkeypatch.context() as patch:
        patch.setattr(module, "mlm_loss", recording_loss)
        runs = [pretrain(recipe("a"))]
    runs.append(pretrain(recipe("b")))
    history = runs[0].metrics["train"]["loss_history"]
    assert history == runs[1].metrics["train"]["loss_history"]
    assert runs[0].metrics["masking"] == "dynamic"
    # each epoch saw every sequence once; the masked tokens differ between the epochs
    epochs = sorted(map(tuple, seen[: len(seen) // 2])), sorted(map(tuple, seen[len(seen) // 2 :]))
    assert len(epochs[0]) == len(epochs[1]) and epochs[0] != epochs[1]
    half = len(history) // 2  # steps per epoch
    assert len(history) == 2 * half == runs[0].metrics["train"]["steps"]

    real_fit = module.fit

    stop = 2 * (half // 2 + 1) + 1  # in epoch 1, a step after a checkpoint there (every 2)
    assert half < stop - 1 < 2 * half

    def stopping_fit(*args):
        def on_step(step: int, steps: int) -> None:
            if step == stop:
                raise Interrupted

        *rest, hooks = args
        return real_fit(*rest, dataclasses.replace(hooks, on_step=on_step))

    interrupted = recipe("r")
    monkeypatch.setattr(module, "fit", stopping_fit)
    with pytest.raises(Interrupted):
        pretrain(interrupted)
    monkeypatch.undo()
    resumed = pretrain(interrupted, resume=True)
    assert resumed.metrics["train"]["loss_history"] == history
    got = load_file(str(resumed.bundle / "model.safetensors"))
    want = load_file(str(runs[0].bundle / "model.safetensors"))
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_vocabulary_only_run_from_the_cli_saves_the_extended_tokenizer(
    tiny_bert, sst2_small, tmp_path
):
    from transformers import AutoTokenizer

    terms = tmp_path / "terms.txt"
    terms.write_text("Melodramatic\n\nscreenwriter\n")
    recipe = pretrain_recipe(tiny_bert, sst2_small, tmp_path, vocab={"terms": str(terms)})
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = CliRunner().invoke(app, ["pretrain", str(path), "train.epochs=0"])
    assert result.exit_code == 0, result.output
    assert "tokens per word" in result.output
    bundle = tmp_path / "tiny-mlm" / "bundle"
    metrics = json.loads((tmp_path / "tiny-mlm" / "metrics.json").read_text())
    assert metrics["vocab"]["terms"] == ["melodramatic", "screenwriter"]
    assert "after" not in metrics["perplexity"] and "train" not in metrics
    assert AutoTokenizer.from_pretrained(str(bundle)).tokenize("melodramatic") == ["melodramatic"]


def test_held_out_text_can_be_a_fraction_of_a_folder_of_txt_files(tiny_bert, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    lines = [line.split("\t", 1)[1] for line in head(DATA / "sst2" / "train.tsv", 201)[1:]]
    (corpus / "a.txt").write_text("".join(lines[:100]))
    (corpus / "b.txt").write_text("\n" + "".join(lines[100:]))
    recipe = pretrain_recipe(tiny_bert, {"train": corpus, "eval": None}, tmp_path)
    recipe["data"] = {"train": str(corpus), "eval_fraction": 0.1}
    result = pretrain(recipe, ["train.epochs=0", "mlm.head_warmup_steps=0"])
    assert result.metrics["documents"] == {"train": 180, "eval": 20}


def test_an_empty_missing_or_txt_less_corpus_is_a_clear_data_error(tiny_bert, sst2_small, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    no_txt = tmp_path / "no-txt"
    no_txt.mkdir()
    (no_txt / "notes.md").write_text("a film\n")
    cases = {
        empty: r"empty.txt: no text found",
        tmp_path / "missing.txt": r"missing.txt does not exist; check data.train",
        no_txt: r"no-txt holds no .txt files",
    }
    for corpus, message in cases.items():
        with pytest.raises(DataError, match=message):
            pretrain(pretrain_recipe(tiny_bert, {**sst2_small, "train": corpus}, tmp_path))
    recipe = pretrain_recipe(tiny_bert, sst2_small, tmp_path)
    with pytest.raises(DataError, match=r"vocab.terms file .*nope.txt does not exist"):
        pretrain(recipe, [f"vocab.terms={tmp_path / 'nope.txt'}", "train.epochs=0"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("mlm.mask_ratio=1.5", r"mlm.mask_ratio: Input should be less than 1 \(got 1.5\)"),
        ("mlm.mask_ratio=0", r"mlm.mask_ratio: Input should be greater than 0 \(got 0\)"),
        ("mlm.mask_ration=0.2", r"unknown key 'mlm.mask_ration'. Did you mean 'mask_ratio'\?"),
        ("vocab.mine.min_cout=3", r"unknown key 'vocab.mine.min_cout'. Did you mean 'min_count'"),
        ("vocab={}", r"vocab needs `terms: FILE`"),
        ("train.epochs=-1", r"train.epochs: Input should be greater than or equal to 0"),
    ],
)
def test_bad_recipe_values_are_recipe_errors_naming_the_key(
    tiny_bert, sst2_small, tmp_path, override, message
):
    with pytest.raises(RecipeError, match=message):
        load_pretrain_recipe(pretrain_recipe(tiny_bert, sst2_small, tmp_path), [override])


def test_pretrain_verb_has_help():
    result = CliRunner().invoke(app, ["pretrain", "--help"])
    assert result.exit_code == 0 and "backbone=runs/NAME/bundle" in result.output


def test_a_recipe_without_data_and_a_missing_recipe_file_are_errors(tmp_path):
    with pytest.raises(RecipeError, match=r"data: Field required"):
        load_pretrain_recipe({"backbone": "minilm-l6"})
    result = CliRunner().invoke(app, ["pretrain", str(tmp_path / "no.yaml")])
    assert isinstance(result.exception, GraftError) and "does not exist" in str(result.exception)


def test_the_shipped_pretraining_recipe_validates_and_its_data_exist():
    recipe = load_pretrain_recipe(RECIPE)
    assert recipe.mlm.mask_ratio == 0.15 and recipe.vocab.mine is not None
    data = recipe.data
    assert recipe.resolve_path(data.train).is_file() and recipe.resolve_path(data.eval).is_file()


def test_the_finbert_chain_recipes_validate_and_read_the_select_step_output():
    recipe = load_pretrain_recipe(RECIPE.with_name("pretrain-finance.yaml"))
    assert recipe.mlm.mask_ratio == 0.20 and recipe.vocab.mine is not None
    assert recipe.data.train == "runs/finance-select.txt"  # what step 1 (graft select) writes
    assert recipe.resolve_path(recipe.data.eval).is_file()


@pytest.mark.slow
def test_minilm_domain_pretraining_lowers_perplexity_and_tokens_per_word(tmp_path):
    # 800 documents (25 steps) after 20 head warm-up steps, held out: the first 400 dev
    # sentences (the same fixed mask before and after); on 2 Zen 3 cores this gave perplexity
    # 55,654 > 1,712 (head warm-up) > 1,321 and 1.103 > 1.089 tokens per word
    held_out = tmp_path / "dev.tsv"
    held_out.write_text("".join(head(DATA / "sst2" / "dev.tsv", 401)), encoding="utf-8")
    recipe = load_pretrain_recipe(
        RECIPE,
        [
            f"output_dir={tmp_path}",
            f"data.eval={held_out}",
            "data.max_documents=800",
            "mlm.head_warmup_steps=20",
            "vocab.mine.min_count=20",
        ],
    )
    result = pretrain(recipe)
    ppl, per_word = result.metrics["perplexity"], result.metrics["tokens_per_word"]
    assert ppl["after"] < ppl["before_head_warmup"] < ppl["before"]
    assert per_word["after"] < per_word["before"]
    assert result.metrics["vocab"]["added"] > 0
