"""The method × task matrix: every registered adaptation method on every registered task, and
every registered training objective (full fine-tuning) on every task that trains with it.

peft's `tests/test_custom_models.py` pattern (one table of cases, the same generic checks for
each) with torchtune's golden losses. Pairs come from `graftwork.registry` at collection (names
only: a method whose module fails to import fails its tests, it is not skipped), so a method or
task registered there joins without an edit here; what a method claims (which parameters train,
how it starts) is stated in `CLAIMS`, and `test_every_method_states_its_claims` asks for it.

Each pair trains once (tiny BERT from conftest, 128 real SST-2 rows or CoNLL sentences, 16
steps, one thread), traced through the method's own `apply` and `finish` (which draws no random
numbers), and is checked for: the trainable parameters it claims; frozen parameters
bit-identical after training and every trainable one moved; the bundle reloaded with
`graftwork.load(bundle, backend="torch")` giving the trained model's logits; the fresh method
giving the base model's logits; exact resume (stopped after `STOP` steps at a checkpoint, then
resumed: same loss history, bit-identical bundle); `graft compare` giving it a row (run
in-process: its `graft train` subprocesses go through the CLI here); and the loss of every step
(metrics.json `train.loss_history`) equal to `tests/golden/losses.json` within `RTOL`.

An objective pair (`OBJECTIVE_PAIRS`: each registered objective with full fine-tuning, on every
task that trains with it, its tiny settings in `OBJECTIVE_SAMPLE`) is checked for: training
unlike the plain full run's, a bundle holding the plain run's tensors (nothing of the objective
saved) that reloads to the trained logits, exact resume, and its golden losses
(`full+OBJECTIVE/TASK`).

Golden losses are written only on request (after a deliberate change of numerics, or for a new
method or task), for the pairs selected, by `UPDATE_COMMAND` (`-k golden`: every pair); commit
the file with the reason. A missing entry fails with that command. Leaves out: methods'
non-default options (their own test files cover them) and multi-process training
(test_resume_and_parallel.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import graftwork
from conftest import DATA as DATA_ROOT
from conftest import build_tiny_llama, conll_sentences, head, tiny_recipe
from graftwork import registry
from graftwork.methods import count_parameters, head_modules
from graftwork.runs import compare
from graftwork.runs.finetune import RunResult, train
from graftwork.tasks import output_logits

# a method the shared loop cannot train (setfit: `graft fewshot` trains it, TRAINS = False)
METHODS = registry.trained_methods()
TASKS = list(registry.TASKS)
# pairs whose code path other pairs already run, skipped (with the pair that covers them) to
# keep the matrix within the suite's time budget; GRAFT_MATRIX_ALL=1 runs them too (their golden
# entries are recorded). ptuning feeds its virtual tokens exactly as prompt_tuning does (only
# how they are computed differs: methods/prompt.py); their dropping of the virtual positions
# from per-token outputs runs in the causal-LM pairs and, for NER and QA heads, in
# tests/test_prompt.py (in memory); prefix runs on every task
COVERED = {
    ("prompt_tuning", "ner"): "prompt_tuning-causal_lm, prefix-ner, test_prompt.py's token shapes",
    ("prompt_tuning", "qa"): "prefix-qa and test_prompt.py's per-token shapes (start/end logits)",
    ("ptuning", "ner"): "ptuning-causal_lm, prefix-ner and test_prompt.py's per-token shapes",
    ("ptuning", "qa"): "ptuning-causal_lm, prefix-qa and test_prompt.py's per-token shapes",
}
ALL_PAIRS = os.environ.get("GRAFT_MATRIX_ALL") == "1"


def pair(method: str, task: str):
    covered = None if ALL_PAIRS else COVERED.get((method, task))
    marks = [pytest.mark.skip(reason=f"covered by {covered}; GRAFT_MATRIX_ALL=1 runs it")]
    return pytest.param(method, task, id=f"{method}-{task}", marks=marks if covered else [])


# a task that names the methods it trains with (seq2seq: full, lora) refuses the others at
# recipe validation (tests/test_seq2seq.py checks the refusal), so only its own pairs run here
PAIRS = [
    pair(m, t) for m in METHODS for t in TASKS if m in getattr(registry.task(t), "METHODS", METHODS)
]

# every registered training objective on every task that trains with it (a task's `OBJECTIVES`:
# QA, seq2seq and causal LM name none), with full fine-tuning; the objective's settings for a
# tiny run are in `OBJECTIVE_SAMPLE`, and `test_every_objective_has_a_sample` asks for them
OBJECTIVE_PAIRS = [
    pytest.param(o, t, id=f"{o}-{t}")
    for o in registry.OBJECTIVES
    for t in TASKS
    if o in getattr(registry.task(t), "OBJECTIVES", registry.OBJECTIVES)
]

# what each method claims (peft's TEST_CASES): which parameters train — "all", "head" (the
# task head only) or "part" (its own and the head, under PART_BOUND of the model) — and how a
# freshly applied method compares with the base model: "exact" (nothing changed; LoRA's and
# DoRA's B = 0, and DoRA's magnitude is the weight norm it divides by, computed alike; adapters'
# up projection = 0; IA3's vectors = 1), "close" (within float rounding) or "prompted" (the
# prompt methods' randomly initialised virtual tokens are attended from the first step, so the
# fresh model's outputs differ from the base model's)
CLAIMS = {
    "full": ("all", "exact"),
    "frozen": ("head", "exact"),
    "lora": ("part", "exact"),
    "adapter": ("part", "exact"),
    "dora": ("part", "exact"),
    "ia3": ("part", "exact"),
    "prompt_tuning": ("part", "prompted"),
    "prefix": ("part", "prompted"),
    "ptuning": ("part", "prompted"),
}
PART_BOUND = 0.10
# a small real sample per task (conftest fixtures)
DATA = {"classification": "sst2_small", "ner": "conll_small", "qa": "squad_small"}
DATA["seq2seq"] = "multi30k_small"
DATA["causal_lm"] = "instructions_small"

# 16 optimizer steps at a learning rate high enough that each method's own parameters move the
# loss (with fewer steps at 1e-3 the head alone set it, and a change of LoRA's dropout barely
# showed); the resume test stops after the second checkpoint
EXAMPLES, BATCH, EVERY = 128, 8, 4
STOP = 2 * EVERY
TRAIN = dict(epochs=1, batch_size=BATCH, lr=1e-2, seed=3, log_every=1, threads=1)
TRAIN["checkpoint_every"] = EVERY
GOLDEN = Path(__file__).parent / "golden" / "losses.json"
# repeated runs on one CPU agree bit for bit; the tolerance leaves room for another CPU's
# summation order, no more (a vocabulary one token different moves the losses only a little)
RTOL = 1e-5  # an AVX2-only run (ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS) matched to 1e-6
UPDATE = os.environ.get("GRAFT_UPDATE_GOLDEN") == "1"
UPDATE_COMMAND = (
    "GRAFT_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_matrix.py -p no:cacheprovider "
    '-k "golden and {method} and {task}"'
)
PROBE = ["a gripping , funny film", "dull and far too long", "EU rejects German call", "meh"]


@dataclass
class Run:
    """One instrumented training run of a (method, task) pair."""

    result: RunResult
    base: torch.Tensor  # logits of the model before the method was applied
    applied: torch.Tensor  # … right after it was applied
    trained: torch.Tensor  # … after training, in memory, before the bundle was written
    counts: dict  # count_parameters after apply
    total: int  # parameters of the model before apply
    head: int  # parameters of its task head
    head_names: list[str]  # its modules (`classifier`)
    before: dict[str, torch.Tensor]  # parameters right after apply
    after: dict[str, torch.Tensor]  # … after training
    trainable: set[str]  # names that required grad after apply


@pytest.fixture(scope="module")
def backbone(tiny_bert, tmp_path_factory) -> Path:
    """conftest's tiny BERT (its weights are seeded) with a vocabulary the same in every process:
    the WordPiece trainer breaks ties differently in each (a token of the 800 and the ids of
    many change), which moves every loss. Here: the special tokens, every character alone and
    as `##` continuation, then the most frequent words (ties in spelling order), to the same
    size; normaliser, pre-tokeniser and template are the trained ones."""
    from tokenizers import Tokenizer

    folder = Path(shutil.copytree(tiny_bert, tmp_path_factory.mktemp("matrix") / "tiny-bert"))
    path = folder / "tokenizer.json"
    trained = Tokenizer.from_file(str(path))
    size = trained.get_vocab_size()
    texts = [line.split("\t", 1)[1] for line in head(DATA_ROOT / "sst2" / "train.tsv", 3000)[1:]]
    texts += [
        " ".join(line.split()[0] for line in block.splitlines())
        for block in conll_sentences(DATA_ROOT / "conll2003" / "train.txt", 2000).split("\n\n")
    ]
    words = Counter()
    for text in texts:
        normal = trained.normalizer.normalize_str(text)
        words.update(w for w, _ in trained.pre_tokenizer.pre_tokenize_str(normal))
    chars = sorted({c for w in words for c in w})
    by_id = sorted(trained.get_vocab().items(), key=lambda item: item[1])
    vocab = [t for t, _ in by_id if t.startswith("[") and t.endswith("]")]
    vocab += [c for c in chars if c not in vocab] + ["##" + c for c in chars]
    common = sorted(words.items(), key=lambda item: (-item[1], item[0]))
    vocab += [w for w, _ in common if len(w) > 1][: size - len(vocab)]
    assert len(vocab) == size == len(set(vocab)), (len(vocab), size)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert [t for t, _ in by_id[:5]] == vocab[:5]  # the template's [CLS]/[SEP] ids hold
    data["model"]["vocab"] = {token: i for i, token in enumerate(vocab)}
    path.write_text(json.dumps(data), encoding="utf-8")
    return folder


# recipe keys a task's sample needs beyond its data files: seq2seq reads Multi30k's parallel
# en/de files with an encoder-decoder warm-started from two copies of the tiny BERT
RECIPE = {
    "seq2seq": lambda backbone: {
        "backbone": {"name": str(backbone), "decoder": str(backbone)},
        "task": {"type": "seq2seq", "source": "en", "target": "de"},
        "data": {"format": "parallel"},
    }
}


def tiny_llama_beside(backbone: Path) -> Path:
    """causal_lm's backbone: conftest's tiny Llama (seeded; its vocabulary the tiny BERT's
    fixture one), built once beside the matrix's tiny BERT."""
    folder = backbone.parent / "tiny-llama"
    if not (folder / "model.safetensors").is_file():
        build_tiny_llama(folder)
    return folder


