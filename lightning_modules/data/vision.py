"""Where downloaded data sets live, and torchvision as an optional, lazily imported dependency."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

from .errors import TorchvisionUnavailableError

DATA_DIR_ENV = "TUCKER_SWEEP_DATA"
DEFAULT_DATA_DIR = Path("~/.cache/tucker-sweep/data")


def data_home(data_dir: str | Path | None = None) -> Path:
    """`data_dir`, else $TUCKER_SWEEP_DATA, else ~/.cache/tucker-sweep/data."""
    chosen = data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return Path(chosen).expanduser()


def import_torchvision(alternative: str = "or use the 'digits' or 'npz' dataset") -> ModuleType:
    """torchvision, or a TorchvisionUnavailableError that says how to get it.

    `alternative` ends the message: what the user can do instead of installing it.
    """
    # Imported here, not at module level: the digits and npz data sets (the
    # offline defaults) must work without torchvision, and a torchvision wheel
    # built for another torch (e.g. the PyPI CUDA build beside a CPU torch) fails
    # at import time with "operator torchvision::nms does not exist".
    try:
        import torchvision
    except ImportError as err:
        raise TorchvisionUnavailableError(
            "this dataset needs torchvision, which is not installed: "
            "pip install 'tucker-sweep[vision]' (a torchvision built for your torch), "
            + alternative
        ) from err
    except (RuntimeError, OSError) as err:
        import torch

        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise TorchvisionUnavailableError(
            f"torchvision is installed but does not load beside torch {torch.__version__} "
            f"({reason}); install the torchvision build that matches this torch "
            f"(pip install 'tucker-sweep[vision]' from the index torch came from), {alternative}"
        ) from err
    return torchvision
