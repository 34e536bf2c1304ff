"""Shared fixtures: tiny random models built here (milliseconds), small slices of real data.

The tiny backbone is a 2-layer BERT (hidden 32, seeded weights) with a WordPiece tokenizer
trained on real SST-2 and CoNLL-2003 text (its 800-token vocabulary is read from
fixtures/tiny-vocab.txt, written once by fixtures/make_tiny_vocab.py, so that every process
builds the same model), saved as a Hugging Face folder with safetensors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from graftwork.config.recipe import data_root

DATA = Path(data_root())
FIXTURES = Path(__file__).with_name("fixtures")


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


def build_tiny_bert(folder: Path, dropout: float) -> Path:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # trained once by tests/fixtures/make_tiny_vocab.py on these sentences (the trainer is not
    # deterministic between processes, which made thresholds flaky)
    tokens = (FIXTURES / "tiny-vocab.txt").read_text(encoding="utf-8").splitlines()
    tok.model = models.WordPiece({t: i for i, t in enumerate(tokens)}, unk_token="[UNK]")
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


def squad_sentences(path: Path, count: int) -> list[dict]:
    """The first `count` questions of a SQuAD JSON file (of at most 40 characters) as JSON-lines
    records whose context is the sentence holding the first answer (short contexts keep tiny
    runs fast)."""
    records = []
    for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            for qa in paragraph["qas"]:
                if len(qa["question"]) > 40:  # room for context in the tiny model's windows
                    continue
                answer = qa["answers"][0]
                first = context.rfind(". ", 0, answer["answer_start"]) + 1
                last = context.find(". ", answer["answer_start"] + len(answer["text"]))
                sentence = context[first : last + 1 if last >= 0 else len(context)]
                lead = len(sentence) - len(sentence.lstrip())
                start = answer["answer_start"] - first - lead
                records.append(
                    {
                        "id": qa["id"],
                        "question": qa["question"],
                        "context": sentence.strip(),
                        "answers": [{"text": answer["text"], "answer_start": start}],
                    }
                )
                if len(records) == count:
                    return records
    return records


@pytest.fixture(scope="session")
def squad_small(tmp_path_factory) -> dict[str, Path]:
    """300 training and 100 evaluation questions of the real SQuAD files, as JSON lines with
    the answer's sentence for context."""
    folder = tmp_path_factory.mktemp("squad")
    for split, name, count in (("train", "train.json", 300), ("eval", "dev.json", 100)):
        rows = squad_sentences(DATA / "squad" / name, count)
        lines = "".join(json.dumps(r) + "\n" for r in rows)
        (folder / f"{split}.jsonl").write_text(lines, encoding="utf-8")
    return {"train": folder / "train.jsonl", "eval": folder / "eval.jsonl"}


CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_llama(folder: Path, chat: bool = True) -> Path:
    """A 2-layer Llama (hidden 32, seeded, tied embeddings) with the tiny BERT's WordPiece
    vocabulary plus ChatML's <|im_start|>/<|im_end|> (the end of sequence) and, with `chat`,
    a ChatML chat template (SmolLM2's format)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokens = (FIXTURES / "tiny-vocab.txt").read_text(encoding="utf-8").splitlines()
    tokens += ["<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(tokens)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        eos_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>"],
        model_max_length=256,
    )
    if chat:
        fast.chat_template = CHATML
    fast.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(tokens),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        pad_token_id=0,
        eos_token_id=len(tokens) - 1,
        bos_token_id=None,
    )
    import torch

    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A tiny Llama causal LM with a chat template (see `build_tiny_llama`)."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def instructions_small(tmp_path_factory) -> dict[str, Path]:
    """240 training and 60 evaluation Multi30k English→German pairs as prompt/response JSON
    lines (the prompt an instruction and the English caption)."""
    folder = tmp_path_factory.mktemp("instructions")
    english = head(DATA / "multi30k" / "train.en", 300)
    german = head(DATA / "multi30k" / "train.de", 300)
    rows = [
        {"prompt": f"Translate to German: {en.strip()}", "response": de.strip()}
        for en, de in zip(english, german, strict=True)
    ]
    for split, part in (("train", rows[:240]), ("eval", rows[240:])):
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part)
        (folder / f"{split}.jsonl").write_text(lines, encoding="utf-8")
    return {"train": folder / "train.jsonl", "eval": folder / "eval.jsonl"}


@pytest.fixture(scope="session")
def multi30k_small(tmp_path_factory) -> dict[str, Path]:
    """300 training and 100 evaluation pairs of the real Multi30k English/German files, as
    line-aligned parallel files (stems: `train` for train.en + train.de)."""
    folder = tmp_path_factory.mktemp("multi30k")
    for split, name, count in (("train", "train", 300), ("eval", "val", 100)):
        for lang in ("en", "de"):
            lines = head(DATA / "multi30k" / f"{name}.{lang}", count)
            (folder / f"{split}.{lang}").write_text("".join(lines), encoding="utf-8")
    return {"train": folder / "train", "eval": folder / "eval"}


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
