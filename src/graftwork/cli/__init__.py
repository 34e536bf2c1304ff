"""The `graft` command: thin verbs over the library (pipeline, predictor, bundle).

Errors a user can fix (`GraftError`) are printed as one message without a traceback, exit 2.
`--nproc N` re-launches the same command under `torch.distributed.run` (one process per
share of each batch; gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from graftwork.errors import GraftError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="graftwork: adapt a pretrained transformer to your task from one recipe.",
)
out = Console()
err = Console(stderr=True)

OVERRIDES = typer.Argument(None, help="Recipe overrides as KEY=VALUE, e.g. train.epochs=2.")
RESUME = typer.Option(False, "--resume", help="Continue from the run's last checkpoint.")
OVERWRITE = typer.Option(False, "--overwrite", help="Discard an unfinished run's checkpoint.")
NPROC = typer.Option(1, "--nproc", min=1, help="Data-parallel processes (CPU: gloo; GPU: NCCL).")
BACKEND = typer.Option(
    "auto", "--backend", help="auto (fastest in the bundle) | torch | onnx | onnx-int8."
)
THREADS = typer.Option(None, "--threads", min=1, help="CPU threads for inference.")
ADAPTER = typer.Option(
    None, "--adapter", help="Adapter bundles: which adapter to use (default: the trained one)."
)
TASK = typer.Option(None, "--task", help="Multi-task bundles: which task (default: the first).")


def _distributed_child() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _relaunch(nproc: int) -> None:
    """Run this same command in `nproc` processes with torch.distributed.run, then exit."""
    argv = []
    skip = False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if arg == "--nproc":
            skip = True
            continue
        if arg.startswith("--nproc="):
            continue
        argv.append(arg)
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "graftwork.cli",
        *argv,
    ]
    raise typer.Exit(subprocess.call(cmd, env=env))


def _results_table(result) -> None:
    table = Table(title=f"{result.recipe.name}: results")
    table.add_column("split")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for split in ("eval", "test"):
        for key, value in result.metrics.get(split, {}).items():
            if isinstance(value, float):
                table.add_row(split, key, f"{value:.4f}")
    task_a = result.metrics.get("task_a")  # objective ewc: the previous task, before and after
    for split, lost in (task_a or {}).get("forgetting", {}).items():
        key, where = task_a["metric"], f"task A {split}"
        table.add_row(where, f"{key} before", f"{task_a['before'][split][key]:.4f}")
        table.add_row(where, f"{key} after", f"{task_a['after'][split][key]:.4f}")
        table.add_row(where, "forgetting", f"{lost:.4f}")
    train = result.metrics.get("train", {})
    params = result.metrics.get("parameters", {})
    table.add_row("train", "examples/s", f"{train.get('examples_per_second', 0):.1f}")
    table.add_row("train", "seconds", f"{train.get('seconds', 0):.0f}")
    table.add_row(
        "model",
        "trainable params",
        f"{params.get('trainable', 0):,} ({params.get('trainable_pct', 0):.2f}%)",
    )
    out.print(table)
    out.print(f"bundle: {result.bundle}\nreport: {result.run_dir / 'report.html'}")


def _train_verb(stage: str, recipe, overrides, resume: bool, overwrite: bool, nproc: int):
    from graftwork.runs import finetune as pipeline

    if nproc > 1 and not _distributed_child():
        _relaunch(nproc)
    result = getattr(pipeline, stage)(recipe, overrides or [], resume=resume, overwrite=overwrite)
    if result.metrics:  # the main process prints
        _results_table(result)


@app.command()
def run(
    recipe: Path = typer.Argument(..., help="Recipe YAML file."),
    overrides: list[str] = OVERRIDES,
    resume: bool = RESUME,
    overwrite: bool = OVERWRITE,
    nproc: int = NPROC,
):
    """Run a whole recipe: train, evaluate, write the bundle and report.html."""
    _train_verb("run", recipe, overrides, resume, overwrite, nproc)


@app.command()
def train(
    recipe: Path = typer.Argument(..., help="Recipe YAML file."),
    overrides: list[str] = OVERRIDES,
    resume: bool = RESUME,
    overwrite: bool = OVERWRITE,
    nproc: int = NPROC,
):
    """Train and evaluate; write the bundle and metrics.json (no report)."""
    _train_verb("train", recipe, overrides, resume, overwrite, nproc)


@app.command()
def pretrain(
    recipe: Path = typer.Argument(..., help="Pretraining recipe YAML (data, mlm, vocab, train)."),
    overrides: list[str] = OVERRIDES,
    resume: bool = RESUME,
    overwrite: bool = OVERWRITE,
):
    """Continue masked-LM pretraining on domain text (optionally extending the vocabulary).

    Writes runs/NAME/bundle, a backbone folder; fine-tune from it with
    graft run RECIPE backbone=runs/NAME/bundle. With train.epochs=0 only the vocabulary is
    extended. Example: graft pretrain recipes/pretrain-sst2.yaml mlm.mask_ratio=0.2
    """
    from graftwork.runs.pretrain import pretrain as run_pretrain

    result = run_pretrain(recipe, overrides or [], resume=resume, overwrite=overwrite)
    table = Table(title=f"{result.recipe.name}: held-out text")
    for column in ("", "before", "after"):
        table.add_column(column, justify="right" if column else "left")
    ppl, words = result.metrics["perplexity"], result.metrics["tokens_per_word"]

    def shown(value, digits: int) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    table.add_row("perplexity (new head)", shown(ppl.get("before"), 2), "")
    if "before_head_warmup" in ppl:
        table.add_row("perplexity (head warmed up)", shown(ppl["before_head_warmup"], 2), "")
    table.add_row("perplexity", "", shown(ppl.get("after"), 2))
    table.add_row("tokens per word", shown(words["before"], 4), shown(words["after"], 4))
    table.add_row("vocabulary terms added", "", str(result.metrics["vocab"]["added"]))
    out.print(table)
    out.print(f"backbone folder: {result.bundle}")


@app.command("eval")
def evaluate(
    bundle: Path = typer.Argument(..., help="A bundle folder (runs/NAME/bundle)."),
    data: list[Path] = typer.Option(..., "--data", help="Labelled file(s); repeat for several."),
    batch_size: int = typer.Option(64, min=1),
    as_json: bool = typer.Option(False, "--json", help="Print metrics as JSON."),
    backend: str = BACKEND,
    threads: int = THREADS,
    adapter: str = ADAPTER,
    task: str = TASK,
):
    """Evaluate a bundle on labelled files (one row per file, e.g. one per language).

    Cross-lingual zero-shot: train on one language, then
    `graft eval BUNDLE --data wikiann/en/test --data wikiann/de/test`."""
    from graftwork.inference.predictor import load

    predictor = load(bundle, backend=backend, threads=threads, adapter=adapter, task=task)
    results = {str(path): predictor.evaluate(path, batch_size=batch_size) for path in data}
    if as_json:
        out.print_json(json.dumps(results))
        return
    keys = [
        k
        for k in ("accuracy", "macro_f1", "f1", "precision", "recall")
        if k in next(iter(results.values()))
    ]
    table = Table(title=f"{bundle}")
    table.add_column("data")
    for key in keys:
        table.add_column(key, justify="right")
    for path, metrics in results.items():
        table.add_row(path, *[f"{metrics[k]:.4f}" for k in keys])
    out.print(table)


@app.command()
def predict(
    bundle: Path = typer.Argument(..., help="A bundle folder."),
    texts: list[str] = typer.Argument(None, help="Texts to label."),
    input: Path = typer.Option(
        None, "--input", help="File: one text a line, or JSON lines with 'text'."
    ),
    top_k: int = typer.Option(1, min=1, help="Classification: also list the k best labels."),
    batch_size: int = typer.Option(64, min=1),
    backend: str = BACKEND,
    threads: int = THREADS,
    adapter: str = ADAPTER,
    task: str = TASK,
):
    """Predict labels (or entities) for texts; one JSON line per input on stdout."""
    from graftwork.inference.predictor import load

    items = list(texts or [])
    if input is not None:
        items += _read_inputs(input)
    if not items:
        raise GraftError("nothing to predict: give texts as arguments or --input FILE")
    predictor = load(bundle, backend=backend, threads=threads, adapter=adapter, task=task)
    for text, answer in zip(
        items, predictor.predict(items, top_k=top_k, batch_size=batch_size), strict=True
    ):
        sys.stdout.write(json.dumps({"text": text, **answer}, ensure_ascii=False) + "\n")


def _read_inputs(path: Path) -> list[str]:
    if not path.is_file():
        raise GraftError(f"--input {path} does not exist")
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        if path.suffix in (".jsonl", ".json"):
            try:
                text = json.loads(line).get("text")
            except (json.JSONDecodeError, AttributeError):
                text = None
            if not isinstance(text, str):
                raise GraftError(
                    f"{path}, line {number}: expected a JSON object with a 'text' string"
                )
            items.append(text)
        else:
            items.append(line)
    return items


@app.command()
def distill(
    teacher: Path = typer.Argument(..., help="The teacher bundle."),
    overrides: list[str] = OVERRIDES,
    recipe: Path = typer.Option(
        None,
        "--recipe",
        help="Recipe with data, train and compress.distill (default: the "
        "teacher's recipe, a 3-layer student).",
    ),
    resume: bool = RESUME,
):
    """Distil a teacher bundle into a smaller student (a new bundle)."""
    from graftwork.runs.distill import distill as run_distill

    result = run_distill(teacher, recipe, overrides or [], resume=resume)
    if result.metrics:
        _results_table(result)


@app.command()
def prune(
    bundle: Path = typer.Argument(..., help="A bundle folder."),
    heads: float = typer.Option(0.3, "--heads", help="Fraction of attention heads to remove."),
    ffn: float = typer.Option(0.3, "--ffn", help="Fraction of FFN neurons to remove."),
    target: Path = typer.Option(None, "--out", help="New bundle folder (default: BUNDLE-pruned)."),
    data: Path = typer.Option(None, "--data", help="Training file (default: the recipe's)."),
    recovery_epochs: float = typer.Option(1.0, "--recovery-epochs", min=0),
    recovery_lr: float = typer.Option(None, "--recovery-lr"),
    max_examples: int = typer.Option(None, "--max-examples", min=1),
):
    """Remove the least important heads and FFN neurons, fine-tune briefly, write a bundle."""
    from graftwork.compress.prune import prune_bundle
    from graftwork.runs.finetune import quiet_libraries, setup_logging

    setup_logging(None)
    quiet_libraries()
    target = target or bundle.with_name(bundle.name + "-pruned")
    report = prune_bundle(
        bundle, target, heads, ffn, data, recovery_epochs, recovery_lr, max_examples
    )
    table = Table(title=f"{bundle} → {target}")
    for column in ("", "before", "after"):
        table.add_column(column, justify="right" if column else "left")
    table.add_row(
        "parameters", f"{report['parameters_before']:,}", f"{report['parameters_after']:,}"
    )
    for split, metrics in report.get("metrics", {}).items():
        before = report.get("metrics_before", {}).get(split, {})
        for key in ("accuracy", "f1"):
            if key in metrics and key in before:
                table.add_row(f"{split} {key}", f"{before[key]:.4f}", f"{metrics[key]:.4f}")
    out.print(table)


@app.command()
def export(
    bundle: Path = typer.Argument(..., help="A bundle folder."),
    onnx: bool = typer.Option(True, "--onnx/--no-onnx", help="Export FP32 ONNX (the base of all)."),
    int8: bool = typer.Option(False, "--int8", help="Also write a dynamic INT8 ONNX model."),
    keep_attention_fp32: bool = typer.Option(
        False, "--keep-attention-fp32", help="INT8: leave attention products in FP32."
    ),
    data: Path = typer.Option(None, "--data", help="Labelled file for the parity check."),
    limit: int = typer.Option(None, "--limit", min=1, help="Check on the first N examples."),
):
    """Export to ONNX (+ INT8), check parity on real examples, record it in the manifest."""
    from graftwork.export import export_bundle
    from graftwork.runs.finetune import quiet_libraries

    if not onnx:
        raise GraftError("ONNX is the only export format; drop --no-onnx")
    quiet_libraries()
    artifacts = export_bundle(bundle, int8, keep_attention_fp32, data, limit)
    table = Table(title=f"{bundle}: exports")
    for column in ("artifact", "max |Δlogit|", "label agreement", "metric change"):
        table.add_column(column, justify="right" if column != "artifact" else "left")
    for info in artifacts.values():
        change = f"{info['change_points']:+.2f} pts" if "change_points" in info else "-"
        table.add_row(
            info["path"],
            f"{info['max_abs_logit_diff']:.2e}",
            f"{info['label_agreement']:.4f}",
            change,
        )
    out.print(table)


@app.command()
def info(bundle: Path = typer.Argument(..., help="A bundle folder.")):
    """Show what a bundle holds: task, labels, method, metrics, files."""
    from graftwork.bundle import read_manifest

    manifest = read_manifest(bundle)
    out.print(f"[bold]{manifest.get('name')}[/bold]  ({manifest.get('format')})")
    for key in ("task", "method", "backbone", "created"):
        out.print(f"{key}: {manifest.get(key)}")
    out.print(f"labels: {', '.join(manifest.get('labels', []))}")
    for split, metrics in manifest.get("metrics", {}).items():
        shown = {k: round(v, 4) for k, v in metrics.items() if isinstance(v, (int, float))}
        out.print(f"{split}: {shown}")
    for name, artifact in manifest.get("artifacts", {}).items():
        out.print(f"artifact {name}: {artifact['path']} ({artifact['checked_on']})")
    out.print(f"files: {', '.join(manifest.get('files', {}))}")
    out.print(f"versions: {manifest.get('versions')}")


@app.command()
def compare(
    recipe: Path = typer.Argument(..., help="Recipe YAML file (its task and data are kept)."),
    overrides: list[str] = OVERRIDES,
    methods: str = typer.Option(
        "full,lora,adapter,frozen", help="Comma-separated methods to run, each in its own process."
    ),
    budget_minutes: float = typer.Option(
        None, help="Training time per method (train.max_minutes); default: the recipe's epochs."
    ),
    lr: list[str] = typer.Option(
        [],
        help="METHOD=VALUE learning rate (full 1e-4, lora 1e-3, adapter 3e-3, frozen 5e-3).",
    ),
):
    """Run one recipe under several methods; table of metric, parameters, speed, memory, size."""
    from graftwork.runs import compare as comparing
    from graftwork.runs.finetune import setup_logging

    setup_logging(None)
    rows, folder = comparing.compare(
        recipe,
        [m.strip() for m in methods.split(",") if m.strip()],
        overrides or [],
        budget_minutes,
        comparing.parse_lrs(lr),
    )
    table = Table(title=f"compare: {recipe}")
    for _, label in comparing.COLUMNS:
        table.add_column(label, justify="right")
    for row in rows:
        table.add_row(*comparing.cells(row))
    out.print(table)
    out.print(f"table: {folder / 'compare.json'}\nreport: {folder / 'report.html'}")


@app.command()
def advise(
    examples: int = typer.Option(..., help="Labelled training examples you have."),
    labels: int = typer.Option(..., help="Number of labels (classes or entity tags)."),
    latency_ms: float = typer.Option(..., help="Per-request p99 latency budget on CPU, in ms."),
    languages: str = typer.Option("en", help="Comma-separated languages the model must handle."),
    tokens: int = typer.Option(25, help="Typical input length in tokens (SST-2 averages 25)."),
    tasks: int = typer.Option(1, help="Tasks that will share one backbone."),
):
    """Recommend backbone + method + compression from graftwork's measured rule table."""
    from graftwork.runs.advise import advise as recommend

    advice = recommend(examples, labels, latency_ms, languages.split(","), tokens, tasks)
    for key in ("backbone", "method", "compression"):
        out.print(f"[bold]{key}[/bold]: {getattr(advice, key)}")
    out.print("\nwhy (each rule and the measurement behind it, see BENCHMARKS.md):")
    for reason in advice.reasons:
        out.print(f"- {reason}")


