"""`tucker-sweep`: the command line, the only module that parses arguments or prints for people.

Every user error (bad flag, bad config, bad data, unreachable store) becomes one line on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from sweep.errors import (
    ConfigError,
    SweepInterrupted,
    TuckerSweepError,
    shorten,
    user_errors,
    user_message,
)
from sweep.live_view import LiveView
from sweep.tracking.redact import redact

app = typer.Typer(
    name="tucker-sweep",
    help="Find good Tucker ranks for the convolutions of a CNN.",
    add_completion=False,
    pretty_exceptions_enable=False,
)


class _RedactingConsole(Console):
    """rich's Console, masking the credentials of every URI in the text it prints: a tracking
    URI may carry a password (sweep.tracking.redact), and no printed line shows it."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        super().print(*(redact(o) if isinstance(o, str) else o for o in objects), **kwargs)


# soft_wrap: a summary line stays one line when piped (rich would wrap it at 80 columns).
console = _RedactingConsole(soft_wrap=True)


# The flag that sets each config key: a bad value names the flag, not the config file.
FLAGS = {
    "name": "--name",
    "data.name": "--data",
    "data.options.path": "--data-path",
    "model.name": "--model",
    "ranks": "--ranks",
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "optimizer.lr": "--lr",
    "optimizer.name": "--optimizer",
    "seed": "--seed",
    "accelerator": "--accelerator",
    "precision": "--precision",
    "compile": "--compile",
    "channels_last": "--channels-last/--no-channels-last",
    "tracking.uri": "--tracking-uri",
    "tracking.experiment": "--experiment",
    "cluster.address": "--address",
    "cluster.storage_path": "--storage-path",
    "search.num_samples": "--num-samples",
    "search.max_concurrent_trials": "--max-concurrent",
    "search.algorithm": "--algorithm",
    "scheduler.name": "--scheduler",
    "decomposition.seed": "--seed/--no-seed",
    "decomposition.seed_epochs": "--epochs",
    "decomposition.thresholds": "--thresholds",
    "decomposition.method": "--method",
}


def _source(key: str, flag_value: object, config: Path | None) -> str:
    """Who set a config key, for a message: its flag when given, else the config file's key."""
    if flag_value is not None:
        return FLAGS[key]
    return f"{config}: {key}" if config is not None else key


def _check_tracking(settings: Any, flag_value: str | None, config: Path | None) -> None:
    """A tracking URI MLflow cannot open as a store fails here, naming where it came from."""
    from sweep.tracking.client import check_tracking_uri

    # MLflow's INFO lines (creating a new store's tables) are for its own users and came before
    # a one-line error; importing mlflow sets its level, so it is set after the import.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    if flag_value is None and settings.tracking.uri is None:
        label = "$MLFLOW_TRACKING_URI"
    else:
        label = _source("tracking.uri", flag_value, config)
    check_tracking_uri(settings.tracking.resolved_uri(), label)


def _check_out(out: Path | None) -> None:
    """An --out that is a file or cannot be created fails before any work is done."""
    from sweep.folders import check_output_folder

    if out is not None:
        check_output_folder(out, "--out")


@app.callback()
def _commands() -> None:
    """Find good Tucker ranks for the convolutions of a CNN."""


def _parse_ranks(text: str | None) -> Any:
    """'0.25' -> 0.25, 'full' -> 'full', '16,16,3' -> (16, 16, 3); anything else is left to
    config validation, which names the key."""
    if text is None:
        return None
    text = text.strip()
    if "," in text:
        parts = [part.strip() for part in text.split(",")]
        try:
            return tuple(int(part) for part in parts)
        except ValueError:
            return text
    try:
        return float(text)
    except ValueError:
        return text


