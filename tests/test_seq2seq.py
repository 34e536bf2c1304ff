"""Sequence-to-sequence: every encoder-decoder path on tiny random models, the metrics against
sacrebleu and rouge-score themselves, and bad data as located errors.

The tiny models are built here (seeded, milliseconds): a T5 and a BART with a word-level
tokenizer made from the Multi30k slice, and a warm-started EncoderDecoderModel from two copies
of conftest's tiny BERT (`backbone.decoder`). Each trains on 64 real Multi30k pairs; the
outputs of the trained model in memory (greedy and beam search) must equal those of its bundle
reloaded by graftwork and by plain transformers (and peft's adapter for LoRA).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import graftwork
from conftest import DATA, head, tiny_recipe
from graftwork import registry
from graftwork.errors import DataError, RecipeError
from graftwork.runs.finetune import train
from graftwork.tasks import seq2seq

PROBE = ["A man is riding a bicycle .", "Two dogs play in the snow .", "A woman sings ."]
GREEDY = {"max_new_tokens": 8}
BEAM = {"max_new_tokens": 8, "num_beams": 3}
TRAIN = dict(epochs=2, batch_size=8, lr=3e-3, seed=3, log_every=2, threads=1)
LORA_TARGETS = {"t5": ["q", "v"], "bart": ["q_proj", "v_proj"], "bert2bert": ["query", "value"]}


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    """Warm-started models are cached in a test folder, not the user's."""
    monkeypatch.setenv("GRAFT_CACHE", str(tmp_path_factory.getbasetemp() / "graft-cache"))


@pytest.fixture(scope="session")
def multi30k(tmp_path_factory) -> dict[str, Path]:
    """64 training and 16 validation pairs of the real Multi30k files (stems: `.en`/`.de`)."""
    folder = tmp_path_factory.mktemp("multi30k")
    for split, count in (("train", 64), ("val", 16)):
        for lang in ("en", "de"):
            lines = head(DATA / "multi30k" / f"{split}.{lang}", count)
            (folder / f"{split}.{lang}").write_text("".join(lines), encoding="utf-8")
    return {"train": folder / "train", "eval": folder / "val"}


