"""Domain-adversarial training (DANN, Ganin et al. 2016): labelled source, unlabelled target.

A domain classifier reads the pooled encoder output (the mean of the last hidden state over
non-padding tokens) of source sentences (domain 0) and unlabelled target-domain sentences
(domain 1) through a gradient-reversal layer: the forward pass is the identity, the backward
pass multiplies the gradient by −λ_p. The classifier thus learns to tell the domains apart
while the encoder learns features that hide the domain. λ_p follows Ganin's schedule,
`weight · (2 / (1 + exp(−γ p)) − 1)` with p = optimizer step / total steps, set before every
batch by the loop's `on_step` hook (so a resumed run continues the schedule exactly).

Each training batch of n source sentences is joined by n target sentences and both go through
the model in ONE forward (padded to a common width): the task loss reads the source rows, the
domain loss all rows. Target sentences are drawn among those no longer than the batch's
widest source sentence (source batches are length-grouped; random target text would pad every
batch to its longest sentence and cost several times the source forward), which also keeps
sentence length from being the domain cue. The draw is a pure function of (seed, optimizer
step, micro-batch within the step, batch width): a fresh generator is seeded from them, so a
resumed run sees the same target text as an uninterrupted one. In data-parallel runs each
process takes its interleaved share of the draw, matched to the width of its own share.

Loss scale: the loop divides the returned sum by the batch's labelled items (tokens for NER),
so the domain term is the mean binary cross-entropy over the 2n sentences times that count:
after the division the objective is mean task loss + mean domain loss, the weighting of Ganin
et al.; λ sets how hard the encoder is pushed, not how much the classifier learns.

The domain classifier (one hidden ReLU layer) is registered as the child `domain_head` of the
task model, so the loop's optimizer and checkpoints include it (at `head_lr` × train.lr), and
it is removed before the bundle is written: the bundle is a plain transformers folder, exactly
like one trained without DANN. With `weight: 0` neither the target text nor the classifier is
used, so training is the plain run's bit for bit (the baseline of a comparison is the same
recipe with `objective.weight=0`, or `objective=null`).

Defaults, measured on CoNLL-2003 → WikiANN English with MiniLM (one seed each): with Ganin's
weight 1 and the classifier at the encoder's learning rate, the 22 M encoder weights overpower
the small classifier and make it confidently wrong (domain accuracy 0.05, loss above ln 2)
instead of unsure, and the task collapses with it (source dev F1 0.85 → 0.76, target test
0.40 → 0.15); at `head_lr: 10` weight 1 is still unstable (4,000 sentences: source dev F1
0.72 → 0.32), while weight 0.1 plays a stable game (domain loss ≈ ln 2). Hence `weight: 0.1`,
`head_lr: 10`. Even so DANN does not help on this shift (`benchmarks/dann.py`, 8,000
sentences: WikiANN test F1 0.397 → 0.378, CoNLL dev 0.851 → 0.838): the encoder does hide the
domain (final domain accuracy 0.56), but the CoNLL/WikiANN gap seems to lie mostly in what
is labelled how (WikiANN is silver-standard, labelled from Wikipedia links on title-like
fragments; ORG F1 is 0.20), which aligning sentence features cannot fix.

Leaves out: per-token domain classifiers, multiple target domains, class-conditional
alignment (CDAN), MMD/CORAL losses, and selecting a model on target labels (there are none).
"""

from __future__ import annotations

import bisect
import logging
import math
from collections import deque
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from graftwork import registry
from graftwork.data.encode import IGNORE
from graftwork.data.readers import read_examples
from graftwork.data.text import text_lines
from graftwork.errors import DataError, GraftError
from graftwork.objectives.base import Hooks

log = logging.getLogger("graftwork")

ATTR = "domain_head"  # the child module name on the task model
RECENT = 100  # batches the manifest's domain accuracy and loss are averaged over


class DannConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["dann"] = "dann"
    target: str = Field(
        description="Unlabelled target-domain data: a file read like data.train (its labels, "
        "if any, are ignored), or one text a line with target_format: text. ${GRAFT_DATA} and "
        "paths relative to the recipe work as in data."
    )
    target_format: Literal["data", "text"] = Field(
        "data", description="data: read with the recipe's data options; text: one text a line."
    )
    target_examples: int | None = Field(
        5000, ge=1, description="A seeded random sample of this many target texts (null: all)."
    )
    weight: float = Field(
        0.1,
        ge=0,
        le=100,
        description="Largest gradient-reversal factor: λ_p = weight · (2/(1+exp(−γp)) − 1); "
        "Ganin et al. use 1, which wrecks a fine-tuned transformer (see the module docstring). "
        "0 trains without the adversary (bit for bit the run without the objective).",
    )
    gamma: float = Field(10.0, gt=0, le=1000, description="How fast λ_p rises from 0 (γ).")
    hidden: int = Field(256, ge=1, le=16384, description="Hidden units of the domain classifier.")
    head_lr: float = Field(
        10.0,
        gt=0,
        le=1000,
        description="The domain classifier's learning rate as a multiple of train.lr: it must "
        "keep up with the whole encoder it plays against.",
    )
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout in the domain classifier.")


Config = DannConfig  # the registry reads each method's and objective's config here


# ---------------------------------------------------------------- λ schedule


def schedule(progress: float, gamma: float = 10.0) -> float:
    """Ganin et al.'s λ_p = 2 / (1 + exp(−γ p)) − 1: 0 at the start, towards 1 at the end."""
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


# ---------------------------------------------------------------- target text


def read_target(recipe, config: DannConfig, tokenizer) -> list[dict]:
    """Encoded features of the (sampled) unlabelled target texts."""
    from graftwork.data.sampling import subsample  # torch

    task = registry.task(recipe.task.type)
    path = recipe.resolve_path(config.target)
    shown = recipe.show_path(config.target)  # as written: never a value from the environment
    if config.target_format == "text":
        if not path.is_file():
            raise DataError(f"objective.target: {shown} does not exist; give a text file")
        lines = text_lines(path, f"objective.target: {shown}")
        examples = [task.from_text(line.strip()) for line in lines if line.strip()]
        if not examples:
            raise DataError(f"objective.target: {shown} holds no text")
    else:
        if not path.is_file():
            raise DataError(
                f"objective.target: {shown} does not exist; give a file of target-domain text "
                "in the training data's format (or one text a line with target_format: text)"
            )
        examples = read_examples(
            path, recipe.task, recipe.data, require_labels=False, shown=shown
        ).examples
    examples = subsample(examples, config.target_examples, recipe.train.seed)
    unlabelled = [{**e, task.LABEL_KEY: None} for e in examples]  # never read the target's labels
    features, _ = task.encode(tokenizer, unlabelled, {}, recipe.data.max_length, shown)
    return features


def target_rows(n_target: int, batch_size: int, seed: int, step: int, micro: int) -> list[int]:
    """`batch_size` draws from range(n_target): a pure function of (seed, step, micro-batch)."""
    import torch

    generator = torch.Generator().manual_seed((seed * 1_000_003 + step) * 1_009 + micro)
    return torch.randint(n_target, (batch_size,), generator=generator).tolist()


# ---------------------------------------------------------------- the objective


def attach(model, config: DannConfig):
    """Register a fresh domain classifier as `model.domain_head` (trained by the loop)."""
    from graftwork.objectives.layers import DomainHead  # torch

    hidden = getattr(getattr(model, "config", None), "hidden_size", None)
    if not isinstance(hidden, int):
        raise GraftError(
            f"objective dann needs the encoder's hidden size; {type(model).__name__}'s config "
            "has no hidden_size"
        )
    if isinstance(getattr(model, ATTR, None), DomainHead):
        raise GraftError(f"{type(model).__name__} already holds a domain classifier")
    param = next(model.parameters())
    head = DomainHead(hidden, config).to(device=param.device, dtype=param.dtype)
    model.add_module(ATTR, head)
    return head


def strip(model) -> None:
    """Take the domain classifier out, leaving the plain task model."""
    from graftwork.objectives.layers import DomainHead  # torch

    if isinstance(getattr(model, ATTR, None), DomainHead):
        delattr(model, ATTR)


