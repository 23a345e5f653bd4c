"""The Ray Tune Tuner of a sweep: new, or restored from the sweep's storage to resume it."""

from __future__ import annotations

from typing import Any

from ray import tune

from sweep.config import SweepConfig
from sweep.tuning.multi_worker_trial import run_multi_worker_trial
from sweep.tuning.storage import SweepStore
from sweep.tuning.train_workers import concurrent_trials, is_multi_worker
from sweep.tuning.trainable import TrialSetup, run_trial
from sweep.tuning.tune_space import scheduler, searcher, trial_resources


def make_tuner(
    config: SweepConfig,
    store: SweepStore,
    setup: TrialSetup,
    params: dict[str, Any],
    callbacks: list[tune.Callback],
    verbose: bool = False,
) -> tune.Tuner:
    """A Tuner for the sweep; if Tune saved an experiment at the sweep's path, that experiment
    restored (errored trials retried), with `setup` for its trials."""
    multi_worker = is_multi_worker(config)
    trial = run_multi_worker_trial if multi_worker else run_trial
    trainable = tune.with_resources(
        tune.with_parameters(trial, setup=setup), trial_resources(config)
    )
    if tune.Tuner.can_restore(store.experiment_path):
        return tune.Tuner.restore(store.experiment_path, trainable=trainable, resume_errored=True)
    return tune.Tuner(
        trainable,
        param_space=params,
        # No metric here: the searcher optimises val_acc, ASHA watches scheduler.metric.
        tune_config=tune.TuneConfig(
            num_samples=config.search.num_samples,
            # search.max_concurrent_trials; for multi-worker trials by default as many as the
            # cluster holds workers for (Tune sees only their drivers' resources).
            search_alg=searcher(config, concurrent_trials(config)),
            scheduler=scheduler(config),
            # A new worker process per trial costs seconds of imports (torch, Lightning);
            # reused, it also keeps the layers' autotuned path choices. Every trial builds
            # its data, model and Trainer afresh, so nothing leaks between trials. A
            # multi-worker trial's actor ends with it: its cleanup releases the Train run's
            # workers (train_in_trial.py), which a reset would skip.
            reuse_actors=not multi_worker,
        ),
        run_config=tune.RunConfig(
            name=config.name,
            storage_path=store.storage_path,
            callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=config.training.max_failures),
            # Per trial, the checkpoint with the best val_acc (what export takes) and the
            # latest one (Tune never deletes it; a retried or resumed trial starts there).
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=1,
                checkpoint_score_attribute="val_acc",
                checkpoint_score_order="max",
            ),
            # Tune's status tables and trial config tables only on request: the CLI shows a
            # one-line live view instead (sweep/tuning/progress.py).
            verbose=1 if verbose else 0,
        ),
    )
