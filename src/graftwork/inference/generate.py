"""Generation for users: `graft generate`, the Python API and the server's generate endpoint.

`load_generator(source)` takes a causal_lm bundle (its weights: a LoRA bundle's are merged, so
no peft is needed; its `adapter/` folder loads in peft for those who want it) or a backbone
name or folder (`smollm2-135m`: the pretrained model as it is). Prompts are formatted as the
causal_lm task formats them (`tasks.causal_lm`: the chat template when the tokenizer has one,
the bundle's `task.prefix`), so a bundle answers as it was evaluated; the settings are the
bundle's `generation` section unless the caller gives others.

- `generate(prompts)`: batches of prompts sorted by length (longest first, so padding is
  minimal), left-padded, through `model.generate` with its KV cache (`tasks.generation`);
  answers in input order; `on_batch(done)` reports progress.
- `stream(prompt)`: one prompt, its answer as text pieces while it is generated (transformers'
  `TextIteratorStreamer`, generation in a worker thread); setting its `stop` event ends the
  generation at the next token (`Stopped`), as the server does when a client leaves.

Left out: ONNX or other backends (generation stays in PyTorch: an export with a KV cache is
not done here), and several answers per prompt.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from graftwork import registry
from graftwork.backbones import load as backbones
from graftwork.backbones.quiet import quiet
from graftwork.bundle import read_manifest
from graftwork.config.generation import GenerationConfig
from graftwork.config.recipe import BackboneConfig, TaskConfig
from graftwork.data.batching import inference_batches
from graftwork.data.blank import blank_message, blank_text
from graftwork.errors import BundleError, GraftError
from graftwork.tasks import causal_lm
from graftwork.tasks import generation as gen

MANIFEST = "graftwork.json"
# the ends of the architecture names of checkpoints that generate (config.json `architectures`)
DECODERS = ("ForCausalLM", "LMHeadModel")


def check_temperature(temperature: float | None) -> None:
    """Refuse temperature 0: it asks for sampling but divides the logits by zero (the flag and
    a request's field alike; the rule is the same whatever else is given)."""
    if temperature is not None and temperature == 0:
        raise GraftError(
            "temperature 0 does not sample (it would divide the logits by zero); for "
            'deterministic output use greedy decoding: --greedy, or "greedy": true in a request'
        )


class Stopped(Exception):
    """A streamed generation ended early because its reader set the `stop` event."""


def stoppable_streamer(tokenizer, stop: threading.Event | None):
    """transformers' `TextIteratorStreamer`, whose `put` (called with each new token, in the
    generating thread) raises `Stopped` once `stop` is set, so `generate` ends within a step."""
    from transformers import TextIteratorStreamer

    class Streamer(TextIteratorStreamer):
        def put(self, value) -> None:
            if stop is not None and stop.is_set():
                raise Stopped("the reader stopped the generation")
            super().put(value)

    return Streamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)


