"""`tucker-sweep`: the command line, the only module that parses arguments or prints for people.

Every user error (bad flag, bad config, bad data, unreachable store) becomes one line on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from sweep.errors import TuckerSweepError, user_errors

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
    except typer.Abort:
        print("tucker-sweep: interrupted", file=sys.stderr)
        sys.exit(130)
    except TuckerSweepError as error:
        _fail(str(error).replace("\n", " "))
    except user_errors() as error:  # evaluated only when an exception gets here
        _fail(str(error).replace("\n", " "))
    sys.exit(exit_code if isinstance(exit_code, int) else 0)
