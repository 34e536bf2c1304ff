"""The prune and export settings are declared once (`config.compress`): `graft prune` /
`graft export` without flags, `prune_bundle` / `export_bundle` without arguments and a recipe's
`compress: {prune: {}, export: {}}` section do the same thing."""

from __future__ import annotations

import inspect

import pytest
from typer.testing import CliRunner

from graftwork.cli import app
from graftwork.cli import compress as cli_compress
from graftwork.config.compress import ExportConfig, PruneConfig
from graftwork.errors import GraftError
from graftwork.export import export_bundle
from graftwork.runs.prune import prune_bundle

EXPORT_FIELDS = ["int8", "keep_attention_fp32", "openvino", "max_drop"]


class Captured(Exception):
    """Raised by a stand-in for the library call once it has its arguments."""


def captured_call(monkeypatch, name: str, real) -> dict:
    """Replace `cli.compress.NAME` by a stand-in that records its bound arguments."""
    seen: dict = {}

    def stand_in(*args, **kwargs):
        bound = inspect.signature(real).bind(*args, **kwargs)
        bound.apply_defaults()
        seen.update(bound.arguments)
        raise Captured

    monkeypatch.setattr(cli_compress, name, stand_in)
    return seen


def test_graft_export_without_flags_exports_as_a_recipe_export_section(monkeypatch, tmp_path):
    seen = captured_call(monkeypatch, "export_bundle", export_bundle)
    result = CliRunner().invoke(app, ["export", str(tmp_path)])
    assert isinstance(result.exception, Captured), result.output
    section = ExportConfig()
    assert {k: seen[k] for k in EXPORT_FIELDS} == {k: getattr(section, k) for k in EXPORT_FIELDS}


def test_graft_export_no_int8_leaves_the_int8_artifact_out(monkeypatch, tmp_path):
    seen = captured_call(monkeypatch, "export_bundle", export_bundle)
    result = CliRunner().invoke(app, ["export", str(tmp_path), "--no-int8"])
    assert isinstance(result.exception, Captured), result.output
    assert seen["int8"] is False


def test_export_bundle_defaults_are_the_recipe_export_section():
    defaults = inspect.signature(export_bundle).parameters
    section = ExportConfig()
    assert {k: defaults[k].default for k in EXPORT_FIELDS} == section.model_dump()


def test_graft_prune_without_flags_prunes_as_a_recipe_prune_section(monkeypatch, tmp_path):
    seen = captured_call(monkeypatch, "prune_bundle", prune_bundle)
    result = CliRunner().invoke(app, ["prune", str(tmp_path / "bundle")])
    assert isinstance(result.exception, Captured), result.output
    section = PruneConfig().model_dump()
    assert {k: seen[k] for k in section} == section


def test_prune_bundle_defaults_are_the_recipe_prune_section():
    defaults = inspect.signature(prune_bundle).parameters
    section = PruneConfig().model_dump()
    assert {k: defaults[k].default for k in section} == section


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--heads", "1.5"), ("--ffn", "-0.1"), ("--recovery-epochs", "-1"), ("--max-examples", "0")],
)
def test_graft_prune_refuses_a_setting_the_recipe_refuses_naming_its_flag(flag, value, tmp_path):
    bundle = tmp_path / "bundle"
    result = CliRunner().invoke(app, ["prune", str(bundle), flag, value])
    assert isinstance(result.exception, GraftError)  # `graft` prints it in one line, exit 2
    assert str(result.exception).startswith(f"graft prune: {flag}: Input should be")
    assert not bundle.exists()