@app.command()
def train(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML file with the run's settings.")
    ] = None,
    data: Annotated[str | None, typer.Option(help="digits, mnist, fashion_mnist, ...")] = None,
    data_path: Annotated[Path | None, typer.Option(help="File for --data npz.")] = None,
    model: Annotated[str | None, typer.Option(help="vgg_small, resnet8, resnet20, ...")] = None,
    ranks: Annotated[
        str | None,
        typer.Option(help="Tucker ranks for every conv but the first: 0.25, full or N,C,D."),
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1)] = None,
    batch_size: Annotated[int | None, typer.Option(min=1)] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    optimizer: Annotated[str | None, typer.Option(help="sgd or adamw.")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option(help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or ./mlflow.db)."),
    ] = None,
    experiment: Annotated[str | None, typer.Option(help="MLflow experiment.")] = None,
    accelerator: Annotated[str | None, typer.Option(help="auto, cpu or gpu.")] = None,
    precision: Annotated[
        str | None, typer.Option(help="32-true (default), bf16-mixed or 16-mixed (GPU).")
    ] = None,
    compile_mode: Annotated[
        str | None,
        typer.Option(
            "--compile", help="torch.compile mode: off (default), default, reduce-overhead."
        ),
    ] = None,
    channels_last: Annotated[
        bool | None, typer.Option(help="Channels-last memory format (GPU tensor cores).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
) -> None:
    """Train one dense or Tucker CNN and record it in MLflow."""
    from sweep.config import TrainConfig, build_config

    overrides = {
        "data.name": data,
        "data.options.path": str(data_path) if data_path else None,
        "model.name": model,
        "ranks": _parse_ranks(ranks),
        "epochs": epochs,
        "batch_size": batch_size,
        "optimizer.lr": lr,
        "optimizer.name": optimizer,
        "seed": seed,
        "tracking.uri": tracking_uri,
        "tracking.experiment": experiment,
        "accelerator": accelerator,
        "precision": precision,
        "compile": compile_mode,
        "channels_last": channels_last,
    }
    settings = build_config(TrainConfig, config, overrides, flags=FLAGS)
    _check_tracking(settings, tracking_uri, config)
    from sweep.train import check_accelerator, check_execution, train_once  # Lightning: now

    check_accelerator(settings.accelerator, _source("accelerator", accelerator, config))
    check_execution(settings)
    result = train_once(settings, progress_bar=progress)
    console.print(
        f"val_acc {result.val_acc:.4f} | params {result.params:,} "
        f"({result.compression:.2f}x compression) | {result.seconds:.1f} s | "
        f"MLflow run {result.run_id} in {result.tracking_uri}"
    )


@app.command()
def launch(
    config: Annotated[
        Path | None, typer.Argument(help="Sweep YAML (default: the bundled digits sweep).")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Sweep name (Ray experiment, MLflow run).")
    ] = None,
    resume: Annotated[
        str | None, typer.Option(help="Continue the interrupted sweep of this name.")
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default $RAY_ADDRESS or local).")
    ] = None,
    storage_path: Annotated[
        str | None, typer.Option(help="Where Ray keeps trials and checkpoints.")
    ] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI.")] = None,
    experiment: Annotated[str | None, typer.Option(help="MLflow experiment.")] = None,
    num_samples: Annotated[int | None, typer.Option(min=1, help="Number of trials.")] = None,
    max_concurrent: Annotated[int | None, typer.Option(min=1)] = None,
    algorithm: Annotated[str | None, typer.Option(help="random, grid or optuna.")] = None,
    scheduler: Annotated[str | None, typer.Option(help="asha or none.")] = None,
    seed: Annotated[
        bool | None, typer.Option("--seed/--no-seed", help="Seed ranks from a dense baseline.")
    ] = None,
    verbose: Annotated[
        bool, typer.Option(help="Ray's and Tune's own logs and status tables (no live view).")
    ] = False,
) -> None:
    """Run a sweep over Tucker ranks with Ray Tune (ASHA), every trial recorded in MLflow.

    SIGINT (Ctrl-C) or SIGTERM stops it cleanly: trials stop at their last checkpoint, no
    MLflow run is left RUNNING, the partial report is written if there is anything to report,
    and the `--resume` command is printed; the exit status is 130 or 143. A second signal stops
    at once."""
    overrides = {
        "name": name,
        "cluster.address": address,
        "cluster.storage_path": storage_path,
        "tracking.uri": tracking_uri,
        "tracking.experiment": experiment,
        "search.num_samples": num_samples,
        "search.max_concurrent_trials": max_concurrent,
        "search.algorithm": algorithm,
        "scheduler.name": scheduler,
        "decomposition.seed": seed,
    }
    from sweep.tuning.launch_config import sweep_config

    settings = sweep_config(config, resume, storage_path, overrides, flags=FLAGS)
    _check_tracking(settings, tracking_uri, config)
    from sweep.tuning.launch import launch_sweep  # Ray and Lightning: once the input is good

    if verbose:  # MLflow's INFO lines too (_check_tracking holds them back otherwise)
        logging.getLogger("mlflow").setLevel(logging.INFO)
    with LiveView(console) as view:
        outcome = launch_sweep(
            settings,
            resume=resume is not None,
            progress=view.message,
            show_progress=None if verbose else view.show,
            verbose=verbose,
        )
    best = "none" if outcome.best_val_acc is None else f"{outcome.best_val_acc:.4f}"
    console.print(
        f"sweep {outcome.name}: {outcome.num_trials} trials ({outcome.num_errors} failed), "
        f"best val_acc {best}, {outcome.seconds:.0f} s | MLflow run {outcome.parent_run_id} in "
        f"{outcome.tracking_uri} | Ray results in {outcome.experiment_path}"
    )
    if outcome.stopped_by is not None:
        from sweep.stop_signals import exit_status, signal_name

        print(
            f"tucker-sweep: {signal_name(outcome.stopped_by)} while Ray shut down; the sweep "
            "had finished and is fully recorded",
            file=sys.stderr,
        )
        sys.exit(exit_status(outcome.stopped_by))


