"""Vocabulary trimming: keep only the pieces a user's corpora use, plus the special tokens.

A multilingual backbone spends most of its parameters on its vocabulary (one embedding row per
piece, for some hundred languages); a model for a few languages needs a fraction of them.
`trim` tokenizes the corpora with the model's own tokenizer and keeps every piece that occurs,
the special and added tokens, and the single-character pieces of every character the corpora
hold (bare and word-initial, e.g. `é` and `▁é`, so an unseen word in the same scripts still
splits into known pieces instead of `<unk>`). The embedding rows (and any tensor indexed by
piece: a tied MLM decoder and its bias) and the tokenizer's vocabulary keep those pieces in
their old order with new ids; ids in the config, the tokenizer's templates and its added
tokens are remapped. A segmentation that used only kept pieces is still the best (Unigram) or
the greedy longest-match (WordPiece) one among the kept pieces, so text inside the kept
vocabulary gives the same pieces, and the model the same outputs.

The source is a backbone (short name or folder; the output is a backbone folder for
`backbone:`) or a bundle (the output is a bundle: its manifest keeps its records and gains
`trimmed`; ONNX artifacts are left out, export again). It works on the files: tokenizer.json
and the safetensors weights; other files are copied. A trimmed backbone holds `trimmed.json`
(what the trim did), so a later trim knows the folder is one it wrote.

The output is written whole or not at all (`bundle.atomic`). An output folder that is not empty
is refused, and `overwrite=True` (`--overwrite`) replaces only a folder graftwork wrote (one
holding graftwork.json or trimmed.json): a folder of the user's own files is never deleted.
Left out: BPE tokenizers (their merges would need pruning too), sharded weights, and
adapter files holding embedding rows (LoRA on embeddings); these are refused.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from graftwork import registry
from graftwork.backbones.load import load_tokenizer, resolve
from graftwork.bundle import MANIFEST, atomic, read_manifest, write_bundle
from graftwork.config.recipe import BackboneConfig, DataConfig, TaskConfig
from graftwork.data.readers import read_examples
from graftwork.errors import GraftError
from graftwork.runs.corpus import read_documents

WEIGHTS = "model.safetensors"
# names of tensors indexed by piece (first dimension = vocabulary size)
BY_PIECE = (
    "word_embeddings",
    "embed_tokens",
    "wte.",
    "shared.",
    "lm_head",
    "decoder.",
    "predictions.bias",
)
DROPPED = ("onnx",)  # artifacts of the untrimmed model
RECORD = "trimmed.json"  # in a trimmed backbone: what the trim did (a bundle's is its manifest)


class TrimError(GraftError):
    """The model or its tokenizer cannot be trimmed."""


@dataclass
class Trimmed:
    """What a trim did: pieces, parameters and bytes on disk before and after."""

    source: str
    output: str
    kind: str  # backbone | bundle
    corpus_texts: int
    pieces_before: int
    pieces_after: int
    parameters_before: int
    parameters_after: int
    bytes_before: int
    bytes_after: int
    seconds: float

    def record(self) -> dict:
        return asdict(self)


def corpus_texts(paths: list[Path], fmt: str = "auto", text: str = "sentence") -> list[str]:
    """The texts of `paths`: CoNLL files (`fmt` conll, the words of each sentence joined by
    spaces), else lines of .txt files or folders, or the `text` column of TSV/CSV/JSONL."""
    texts: list[str] = []
    for path in paths:
        if fmt == "conll":
            data = DataConfig(format="conll", on_bad_rows="skip")
            examples = read_examples(path, TaskConfig(type="ner"), data, require_labels=False)
            texts += [registry.task("ner").to_text(e) for e in examples.examples]
        else:
            texts += read_documents(Path(path), text, header=True)
    return texts


def kept_ids(tokenizer, texts: list[str], batch: int = 2000) -> list[int]:
    """Sorted ids of the pieces to keep for `texts` (see the module docstring)."""
    keep = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    chars: set[str] = set()
    normalizer = tokenizer.backend_tokenizer.normalizer
    for start in range(0, len(texts), batch):
        chunk = texts[start : start + batch]
        for ids in tokenizer(chunk, add_special_tokens=False, verbose=False)["input_ids"]:
            keep.update(ids)
        for line in chunk:
            chars.update(normalizer.normalize_str(line) if normalizer else line)
    vocab = tokenizer.get_vocab()
    prefixes = ("", "\u2581", "##")
    keep.update(vocab[p + c] for c in chars for p in prefixes if p + c in vocab)
    return sorted(keep)


def trim_tokenizer(data: dict, kept: list[int]) -> dict:
    """tokenizer.json (as a dict) with only the pieces `kept`, renumbered in their order."""
    new_id = {old: new for new, old in enumerate(kept)}
    model = data["model"]
    if model["type"] == "Unigram":
        model["vocab"] = [model["vocab"][i] for i in kept]
        if model.get("unk_id") is not None:
            model["unk_id"] = new_id[model["unk_id"]]
    elif model["type"] == "WordPiece":
        by_id = {i: piece for piece, i in model["vocab"].items()}
        model["vocab"] = {by_id[old]: new for new, old in enumerate(kept)}
    else:
        raise TrimError(
            f"cannot trim a {model['type']} tokenizer (its merges would need pruning too); "
            "trimming supports Unigram (XLM-R, e5, T5) and WordPiece (BERT) vocabularies"
        )
    for token in data.get("added_tokens") or []:
        token["id"] = new_id[token["id"]]
    post = data.get("post_processor") or {}
    for step in post.get("processors", [post]):
        for special in (step.get("special_tokens") or {}).values():
            special["ids"] = [new_id[i] for i in special["ids"]]
        for key in ("cls", "sep"):  # BertProcessing / RobertaProcessing: [token, id]
            if isinstance(step.get(key), list):
                step[key][1] = new_id[step[key][1]]
    return data


def trim_weights(folder: Path, vocab_size: int, kept: list[int]) -> tuple[dict, int, int]:
    """The weights of `folder` with only rows `kept` of every tensor indexed by piece; also
    the parameter counts before and after."""
    import torch
    from safetensors.torch import load_file

    state = load_file(str(folder / WEIGHTS))
    before = sum(t.numel() for t in state.values())
    index = torch.tensor(kept)
    sliced = []
    for name, tensor in state.items():
        if tensor.dim() and tensor.shape[0] == vocab_size and any(w in name for w in BY_PIECE):
            state[name] = tensor.index_select(0, index).contiguous()
            sliced.append(name)
    if not any("embed" in name or "wte" in name or "shared" in name for name in sliced):
        raise TrimError(
            f"{folder / WEIGHTS}: no word-embedding tensor with {vocab_size} rows found "
            f"(tensors: {', '.join(list(state)[:6])}, …); this architecture is not supported"
        )
    return state, before, sum(t.numel() for t in state.values())


def trim_config(config: dict, kept: list[int]) -> dict:
    new_id = {old: new for new, old in enumerate(kept)}
    config["vocab_size"] = len(kept)
    for key, value in list(config.items()):
        if key.endswith("_token_id") and isinstance(value, int) and value in new_id:
            config[key] = new_id[value]
    return config


def check_output(output: Path, model: Path, overwrite: bool) -> None:
    """Refuse an output that is a file, that holds the model being trimmed, or that is a
    non-empty folder (with `overwrite`: one graftwork did not write)."""
    output = Path(output)
    where = f"--output {output}"
    if output.resolve() == model.resolve():
        raise TrimError(f"{where} is the model being trimmed; give a new folder")
    if model.resolve().is_relative_to(output.resolve()):
        raise TrimError(f"{where} holds the model being trimmed ({model}); give a new folder")
    if output.exists() and not output.is_dir():
        raise TrimError(f"{where} is a file; give a folder for the trimmed model")
    if not output.is_dir() or not any(output.iterdir()):
        return
    ours = (output / MANIFEST).is_file() or (output / RECORD).is_file()
    if not ours:
        raise TrimError(
            f"{where} is not empty and holds no model graftwork wrote (no {MANIFEST} or "
            f"{RECORD}); give a new or empty folder (its files are left as they are)"
        )
    if not overwrite:
        raise TrimError(
            f"{where} is not empty (a model graftwork wrote); give a new folder, or "
            "--overwrite to replace it"
        )


def trim(
    source: str,
    corpora: list[Path],
    output: Path,
    fmt: str = "auto",
    text: str = "sentence",
    overwrite: bool = False,
) -> Trimmed:
    """Trim backbone or bundle `source` to the pieces of `corpora`; write it to `output` (a
    new or empty folder, or with `overwrite` one graftwork wrote, see `check_output`)."""
    from safetensors.torch import save_file

    started = time.perf_counter()
    bundle = Path(source).is_dir() and (Path(source) / MANIFEST).is_file()
    manifest = read_manifest(Path(source)) if bundle else None
    folder = Path(source) if bundle else resolve(BackboneConfig(name=source))
    for needed in (WEIGHTS, "tokenizer.json", "config.json"):
        if not (folder / needed).is_file():
            raise TrimError(
                f"{folder} has no {needed}; trimming needs a fast tokenizer (tokenizer.json) "
                "and unsharded safetensors weights"
            )
    check_output(Path(output), folder, overwrite)
    texts = corpus_texts(corpora, fmt, text)
    tokenizer = load_tokenizer(folder, BackboneConfig(name=str(folder)))
    kept = kept_ids(tokenizer, texts)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    state, params_before, params_after = trim_weights(folder, config["vocab_size"], kept)
    tok_data = trim_tokenizer(json.loads((folder / "tokenizer.json").read_text("utf-8")), kept)
    _refuse_embedding_adapters(folder)

    def write(out: Path) -> None:
        for path in _copied(folder):
            if path.name in (WEIGHTS, "tokenizer.json", "config.json", MANIFEST, RECORD):
                continue
            (shutil.copytree if path.is_dir() else shutil.copy2)(path, out / path.name)
        _remap_tokenizer_config(out / "tokenizer_config.json", kept)
        (out / "config.json").write_text(json.dumps(trim_config(config, kept), indent=2))
        (out / "tokenizer.json").write_text(json.dumps(tok_data, ensure_ascii=False))
        save_file(state, str(out / WEIGHTS), metadata={"format": "pt"})

    output = Path(output)
    report = Trimmed(
        source=str(source),
        output=str(output),
        kind="bundle" if bundle else "backbone",
        corpus_texts=len(texts),
        pieces_before=len(tokenizer),
        pieces_after=len(kept),
        parameters_before=params_before,
        parameters_after=params_after,
        bytes_before=sum(p.stat().st_size for p in _copied(folder) if p.is_file()),
        bytes_after=0,
        seconds=0.0,
    )
    if bundle:
        record = manifest.dump()
        for key in ("files", "versions", "created", "artifacts"):
            record.pop(key, None)
        record["trimmed"] = {k: v for k, v in report.record().items() if "bytes" not in k}
        write_bundle(output, write, record)
    else:
        record = {k: v for k, v in report.record().items() if "bytes" not in k}
        with atomic.building(output) as tmp:
            write(tmp)
            (tmp / RECORD).write_text(json.dumps(record, indent=2), encoding="utf-8")
    report.bytes_after = atomic.size(output)
    report.seconds = time.perf_counter() - started
    return report


def _remap_tokenizer_config(path: Path, kept: list[int]) -> None:
    """transformers' tokenizer_config.json may name added tokens by id: renumber them."""
    if not path.is_file():
        return
    data = json.loads(path.read_text(encoding="utf-8"))
    decoder = data.get("added_tokens_decoder")
    if isinstance(decoder, dict):
        new_id = {old: new for new, old in enumerate(kept)}
        data["added_tokens_decoder"] = {str(new_id[int(k)]): v for k, v in decoder.items()}
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


def _copied(folder: Path) -> list[Path]:
    """The files and folders of `folder` a trimmed copy has (hidden ones and ONNX left out)."""
    return [
        p
        for p in sorted(folder.iterdir())
        if not p.name.startswith(".") and not any(d in p.name for d in DROPPED)
    ]


def _refuse_embedding_adapters(folder: Path) -> None:
    """Adapter weights are copied as they are: refuse those that hold embedding rows."""
    from safetensors import safe_open

    for path in folder.rglob("*.safetensors"):
        if path.name == WEIGHTS and path.parent == folder:
            continue
        with safe_open(str(path), "pt") as fh:
            names = list(fh.keys())  # noqa: SIM118 (a safe_open handle)
            if any("embed" in key or "wte" in key for key in names):
                raise TrimError(
                    f"{path} holds embedding weights, which trimming would leave unaligned; "
                    "merge the adapter into the model first, or trim the backbone and train again"
                )
