"""The exported network as ONNX (model.onnx, any batch size), and an ONNX file run with ONNX
Runtime on the CPU as a torch module: what the checks and the latency figures call."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import onnxruntime
import torch
from torch import Tensor, nn
from torch.export import Dim

from sweep.errors import first_line
from sweep.export.checks import ExportCheckError

INPUT_NAME = "images"  # normalised images, N x C x H x W, float32
OUTPUT_NAME = "logits"
_EXPORTER_LOGGER = "torch.onnx"


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter's log lines (e.g. that torchvision's ops are skipped when torchvision is
    not installed) and warnings concern the exporter, not the model; the checks judge it."""
    logger = logging.getLogger(_EXPORTER_LOGGER)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _export(network: nn.Module, example: Tensor, path: Path, dynamo: bool) -> None:
    common = {"input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME], "verbose": False}
    if dynamo:
        torch.onnx.export(
            network, (example,), str(path), dynamo=True, dynamic_shapes=({0: Dim("batch")},),
            external_data=False,  # one self-contained file (a CNN is far below ONNX's 2 GB)
            **common,
        )  # fmt: skip
    else:
        batch = {0: "batch"}
        torch.onnx.export(
            network, (example,), str(path), dynamo=False,
            dynamic_axes={INPUT_NAME: batch, OUTPUT_NAME: batch}, **common,
        )  # fmt: skip


def save_onnx(network: nn.Module, example: Tensor, path: Path) -> None:
    """Write `network` (plain torch modules: an inference form) to `path` with a dynamic batch
    dimension. ExportCheckError when the exporter refuses it.

    The TorchScript-based exporter first, torch.export's (dynamo=True, with onnxscript) where
    that one is gone: both export an inference form whose batch dimension ONNX Runtime accepts
    at any size (same logits to 1e-8), but on this 2-core CPU torch.export's took 4.6 s per
    file against 0.7 s, and an export writes two (the dense one too, to time it). The older
    one is deprecated since torch 2.9: its warning is silenced with the exporter's others."""
    network = network.eval()
    try:
        with torch.no_grad(), _quiet_exporter():
            try:
                _export(network, example, path, dynamo=False)
            except (TypeError, NotImplementedError, RuntimeError):
                _export(network, example, path, dynamo=True)  # a torch without the old one
    except Exception as error:  # the exporter raises many kinds; each is a failed export
        raise ExportCheckError(
            f"the inference form could not be exported to ONNX: {first_line(error)}"
        ) from None


class OnnxNetwork(nn.Module):
    """An ONNX file run by ONNX Runtime on the CPU with `threads` intra-op threads, called
    like the torch network it was exported from (a tensor in, a tensor of logits out)."""

    def __init__(self, path: Path, threads: int) -> None:
        super().__init__()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1  # one graph, run sequentially: intra-op threads only
        self.session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )

    def forward(self, images: Tensor) -> Tensor:
        inputs = {INPUT_NAME: images.detach().cpu().contiguous().numpy()}
        return torch.from_numpy(self.session.run([OUTPUT_NAME], inputs)[0])
