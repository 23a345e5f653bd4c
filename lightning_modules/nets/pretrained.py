"""A user's trained weights for a model: read from the usual file formats (never unpickling
code), matched to the model's parameter names, and a check that a model fits the data."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import Tensor, nn


class PretrainedWeightsError(ValueError):
    """A weights file that cannot be read, or that does not match the model."""


# Prefixes a training wrapper puts before the model's own parameter names: a LightningModule
# holding the net as `model` (ours) or `net`, DataParallel's `module`, torch.compile's
# `_orig_mod`. Tried in this order after an exact match.
WRAPPER_PREFIXES = ("model.", "net.", "module.", "_orig_mod.", "model.module.")


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """The tensors of a plain `state_dict` file, of a `torch.save`d dict with a `state_dict`
    key, or of a Lightning checkpoint; always read with weights_only=True."""
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PretrainedWeightsError(f"checkpoint not found: {path}") from None
    except Exception as error:  # arbitrary bytes fail in many ways (EOF, unpickling, ...)
        raise PretrainedWeightsError(
            f"{path} is not a PyTorch weights file: torch.load(weights_only=True) cannot read it "
            f"({type(error).__name__})"
        ) from None
    if isinstance(content, Mapping) and isinstance(content.get("state_dict"), Mapping):
        content = content["state_dict"]
    if not isinstance(content, Mapping) or not content:
        raise PretrainedWeightsError(
            f"{path} holds a {type(content).__name__}, not a state_dict (a dict of tensors, or a "
            "dict with a 'state_dict' key, or a Lightning checkpoint)"
        )
    tensors = {str(key): value for key, value in content.items() if isinstance(value, Tensor)}
    if not tensors:
        raise PretrainedWeightsError(f"{path} holds no tensors: not a state_dict")
    return tensors


def match_state_dict(model: nn.Module, weights: Mapping[str, Tensor], source: str) -> dict:
    """`weights` renamed to the model's parameter and buffer names (dropping a wrapper's prefix,
    see WRAPPER_PREFIXES), with every name present and every shape equal; else one line
    saying what differs."""
    wanted = model.state_dict()
    best: dict[str, Tensor] = {}
    for prefix in ("", *WRAPPER_PREFIXES):
        renamed = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
        if len(set(renamed) & set(wanted)) > len(set(best) & set(wanted)):
            best = renamed
    missing = [key for key in wanted if key not in best]
    if missing:
        unexpected = [key for key in weights if key.split(".", 1)[-1] not in wanted]
        raise PretrainedWeightsError(
            f"{source} does not match the model: {len(missing)} of its {len(wanted)} tensors are "
            f"missing (e.g. {missing[0]})"
            + (f"; {len(unexpected)} unknown to it (e.g. {unexpected[0]})" if unexpected else "")
        )
    for key, tensor in wanted.items():
        if best[key].shape != tensor.shape:
            raise PretrainedWeightsError(
                f"{source} does not match the model: {key} is {tuple(best[key].shape)} there, "
                f"{tuple(tensor.shape)} in the model"
            )
    return {key: best[key] for key in wanted}


def load_pretrained(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load the weights at `path` into `model` (see read_state_dict, match_state_dict)."""
    model.load_state_dict(match_state_dict(model, read_state_dict(path), str(path)))


def fit_problem(
    model: nn.Module, input_shape: tuple[int, int, int], num_classes: int
) -> str | None:
    """Why `model` cannot classify images of `input_shape` into `num_classes` classes (one
    line), or None: two blank images go through it on the CPU."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *input_shape))
    except Exception as error:  # a shape error surfaces as RuntimeError, ValueError, ...
        text = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return f"a batch of {'x'.join(map(str, input_shape))} images does not go through it: {text}"
    finally:
        model.train(was_training)
    if not isinstance(out, Tensor) or tuple(out.shape) != (2, num_classes):
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        return f"it gives {shape} for a batch of 2 images; the data has {num_classes} classes"
    return None
