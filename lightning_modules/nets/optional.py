"""The optional packages some models need (torchvision, timm): imported only when such a model is
built, with one line saying what is missing and what to install.

Imported late on purpose: the built-in models and the user's factories must work without them,
and a torchvision wheel built for another torch (PyPI's CUDA build beside a CPU torch) fails at
import time with "operator torchvision::nms does not exist". timm imports torchvision, so it
fails the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from lightning_modules.nets.user_models import UnknownModelError


class ModelPackageError(UnknownModelError):
    """A package a model needs is not installed, or does not load beside this torch."""


@contextlib.contextmanager
def importing(package: str, model: str, extra: str) -> Iterator[None]:
    """Around `import package` (written out, so that tools see the import): a failure becomes
    a ModelPackageError naming `model` (as the config says it, e.g. "model timm: resnet18"),
    the cause and the extra of tucker-sweep that installs the package."""
    install = f"pip install 'tucker-sweep[{extra}]'"
    try:
        yield
    except ModuleNotFoundError as error:
        if error.name is not None and error.name.split(".")[0] != package:
            # The package is there but one of its own imports is not (timm without torchvision).
            reason = f"it is installed but needs {error.name}, which is not"
            raise ModelPackageError(f"{model} needs {package}: {reason}; {install}") from None
        raise ModelPackageError(
            f"{model} needs {package}, which is not installed: {install} "
            "(with a torchvision built for this torch)"
        ) from None
    except Exception as error:  # a build for another torch: RuntimeError, OSError, ImportError
        lines = str(error).strip().splitlines()
        reason = f"{type(error).__name__}: {lines[-1]}" if lines else type(error).__name__
        raise ModelPackageError(
            f"{model} needs {package}, which is installed but does not load beside torch "
            f"{torch.__version__} ({reason}); install the torchvision built for this torch "
            f"(from the index torch came from), then {install}"
        ) from None
