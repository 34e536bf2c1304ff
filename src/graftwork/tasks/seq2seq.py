"""Sequence-to-sequence (translation, summarisation): a source text in, a target text out.

Data (`data.pairs`): two line-aligned files (`data.format: parallel`, `task.source: en`,
`task.target: de`), a TSV/CSV table or JSON lines with a source and a target column or field
(`task.source: dialogue`, `task.target: summary` for DialogSum). `task.prefix` is put before
every source (T5's "translate English to German: ").

Models: any encoder-decoder checkpoint `AutoModelForSeq2SeqLM` loads (T5, BART, Marian, …), or
one warm-started from two checkpoints (`backbone.decoder`, `backbones.warmstart`). Training is
teacher-forced: the targets, tokenized as the tokenizer writes them, are the labels, and the
model builds its decoder inputs from them (`train.loop.summed_loss`). Methods: full and LoRA
(`METHODS`; for LoRA on a T5 set `method.target: [q, v]`, on BART `[q_proj, v_proj]`).

Predictions are generated (`generate`: greedy by default, beam search or sampling from the
recipe's `generation` section), so this task's "logits" are its generated answers, one
`{"generated_text", "score"}` per example; a source longer than `data.max_length` tokens is
cut there (no windows: a translation is not the join of its windows' translations).

Metrics, on a 0-1 scale like every graftwork metric: `bleu` (sacrebleu's corpus BLEU, 13a
tokenization, cased; the headline), `bleu_lowercase`, `chrf` (sacrebleu's chrF) and `rougeL`
(the `rouge-score` package's mean ROUGE-L F-measure; its tokenizer keeps only ASCII letters and
digits, so read it for English summaries, not German). BLEU is the headline for translation and
summaries alike (one headline per task); a summary's ROUGE-L is beside it in every table. The
sacrebleu signature goes into the metrics.

Left out: windows for long sources, several return sequences per input (`top_k`), and ONNX export
(generation stays in PyTorch).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from graftwork.data import pairs
from graftwork.errors import DataError
from graftwork.tasks import losses
from graftwork.tasks.generation import settings
from graftwork.tasks.html import table

LABEL_KEY = ""  # no label vocabulary: the gold is each example's target text
HEADLINE = "bleu"
SHOWN = ("bleu", "chrf", "rougeL")
DEFAULT_FORMAT = "parallel"
EXAMPLE = "A man in a blue shirt is riding a bicycle down the street."
METHODS = ("full", "lora")  # the methods whose training applies to an encoder-decoder
OBJECTIVES = ()  # DANN's and EWC's losses are written for an encoder's classification head
# the stages (`methods.base.STAGES`) a seq2seq model cannot take, and why ({where}: the bundle)
REFUSES = {
    "export": "{where} is a seq2seq model, which generates token by token; graftwork exports no "
    "generation loop to ONNX, so generation stays in PyTorch (predict and serve it as it is)",
    "distill": "distillation matches a teacher's label logits; {where} is a seq2seq model, "
    "which writes text instead (train a smaller encoder-decoder on the same data)",
    "prune": "pruning removes heads and FFN neurons of a BERT-like encoder; {where} is a "
    "seq2seq encoder-decoder, which it does not prune",
    "multitask": "recipe {where}: multitask training shares one encoder among classification and "
    "NER heads; a seq2seq task trains in a recipe of its own",
}
SAMPLES = 5  # outputs the metrics (and the report) show beside their references


class Seq2SeqOutput(BaseModel):
    generated_text: str = Field(..., description="The generated target text.")
    score: float = Field(
        ..., description="Geometric mean of the generated tokens' probabilities (0-1)."
    )


Output = Seq2SeqOutput


class EncoderDecoderLM:
    """`AutoModelForSeq2SeqLM`, less the pooler of a warm-started model's BERT-like encoder:
    an encoder-decoder reads the encoder's hidden states, never its pooled output, so the
    pooler would count as trainable and never train. Its bundle still loads in plain
    transformers (which gives the unused pooler fresh weights and says so)."""

    @staticmethod
    def from_pretrained(*args, **kwargs):
        from transformers import AutoModelForSeq2SeqLM

        model = AutoModelForSeq2SeqLM.from_pretrained(*args, **kwargs)
        encoder = model.get_encoder()
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None
        return model


def model_class():
    return EncoderDecoderLM


def read(rows, fmt: str, task, data, require_labels: bool) -> None:
    if fmt == "parallel":
        pairs.read_parallel(rows, task, require_labels)
    elif fmt == "jsonl":
        pairs.read_jsonl(rows, task, require_labels)
    elif fmt in ("tsv", "csv"):
        pairs.read_table(rows, task, data, fmt, require_labels)
    else:
        raise DataError(
            f"{rows.shown}: seq2seq reads source/target pairs from parallel files, TSV, CSV or "
            f"JSON lines, not {fmt}; set data.format"
        )
    for example in rows.result.examples:
        example["prefix"] = task.prefix


def label_set(examples: list[dict], names: dict[str, str] | None = None) -> list[str]:
    return []  # targets are texts, not labels


def from_text(text: str, task=None) -> dict:
    prefix = task.prefix if task is not None else ""
    return {"source": text, "target": None, "prefix": prefix, "line": 0}


loss = losses.seq2seq_loss  # the training loss (`tasks.base.Task.loss`)


def to_text(example: dict, task=None) -> str:
    return example["source"]


def sources(tokenizer, examples: list[dict], max_length: int) -> list[dict]:
    """The encoder's inputs: each source (after its prefix), cut at `max_length` tokens."""
    texts = [e.get("prefix", "") + e["source"] for e in examples]
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    return [{"input_ids": ids} for ids in enc["input_ids"]]


