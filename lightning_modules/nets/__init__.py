"""CNNs by name, the decomposable convs of a model, rank plans, decomposition and cost totals.

    model = build_model("vgg_small", 1, 10)  # in channels, classes
    plan = uniform_plan(model, 0.25)              # {"block1.conv2": (8, 8, 2), ...}
    decompose(model, plan, init="hooi")           # convs replaced by TuckerConv2d in place
    model_cost(model, (1, 8, 8)).compression      # dense-equivalent params / actual params

One family of networks per file (vgg.py, resnet.py, mobilenet.py); registry.py names them and
builds the others: a user's factory (user_models.py), torchvision's and timm's models
(torchvision_models.py, timm_models.py), whose published weights come from the local caches
only (weight_caches.py).
"""

from lightning_modules.nets.decompose import (
    ConvLayer,
    RankPlanError,
    conv_geometry,
    conv_layers,
    decompose,
    rank_plan_of,
    resolve_plan,
    skipped_convs,
    uniform_plan,
)
from lightning_modules.nets.meta_trace import input_sizes
from lightning_modules.nets.model_cost import ModelCost, model_cost
from lightning_modules.nets.registry import MODELS, UnknownModelError, build_model

__all__ = [
    "MODELS",
    "ConvLayer",
    "ModelCost",
    "RankPlanError",
    "UnknownModelError",
    "build_model",
    "conv_geometry",
    "conv_layers",
    "decompose",
    "input_sizes",
    "model_cost",
    "rank_plan_of",
    "resolve_plan",
    "skipped_convs",
    "uniform_plan",
]
