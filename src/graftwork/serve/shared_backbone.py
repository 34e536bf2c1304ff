"""Many adapter bundles of one backbone, served on one copy of it.

Bundles trained with LoRA, DoRA, IA3 (peft) or bottleneck adapters (`methods/adapter.py`) keep
their backbone frozen, so bundles trained from one backbone differ only in their adapters and
heads. `load_shared` groups the bundles given to `graft serve` by backbone; each group of two or
more is one `SharedBackbone` in memory:

- peft methods: the backbone is read once, from where the manifests' `backbone` names it
  (`backbones.load.resolve`), as the bundles' task model, and wrapped in one `peft.PeftModel`
  that holds every bundle's adapter (`load_adapter` of the bundle's PEFT folder, `adapter/`;
  the head is the adapter's `modules_to_save`); a batch runs after `set_adapter`. A bundle's
  root holds its merged model, so no hash of the base is recorded: each bundle is checked at
  load instead, every root tensor its adapter leaves alone (outside its target modules and the
  head) equal to the backbone's, bit for bit. LoRA and DoRA share one PeftModel; IA3, which
  peft does not mix with LoRA in one model, gets its own.
- bottleneck adapters: the adapter records the sha256 of the frozen backbone it was trained on
  (`backbone_sha256`, checked once against the first root's weights), and the root holds that
  backbone; bundles with one hash share the first root's model, and each bundle's adapters and
  head are kept beside it and hooked in (`Bottleneck.hook_after`) for its batches.

A member is served as any bundle is: a `ServedModel` with its own batcher, so one batch holds
one adapter's windows, and the group runs one batch at a time on its one model thread (in the
order they come; one thread's memory for activations), switching adapters between batches;
members with the same tokenizer files share one tokenizer object. A member's `SharedPredictor`
is the predictor `graft predict` uses, with its model taken from the group. Answers equal the
bundle's own up to float32 rounding: alone, a LoRA bundle runs its merged weights, (W + BA)x;
shared, the base and the adapter, Wx + BAx.

Whatever cannot share loads on its own as before, with a log line saying why: another method,
backbone or label count; root tensors that differ from the backbone; a backbone that is not
found here; an exported artifact that `auto` serves (ONNX and OpenVINO artifacts are whole
graphs: `--backend torch` shares); a generating or pruned bundle; a lone bundle of its backbone.

Left out: mixed-adapter batches through peft's `adapter_names` (LoRA only; DoRA and IA3 have
none); multi-task bundles (method full: their encoder is fine-tuned, so it is no adapter's
backbone; their tasks already share it, `inference.multitask`); a group for a bundle added at
run time when no served group has its backbone (it loads on its own).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from itertools import count
from pathlib import Path

from graftwork import registry
from graftwork.backbones.load import resolve
from graftwork.backbones.quiet import quiet
from graftwork.bundle import read_manifest
from graftwork.bundle.tasks import parse_spec
from graftwork.errors import GraftError
from graftwork.inference.multitask import weight_files
from graftwork.inference.predictor import Predictor, auto_backend, load
from graftwork.methods import adapter as bottleneck_method
from graftwork.methods import head_modules
from graftwork.methods.lora import ADAPTER_DIR

log = logging.getLogger("graftwork.serve")

PEFT_TYPES = {"lora": "LORA", "dora": "LORA", "ia3": "IA3"}  # methods → the peft type they are
PEFT_WEIGHTS = "adapter_model.safetensors"
TUNER_MARKERS = (".lora_", ".ia3_")  # a peft key's module path ends before these
TOKENIZER = re.compile(r"^(tokenizer|special_tokens|vocab|merges|spiece|sentencepiece)")


class NotShared(GraftError):
    """A bundle cannot join a shared backbone (it is then loaded on its own)."""


def share_key(path: Path, manifest, backend: str) -> tuple:
    """What bundles must have in common to share a backbone; `NotShared` says why not."""
    method = manifest.method
    if method not in PEFT_TYPES and method != "adapter":
        shared = ", ".join([*PEFT_TYPES, "adapter"])
        raise NotShared(f"method {method} does not share a backbone (those that do: {shared})")
    if manifest.pruning:
        raise NotShared("it was pruned, so its backbone is no longer the one it was trained on")
    if hasattr(registry.task(manifest.task), "generate"):
        raise NotShared(f"task {manifest.task} generates text, one request at a time")
    chosen = auto_backend(manifest)[0] if backend == "auto" else registry.backend_name(backend)
    if chosen != "torch":
        raise NotShared(
            f"it is served from its {chosen} artifact, a whole graph; --backend torch serves it "
            "on a shared backbone"
        )
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    architecture = (config.get("architectures") or [None])[0]
    if method == "adapter":
        _, trained = bottleneck_method.select(path, manifest, None)
        meta = bottleneck_method.read_meta(path / bottleneck_method.ADAPTERS_DIR / trained)
        return ("adapter", meta["backbone_sha256"], architecture)
    if not (path / ADAPTER_DIR / PEFT_WEIGHTS).is_file():
        raise NotShared(f"it holds no {ADAPTER_DIR}/{PEFT_WEIGHTS} (its PEFT adapter)")
    labels = len(config.get("id2label") or {})
    return ("peft", PEFT_TYPES[method], manifest.backbone, architecture, labels)


class SharedBackbone:
    """One backbone in memory, the adapters and heads of several bundles beside it; one batch
    at a time runs, with its bundle's adapter active."""

    def __init__(self, key: tuple):
        self.key, self.kind = key, key[0]
        self.model = None  # peft: the PeftModel; adapter: the first root's task model
        self.members: dict[str, object] = {}  # adapter id → its parts (bottleneck) or None
        self.active: str | None = None
        self.lock = threading.Lock()
        self._base: dict = {}  # peft: the backbone's tensors by name, before peft wrapped it
        self._heads: list[str] = []
        self._ids = count()
        self._tokenizers: dict[tuple, object] = {}  # tokenizer files' sha256s → one tokenizer
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="graft-shared")

    def add(self, path: Path, manifest) -> str:
        """Load the bundle's adapter and head beside the backbone; returns its adapter id."""
        model_class = registry.task(manifest.task).model_class()
        if self.kind == "peft" and self._base:  # reading the root need not stop the batches
            check_frozen(path, path / ADAPTER_DIR, self._base, self._heads)
        with self.lock:
            adapter_id = f"a{next(self._ids)}"  # peft's adapter names may not hold '.'
            if self.kind == "peft":
                self._add_peft(adapter_id, path, manifest, model_class)
            else:
                self._add_bottleneck(adapter_id, path, manifest, model_class)
            return adapter_id

    def remove(self, adapter_id: str) -> None:
        with self.lock:
            if self.active == adapter_id:
                self._deactivate()
            self.members.pop(adapter_id)
            if not self.members:
                self.model, self._base, self._tokenizers = None, {}, {}
            elif self.kind == "peft":
                with warnings.catch_warnings():  # "was active, now deleted": we know
                    warnings.simplefilter("ignore")
                    self.model.delete_adapter(adapter_id)

    def run(self, adapter_id: str, forward, batch):
        """`forward(batch)` with the adapter active, on the group's one model thread: one batch
        at a time, in the order they come, and one thread's memory for activations."""
        return self._worker.submit(self._run, adapter_id, forward, batch).result()

    def tokenizer(self, manifest, loaded):
        """One tokenizer object for the members whose tokenizer files are the same (every
        inline request is tokenized on the event loop's one thread)."""
        key = tuple(sorted((n, h) for n, h in manifest.files.items() if TOKENIZER.search(n)))
        return self._tokenizers.setdefault(key, loaded) if key else loaded

    def _run(self, adapter_id: str, forward, batch):
        with self.lock:
            if self.active != adapter_id:
                self._deactivate()
                self._activate(adapter_id)
            return forward(batch)

    def describe(self) -> str:
        return f"{self.key[2] if self.kind == 'peft' else 'sha256 ' + self.key[1][:12]}"

    # peft -----------------------------------------------------------------------------------

    def _add_peft(self, adapter_id: str, path: Path, manifest, model_class) -> None:
        import peft  # torch

        folder = path / ADAPTER_DIR
        if self.model is None:
            try:
                source = resolve(manifest.backbone)
            except GraftError as exc:
                raise NotShared(f"its backbone is not found here ({exc})") from None
            with quiet():
                base = model_class.from_pretrained(
                    str(source), num_labels=self.key[4], use_safetensors=True
                ).eval()
            self._heads = head_modules(base)
            self._base = dict(base.state_dict())  # the same tensors peft's layers will hold
            check_frozen(path, folder, self._base, self._heads)
            with quiet():
                self.model = peft.PeftModel.from_pretrained(base, str(folder), adapter_id)
        else:
            with quiet():
                self.model.load_adapter(str(folder), adapter_id)
        self.model.eval()
        self.members[adapter_id] = None
        self.active = None  # load_adapter may change which adapter is active

    # bottleneck adapters ------------------------------------------------------------------

    def _add_bottleneck(self, adapter_id: str, path: Path, manifest, model_class) -> None:
        from graftwork.methods import bottleneck  # torch

        _, trained = bottleneck_method.select(path, manifest, None)
        model = bottleneck_method.load(model_class, path, trained).eval()
        adapters = bottleneck.adapters_in(model)
        heads = {name: getattr(model, name) for name in head_modules(model)}
        bottleneck.remove(model)  # the adapters stay whole, out of the model
        if self.model is None:
            if bottleneck.backbone_sha256(model) != self.key[1]:
                raise NotShared(
                    "its root weights are not the backbone its adapter records (backbone_sha256)"
                )
            self.model = model  # the first root: backbone and head, the others' heads beside
        sites = bottleneck.sites(self.model, adapters[0].config.placement)
        self.members[adapter_id] = (list(zip(sites, adapters, strict=True)), heads)

    def _activate(self, adapter_id: str) -> None:
        if self.kind == "peft":
            self.model.set_adapter(adapter_id, inference_mode=True)
        else:
            pairs, heads = self.members[adapter_id]
            for site, adapter in pairs:
                adapter.hook_after(site.dense)
            for name, head in heads.items():
                setattr(self.model, name, head)
        self.active = adapter_id

    def _deactivate(self) -> None:
        if self.kind == "adapter" and self.active is not None:
            for _, adapter in self.members[self.active][0]:
                adapter.unhook()
        self.active = None


