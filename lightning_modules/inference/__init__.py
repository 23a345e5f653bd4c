"""Networks as they are deployed: Tucker layers turned into plain torch modules in their fastest
form, and latency measured side by side.

    fast = inference_form(model, example_input)          # each layer dense, folded or factorized
    seconds = time_modules({"dense": dense, "tucker": fast}, example_input)

Measured on the device, dtype, batch and threads of the caller: nothing here counts FLOPs.
"""

from lightning_modules.inference.form import LayerChoice, choose_forms, inference_form
from lightning_modules.inference.layer_forms import FORMS, layer_form
from lightning_modules.inference.speed import SpeedFigures, measure_speed
from lightning_modules.inference.timing import time_modules, time_side_by_side, torch_threads

__all__ = [
    "FORMS",
    "LayerChoice",
    "SpeedFigures",
    "choose_forms",
    "inference_form",
    "layer_form",
    "measure_speed",
    "time_modules",
    "time_side_by_side",
    "torch_threads",
]
