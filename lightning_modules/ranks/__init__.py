"""Rank selection for the convs of a trained CNN: mode spectra, energy and VBMF rank estimates,
the per-layer candidate triples that seed a sweep (docs/design.md, "Rank selection"), scored by
the spectra's error bound, and global rank allocation under a budget ("Rank allocation")."""

from lightning_modules.ranks.allocation import (
    Allocation,
    AllocationError,
    LayerSpectra,
    allocate_minimax,
    allocate_uniform_threshold,
)
from lightning_modules.ranks.candidates import (
    METHODS,
    Candidate,
    LayerAnalysis,
    NoDecomposableLayersError,
    analyse_layer,
    candidate_ranks,
    seeded_space_size,
)
from lightning_modules.ranks.energy import energy_rank
from lightning_modules.ranks.error_bound import error_bound
from lightning_modules.ranks.spectra import ModeSpectra, mode_spectra
from lightning_modules.ranks.vbmf import vbmf_rank

__all__ = [
    "METHODS",
    "Allocation",
    "AllocationError",
    "Candidate",
    "LayerAnalysis",
    "LayerSpectra",
    "ModeSpectra",
    "NoDecomposableLayersError",
    "allocate_minimax",
    "allocate_uniform_threshold",
    "analyse_layer",
    "candidate_ranks",
    "energy_rank",
    "error_bound",
    "mode_spectra",
    "seeded_space_size",
    "vbmf_rank",
]
