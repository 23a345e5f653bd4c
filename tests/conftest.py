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