class Dann:
    """The loop's hooks for one run: `on_step` sets λ_p, `loss` adds the domain loss."""

    def __init__(self, config: DannConfig, head, target, batch_size, seed, pad_id):
        self.config, self.head, self.target = config, head, target
        self.batch_size, self.seed, self.pad_id = batch_size, seed, pad_id
        self.by_length = sorted(range(len(target)), key=lambda i: len(target[i]["input_ids"]))
        self.lengths = [len(target[i]["input_ids"]) for i in self.by_length]
        self.step, self.micro = -1, 0
        self.recent: deque[tuple[float, float]] = deque(maxlen=RECENT)  # (accuracy, loss)
        self.info: dict = {}

    def on_step(self, step: int, steps: int) -> None:
        self.step, self.micro = step, (self.micro + 1 if step == self.step else 0)
        self.head.coefficient = self.config.weight * schedule(step / steps, self.config.gamma)
        self.info["lambda_last"] = self.head.coefficient

    def loss(self, model, batch: dict):
        from graftwork.data.batching import collate  # torch
        from graftwork.objectives import layers  # torch
        from graftwork.train.loop import summed_cross_entropy  # torch

        labels = batch.pop("labels")
        n = labels.shape[0]
        rank, world = layers.process()
        # target texts no longer than the source batch's widest (at least batch_size of them)
        fits = bisect.bisect_right(self.lengths, batch["input_ids"].shape[1])
        pool = max(fits, min(len(self.lengths), self.batch_size))
        rows = target_rows(pool, self.batch_size, self.seed, self.step, self.micro)
        mine = [self.by_length[r] for r in rows[rank::world][:n]]
        target = collate([self.target[i] for i in mine], self.pad_id)
        device = batch["input_ids"].device
        target = {k: v.to(device) for k, v in target.items()}
        joint = layers.join({**batch, "labels": labels}, target, self.pad_id)  # [n + m, W]
        out = model(**joint, output_hidden_states=True)
        width = joint["input_ids"].shape[1]
        padded = layers.pad_batch({"labels": labels}, width, 0)["labels"]
        task = summed_cross_entropy(out.logits[:n], padded)
        pooled = layers.mean_pool(out.hidden_states[-1], joint["attention_mask"])  # [n + m, H]
        logit = self.head(pooled).float()  # [n + m]
        domain_loss, hit = layers.domain_loss(logit, n, len(mine))
        self._record(hit, float(domain_loss.detach()))
        count = int((labels != IGNORE).sum()) if labels.dim() > 1 else n
        return task + domain_loss * count

    def _record(self, accuracy: float, loss: float) -> None:
        """Domain accuracy and loss over the last RECENT batches, for the manifest: near 0.5
        and ln 2 when the encoder hides the domain, near 1 and 0 when it does not."""
        self.recent.append((accuracy, loss))
        self.info["domain_accuracy_recent"] = sum(a for a, _ in self.recent) / len(self.recent)
        self.info["domain_loss_recent"] = sum(lo for _, lo in self.recent) / len(self.recent)


def prepare(recipe, model, splits):
    """Read the target text, attach the domain classifier; the loop's hooks for this run."""
    config: DannConfig = recipe.objective
    if config.weight == 0:  # no adversary: nothing is read or attached, the plain task loss
        log.info("dann: weight 0, training without the adversary")
        return Hooks(manifest={"objective": {"type": "dann", "weight": 0.0}})
    target = read_target(recipe, config, splits.tokenizer)
    head = attach(model, config)
    dann = Dann(
        config,
        head,
        target,
        recipe.train.batch_size,
        recipe.train.seed,
        splits.tokenizer.pad_token_id,
    )
    dann.info.update(
        {
            "type": "dann",
            "weight": config.weight,
            "target": str(recipe.resolve_path(config.target)),
            "target_examples": len(target),
            "domain_head_parameters": sum(p.numel() for p in head.parameters()),
        }
    )
    log.info(
        "dann: %d target texts from %s; λ up to %g (γ %g)",
        len(target),
        config.target,
        config.weight,
        config.gamma,
    )
    scales = {f"{ATTR}.{name}": config.head_lr for name, _ in head.named_parameters()}
    return Hooks(
        loss_fn=dann.loss,
        on_step=dann.on_step,
        manifest={"objective": dann.info},
        strip=strip,
        lr_scales=scales,
    )