def _parse_thresholds(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        return text  # config validation names the key and the value


@app.command()
def seed(
    config: Annotated[
        Path | None, typer.Argument(help="Sweep YAML (default: the bundled digits sweep).")
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="A trained dense TuckerClassifier checkpoint instead of training."),
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Baseline epochs.")] = None,
    thresholds: Annotated[
        str | None, typer.Option(help="Energy thresholds, e.g. 0.8,0.9,0.95,0.99.")
    ] = None,
    method: Annotated[str | None, typer.Option(help="energy or vbmf.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for seed.json and spectra.png.")] = Path("seed"),
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI.")] = None,
    experiment: Annotated[str | None, typer.Option(help="MLflow experiment.")] = None,
) -> None:
    """Train a dense baseline briefly (or load one) and derive candidate ranks per layer."""
    from sweep.config import SweepConfig, build_config

    overrides = {
        "decomposition.seed_epochs": epochs,
        "decomposition.thresholds": _parse_thresholds(thresholds),
        "decomposition.method": method,
        "tracking.uri": tracking_uri,
        "tracking.experiment": experiment,
    }
    settings = build_config(SweepConfig, config, overrides, flags=FLAGS)
    _check_tracking(settings, tracking_uri, config)
    _check_out(out)
    from sweep.seeding.seed import seed_command

    outcome = seed_command(settings, out, checkpoint)
    table = Table(
        title=f"candidate ranks (N', C', D') per layer, method {settings.decomposition.method}"
    )
    table.add_column("layer")
    table.add_column("shape")
    table.add_column("candidates: ranks  compression  error bound")
    for name, layer in outcome.artifacts.seed.layers.items():
        cells = [
            f"{tuple(c.ranks)}  {c.compression:.1f}x  {c.error_bound:.3f}" for c in layer.candidates
        ]
        table.add_row(name, "x".join(map(str, layer.shape)), "\n".join(cells))
    console.print(table)
    deploy = settings.deploy
    timed = ", ".join(
        f"b{batch} {ms:.1f} ms (median of {outcome.dense_latency.rounds[batch]})"
        for batch, ms in outcome.dense_latency.ms.items()
    )
    console.print(
        f"dense latency on {settings.deploy_device}, {deploy.threads} thread(s), {deploy.dtype}: "
        f"{timed}"
    )
    console.print(
        f"baseline val_acc {outcome.baseline_val_acc:.4f} | rank space {outcome.seeded_space:,} "
        f"plans seeded vs {outcome.unseeded_space:,} unseeded | {outcome.artifacts.seed_path}, "
        f"{outcome.artifacts.plot_path} | MLflow run {outcome.run_id} in {outcome.tracking_uri}"
    )


# ---- reports, the MLflow UI and export (sweep.report, sweep.ui, sweep.export) ---------------

_CONFIG_HELP = "A sweep YAML whose tracking (and cluster) settings to use."
_TRACKING_HELP = "MLflow tracking URI (default: the config's, $MLFLOW_TRACKING_URI or ./mlflow.db)."
_EXPERIMENT_HELP = "MLflow experiment (default: tucker-sweep)."
REPORT_FORMATS = ("md", "json", "html")
MINIMISE = ("params", "flops", "latency")

# The recommendation's criteria, the same options for `report` and `export`.
BudgetOption = Annotated[
    str | None, typer.Option(help="Parameter budget of the recommended plan, e.g. 50k.")
]
MinCompressionOption = Annotated[
    float, typer.Option(min=0.0, help="Minimum compression of the recommended plan.")
]
MaxDropOption = Annotated[
    float, typer.Option(min=0.0, help="Points of val acc the plan may lose against dense.")
]
MinimiseOption = Annotated[
    str,
    typer.Option(
        help="What the recommended plan has least of: params, flops, or latency (the "
        "highest measured speed-up at the first deploy batch size)."
    ),
]


def _criteria(budget: str | None, min_compression: float, max_drop: float, minimise: str) -> Any:
    """The report's Criteria from the options above (ConfigError for a bad one)."""
    if minimise not in MINIMISE:
        raise ConfigError(f"--minimise: one of {', '.join(MINIMISE)}, got {minimise!r}")
    max_params = _parse_count(budget, "--budget")
    from sweep.report.schema import Criteria

    return Criteria(
        max_params=max_params, min_compression=min_compression, max_drop=max_drop,
        minimise=minimise,  # type: ignore[arg-type]
    )  # fmt: skip


def _tracking_settings(config: Path | None, tracking_uri: str | None,
                       experiment: str | None) -> Any:  # fmt: skip
    """The sweep settings that say where runs are: --config, then flags on top."""
    from sweep.config import SweepConfig, build_config

    overrides = {"tracking.uri": tracking_uri, "tracking.experiment": experiment}
    settings = build_config(SweepConfig, config, overrides, flags=FLAGS)
    _check_tracking(settings, tracking_uri, config)
    return settings


def _parse_count(text: str | None, flag: str) -> int | None:
    """'50000', '50k', '1.5M' -> an integer count."""
    if text is None:
        return None
    cleaned = text.strip().replace(",", "").replace("_", "")
    scale = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}.get(cleaned[-1:].lower(), 1)
    number = cleaned[:-1] if scale > 1 else cleaned
    try:
        value = float(number) * scale
    except ValueError:
        raise ConfigError(f"{flag}: expected a number such as 50000 or 50k, got {text!r}") from None
    if not value >= 1:
        raise ConfigError(f"{flag}: must be at least 1, got {text!r}")
    return int(value)


