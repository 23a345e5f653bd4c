"""A sweep driver for resilience tests: `tucker-sweep launch` through the public API, with the
faults of a FaultPlan given to every trial. Exit status and summary line as the CLI's.

    python -m support.launch_with_faults CONFIG --faults '{"transient": [0]}'
    python -m support.launch_with_faults --resume NAME --storage-path DIR --faults '{...}'

Ray's workers import the fault callbacks from this package: the tests folder must be on their
PYTHONPATH (support.cli.test_env and NamespaceCluster.env put it there).
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

from support.faults import FaultPlan
from sweep.errors import SweepInterrupted
from sweep.tuning.launch import launch_sweep
from sweep.tuning.launch_config import sweep_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config", nargs="?", type=Path)
    parser.add_argument("--faults", default="{}", help="FaultPlan fields as JSON")
    parser.add_argument("--resume")
    parser.add_argument("--storage-path")
    parser.add_argument("--address")
    args = parser.parse_args(argv)
    settings = sweep_config(
        args.config, args.resume, args.storage_path, {"cluster.address": args.address}
    )
    faults = FaultPlan(**json.loads(args.faults))
    try:
        outcome = launch_sweep(
            settings,
            resume=args.resume is not None,
            progress=partial(print, flush=True),
            trial_callbacks=faults.trial_callbacks(),
            # The CLI's plain-line live view, which tests read to time their signals.
            show_progress=lambda progress: print(progress.line(), flush=True),
        )
    except SweepInterrupted as interrupted:
        print(f"interrupted: {interrupted}", file=sys.stderr)
        return interrupted.exit_status
    print(f"sweep {outcome.name}: {outcome.num_trials} trials ({outcome.num_errors} failed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
