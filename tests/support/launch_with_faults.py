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
import time
from functools import partial
from pathlib import Path

import ray

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
    if faults.shutdown_delay_seconds:
        real_shutdown = ray.shutdown

        def paced_shutdown(*shutdown_args: object, **kwargs: object) -> None:
            time.sleep(faults.shutdown_delay_seconds)
            real_shutdown(*shutdown_args, **kwargs)

        ray.shutdown = paced_shutdown  # the real shutdown, later: the launcher calls ray.shutdown
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
    if outcome.stopped_by is not None:  # as the CLI: a signal while Ray shut down
        print(f"stopped while Ray shut down: {outcome.stopped_by}", file=sys.stderr)
        return 128 + outcome.stopped_by
    return 0


if __name__ == "__main__":
    sys.exit(main())
