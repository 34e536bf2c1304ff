"""A manifest that contradicts the model it sits beside, or was edited after it was written
(issue 23 #20): every read checks graftwork.json against config.json, a verified read checks
the manifest's own sha256 (no model needed: a config.json names the architecture)."""

from __future__ import annotations

import json

import pytest

from graftwork.bundle import MANIFEST, read_manifest, save_manifest, write_bundle
from graftwork.errors import BundleError


def hf_folder(architecture: str, labels: tuple[str, ...] = ()):
    """A bundle writer: a config.json naming `architecture` (and a head for `labels`)."""

    def write_model(folder):
        config = {"architectures": [architecture], "model_type": "bert"}
        if labels:
            config["id2label"] = {str(i): label for i, label in enumerate(labels)}
            config["label2id"] = {label: i for i, label in enumerate(labels)}
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "model.safetensors").write_bytes(b"weights")

    return write_model


def rewrite(bundle, edit):
    """Edit the written graftwork.json in place, as a user with a text editor would."""
    data = json.loads((bundle / MANIFEST).read_text())
    edit(data)
    (bundle / MANIFEST).write_text(json.dumps(data, indent=2))
    return bundle


@pytest.mark.parametrize(
    "task, architecture, labels",
    [
        ("classification", "BertForSequenceClassification", ("negative", "positive")),
        ("ner", "BertForTokenClassification", ("O", "B-PER", "I-PER")),
        ("qa", "BertForQuestionAnswering", ()),
        ("causal_lm", "LlamaForCausalLM", ()),
        ("causal_lm", "GPT2LMHeadModel", ()),
        ("seq2seq", "EncoderDecoderModel", ()),
    ],
)
def test_a_manifest_that_agrees_with_its_config_loads(tmp_path, task, architecture, labels):
    manifest = {"name": "n", "task": task, "labels": list(labels)}
    bundle = write_bundle(tmp_path / "b", hf_folder(architecture, labels), manifest)
    assert read_manifest(bundle).task == task


def test_a_qa_bundle_edited_to_classification_is_refused_even_unverified(tmp_path):
    bundle = write_bundle(
        tmp_path / "b", hf_folder("BertForQuestionAnswering"), {"name": "n", "task": "qa"}
    )
    rewrite(bundle, lambda data: data.update(task="classification", labels=["0", "1"]))
    for verify in (True, False):  # the head it would load is a random one either way
        with pytest.raises(BundleError) as error:
            read_manifest(bundle, verify=verify)
        assert str(error.value) == (
            f"bundle {bundle}: its graftwork.json says task 'classification', but its "
            "config.json holds a BertForQuestionAnswering (a 'qa' model); task 'classification' "
            "needs a …ForSequenceClassification model. graftwork.json was edited or comes from "
            "another bundle: restore it, or re-create the bundle (graft train)"
        )


def test_a_seq2seq_manifest_beside_another_tasks_model_is_refused(tmp_path):
    bundle = write_bundle(
        tmp_path / "b", hf_folder("BertForQuestionAnswering"), {"name": "n", "task": "seq2seq"}
    )
    with pytest.raises(BundleError, match=r"holds a BertForQuestionAnswering \(a 'qa' model\)"):
        read_manifest(bundle, verify=False)


def test_a_classification_manifest_needs_as_many_labels_as_the_head(tmp_path):
    write_model = hf_folder("BertForSequenceClassification", ("neg", "pos"))
    bundle = write_bundle(tmp_path / "b", write_model, {"task": "classification", "labels": []})
    rewrite(bundle, lambda data: data.update(labels=["neg", "neutral", "pos"]))
    with pytest.raises(
        BundleError, match=r"with 3 labels, but the head in its config.json has 2 \(id2label\)"
    ):
        read_manifest(bundle, verify=False)


def test_labels_swapped_in_the_manifest_are_refused(tmp_path):
    write_model = hf_folder("BertForSequenceClassification", ("neg", "pos"))
    manifest = {"task": "classification", "labels": ["neg", "pos"]}
    bundle = write_bundle(tmp_path / "b", write_model, manifest)
    rewrite(bundle, lambda data: data.update(labels=["pos", "neg"]))
    with pytest.raises(
        BundleError, match=r"label 0 'pos', but the head in its config.json calls label 0 'neg'"
    ):
        read_manifest(bundle, verify=False)


def causal_lm_bundle(tmp_path):
    recipe = {"task": {"type": "causal_lm"}, "generation": {"max_new_tokens": 64}}
    manifest = {"name": "n", "task": "causal_lm", "recipe": recipe}
    return write_bundle(tmp_path / "b", hf_folder("LlamaForCausalLM"), manifest)


def test_raised_generation_limits_are_caught_by_the_manifests_own_hash(tmp_path):
    bundle = rewrite(
        causal_lm_bundle(tmp_path),
        lambda data: data["recipe"]["generation"].update(max_new_tokens=100_000),
    )
    with pytest.raises(BundleError) as error:
        read_manifest(bundle)
    assert str(error.value) == (
        f"bundle {bundle}: its graftwork.json changed after the bundle was written (its content "
        "does not match its manifest_sha256); restore it or re-create the bundle (graft train), "
        "or load with verify=False if you changed it on purpose"
    )
    assert read_manifest(bundle, verify=False).recipe["generation"]["max_new_tokens"] == 100_000


def test_the_manifest_hash_ignores_layout_and_key_order(tmp_path):
    bundle = causal_lm_bundle(tmp_path)
    data = json.loads((bundle / MANIFEST).read_text())
    (bundle / MANIFEST).write_text(json.dumps(dict(reversed(list(data.items())))))
    assert read_manifest(bundle).name == "n"


def test_a_manifest_saved_again_gets_a_new_hash(tmp_path):
    bundle = causal_lm_bundle(tmp_path)
    manifest = read_manifest(bundle)
    manifest.name = "renamed"  # as methods.adapter does when it adds an adapter
    save_manifest(bundle, manifest)
    assert read_manifest(bundle).name == "renamed"


def test_a_bundle_from_before_the_manifest_hash_is_checked_for_consistency_only(tmp_path):
    bundle = rewrite(causal_lm_bundle(tmp_path), lambda data: data.pop("manifest_sha256"))
    rewrite(bundle, lambda data: data["recipe"]["generation"].update(max_new_tokens=128))
    assert read_manifest(bundle).recipe["generation"]["max_new_tokens"] == 128
    rewrite(bundle, lambda data: data.update(task="ner"))
    with pytest.raises(BundleError, match=r"holds a LlamaForCausalLM \(a 'causal_lm' model\)"):
        read_manifest(bundle)
