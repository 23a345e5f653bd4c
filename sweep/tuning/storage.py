"""The sweep's own files now live in sweep.sweep_files.store (readable without Ray Tune); the
tuner's modules keep importing them from here."""

from sweep.sweep_files.store import SWEEP_FOLDER, SweepStore, absolute_storage_path

__all__ = ["SWEEP_FOLDER", "SweepStore", "absolute_storage_path"]