def word_tokenizer(folder: Path, texts: list[str], specials: list[str], template: str):
    """A lowercasing word-level tokenizer over `texts` with `specials` first."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for t in texts for w in t.lower().split()})
    vocab = {w: i for i, w in enumerate([*specials, *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(s, vocab[s]) for s in specials if s in template]
    )
    names = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}
    if "<s>" in specials:
        names["bos_token"] = "<s>"
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=128, **names)
    fast.save_pretrained(folder)
    return fast, vocab


def corpus(multi30k) -> list[str]:
    texts = []
    for split in ("train", "eval"):
        for lang in ("en", "de"):
            texts += Path(f"{multi30k[split]}.{lang}").read_text(encoding="utf-8").splitlines()
    return texts + PROBE


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory, multi30k) -> Path:
    from transformers import T5Config, T5ForConditionalGeneration

    folder = tmp_path_factory.mktemp("tiny-t5")
    _, vocab = word_tokenizer(folder, corpus(multi30k), ["<pad>", "</s>", "<unk>"], "$A </s>")
    config = T5Config(
        vocab_size=len(vocab), d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def tiny_bart(tmp_path_factory, multi30k) -> Path:
    from transformers import BartConfig, BartForConditionalGeneration

    folder = tmp_path_factory.mktemp("tiny-bart")
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    _, vocab = word_tokenizer(folder, corpus(multi30k), specials, "<s> $A </s>")
    config = BartConfig(
        vocab_size=len(vocab), d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_position_embeddings=128, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=2,
    )  # fmt: skip
    torch.manual_seed(0)
    BartForConditionalGeneration(config).save_pretrained(folder, safe_serialization=True)
    return folder


def backbone_for(arch: str, request) -> dict:
    if arch == "bert2bert":
        bert = str(request.getfixturevalue("tiny_bert"))
        return {"name": bert, "decoder": bert}
    return {"name": str(request.getfixturevalue(f"tiny_{arch}"))}


def recipe_for(arch: str, method: str, request, multi30k, out: Path) -> dict:
    recipe = tiny_recipe(
        Path("unused"), multi30k, out, task="seq2seq", train=TRAIN, method={"type": method}
    )
    recipe["backbone"] = backbone_for(arch, request)
    recipe["task"] = {"type": "seq2seq", "source": "en", "target": "de"}
    recipe["data"]["format"] = "parallel"
    if method == "lora":
        recipe["method"] = {"type": "lora", "r": 4, "target": LORA_TARGETS[arch]}
        recipe["train"] = {**TRAIN, "lr": 1e-2}
    return recipe


def generate(model, tokenizer, settings: dict) -> list[str]:
    from graftwork.data.batching import collate

    features = seq2seq.sources(tokenizer, [seq2seq.from_text(t) for t in PROBE], 64)
    out = seq2seq.generate(model, tokenizer, settings)(collate(features, tokenizer.pad_token_id))
    return [row[0]["generated_text"] for row in out]


def trained(arch: str, method: str, request, multi30k, tmp_path, monkeypatch):
    """(run result, greedy and beam outputs of the trained model in memory, before saving)."""
    module = registry.method(method)
    finish, seen = module.finish, {}

    def traced_finish(model, out_dir):
        tokenizer = seen["tokenizer"]
        seen["greedy"], seen["beam"] = (generate(model, tokenizer, s) for s in (GREEDY, BEAM))
        return finish(model, out_dir)

    from graftwork.backbones import load as backbones

    load_tokenizer = backbones.load_tokenizer

    def traced_tokenizer(folder, config):
        seen["tokenizer"] = load_tokenizer(folder, config)
        return seen["tokenizer"]

    monkeypatch.setattr(module, "finish", traced_finish)
    monkeypatch.setattr(backbones, "load_tokenizer", traced_tokenizer)
    result = train(recipe_for(arch, method, request, multi30k, tmp_path))
    monkeypatch.undo()
    return result, seen["greedy"], seen["beam"]


@pytest.mark.parametrize("arch", ["t5", "bart", "bert2bert"])
def test_each_architecture_trains_and_its_bundle_generates_what_the_trained_model_did(
    arch, request, multi30k, tmp_path, monkeypatch
):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    result, greedy, beam = trained(arch, "full", request, multi30k, tmp_path, monkeypatch)
    history = [loss for _, loss in result.metrics["train"]["loss_history"]]
    assert history[-1] < history[0], "training did not lower the loss"
    predictor = graftwork.load(result.bundle, backend="torch")
    assert generate(predictor.model, predictor.tokenizer, GREEDY) == greedy
    assert generate(predictor.model, predictor.tokenizer, BEAM) == beam
    answers = predictor.predict(PROBE)  # the recipe's generation settings: the defaults
    assert [a["generated_text"] for a in answers] == generate(
        predictor.model, predictor.tokenizer, {}
    )
    assert all(0 < a["score"] <= 1 for a in answers)
    plain = AutoModelForSeq2SeqLM.from_pretrained(str(result.bundle))  # without graftwork
    tokenizer = AutoTokenizer.from_pretrained(str(result.bundle))
    assert generate(plain, tokenizer, BEAM) == beam
    evaluated = predictor.evaluate(f"{result.recipe.data.eval}")
    for key in ("bleu", "chrf", "rougeL", "bleu_lowercase"):
        assert evaluated[key] == pytest.approx(result.metrics["eval"][key], abs=1e-9)
    assert 0 <= result.metrics["eval"]["bleu"] <= 1


@pytest.mark.parametrize("arch", ["bart", "bert2bert"])
def test_lora_trains_only_its_updates_and_the_merged_bundle_generates_alike(
    arch, request, multi30k, tmp_path, monkeypatch
):
    import peft
    from transformers import AutoModelForSeq2SeqLM

    result, greedy, beam = trained(arch, "lora", request, multi30k, tmp_path, monkeypatch)
    params = result.metrics["parameters"]
    assert 0 < params["trainable"] < 0.2 * params["total"]
    predictor = graftwork.load(result.bundle, backend="torch")
    assert generate(predictor.model, predictor.tokenizer, GREEDY) == greedy
    assert generate(predictor.model, predictor.tokenizer, BEAM) == beam
    from graftwork.backbones.load import resolve

    # the adapter's base: the backbone folder (for bert2bert, the warm-started one in the cache)
    base = AutoModelForSeq2SeqLM.from_pretrained(str(resolve(result.recipe.backbone)))
    adapted = peft.PeftModel.from_pretrained(base, str(result.bundle / "adapter"))
    assert generate(adapted, predictor.tokenizer, BEAM) == beam


def test_the_warm_start_is_cached_once_and_drawn_alike(tiny_bert, tmp_path, monkeypatch):
    from graftwork.backbones.load import resolve
    from graftwork.config.recipe import BackboneConfig

    monkeypatch.setenv("GRAFT_CACHE", str(tmp_path))
    config = BackboneConfig(name=str(tiny_bert), decoder=str(tiny_bert))
    torch.manual_seed(123)  # the run's seed must not change the new weights
    first = resolve(config)
    made = (first / "model.safetensors").stat().st_mtime_ns
    torch.manual_seed(456)
    assert resolve(config) == first and (first / "model.safetensors").stat().st_mtime_ns == made
    saved = json.loads((first / "config.json").read_text())
    assert saved["model_type"] == "encoder-decoder" and saved["decoder"]["add_cross_attention"]
    assert [p.name for p in tmp_path.rglob(".*tmp*")] == []


def test_a_decoder_without_cross_attention_is_refused(tiny_bert, tmp_path, monkeypatch):
    from transformers import LlamaConfig, LlamaForCausalLM

    from graftwork.backbones.load import resolve
    from graftwork.config.recipe import BackboneConfig
    from graftwork.errors import BackboneError

    monkeypatch.setenv("GRAFT_CACHE", str(tmp_path / "cache"))
    llama = tmp_path / "llama"
    config = LlamaConfig(
        vocab_size=800, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, intermediate_size=64,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(llama, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (llama / name).write_bytes((tiny_bert / name).read_bytes())
    with pytest.raises(BackboneError, match="cannot warm-start an encoder-decoder"):
        resolve(BackboneConfig(name=str(tiny_bert), decoder=str(llama)))
    assert not (tmp_path / "cache" / "warmstart").exists() or not any(
        p for p in (tmp_path / "cache" / "warmstart").iterdir() if p.suffix != ".lock"
    )


def test_metrics_are_sacrebleus_and_rouge_scores_own():
    import sacrebleu
    from rouge_score import rouge_scorer

    outputs = ["Ein Mann fährt Fahrrad .", "zwei hunde spielen im Schnee", "Eine Frau"]
    references = [
        "Ein Mann fährt ein Fahrrad .",
        "Zwei Hunde spielen im Schnee .",
        "Eine Frau singt .",
    ]
    got = seq2seq.scores(outputs, references)
    assert got["bleu"] == pytest.approx(sacrebleu.corpus_bleu(outputs, [references]).score / 100)
    lower = sacrebleu.corpus_bleu(outputs, [references], lowercase=True).score / 100
    assert got["bleu_lowercase"] == pytest.approx(lower) and lower > got["bleu"]
    assert got["chrf"] == pytest.approx(sacrebleu.corpus_chrf(outputs, [references]).score / 100)
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    both = zip(outputs, references, strict=True)
    rouge = [scorer.score(r, o)["rougeL"].fmeasure for o, r in both]
    assert got["rougeL"] == pytest.approx(sum(rouge) / 3)
    assert seq2seq.scores(references, references)["bleu"] == pytest.approx(1.0)
    assert got["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")


def read(path: Path, **task) -> list[dict]:
    from graftwork.config.recipe import DataConfig, TaskConfig
    from graftwork.data.readers import read_examples

    return read_examples(path, TaskConfig(type="seq2seq", **task), DataConfig()).examples


def test_parallel_files_tsv_and_json_lines_give_the_same_pairs(tmp_path):
    (tmp_path / "p.en").write_text("A dog .\nA cat .\n", encoding="utf-8")
    (tmp_path / "p.de").write_text("Ein Hund .\nEine Katze .\n", encoding="utf-8")
    (tmp_path / "p.tsv").write_text("en\tde\nA dog .\tEin Hund .\nA cat .\tEine Katze .\n")
    rows = [{"en": "A dog .", "de": "Ein Hund ."}, {"en": "A cat .", "de": "Eine Katze ."}]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    want = [("A dog .", "Ein Hund ."), ("A cat .", "Eine Katze .")]
    for path in ("p", "p.en", "p.tsv", "p.jsonl"):
        examples = read(tmp_path / path, source="en", target="de")
        assert [(e["source"], e["target"]) for e in examples] == want, path


def test_dialogsum_reads_as_dialogue_to_summary():
    examples = read(DATA / "dialogsum" / "dev.jsonl", source="dialogue", target="summary")
    assert len(examples) > 100 and examples[0]["source"].startswith("#Person1#: Hello")
    assert all(e["target"] for e in examples)


def test_misaligned_parallel_files_name_both_counts(tmp_path):
    (tmp_path / "p.en").write_text("one\ntwo\nthree\n", encoding="utf-8")
    (tmp_path / "p.de").write_text("eins\nzwei\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"p\.en has 3 lines but .*p\.de has 2; parallel"):
        read(tmp_path / "p", source="en", target="de")


def test_an_empty_target_is_located(tmp_path):
    (tmp_path / "p.en").write_text("one\ntwo\n", encoding="utf-8")
    (tmp_path / "p.de").write_text("eins\n  \n", encoding="utf-8")
    with pytest.raises(DataError, match=r"p\.de, line 2: empty target text"):
        read(tmp_path / "p", source="en", target="de")
    (tmp_path / "p.tsv").write_text("source\ttarget\na\tb\nc\t\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"p\.tsv, line 3: empty target text"):
        read(tmp_path / "p.tsv")


def test_a_missing_field_is_located(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"dialogue": "hi", "summary": "s"}\n{"dialogue": "hello"}\n')
    with pytest.raises(DataError, match=r"d\.jsonl, line 2: field 'summary' \(task\.target\)"):
        read(path, source="dialogue", target="summary")
    path.write_text('{"dialog": "hi", "summary": "s"}\n')
    with pytest.raises(DataError, match=r"line 1: field 'dialogue' \(task\.source\) is missing"):
        read(path, source="dialogue", target="summary")


def test_methods_and_objectives_that_cannot_train_an_encoder_decoder_are_refused():
    from graftwork.config.recipe import load_recipe

    for method in set(registry.METHODS) - set(seq2seq.METHODS):
        with pytest.raises(RecipeError, match="task seq2seq trains with method full or lora"):
            load_recipe({"task": {"type": "seq2seq"}, "method": method})
    ewc = {"type": "ewc", "previous": "x", "lambda": 1}
    with pytest.raises(RecipeError, match="task seq2seq trains with no objective"):
        load_recipe({"task": {"type": "seq2seq"}, "objective": ewc})
    with pytest.raises(RecipeError, match="task.prefix is an option of sequence-to-sequence"):
        load_recipe({"task": {"type": "classification", "prefix": "translate: "}})


@pytest.fixture(scope="module")
def bart_bundle(request, multi30k, tmp_path_factory) -> Path:
    recipe = recipe_for("bart", "full", request, multi30k, tmp_path_factory.mktemp("bart-run"))
    recipe["train"] = {**TRAIN, "epochs": 4}  # enough that outputs differ by input
    return train(recipe).bundle


def test_served_answers_are_the_predictors_under_concurrent_requests(bart_bundle):
    from test_serve import post_all, running

    predictor = graftwork.load(bart_bundle, threads=1)
    texts = [line.strip() for line in head(DATA / "multi30k" / "val.en", 24)]
    alone = [predictor.predict([t])[0] for t in texts]
    assert len({a["score"] for a in alone}) == len(texts), "answers too alike to tell a mix-up"
    with running({"bart": predictor}, max_wait_ms=20, max_batch_size=8) as (url, _):
        responses = post_all(url, "/v1/models/bart/predict", [{"inputs": [t]} for t in texts])
    for response, want in zip(responses, alone, strict=True):
        assert response.status_code == 200, response.text
        (got,) = response.json()["outputs"]
        assert got["generated_text"] == want["generated_text"]
        assert got["score"] == pytest.approx(want["score"], abs=1e-4)  # batched with others


def test_graft_predict_prints_the_source_and_its_generated_text(bart_bundle):
    from typer.testing import CliRunner

    from graftwork.cli import app

    done = CliRunner().invoke(app, ["predict", str(bart_bundle), "A man sings ."])
    assert done.exit_code == 0, done.output
    line = json.loads(done.stdout.strip().splitlines()[-1])
    want = graftwork.load(bart_bundle).predict(["A man sings ."])[0]
    assert line == {"text": "A man sings .", **want}


@pytest.mark.parametrize("stage", ["export", "distill", "prune"])
def test_stages_that_cannot_take_a_seq2seq_bundle_say_why(bart_bundle, stage, tmp_path):
    from graftwork.errors import GraftError

    if stage == "export":
        from graftwork.export import export_bundle

        run = lambda: export_bundle(bart_bundle)  # noqa: E731
    elif stage == "distill":
        from graftwork.runs.distill import distill

        run = lambda: distill(bart_bundle)  # noqa: E731
    else:
        from graftwork.runs.prune import prune_bundle

        run = lambda: prune_bundle(bart_bundle, tmp_path / "pruned", 0.5, 0.5)  # noqa: E731
    with pytest.raises(GraftError, match=f"{bart_bundle} is a seq2seq"):
        run()