# causal_lm: a decoder (the tiny Llama) taught Multi30k captions' German from their English;
# a short generation keeps each evaluation quick
RECIPE["causal_lm"] = lambda backbone: {
    "backbone": str(tiny_llama_beside(backbone)),
    "generation": {"max_new_tokens": 8},
}


def recipe_for(method: str, task: str, backbone: Path, data: dict, out: Path) -> dict:
    recipe = tiny_recipe(backbone, data, out, task=task, method=method, train=TRAIN)
    recipe["data"]["max_train_examples"] = EXAMPLES
    for section, values in RECIPE.get(task, lambda _: {})(backbone).items():
        recipe[section] = {**recipe[section], **values} if section == "data" else values
    return recipe


# an objective's settings for a tiny run, from (task, its data sample, the matrix): DANN's
# target domain is the sample's eval file read without its labels (the mechanics, not a real
# shift: test_objectives.py has CoNLL → WikiANN); EWC's task A is the matrix's full run on the
# same task, its Fisher from a few of that run's examples
OBJECTIVE_SAMPLE = {
    "dann": lambda task, data, matrix: {
        "type": "dann",
        "target": str(data["eval"]),
        "target_examples": 64,
        "hidden": 16,
        "weight": 1.0,
    },
    "ewc": lambda task, data, matrix: {
        "type": "ewc",
        "previous": str(matrix("full", task).result.bundle),
        "lambda": 100.0,
        "fisher_examples": 32,
    },
}


