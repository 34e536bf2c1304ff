"""`graft generate --input --output`: the output is checked before the model loads, written a
batch at a time, and resumes like `graft predict --output`; the settings' rules are the CLI's
and the server's alike.

A tiny random Llama (conftest) is the model: these are mechanics, not answers' quality. The
checks that must come before loading are run with a model path that does not exist, so a
check that came too late would fail on the model instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graftwork.cli import app
from graftwork.errors import GraftError
from graftwork.inference import generate as generation
from graftwork.inference.generate import load_generator

PROMPTS = ["Two dogs play.", "People walk.", "A man in an orange hat.", "A girl climbs.", "Rain."]


def prompts_file(folder: Path, prompts=PROMPTS, name="prompts.jsonl") -> Path:
    path = folder / name
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    return path


def graft_generate(source, *args) -> object:
    return CliRunner().invoke(app, ["generate", str(source), *map(str, args)])


def refused(result, message: str) -> None:
    """A GraftError (which `graft` prints as one line, exit 2) saying `message`."""
    assert isinstance(result.exception, GraftError), result.output
    assert message in str(result.exception)


@pytest.mark.parametrize("how", ["same path", "another spelling", "symlink", "hard link"])
def test_an_output_that_is_the_input_is_refused_and_the_prompts_kept(tmp_path, how):
    prompts = prompts_file(tmp_path)
    before = prompts.read_text()
    output = {
        "same path": lambda: prompts,
        "another spelling": lambda: tmp_path / "." / "prompts.jsonl",
        "symlink": lambda: (tmp_path / "link.jsonl").symlink_to(prompts) or tmp_path / "link.jsonl",
        "hard link": lambda: os.link(prompts, tmp_path / "hard.jsonl") or tmp_path / "hard.jsonl",
    }[how]()
    result = graft_generate(tmp_path / "no-model", "--input", prompts, "--output", output)
    refused(result, "is the --input file: the answers would replace the inputs")
    assert prompts.read_text() == before


def test_an_output_in_a_missing_folder_is_refused_before_the_model_loads(tmp_path):
    prompts = prompts_file(tmp_path)
    output = tmp_path / "missing" / "dir" / "out.jsonl"
    result = graft_generate(tmp_path / "no-model", "--input", prompts, "--output", output)
    refused(result, f"its folder {output.parent} does not exist; create it or give another")
    assert not (tmp_path / "missing").exists()


def test_an_output_under_a_file_or_that_is_a_folder_is_refused(tmp_path):
    prompts = prompts_file(tmp_path)
    result = graft_generate(
        tmp_path / "no-model", "--input", prompts, "--output", prompts.parent / "prompts.jsonl/o"
    )
    refused(result, "is not a folder; create it or give another --output")
    result = graft_generate(tmp_path / "no-model", "--input", prompts, "--output", tmp_path)
    refused(result, "is a folder; give a file path for the answers")


def test_answers_are_written_a_batch_at_a_time_and_a_rerun_continues(
    tiny_llama, tmp_path, monkeypatch
):
    prompts = prompts_file(tmp_path)
    whole = tmp_path / "whole.jsonl"
    args = ["--input", prompts, "--max-new-tokens", 4, "--batch-size", 2]
    assert graft_generate(tiny_llama, *args, "--output", whole).exit_code == 0
    assert [json.loads(line)["prompt"] for line in whole.read_text().splitlines()] == PROMPTS

    calls = []
    real = generation.Generator.generate

    def dies_on_the_second_batch(self, batch, *rest, **kw):
        calls.append(batch)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a killed run stops: after one batch was written
        return real(self, batch, *rest, **kw)

    monkeypatch.setattr(generation.Generator, "generate", dies_on_the_second_batch)
    out = tmp_path / "out.jsonl"
    graft_generate(tiny_llama, *args, "--output", out)
    assert out.read_text() == "".join(whole.read_text().splitlines(keepends=True)[:2])
    with open(out, "a") as fh:  # a kill in the middle of a write leaves a partial line
        fh.write('{"prompt": "A man in')
    calls.clear()
    monkeypatch.setattr(generation.Generator, "generate", real)
    resumed = graft_generate(tiny_llama, *args, "--output", out)
    assert resumed.exit_code == 0, resumed.output
    assert "5 answers in" in resumed.output and "2 from an earlier run" in resumed.output
    assert out.read_text() == whole.read_text()


def test_an_output_written_from_other_prompts_is_refused_not_extended(tiny_llama, tmp_path):
    out = tmp_path / "out.jsonl"
    first = prompts_file(tmp_path, PROMPTS[:2], "first.jsonl")
    assert graft_generate(tiny_llama, "--input", first, "--output", out).exit_code == 0
    before = out.read_text()
    other = prompts_file(tmp_path, ["Something else.", *PROMPTS[1:]], "other.jsonl")
    result = graft_generate(tiny_llama, "--input", other, "--output", out)
    refused(result, "line 1 does not answer --input")
    assert "(its 'prompt' differs)" in str(result.exception)
    assert out.read_text() == before


def test_temperature_0_is_refused_before_the_model_loads_and_points_to_greedy(tmp_path):
    result = graft_generate(tmp_path / "no-model", "hi", "--temperature", 0, "--sample")
    refused(result, "temperature 0 does not sample")
    assert "--greedy" in str(result.exception)


def test_falsy_settings_are_never_dropped(tiny_llama):
    generator = load_generator(tiny_llama)
    with pytest.raises(GraftError, match="temperature 0 does not sample"):
        generator.settings_with(temperature=0.0, greedy=False)
    with pytest.raises(GraftError, match="top_p: Input should be greater than 0"):
        generator.settings_with(top_p=0.0)
    with pytest.raises(GraftError, match="temperature: Input should be a finite number"):
        generator.settings_with(temperature=float("nan"))


def test_a_blank_prompt_is_named_as_a_prompt_with_its_line(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "fine"}\n{"prompt": " \\u200b "}\n')
    result = graft_generate(tmp_path / "no-model", "--input", prompts)
    refused(
        result,
        f"--input {prompts}, line 2: the prompt is empty or only whitespace; there is nothing "
        "to continue from",
    )
    assert "label" not in str(result.exception)


def test_a_blank_prompt_in_python_is_named_as_a_prompt(tiny_llama):
    with pytest.raises(GraftError, match=r"prompts\[1\] is empty .*nothing to continue from"):
        load_generator(tiny_llama).generate(["fine", "  "])
