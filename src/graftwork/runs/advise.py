"""`graft advise`: backbone + method + compression for a scenario, from a measured rule table.

Every rule names the measurement that backs it (a section of BENCHMARKS.md, all on the
packaged MiniLM and real data, AMD EPYC with 2 cores unless said otherwise). The rules are
data (`METHOD_RULES`, `SERVING`), so a new measurement changes a number here, not the logic.

What it deliberately does not do: guess beyond the measurements. Latency figures are for
single requests of SST-2-length inputs (25 tokens on average) on the measured CPU; for other
lengths they are scaled linearly (windows of long texts measured linear in length), which is
an estimate and says so. A scenario outside the measured range gets the nearest rule and a note.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from graftwork.errors import GraftError

MEASURED_TOKENS = 25  # mean tokens of an SST-2 dev sentence, the inputs behind SERVING

# (bundle and backend, dev accuracy, single-request p99 ms, what to run) — "Latency" section
SERVING = (
    ("the fine-tuned model, ONNX INT8", 90.02, 4.85, "graft export BUNDLE --int8"),
    (
        "a 3-layer distilled student, ONNX INT8",
        88.42,
        1.76,
        "graft distill BUNDLE, then graft export STUDENT --int8",
    ),
)
UNCOMPRESSED_P99 = 21.96  # the PyTorch model, same measurement

# (fewest examples the rule applies from, method, why) — "Adaptation methods" section
METHOD_RULES = (
    (
        0,
        "adapter",
        "with 1,000 SST-2 examples trained 5 epochs, the Houlsby adapter (reduction 16, 0.99 % "
        "trainable) reached 80.6 % dev accuracy against 79.9 % for full fine-tuning, 78.8 % for "
        "LoRA and 52.3 % for the frozen backbone; train small sets for several epochs (with one "
        "epoch of 2,000 examples the adapter stayed at 64.3 % while full reached 79.9 %)",
    ),
    (
        5_000,
        "full",
        "with 16,000 SST-2 examples full fine-tuning reached 86.6 % against 85.7 % for the "
        "adapter; with all 67,349 it reached 89.7 % against 88.3 % for LoRA and 87.4 % for the "
        "adapter (one epoch each; the adapter needed two epochs for 88.2 %): more data favours "
        "training everything",
    ),
)

SHARED_BACKBONE = (
    "several tasks share one backbone: each task adds a 0.9 MB adapter (LoRA on query/value: "
    "0.3 MB) instead of an 87 MB model, and training them allocates 0.63× (adapter) and 0.69× "
    "(LoRA) of full fine-tuning's peak memory, 0.49× and 0.51× with gradient checkpointing"
)


@dataclass
class Advice:
    backbone: str
    method: str
    compression: str
    reasons: list[str] = field(default_factory=list)


def advise(
    examples: int,
    labels: int,
    latency_ms: float,
    languages: list[str] | tuple[str, ...] = ("en",),
    tokens: int = MEASURED_TOKENS,
    tasks: int = 1,
) -> Advice:
    if examples < 1 or labels < 2 or latency_ms <= 0 or tokens < 1 or tasks < 1:
        raise GraftError(
            "advise: --examples ≥ 1, --labels ≥ 2, --latency-ms > 0, --tokens ≥ 1 and "
            f"--tasks ≥ 1 are needed (got {examples}, {labels}, {latency_ms}, {tokens}, {tasks})"
        )
    langs = sorted({lang.strip().lower() for lang in languages if lang.strip()}) or ["en"]
    reasons: list[str] = []

    if langs == ["en"]:
        backbone = "minilm-l6"
        reasons.append(
            "English only: the packaged MiniLM (minilm-l6) is what every figure here was "
            "measured on, and it runs offline"
        )
    else:
        backbone = "a multilingual encoder from a local folder (xlm-roberta-base, or mBERT)"
        reasons.append(
            f"languages {', '.join(langs)}: minilm-l6 has an uncased English WordPiece "
            "vocabulary; published WikiANN en→de zero-shot F1 is 74–75 for XLM-R base against "
            "69–70 for mBERT (shared/data README); no multilingual weights are packaged, so "
            "this was not measured here (BENCHMARKS.md, Cross-lingual)"
        )

    if tasks > 1:
        method = "adapter"
        reasons.append(SHARED_BACKBONE)
    else:
        _, method, why = max((r for r in METHOD_RULES if examples >= r[0]), key=lambda r: r[0])
        reasons.append(why)
    per_label = examples / labels
    if per_label < 50:
        reasons.append(
            f"only {per_label:.0f} examples per label: expect noisy results; the smallest "
            "measured setting is 1,000 SST-2 examples (500 per label); for classification, "
            "measure few-shot learning (SetFit) beside the methods on your examples: "
            "graft compare RECIPE --methods full,lora,fewshot"
        )

    scale = tokens / MEASURED_TOKENS
    estimate = "" if tokens == MEASURED_TOKENS else f" (scaled ×{scale:.1f} for {tokens} tokens)"
    fitting = [s for s in SERVING if s[2] * scale <= latency_ms]
    if fitting:
        name, accuracy, p99, command = fitting[0]  # SERVING is ordered by accuracy
        compression = f"{name}: {command}"
        reasons.append(
            f"p99 budget {latency_ms:g} ms: {name} measured p99 {p99 * scale:.1f} ms{estimate} "
            f"at {accuracy:.2f} % SST-2 dev accuracy, the most accurate option within budget "
            f"(uncompressed PyTorch: p99 {UNCOMPRESSED_P99 * scale:.1f} ms; BENCHMARKS.md, "
            "Latency and Compression)"
        )
    else:
        name, accuracy, p99, command = SERVING[-1]
        compression = f"{name} ({command}), and still over budget: use a GPU or shorter inputs"
        reasons.append(
            f"p99 budget {latency_ms:g} ms: nothing measured fits; the fastest, {name}, has "
            f"p99 {p99 * scale:.1f} ms{estimate} on the measured CPU (BENCHMARKS.md, Latency)"
        )
    return Advice(backbone, method, compression, reasons)
