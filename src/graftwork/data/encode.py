"""Encode: examples → token ids (and label ids), with the fast tokenizer in one batched call.

For NER, words are tokenized with `is_split_into_words=True`; the first piece of each word
carries the word's tag and the other pieces are ignored by the loss (-100). `word_ids` is kept
so word-level predictions can be read back from the first pieces.
"""

from __future__ import annotations

from pathlib import Path

from graftwork.errors import DataError

IGNORE = -100


def label_ids(examples: list[dict], key: str, label2id: dict[str, int], path: Path | str) -> list:
    """Map labels to ids; a label training never saw is an error naming its line (`path`: the
    file as messages name it)."""
    out = []
    for example in examples:
        value = example.get(key)
        if value is None:
            out.append(None)
            continue
        values = value if isinstance(value, list) else [value]
        for v in values:
            if v not in label2id:
                raise DataError(
                    f"{path}, line {example['line']}: label '{v}' never appears in the training "
                    f"data (known labels: {', '.join(label2id)}). Fix the label, or add training "
                    "examples of it"
                )
        out.append([label2id[v] for v in values] if isinstance(value, list) else label2id[value])
    return out


def model_inputs(enc) -> list[str]:
    """The tokenizer outputs a model takes (token_type_ids only where the tokenizer makes them)."""
    return [k for k in ("input_ids", "token_type_ids") if k in enc]


def encode_texts(tokenizer, examples: list[dict], max_length: int) -> list[dict]:
    texts = [e["text"] for e in examples]
    pairs = [e.get("text_pair") for e in examples]
    enc = tokenizer(
        texts,
        pairs if any(p is not None for p in pairs) else None,
        truncation=True,
        max_length=max_length,
    )
    keys = model_inputs(enc)
    return [{k: enc[k][i] for k in keys} for i in range(len(examples))]


def encode_words(tokenizer, examples: list[dict], max_length: int) -> list[dict]:
    enc = tokenizer(
        [e["tokens"] for e in examples],
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
    )
    keys = model_inputs(enc)
    features = []
    for i in range(len(examples)):
        feature = {k: enc[k][i] for k in keys}
        feature["word_ids"] = enc.word_ids(i)
        features.append(feature)
    return features


def first_piece_labels(word_ids: list[int | None], tags: list[int]) -> list[int]:
    """Label the first piece of each word; every other position is ignored by the loss."""
    labels, previous = [], None
    for word in word_ids:
        labels.append(tags[word] if word is not None and word != previous else IGNORE)
        previous = word
    return labels


def first_pieces(word_ids: list[int | None]) -> dict[int, int]:
    """word index → position of its first piece (words cut off by truncation are absent)."""
    positions: dict[int, int] = {}
    for pos, word in enumerate(word_ids):
        if word is not None and word not in positions:
            positions[word] = pos
    return positions
