"""A sweep driver that loses a Ray Train worker: `tucker-sweep launch` through the public API,
with ExitOnceOnRank given to every trial. Exit status and summary line as the CLI's.

    python -m support.launch_with_worker_faults CONFIG --rank 1 --epoch 1 --marker PATH

Ray's workers import the callback from this package: the tests folder must be on their
PYTHONPATH (support.cli.cli_env puts it there).
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

from support.worker_faults import ExitOnceOnRank
from sweep.errors import SweepInterrupted
from sweep.tuning.launch import launch_sweep
from sweep.tuning.launch_config import sweep_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config", type=Path)
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--epoch", type=int, required=True)
    parser.add_argument("--marker", required=True)
    args = parser.parse_args(argv)
    settings = sweep_config(args.config, None, None, {})
    try:
        outcome = launch_sweep(
            settings,
            progress=partial(print, flush=True),
            trial_callbacks=[partial(ExitOnceOnRank, args.rank, args.epoch, args.marker)],
            show_progress=lambda progress: print(progress.line(), flush=True),
        )
    except SweepInterrupted as interrupted:
        print(f"interrupted: {interrupted}", file=sys.stderr)
        return interrupted.exit_status
    print(f"sweep {outcome.name}: {outcome.num_trials} trials ({outcome.num_errors} failed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
