"""Models the user builds with their own code: a factory ("package.module:callable"). The
packages' models the user names (torchvision, timm) are in torchvision_models.py and
timm_models.py.

A factory is the user's code by design: importing and calling it runs whatever it does, so a
config that names one is as trusted as a script (README, "Compress your own model"). What can be
refused is refused before the call: a name that is no model-building callable (a built-in
function such as os.system, a class that is not an nn.Module). Whatever the user's code raises
is named in one line; a result that is not an nn.Module never reaches the rest of the program.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

from torch import nn

from lightning_modules.nets.options import echo, raised


class UnknownModelError(ValueError):
    """A model name the factory does not know, or options its constructor refuses."""


def pop_pretrained(options: dict[str, object], label: str) -> bool:
    """Take the `pretrained` flag out of a published model's options (ModelConfig folds
    model.pretrained in there), checked: the rest go to the library's builder."""
    pretrained = options.pop("pretrained", False)
    if not isinstance(pretrained, bool):
        raise UnknownModelError(
            f"{label}: pretrained must be true or false, got {echo(pretrained)}"
        )
    return pretrained


def import_factory(spec: str) -> Callable[..., nn.Module]:
    """The callable named "package.module:callable" (importable where the model is built: on
    a cluster, every Ray worker; see the README on runtime_env)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UnknownModelError(f"model factory {spec!r}: expected 'package.module:callable'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise UnknownModelError(
            f"model factory {spec!r}: cannot import {module_name}: {error}"
        ) from None
    except Exception as error:  # the user's module failed while importing: their code's error
        raise UnknownModelError(
            f"model factory {spec!r}: importing {module_name} raised {raised(error)}"
        ) from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise UnknownModelError(
            f"model factory {spec!r}: {module_name} has no callable {attribute!r}"
        )
    problem = _not_a_model_factory(factory)
    if problem:
        raise UnknownModelError(f"model factory {spec!r} {problem}, so it is not called")
    return factory


def _not_a_model_factory(factory: Callable) -> str | None:
    """Why `factory` cannot be a callable that builds a model, or None. A function cannot be
    told apart before it runs; these can."""
    if inspect.isbuiltin(factory):
        return "is a built-in function, not a Python function or nn.Module class"
    if inspect.isclass(factory) and not issubclass(factory, nn.Module):
        return f"is the class {factory.__name__}, not an nn.Module"
    return None


def from_factory(spec: str, options: dict[str, object]) -> nn.Module:
    """The model the user's factory builds from `options`, checked to be an nn.Module."""
    factory = import_factory(spec)
    try:
        model = factory(**options)
    except TypeError as error:
        raise UnknownModelError(
            f"model factory {spec!r} refused options {echo(options)}: {raised(error)}"
        ) from None
    except Exception as error:  # the user's code: named, in one line
        raise UnknownModelError(f"model factory {spec!r} raised {raised(error)}") from None
    if not isinstance(model, nn.Module):
        raise UnknownModelError(
            f"model factory {spec!r} returned {type(model).__name__}, not a torch nn.Module"
        )
    return model
