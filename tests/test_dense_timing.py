"""The dense model's latency at the deploy batch sizes: as many timed rounds as fit in the time
set for it, never fewer than the floor (sweep.seeding.deployment)."""

import pytest

from lightning_modules.data import DataShape
from lightning_modules.inference.timing import DEFAULT_RUNS, DEFAULT_WARMUP
from sweep.builders import sweep_datamodule
from sweep.config import SweepConfig
from sweep.seeding.deployment import (
    DENSE_TIMING_SECONDS,
    MIN_DENSE_RUNS,
    dense_latency,
    dense_timing_rounds,
)
from sweep.tracking.names import latency_metric


def test_fast_models_get_every_round_and_slow_ones_the_floor():
    # Milliseconds a forward: the full warm-up (the first forward is one of it) and all rounds.
    assert dense_timing_rounds(0.002) == (DEFAULT_WARMUP - 1, DEFAULT_RUNS)
    assert dense_timing_rounds(DENSE_TIMING_SECONDS / DEFAULT_RUNS) == (
        DEFAULT_WARMUP - 1,
        DEFAULT_RUNS,
    )
    # In between: no further warm-up, as many rounds as fit.
    assert dense_timing_rounds(DENSE_TIMING_SECONDS / 7.5) == (0, 7)
    # Seconds a forward (a ResNet-50 at 224x224, batch 64, one thread): the floor, however slow.
    assert dense_timing_rounds(4.5) == (0, MIN_DENSE_RUNS)
    assert dense_timing_rounds(600.0) == (0, MIN_DENSE_RUNS)
    assert dense_timing_rounds(0.0) == (DEFAULT_WARMUP - 1, DEFAULT_RUNS), "too fast to time"
    assert MIN_DENSE_RUNS >= 3, "a median that ignores one disturbed round"


@pytest.mark.parametrize("batches", [[1, 8], [4]])
def test_dense_latency_of_a_real_model_at_each_batch_size(batches):
    config = SweepConfig.model_validate({"deploy": {"batch_sizes": batches}})
    shape = DataShape.of(sweep_datamodule(config))
    latency = dense_latency(config, shape)
    assert list(latency.ms) == batches == list(latency.rounds)
    assert all(ms > 0 for ms in latency.ms.values())
    assert all(MIN_DENSE_RUNS <= rounds <= DEFAULT_RUNS for rounds in latency.rounds.values())
    assert latency.metrics() == {latency_metric(b): latency.ms[b] for b in batches}
