"""A sweep's files on Ray's storage (`cluster.storage_path`: a local folder, NFS, s3://, gs://),
read and written without Ray Tune and without unpickling anything, so that the tools (export,
front evaluation) can read a sweep from storage that others may write.

    store.py          the sweep's own files beside Tune's experiment (config, seed, baseline)
    trial_files.py    a trial's results (result.json) and the checkpoints Tune kept on disk
    lock.py           one driver per sweep name and storage path
    trust.py          the check before Tune's restore, which unpickles what the folder holds
"""
