"""Back-translation augmentation: training texts to a pivot language and back, labels kept.

`back_translate(examples, to_pivot, from_pivot)` sends each distinct training text through two
translators (functions from a list of texts to a list of texts, in order: a local translation
model wrapped by the caller) and keeps a round trip as a new example with the label of the
text it came from when it is
- not empty, and not a duplicate (whitespace and case folded) of a training text or of a
  round trip already kept;
- similar enough to its source to have kept the meaning (`min_similarity`) and different
  enough to add something (`max_similarity`); similarity is the cosine of TF-IDF vectors
  (scikit-learn, words and bigrams, fitted on the sources and their round trips).
`Augmented.counts` records how many texts went out and why each one that did not come back was
dropped; the examples themselves carry `augmented_from` (the source text).

Tasks with a `rewrite` only (`tasks.base`; classification): an NER example's labels are per
word, and a translation round trip changes the words and their order, so labels cannot be
carried honestly without an alignment model (projecting spans through word alignments is a
method of its own); sentence pairs are left out too (the two texts would be translated
apart).

`graft augment RECIPE --back-translate --via de --to-pivot BUNDLE --from-pivot BUNDLE --output
FILE` (`augment_recipe`) reads the recipe's training data, translates with two models
graftwork can generate with (`inference.generate.load_generator`: causal_lm bundles or
backbones; greedy decoding, each bundle's own prompt format), and writes FILE: the training
rows and then the kept round trips, in the recipe's columns, to train on with
`data.train=FILE`; the counts go to `FILE.counts.json`.

Leaves out: sampling several round trips per text, and seq2seq bundles as translators.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from graftwork import registry
from graftwork.bundle import atomic
from graftwork.config.recipe import load_recipe
from graftwork.data.readers import read_examples
from graftwork.errors import DataError, GraftError, RecipeError
from graftwork.inference.generate import load_generator

Translator = Callable[[list[str]], list[str]]


@dataclass
class Augmented:
    """The kept round trips (new examples) and what happened to every text sent."""

    examples: list[dict]
    counts: dict[str, int] = field(default_factory=dict)


def folded(text: str) -> str:
    """A text as duplicates are found: case and runs of whitespace folded."""
    return re.sub(r"\s+", " ", text).strip().casefold()


def tfidf_similarity(sources: list[str], candidates: list[str]) -> list[float]:
    """Cosine of each source with its candidate, TF-IDF fitted on both lists."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    try:
        vectors = vectorizer.fit_transform(sources + candidates)
    except ValueError:  # no word at all (only stop characters)
        return [0.0] * len(sources)
    left, right = vectors[: len(sources)], vectors[len(sources) :]
    return [float(v) for v in left.multiply(right).sum(axis=1).A1]  # rows are L2-normalised


def _run(translator: Translator, texts: list[str], step: str) -> list[str]:
    out = list(translator(texts))
    if len(out) != len(texts):
        raise GraftError(
            f"back-translation: the {step} translator returned {len(out)} text(s) for "
            f"{len(texts)}; a translator must answer every text, in order"
        )
    return [str(t) for t in out]


