"""An encoder-decoder warm-started from two pretrained checkpoints (Rothe et al., 2020).

`backbone: {name: ENCODER, decoder: DECODER}` builds transformers' `EncoderDecoderModel` from
the two checkpoints (`from_encoder_decoder_pretrained`): the encoder as it is, the decoder made
causal with a cross-attention block in every layer, newly initialised (and, for an encoder
checkpoint such as MiniLM, a language-model head whose transform is new as well). The result is
saved once as a plain Hugging Face folder under `$GRAFT_CACHE/warmstart/` (graftwork's cache,
`backbones.cache`) with the encoder's tokenizer, and from then on is an ordinary local
encoder-decoder checkpoint (`AutoModelForSeq2SeqLM` loads it, with or without graftwork).

The new weights are drawn under a fixed seed (`SEED`, not the run's), so that one pair of
checkpoints always gives the same starting model, and a cached folder is reused only when its
record names the same two checkpoints (their folders, config and weight sizes and times).
The folder is built once (under a lock, beside its final place, then renamed into it), so a
half-written cache is never used.

The special tokens come from the shared tokenizer: the decoder starts from `[CLS]` (else BOS)
and stops at `[SEP]` (else EOS), as in the paper's BERT2BERT models.

Left out: decoders with another vocabulary than the encoder's (one tokenizer reads the source
and writes the target; refused with a message), and decoder-only architectures without
cross-attention (Llama, GPT-NeoX: transformers refuses them as decoders here, so SmolLM2 cannot
be one; use it text-to-text with a prompt template instead).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from graftwork.backbones.cache import converted
from graftwork.backbones.quiet import quiet
from graftwork.errors import BackboneError

SEED = 0  # the cross-attention and other new weights are drawn under this seed


def _describe(folder: Path) -> dict:
    """What identifies a checkpoint folder: its path, and its config and weights by size and
    modification time."""
    files = sorted(p for p in folder.iterdir() if p.suffix in (".json", ".safetensors", ".bin"))
    return {
        "folder": str(folder.resolve()),
        "files": [[p.name, p.stat().st_size, int(p.stat().st_mtime)] for p in files],
    }


def _record(encoder: Path, decoder: Path) -> dict:
    return {"encoder": _describe(encoder), "decoder": _describe(decoder), "seed": SEED}


def warm_started(encoder: Path, decoder: Path, name: str) -> Path:
    """The folder of the encoder-decoder built from `encoder` and `decoder` (checkpoint
    folders), building it on first use; `name` is how messages call the backbone."""
    record = _record(encoder, decoder)
    key = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]
    return converted(
        f"warmstart/{encoder.name}--{decoder.name}-{key}",
        lambda tmp: build(encoder, decoder, tmp, name),
        f"the warm-started encoder-decoder of backbone {name}",
        record,
    )


def build(encoder: Path, decoder: Path, out: Path, name: str) -> None:
    """Save the warm-started EncoderDecoderModel of the two checkpoints, and the tokenizer
    they share, as a plain transformers folder `out`."""
    import torch
    from transformers import AutoTokenizer, EncoderDecoderModel

    with quiet():
        tokenizer = AutoTokenizer.from_pretrained(str(encoder))
        other = AutoTokenizer.from_pretrained(str(decoder))
    if tokenizer.get_vocab() != other.get_vocab():
        raise BackboneError(
            f"backbone {name}: the decoder {decoder} has another vocabulary than the encoder "
            f"{encoder}; a warm-started encoder-decoder reads and writes with one tokenizer. "
            "Use a decoder checkpoint with the encoder's vocabulary (e.g. the same checkpoint)"
        )
    with torch.random.fork_rng(devices=[]), quiet():
        torch.manual_seed(SEED)
        try:
            model = EncoderDecoderModel.from_encoder_decoder_pretrained(str(encoder), str(decoder))
        except (ValueError, OSError) as exc:
            raise BackboneError(
                f"backbone {name}: cannot warm-start an encoder-decoder from {encoder} and "
                f"{decoder}: {exc}"
            ) from None
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if start is None or end is None or tokenizer.pad_token_id is None:
        raise BackboneError(
            f"backbone {name}: the tokenizer of {encoder} has no start ([CLS]/BOS), end "
            "([SEP]/EOS) or padding token, which a decoder needs"
        )
    special = {
        "decoder_start_token_id": start,
        "eos_token_id": end,
        "pad_token_id": tokenizer.pad_token_id,
    }
    for key, value in special.items():
        setattr(model.config, key, value)
        setattr(model.generation_config, key, value)
    model.config.vocab_size = model.config.decoder.vocab_size
    with quiet():
        model.save_pretrained(str(out), safe_serialization=True)
        tokenizer.save_pretrained(str(out))
