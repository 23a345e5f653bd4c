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


def save_onnx(network: nn.Module, example: Tensor, path: Path) -> None:
    """Write `network` (plain torch modules: an inference form) to `path` with a dynamic batch
    dimension. ExportCheckError when the exporter refuses it.

    torch.export's exporter (dynamo=True, with onnxscript) rather than the TorchScript-based
    one: both export an inference form whose batch dimension ONNX Runtime then accepts at any
    size, but the TorchScript-based exporter is deprecated since torch 2.9 (a
    DeprecationWarning on every call) and is the one torch is removing; torch.export's is
    torch 2.13's default."""
    try:
        with torch.no_grad(), _quiet_exporter():
            torch.onnx.export(
                network.eval(), (example,), str(path), dynamo=True,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: Dim("batch")},),
                external_data=False,  # one self-contained file (a CNN is far below ONNX's 2 GB)
                verbose=False,  # the exporter would print its steps on stdout
            )  # fmt: skip
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
