"""The MLflow side of a sweep: its layout, written from the driver and read back.

    experiment
      sweep parent run            tags tucker_sweep.kind=sweep, tucker_sweep.sweep=<name>
        artifacts: config.yaml, seed.json, spectra.png, report/
        baseline child run        the dense model: per-epoch metrics, cost figures
        trial child runs          one per Tune trial (tag tucker_sweep.trial_id), never two

    names.py        tags, metric names, artifact paths
    client.py       a checked client (one-line errors, fast failure)
    sqlite_store.py a SQLite store checked before MLflow opens it (never created or migrated
                    by a reader, never written when it is not a whole MLflow store)
    redact.py       URIs without their credentials, for every file and printed line
    layout.py       the parent and baseline runs; closing runs a stopped sweep left open
    convergence.py  the final figures of a run (best accuracy, epochs and seconds to target)
    outbox.py       trial-run writes that survive a tracking-server outage
    tune_callback.py  the Ray Tune callback that writes the trial runs (the only Ray import)
    sweep_runs.py   reading a sweep back (reports, export)

Nothing here but tune_callback.py imports Ray, so reading a sweep never loads it (an
import-linter contract in pyproject.toml keeps it so).
"""