def check_frozen(bundle: Path, folder: Path, base: dict, heads: list[str]) -> None:
    """Every tensor of the bundle's root that its peft adapter leaves alone (outside the target
    modules and the head) must be the backbone's, bit for bit (`NotShared` otherwise)."""
    import torch
    from safetensors import safe_open

    with safe_open(str(folder / PEFT_WEIGHTS), framework="pt") as weights:
        keys = list(weights.keys())
    changed = {f"{name}." for name in heads}
    for key in keys:
        for marker in TUNER_MARKERS:
            if marker in key:  # base_model.model.<module>.lora_A.weight → <module>.
                changed.add(key.split(marker)[0].removeprefix("base_model.model.") + ".")
    compared = 0
    for file in weight_files(bundle):
        with safe_open(str(file), framework="pt") as weights:
            for key in weights.keys():  # noqa: SIM118 (a safetensors file is not a dict)
                if key.startswith(tuple(changed)):
                    continue
                if key not in base:
                    raise NotShared(f"its weights hold {key}, which the backbone has not")
                if not torch.equal(weights.get_tensor(key), base[key]):
                    raise NotShared(f"its {key} differs from the backbone's (another backbone)")
                compared += 1
    if not compared:
        raise NotShared("no tensor of its root could be compared with the backbone")


