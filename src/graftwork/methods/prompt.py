"""Prompt learning through `peft`: what methods `prompt_tuning`, `prefix` and `ptuning` share.

The three keep the whole transformers model frozen and learn virtual tokens that every real
token attends to; the task head (`head_modules`) trains in full beside them, as in P-tuning v2
(a causal LM's head is its pretrained lm_head, which stays frozen). `prompt_tuning` and
`ptuning` put their virtual tokens in front of the input embeddings, `prefix` puts keys and
values in front of every layer's attention (peft's `past_key_values`), so only the first two
lengthen the sequence the model sees: for per-token heads (NER, QA, causal LM) a forward hook
on the peft model drops the virtual tokens' positions from `logits` / `start_logits` /
`end_logits`, so that the outputs line up with the input as the tasks' losses, evaluation and
decoding read them (peft's own loss pads the labels instead, which graftwork's losses do not
use). The hook is put back whenever a bundle is loaded.

Virtual tokens are not linear in the weights, so nothing merges: `finish` saves the peft
adapter (PEFT format: the prompt's parameters and the trained head) under `prompt/`, loadable
with `peft.PeftModel.from_pretrained`, and returns the backbone with the trained head in place
of peft's wrapper, which becomes the bundle's root weights. As for bottleneck adapters, a plain
`from_pretrained(bundle)` therefore gives the model WITHOUT its prompt, whose predictions are
not the trained model's; `graftwork.load(bundle)` (`load`) puts the prompt back.

Refused (`REFUSES`): ONNX/OpenVINO export (the exporters trace the plain transformers model;
the prompt and prefix live in peft's wrapper), distillation and pruning (a copied or pruned
student would lose the prompt, or no longer have the layers and heads the prefix was trained
for), starting EWC from such a bundle, and what every frozen-encoder method refuses (EWC,
multi-task training).

Leaves out: peft's text and sampled-vocabulary initialisations of the prompt (random here),
several prompts in one bundle, and encoder-decoders (seq2seq trains with full or LoRA only).
The virtual tokens take positions: keep `data.max_length` plus `tokens` within the backbone's
positions (BERT's position ids count the prefix too).
"""

from __future__ import annotations

from pathlib import Path

from graftwork.backbones.quiet import quiet
from graftwork.errors import BundleError, GraftError
from graftwork.methods import head_modules
from graftwork.methods.base import (
    FROZEN_ENCODER,
    files_bytes,
    load_plain,
    no_choice,
    no_schedule,
    one_lr,
    supported,
)

PROMPT_DIR = "prompt"

# the transformers head class (by its name's ending) → peft's task type, which picks the peft
# model class that knows where the head is and how to feed the virtual tokens
TASK_TYPES = {
    "ForSequenceClassification": "SEQ_CLS",
    "ForTokenClassification": "TOKEN_CLS",
    "ForQuestionAnswering": "QUESTION_ANS",
    "ForCausalLM": "CAUSAL_LM",
}

REFUSES = {
    **FROZEN_ENCODER,
    "export": "{where} was trained with method {method}, whose virtual tokens live in peft's "
    "wrapper outside the transformers model the exporters trace; serve it with the torch "
    "backend, or train with method lora (merged into the weights) to export",
    "distill": "{where} keeps its prompt (method {method}) outside the model weights; distil "
    "from a full or LoRA bundle (a copied student would lose the prompt)",
    "prune": "{where} was trained with method {method} on a frozen backbone; pruning would "
    "change the layers and heads its prompt was trained for. Prune a full or LoRA bundle.",
    "ewc_previous": "objective.previous: {where} was trained with method {method}, whose prompt "
    "stays outside its encoder weights; EWC continues from a bundle trained with full or lora",
}
SUPPORTS = supported(REFUSES)
lr_scales = one_lr  # the prompt and the head train at train.lr, all run long
schedule = no_schedule
select = no_choice  # one prompt per bundle


def task_type(model) -> str:
    """peft's task type for `model`'s head class."""
    name = type(model).__name__
    for ending, kind in TASK_TYPES.items():
        if name.endswith(ending):
            return kind
    heads = ", ".join(f"*{ending}" for ending in TASK_TYPES)
    raise GraftError(
        f"prompt learning: {name} is not a head peft's prompt learning feeds ({heads}); "
        "use method lora or full for this task"
    )


def options(model, tokens: int) -> dict:
    """The peft options every prompt-learning config takes for `model`."""
    return {
        "task_type": task_type(model),
        "num_virtual_tokens": tokens,
        "modules_to_save": head_modules(model) or None,
    }


def wrap(model, peft_config):
    """`model` frozen inside a peft prompt-learning model of `peft_config` (the prompt and the
    head trainable), with the virtual positions dropped from per-token outputs."""
    import peft

    return with_positions_dropped(peft.get_peft_model(model, peft_config))


def with_positions_dropped(model):
    """Hook `model` (a peft model) so that per-token outputs lose the virtual tokens'
    positions, when its prompt lengthens the input (prompt tuning, P-tuning) and its head reads
    every token (not a sequence classifier's pooled one)."""
    config = model.active_peft_config
    if config.peft_type.value == "PREFIX_TUNING" or config.task_type == "SEQ_CLS":
        return model
    virtual = config.num_virtual_tokens

    def drop(module, args, output):
        for key in ("logits", "start_logits", "end_logits"):
            value = output.get(key) if hasattr(output, "get") else None
            if value is not None:
                output[key] = value[:, virtual:]
        return output

    model.register_forward_hook(drop)
    return model


def finish(model, out_dir: Path):
    """Save the peft adapter (prompt and head) under `prompt/`; return the transformers model
    with its trained head in place of peft's wrapper (the prompt is not in it)."""
    from peft.utils import ModulesToSaveWrapper

    model.save_pretrained(str(Path(out_dir) / PROMPT_DIR), safe_serialization=True)
    base = model.get_base_model()
    for name, module in list(base.named_modules()):
        if isinstance(module, ModulesToSaveWrapper):
            parent = base.get_submodule(name.rpartition(".")[0]) if "." in name else base
            setattr(parent, name.rpartition(".")[2], module.modules_to_save["default"])
    base.requires_grad_(True)
    return base


def load(model_class, bundle: Path, choice: str | None, **kwargs):
    """The bundle's backbone and head with its prompt (`prompt/`) put back by peft."""
    import peft

    folder = Path(bundle) / PROMPT_DIR
    if not (folder / "adapter_config.json").is_file():
        raise BundleError(
            f"bundle {bundle} was trained with prompt learning but holds no {PROMPT_DIR}/ "
            "(its root weights are the backbone without the prompt); re-create it with graft "
            "train"
        )
    base = load_plain(model_class, bundle, None, **kwargs)
    with quiet():
        model = peft.PeftModel.from_pretrained(base, str(folder))
    return with_positions_dropped(model)


def task_bytes(bundle: Path, trainable: int) -> int:
    """The prompt folder (the virtual tokens' parameters and the head)."""
    return files_bytes(Path(bundle) / PROMPT_DIR)
