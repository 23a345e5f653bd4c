"""Shared test configuration."""

from hypothesis import settings

# Layer property tests run real convolutions; no per-example deadline (CI machines are slow
# and shared), a bounded number of examples so the suite stays within its time budget.
settings.register_profile("tucker", deadline=None, max_examples=60, print_blob=True)
settings.load_profile("tucker")
