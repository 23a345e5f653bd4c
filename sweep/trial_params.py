"""How a trial's choices are written down: as Ray Tune config keys, as MLflow params, and the
text form of a rank triple that both use. Every writer and reader of them goes through here.

    Tune config:   {"ranks.block2.conv1": "16x8x3", "lr": 0.05, "init": "hooi"}
                   or {"ratio_out": 0.25, "ratio_in": 0.25, "ratio_spatial": 0.67, ...}
                   or {"compression": 7.5, ...}
    MLflow params: {"ranks/block2.conv1": "16x8x3", "lr": "0.05", "init": "hooi", ...}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# Tune keys of `mode: per_layer`. No "/" in them: Ray's Optuna integration flattens nested
# spaces on "/".
TUNE_RANKS_PREFIX = "ranks."
# The same choices as MLflow params: "/" groups them in the MLflow UI.
RANKS_PARAM_PREFIX = "ranks/"
# `mode: ratio`: one ratio per mode for every layer; the same names in Tune and MLflow.
RATIO_KEYS = ("ratio_out", "ratio_in", "ratio_spatial")
LR_KEY = "lr"
INIT_KEY = "init"
# `mode: budget`: the compression target a trial sampled (Tune) and records (MLflow).
COMPRESSION_KEY = "compression"
TARGET_COMPRESSION_PARAM = "target_compression"


def encode_ranks(ranks: Sequence[int]) -> str:
    """(16, 8, 3) -> "16x8x3": Optuna takes only plain scalars as categorical choices."""
    return "x".join(str(int(r)) for r in ranks)


def decode_ranks(text: str) -> tuple[int, int, int]:
    parts = text.split("x")
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        raise ValueError(f"not an encoded rank triple: {text!r} (expected e.g. '16x8x3')")
    out_rank, in_rank, spatial_rank = (int(part) for part in parts)
    return (out_rank, in_rank, spatial_rank)


def ranks_params(rank_plan: Mapping[str, Sequence[int]]) -> dict[str, str]:
    """A rank plan as MLflow params (or registry tags): ranks/<layer> -> "NxCxD"."""
    return {RANKS_PARAM_PREFIX + name: encode_ranks(ranks) for name, ranks in rank_plan.items()}


def ranks_from_params(params: Mapping[str, str]) -> dict[str, tuple[int, int, int]]:
    """The rank plan recorded in MLflow params (see ranks_params)."""
    return {
        key.removeprefix(RANKS_PARAM_PREFIX): decode_ranks(value)
        for key, value in params.items()
        if key.startswith(RANKS_PARAM_PREFIX)
    }


def trial_params(
    rank_plan: Mapping[str, Sequence[int]], lr: float, init: str, tune_config: Mapping[str, Any]
) -> dict[str, Any]:
    """What a trial's MLflow run records of its choices: its ranks, lr and init, and the
    per-mode ratios (ratio mode) or compression target (budget mode) it was sampled with."""
    params: dict[str, Any] = ranks_params(rank_plan)
    params.update({LR_KEY: lr, INIT_KEY: init})
    params.update({key: tune_config[key] for key in RATIO_KEYS if key in tune_config})
    if COMPRESSION_KEY in tune_config:
        params[TARGET_COMPRESSION_PARAM] = tune_config[COMPRESSION_KEY]
    return params
