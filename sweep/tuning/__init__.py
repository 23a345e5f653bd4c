"""Running a sweep on Ray Tune: the launcher, the trainable, the Tune form of the search and the
Ray cluster. The sweep's files on storage are read and written by sweep.sweep_files.

    launch.py          launch or resume a sweep (`tucker-sweep launch`), with the extension
                       point for extra per-trial Lightning callbacks; launch_config.py its config
    baseline_step.py   the dense baseline (a Ray task) and the seed, or their stored copies
    trainable.py       one trial = one Lightning fit; epoch_report.py reports epochs to Tune
    multi_worker_trial.py  resources.workers > 1: a trial = a Ray Train DDP run of that fit;
                       train_in_trial.py relays its reports and checkpoints to Tune,
                       train_channel.py and global_losses.py report from each rank,
                       ray_ddp.py is Lightning on Ray Train's workers, train_run.py the
                       TorchTrainer, worker_call.py the baseline on workers, train_workers.py
                       what such runs ask of Ray
    tune_space.py      param_space, searcher, ASHA, resources; tuner.py the Tuner
    trial_describer.py a trial's MLflow params and cost, for the tracking callback
    cluster.py         local Ray on loopback, or a cluster; ray_internals.py the one private use
    storage.py         sweep.sweep_files.store under its old name
    results.py         finished trials, from the experiment state (launch only: it unpickles)
"""
