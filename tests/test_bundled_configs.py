"""Every config under configs/ is one a user can launch: it validates as a SweepConfig."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.config import SweepConfig, build_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_the_bundled_configs_are_found():
    assert {path.name for path in CONFIGS} >= {"digits.yaml", "imagefolder-resnet50.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_a_bundled_config_validates(path):
    build_config(SweepConfig, path)  # a config that does not validate raises ConfigError


def test_the_imagefolder_config_is_the_real_case():
    config = build_config(SweepConfig, CONFIGS[0].parent / "imagefolder-resnet50.yaml")
    assert config.data.name == "image_folder"
    assert config.model.spec == "torchvision:resnet50" and config.model.pretrained
    assert (config.resources.workers, config.resources.gpu) == (2, 1)
    assert config.decomposition.mode == "budget"
    assert config.decomposition.budget_metric == "latency"
    assert config.search.objectives == ["val_acc", "latency"]
