"""Bottleneck adapters (Houlsby, Pfeiffer) on tiny BERTs: training, bundles, several adapters.

Two bundles are trained once for the module: a Houlsby adapter named `sst2` on real SST-2 rows
and a Pfeiffer adapter named `reversed` on the same rows with the labels swapped.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import graftwork
from conftest import tiny_recipe
from graftwork.config.recipe import load_recipe
from graftwork.errors import BundleError, GraftError, RecipeError
from graftwork.methods import adapter as adapters
from graftwork.methods import count_parameters
from graftwork.methods.bottleneck import Bottleneck
from graftwork.runs.finetune import train

TEXTS = ["a gripping , funny film", "dull and far too long", "the cast is wonderful", "meh"]


def classifier(folder, **kwargs):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_pretrained(str(folder), num_labels=2, **kwargs)


def logits(model, folder, texts=TEXTS):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model.eval()
    with torch.inference_mode():
        return model(**tokenizer(texts, return_tensors="pt", padding=True)).logits


def reversed_sst2(folder, sst2_small):
    """The same rows with labels 0 and 1 swapped."""
    out = {}
    for split, path in sst2_small.items():
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        swapped = [{"0": "1", "1": "0"}[line[0]] + line[1:] for line in lines[1:]]
        out[split] = folder / f"{split}.tsv"
        out[split].write_text(lines[0] + "".join(swapped), encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def trained(tiny_bert, sst2_small, tmp_path_factory):
    """{placement: (RunResult, logits of the trained model on TEXTS before it was bundled)}."""
    root = tmp_path_factory.mktemp("adapters")
    runs = {
        "houlsby": ("sst2", sst2_small),
        "pfeiffer": ("reversed", reversed_sst2(root, sst2_small)),
    }
    captured = {}
    original = adapters.finish

    def finish(model, out_dir):
        captured["logits"] = logits(model, tiny_bert)
        return original(model, out_dir)

    results = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(adapters, "finish", finish)
        for placement, (name, data) in runs.items():
            method = {"type": "adapter", "placement": placement, "reduction": 4, "name": name}
            recipe = tiny_recipe(
                tiny_bert, data, root / placement, method=method, train={"lr": 3e-3}
            )
            recipe["data"]["max_train_examples"] = 480
            results[placement] = (train(recipe), captured.pop("logits"))
    return results


@pytest.mark.parametrize("placement, count", [("houlsby", 4), ("pfeiffer", 2)])
def test_fresh_adapters_leave_hidden_states_equal_to_the_backbone(tiny_bert, placement, count):
    model = classifier(tiny_bert)
    inputs = {"input_ids": torch.tensor([[2, 40, 41, 42, 3]])}
    model.eval()
    before = model(**inputs, output_hidden_states=True).hidden_states
    adapters.apply(model, adapters.AdapterConfig(placement=placement))
    blocks = [m for m in model.modules() if isinstance(m, Bottleneck)]
    assert len(blocks) == count and blocks[0].down.out_features == 32 // 16
    after = model(**inputs, output_hidden_states=True).hidden_states
    for b, a in zip(before, after, strict=True):
        assert torch.equal(b, a)
    with torch.no_grad():  # the hooks are live: a non-zero up projection changes the output
        blocks[-1].down.weight.normal_(std=0.5)
        blocks[-1].up.weight.normal_(std=0.5)
    changed = model(**inputs, output_hidden_states=True).hidden_states[-1]
    assert (changed - after[-1]).abs().max() > 1e-2


def test_only_adapters_and_head_are_trainable(tiny_bert):
    model = adapters.apply(classifier(tiny_bert), adapters.AdapterConfig(reduction=4))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable
    assert all(".adapter." in n or n.startswith("classifier.") for n in trainable)
    assert {n for n, _ in model.named_parameters() if ".adapter." in n} <= trainable
    assert {"classifier.weight", "classifier.bias"} <= trainable
    # 2 layers x 2 sites x (32*8 + 8 + 8*32 + 32), plus the head 32*2 + 2
    assert count_parameters(model)["trainable"] == 4 * 552 + 66


def test_adapter_weights_round_trip_alone_and_are_small(tiny_bert, tmp_path):
    model = adapters.apply(classifier(tiny_bert), adapters.AdapterConfig(reduction=4))
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.normal_(std=0.1)
    expected = logits(model, tiny_bert)
    folder = adapters.save_adapter(model, tmp_path / "adapter")
    weights = folder / adapters.WEIGHTS
    assert weights.stat().st_size < 0.1 * (tiny_bert / "model.safetensors").stat().st_size

    fresh = adapters.load_adapter(classifier(tiny_bert), folder)
    torch.testing.assert_close(logits(fresh, tiny_bert), expected, rtol=0, atol=0)
    meta = json.loads((folder / adapters.CONFIG_FILE).read_text())
    assert meta["config"]["reduction"] == 4 and meta["labels"] == ["LABEL_0", "LABEL_1"]


@pytest.mark.parametrize("placement", ["houlsby", "pfeiffer"])
def test_loaded_bundle_predicts_what_the_trained_model_did(trained, tiny_bert, placement):
    from transformers import AutoModelForSequenceClassification

    result, expected = trained[placement]
    name = result.recipe.method.name
    folder = result.bundle / "adapters" / name
    manifest = json.loads((result.bundle / "graftwork.json").read_text())
    assert f"adapters/{name}/adapter_model.safetensors" in manifest["files"]
    params = result.metrics["parameters"]
    assert params["trainable"] == (4 if placement == "houlsby" else 2) * 552 + 66
    size = (folder / adapters.WEIGHTS).stat().st_size  # float32 adapter and head, and a header
    assert size < 4 * params["trainable"] + 4096
    assert size < 0.1 * (result.bundle / "model.safetensors").stat().st_size

    predictor = graftwork.load(result.bundle)
    assert predictor.adapter == name
    torch.testing.assert_close(logits(predictor.model, result.bundle), expected)
    answers = predictor.predict(TEXTS)
    assert [a["label"] for a in answers] == [str(int(i)) for i in expected.argmax(-1)]
    evaluated = predictor.evaluate(result.recipe.data.eval)
    assert evaluated["accuracy"] == result.metrics["eval"]["accuracy"]
    # plain transformers loads the backbone and head without the adapter: other logits
    plain = AutoModelForSequenceClassification.from_pretrained(str(result.bundle))
    assert not torch.allclose(logits(plain, result.bundle), expected, atol=1e-3)


def test_two_adapters_share_one_backbone_and_switch_per_load(trained, tmp_path):
    (sst2, _), (reversed_run, _) = trained["houlsby"], trained["pfeiffer"]
    bundle = shutil.copytree(sst2.bundle, tmp_path / "bundle")
    names = adapters.add_adapter(bundle, reversed_run.bundle / "adapters" / "reversed", "reversed")
    assert names == ["reversed", "sst2"]

    rows = Path(sst2.recipe.data.eval).read_text(encoding="utf-8").splitlines()[1:]
    texts = [row.split("\t", 1)[1] for row in rows[:64]]
    default = graftwork.load(bundle).predict(texts)  # verifies the updated file hashes
    switched = graftwork.load(bundle, adapter="reversed").predict(texts)
    own = graftwork.load(reversed_run.bundle).predict(texts)
    assert [a["label"] for a in switched] == [a["label"] for a in own]
    for mine, theirs in zip(switched, own, strict=True):
        assert mine["score"] == pytest.approx(theirs["score"], abs=1e-5)
    flipped = sum(d["label"] != s["label"] for d, s in zip(default, switched, strict=True))
    assert flipped > len(texts) // 2

    # the CLI takes the same choice: graft predict / eval --adapter NAME
    from typer.testing import CliRunner

    from graftwork.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["predict", str(bundle), "--adapter", "reversed", *texts[:8]])
    assert result.exit_code == 0, result.output
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [a["label"] for a in answers] == [a["label"] for a in switched[:8]]
    data = Path(sst2.recipe.data.eval)
    result = runner.invoke(
        app, ["eval", str(bundle), "--data", str(data), "--json", "--adapter", "reversed"]
    )
    assert result.exit_code == 0, result.output
    evaluated = json.loads(result.stdout)[str(data)]["accuracy"]
    assert evaluated == graftwork.load(reversed_run.bundle).evaluate(data)["accuracy"]


def test_unknown_adapter_name_lists_the_available_ones(trained):
    result, _ = trained["houlsby"]
    with pytest.raises(BundleError, match=r"has no adapter 'finance'; available: sst2"):
        graftwork.load(result.bundle, adapter="finance")


def test_bundle_without_adapters_loads_as_before_and_refuses_adapter_options(
    trained, tiny_bert, sst2_small, tmp_path
):
    recipe = tiny_recipe(tiny_bert, sst2_small, tmp_path)
    recipe["data"]["max_train_examples"] = 32
    result = train(recipe)
    assert graftwork.load(result.bundle).adapter is None
    with pytest.raises(BundleError, match=r"holds no adapters \(method full\)"):
        graftwork.load(result.bundle, adapter="sst2")
    adapter_dir = trained["houlsby"][0].bundle / "adapters" / "sst2"
    with pytest.raises(BundleError, match="trained with method full"):
        adapters.add_adapter(result.bundle, adapter_dir, "sst2")


def test_adapter_trained_on_other_backbone_weights_is_refused(trained, tiny_bert, tmp_path):
    result, _ = trained["houlsby"]
    bundle = shutil.copytree(result.bundle, tmp_path / "bundle")
    other = classifier(tiny_bert)
    with torch.no_grad():
        other.bert.embeddings.word_embeddings.weight[5] += 1.0
    adapters.apply(other, adapters.AdapterConfig(reduction=4))
    folder = adapters.save_adapter(other, tmp_path / "other")
    with pytest.raises(BundleError, match="other backbone weights"):
        adapters.add_adapter(bundle, folder, "other")
    with pytest.raises(BundleError, match="already holds an adapter 'sst2'"):
        adapters.add_adapter(bundle, result.bundle / "adapters" / "sst2", "sst2")
    assert adapters.adapter_names(json.loads((bundle / "graftwork.json").read_text())) == ["sst2"]


def test_unsupported_architecture_and_oversized_reduction_are_clear_errors(tiny_bert):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    gpt2 = GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_embd=32, n_head=2))
    with pytest.raises(GraftError, match="BERT-family encoders"):
        adapters.apply(gpt2, adapters.AdapterConfig())
    with pytest.raises(RecipeError, match="reduction 64 leaves no bottleneck for hidden size 32"):
        adapters.apply(classifier(tiny_bert), adapters.AdapterConfig(reduction=64))


def test_recipe_validates_the_adapter_section(tiny_bert, sst2_small, tmp_path):
    recipe = tiny_recipe(tiny_bert, sst2_small, tmp_path, method={"type": "adapter"})
    method = load_recipe(recipe).method
    assert (method.placement, method.reduction, method.name) == ("houlsby", 16, "default")
    recipe["method"] = {"type": "adapter", "placment": "pfeiffer"}
    with pytest.raises(RecipeError, match="placement"):
        load_recipe(recipe)
    recipe["method"] = {"type": "adapter", "name": "../escape"}
    with pytest.raises(RecipeError, match="name"):
        load_recipe(recipe)
