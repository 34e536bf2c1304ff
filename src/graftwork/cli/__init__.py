"""The `graft` command: thin verbs over the library (runs, predictor, bundle, server).

The verbs live by area (`train`, `models`, `compress`, `choose`, `serve`), everything they
print in `render`, shared options and `--input` parsing in `inputs`; this module makes the
typer app and registers them, in the order `graft --help` lists them. Errors a user can fix
(`GraftError`) are printed as one message without a traceback, exit 2.
"""

from __future__ import annotations

import sys

import typer

from graftwork.cli import choose, compress, data, fewshot, models, render, serve, train, tune
from graftwork.cli import generate as generate_verb
from graftwork.cli import trim as trim_verb
from graftwork.errors import GraftError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="graftwork: adapt a pretrained transformer to your task from one recipe.",
)

VERBS = {
    "run": train.run,
    "train": train.train,
    "pretrain": train.pretrain,
    "select": data.select,
    "augment": data.augment,
    "trim": trim_verb.trim,
    "fewshot": fewshot.fewshot,
    "eval": models.evaluate,
    "predict": models.predict,
    "generate": generate_verb.generate,
    "distill": compress.distill,
    "prune": compress.prune,
    "export": compress.export,
    "compress-report": compress.compress_report,
    "info": models.info,
    "compare": choose.compare,
    "tune": tune.tune,
    "advise": choose.advise,
    "serve": serve.serve,
}
for _name, _verb in VERBS.items():
    app.command(_name)(_verb)


def main() -> None:
    try:
        app()
    except GraftError as exc:
        render.error(str(exc))
        sys.exit(2)