@app.command()
def report(
    sweep: Annotated[
        str | None, typer.Argument(help="Sweep name (default: the latest sweep).")
    ] = None,
    output_format: Annotated[
        str, typer.Option("--format", "-f", help="What to print: md (rendered), json or html.")
    ] = "md",
    out: Annotated[
        Path | None, typer.Option(help="Folder for the report files (default reports/<sweep>).")
    ] = None,
    budget: BudgetOption = None,
    min_compression: MinCompressionOption = 1.0,
    max_drop: MaxDropOption = 0.5,
    minimise: MinimiseOption = "params",
    log: Annotated[
        bool, typer.Option("--log/--no-log", help="Also log the files on the sweep's MLflow run.")
    ] = True,
    config: Annotated[Path | None, typer.Option("--config", "-c", help=_CONFIG_HELP)] = None,
    tracking_uri: Annotated[str | None, typer.Option(help=_TRACKING_HELP)] = None,
    experiment: Annotated[str | None, typer.Option(help=_EXPERIMENT_HELP)] = None,
) -> None:
    """Best ranks of a sweep: trials, Pareto fronts, baseline, measured speed, convergence,
    ASHA's saving."""
    if output_format not in REPORT_FORMATS:
        raise ConfigError(f"--format: one of {', '.join(REPORT_FORMATS)}, got {output_format!r}")
    criteria = _criteria(budget, min_compression, max_drop, minimise)
    _check_out(out)
    settings = _tracking_settings(config, tracking_uri, experiment)
    from sweep.report.write import write_sweep_report

    outcome = write_sweep_report(
        settings.tracking.resolved_uri(),
        sweep,
        settings.tracking.experiment,
        out,
        criteria=criteria,
        log_artifacts=log,
    )
    if output_format == "json":
        sys.stdout.write(outcome.files["json"].read_text())
        return
    if output_format == "md":
        from sweep.report.terminal import terminal_view

        for part in terminal_view(outcome.report, outcome.out_dir):
            console.print(part, soft_wrap=False)  # wrap, not crop
    where = f" | logged on MLflow run {outcome.report.sweep.run_id} under report/" if log else ""
    partial = " (partial: the sweep has not finished)" if outcome.partial else ""
    console.print(
        f"report of sweep {outcome.report.sweep.name}{partial}: "
        f"{outcome.files['html'].resolve().as_uri()} and report.md, report.json in "
        f"{outcome.out_dir}{where}"
    )