def golden_key(method: str, task: str, objective: str | None = None) -> str:
    """The pair's entry in the golden record: `method/task`, `method+objective/task`."""
    return f"{method}+{objective}/{task}" if objective else f"{method}/{task}"


def backbone_of(recipe: dict) -> Path:
    """The folder of a recipe's backbone (the encoder's, for a warm-started encoder-decoder)."""
    backbone = recipe["backbone"]
    return Path(backbone["name"] if isinstance(backbone, dict) else backbone)


def data_for(request, task: str) -> dict:
    assert task in DATA, f"task {task} has no data sample: add one to DATA in {__file__}"
    return request.getfixturevalue(DATA[task])


def probe_inputs(backbone: Path) -> dict:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(backbone))
    return dict(tokenizer(PROBE, return_tensors="pt", padding=True))


def logits(model, inputs: dict) -> torch.Tensor:
    """The model's logits in eval mode (no dropout, so no random numbers drawn)."""
    training = model.training
    model.eval()
    if getattr(model.config, "is_encoder_decoder", False):  # the probe is also what it decodes
        inputs = {**inputs, "decoder_input_ids": inputs["input_ids"]}
    with torch.inference_mode():
        out = output_logits(model(**inputs)).clone()
    model.train(training)
    return out


def snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def bundle_tensors(bundle: Path) -> dict[str, torch.Tensor]:
    """Every tensor of every safetensors file in a bundle, keyed file:name."""
    out = {}
    for path in sorted(bundle.rglob("*.safetensors")):
        for name, tensor in load_file(str(path)).items():
            out[f"{path.relative_to(bundle)}:{name}"] = tensor
    return out


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    """Backbones built on first use (a warm-started encoder-decoder) go to a test folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAFT_CACHE", str(tmp_path_factory.mktemp("graft-cache")))
        yield


@pytest.fixture(scope="module")
def matrix(request, backbone, tmp_path_factory):
    """`matrix(method, task, objective=None)`: the pair's instrumented run (with the
    objective's `OBJECTIVE_SAMPLE` settings), trained on first use."""
    runs: dict[tuple[str, str, str | None], Run] = {}

    def get(method: str, task: str, objective: str | None = None) -> Run:
        if (method, task, objective) in runs:
            return runs[(method, task, objective)]
        module = registry.method(method)
        seen: dict = {}
        apply, finish = module.apply, module.finish

        def traced_apply(model, config):
            seen["base"] = logits(model, inputs)
            seen["total"] = count_parameters(model)["total"]
            seen["head_names"] = head_modules(model)
            seen["head"] = sum(
                p.numel() for h in seen["head_names"] for p in getattr(model, h).parameters()
            )
            model = apply(model, config)
            seen["applied"] = logits(model, inputs)
            seen["counts"] = count_parameters(model)
            seen["before"] = snapshot(model)
            seen["trainable"] = {n for n, p in model.named_parameters() if p.requires_grad}
            return model

        def traced_finish(model, out_dir):
            seen["trained"] = logits(model, inputs)
            seen["after"] = snapshot(model)
            return finish(model, out_dir)

        out = tmp_path_factory.mktemp(f"{method}-{objective or 'plain'}-{task}")
        data = data_for(request, task)
        recipe = recipe_for(method, task, backbone, data, out)
        if objective is not None:
            recipe["objective"] = OBJECTIVE_SAMPLE[objective](task, data, get)
        inputs = probe_inputs(backbone_of(recipe))
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(module, "apply", traced_apply)
            patch.setattr(module, "finish", traced_finish)
            result = train(recipe)
        runs[(method, task, objective)] = Run(result=result, **seen)
        return runs[(method, task, objective)]

    threads = torch.get_num_threads()
    yield get
    torch.set_num_threads(threads)  # the runs set one thread; later tests get theirs back