@dataclass
class Generator:
    model: Any
    tokenizer: Any
    settings: GenerationConfig  # the bundle's generation section, or the defaults
    task: TaskConfig | None  # the bundle's task section (its prefix), None for a backbone
    name: str

    def settings_with(
        self,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        greedy: bool | None = None,
    ) -> GenerationConfig:
        """These settings with a caller's changes (flags, a request's fields; None: unchanged):
        a temperature or top_p samples, unless greedy is asked for too, which is an error."""
        check_temperature(temperature)
        values = self.settings.model_dump()
        given = (("temperature", temperature), ("top_p", top_p))
        sampling = {k: v for k, v in given if v is not None}
        if greedy and sampling:
            raise GraftError(
                f"{' and '.join(sampling)} set how to sample, but greedy decoding was asked for; "
                "give one or the other"
            )
        if greedy is True:  # the sampling settings of the bundle no longer apply
            values.update(greedy=True, temperature=1.0, top_p=1.0, top_k=50)
        elif greedy is False or sampling:
            values.update(greedy=False, num_beams=1, **sampling)
        if max_new_tokens is not None:
            values["max_new_tokens"] = max_new_tokens
        try:
            return GenerationConfig(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'generation'}: {e['msg']}" for e in exc.errors()
            )
            raise GraftError(f"generation settings: {problems}") from None

    def prompt_ids(self, prompts: list[str]) -> list[list[int]]:
        index = blank_text(prompts)
        if index is not None:
            raise GraftError(blank_message(f"prompts[{index}]", "prompt"))
        examples = [causal_lm.from_text(p, self.task) for p in prompts]
        return causal_lm.prompt_ids(self.tokenizer, examples)

    def generate(
        self,
        prompts: list[str],
        settings: GenerationConfig | None = None,
        batch_size: int = 16,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[dict]:
        """One `{"generated_text", "tokens"}` per prompt, in order."""
        ids = self.prompt_ids(prompts)
        out: list[dict] = [{}] * len(ids)
        for batch in inference_batches([len(p) for p in ids], batch_size):
            new = gen.generate_ids(
                self.model, self.tokenizer, [ids[i] for i in batch], settings or self.settings
            )
            for i, tokens in zip(batch, new, strict=True):
                text = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
                out[i] = {"generated_text": text, "tokens": len(tokens)}
            if on_batch is not None:
                on_batch(len(batch))
        return out

    def stream(
        self,
        prompt: str,
        settings: GenerationConfig | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[str]:
        """The answer to one prompt, piece by piece as it is generated; once `stop` is set,
        generation ends at its next token and the iteration raises `Stopped` (a reader that
        closes the iteration early stops the generation the same way)."""
        stop = stop if stop is not None else threading.Event()
        ids = self.prompt_ids([prompt])
        streamer = stoppable_streamer(self.tokenizer, stop)
        failed: list[BaseException] = []

        def work() -> None:
            try:
                gen.generate_ids(
                    self.model, self.tokenizer, ids, settings or self.settings, streamer
                )
            except BaseException as exc:  # reported to the reader, not lost in the thread
                failed.append(exc)
                streamer.end()

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        try:
            yield from streamer
        except GeneratorExit:  # the reader left: generate no further
            stop.set()
            raise
        worker.join()
        if failed:
            raise failed[0]


def load_generator(source: str | Path, threads: int | None = None) -> Generator:
    """A causal_lm bundle, or a backbone (short name, folder, hub id), ready to generate."""
    import torch
    from transformers import AutoModelForCausalLM

    if threads:
        torch.set_num_threads(threads)
    path = Path(source)
    if (path / MANIFEST).is_file():
        manifest = read_manifest(path)
        if manifest.task != "causal_lm":
            raise BundleError(
                f"{path} is a {manifest.task} bundle; graft generate needs a causal_lm bundle "
                "or a decoder backbone (e.g. smollm2-135m); use graft predict for this one"
            )
        recipe = manifest.recipe
        method = registry.method(manifest.method)
        model = method.load(AutoModelForCausalLM, path, None)
        with quiet():
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(path))
        settings = gen.settings(recipe.get("generation"))
        task = TaskConfig(**recipe["task"])
    else:
        config = BackboneConfig(name=str(source))
        folder = backbones.resolve(config)
        kinds = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        kinds = kinds.get("architectures") or []
        if kinds and not any(k.endswith(DECODERS) for k in kinds):
            raise GraftError(
                f"{source} holds a {', '.join(kinds)}, not a decoder language model; graft "
                "generate needs a causal LM (GPT-2, Llama family) or a causal_lm bundle"
            )
        tokenizer = backbones.load_tokenizer(folder, config)
        with quiet():
            model = AutoModelForCausalLM.from_pretrained(str(folder), use_safetensors=True)
        settings, task = GenerationConfig(), None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return Generator(model.eval(), tokenizer, settings, task, path.name or str(source))
