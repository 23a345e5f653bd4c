"""Execution setups (precision, compile, memory format): refused up front where a device cannot
run them, applied to a real Lightning fit where it can."""

from __future__ import annotations

import pytest
import torch

from lightning_modules.data import DigitsDataModule
from lightning_modules.execution import ExecutionSetup
from lightning_modules.module import TuckerClassifier
from lightning_modules.trainer import make_trainer
from lightning_modules.tucker import autotune
from sweep.config import SweepConfig, TrainConfig, build_config
from sweep.errors import ConfigError


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (ExecutionSetup(precision="16-mixed"), "precision: 16-mixed (fp16 AMP) needs a GPU"),
        (ExecutionSetup(compile="reduce-overhead"), "compile: reduce-overhead (CUDA graphs)"),
        (ExecutionSetup(compile="max-autotune"), "compile: max-autotune (CUDA graphs)"),
    ],
)
def test_gpu_only_setups_are_refused_on_a_cpu_and_accepted_on_a_gpu(setup, message):
    assert message in setup.problem_on("cpu")
    assert setup.problem_on("cuda") is None


def test_cpu_setups_are_accepted_on_a_cpu():
    for setup in (ExecutionSetup(), ExecutionSetup("bf16-mixed", "off", True)):
        assert setup.problem_on("cpu") is None
    with pytest.raises(ValueError, match="precision must be one of"):
        ExecutionSetup(precision="fp8")


def test_a_sweep_config_refuses_a_gpu_setup_for_cpu_trials():
    with pytest.raises(ConfigError, match=r"training\.precision: 16-mixed .* trials run on CPUs"):
        build_config(SweepConfig, overrides={"training.precision": "16-mixed"})
    gpu_trials = build_config(
        SweepConfig,
        overrides={"training.compile": "reduce-overhead", "resources.gpu": 0.5},
    )
    assert gpu_trials.training.execution_setup() == ExecutionSetup("32-true", "reduce-overhead")
    with pytest.raises(ConfigError, match="compile: reduce-overhead"):
        build_config(TrainConfig, overrides={"compile": "reduce-overhead", "accelerator": "cpu"})


def test_bf16_channels_last_fit_of_a_tucker_net_on_a_cpu():
    autotune.clear_cache()
    classifier = TuckerClassifier(model_name="vgg_small", rank_plan={"block2.conv1": 0.5})
    execution = ExecutionSetup("bf16-mixed", "off", channels_last=True)
    trainer = make_trainer(1, execution=execution)
    trainer.fit(classifier, datamodule=DigitsDataModule(seed=0))
    assert trainer.precision == "bf16-mixed"
    assert float(trainer.callback_metrics["val_acc"]) > 0.3  # it learns (chance: 0.1)
    dense_convs = [p for p in classifier.model.parameters() if p.dim() == 4]
    assert dense_convs and all(
        p.is_contiguous(memory_format=torch.channels_last) for p in dense_convs
    )
    # The Tucker layer chose its path under bf16 autocast, and cached it under that state.
    states = {key[-1] for key in autotune.cached_choices()}
    assert (True, torch.bfloat16) in states