def test_every_method_states_its_claims():
    missing = [m for m in METHODS if m not in CLAIMS]
    assert not missing, f"state in CLAIMS what {missing} train(s) and how they start"


def test_every_objective_has_a_sample():
    missing = [o for o in registry.OBJECTIVES if o not in OBJECTIVE_SAMPLE]
    assert not missing, f"give {missing} settings for a tiny run in OBJECTIVE_SAMPLE"


def test_the_golden_record_holds_only_registered_pairs():
    registered = {golden_key(m, t) for m in METHODS for t in TASKS}
    registered |= {golden_key("full", t, o) for o in registry.OBJECTIVES for t in TASKS}
    stale = set(read_golden()) - registered
    assert not stale, f"{GOLDEN} holds losses of unregistered pairs {sorted(stale)}: remove them"


@pytest.mark.parametrize("method, task", PAIRS)
def test_trainable_parameters_are_what_the_method_says(matrix, method, task):
    run = matrix(method, task)
    trainable = run.counts["trainable"]
    in_head = {n for n in run.trainable if set(n.split(".")) & set(run.head_names)}
    if run.head_names:  # an encoder-decoder has no head of its own (methods.head_modules)
        assert sum(run.before[n].numel() for n in in_head) >= run.head > 0, "the head must train"
    claim = CLAIMS[method][0]
    if claim == "all":
        assert trainable == run.counts["total"] == run.total
    elif claim == "head":
        assert trainable == run.head
    else:
        assert run.head < trainable < PART_BOUND * run.total
    assert run.result.metrics["parameters"]["trainable"] == trainable


