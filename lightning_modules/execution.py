"""How a classifier runs on its device: numeric precision, torch.compile, memory format.

One ExecutionSetup is shared by every fit of a sweep (trials, the dense baseline) and by
`tucker-sweep train`, through make_trainer, so that dense and Tucker models are always timed
and trained in the same setup. The defaults are plain fp32 eager execution in the default
memory format, what every device runs; which setup is fastest on a GPU is what
benchmarks/gpu_train_speed.py measures. Plain data with no torch import, so that the service's
config module stays quick to load; execution_callback.py applies it to a fit.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")


@dataclass(frozen=True)
class ExecutionSetup:
    """precision: Lightning's precision flag; compile: torch.compile mode of the model, or
    "off"; channels_last: model weights and inputs in NHWC, which cuDNN's tensor-core
    kernels prefer."""

    precision: str = "32-true"
    compile: str = "off"
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {COMPILE_MODES}, got {self.compile!r}")

    def problem_on(self, device_type: str) -> str | None:
        """Why a device of this type ("cpu", "cuda", ...) cannot run this setup, or None.

        Checked before anything trains: Lightning would otherwise swap 16-mixed for bf16 on a
        CPU with only a warning, and a missing C++ compiler fails at the first compiled step.
        """
        if device_type == "cuda":
            return None
        if self.precision == "16-mixed":
            return "precision: 16-mixed (fp16 AMP) needs a GPU; use bf16-mixed on a CPU"
        if self.compile in ("reduce-overhead", "max-autotune"):
            return f"compile: {self.compile} (CUDA graphs) needs a GPU; use default on a CPU"
        if self.compile == "default" and device_type == "cpu" and shutil.which("c++") is None:
            return "compile: torch.compile on a CPU needs a C++ compiler (c++) on PATH"
        return None