def back_translate(
    examples: list[dict],
    to_pivot: Translator,
    from_pivot: Translator,
    min_similarity: float = 0.3,
    max_similarity: float = 0.95,
    task: str = "classification",
) -> Augmented:
    """New examples from the round trips of `examples`' texts (see the module docstring); the
    `task`'s `rewrite` makes each (a task without one keeps no label through a round trip)."""
    if not 0 <= min_similarity <= max_similarity <= 1:
        raise GraftError(
            f"back-translation: need 0 ≤ min_similarity ({min_similarity}) ≤ max_similarity "
            f"({max_similarity}) ≤ 1"
        )
    kind = registry.task(task)
    rewrite = getattr(kind, "rewrite", None)
    if rewrite is None:
        raise DataError(
            f"back-translation keeps one label per text; {task} labels are tied to the words "
            "(NER labels are per word, QA answers are spans), and a round trip changes the "
            "words, so they cannot be carried (see graftwork.runs.augment)"
        )
    for example in examples:  # refused now, before any translation: e.g. a sentence pair
        rewrite(example, kind.to_text(example))
    first: dict[str, dict] = {}  # folded text → its first example
    for example in examples:
        first.setdefault(folded(example["text"]), example)
    sources = [e["text"] for e in first.values()]
    back = _run(from_pivot, _run(to_pivot, sources, "pivot"), "return")
    similarity = tfidf_similarity(sources, back)
    seen = set(first)
    counts = dict.fromkeys(("empty", "duplicate", "too_different", "too_similar", "added"), 0)
    counts["sent"] = len(sources)
    kept = []
    for source, text, score in zip(first.values(), back, similarity, strict=True):
        key = folded(text)
        if not key:
            reason = "empty"
        elif key in seen:
            reason = "duplicate"
        elif score < min_similarity:
            reason = "too_different"
        elif score > max_similarity:
            reason = "too_similar"
        else:
            reason = "added"
            seen.add(key)
            kept.append({**rewrite(source, text.strip()), "augmented_from": source["text"]})
        counts[reason] += 1
    return Augmented(kept, counts)


def generator_translator(
    source: str | Path, batch_size: int = 16, max_new_tokens: int | None = None
) -> Translator:
    """A translator from a model graftwork generates with (greedy decoding; at most
    `max_new_tokens` per text, default the model's generation settings)."""
    generator = load_generator(source)
    settings = generator.settings_with(greedy=True, max_new_tokens=max_new_tokens)

    def translate(texts: list[str]) -> list[str]:
        answers = generator.generate(texts, settings, batch_size=batch_size)
        return [a["generated_text"] for a in answers]

    return translate


def augment_recipe(
    recipe,
    output: Path,
    to_pivot: Translator,
    from_pivot: Translator,
    via: str,
    min_similarity: float = 0.3,
    max_similarity: float = 0.95,
) -> dict:
    """Back-translate the recipe's training data; write it with the kept round trips to
    `output` (a TSV in the recipe's columns) and the counts beside it; the counts."""
    recipe = load_recipe(recipe)
    task = recipe.task
    if not hasattr(registry.task(task.type), "rewrite") or task.text_pair is not None:
        raise RecipeError(
            f"recipe {recipe.name}: back-translation augments single-text classification "
            f"(task {task.type}{', text_pair' if task.text_pair else ''}); NER labels are per "
            "word and a translation changes the words (see graftwork.runs.augment)"
        )
    if task.text.isdigit() or task.label.isdigit():
        raise RecipeError(
            f"recipe {recipe.name}: name the text and label columns (task.text, task.label) so "
            "the augmented file can carry them as a header"
        )
    path = recipe.data_path("train")
    if path is None:
        raise RecipeError(f"recipe {recipe.name}: data.train is required; give a file path")
    if recipe.data.holdout is not None:
        raise RecipeError(
            f"recipe {recipe.name}: data.holdout evaluates on part of data.train, and "
            "back-translation writes a new training file from all of it; write the eval part to "
            "its own file and name it as data.eval"
        )
    examples = read_examples(path, task, recipe.data).examples
    done = back_translate(examples, to_pivot, from_pivot, min_similarity, max_similarity, task.type)
    raw = {name: value for value, name in task.label_names.items()}  # back to the file's labels
    lines = [f"{task.label}\t{task.text}"] + [
        f"{raw.get(e['label'], e['label'])}\t{' '.join(e['text'].split())}"
        for e in examples + done.examples
    ]
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    counts = {"via": via, "training_examples": len(examples), **done.counts}
    atomic.write_text(output, "\n".join(lines) + "\n")
    atomic.write_json(output.with_name(output.name + ".counts.json"), counts)
    return counts
