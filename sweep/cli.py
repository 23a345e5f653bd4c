"""`tucker-sweep`: the command line, the only module that parses arguments or prints for people.

Every user error (bad flag, bad config, bad data, unreachable store) becomes one line on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from sweep.errors import ConfigError, SweepInterrupted, TuckerSweepError, user_errors

app = typer.Typer(
    name="tucker-sweep",
    help="Find good Tucker ranks for the convolutions of a CNN.",
    add_completion=False,
    pretty_exceptions_enable=False,
)
# soft_wrap: a summary line stays one line when piped (rich would wrap it at 80 columns).
console = Console(soft_wrap=True)


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
    }
    settings = build_config(TrainConfig, config, overrides)
    from sweep.single_run import train_once  # Lightning: imported once the input is known good

    result = train_once(settings, progress_bar=progress)
    console.print(
        f"val_acc {result.val_acc:.4f} | params {result.params:,} "
        f"({result.compression:.2f}x compression) | {result.seconds:.1f} s | "
        f"MLflow run {result.run_id} in {result.tracking_uri}"
    )


def _sweep_config(config: Path | None, resume: str | None, storage_path: str | None,
                  overrides: dict[str, Any]) -> Any:  # fmt: skip
    """The sweep's config: from CONFIG (or the defaults: the digits sweep), or for --resume
    the config stored with the sweep; flags override either."""
    from sweep.config import SweepConfig, build_config
    from sweep.storage import SweepStore

    if resume is None:
        return build_config(SweepConfig, config, overrides)
    if config is not None:
        raise ConfigError("--resume continues a sweep with its stored config: drop CONFIG")
    store = SweepStore(storage_path or SweepConfig().cluster.storage_path, resume)
    if not store.exists("config.yaml"):
        raise ConfigError(f"no sweep named {resume!r} in {store.storage_path} to resume")
    stored = Path(tempfile.mkdtemp(prefix="tucker-sweep-")) / "config.yaml"
    stored.write_text(store.read_text("config.yaml"))
    return build_config(SweepConfig, stored, {**overrides, "name": resume})


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
) -> None:
    """Run a sweep over Tucker ranks with Ray Tune (ASHA), every trial recorded in MLflow."""
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
    settings = _sweep_config(config, resume, storage_path, overrides)
    from sweep.launch import launch_sweep  # Ray and Lightning: once the input is known good

    outcome = launch_sweep(settings, resume=resume is not None, progress=console.print)
    best = "none" if outcome.best_val_acc is None else f"{outcome.best_val_acc:.4f}"
    console.print(
        f"sweep {outcome.name}: {outcome.num_trials} trials ({outcome.num_errors} failed), "
        f"best val_acc {best}, {outcome.seconds:.0f} s | MLflow run {outcome.parent_run_id} in "
        f"{outcome.tracking_uri} | Ray results in {outcome.experiment_path}"
    )


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
    settings = build_config(SweepConfig, config, overrides)
    from sweep.seeding import seed_command

    outcome = seed_command(settings, out, checkpoint)
    table = Table(
        title=f"candidate ranks (N', C', D') per layer, method {settings.decomposition.method}"
    )
    table.add_column("layer")
    table.add_column("shape")
    table.add_column("candidates: ranks  compression  HOOI error")
    for name, layer in outcome.artifacts.seed.layers.items():
        cells = [
            f"{tuple(c.ranks)}  {c.compression:.1f}x  {c.hooi_error:.3f}" for c in layer.candidates
        ]
        table.add_row(name, "x".join(map(str, layer.shape)), "\n".join(cells))
    console.print(table)
    console.print(
        f"baseline val_acc {outcome.baseline_val_acc:.4f} | rank space {outcome.seeded_space:,} "
        f"plans seeded vs {outcome.unseeded_space:,} unseeded | {outcome.artifacts.seed_path}, "
        f"{outcome.artifacts.plot_path} | MLflow run {outcome.run_id} in {outcome.tracking_uri}"
    )


def _fail(message: str, command_path: str = "tucker-sweep") -> None:
    # Plain print, not rich: rich would wrap a long message onto several lines.
    print(f"{command_path}: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script."""
    # Lightning 2.6 builds torch's deprecated LeafSpec on every step: noise users can't act on.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)`")
    args = sys.argv[1:] if argv is None else list(argv)
    command = typer.main.get_command(app)
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
        print(f"tucker-sweep: {interrupted}", file=sys.stderr)
        sys.exit(130)
    except TuckerSweepError as error:
        _fail(str(error).replace("\n", " "))
    except user_errors() as error:  # evaluated only when an exception gets here
        _fail(str(error).replace("\n", " "))
    sys.exit(exit_code if isinstance(exit_code, int) else 0)
