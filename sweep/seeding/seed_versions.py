"""Older seed.json versions, read as the current one: a sweep seeded before an upgrade still
resumes, and `launch` still reads a seed written by an older `tucker-sweep seed`.

    version 1  candidates scored by `hooi_error`, one HOOI per candidate (minutes on a big net)
    version 2  candidates scored by `error_bound`, the mode spectra's bound on the same error

Each step rewrites the parsed JSON of one version as the next; the result is then validated as
any current file is, so a damaged old file is refused with the same one-line errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from lightning_modules.ranks import ModeSpectra, error_bound


def _bound_of(layer: Any, candidate: Any) -> float | None:
    """The error bound of a candidate from its layer's own spectra, or None where the entries
    are too damaged to compute it (validation then names what is wrong)."""
    try:
        spectra = layer["spectra"]
        modes = [np.asarray(spectra[mode], dtype=np.float64) for mode in ("out", "in", "spatial")]
        ranks = candidate["ranks"]
        if len(ranks) != 3 or not all(isinstance(rank, int) and rank >= 1 for rank in ranks):
            return None
        bound = error_bound(ModeSpectra(*modes), ranks)
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    return bound if np.isfinite(bound) else None


def _from_version_1(content: dict[str, Any]) -> dict[str, Any]:
    layers = content.get("layers")
    for layer in layers.values() if isinstance(layers, dict) else ():
        candidates = layer.get("candidates") if isinstance(layer, dict) else None
        for candidate in candidates if isinstance(candidates, list) else ():
            if not isinstance(candidate, dict):
                continue
            candidate.pop("hooi_error", None)
            bound = _bound_of(layer, candidate)
            if bound is not None:
                candidate["error_bound"] = bound
    return {**content, "schema_version": 2}


# Version -> the step that rewrites it as the next version.
_STEPS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _from_version_1}


def upgraded(content: dict[str, Any], version: int, current: int) -> dict[str, Any]:
    """`content` (parsed JSON of schema `version`, at most `current`) as schema `current`."""
    while version < current:
        content = _STEPS[version](content)
        version += 1
    return content