@app.command()
def ui(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port on 127.0.0.1.")] = 5000,
    config: Annotated[Path | None, typer.Option("--config", "-c", help=_CONFIG_HELP)] = None,
    tracking_uri: Annotated[str | None, typer.Option(help=_TRACKING_HELP)] = None,
    experiment: Annotated[str | None, typer.Option(help=_EXPERIMENT_HELP)] = None,
    sweep: Annotated[
        str | None, typer.Option(help="Open on this sweep's runs (default: the latest sweep).")
    ] = None,
) -> None:
    """Browse the sweeps in the MLflow UI on 127.0.0.1 (Ctrl-C stops it)."""
    settings = _tracking_settings(config, tracking_uri, experiment)
    from sweep.ui import serve_ui

    def announce(line: str) -> None:
        console.print(line)
        sys.stdout.flush()  # the URL must reach a pipe at once, not when the server stops

    serve_ui(
        settings.tracking.resolved_uri(), settings.tracking.experiment, port, announce,
        sweep=sweep,
    )  # fmt: skip
    console.print("MLflow UI stopped")


@app.command()
def export(
    sweep: Annotated[
        str | None, typer.Argument(help="Sweep name (default: the latest sweep).")
    ] = None,
    trial: Annotated[
        str | None,
        typer.Option(
            help="Trial id, trial name, MLflow run id or index (default: the report's "
            "recommended trial)."
        ),
    ] = None,
    max_drop: MaxDropOption = 0.5,
    minimise: MinimiseOption = "params",
    budget: BudgetOption = None,
    min_compression: MinCompressionOption = 1.0,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default exports/<sweep>/<trial>).")
    ] = None,
    storage_path: Annotated[
        str | None, typer.Option(help="Where the sweep's Ray results are (default: its config's).")
    ] = None,
    model_name: Annotated[
        str | None, typer.Option(help="Registered model name (default tucker-<sweep>).")
    ] = None,
    register: Annotated[
        bool, typer.Option("--register/--no-register", help="Register in the Model Registry.")
    ] = True,
    config: Annotated[Path | None, typer.Option("--config", "-c", help=_CONFIG_HELP)] = None,
    tracking_uri: Annotated[str | None, typer.Option(help=_TRACKING_HELP)] = None,
    experiment: Annotated[str | None, typer.Option(help=_EXPERIMENT_HELP)] = None,
) -> None:
    """Export the recommended (or a chosen) trial's model: checkpoint, state dict, and its
    fastest inference form as TorchScript and ONNX; verify it, time it, register it."""
    criteria = _criteria(budget, min_compression, max_drop, minimise)
    _check_out(out)
    settings = _tracking_settings(config, tracking_uri, experiment)
    if storage_path is None and config is not None:
        storage_path = settings.cluster.storage_path
    if register:  # a read-only store is refused before the export's minutes of work
        from sweep.tracking.sqlite_store import check_sqlite_store

        check_sqlite_store(
            settings.tracking.resolved_uri(), create=False, writes=True,
            read_only_hint="--no-register exports the model without registering it",
        )  # fmt: skip
    from sweep.export import ExportCheckError, export_trial  # torch, Lightning

    try:
        outcome = export_trial(
            settings.tracking.resolved_uri(),
            sweep,
            settings.tracking.experiment,
            trial,
            out,
            storage_path=storage_path,
            model_name=model_name,
            register=register,
            criteria=criteria,
        )
    except ExportCheckError as failed:  # a failed check, not a usage error: status 1
        print(f"tucker-sweep export: check failed: {redact(str(failed))}", file=sys.stderr)
        sys.exit(1)
    for note in outcome.notes:
        console.print(f"note: {note}")
    registered = (
        f" | registered as {outcome.registered_model} version {outcome.model_version}"
        if outcome.registered_model
        else ""
    )
    console.print(
        f"exported {outcome.trial_name} of sweep {outcome.sweep} (epoch {outcome.epoch}) to "
        f"{outcome.out_dir}: val acc {outcome.onnx_val_acc:.4f} (ONNX Runtime) = "
        f"{outcome.torchscript_val_acc:.4f} (TorchScript) = {outcome.checkpoint_val_acc:.4f} "
        f"(checkpoint) = {outcome.logged_val_acc:.4f} (logged){registered}"
    )
    latency = outcome.latency
    where = f"CPU {latency.device_name}, {latency.threads} thread{'s' * (latency.threads != 1)}"
    for batch, speedups in outcome.speedups.items():
        console.print(f"batch {batch}: {_speed_line(speedups)} ({where})")


