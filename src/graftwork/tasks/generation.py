"""Generation for the generating tasks: batched, left-padded prompts through `model.generate`.

`generate_ids` decodes a batch of token-id prompts with the recipe's `generation` settings
(`config.generation.GenerationConfig`): the prompts are padded on the left so every row's last
prompt token sits at the same position and the new tokens follow it, with the KV cache that
`generate` keeps; sampling draws from a generator seeded by the settings' seed for every batch,
so a batch's answers do not depend on what ran before. `text_scores` gives the corpus metrics
of generated texts against references (sacrebleu's BLEU and chrF, 0-1 scale).

`inference.generate` builds the user-facing paths on it (`graft generate`, streaming, the
server's generate endpoint); `tasks.causal_lm` evaluates and predicts with it. Left out:
speculative decoding and static caches (transformers' own options).
"""

from __future__ import annotations

from graftwork.config.generation import GenerationConfig


def settings(generation) -> GenerationConfig:
    """The generation settings from a recipe section: a GenerationConfig, a mapping (a bundle
    manifest's recipe) or None (the defaults: greedy, 64 new tokens)."""
    if isinstance(generation, GenerationConfig):
        return generation
    return GenerationConfig(**(generation or {}))


def stop_ids(model, tokenizer) -> list[int]:
    """Token ids that end an answer: the tokenizer's end of sequence and the model's own."""
    found = [tokenizer.eos_token_id]
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    found += configured if isinstance(configured, list) else [configured]
    return sorted({i for i in found if i is not None})


def left_padded(prompts: list[list[int]], pad_id: int):
    """(input_ids, attention_mask) tensors with every prompt aligned to the right."""
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        if prompt:
            ids[row, width - len(prompt) :] = torch.tensor(prompt)
            mask[row, width - len(prompt) :] = 1
    return ids, mask


def generate_ids(
    model, tokenizer, prompts: list[list[int]], generation=None, streamer=None
) -> list[list[int]]:
    """The new tokens for each prompt (up to and without its end-of-sequence token)."""
    import torch

    config = settings(generation)
    stops = stop_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    ids, mask = left_padded(prompts, pad)
    device = next(model.parameters()).device
    with torch.inference_mode(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        out = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            pad_token_id=pad,
            eos_token_id=stops,
            streamer=streamer,
            **config.generate_kwargs(),
        )
    answers = []
    for row in out[:, ids.shape[1] :].tolist():
        end = next((i for i, token in enumerate(row) if token in stops), len(row))
        answers.append(row[:end])
    return answers


def text_scores(outputs: list[str], references: list[str]) -> dict:
    """Corpus BLEU (13a tokenization, cased) and chrF by sacrebleu, on a 0-1 scale."""
    from sacrebleu.metrics import BLEU, CHRF

    bleu = BLEU()
    return {
        "bleu": bleu.corpus_score(outputs, [references]).score / 100,
        "chrf": CHRF().corpus_score(outputs, [references]).score / 100,
        "bleu_signature": str(bleu.get_signature()),
    }