@app.command()
def serve(
    bundles: list[str] = typer.Argument(..., help="Bundle folders; NAME=PATH chooses the name."),
    host: str = typer.Option(
        "127.0.0.1", envvar="GRAFT_HOST", help="Address to listen on (0.0.0.0: all interfaces)."
    ),
    port: int = typer.Option(8080, envvar="GRAFT_PORT", help="Port (0: any free port)."),
    token_file: Path = typer.Option(
        None,
        envvar="GRAFT_TOKEN_FILE",
        help="File holding the API token; or set GRAFT_API_TOKEN. Without either: no auth.",
    ),
    max_batch_size: int = typer.Option(
        32, envvar="GRAFT_MAX_BATCH_SIZE", help="Windows per model batch at most."
    ),
    max_wait_ms: float = typer.Option(
        0.0, envvar="GRAFT_MAX_WAIT_MS", help="How long a batch's first window waits for more."
    ),
    max_batch_tokens: int = typer.Option(
        16384, envvar="GRAFT_MAX_BATCH_TOKENS", help="Padded tokens per batch at most."
    ),
    max_queue: int = typer.Option(
        2048, envvar="GRAFT_MAX_QUEUE", help="Windows queued per model; beyond: 503."
    ),
    max_inputs: int = typer.Option(64, envvar="GRAFT_MAX_INPUTS", help="Texts per request."),
    max_input_chars: int = typer.Option(
        100_000, envvar="GRAFT_MAX_INPUT_CHARS", help="Characters per text."
    ),
    max_body_bytes: int = typer.Option(
        8 << 20, envvar="GRAFT_MAX_BODY_BYTES", help="Request body size in bytes."
    ),
    request_timeout: float = typer.Option(
        60.0, envvar="GRAFT_REQUEST_TIMEOUT", help="Seconds per request before 504."
    ),
    window: int = typer.Option(
        None, envvar="GRAFT_WINDOW", help="Tokens per window (default: the bundle's max_length)."
    ),
    stride: int = typer.Option(
        None, envvar="GRAFT_STRIDE", help="Tokens shared by consecutive windows (window // 4)."
    ),
    threads: int = typer.Option(
        None, envvar="GRAFT_THREADS", help="CPU threads for the model (all cores but one)."
    ),
    backend: str = typer.Option(
        "auto",
        envvar="GRAFT_BACKEND",
        help="auto (fastest in the bundle) | torch | onnx | onnx-int8.",
    ),
    log_level: str = typer.Option("info", envvar="GRAFT_LOG_LEVEL", help="debug|info|warning."),
    access_log: bool = typer.Option(
        False, "--access-log/--no-access-log", envvar="GRAFT_ACCESS_LOG", help="Log requests."
    ),
):
    """Serve bundles over HTTP (dynamic batching, long-text windows, auth, limits, metrics)."""
    from graftwork import serve as serving
    from graftwork.runs.finetune import quiet_libraries

    quiet_libraries()
    config = serving.make_config(
        host=host,
        port=port,
        token_file=token_file,
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        max_batch_tokens=max_batch_tokens,
        max_queue=max_queue,
        max_inputs=max_inputs,
        max_input_chars=max_input_chars,
        max_body_bytes=max_body_bytes,
        request_timeout=request_timeout,
        window=window,
        stride=stride,
        threads=threads,
        backend=backend,
        log_level=log_level,
        access_log=access_log,
    )
    token = config.api_token()
    models = serving.load_models(bundles, config)
    server_app = serving.create_app(models, config, token=token)
    sock = serving.listen(config.host, config.port)
    hint = None if token is None else "$GRAFT_API_TOKEN"
    if token is not None and token_file is not None:
        hint = f"$(cat {token_file})"
    for line in serving.banner(models, sock, hint):
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    sys.stdout.flush()
    serving.run(server_app, sock, config)


def main() -> None:
    try:
        app()
    except GraftError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
