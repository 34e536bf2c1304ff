"""Shared fixtures: tiny random models built here (milliseconds), small slices of real data.

The tiny backbone is a 2-layer BERT (hidden 32) with a WordPiece tokenizer trained in the test
session on real SST-2 and CoNLL-2003 text, saved as a Hugging Face folder with safetensors.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from graftwork.config.recipe import data_root

DATA = Path(data_root())


def pytest_configure(config):
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not (DATA / "sst2" / "train.tsv").is_file():
        raise pytest.UsageError(
            f"real data not found at {DATA}; put shared/data beside the project or set GRAFT_DATA"
        )


def head(path: Path, lines: int) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        return [next(fh) for _ in range(lines)]


def conll_sentences(path: Path, count: int) -> str:
    """The first `count` sentences of a CoNLL file, as text."""
    blocks = path.read_text(encoding="utf-8").split("\n\n")
    return "\n\n".join(blocks[:count]).strip("\n") + "\n"


def fixed_vocab(trained, corpus: list[str]) -> dict[str, int]:
    """A vocabulary the same in every process, of the trained one's size: the WordPiece trainer
    breaks ties differently in each process (a token of the 800 and the ids of many change,
    which moves every loss and made thresholds flaky). Here: the special tokens, every
    character alone and as `##` continuation, then the most frequent words (ties in spelling
    order)."""
    words: Counter = Counter()
    for text in corpus:
        normal = trained.normalizer.normalize_str(text)
        words.update(w for w, _ in trained.pre_tokenizer.pre_tokenize_str(normal))
    chars = sorted({c for w in words for c in w})
    by_id = sorted(trained.get_vocab().items(), key=lambda item: item[1])
    vocab = [t for t, _ in by_id if t.startswith("[") and t.endswith("]")]
    vocab += [c for c in chars if c not in vocab] + ["##" + c for c in chars]
    common = sorted(words.items(), key=lambda item: (-item[1], item[0]))
    size = trained.get_vocab_size()
    vocab += [w for w, _ in common if len(w) > 1][: size - len(vocab)]
    assert len(vocab) == size == len(set(vocab)), (len(vocab), size)
    assert [t for t, _ in by_id[:5]] == vocab[:5]  # the specials keep their ids
    return {token: i for i, token in enumerate(vocab)}


def build_tiny_bert(folder: Path, dropout: float) -> Path:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    corpus = [line.split("\t", 1)[1] for line in head(DATA / "sst2" / "train.tsv", 3000)[1:]]
    corpus += [
        " ".join(line.split()[0] for line in block.splitlines())
        for block in conll_sentences(DATA / "conll2003" / "train.txt", 2000).split("\n\n")
    ]
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        corpus, trainers.WordPieceTrainer(vocab_size=800, special_tokens=specials)
    )
    tok.model = models.WordPiece(fixed_vocab(tok, corpus), unk_token="[UNK]")
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=128,
    )
    fast.save_pretrained(folder)
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        pad_token_id=0,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A tiny BERT with the usual dropout (0.1)."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), dropout=0.1)


@pytest.fixture(scope="session")
def tiny_bert_nodrop(tmp_path_factory) -> Path:
    """A tiny BERT without dropout, for comparing runs whose random streams differ."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert-nodrop"), dropout=0.0)


@pytest.fixture(scope="session")
def sst2_small(tmp_path_factory) -> dict[str, Path]:
    """800 training and 200 evaluation rows of the real SST-2 files."""
    folder = tmp_path_factory.mktemp("sst2")
    train = head(DATA / "sst2" / "train.tsv", 801)
    dev = head(DATA / "sst2" / "dev.tsv", 201)
    (folder / "train.tsv").write_text("".join(train), encoding="utf-8")
    (folder / "dev.tsv").write_text("".join(dev), encoding="utf-8")
    return {"train": folder / "train.tsv", "eval": folder / "dev.tsv"}


@pytest.fixture(scope="session")
def conll_small(tmp_path_factory) -> dict[str, Path]:
    """300 training and 100 evaluation sentences of the real CoNLL-2003 files."""
    folder = tmp_path_factory.mktemp("conll")
    (folder / "train.txt").write_text(conll_sentences(DATA / "conll2003" / "train.txt", 300))
    (folder / "dev.txt").write_text(conll_sentences(DATA / "conll2003" / "dev.txt", 100))
    return {"train": folder / "train.txt", "eval": folder / "dev.txt"}


def tiny_recipe(
    backbone: Path, data: dict[str, Path], out: Path, task: str = "classification", **over
) -> dict:
    """A recipe dict for the tiny model; keyword arguments replace whole sections' keys."""
    recipe = {
        "name": "tiny",
        "backbone": str(backbone),
        "task": {"type": task},
        "data": {"train": str(data["train"]), "eval": str(data["eval"]), "max_length": 64},
        "method": {"type": "full"},
        "train": {"epochs": 1, "batch_size": 16, "lr": 1e-3, "seed": 3, "log_every": 10},
        "output_dir": str(out),
    }
    for section, values in over.items():
        if isinstance(values, dict) and isinstance(recipe.get(section), dict):
            recipe[section] = {**recipe[section], **values}
        else:
            recipe[section] = values
    return recipe
