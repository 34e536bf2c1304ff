"""OpenVINO export: an FP32 IR converted from the bundle's ONNX graph, and an INT8 IR by NNCF
post-training quantization, calibrated on the bundle's own training examples.

The FP32 IR is `openvino.convert_model` of the plain (unfused) ONNX graph that
`export.onnx.export_fp32` traced: ONNX Runtime's fused nodes (`com.microsoft` Attention,
SkipLayerNormalization) are not ONNX operators, so OpenVINO reads the graph before fusion and
fuses it with its own passes when it compiles. The INT8 IR is `nncf.quantize` of that model
with `ModelType.TRANSFORMER` (NNCF's ignored patterns for attention and its SmoothQuant pass),
whose activation scales are computed once from calibration batches and then fixed: a row's
answer does not depend on what else is in its batch, so this artifact runs whole batches.
Calibration reads `calibration` training examples of the recipe's `data.train` (seeded sample),
encoded as training encoded them, in length-sorted batches; when the training file is not
there any more, the parity examples are used and the manifest says so.

Why not optimum-intel: it pins transformers below the version graftwork runs on, so the two
libraries it wraps (openvino, nncf) are called directly. The IR files (`model.xml` + `.bin`)
run with plain `openvino` and the saved tokenizer.

An accuracy budget (`max_drop`, points of the task's headline metric on the export's check
examples): when plain post-training INT8 loses more, `nncf.quantize_with_accuracy_control`
puts the operations whose quantization hurts most back in FP32, one at a time by their measured
harm, until the drop is within the budget; the manifest records the operations kept in FP32 and
the final metric. NNCF's INT8 IR also stores the word-embedding table in INT8 (the Gather's
weights), so the file is about a quarter of the FP32 one.

Left out: devices other than the CPU, and a per-operation search for ONNX Runtime's INT8 (its
artifact records its change, and `auto` refuses it when over the budget).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

from graftwork.config.recipe import load_recipe
from graftwork.data.batching import collate, inference_batches
from graftwork.data.readers import read_examples
from graftwork.data.sampling import train_part
from graftwork.errors import GraftError
from graftwork.export import onnx as onnx_export
from graftwork.inference.forward import logits_for
from graftwork.inference.openvino import compiled_forward, ir_forward

log = logging.getLogger("graftwork")

OPENVINO_DIR = "openvino"
FP32 = "model.xml"
INT8 = "model-int8.xml"
CALIBRATION = 300  # training examples NNCF computes the activation scales from
SEED = 13


def ir_files(xml: Path) -> list[Path]:
    """The files of one IR: the graph (.xml) and its weights (.bin)."""
    return [xml, xml.with_suffix(".bin")]


def convert(onnx_path: Path, xml: Path) -> None:
    """Convert an ONNX graph to an FP32 OpenVINO IR at `xml` (and its .bin)."""
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    ov.save_model(model, str(xml), compress_to_fp16=False)


def calibration_batches(features: list[dict], pad_id: int, names: list[str], batch_size: int = 16):
    """Length-sorted padded batches (numpy, the graph's inputs only) of `features`."""
    lengths = [len(f["input_ids"]) for f in features]
    batches = []
    for idx in inference_batches(lengths, batch_size, None):
        batch = collate([features[i] for i in idx], pad_id)
        batches.append({k: v.numpy() for k, v in batch.items() if k in names})
    return batches


def sample(examples: list[dict], count: int = CALIBRATION, seed: int = SEED) -> list[dict]:
    """A seeded sample of `count` examples (all of them when there are fewer)."""
    if len(examples) <= count:
        return list(examples)
    return random.Random(seed).sample(examples, count)


def quantize(fp32_xml: Path, xml: Path, batches: list[dict]) -> None:
    """NNCF post-training INT8 of the IR at `fp32_xml`, calibrated on `batches`, saved at `xml`."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(fp32_xml))
    quantized = nncf.quantize(
        model,
        nncf.Dataset(batches),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(batches),  # NNCF counts dataset items: here batches
    )
    ov.save_model(quantized, str(xml), compress_to_fp16=False)


def quantized_ops(model) -> set[str]:
    """Names of the operations of an OpenVINO model that read an INT8-quantized input (an
    input that comes through a FakeQuantize node)."""
    names = set()
    for op in model.get_ops():
        sources = [port.get_source_output().get_node() for port in op.inputs()]
        if any(s.get_type_name() == "FakeQuantize" for s in sources):
            names.add(op.get_friendly_name())
    return names


def quantize_within(
    fp32_xml: Path, xml: Path, batches: list[dict], score, reference: float, max_drop: float
) -> dict:
    """INT8 of the IR at `fp32_xml` whose `score(compiled_model)` (the headline metric, a
    fraction) is at most `max_drop` points below `reference` (the PyTorch model's); saved at
    `xml`. Plain NNCF post-training INT8 first; only when it loses more than the budget, NNCF's
    accuracy control. Returns the INT8 score and the operations kept in FP32."""
    import nncf
    import openvino as ov

    core = ov.Core()
    settings = {"model_type": nncf.ModelType.TRANSFORMER, "subset_size": len(batches)}
    plain = nncf.quantize(core.read_model(str(fp32_xml)), nncf.Dataset(batches), **settings)
    quantized, kept = plain, []
    after = score(core.compile_model(plain, "CPU", PRECISION))
    if 100 * (reference - after) > max_drop:
        log.info(
            "OpenVINO INT8 loses %.2f points (budget %.2f): finding operations to keep in FP32",
            100 * (reference - after),
            max_drop,
        )
        quantized = nncf.quantize_with_accuracy_control(
            core.read_model(str(fp32_xml)),
            nncf.Dataset(batches),
            nncf.Dataset([None]),  # `score` reads the check examples itself
            validation_fn=lambda compiled, _data: score(compiled),
            max_drop=max_drop / 100,
            drop_type=nncf.DropType.ABSOLUTE,
            **settings,
        )
        kept = sorted(quantized_ops(plain) - quantized_ops(quantized))
        after = score(core.compile_model(quantized, "CPU", PRECISION))
        if 100 * (reference - after) > max_drop:
            raise GraftError(
                f"OpenVINO INT8 loses {100 * (reference - after):.2f} points of the metric even "
                f"with {len(kept)} operations kept in FP32 (budget {max_drop:.2f}); the bundle "
                "was left unchanged. Raise --max-drop, or export with --no-int8."
            )
    ov.save_model(quantized, str(xml), compress_to_fp16=False)
    return {"int8_score": after, "kept_fp32": kept}


PRECISION = {"INFERENCE_PRECISION_HINT": "f32"}


def export_openvino(
    work: Path,
    eager,
    predictor,
    check: dict,
    int8: bool,
    max_drop: float,
    threads: int | None = None,
) -> dict[str, dict]:
    """Write the OpenVINO IRs into `work` and return their manifest entries.

    `eager`: the bundle's model with eager attention (traced to ONNX, then converted);
    `check`: the parity examples (`examples`, `features`, `labels`, the PyTorch `reference`
    logits, its `score`, the `metric` name, `shown`: the file they came from)."""
    task, tokenizer, pad = predictor.task, predictor.tokenizer, predictor.tokenizer.pad_token_id
    source = work / "openvino-source.onnx"
    onnx_export.export_fp32(eager, tokenizer, source)
    fp32 = work / FP32
    convert(source, fp32)
    source.unlink()
    outputs = logits_for(ir_forward(fp32, threads), check["features"], 64, pad)
    parity = onnx_export.parity(check["reference"], outputs)
    if parity["max_abs_logit_diff"] > onnx_export.FP32_TOLERANCE:
        raise onnx_export.ParityError(
            f"OpenVINO FP32 IR of {predictor.path} differs from PyTorch by up to "
            f"{parity['max_abs_logit_diff']:.2e} in a logit (allowed "
            f"{onnx_export.FP32_TOLERANCE:.0e}) on {len(check['features'])} examples of "
            f"{check['shown']}; the bundle was left unchanged. Report this with the model type."
        )
    artifacts = {"openvino-fp32": {**entry(FP32), **parity}}
    if not int8:
        return artifacts

    def score(compiled) -> float:
        logits = logits_for(compiled_forward(compiled), check["features"], 64, pad)
        metrics = task.evaluate(
            check["examples"], check["features"], logits, check["labels"], predictor.id2label
        )
        return metrics[check["metric"]]

    features, shown = calibration_features(predictor, check)
    batches = calibration_batches(features, pad, onnx_export.input_names(tokenizer))
    found = quantize_within(fp32, work / INT8, batches, score, check["score"], max_drop)
    outputs = logits_for(ir_forward(work / INT8, threads), check["features"], 64, pad)
    artifacts["openvino-int8"] = {
        **entry(INT8),
        **onnx_export.parity(check["reference"], outputs),
        "metric": check["metric"],
        "pytorch": check["score"],
        "int8": found["int8_score"],
        "change_points": 100 * (found["int8_score"] - check["score"]),
        "max_drop": max_drop,
        "kept_fp32": found["kept_fp32"],
        "calibration": f"{len(features)} examples of {shown}",
        "quantization": "static (NNCF post-training, transformer preset)",
    }
    return artifacts


def entry(name: str) -> dict:
    """The manifest's path and files of the IR `name` in the bundle."""
    xml = Path(OPENVINO_DIR) / name
    return {"path": str(xml), "files": [str(f) for f in ir_files(xml)]}


def calibration_features(predictor, check: dict) -> tuple[list[dict], str]:
    """Encoded calibration examples: a seeded sample of the recipe's training file, or of the
    parity examples when that file is not there (then the manifest says which)."""
    recipe = load_recipe(predictor.manifest.recipe)
    path = recipe.data_path("train")
    if path is not None and path.is_file():
        shown = recipe.show_path(recipe.data.train)
        examples = read_examples(path, predictor.task_config, predictor.data_config, shown=shown)
        examples = train_part(examples.examples, recipe.data)
    else:
        log.warning("training file not found: calibrating INT8 on the check examples instead")
        examples, shown = check["examples"], check["shown"]
    label2id = {v: k for k, v in predictor.id2label.items()}
    chosen = sample(examples)
    features, _ = predictor.task.encode(
        predictor.tokenizer, chosen, label2id, predictor.max_length, shown
    )
    return features, shown