class SharedPredictor(Predictor):
    """A bundle's predictor (as `graft predict` has it) whose PyTorch model is its group's,
    every forward run with the bundle's adapter active."""

    def __init__(self, path: Path, group: SharedBackbone, adapter_id: str, threads: int | None):
        self.group, self.adapter_id = group, adapter_id
        super().__init__(path, verify=False, threads=threads, backend="torch")  # verified
        self.tokenizer = group.tokenizer(self.manifest, self.tokenizer)
        forward = self.forward
        self.forward = lambda batch: group.run(adapter_id, forward, batch)

    @property
    def model(self):
        return self.group.model


def join(group: SharedBackbone, path: Path, manifest, threads: int | None) -> SharedPredictor:
    """The bundle as a member of `group` (its adapter loaded there)."""
    adapter_id = group.add(path, manifest)
    try:
        return SharedPredictor(path, group, adapter_id, threads)
    except BaseException:
        group.remove(adapter_id)
        raise


def load_shared(specs: list[str], backend: str, threads: int | None) -> dict[int, Predictor]:
    """Predictors for the specs (NAME=PATH or PATH) whose bundles share a backbone, by index;
    the others are left to the caller to load on their own, each with a log line saying why."""
    groups: dict[tuple, list[tuple[int, Path, object]]] = {}
    for index, spec in enumerate(specs):
        path = parse_spec(spec)[1]
        try:
            manifest = read_manifest(path, verify=True)
            groups.setdefault(share_key(path, manifest, backend), []).append(
                (index, path, manifest)
            )
        except NotShared as exc:
            log.info("%s: loaded on its own: %s", path, exc)
        except GraftError:
            continue  # the bundle's own load says what is wrong with it
    shared: dict[int, Predictor] = {}
    for key, members in groups.items():
        if len(members) < 2:
            log.info("%s: loaded on its own: no other bundle has its backbone", members[0][1])
            continue
        group = SharedBackbone(key)
        for index, path, manifest in members:
            try:
                shared[index] = join(group, path, manifest, threads)
            except Exception as exc:  # NotShared, or an adapter peft cannot load beside others
                log.warning("%s: loaded on its own, not on the shared backbone: %s", path, exc)
        if group.members:
            log.info("%d bundles share one backbone (%s)", len(group.members), group.describe())
    return shared


def groups_of(predictors) -> list[SharedBackbone]:
    """The shared backbones the predictors are on (each once)."""
    found: dict[int, SharedBackbone] = {}
    for p in predictors:
        if isinstance(p, SharedPredictor):
            found.setdefault(id(p.group), p.group)
    return list(found.values())


def load_one(path: Path, backend: str, threads: int | None, groups: list) -> Predictor:
    """A bundle added at run time: on a served group of its backbone if one fits, else alone."""
    manifest = read_manifest(path, verify=True)
    try:
        key = share_key(path, manifest, backend)
        for group in groups:
            if group.key == key and group.model is not None:
                return join(group, path, manifest, threads)
        log.info("%s: loaded on its own: no served bundle has its backbone", path)
    except NotShared as exc:
        log.info("%s: loaded on its own: %s", path, exc)
    return load(path, threads=threads, backend=backend)


def release(predictor) -> None:
    """Take a removed model's adapter off its shared backbone (nothing for a lone bundle)."""
    if isinstance(predictor, SharedPredictor):
        predictor.group.remove(predictor.adapter_id)
