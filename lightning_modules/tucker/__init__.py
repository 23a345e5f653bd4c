"""The Tucker convolution: the layer, its execution paths, cost model, path autotuning and HOOI.

    from lightning_modules.tucker import TuckerConv2d

    layer = TuckerConv2d(256, 256, 3, ranks=(64, 64, 3), padding=1)
    layer = TuckerConv2d.from_conv(trained_conv, ranks=0.25)  # HOOI of a trained nn.Conv2d

The maths is in docs/design.md; each module here is one part of it.
"""

from lightning_modules.tucker.compressed import load_compressed, save_compressed
from lightning_modules.tucker.geometry import ConvGeometry, TuckerRanks
from lightning_modules.tucker.hooi import HooiResult, hooi
from lightning_modules.tucker.layer import INIT_METHODS, TuckerConv2d
from lightning_modules.tucker.ops import IMPLEMENTATIONS, PATHS, TuckerFactors, path_flops
from lightning_modules.tucker.rank_rules import (
    InvalidRanksError,
    RankSpec,
    make_feasible,
    ranks_from_spec,
    validate_ranks,
)

__all__ = [
    "IMPLEMENTATIONS",
    "INIT_METHODS",
    "PATHS",
    "ConvGeometry",
    "HooiResult",
    "InvalidRanksError",
    "RankSpec",
    "TuckerConv2d",
    "TuckerFactors",
    "TuckerRanks",
    "hooi",
    "load_compressed",
    "make_feasible",
    "path_flops",
    "ranks_from_spec",
    "save_compressed",
    "validate_ranks",
]