def encode(tokenizer, examples, label2id, max_length: int, path: Path | str):
    features = sources(tokenizer, examples, max_length)
    if any(e.get("target") is None for e in examples):
        return features, None
    targets = [e["target"] for e in examples]
    labels = tokenizer(text_target=targets, truncation=True, max_length=max_length)["input_ids"]
    return features, [list(ids) for ids in labels]


def split_windows(tokenizer, examples: list[dict], window: int, stride: int) -> list[list[dict]]:
    return [[feature] for feature in sources(tokenizer, examples, window)]


def merge_windows(features: list[dict], logits: list, aggregate: str = "mean") -> tuple:
    return features[0], logits[0]


def generate(model, tokenizer, generation=None):
    """The forward of a generating task: a collated batch → an object array (batch, 1) of
    `{"generated_text", "score"}`, decoded with the recipe's `generation` settings
    (`config.generation`). Sampling draws from a generator seeded by `generation.seed` for
    every batch, so a batch's answers do not depend on what ran before it."""
    import torch

    config = settings(generation)
    options, seed = config.generate_kwargs(), config.seed
    model.eval()
    device = next(model.parameters()).device

    @torch.inference_mode()
    def forward(batch: dict) -> np.ndarray:
        inputs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask")}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = model.generate(
                **inputs, **options, return_dict_in_generate=True, output_scores=True
            )
        texts = tokenizer.batch_decode(out.sequences, skip_special_tokens=True)
        steps = model.compute_transition_scores(
            out.sequences, out.scores, getattr(out, "beam_indices", None), normalize_logits=True
        )
        scores = mean_probabilities(steps)
        answers = np.empty((len(texts), 1), dtype=object)
        for row, (text, score) in enumerate(zip(texts, scores, strict=True)):
            answers[row, 0] = {"generated_text": text.strip(), "score": score}
        return answers

    return forward


def mean_probabilities(steps) -> list[float]:
    """exp(mean log-probability) of each row's generated tokens (padding after the end, which
    transition scores give as 0 or -inf, does not count)."""
    import torch

    logp = steps.float()
    counted = torch.isfinite(logp) & (logp != 0)
    total = torch.where(counted, logp, torch.zeros_like(logp)).sum(dim=1)
    mean = total / counted.sum(dim=1).clamp(min=1)
    return [float(v) for v in torch.exp(mean)]


def scores(outputs: list[str], references: list[str]) -> dict:
    """Corpus BLEU (cased and lowercased) and chrF by sacrebleu, mean ROUGE-L F by rouge-score;
    each on a 0-1 scale."""
    from rouge_score import rouge_scorer
    from sacrebleu.metrics import BLEU, CHRF

    bleu = BLEU()
    result = bleu.corpus_score(outputs, [references])
    lower = BLEU(lowercase=True).corpus_score(outputs, [references])
    chrf = CHRF().corpus_score(outputs, [references])
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    both = zip(outputs, references, strict=True)
    rouge = [scorer.score(ref, out)["rougeL"].fmeasure for out, ref in both]
    return {
        "bleu": result.score / 100,
        "bleu_lowercase": lower.score / 100,
        "chrf": chrf.score / 100,
        "rougeL": float(np.mean(rouge)) if rouge else 0.0,
        "bleu_signature": str(bleu.get_signature()),
    }


def evaluate(examples, features, logits, labels, id2label) -> dict:
    outputs = [row[0]["generated_text"] for row in logits]
    references = [e["target"] for e in examples]
    metrics = scores(outputs, references)
    metrics["examples"] = len(examples)
    metrics["samples"] = [
        {"source": e["source"], "reference": e["target"], "output": out}
        for e, out in list(zip(examples, outputs, strict=True))[:SAMPLES]
    ]
    return metrics


def decode(examples, features, logits, id2label, top_k: int = 1) -> list[dict]:
    return [dict(row[0]) for row in logits]


def report_sections(metrics: dict) -> list[str]:
    if not metrics.get("samples"):
        return []
    rows = [[s["source"], s["reference"], s["output"]] for s in metrics["samples"]]
    return [table(["source", "reference", "output"], rows)]
