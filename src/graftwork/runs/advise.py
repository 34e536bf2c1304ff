"""`graft advise`: backbone + method + compression for a scenario, from a measured rule table.

Every rule names the measurement that backs it (a section of BENCHMARKS.md, on real data) and
the CPU it was measured on (2 cores each time). The rules are data (`METHOD_RULES`, `SERVING`,
`MULTILINGUAL`, `FEW_SHOT`, `GENERATION`, `QA`), so a new measurement changes a number here,
not the logic.

What it deliberately does not do: guess beyond the measurements. Latency figures are for
single requests of SST-2-length inputs (25 tokens on average) on the measured CPU; for other
lengths they are scaled linearly (windows of long texts measured linear in length), which is
an estimate and says so. A scenario outside the measured range gets the nearest rule and a note;
a language other than English and German gets the multilingual encoder with the note that
only German was measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from graftwork import registry
from graftwork.errors import GraftError

EPYC = "AMD EPYC (AVX2), 2 cores"
XEON = "Intel Xeon (AVX-512), 2 cores"

MEASURED_TOKENS = 25  # mean tokens of an SST-2 dev sentence, the inputs behind SERVING

# (bundle and backend, dev accuracy, single-request p99 ms, what to run) — "Choosing: latency
# per request" section, on EPYC
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
        "epoch of 1,000–2,000 examples LoRA and the adapter stayed at 50.9–64.3 % while full "
        f"reached 69–80 %) ({EPYC}; BENCHMARKS.md, Adaptation methods)",
    ),
    (
        5_000,
        "full",
        "with 16,000 SST-2 examples full fine-tuning reached 86.6 % against 85.7 % for the "
        "adapter; with all 67,349 it reached 89.7 % against 88.3 % for LoRA and 87.4 % for the "
        "adapter (one epoch each; the adapter needed two epochs for 88.2 %): more data favours "
        f"training everything ({EPYC}; BENCHMARKS.md, Adaptation methods)",
    ),
)

SHARED_BACKBONE = (
    "several tasks share one backbone: each task adds a 0.9 MB adapter (LoRA on query/value: "
    "0.3 MB) instead of an 87 MB model, and training them allocates 0.63× (adapter) and 0.69× "
    "(LoRA) of full fine-tuning's peak memory, 0.49× and 0.51× with gradient checkpointing "
    f"({EPYC}; BENCHMARKS.md, Adaptation methods)"
)

MEASURED_LANGUAGES = ("de", "en")  # what MULTILINGUAL measured
MULTILINGUAL = (
    "the packaged e5-small-multilingual, trained on 6,000 English WikiANN sentences (1 epoch), "
    "reached 70.63 entity F1 zero-shot on German (first 2,000 test sentences; English 72.92) "
    "against 28.92 for the English-only minilm-l6 (published: mBERT 69–70, XLM-R base 74–75); "
    "trimmed to en + de (graft trim e5-small-multilingual --keep-from FILE …) it kept 70.29 "
    f"with 27 % of the parameters and trained 1.81× faster ({XEON}; BENCHMARKS.md, A "
    "multilingual encoder offline)"
)

FEW_SHOT_MAX = 64  # examples per label: the most that "Few-shot classification" measured
ZERO_SHOT_BELOW = 32  # per label: under this, zero-shot beat SetFit on both data sets
FEW_SHOT = (
    "with 8–64 examples per label, SetFit (graft fewshot) beat full fine-tuning and LoRA on "
    "the same examples (SST-2, 32 per label: 73.1 % vs 65.7 % and 60.9 %; MR, 16 per label: "
    "63.7 % vs 56.4 % and 50.9 %); zero-shot from label descriptions (task.label_names and "
    "fewshot.template; graft fewshot reports it beside SetFit) reached 69.4 % on SST-2 and "
    "67.4 % on MR with no example, above SetFit's 62.7–65.4 % at 8–16 per label; SetFit "
    f"overtook it from 32 per label on SST-2 and at 64 on MR ({XEON}; BENCHMARKS.md, Few-shot "
    "classification)"
)

GENERATION = (
    "smollm2-135m with LoRA (r 16 on every projection, 3.5 % trainable) on 2,000 Multi30k "
    "pairs: English→German BLEU 0.14 → 11.28, chrF 15.85 → 37.25; German→English BLEU 5.80 → "
    "23.69; a warm-started MiniLM2MiniLM on 8,000 pairs reached BLEU 0.21 (its uncased "
    f"vocabulary caps cased German at 18.9) ({XEON}; BENCHMARKS.md, Sequence-to-sequence and "
    "Causal LM)"
)
GENERATION_SERVING = (
    "graft generate --input batches prompts by length with a KV cache: 128.9 tokens/s against "
    "21.9 for transformers' pipeline one prompt at a time (200 prompts, 24 new tokens, "
    f"smollm2-135m; {XEON}; BENCHMARKS.md, Causal LM); no per-request latency or export was "
    "measured for generation"
)

QA = (
    "extractive QA on the shared SQuAD data (7,010 questions) with minilm-l6: dev F1 63.04 "
    "after 2 epochs (bf16 training; Intel Xeon (AVX-512, AMX), 2 cores), 66.14 at best over "
    f"4 epochs (FP32; {EPYC}), 16.17 from a quarter of the questions: the number of questions "
    "sets the score, and F1 75 needs more questions or a QA-ready encoder (BENCHMARKS.md, "
    "Extractive QA)"
)

GENERATIVE = ("causal_lm", "seq2seq")


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
    task: str = "classification",
) -> Advice:
    if examples < 1 or labels < 2 or latency_ms <= 0 or tokens < 1 or tasks < 1:
        raise GraftError(
            "advise: --examples ≥ 1, --labels ≥ 2, --latency-ms > 0, --tokens ≥ 1 and "
            f"--tasks ≥ 1 are needed (got {examples}, {labels}, {latency_ms}, {tokens}, {tasks})"
        )
    if task not in registry.TASKS:
        raise GraftError(f"advise --task {task!r}: choose from {', '.join(registry.TASKS)}")
    langs = sorted({lang.strip().lower() for lang in languages if lang.strip()}) or ["en"]
    if task in GENERATIVE:
        return _generation(langs)
    reasons: list[str] = []
    backbone = _backbone(langs, reasons)
    method = _method(examples, labels, tasks, task, reasons)
    compression = _compression(latency_ms, tokens, task, reasons)
    return Advice(backbone, method, compression, reasons)


def _backbone(langs: list[str], reasons: list[str]) -> str:
    if langs == ["en"]:
        reasons.append(
            "English only: the packaged MiniLM (minilm-l6) is what most figures in "
            "BENCHMARKS.md were measured on, and it runs offline"
        )
        return "minilm-l6"
    unmeasured = [lang for lang in langs if lang not in MEASURED_LANGUAGES]
    note = (
        f"; {', '.join(unmeasured)} not measured here (only German was), so expect the German "
        "figure at best"
        if unmeasured
        else ""
    )
    reasons.append(
        f"languages {', '.join(langs)}: minilm-l6 has an uncased English WordPiece vocabulary; "
        f"{MULTILINGUAL}{note}"
    )
    return "e5-small-multilingual"


def _method(examples: int, labels: int, tasks: int, task: str, reasons: list[str]) -> str:
    per_label = examples / labels
    if tasks > 1:
        reasons.append(SHARED_BACKBONE)
        method = "adapter"
    elif task == "classification" and per_label <= FEW_SHOT_MAX:
        reasons.append(FEW_SHOT)
        zero = per_label < ZERO_SHOT_BELOW
        method = "zero-shot (label descriptions)" if zero else "fewshot (SetFit)"
        reasons.append(
            f"{per_label:.0f} examples per label: graft fewshot RECIPE trains SetFit and reports "
            "zero-shot beside it; name the labels (task.label_names) for zero-shot"
        )
    else:
        _, method, why = max((r for r in METHOD_RULES if examples >= r[0]), key=lambda r: r[0])
        reasons.append(why)
    if task == "qa":
        reasons.append(QA)
    if per_label < 50 and task != "qa":
        reasons.append(
            f"only {per_label:.0f} examples per label: expect noisy results (the few-shot "
            "figures spread by up to 5.3 points over seeds); measure the candidates on your "
            "examples: graft compare RECIPE --methods full,lora,fewshot (classification)"
        )
    return method


def _compression(latency_ms: float, tokens: int, task: str, reasons: list[str]) -> str:
    scale = tokens / MEASURED_TOKENS
    estimate = "" if tokens == MEASURED_TOKENS else f" (scaled ×{scale:.1f} for {tokens} tokens)"
    other = "" if task == "classification" else f"; measured on SST-2 classification, not {task}"
    fitting = [s for s in SERVING if s[2] * scale <= latency_ms]
    if fitting:
        name, accuracy, p99, command = fitting[0]  # SERVING is ordered by accuracy
        reasons.append(
            f"p99 budget {latency_ms:g} ms: {name} measured p99 {p99 * scale:.1f} ms{estimate} "
            f"at {accuracy:.2f} % SST-2 dev accuracy, the most accurate option within budget "
            f"(uncompressed PyTorch: p99 {UNCOMPRESSED_P99 * scale:.1f} ms; {EPYC}; "
            f"BENCHMARKS.md, Choosing: latency per request{other})"
        )
        return f"{name}: {command}"
    name, accuracy, p99, command = SERVING[-1]
    reasons.append(
        f"p99 budget {latency_ms:g} ms: nothing measured fits; the fastest, {name}, has "
        f"p99 {p99 * scale:.1f} ms{estimate} ({EPYC}; BENCHMARKS.md, Choosing: latency per "
        f"request{other})"
    )
    return f"{name} ({command}), and still over budget: use a GPU or shorter inputs"


def _generation(langs: list[str]) -> Advice:
    reasons = [GENERATION, GENERATION_SERVING]
    unmeasured = [lang for lang in langs if lang not in MEASURED_LANGUAGES]
    if unmeasured:
        reasons.append(f"{', '.join(unmeasured)}: only English and German were measured")
    return Advice(
        "smollm2-135m",
        "lora (task.type causal_lm: recipes/multi30k-smollm2-lora.yaml)",
        "none measured for generation: serve the bundle (graft generate --input, graft serve)",
        reasons,
    )
