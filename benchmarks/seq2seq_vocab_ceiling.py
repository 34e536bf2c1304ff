"""The best score a model can reach when it writes with a given tokenizer.

A seq2seq model writes its target with its decoder's tokenizer, so whatever that tokenizer
cannot spell (an uncased English WordPiece vocabulary lowercases German and strips its
umlauts: "Männer" → "manner") is lost however well the model translates. This script passes
each reference through the tokenizer and back (encode, then decode without special tokens) and
scores the round trips against the originals with the seq2seq task's own metrics
(`graftwork.tasks.seq2seq.scores`: sacrebleu BLEU, cased and lowercased, chrF, ROUGE-L): the
ceiling of any model using that tokenizer on that file. It also prints the pieces per word.

    python benchmarks/seq2seq_vocab_ceiling.py minilm-l6 ../shared/data/multi30k/test_2016_flickr.de
"""

from __future__ import annotations

import argparse

from graftwork.backbones import load as backbones
from graftwork.config.recipe import BackboneConfig
from graftwork.data.text import text_lines
from graftwork.machine import cpu_name
from graftwork.tasks.seq2seq import scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("backbone", help="short name or folder whose tokenizer writes the target")
    parser.add_argument("references", help="one reference a line (e.g. test_2016_flickr.de)")
    args = parser.parse_args()
    config = BackboneConfig(name=args.backbone)
    tokenizer = backbones.load_tokenizer(backbones.resolve(config), config)
    references = [line for line in text_lines(args.references) if line.strip()]
    ids = [tokenizer(ref, add_special_tokens=False)["input_ids"] for ref in references]
    round_trips = [tokenizer.decode(row, skip_special_tokens=True) for row in ids]
    result = scores(round_trips, references)
    words = sum(len(ref.split()) for ref in references)
    unknown = sum(row.count(tokenizer.unk_token_id) for row in ids)
    print(f"{args.backbone} on {args.references} ({len(references)} lines; {cpu_name()})")
    for key in ("bleu", "bleu_lowercase", "chrf", "rougeL"):
        print(f"  ceiling {key:15s} {100 * result[key]:6.2f}")
    print(f"  pieces per word  {sum(map(len, ids)) / words:6.2f}   unknown pieces {unknown}")
    changed = next((p for p in zip(references, round_trips, strict=True) if p[0] != p[1]), None)
    if changed:
        print(f"  e.g. {changed[0]!r}\n    -> {changed[1]!r}")


if __name__ == "__main__":
    main()
