"""Shared test configuration."""

import torch
from hypothesis import settings

# Layer property tests run real convolutions; no per-example deadline (CI machines are slow
# and shared), a bounded number of examples so the suite stays within its time budget.
settings.register_profile("tucker", deadline=None, max_examples=60, print_blob=True)
settings.load_profile("tucker")

# One intra-op thread in the test process: on a 2-core machine, torch's spinning OpenMP
# workers and the Ray trials that tests start in other processes slow each other down by
# 10x or more (a 3-epoch digits fit varied from 1 s to 31 s).
torch.set_num_threads(1)


# The longest files (minutes each, serially), started first: under `--dist loadfile` a file
# runs whole on one process, and one of these left for last would run alone at the end.
# Only an order: a file missing here runs after them, as before.
LONGEST_FILES_FIRST = (
    "test_stop_signals.py",
    "test_multinode.py",
    "test_sweep.py",
    "test_multi_worker.py",
    "test_export.py",
    "test_report.py",
    "test_image_folder.py",
    "test_own_model.py",
)


def pytest_collection_modifyitems(config, items):
    first = {name: position for position, name in enumerate(LONGEST_FILES_FIRST)}
    # Stable: the order within a file is kept.
    items.sort(key=lambda item: first.get(item.path.name, len(first)))
