"""Export a bundle to ONNX (FP32, optionally INT8) and OpenVINO IR (FP32, optionally static
INT8: `export.openvino`), and record parity in its manifest.

An INT8 artifact records its change of the headline metric on the check examples and the
accuracy budget it was made for (`max_drop`, points); the OpenVINO INT8 export keeps the most
harmful operations in FP32 until the change is within the budget, and `auto` serves no
artifact whose recorded change is over its budget (`inference.predictor`).

The ONNX files are made in a working folder beside the bundle (`atomic.scratch`), then the
bundle is rewritten with them (`write_bundle`): a failed or killed export leaves the bundle as
it was, a failed one leaves no working folder (a killed one's is removed by the next export),
and a full disk says how much the export needs.
"""

from __future__ import annotations

import logging
from pathlib import Path

from graftwork.bundle import atomic, write_bundle
from graftwork.config.compress import EXPORT
from graftwork.config.recipe import load_recipe
from graftwork.data.readers import read_examples
from graftwork.data.sampling import held_part
from graftwork.errors import GraftError
from graftwork.export import onnx as onnx_export
from graftwork.export import openvino as ov_export
from graftwork.inference.forward import logits_for, torch_forward
from graftwork.inference.onnx import forward_for
from graftwork.inference.predictor import Predictor
from graftwork.methods.base import refuse
from graftwork.tasks.base import headline
from graftwork.train.checkpoint import tensor_bytes

log = logging.getLogger("graftwork")


def parity_examples(predictor, data: Path | None, limit: int | None) -> tuple[list, str]:
    """Real labelled examples to check an export on: --data, else the recipe's eval file;
    (examples, the file as messages and the manifest name it: a recipe path as written)."""
    held = False
    if data is None:
        recipe = load_recipe(predictor.manifest.recipe)
        held = recipe.data.holdout is not None  # the recipe then names no data.eval
        split = "train" if held else "eval" if recipe.data.eval is not None else "test"
        raw = getattr(recipe.data, split)
        data = recipe.data_path(split)
        shown = recipe.show_path(raw) if raw is not None else "the recipe has none"
        if data is None or not data.is_file():
            raise GraftError(
                f"no evaluation data to check the export on ({shown}); "
                "pass --data FILE with labelled examples"
            )
    else:
        shown = str(data)
    result = read_examples(Path(data), predictor.task_config, predictor.data_config, shown=shown)
    examples = result.examples
    if held:  # the recipe's eval split is the part of its training file it held out
        examples = held_part(examples, recipe.data)
        shown = f"{shown} (held out: data.holdout {recipe.data.holdout})"
    examples = examples[:limit] if limit else examples
    return examples, shown


def export_bundle(
    bundle: Path,
    int8: bool = EXPORT.int8,
    keep_attention_fp32: bool = EXPORT.keep_attention_fp32,
    data: Path | None = None,
    limit: int | None = None,
    threads: int | None = None,
    openvino: bool = EXPORT.openvino,
    max_drop: float = EXPORT.max_drop,
) -> dict:
    """Add onnx/model.onnx (and onnx/model-int8.onnx; with `openvino`, the IRs under
    openvino/) to `bundle`; returns the parity report. `max_drop`: the INT8 accuracy budget.
    The defaults are the recipe's `compress.export` section's (`config.compress.EXPORT`)."""
    bundle = Path(bundle)
    predictor = Predictor(bundle, backend="torch", threads=threads)
    refuse(predictor.manifest.method, "export", bundle, task=predictor.manifest.task)
    examples, data_shown = parity_examples(predictor, data, limit)
    task, tokenizer = predictor.task, predictor.tokenizer
    label2id = {v: k for k, v in predictor.id2label.items()}
    features, labels = task.encode(tokenizer, examples, label2id, predictor.max_length, data_shown)
    pad = tokenizer.pad_token_id
    reference = logits_for(torch_forward(predictor.model), features, 64, pad)
    metric = headline(predictor.task_config.type)
    score = task.evaluate(examples, features, reference, labels, predictor.id2label)[metric]
    artifacts = {}

    def needed() -> int:  # about the bytes the ONNX files take (said when the disk is full)
        return int(tensor_bytes(predictor.model) * (1.25 if int8 else 1.0) * (2 if openvino else 1))

    # the ONNX files are made beside the bundle, removed however the export ends
    with atomic.scratch(bundle, needed) as work:
        fp32 = work / onnx_export.FP32
        # eager attention traces to the pattern ONNX Runtime fuses into one Attention node
        eager = predictor.method.load(
            task.model_class(), bundle, predictor.adapter, attn_implementation="eager"
        )
        onnx_export.export_fp32(eager, tokenizer, fp32)
        fused = onnx_export.fuse(fp32, predictor.model.config)
        outputs = logits_for(forward_for("onnx-fp32", fp32, threads), features, 64, pad)
        check = onnx_export.parity(reference, outputs)
        if check["max_abs_logit_diff"] > onnx_export.FP32_TOLERANCE:
            raise onnx_export.ParityError(
                f"FP32 ONNX export of {bundle} differs from PyTorch by up to "
                f"{check['max_abs_logit_diff']:.2e} in a logit (allowed "
                f"{onnx_export.FP32_TOLERANCE:.0e}) on {len(examples)} examples of {data_shown}; "
                "the bundle was left unchanged. Report this with the model type."
            )
        artifacts["onnx-fp32"] = {
            "path": f"{onnx_export.ONNX_DIR}/{onnx_export.FP32}",
            "fused": fused,
            **check,
        }
        if int8:
            q = work / onnx_export.INT8
            onnx_export.quantize(fp32, q, keep_attention_fp32)
            outputs = logits_for(forward_for("onnx-int8", q, threads), features, 64, pad)
            q_score = task.evaluate(examples, features, outputs, labels, predictor.id2label)[metric]
            artifacts["onnx-int8"] = {
                "path": f"{onnx_export.ONNX_DIR}/{onnx_export.INT8}",
                "keep_attention_fp32": keep_attention_fp32,
                **onnx_export.parity(reference, outputs),
                "metric": metric,
                "pytorch": score,
                "int8": q_score,
                "change_points": 100 * (q_score - score),
                "max_drop": max_drop,
            }
        if openvino:
            check = {
                "examples": examples,
                "features": features,
                "labels": labels,
                "reference": reference,
                "score": score,
                "metric": metric,
                "shown": data_shown,
            }
            artifacts.update(
                ov_export.export_openvino(work, eager, predictor, check, int8, max_drop, threads)
            )
        for info in artifacts.values():
            info["checked_on"] = f"{len(examples)} examples of {data_shown}"

        def write(tmp: Path) -> None:
            for rel in predictor.manifest.files:
                if not rel.startswith((onnx_export.ONNX_DIR + "/", ov_export.OPENVINO_DIR + "/")):
                    onnx_export.link_or_copy(bundle / rel, tmp / rel)
            for info in artifacts.values():
                for rel in info.get("files", [info["path"]]):
                    onnx_export.link_or_copy(work / Path(rel).name, tmp / rel)

        manifest = {
            k: v
            for k, v in predictor.manifest.dump().items()
            if k not in ("format", "files", "versions", "created")
        }
        manifest["artifacts"] = artifacts
        write_bundle(bundle, write, manifest, needed)
    log.info("exported %s: %s", bundle, ", ".join(artifacts))
    return artifacts


__all__ = ["export_bundle"]