@pytest.mark.parametrize("method, task", PAIRS)
def test_only_the_trainable_parameters_change(matrix, method, task):
    run = matrix(method, task)
    assert run.before.keys() == run.after.keys()
    moved = {n for n in run.before if not torch.equal(run.before[n], run.after[n])}
    assert not moved - run.trainable, f"frozen parameters changed: {sorted(moved - run.trainable)}"
    assert not run.trainable - moved, f"trainable but unchanged: {sorted(run.trainable - moved)}"


@pytest.mark.parametrize("method, task", PAIRS)
def test_a_fresh_method_starts_from_the_base_model(matrix, method, task):
    run = matrix(method, task)
    if CLAIMS[method][1] == "exact":
        assert torch.equal(run.applied, run.base)
    elif CLAIMS[method][1] == "prompted":
        assert run.applied.shape == run.base.shape, "the outputs must line up with the input"
        assert not torch.allclose(run.applied, run.base, atol=1e-6), "the prompt is not attended"
    else:
        torch.testing.assert_close(run.applied, run.base, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(run.trained, run.base, atol=1e-4), "training changed nothing"


@pytest.mark.parametrize("method, task", PAIRS)
def test_the_reloaded_bundle_gives_the_trained_model_logits(matrix, method, task):
    run = matrix(method, task)
    predictor = graftwork.load(run.result.bundle, backend="torch")
    reloaded = logits(predictor.model, probe_inputs(run.result.bundle))
    torch.testing.assert_close(reloaded, run.trained, rtol=1e-5, atol=1e-5)
    eval_path = run.result.recipe.data.eval
    headline = {k: v for k, v in run.result.metrics["eval"].items() if isinstance(v, float)}
    evaluated = predictor.evaluate(eval_path)
    assert {k: evaluated[k] for k in headline} == pytest.approx(headline, rel=1e-6, abs=1e-6)


def steps(result: RunResult) -> int:
    """Optimizer steps of a matrix run: one a batch of training items (examples; for QA the
    windows of its questions' contexts)."""
    return -(-result.metrics["train"]["examples"] // BATCH)


class Interrupted(Exception):
    """Stands for the process dying (test_resume_and_parallel.py kills a real one)."""


@pytest.mark.parametrize("method, task", PAIRS)
def test_an_interrupted_run_resumes_exactly(
    matrix, request, backbone, tmp_path, monkeypatch, method, task
):
    reference = matrix(method, task).result
    module = registry.method(method)
    stopping = stopping_at_stop(getattr(module, "schedule", None))
    recipe = recipe_for(method, task, backbone, data_for(request, task), tmp_path)
    resumes_exactly(reference, recipe, module, stopping, monkeypatch)


def stopping_at_stop(schedule):
    """A method `schedule` that runs the method's own (`schedule`, if any) and stops at STOP."""

    def stopping(model, config):
        inner = schedule(model, config) if schedule else None

        def on_step(step: int, steps: int) -> None:
            if step == STOP:
                raise Interrupted
            if inner is not None:
                inner(step, steps)

        return on_step

    return stopping


def resumes_exactly(reference: RunResult, recipe: dict, module, stopping, monkeypatch) -> None:
    """Stop `recipe`'s run at step STOP (the method's `schedule` replaced by `stopping`), resume
    it, and compare with the uninterrupted `reference`: losses, steps, every bundle tensor."""
    monkeypatch.setattr(module, "schedule", stopping, raising=False)
    with pytest.raises(Interrupted):
        train(recipe)
    monkeypatch.undo()
    run_dir = Path(recipe["output_dir"]) / recipe["name"]
    assert [p.name for p in (run_dir / "checkpoints").glob("step-*")] == [f"step-{STOP:08d}"]
    assert not (run_dir / "bundle").exists()

    resumed = train(recipe, resume=True)
    got, want = resumed.metrics["train"], reference.metrics["train"]
    assert got["loss_history"] == want["loss_history"]
    assert got["steps"] == want["steps"] == steps(reference)
    got, want = bundle_tensors(resumed.bundle), bundle_tensors(reference.bundle)
    assert got.keys() == want.keys()
    different = [k for k in want if not torch.equal(got[k], want[k])]
    assert not different, f"resumed weights differ: {different}"


def in_process(real_run):
    """`subprocess.run` that runs `python -m graftwork.cli ...` in this process."""
    from typer.testing import CliRunner

    from graftwork.cli import app

    def run(cmd, *args, **kwargs):
        if list(cmd[1:3]) != ["-m", "graftwork.cli"]:
            return real_run(cmd, *args, **kwargs)
        done = CliRunner().invoke(app, list(cmd[3:]))
        if done.exception and not isinstance(done.exception, SystemExit):
            raise done.exception
        return subprocess.CompletedProcess(cmd, done.exit_code)

    return run


@pytest.mark.parametrize("method, task", PAIRS)
def test_compare_gives_the_method_its_row(
    matrix, request, backbone, tmp_path, monkeypatch, method, task
):
    run = matrix(method, task)
    recipe = recipe_for("full", task, backbone, data_for(request, task), tmp_path / "runs")
    recipe["data"]["max_train_examples"] = 2 * BATCH  # two steps: compare only needs a row
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    monkeypatch.setattr(subprocess, "run", in_process(subprocess.run))
    rows, folder = compare.compare(path, [method])
    assert [r["method"] for r in rows] == [method]
    row = rows[0]
    metrics = json.loads((Path(row["run_dir"]) / "metrics.json").read_text())
    assert row["value"] == metrics[row["split"]][row["metric"]]
    assert 0 <= row["value"] <= 1 and row["examples_per_second"] > 0
    assert row["trainable"] == run.counts["trainable"]
    assert 0 < row["task_specific_mb"] <= row["bundle_mb"]
    if CLAIMS[method][0] != "all":  # what a second task on the backbone adds is much smaller
        assert row["task_specific_mb"] < 0.5 * row["bundle_mb"]
    saved = json.loads((folder / "compare.json").read_text())
    assert [r["method"] for r in saved["rows"]] == [method]


def read_golden() -> dict:
    return json.loads(GOLDEN.read_text(encoding="utf-8"))["losses"] if GOLDEN.is_file() else {}


def write_golden(key: str, history: list) -> None:
    losses = {**read_golden(), key: history}
    about = (
        "Loss per optimizer step of the tiny runs in tests/test_matrix.py (recipe_for: tiny "
        f"BERT, {EXAMPLES} examples, batch {BATCH}, lr {TRAIN['lr']}, seed {TRAIN['seed']}, "
        "one thread). Rewrite only after a deliberate change of numerics or for a new pair: "
        + UPDATE_COMMAND.format(method="METHOD", task="TASK")
    )
    rows = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(losses.items()))
    header = json.dumps({"about": about, "torch": torch.__version__}, indent=1)[:-2]
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(f'{header},\n "losses": {{\n{rows}\n }}\n}}\n', encoding="utf-8")


@pytest.mark.parametrize("method, task", PAIRS)
def test_loss_history_matches_the_golden_record(matrix, method, task):
    history = matrix(method, task).result.metrics["train"]["loss_history"]
    assert [step for step, _ in history] == list(range(1, steps(matrix(method, task).result) + 1))
    matches_golden(history, golden_key(method, task), method, task)


def matches_golden(history: list, key: str, method: str, task: str) -> None:
    """`history` equals the golden record's `key` within RTOL (written instead when UPDATE)."""
    if UPDATE:
        write_golden(key, history)
        return
    golden = read_golden()
    if key not in golden:
        command = UPDATE_COMMAND.format(method=method, task=task)
        pytest.fail(f"{GOLDEN} has no losses for {key}; record them (and commit) with {command}")
    assert [s for s, _ in history] == [s for s, _ in golden[key]]
    losses, recorded = [v for _, v in history], [v for _, v in golden[key]]
    assert losses == pytest.approx(recorded, rel=RTOL), f"{key}: the numerics changed"


# Objectives (full fine-tuning with each) ------------------------------------------------------


@pytest.mark.parametrize("objective, task", OBJECTIVE_PAIRS)
def test_an_objective_changes_training_and_leaves_a_plain_bundle(matrix, objective, task):
    run, plain = matrix("full", task, objective), matrix("full", task)
    history = run.result.metrics["train"]["loss_history"]
    assert history != plain.result.metrics["train"]["loss_history"], "the objective did nothing"
    assert bundle_tensors(run.result.bundle).keys() == bundle_tensors(plain.result.bundle).keys()
    predictor = graftwork.load(run.result.bundle, backend="torch")
    reloaded = logits(predictor.model, probe_inputs(run.result.bundle))
    torch.testing.assert_close(reloaded, run.trained, rtol=1e-5, atol=1e-5)
    assert predictor.manifest.objective["type"] == objective


@pytest.mark.parametrize("objective, task", OBJECTIVE_PAIRS)
def test_an_interrupted_objective_run_resumes_exactly(
    matrix, request, backbone, tmp_path, monkeypatch, objective, task
):
    reference = matrix("full", task, objective).result
    full = registry.method("full")
    data = data_for(request, task)
    recipe = recipe_for("full", task, backbone, data, tmp_path)
    recipe["objective"] = OBJECTIVE_SAMPLE[objective](task, data, matrix)
    resumes_exactly(reference, recipe, full, stopping_at_stop(full.schedule), monkeypatch)


@pytest.mark.parametrize("objective, task", OBJECTIVE_PAIRS)
def test_objective_loss_history_matches_the_golden_record(matrix, objective, task):
    result = matrix("full", task, objective).result
    history = result.metrics["train"]["loss_history"]
    assert [step for step, _ in history] == list(range(1, steps(result) + 1))
    matches_golden(history, golden_key("full", task, objective), objective, task)