def _ratio(value: float) -> str:
    text = f"{value:.1f}"
    return f"{value:.2f}x" if text == "1.0" else f"{text}x"  # 0.97 must not read as 1.0


def _speed_line(speedups: dict[str, float]) -> str:
    """'2.1x faster than dense (PyTorch), 2.3x (ONNX Runtime)'; 'the dense speed' once any is
    below 1, so that a slower runtime never reads as faster."""
    from sweep.export.latency import RUNTIMES

    named = [(_ratio(ratio), RUNTIMES.get(runtime, runtime)) for runtime, ratio in speedups.items()]
    head = "faster than dense" if min(speedups.values()) >= 1 else "the dense speed"
    first, *rest = named
    return ", ".join([f"{first[0]} {head} ({first[1]})", *(f"{r} ({n})" for r, n in rest)])


def _fail(message: str, command_path: str = "tucker-sweep") -> None:
    # Plain print, not rich: rich would wrap a long message onto several lines. Cut to a line
    # however long what it echoes (sweep.errors.LINE_LIMIT per echoed part).
    _held_warnings.clear()  # about input that is refused: the error says what to fix
    print(f"{command_path}: error: {shorten(redact(message), 2000)}", file=sys.stderr)
    sys.exit(2)


_show_other_warning = warnings.showwarning
# Libraries' warnings (torch's, Lightning's) wait for the command's end, and are dropped when it
# refuses its input: torch's note on an unusual pickle protocol came before "not a PyTorch
# weights file", and an empty layer's warning before the error about its width.
_held_warnings: list[tuple[Any, ...]] = []


def _release_held_warnings() -> None:
    while _held_warnings:
        _show_other_warning(*_held_warnings.pop(0))


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:  # fmt: skip
    """The project's own warnings (lightning_modules', sweep's) are written for people: one
    line, like the errors, without Python's file and source line."""
    if category.__module__.split(".")[0] in ("lightning_modules", "sweep"):
        print(f"tucker-sweep: warning: {redact(str(message))}", file=sys.stderr)
        return
    _held_warnings.append((redact(str(message)), category, filename, lineno, file, line))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script."""
    # Lightning 2.6 builds torch's deprecated LeafSpec on every step: noise users can't act on.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)`")
    warnings.showwarning = _show_warning
    # MLflow prints "View run ... at <tracking URI>" for every run a server ends: its own
    # links, with the URI's credentials; the CLI says where runs are itself.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    args = sys.argv[1:] if argv is None else list(argv)
    command = typer.main.get_command(app)
    _held_warnings.clear()
    try:
        _run(command, args)
    finally:
        _release_held_warnings()


def _run(command: Any, args: list[str]) -> None:
    try:
        # standalone_mode=False hands usage errors to us, so they become one line instead of
        # click's usage block.
        exit_code = command.main(
            args=args or ["--help"], prog_name="tucker-sweep", standalone_mode=False
        )
    except typer.TyperException as error:  # typer's (vendored click's) usage errors
        context = getattr(error, "ctx", None)
        path = context.command_path if context is not None else "tucker-sweep"
        _fail(error.format_message().replace("\n", " "), path)
    except (typer.Abort, KeyboardInterrupt):
        print("tucker-sweep: interrupted", file=sys.stderr)
        sys.exit(130)
    except SweepInterrupted as interrupted:
        print(f"tucker-sweep: {redact(str(interrupted))}", file=sys.stderr)
        sys.exit(interrupted.exit_status)
    except TuckerSweepError as error:
        _fail(user_message(error).replace("\n", " "))
    except user_errors() as error:  # evaluated only when an exception gets here
        _fail(user_message(error).replace("\n", " "))
    sys.exit(exit_code if isinstance(exit_code, int) else 0)
