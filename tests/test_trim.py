"""Vocabulary trimming keeps only the corpora's pieces and changes nothing on text inside them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import graftwork
from conftest import tiny_recipe
from graftwork.bundle import read_manifest
from graftwork.cli import app
from graftwork.runs.finetune import train
from graftwork.runs.trim import TrimError, trim, trim_tokenizer
from test_select import graft_main

WORDS = ["▁the", "▁cat", "▁sat", "▁on", "▁mat", "▁der", "▁hund", "▁dog", "▁ran", "at", "og"]
LETTERS = "abcdefghijklmnopqrstuvwxyz"
CORPUS = ["The cat sat on the mat.", "the mat sat on the cat"]


def unigram_backbone(folder: Path) -> Path:
    """A 2-layer BERT with an XLM-R style Unigram tokenizer over a hand-made vocabulary (more
    embedding rows than pieces, as e5's)."""
    from tokenizers import AddedToken, Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -3.0)]
    vocab += [(w, -2.0) for w in WORDS] + [(".", -3.0)]
    vocab += [(c, -6.0) for c in LETTERS] + [("▁" + c, -7.0) for c in LETTERS] + [("<mask>", 0.0)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=3, byte_fallback=False))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
    )
    fast.save_pretrained(str(folder))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab) + 5,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        pad_token_id=1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(str(folder))
    return folder


def hidden(folder: Path, texts: list[str]) -> tuple[list[list[str]], torch.Tensor]:
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModel.from_pretrained(str(folder), add_pooling_layer=False).eval()
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch).last_hidden_state
    return [tok.convert_ids_to_tokens(ids) for ids in batch["input_ids"]], out


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(CORPUS) + "\n", encoding="utf-8")
    return path


def test_trimmed_backbone_gives_the_same_pieces_and_outputs(tmp_path, corpus):
    source = unigram_backbone(tmp_path / "full")
    done = trim(str(source), [corpus], tmp_path / "trimmed")
    texts = [*CORPUS, "the the cat"]
    assert hidden(tmp_path / "trimmed", texts)[0] == hidden(source, texts)[0]
    torch.testing.assert_close(
        hidden(tmp_path / "trimmed", texts)[1], hidden(source, texts)[1], rtol=0, atol=0
    )
    config = json.loads((tmp_path / "trimmed" / "config.json").read_text())
    kept = 4 + 5 + 1 + 2 * 9 + 1  # specials, used words, ".", 9 letters of the corpus ±▁, <mask>
    assert done.pieces_after == config["vocab_size"] == kept
    assert config["pad_token_id"] == 1
    assert done.parameters_before - done.parameters_after == (done.pieces_before + 5 - kept) * 32


def test_trimmed_vocabulary_still_spells_new_words_of_the_corpus_letters(tmp_path, corpus):
    trim(str(unigram_backbone(tmp_path / "full")), [corpus], tmp_path / "trimmed")
    pieces, _ = hidden(tmp_path / "trimmed", ["the moths", "a dog"])
    assert "<unk>" not in pieces[0]  # m, o, t, h, s all occur in the corpus
    assert pieces[1][1] == "▁a" and "<unk>" in pieces[1]  # d and g do not; nor does ▁dog


def test_trimmed_bundle_predicts_the_same_and_records_the_trim(tiny_bert, sst2_small, tmp_path):
    result = train(tiny_recipe(tiny_bert, sst2_small, tmp_path), ["train.epochs=0.25"])
    texts = [line.split("\t")[0] for line in sst2_small["eval"].read_text().splitlines()[1:40]]
    out = tmp_path / "trimmed"
    runner = CliRunner()
    cli = runner.invoke(
        app,
        ["trim", str(result.bundle), "--keep-from", str(sst2_small["eval"]), "--output", str(out)],
    )
    assert cli.exit_code == 0, cli.output
    assert "pieces" in cli.output and "parameters" in cli.output
    before = graftwork.load(result.bundle).predict(texts)
    after = graftwork.load(out).predict(texts)
    assert [b["label"] for b in before] == [a["label"] for a in after]
    assert [b["score"] for b in before] == pytest.approx([a["score"] for a in after], abs=1e-6)
    manifest = read_manifest(out)
    assert manifest.trimmed["pieces_after"] < manifest.trimmed["pieces_before"]
    assert manifest.labels == read_manifest(result.bundle).labels


def test_trimming_a_model_onto_itself_is_refused(tmp_path, corpus):
    source = unigram_backbone(tmp_path / "full")
    with pytest.raises(TrimError, match="is the model being trimmed"):
        trim(str(source), [corpus], source)
    assert (source / "model.safetensors").is_file()


def test_a_bpe_tokenizer_is_refused():
    with pytest.raises(TrimError, match="BPE tokenizer"):
        trim_tokenizer({"model": {"type": "BPE", "vocab": {}, "merges": []}}, [0])


def test_a_folder_with_the_users_files_is_never_replaced(tmp_path, corpus):
    source = unigram_backbone(tmp_path / "full")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    for overwrite in (False, True):  # not even with --overwrite: graftwork did not write it
        with pytest.raises(TrimError, match="not empty"):
            trim(str(source), [corpus], out, overwrite=overwrite)
        assert (out / "notes.txt").read_text() == "my notes"
        assert not (out / "model.safetensors").exists()


def test_graft_trim_refuses_a_non_empty_output_with_one_line(tmp_path, corpus, monkeypatch, capsys):
    source = unigram_backbone(tmp_path / "full")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    args = ["trim", str(source), "--keep-from", str(corpus), "--output", str(out)]
    status, said = graft_main(monkeypatch, capsys, *args)
    assert status == 2 and (out / "notes.txt").is_file()
    assert f"--output {out} is not empty" in said and "Traceback" not in said


def test_a_trim_is_replaced_only_with_overwrite(tmp_path, corpus):
    source = unigram_backbone(tmp_path / "full")
    out = tmp_path / "trimmed"
    trim(str(source), [corpus], out)
    with pytest.raises(TrimError, match="--overwrite"):
        trim(str(source), [corpus], out)
    (tmp_path / "more.txt").write_text("a dog ran\n")
    done = trim(str(source), [corpus, tmp_path / "more.txt"], out, overwrite=True)
    assert json.loads((out / "config.json").read_text())["vocab_size"] == done.pieces_after
    assert "▁dog" in hidden(out, ["a dog"])[0][0]


def test_an_empty_output_folder_is_used(tmp_path, corpus):
    out = tmp_path / "empty"
    out.mkdir()
    trim(str(unigram_backbone(tmp_path / "full")), [corpus], out)
    assert (out / "model.safetensors").is_file()


def test_an_output_holding_the_model_being_trimmed_is_refused(tmp_path, corpus):
    source = unigram_backbone(tmp_path / "out" / "full")
    with pytest.raises(TrimError, match="holds the model being trimmed"):
        trim(str(source), [corpus], tmp_path / "out", overwrite=True)
    assert (source / "model.safetensors").is_file()
